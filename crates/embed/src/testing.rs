//! A test and benchmark fixture: an OpenAI-compatible embeddings server that answers
//! instantly with deterministic vectors. **It is not a model.**
//!
//! [`InstantEmbeddingServer`] is a real HTTP server (axum, on `127.0.0.1`, a random port)
//! that speaks the two endpoints the embedders use:
//!
//! - `POST /v1/embeddings` with `{"model", "input": string | [string], "encoding_format":
//!   "float" | "base64", "dimensions"?}`, answered in OpenAI's shape (`data[i].embedding`,
//!   `data[i].index`, `usage`);
//! - `GET /v1/models`, listing the one model it serves.
//!
//! Each vector is [`instant_vector`] of the input text: hashed word features, L2-normalised,
//! of the configured dimension. The same text always gets the same vector, texts sharing
//! words get similar vectors (so searches in tests rank sensibly), and computing one takes
//! microseconds, so benchmarks that use this server measure the project rather than a
//! model. It exists for tests (here, in `sync-watermark`, `mcp-tools`, the binaries) and
//! for `crm-bench`; it is compiled only with the `testing` cargo feature.
//!
//! Failures are injected at runtime through [`FaultControls`], shared with the running
//! server: fail request number N, fail every request with a status, hang, answer with the
//! wrong dimension, or delay every answer.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use embed::testing::{InstantEmbeddingServer, InstantServerConfig};
//!
//! let server = InstantEmbeddingServer::start(InstantServerConfig::new(384)).await?;
//! let url = server.url(); // http://127.0.0.1:PORT, give it to the embedder as its base URL
//! server.controls().fail_request_number(3, 500); // the third request answers 500
//! # let _ = url;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// The model name the server answers to unless configured otherwise.
pub const INSTANT_MODEL: &str = "crm-substrate/instant-hash-embedding";

/// How the fixture server behaves at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstantServerConfig {
    /// Size of every vector (at least 1).
    pub dim: usize,
    /// The model name listed by `/v1/models`. Requests naming another model get 404 with
    /// an OpenAI-style error, as a real server would answer.
    pub model: String,
    /// When set, requests must carry `Authorization: Bearer <key>`, else 401.
    pub api_key: Option<String>,
}

impl InstantServerConfig {
    /// A server of dimension `dim`, model [`INSTANT_MODEL`], no key.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            model: INSTANT_MODEL.to_owned(),
            api_key: None,
        }
    }
}

/// Knobs that change the running server's behaviour; every method takes effect for the
/// next request. Shared by all clones of the server handle.
#[derive(Debug, Default)]
pub struct FaultControls {
    /// Requests to `/v1/embeddings` received so far (answered or not).
    requests: AtomicU64,
    /// Texts embedded so far (successful answers only).
    inputs: AtomicU64,
    /// `(request number, status)` of the one-shot failure; 0 means none.
    fail_number: AtomicU64,
    fail_number_status: AtomicU16,
    /// Status every request fails with; 0 means none.
    fail_all_status: AtomicU16,
    /// Requests wait until this is cleared.
    hang: AtomicBool,
    hang_released: Notify,
    /// Vector size to answer with instead of the configured one; 0 means none.
    wrong_dim: AtomicUsize,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
}

impl FaultControls {
    /// Makes request number `n` (1-based, counted from the server's start) fail with
    /// `status`. Replaces any earlier one-shot failure.
    pub fn fail_request_number(&self, n: u64, status: u16) {
        self.fail_number_status.store(status, Ordering::SeqCst);
        self.fail_number.store(n, Ordering::SeqCst);
    }

    /// Makes the request after the ones received so far fail with `status`, and returns
    /// its number.
    pub fn fail_next_request(&self, status: u16) -> u64 {
        let n = self.requests() + 1;
        self.fail_request_number(n, status);
        n
    }

    /// Makes every request fail with `status` until [`FaultControls::reset`] or
    /// `fail_all(None)`.
    pub fn fail_all(&self, status: Option<u16>) {
        self.fail_all_status
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Makes requests wait without answering (`true`) or releases them (`false`).
    pub fn hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
        if !hang {
            self.hang_released.notify_waiters();
        }
    }

