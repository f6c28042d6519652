//! A test and benchmark fixture: an OpenAI-compatible chat server whose answers are
//! scripted. **It is not a model.**
//!
//! [`ScriptedChatServer`] is a real HTTP server (axum, on `127.0.0.1`, a random port)
//! speaking `POST /v1/chat/completions` and `GET /v1/models`. Each completion request is
//! handed to a [`Responder`] together with the entity pair named in the prompt, and the
//! responder decides what comes back: a message content (valid JSON, prose, a thinking
//! block, anything), an error status with an optional `Retry-After`, a raw body, a
//! delay, or a hang. That is enough to play a perfect "oracle" that answers from ground
//! truth, a model that never answers, or a server that answers instantly for
//! `crm-bench fuzzy`.
//!
//! The server counts requests and the most requests it held in flight at once, so a
//! caller can check that the client's concurrency limit was honoured. It is compiled
//! only with the `testing` cargo feature.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fuzzy_llm::testing::{Reply, ScriptedChatServer, SeenRequest, answer_json};
//!
//! let server = ScriptedChatServer::start("judge", |request: &SeenRequest, _n| match request.pair() {
//!     Some((a, b)) => Reply::content(answer_json(a, b, false, 0.9, "different people")),
//!     None => Reply::status(400, "no pair in the prompt"),
//! })
//! .await?;
//! let url = server.url(); // give it to the chat client as its base URL
//! # let _ = url;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One chat request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenRequest {
    /// The JSON body.
    pub body: Value,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// `entity_a` and `entity_b` named in the prompt, if the prompt is `fuzzy-llm`'s.
    pub pair: Option<(String, String)>,
}

impl SeenRequest {
    /// The entity pair the prompt asks about.
    pub fn pair(&self) -> Option<(&str, &str)> {
        self.pair.as_ref().map(|(a, b)| (a.as_str(), b.as_str()))
    }

    /// The concatenated message contents.
    pub fn prompt_text(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

/// What the server does with one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 200 with an OpenAI completion whose message content is this text.
    Content(String),
    /// 200 with a completion whose message content is `null` and this `finish_reason`.
    NoContent(String),
    /// This status, with this body and an optional `Retry-After` header.
    Status {
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        body: String,
        /// `Retry-After`, verbatim.
        retry_after: Option<String>,
    },
    /// 200 with this body verbatim (not OpenAI's shape, not even JSON).
    RawBody(String),
    /// Wait, then do the inner thing.
    Delayed(Duration, Box<Reply>),
    /// Wait until at least `at_least` requests are in flight (or `max_wait` passed),
    /// then do the inner thing: a barrier that shows how many requests a client sends at
    /// once without guessing with timers.
    AfterInFlight {
        /// Requests in flight to wait for, this one included.
        at_least: u64,
        /// Give up waiting after this long.
        max_wait: Duration,
        /// What to do then.
        then: Box<Reply>,
    },
    /// Never answer.
    Hang,
}

impl Reply {
    /// 200 with this message content.
    pub fn content(text: impl Into<String>) -> Self {
        Self::Content(text.into())
    }

