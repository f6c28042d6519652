//! The shared HTTP layer against real servers on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use embed::http::{ApiKey, HttpClient, HttpClientConfig, HttpError};
use serde_json::{Value, json};

use crate::support::{dead_port, serve, serve_tls};

fn fast_config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.initial_backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(50);
    config.max_retries = 3;
    config.request_timeout = Duration::from_secs(10);
    config
}

#[derive(Clone, Default)]
struct Hits(Arc<AtomicUsize>);

impl Hits {
    fn next(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn server_error_then_success_is_retried() {
    let hits = Hits::default();
    let h = hits.clone();
    let router = Router::new().route(
        "/v1/echo",
        post(move |body: axum::Json<Value>| {
            let h = h.clone();
            async move {
                if h.next() < 3 {
                    (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
                } else {
                    axum::Json(json!({"got": body.0})).into_response()
                }
            }
        }),
    );
    let server = serve(router).await;
    let client = HttpClient::new(fast_config(&server.url)).unwrap();
    let answer: Value = client.post_json("v1/echo", &json!({"x": 1})).await.unwrap();
    assert_eq!(answer, json!({"got": {"x": 1}}));
    assert_eq!(hits.count(), 3);
}

#[tokio::test]
async fn persistent_server_error_gives_up_after_max_retries() {
    let hits = Hits::default();
    let h = hits.clone();
    let router = Router::new().route(
        "/v1/echo",
        post(move || {
            let h = h.clone();
            async move {
                h.next();
                (StatusCode::BAD_GATEWAY, "upstream down")
            }
        }),
    );
    let server = serve(router).await;
    let client = HttpClient::new(fast_config(&server.url)).unwrap();
    let err = client
        .post_json::<_, Value>("/v1/echo", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(hits.count(), 4, "1 attempt + 3 retries");
    let text = err.to_string();
    assert!(text.contains("/v1/echo"), "{text}");
    assert!(text.contains("502"), "{text}");
    assert!(text.contains("upstream down"), "{text}");
    assert!(text.contains("4 attempt"), "{text}");
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let hits = Hits::default();
    let h = hits.clone();
    let router = Router::new().route(
        "/v1/models",
        get(move || {
            let h = h.clone();
            async move {
                if h.next() == 1 {
                    let mut headers = HeaderMap::new();
                    headers.insert("retry-after", "1".parse().unwrap());
                    (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response()
                } else {
                    axum::Json(json!({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]}))
                        .into_response()
                }
            }
        }),
    );
    let server = serve(router).await;
    let mut config = fast_config(&server.url);
    // The cap must allow the server's one second, else the client would come back early.
    config.max_backoff = Duration::from_secs(5);
    let client = HttpClient::new(config).unwrap();
    let models = client.list_models().await.unwrap();
    assert_eq!(models, ["m1", "m2"]);
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_never_show_the_key() {
    let hits = Hits::default();
    let h = hits.clone();
    let router = Router::new().route(
        "/v1/echo",
        post(move |headers: HeaderMap| {
            let h = h.clone();
            async move {
                h.next();
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if auth == "Bearer sk-right" {
                    (StatusCode::OK, "{}").into_response()
                } else {
                    (StatusCode::UNAUTHORIZED, "bad key").into_response()
                }
            }
        }),
    );
    let server = serve(router).await;
    let mut config = fast_config(&server.url);
    config.api_key = Some(ApiKey::new("sk-wrong-secret"));
    let client = HttpClient::new(config).unwrap();
    let err = client
        .post_json::<_, Value>("v1/echo", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(hits.count(), 1, "401 is final");
    let text = format!("{err} {err:?}");
    assert!(text.contains("check the API key"), "{text}");
    assert!(!text.contains("sk-wrong-secret"), "{text}");

    let mut config = fast_config(&server.url);
    config.api_key = Some(ApiKey::new("sk-right"));
    let client = HttpClient::new(config).unwrap();
    let ok: Value = client.post_json("v1/echo", &json!({})).await.unwrap();
    assert_eq!(ok, json!({}));
}

#[tokio::test]
async fn invalid_json_body_is_a_final_error_with_a_preview() {
    let hits = Hits::default();
    let h = hits.clone();
    let router = Router::new().route(
        "/v1/models",
        get(move || {
            let h = h.clone();
            async move {
                h.next();
                "<html>proxy login</html>"
            }
        }),
    );
    let server = serve(router).await;
    let client = HttpClient::new(fast_config(&server.url)).unwrap();
    let err = client.list_models().await.unwrap_err();
    assert!(matches!(err, HttpError::InvalidBody { .. }), "{err:?}");
    assert!(err.to_string().contains("proxy login"), "{err}");
    assert_eq!(hits.count(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let hits = Hits::default();
    let h = hits.clone();
    let router = Router::new().route(
        "/v1/echo",
        post(move || {
            let h = h.clone();
            async move {
                h.next();
                std::future::pending::<()>().await;
            }
        }),
    );
    let server = serve(router).await;
    let mut config = fast_config(&server.url);
    config.request_timeout = Duration::from_millis(200);
    config.max_retries = 1;
    let client = HttpClient::new(config).unwrap();
    let err = client
        .post_json::<_, Value>("v1/echo", &json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::Timeout { attempts: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn a_dead_endpoint_is_a_connect_error_naming_it() {
    let port = dead_port().await;
    let url = format!("http://127.0.0.1:{port}");
    let client = HttpClient::new(fast_config(&url)).unwrap();
    let err = client.list_models().await.unwrap_err();
    assert!(
        matches!(err, HttpError::Connect { attempts: 4, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&format!("127.0.0.1:{port}/v1/models")),
        "{text}"
    );
    assert!(text.contains("server is running"), "{text}");
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let router = Router::new().route(
        "/v1/echo",
        post(move || {
            let (f, p) = (f.clone(), p.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                // Simulated work, so that overlapping requests would be seen.
                tokio::time::sleep(Duration::from_millis(20)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                "{}"
            }
        }),
    );
    let server = serve(router).await;
    let mut config = fast_config(&server.url);
    config.max_concurrency = 2;
    let client = HttpClient::new(config).unwrap();
    let body = json!({});
    let calls = (0..12).map(|_| client.post_json::<_, Value>("v1/echo", &body));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

fn models_router() -> Router {
    Router::new()
        .route(
            "/v1/models",
            get(|| async {
                axum::Json(json!({"object": "list", "data": [{"id": "bge-m3"}, {"id": "qwen3"}]}))
            }),
        )
        .route(
            "/v1/embeddings",
            post(|| async { (StatusCode::NOT_FOUND, "model not found") }),
        )
}

#[tokio::test]
async fn a_missing_model_error_lists_what_the_server_offers() {
    let server = serve(models_router()).await;
    let client = HttpClient::new(fast_config(&server.url)).unwrap();
    let offered = client.list_models().await.unwrap();
    client.ensure_model_offered("qwen3", &offered).unwrap();
    let err = client
        .ensure_model_offered("e5-large", &offered)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\"e5-large\""), "{text}");
    assert!(text.contains("bge-m3, qwen3"), "{text}");

    let raw = client
        .post_json::<_, Value>("v1/embeddings", &json!({"model": "e5-large"}))
        .await
        .unwrap_err();
    assert_eq!(raw.status(), Some(404));
    let explained = client.explain_model_error("e5-large", raw).await;
    assert!(
        matches!(&explained, HttpError::ModelNotFound { available, .. } if available.len() == 2),
        "{explained:?}"
    );
    // A listed model keeps the original error.
    let raw = client
        .post_json::<_, Value>("v1/embeddings", &json!({"model": "qwen3"}))
        .await
        .unwrap_err();
    let kept = client.explain_model_error("qwen3", raw).await;
    assert_eq!(kept.status(), Some(404));
}

#[tokio::test]
async fn self_signed_tls_fails_when_verified_and_works_when_not() {
    let server = serve_tls(models_router()).await;
    assert!(server.url.starts_with("https://"));

    let mut config = fast_config(&server.url);
    config.max_retries = 2;
    let client = HttpClient::new(config).unwrap();
    let err = client.list_models().await.unwrap_err();
    assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("verify_tls = false"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    let mut config = fast_config(&server.url);
    config.verify_tls = false;
    let client = HttpClient::new(config).unwrap();
    assert_eq!(client.list_models().await.unwrap(), ["bge-m3", "qwen3"]);
}