    /// Answers with vectors of `dim` components instead of the configured size
    /// (`None` restores it).
    pub fn wrong_dimension(&self, dim: Option<usize>) {
        self.wrong_dim.store(dim.unwrap_or(0), Ordering::SeqCst);
    }

    /// Waits `delay` before answering each request.
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Clears every fault (the counters keep counting).
    pub fn reset(&self) {
        self.fail_number.store(0, Ordering::SeqCst);
        self.fail_all(None);
        self.wrong_dimension(None);
        self.delay(Duration::ZERO);
        self.hang(false);
    }

    /// Requests to `/v1/embeddings` received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Texts embedded in successful answers so far.
    pub fn inputs_embedded(&self) -> u64 {
        self.inputs.load(Ordering::SeqCst)
    }
}

struct Shared {
    config: InstantServerConfig,
    controls: Arc<FaultControls>,
}

/// A running fixture server. Dropping it stops the server.
pub struct InstantEmbeddingServer {
    url: String,
    addr: SocketAddr,
    controls: Arc<FaultControls>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for InstantEmbeddingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstantEmbeddingServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl InstantEmbeddingServer {
    /// Starts the server on the current tokio runtime.
    pub async fn start(config: InstantServerConfig) -> std::io::Result<Self> {
        check_config(&config)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let controls = Arc::new(FaultControls::default());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, router(config, controls.clone()), stopped));
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            controls,
            stop: Some(stop),
            thread: None,
        })
    }

    /// Starts the server on a thread of its own, with its own single-threaded runtime:
    /// for callers without a tokio runtime (blocking tests, benchmarks).
    pub fn start_background(config: InstantServerConfig) -> std::io::Result<Self> {
        check_config(&config)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let controls = Arc::new(FaultControls::default());
        let app = router(config, controls.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("instant-embeddings".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, app, stopped).await,
                        Err(err) => {
                            tracing::error!(error = %err, "instant embedding server could not listen");
                        }
                    }
                });
            })?;
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            controls,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Base URL, `http://127.0.0.1:PORT` (the embeddings endpoint is `{url}/v1/embeddings`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The fault knobs and counters of this server.
    pub fn controls(&self) -> &Arc<FaultControls> {
        &self.controls
    }
}

impl Drop for InstantEmbeddingServer {
    fn drop(&mut self) {
        // Release hanging requests so that the graceful shutdown can finish.
        self.controls.hang(false);
        if let Some(stop) = self.stop.take() {
            // The server may already be gone; nothing to do then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

fn check_config(config: &InstantServerConfig) -> std::io::Result<()> {
    if config.dim == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the instant embedding server needs a dimension of at least 1",
        ));
    }
    Ok(())
}

async fn serve(listener: TcpListener, app: Router, stopped: oneshot::Receiver<()>) {
    let shutdown = async move {
        // Either a stop signal or the handle being dropped without one ends the server.
        let _ = stopped.await;
    };
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %err, "instant embedding server stopped with an error");
    }
}

fn router(config: InstantServerConfig, controls: Arc<FaultControls>) -> Router {
    let shared = Arc::new(Shared { config, controls });
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .with_state(shared)
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": status.as_u16()}})),
    )
        .into_response()
}

