//! The OpenAI-compatible embeddings client against scripted servers on 127.0.0.1: order,
//! batching, prefixes, truncation, and every way an answer can be wrong.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use embed::EmbedError;
use embed::dense::{EncodingFormat, SparkEmbedder, SparkEmbedderConfig};
use embed::http::{HttpClient, HttpClientConfig, HttpError};
use serde_json::{Value, json};

use crate::support::{serve, serve_tls};

/// What the scripted server saw: one entry per request, the inputs it carried.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Vec<String>>>>);

impl Seen {
    fn record(&self, inputs: Vec<String>) -> usize {
        let mut seen = self.0.lock().unwrap();
        seen.push(inputs);
        seen.len()
    }
    fn requests(&self) -> Vec<Vec<String>> {
        self.0.lock().unwrap().clone()
    }
}

/// A deterministic 3-component vector of a text, so order mistakes show.
fn vector_of(text: &str) -> Vec<f32> {
    vec![text.chars().count() as f32, 1.0, -1.0]
}

type Script = Arc<dyn Fn(usize, &[String]) -> Response + Send + Sync>;

/// A server whose `/v1/embeddings` answer is decided by `script(request_number, inputs)`.
async fn scripted(script: Script) -> (crate::support::TestServer, Seen) {
    let seen = Seen::default();
    let s = seen.clone();
    let router = Router::new()
        .route(
            "/v1/embeddings",
            post(move |body: axum::Json<Value>| {
                let (s, script) = (s.clone(), script.clone());
                async move {
                    let inputs: Vec<String> = match &body.0["input"] {
                        Value::Array(items) => items
                            .iter()
                            .map(|v| v.as_str().unwrap_or_default().to_owned())
                            .collect(),
                        Value::String(one) => vec![one.clone()],
                        _ => Vec::new(),
                    };
                    let n = s.record(inputs.clone());
                    script(n, &inputs)
                }
            }),
        )
        .route(
            "/v1/models",
            get(|| async {
                axum::Json(json!({"object": "list", "data": [{"id": "mini"}, {"id": "e5"}]}))
            }),
        );
    (serve(router).await, seen)
}

/// The normal answer, with items in reverse order (the `index` fields say where they go).
fn good_answer(inputs: &[String]) -> Response {
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_of(t)}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "model": "mini"})).into_response()
}

fn client(url: &str, concurrency: usize) -> HttpClient {
    let mut config = HttpClientConfig::new(url);
    config.max_concurrency = concurrency;
    config.initial_backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(50);
    config.max_retries = 2;
    HttpClient::new(config).unwrap()
}

fn embedder(url: &str, config: SparkEmbedderConfig) -> SparkEmbedder {
    SparkEmbedder::new(client(url, 4), config).unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("text number {i} {}", "x".repeat(i % 7)))
        .collect()
}

#[tokio::test]
async fn batches_concurrently_and_keeps_input_order() {
    let (server, seen) = scripted(Arc::new(|_, inputs| good_answer(inputs))).await;
    let mut config = SparkEmbedderConfig::new("mini");
    config.max_batch_inputs = 3;
    config.max_batch_chars = 50;
    let e = embedder(&server.url, config);
    let inputs = texts(40);
    let vectors = e.embed_documents(&inputs).await.unwrap();
    assert_eq!(vectors.len(), 40);
    for (text, vector) in inputs.iter().zip(&vectors) {
        assert_eq!(vector, &vector_of(text), "{text}");
    }
    let requests = seen.requests();
    assert!(requests.len() >= 14, "{} requests", requests.len());
    for request in &requests {
        assert!(request.len() <= 3);
        let chars: usize = request.iter().map(String::len).sum();
        assert!(chars <= 50 || request.len() == 1, "{request:?}");
    }
    let mut sent: Vec<String> = requests.into_iter().flatten().collect();
    sent.sort();
    let mut expected = inputs.clone();
    expected.sort();
    assert_eq!(sent, expected, "every input sent exactly once");
    assert_eq!(e.known_dimension(), Some(3));
}