    /// An error status with a body.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self::Status {
            status,
            body: body.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: <seconds>`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self::Status {
            status: 429,
            body: r#"{"error":{"message":"rate limited","type":"rate_limit"}}"#.to_owned(),
            retry_after: Some(retry_after_secs.to_string()),
        }
    }
}

/// Decides the reply to a request; gets the request and its 1-based number.
pub trait Responder: Send + Sync + 'static {
    /// The reply to request number `n`.
    fn reply(&self, request: &SeenRequest, n: u64) -> Reply;
}

impl<F> Responder for F
where
    F: Fn(&SeenRequest, u64) -> Reply + Send + Sync + 'static,
{
    fn reply(&self, request: &SeenRequest, n: u64) -> Reply {
        self(request, n)
    }
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct ServerStats {
    requests: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    keep_requests: std::sync::atomic::AtomicBool,
    seen: Mutex<Vec<SeenRequest>>,
    arrived: tokio::sync::Notify,
}

impl ServerStats {
    /// Chat requests received so far (answered or not).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Chat requests being handled right now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most chat requests handled at once since the start.
    pub fn max_in_flight(&self) -> u64 {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every chat request received, in arrival order (empty when keeping them was
    /// switched off).
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Keep (the default) or stop keeping a copy of every request; a benchmark sending
    /// many thousands of requests switches it off.
    pub fn keep_requests(&self, keep: bool) {
        self.keep_requests.store(keep, Ordering::SeqCst);
    }
}

struct InFlight<'a>(&'a ServerStats);

impl<'a> InFlight<'a> {
    fn enter(stats: &'a ServerStats) -> Self {
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        stats.arrived.notify_waiters();
        Self(stats)
    }
}

impl Drop for InFlight<'_> {
    // Runs also when the client gives up and the handler is dropped mid-hang.
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared {
    model: String,
    api_key: Option<String>,
    responder: Box<dyn Responder>,
    stats: Arc<ServerStats>,
}

/// A running scripted server. Dropping it stops the server.
pub struct ScriptedChatServer {
    url: String,
    addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ScriptedChatServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedChatServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// How the fixture is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedServerConfig {
    /// The model listed by `/v1/models`; a request for another model gets 404.
    pub model: String,
    /// When set, requests must carry `Authorization: Bearer <key>`, else 401.
    pub api_key: Option<String>,
}

impl ScriptedServerConfig {
    /// A server for `model`, without a key.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            api_key: None,
        }
    }
}

impl ScriptedChatServer {
    /// Starts a server for `model` on the current tokio runtime.
    pub async fn start(model: &str, responder: impl Responder) -> std::io::Result<Self> {
        Self::start_with(ScriptedServerConfig::new(model), responder).await
    }

    /// Starts a server on the current tokio runtime.
    pub async fn start_with(
        config: ScriptedServerConfig,
        responder: impl Responder,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (app, stats) = router(config, responder);
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(serve(listener, app, stopped));
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            stats,
            stop: Some(stop),
            thread: None,
        })
    }

    /// Starts the server on a thread of its own with its own runtime (`workers` threads,
    /// at least 1): for callers without a tokio runtime, and for benchmarks that must not
    /// share the client's threads.
    pub fn start_background(
        config: ScriptedServerConfig,
        responder: impl Responder,
        workers: usize,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (app, stats) = router(config, responder);
        let runtime = if workers <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("scripted-chat".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, app, stopped).await,
                        Err(err) => {
                            tracing::error!(error = %err, "scripted chat server could not listen");
                        }
                    }
                });
            })?;
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's counters and the requests it saw.
    pub fn stats(&self) -> &Arc<ServerStats> {
        &self.stats
    }
}

impl Drop for ScriptedChatServer {
    fn drop(&mut self) {
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

async fn serve(listener: TcpListener, app: Router, stopped: oneshot::Receiver<()>) {
    let shutdown = async move {
        let _ = stopped.await;
    };
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %err, "scripted chat server stopped with an error");
    }
}

/// The server's routes, to serve elsewhere (e.g. behind TLS in a test), and its stats.
pub fn router(
    config: ScriptedServerConfig,
    responder: impl Responder,
) -> (Router, Arc<ServerStats>) {
    let stats = Arc::new(ServerStats::default());
    stats.keep_requests(true);
    let shared = Arc::new(Shared {
        model: config.model,
        api_key: config.api_key,
        responder: Box::new(responder),
        stats: stats.clone(),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(models))
        .with_state(shared);
    (app, stats)
}

fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let key = shared.api_key.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    (given != Some(&format!("Bearer {key}"))).then(|| {
        openai_error(
            StatusCode::UNAUTHORIZED,
            "invalid api key",
            "invalid_request_error",
        )
    })
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(denied) = unauthorized(&shared, &headers) {
        return denied;
    }
    Json(json!({
        "object": "list",
        "data": [{"id": shared.model, "object": "model", "owned_by": "crm-substrate-testing"}]
    }))
    .into_response()
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let stats = &shared.stats;
    let n = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = InFlight::enter(stats);
    if let Some(denied) = unauthorized(&shared, &headers) {
        return denied;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "body is not JSON",
            "invalid_request_error",
        );
    };
    if body["model"].as_str() != Some(shared.model.as_str()) {
        return openai_error(
            StatusCode::NOT_FOUND,
            &format!("The model `{}` does not exist", body["model"]),
            "model_not_found",
        );
    }
    let request = SeenRequest {
        pair: pair_in_prompt(&body),
        authorization: headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    };
    let reply = shared.responder.reply(&request, n);
    if stats.keep_requests.load(Ordering::SeqCst)
        && let Ok(mut seen) = stats.seen.lock()
    {
        seen.push(request);
    }
    respond(&shared.model, stats, reply).await
}

async fn respond(model: &str, stats: &ServerStats, mut reply: Reply) -> Response {
    loop {
        match reply {
            Reply::AfterInFlight {
                at_least,
                max_wait,
                then,
            } => {
                let deadline = tokio::time::Instant::now() + max_wait;
                loop {
                    let arrived = stats.arrived.notified();
                    if stats.in_flight() >= at_least {
                        break;
                    }
                    if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                        break;
                    }
                }
                reply = *then;
            }
            Reply::Delayed(wait, inner) => {
                tokio::time::sleep(wait).await;
                reply = *inner;
            }
            Reply::Hang => std::future::pending::<()>().await,
            Reply::Content(text) => {
                return Json(completion(model, Some(&text), "stop")).into_response();
            }
            Reply::NoContent(finish) => {
                return Json(completion(model, None, &finish)).into_response();
            }
            Reply::RawBody(text) => {
                return ([(header::CONTENT_TYPE, "application/json")], text).into_response();
            }
            Reply::Status {
                status,
                body,
                retry_after,
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response = (status, body).into_response();
                if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
        }
    }
}

fn openai_error(status: StatusCode, message: &str, kind: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": kind}})),
    )
        .into_response()
}

/// A chat completion body in OpenAI's shape.
pub fn completion(model: &str, content: Option<&str>, finish_reason: &str) -> Value {
    json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": finish_reason
        }],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

/// A valid answer in the schema `fuzzy-llm` asks for.
pub fn answer_json(
    entity_a: &str,
    entity_b: &str,
    same: bool,
    confidence: f64,
    reason: &str,
) -> String {
    json!({
        "entity_a": entity_a,
        "entity_b": entity_b,
        "reason": reason,
        "same_entity": same,
        "confidence": confidence
    })
    .to_string()
}

/// The `(entity_a, entity_b)` a `fuzzy-llm` prompt asks about: the ids after
/// `Record A (entity_id ` and `Record B (entity_id `.
pub fn pair_in_prompt(body: &Value) -> Option<(String, String)> {
    let messages = body["messages"].as_array()?;
    let user = messages.iter().rev().find(|m| m["role"] == "user")?["content"].as_str()?;
    let id_after = |marker: &str| -> Option<String> {
        let rest = &user[user.find(marker)? + marker.len()..];
        let end = rest.find(')')?;
        serde_json::from_str::<String>(&rest[..end]).ok()
    };
    Some((
        id_after("Record A (entity_id ")?,
        id_after("Record B (entity_id ")?,
    ))
}