fn authorised(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(key) = &shared.config.api_key else {
        return true;
    };
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given == key)
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorised(&shared, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong bearer key".to_owned(),
        );
    }
    Json(json!({
        "object": "list",
        "data": [{
            "id": shared.config.model,
            "object": "model",
            "created": 0,
            "owned_by": "crm-substrate-testing",
        }],
    }))
    .into_response()
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let controls = &shared.controls;
    let number = controls.requests.fetch_add(1, Ordering::SeqCst) + 1;

    let delay = controls.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    while controls.hang.load(Ordering::SeqCst) {
        let released = controls.hang_released.notified();
        if !controls.hang.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    if controls.fail_number.load(Ordering::SeqCst) == number {
        let status = StatusCode::from_u16(controls.fail_number_status.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(
            status,
            "server_error",
            format!("injected failure of request {number}"),
        );
    }
    let fail_all = controls.fail_all_status.load(Ordering::SeqCst);
    if fail_all != 0 {
        let status = StatusCode::from_u16(fail_all).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error(status, "server_error", "injected failure".to_owned());
    }
    if !authorised(&shared, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong bearer key".to_owned(),
        );
    }

    let request: EmbeddingsRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("request body is not a valid embeddings request: {err}"),
            );
        }
    };
    if request.model != shared.config.model {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{}` does not exist", request.model),
        );
    }
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if texts.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "input must not be empty".to_owned(),
        );
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("unknown encoding_format {other:?}"),
            );
        }
    };
    let dim = match controls.wrong_dim.load(Ordering::SeqCst) {
        0 => request.dimensions.unwrap_or(shared.config.dim).max(1),
        wrong => wrong,
    };

    let mut tokens = 0u64;
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            tokens += words(text).count() as u64;
            let vector = instant_vector(text, dim);
            let embedding = if base64 {
                Value::String(encode_base64_f32(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    controls
        .inputs
        .fetch_add(texts.len() as u64, Ordering::SeqCst);
    Json(json!({
        "object": "list",
        "data": data,
        "model": shared.config.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// FNV-1a, 64 bits: fixed, seedless, so vectors are the same in every process.
fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The vector the fixture server answers for `text`: each lowercased word adds ±1 to two
/// hashed components, and the sum is L2-normalised. A text without words gets a unit
/// vector on a component chosen by hashing the whole text, so no vector is ever all zeros.
/// `dim` 0 is treated as 1.
pub fn instant_vector(text: &str, dim: usize) -> Vec<f32> {
    let dim = dim.max(1);
    let mut vector = vec![0f32; dim];
    let modulus = dim as u64;
    for word in words(text) {
        let hash = fnv1a64(word.chars().flat_map(char::to_lowercase).flat_map(|c| {
            let mut buf = [0u8; 4];
            let len = c.encode_utf8(&mut buf).len();
            buf.into_iter().take(len)
        }));
        let second = hash.rotate_left(29).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for h in [hash, second] {
            let index = usize::try_from(h % modulus).unwrap_or(0);
            vector[index] += if h >> 63 == 1 { -1.0 } else { 1.0 };
        }
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for v in &mut vector {
            *v /= norm;
        }
    } else {
        let index = usize::try_from(fnv1a64(text.bytes()) % modulus).unwrap_or(0);
        vector.fill(0.0);
        vector[index] = 1.0;
    }
    vector
}

/// Little-endian f32s in standard base64, as OpenAI's `encoding_format: "base64"`.
fn encode_base64_f32(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(*s & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_and_word_based() {
        let a = instant_vector("Ada Lovelace, analyst", 64);
        assert_eq!(a, instant_vector("ada LOVELACE analyst!", 64));
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_ne!(a, instant_vector("Charles Babbage", 64));
        for text in ["", "   ", "!!!", "—"] {
            let v = instant_vector(text, 8);
            assert_eq!(v.iter().filter(|x| **x == 1.0).count(), 1, "{text:?}");
        }
        assert_eq!(instant_vector("x", 0).len(), 1);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        // 1.0f32 little-endian is 00 00 80 3f.
        assert_eq!(encode_base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(encode_base64_f32(&[]), "");
    }

    fn client(url: &str) -> crate::http::HttpClient {
        let mut config = crate::http::HttpClientConfig::new(url);
        config.max_retries = 0;
        config.request_timeout = Duration::from_secs(10);
        crate::http::HttpClient::new(config).expect("client")
    }

    fn request(texts: &[&str]) -> Value {
        json!({"model": INSTANT_MODEL, "input": texts})
    }

    fn vectors(answer: &Value) -> Vec<Vec<f32>> {
        answer["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|d| {
                d["embedding"]
                    .as_array()
                    .expect("embedding")
                    .iter()
                    .map(|x| x.as_f64().expect("number") as f32)
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn answers_the_openai_protocol_with_the_documented_vectors() {
        let server = InstantEmbeddingServer::start(InstantServerConfig::new(16))
            .await
            .expect("start");
        let client = client(server.url());
        let models = client.list_models().await.expect("models");
        assert_eq!(models, vec![INSTANT_MODEL.to_owned()]);

        let answer: Value = client
            .post_json("/v1/embeddings", &request(&["alpha beta", "gamma"]))
            .await
            .expect("embeddings");
        assert_eq!(answer["data"][1]["index"], 1);
        assert_eq!(
            vectors(&answer),
            vec![
                instant_vector("alpha beta", 16),
                instant_vector("gamma", 16)
            ]
        );
        assert_eq!(server.controls().requests(), 1);
        assert_eq!(server.controls().inputs_embedded(), 2);

        let single: Value = client
            .post_json(
                "/v1/embeddings",
                &json!({"model": INSTANT_MODEL, "input": "gamma", "encoding_format": "base64"}),
            )
            .await
            .expect("base64");
        assert_eq!(
            single["data"][0]["embedding"],
            json!(encode_base64_f32(&instant_vector("gamma", 16)))
        );

        let wrong_model = client
            .post_json::<_, Value>("/v1/embeddings", &json!({"model": "nope", "input": "x"}))
            .await
            .expect_err("unknown model");
        assert_eq!(wrong_model.status(), Some(404));
    }

    #[tokio::test]
    async fn faults_can_be_flipped_at_runtime() {
        let server = InstantEmbeddingServer::start(InstantServerConfig::new(8))
            .await
            .expect("start");
        let client = client(server.url());
        let controls = server.controls();

        let n = controls.fail_next_request(500);
        assert_eq!(n, 1);
        let err = client
            .post_json::<_, Value>("/v1/embeddings", &request(&["a"]))
            .await
            .expect_err("injected");
        assert_eq!(err.status(), Some(500));
        // One-shot: the next request succeeds.
        client
            .post_json::<_, Value>("/v1/embeddings", &request(&["a"]))
            .await
            .expect("recovered");

        controls.wrong_dimension(Some(3));
        let answer: Value = client
            .post_json("/v1/embeddings", &request(&["a"]))
            .await
            .expect("wrong dim");
        assert_eq!(vectors(&answer)[0].len(), 3);
        controls.wrong_dimension(None);

        controls.fail_all(Some(503));
        for _ in 0..2 {
            let err = client
                .post_json::<_, Value>("/v1/embeddings", &request(&["a"]))
                .await
                .expect_err("all fail");
            assert_eq!(err.status(), Some(503));
        }
        controls.reset();

        controls.hang(true);
        let pending = {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .post_json::<_, Value>("/v1/embeddings", &request(&["late"]))
                    .await
            })
        };
        // Wait until the server has the request, then release it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while controls.requests() < 6 {
            assert!(
                std::time::Instant::now() < deadline,
                "request never arrived"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!pending.is_finished());
        controls.hang(false);
        let answer = pending.await.expect("join").expect("released");
        assert_eq!(vectors(&answer)[0], instant_vector("late", 8));
    }

    #[test]
    fn background_server_works_without_a_runtime() {
        let server = InstantEmbeddingServer::start_background(InstantServerConfig {
            api_key: Some("k".to_owned()),
            ..InstantServerConfig::new(4)
        })
        .expect("start");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let err = client(server.url())
                .list_models()
                .await
                .expect_err("no key");
            assert_eq!(err.status(), Some(401));
            let mut config = crate::http::HttpClientConfig::new(server.url());
            config.api_key = Some(crate::http::ApiKey::new("k"));
            let client = crate::http::HttpClient::new(config).expect("client");
            assert_eq!(client.list_models().await.expect("models").len(), 1);
        });
        drop(server);
    }
}