#[tokio::test]
async fn prefixes_and_truncation_reach_the_server() {
    let (server, seen) = scripted(Arc::new(|_, inputs| good_answer(inputs))).await;
    let mut config = SparkEmbedderConfig::new("mini");
    config.query_prefix = "query: ".into();
    config.document_prefix = "passage: ".into();
    config.max_input_chars = 40;
    let e = embedder(&server.url, config);
    e.embed_query("who funds custody?").await.unwrap();
    e.embed_documents(&["word ".repeat(100)]).await.unwrap();
    let requests = seen.requests();
    assert_eq!(requests[0], ["query: who funds custody?"]);
    let doc = &requests[1][0];
    assert!(doc.starts_with("passage: word"), "{doc:?}");
    assert!(doc.chars().count() <= 40, "{doc:?}");
    assert!(doc.ends_with("word"), "cut at a word boundary: {doc:?}");
}

async fn failing_with(
    answer: impl Fn(&[String]) -> Response + Send + Sync + 'static,
) -> EmbedError {
    let answer = Arc::new(answer);
    let (server, _) = scripted(Arc::new(move |n, inputs| {
        if n == 1 {
            good_answer(inputs)
        } else {
            answer(inputs)
        }
    }))
    .await;
    let mut config = SparkEmbedderConfig::new("mini");
    config.max_batch_inputs = 2;
    let e = SparkEmbedder::new(client(&server.url, 1), config).unwrap();
    let inputs = vec![
        "alpha".to_owned(),
        "beta".to_owned(),
        "gamma ray burst".to_owned(),
        "delta".to_owned(),
    ];
    e.embed_documents(&inputs).await.unwrap_err()
}

fn answer_with(vectors: Vec<Value>) -> Response {
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"index": i, "embedding": v}))
        .collect();
    axum::Json(json!({"data": data})).into_response()
}

#[tokio::test]
async fn a_wrong_dimension_names_the_input() {
    let err =
        failing_with(|_| answer_with(vec![json!([1.0, 2.0, 3.0]), json!([1.0, 2.0, 3.0, 4.0])]))
            .await;
    match &err {
        EmbedError::BadVector {
            input_index,
            preview,
            problem,
            ..
        } => {
            assert_eq!(*input_index, 3);
            assert_eq!(preview, "delta");
            assert!(problem.contains("4 components, expected 3"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("input #3"), "{err}");
}

#[tokio::test]
async fn null_and_out_of_range_components_are_rejected() {
    let err =
        failing_with(|_| answer_with(vec![json!([1.0, null, 3.0]), json!([1.0, 2.0, 3.0])])).await;
    assert!(
        matches!(&err, EmbedError::BadVector { input_index: 2, problem, .. } if problem.contains("component 1")),
        "{err:?}"
    );
    let err =
        failing_with(|_| answer_with(vec![json!([1.0, 2.0, 3.0]), json!([1.0, 1e300, 3.0])])).await;
    assert!(
        matches!(&err, EmbedError::BadVector { input_index: 3, .. }),
        "{err:?}"
    );
    // A number beyond f64 cannot even be parsed: the body is refused as a whole.
    let err = failing_with(|_| {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"data":[{"index":0,"embedding":[1e999,0,0]},{"index":1,"embedding":[0,0,0]}]}"#,
        )
            .into_response()
    })
    .await;
    assert!(
        matches!(&err, EmbedError::Http(HttpError::InvalidBody { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn empty_vectors_wrong_counts_and_bad_indices_are_rejected() {
    let err = failing_with(|_| answer_with(vec![json!([]), json!([1.0, 2.0, 3.0])])).await;
    assert!(
        matches!(&err, EmbedError::BadVector { input_index: 2, problem, .. } if problem.contains("empty")),
        "{err:?}"
    );

    let err = failing_with(|_| answer_with(vec![json!([1.0, 2.0, 3.0])])).await;
    assert!(
        matches!(&err, EmbedError::BadResponse { problem, .. } if problem.contains("asked for 2 vectors")),
        "{err:?}"
    );

    let err = failing_with(|_| {
        axum::Json(json!({"data": [{"index": 0, "embedding": [1, 2, 3]}, {"index": 0, "embedding": [1, 2, 3]}]})).into_response()
    })
    .await;
    assert!(
        matches!(&err, EmbedError::BadResponse { problem, .. } if problem.contains("twice")),
        "{err:?}"
    );

    let err = failing_with(|_| {
        axum::Json(json!({"data": [{"index": 0, "embedding": [1, 2, 3]}, {"index": 5, "embedding": [1, 2, 3]}]})).into_response()
    })
    .await;
    assert!(
        matches!(&err, EmbedError::BadResponse { problem, .. } if problem.contains("out of range")),
        "{err:?}"
    );
}

#[tokio::test]
async fn answers_without_index_fields_are_taken_in_order() {
    let (server, _) = scripted(Arc::new(|_, inputs| {
        let data: Vec<Value> = inputs
            .iter()
            .map(|t| json!({"embedding": vector_of(t)}))
            .collect();
        axum::Json(json!({"data": data})).into_response()
    }))
    .await;
    let e = embedder(&server.url, SparkEmbedderConfig::new("mini"));
    let inputs = texts(5);
    let vectors = e.embed_documents(&inputs).await.unwrap();
    assert_eq!(vectors[4], vector_of(&inputs[4]));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let (server, seen) = scripted(Arc::new(|n, inputs| match n {
        1 => {
            let mut h = HeaderMap::new();
            h.insert("retry-after", "0".parse().unwrap());
            (StatusCode::TOO_MANY_REQUESTS, h, "slow down").into_response()
        }
        2 => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        _ => good_answer(inputs),
    }))
    .await;
    let e = embedder(&server.url, SparkEmbedderConfig::new("mini"));
    let v = e.embed_query("hello").await.unwrap();
    assert_eq!(v, vector_of("hello"));
    assert_eq!(seen.requests().len(), 3);
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let router = Router::new().route(
        "/v1/embeddings",
        post(|| async {
            std::future::pending::<()>().await;
        }),
    );
    let server = serve(router).await;
    let mut config = HttpClientConfig::new(&server.url);
    config.request_timeout = Duration::from_millis(150);
    config.max_retries = 0;
    let e = SparkEmbedder::new(
        HttpClient::new(config).unwrap(),
        SparkEmbedderConfig::new("mini"),
    )
    .unwrap();
    let err = e.embed_query("hello").await.unwrap_err();
    assert!(
        matches!(err, EmbedError::Http(HttpError::Timeout { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_model_error_lists_the_served_models() {
    let (server, _) = scripted(Arc::new(|_, _| {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "model not found"}})),
        )
            .into_response()
    }))
    .await;
    let e = embedder(&server.url, SparkEmbedderConfig::new("bge-m3"));
    let err = e.embed_query("hello").await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"bge-m3\"") && text.contains("mini, e5"),
        "{text}"
    );
    let err = e.verify_model().await.unwrap_err();
    assert!(err.to_string().contains("mini, e5"), "{err}");
    embedder(&server.url, SparkEmbedderConfig::new("e5"))
        .verify_model()
        .await
        .unwrap();
}

#[tokio::test]
async fn base64_answers_are_decoded() {
    let (server, _) = scripted(Arc::new(|_, inputs| {
        use base64::Engine as _;
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let bytes: Vec<u8> = vector_of(t).iter().flat_map(|v| v.to_le_bytes()).collect();
                json!({"index": i, "embedding": base64::engine::general_purpose::STANDARD.encode(bytes)})
            })
            .collect();
        axum::Json(json!({"data": data})).into_response()
    }))
    .await;
    let mut config = SparkEmbedderConfig::new("mini");
    config.encoding_format = EncodingFormat::Base64;
    let e = embedder(&server.url, config);
    let inputs = texts(7);
    let vectors = e.embed_documents(&inputs).await.unwrap();
    assert_eq!(vectors[6], vector_of(&inputs[6]));
}

#[tokio::test]
async fn empty_inputs_and_a_configured_dimension_are_checked_before_indexing() {
    let (server, seen) = scripted(Arc::new(|_, inputs| good_answer(inputs))).await;
    let e = embedder(&server.url, SparkEmbedderConfig::new("mini"));
    let err = e
        .embed_documents(&["ok".to_owned(), "  ".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, EmbedError::BadVector { input_index: 1, .. }),
        "{err:?}"
    );
    assert!(seen.requests().is_empty(), "nothing sent");

    let mut config = SparkEmbedderConfig::new("mini");
    config.expected_dimension = Some(384);
    let e = embedder(&server.url, config);
    assert_eq!(e.dimension().await.unwrap(), 384);
    let err = e.embed_query("hello").await.unwrap_err();
    assert!(err.to_string().contains("expected 384"), "{err}");
}

#[tokio::test]
async fn dimension_is_probed_when_unknown() {
    let (server, seen) = scripted(Arc::new(|_, inputs| good_answer(inputs))).await;
    let e = embedder(&server.url, SparkEmbedderConfig::new("mini"));
    assert_eq!(e.known_dimension(), None);
    assert_eq!(e.dimension().await.unwrap(), 3);
    assert_eq!(seen.requests().len(), 1);
    assert_eq!(e.dimension().await.unwrap(), 3);
    assert_eq!(seen.requests().len(), 1, "probed once");
}

#[tokio::test]
async fn self_signed_tls_needs_verification_off() {
    let router = Router::new().route(
        "/v1/embeddings",
        post(|body: axum::Json<Value>| async move {
            let inputs: Vec<String> = body.0["input"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            good_answer(&inputs)
        }),
    );
    let server = serve_tls(router).await;
    let mut config = HttpClientConfig::new(&server.url);
    config.max_retries = 0;
    let verified = SparkEmbedder::new(
        HttpClient::new(config.clone()).unwrap(),
        SparkEmbedderConfig::new("mini"),
    )
    .unwrap();
    let err = verified.embed_query("hello").await.unwrap_err();
    assert!(
        matches!(err, EmbedError::Http(HttpError::Tls { .. })),
        "{err:?}"
    );
    config.verify_tls = false;
    let trusting = SparkEmbedder::new(
        HttpClient::new(config).unwrap(),
        SparkEmbedderConfig::new("mini"),
    )
    .unwrap();
    assert_eq!(
        trusting.embed_query("hello").await.unwrap(),
        vector_of("hello")
    );
}

/// A server that, like some OpenAI-compatible ones, refuses `encoding_format` with 400.
async fn refusing_base64() -> (crate::support::TestServer, Arc<Mutex<Vec<bool>>>) {
    let asked: Arc<Mutex<Vec<bool>>> = Arc::default();
    let log = asked.clone();
    let router = Router::new().route(
        "/v1/embeddings",
        post(move |body: axum::Json<Value>| {
            let log = log.clone();
            async move {
                let base64 = body.0.get("encoding_format").is_some();
                log.lock().unwrap().push(base64);
                if base64 {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(
                            json!({"error": {"message": "unknown field `encoding_format`"}}),
                        ),
                    )
                        .into_response();
                }
                let inputs: Vec<String> = body.0["input"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
                good_answer(&inputs)
            }
        }),
    );
    (serve(router).await, asked)
}

#[tokio::test]
async fn base64_is_asked_for_by_default_and_a_refusal_falls_back_to_numbers_once() {
    let (server, asked) = refusing_base64().await;
    let mut config = SparkEmbedderConfig::new("mini");
    assert_eq!(config.encoding_format, EncodingFormat::Base64);
    config.max_batch_inputs = 4;
    // One request at a time, so the order of what was asked is fixed.
    let e = SparkEmbedder::new(client(&server.url, 1), config).unwrap();
    let inputs = texts(10);
    let vectors = e.embed_documents(&inputs).await.unwrap();
    assert_eq!(vectors.len(), 10);
    assert_eq!(vectors[9], vector_of(&inputs[9]));
    // Three batches: the first asked in base64, refused, asked again in numbers; the
    // other two in numbers straight away.
    assert_eq!(*asked.lock().unwrap(), vec![true, false, false, false]);
}

#[tokio::test]
async fn float_encoding_never_sends_the_parameter() {
    let (server, asked) = refusing_base64().await;
    let mut config = SparkEmbedderConfig::new("mini");
    config.encoding_format = EncodingFormat::Float;
    let e = embedder(&server.url, config);
    e.embed_documents(&texts(3)).await.unwrap();
    assert_eq!(*asked.lock().unwrap(), vec![false]);
}
