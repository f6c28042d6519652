//! The one HTTP client for OpenAI-compatible servers (Spark Control and friends).
//!
//! [`HttpClient`] wraps a `reqwest` client built from an [`HttpClientConfig`] and adds
//! what every caller of a model server needs: a bearer key that never shows up in logs,
//! `Debug` output or errors; a bounded number of requests in flight; and retries with
//! exponential backoff and jitter, driven by a [`RetryPolicy`] that sorts each failure
//! into *retry* (connect errors, timeouts, 5xx), *retry after* (429/503 with a
//! `Retry-After` header) or *give up* (other 4xx, a body that is not the expected JSON,
//! a certificate the client refuses).
//!
//! ```no_run
//! # async fn demo() -> Result<(), embed::http::HttpError> {
//! use embed::http::{ApiKey, HttpClient, HttpClientConfig};
//!
//! let mut config = HttpClientConfig::new("https://spark.local:8443");
//! config.api_key = Some(ApiKey::new("sk-..."));
//! config.verify_tls = false; // self-signed certificate
//! let client = HttpClient::new(config)?;
//! let models = client.list_models().await?;
//! client.ensure_model_offered("bge-m3", &models)?;
//! # Ok(()) }
//! ```

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

/// How many bytes of a response body an error message quotes.
const BODY_PREVIEW_BYTES: usize = 300;

/// A bearer key. Its `Debug` and `Display` print `<redacted>`; only
/// [`ApiKey::expose`] returns the secret, and only the request builder calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a secret key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything needed to talk to one OpenAI-compatible server.
///
/// `base_url` may be given with or without a trailing `/v1` (`https://host:8443`,
/// `https://host:8443/v1` and `https://host/prefix/v1/` all work): the client strips one
/// trailing `/v1` and appends the full API path (`/v1/embeddings`) itself.
#[derive(Clone, Debug)]
pub struct HttpClientConfig {
    /// Root URL of the server, `http` or `https`.
    pub base_url: String,
    /// Bearer key sent as `Authorization: Bearer …`, if the server wants one.
    pub api_key: Option<ApiKey>,
    /// Verify the server's TLS certificate. `false` accepts any certificate (Spark
    /// Control's is self-signed); nothing else about the client changes.
    pub verify_tls: bool,
    /// Limit for establishing a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit for one attempt of one request, from sending to the last body byte.
    pub request_timeout: Duration,
    /// Retries after the first attempt, for failures the policy says are worth retrying.
    pub max_retries: u32,
    /// Backoff before the first retry; doubles with each further retry.
    pub initial_backoff: Duration,
    /// Upper bound of any backoff, including a server's `Retry-After`.
    pub max_backoff: Duration,
    /// Requests in flight at once through this client (at least 1).
    pub max_concurrency: usize,
}

impl HttpClientConfig {
    /// A config for `base_url` with the defaults: no key, TLS verified, 10 s connect and
    /// 120 s request timeouts, 4 retries backing off from 500 ms to 30 s, 4 requests in
    /// flight.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            verify_tls: true,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_concurrency: 4,
        }
    }

    /// The retry policy these settings describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Transient: try again after the policy's backoff.
    Retry,
    /// The server said when to come back (already capped by the policy).
    RetryAfter(Duration),
    /// Trying again cannot help.
    GiveUp,
}

/// Which failures are retried, how often, and how long to wait in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of any wait.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Classifies an HTTP error status. 429 and 503 honour `Retry-After` (seconds or an
    /// HTTP date, capped at `max_backoff`); 408 and other 5xx are retried with backoff;
    /// every other status is final.
    pub fn classify_status(&self, status: StatusCode, headers: &HeaderMap) -> RetryDecision {
        match status.as_u16() {
            429 | 503 => match parse_retry_after(headers, SystemTime::now()) {
                Some(wait) => RetryDecision::RetryAfter(wait.min(self.max_backoff)),
                None => RetryDecision::Retry,
            },
            408 | 500..=599 => RetryDecision::Retry,
            _ => RetryDecision::GiveUp,
        }
    }

    /// Classifies a transport error: timeouts and connection failures are retried,
    /// except a TLS certificate the client refuses, which no retry will fix.
    pub fn classify_transport(&self, error: &reqwest::Error) -> RetryDecision {
        if tls_failure(error).is_some() {
            RetryDecision::GiveUp
        } else if error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
        {
            RetryDecision::Retry
        } else {
            RetryDecision::GiveUp
        }
    }

    /// The wait before retry number `retry` (1-based): `initial * 2^(retry-1)`, capped at
    /// `max_backoff`, of which a random half is jitter so that clients that failed together
    /// do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let full = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = full / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos))
        };
        half + jitter
    }
}

/// Parses `Retry-After` as delta-seconds or as an HTTP date relative to `now`.
/// A date in the past means "now"; an unparsable header is ignored.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Failures of the shared HTTP layer. Messages name the endpoint (without any
/// credentials), the status, and what to check; they never contain the API key.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The configured base URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as configured (credentials removed).
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The API key cannot be sent as an HTTP header.
    #[error("the API key for {endpoint} contains characters not allowed in an HTTP header")]
    InvalidApiKey {
        /// The server the key is for.
        endpoint: String,
    },
    /// `reqwest` refused the client configuration.
    #[error("could not build the HTTP client: {source}")]
    ClientBuild {
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server's certificate was refused.
    #[error(
        "TLS handshake with {endpoint} failed: {detail}; if this server uses a self-signed \
         certificate you trust, turn TLS verification off for it (verify_tls = false)"
    )]
    Tls {
        /// The URL that was requested.
        endpoint: String,
        /// What rustls said.
        detail: String,
    },
    /// No connection could be made (after retries).
    #[error(
        "could not connect to {endpoint} after {attempts} attempt(s): {detail}; check that the \
         server is running and that the URL and port are right"
    )]
    Connect {
        /// The URL that was requested.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The transport error chain.
        detail: String,
    },
    /// Every attempt ran out of time.
    #[error(
        "request to {endpoint} timed out after {timeout:?} ({attempts} attempt(s)); the server \
         may be overloaded, or the request too large: raise the request timeout or lower the \
         batch size"
    )]
    Timeout {
        /// The URL that was requested.
        endpoint: String,
        /// Limit of one attempt.
        timeout: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// Sending the request or reading the response failed for another reason.
    #[error("request to {endpoint} failed after {attempts} attempt(s): {detail}")]
    Transport {
        /// The URL that was requested.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The transport error chain.
        detail: String,
    },
    /// The server answered with an error status (after retries, if it was retryable).
    #[error("{endpoint} answered HTTP {status} after {attempts} attempt(s): {body:?}; {hint}")]
    Status {
        /// The URL that was requested.
        endpoint: String,
        /// The final status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The start of the response body.
        body: String,
        /// What to check.
        hint: &'static str,
    },
    /// The server answered 2xx with a body that is not the expected JSON.
    #[error(
        "{endpoint} returned a body that is not the expected JSON ({reason}); body starts with {preview:?}"
    )]
    InvalidBody {
        /// The URL that was requested.
        endpoint: String,
        /// The decoding error.
        reason: String,
        /// The start of the body.
        preview: String,
    },
    /// A request body could not be serialised.
    #[error("could not serialise the request to {endpoint}: {source}")]
    Serialize {
        /// The URL that was to be requested.
        endpoint: String,
        /// The serialisation error.
        #[source]
        source: serde_json::Error,
    },
    /// The configured model is not one the server offers.
    #[error("model {requested:?} is not offered by {endpoint}; it offers: {}", offered_list(.available))]
    ModelNotFound {
        /// The `/v1/models` URL that was asked.
        endpoint: String,
        /// The configured model name.
        requested: String,
        /// Model ids the server listed.
        available: Vec<String>,
    },
}

fn offered_list(available: &[String]) -> String {
    if available.is_empty() {
        "no models at all".to_owned()
    } else {
        available.join(", ")
    }
}

impl HttpError {
    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        400 => "the server rejected the request: check the model name and the input sizes",
        401 | 403 => "check the API key",
        404 => "check the server URL and that the server offers this API and model",
        408 | 504 => "the server timed out: lower the batch size or raise its timeout",
        413 => "the request is too large: lower the batch size or the characters per request",
        422 => "the server could not process the input: check the model name and inputs",
        429 => "the server is rate limiting: lower the concurrency",
        500..=599 => "the server failed: check its logs",
        _ => "check the server URL, model name and API key",
    }
}

/// A response from `GET /v1/models`.
#[derive(Debug, serde::Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Debug, serde::Deserialize)]
struct ModelEntry {
    id: String,
}

/// A cheap-to-clone client for one OpenAI-compatible server, shared by the embedding and
/// chat clients.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    root: Url,
    auth: Option<HeaderValue>,
    config: HttpClientConfig,
    policy: RetryPolicy,
    permits: Semaphore,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("root", &redact_url(&self.inner.root))
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A URL as it may appear in messages: no user name or password.
fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both setters only fail for URLs that cannot have credentials, which have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn root_url(base_url: &str) -> Result<Url, HttpError> {
    let invalid = |reason: String| HttpError::InvalidBaseUrl {
        url: Url::parse(base_url)
            .map(|u| redact_url(&u))
            .unwrap_or_else(|_| "<unparsable>".to_owned()),
        reason,
    };
    let mut url = Url::parse(base_url.trim()).map_err(|e| invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed".to_owned()));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/v1").unwrap_or(path).to_owned();
    url.set_path(&format!("{path}/"));
    Ok(url)
}

impl HttpClient {
    /// Builds the client: rustls, the configured timeouts, and TLS verification unless
    /// `verify_tls` is false.
    pub fn new(config: HttpClientConfig) -> Result<Self, HttpError> {
        let root = root_url(&config.base_url)?;
        let auth = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| HttpError::InvalidApiKey {
                        endpoint: redact_url(&root),
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .tls_danger_accept_invalid_certs(!config.verify_tls)
            .user_agent(concat!("crm-substrate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| HttpError::ClientBuild { source })?;
        let policy = config.retry_policy();
        let permits = Semaphore::new(config.max_concurrency.max(1));
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                root,
                auth,
                config,
                policy,
                permits,
            }),
        })
    }

    /// The configuration this client was built from.
    pub fn config(&self) -> &HttpClientConfig {
        &self.inner.config
    }

    /// The URL of an API path such as `v1/embeddings` (a leading `/` is ignored).
    pub fn endpoint(&self, path: &str) -> Url {
        let mut url = self.inner.root.clone();
        let joined = format!("{}{}", url.path(), path.trim_start_matches('/'));
        url.set_path(&joined);
        url
    }

    /// `GET path`, decoded as JSON, with retries.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, HttpError> {
        let url = self.endpoint(path);
        let body = self.send_with_retries(Method::GET, &url, None).await?;
        decode_json(&url, &body)
    }

    /// `POST path` with a JSON body, decoded as JSON, with retries.
    pub async fn post_json<B, T>(&self, path: &str, body: &B) -> Result<T, HttpError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let url = self.endpoint(path);
        let payload = serde_json::to_vec(body).map_err(|source| HttpError::Serialize {
            endpoint: redact_url(&url),
            source,
        })?;
        let bytes = self
            .send_with_retries(Method::POST, &url, Some(payload.into()))
            .await?;
        decode_json(&url, &bytes)
    }

    /// The model ids the server offers (`GET /v1/models`).
    pub async fn list_models(&self) -> Result<Vec<String>, HttpError> {
        let list: ModelList = self.get_json("v1/models").await?;
        Ok(list.data.into_iter().map(|m| m.id).collect())
    }

    /// `Ok` when `model` is among `offered`, else [`HttpError::ModelNotFound`] showing the
    /// list.
    pub fn ensure_model_offered(&self, model: &str, offered: &[String]) -> Result<(), HttpError> {
        if offered.iter().any(|m| m == model) {
            Ok(())
        } else {
            Err(HttpError::ModelNotFound {
                endpoint: redact_url(&self.endpoint("v1/models")),
                requested: model.to_owned(),
                available: offered.to_vec(),
            })
        }
    }

    /// Turns a 400/404/422 that may mean "no such model" into [`HttpError::ModelNotFound`]
    /// with the server's list, when the list confirms the model is missing. Any other
    /// error, or a model that is listed after all, comes back unchanged.
    pub async fn explain_model_error(&self, model: &str, error: HttpError) -> HttpError {
        if !matches!(error.status(), Some(400 | 404 | 422)) {
            return error;
        }
        match self.list_models().await {
            Ok(offered) => match self.ensure_model_offered(model, &offered) {
                Err(not_found) => not_found,
                Ok(()) => error,
            },
            Err(list_error) => {
                tracing::debug!(error = %list_error, "could not list models to explain an error");
                error
            }
        }
    }

    async fn send_with_retries(
        &self,
        method: Method,
        url: &Url,
        payload: Option<Bytes>,
    ) -> Result<Vec<u8>, HttpError> {
        let policy = self.inner.policy;
        let mut attempts: u32 = 0;
        loop {
            attempts += 1;
            let outcome = {
                // The semaphore is never closed, so `acquire` cannot fail; if it ever
                // did, going ahead without a permit is still correct, merely unbounded.
                let _permit = self.inner.permits.acquire().await.ok();
                self.attempt(method.clone(), url, payload.as_ref()).await
            };
            let failure = match outcome {
                Ok(body) => return Ok(body),
                Err(failure) => failure,
            };
            let decision = match &failure {
                AttemptFailure::Transport(e) => policy.classify_transport(e),
                AttemptFailure::Status {
                    status, headers, ..
                } => policy.classify_status(*status, headers),
            };
            let wait = match decision {
                RetryDecision::GiveUp => None,
                _ if attempts > policy.max_retries => None,
                RetryDecision::Retry => Some(policy.backoff(attempts)),
                RetryDecision::RetryAfter(wait) => Some(wait),
            };
            let Some(wait) = wait else {
                return Err(self.final_error(url, failure, attempts));
            };
            tracing::warn!(
                endpoint = %redact_url(url),
                attempt = attempts,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                failure = %failure.summary(),
                "request failed, retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        method: Method,
        url: &Url,
        payload: Option<&Bytes>,
    ) -> Result<Vec<u8>, AttemptFailure> {
        let mut request = self.inner.client.request(method, url.clone());
        if let Some(auth) = &self.inner.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(payload) = payload {
            request = request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(payload.clone());
        }
        let response = request.send().await.map_err(AttemptFailure::Transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(AttemptFailure::Transport)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(AttemptFailure::Status {
                status,
                headers,
                body: preview(&body),
            })
        }
    }

    fn final_error(&self, url: &Url, failure: AttemptFailure, attempts: u32) -> HttpError {
        let endpoint = redact_url(url);
        match failure {
            AttemptFailure::Status { status, body, .. } => HttpError::Status {
                endpoint,
                status: status.as_u16(),
                attempts,
                body,
                hint: status_hint(status.as_u16()),
            },
            AttemptFailure::Transport(error) => {
                let error = error.without_url();
                if let Some(detail) = tls_failure(&error) {
                    HttpError::Tls { endpoint, detail }
                } else if error.is_timeout() {
                    HttpError::Timeout {
                        endpoint,
                        timeout: self.inner.config.request_timeout,
                        attempts,
                    }
                } else if error.is_connect() {
                    HttpError::Connect {
                        endpoint,
                        attempts,
                        detail: error_chain(&error),
                    }
                } else {
                    HttpError::Transport {
                        endpoint,
                        attempts,
                        detail: error_chain(&error),
                    }
                }
            }
        }
    }
}

enum AttemptFailure {
    Transport(reqwest::Error),
    Status {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    },
}

impl AttemptFailure {
    /// For logs: what failed, without the URL (it is logged as its own redacted field).
    fn summary(&self) -> String {
        match self {
            Self::Transport(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect error"
                } else {
                    "transport error"
                };
                match e.source() {
                    Some(cause) => format!("{kind}: {}", error_chain(cause)),
                    None => kind.to_owned(),
                }
            }
            Self::Status { status, .. } => format!("HTTP {}", status.as_u16()),
        }
    }
}

fn decode_json<T: DeserializeOwned>(url: &Url, body: &[u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body).map_err(|e| HttpError::InvalidBody {
        endpoint: redact_url(url),
        reason: e.to_string(),
        preview: preview(body),
    })
}

/// The start of a body, as text, cut at a character boundary.
fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_PREVIEW_BYTES)]);
    let mut text = text.into_owned();
    if body.len() > BODY_PREVIEW_BYTES {
        text.push('…');
    }
    text
}

/// An error and its sources, joined with `: `.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The rustls error inside a transport error, if the failure was a refused certificate
/// or another TLS alert.
fn tls_failure(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(tls) = find_rustls_error(cause) {
            return Some(tls.to_string());
        }
        source = cause.source();
    }
    None
}

/// `cause` itself as a rustls error, also when wrapped in (nested) `io::Error`s, whose
/// `source()` skips the wrapped error and so hides it from a plain walk of the chain.
fn find_rustls_error<'a>(
    cause: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = cause.downcast_ref::<std::io::Error>()?.get_ref()?;
    find_rustls_error(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted_in_debug_and_display() {
        let mut config = HttpClientConfig::new("http://127.0.0.1:1");
        config.api_key = Some(ApiKey::new("sk-very-secret"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        let client = HttpClient::new(config).unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("sk-very-secret"), "{debug}");
        assert_eq!(ApiKey::new("x").to_string(), "<redacted>");
    }

    #[test]
    fn base_url_with_or_without_v1_gives_the_same_endpoints() {
        for base in [
            "http://h:8080",
            "http://h:8080/",
            "http://h:8080/v1",
            "http://h:8080/v1/",
        ] {
            let client = HttpClient::new(HttpClientConfig::new(base)).unwrap();
            assert_eq!(
                client.endpoint("v1/embeddings").as_str(),
                "http://h:8080/v1/embeddings",
                "{base}"
            );
        }
        let client = HttpClient::new(HttpClientConfig::new("https://h/spark/v1")).unwrap();
        assert_eq!(
            client.endpoint("/v1/models").as_str(),
            "https://h/spark/v1/models"
        );
    }

    #[test]
    fn bad_base_urls_are_rejected_without_leaking_credentials() {
        let err = HttpClient::new(HttpClientConfig::new("ftp://u:pw@h/")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not http or https"), "{text}");
        assert!(!text.contains("pw"), "{text}");
        assert!(HttpClient::new(HttpClientConfig::new("not a url")).is_err());
        assert!(HttpClient::new(HttpClientConfig::new("http://h/?q=1")).is_err());
    }

    #[test]
    fn api_key_with_newline_is_rejected() {
        let mut config = HttpClientConfig::new("http://h");
        config.api_key = Some(ApiKey::new("bad\nkey"));
        let err = HttpClient::new(config).unwrap_err();
        assert!(matches!(err, HttpError::InvalidApiKey { .. }));
        assert!(!err.to_string().contains("bad"));
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    #[test]
    fn statuses_are_classified() {
        let none = HeaderMap::new();
        let p = policy();
        for code in [500, 502, 504, 408] {
            let s = StatusCode::from_u16(code).unwrap();
            assert_eq!(p.classify_status(s, &none), RetryDecision::Retry, "{code}");
        }
        for code in [400, 401, 403, 404, 413, 422] {
            let s = StatusCode::from_u16(code).unwrap();
            assert_eq!(p.classify_status(s, &none), RetryDecision::GiveUp, "{code}");
        }
        assert_eq!(
            p.classify_status(StatusCode::TOO_MANY_REQUESTS, &none),
            RetryDecision::Retry
        );
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        assert_eq!(
            p.classify_status(StatusCode::TOO_MANY_REQUESTS, &h),
            RetryDecision::RetryAfter(Duration::from_secs(1))
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(
            p.classify_status(StatusCode::SERVICE_UNAVAILABLE, &h),
            RetryDecision::RetryAfter(Duration::from_secs(2)),
            "capped at max_backoff"
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&earlier).unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-3"));
        assert_eq!(parse_retry_after(&h, now), None);
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = policy();
        for retry in 1..=40 {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << (retry - 1).min(30))
                .min(Duration::from_secs(2));
            let wait = p.backoff(retry);
            assert!(wait >= full / 2 && wait <= full, "retry {retry}: {wait:?}");
        }
    }

    #[test]
    fn preview_cuts_long_bodies() {
        let body = "é".repeat(400);
        let text = preview(body.as_bytes());
        assert!(text.ends_with('…'));
        assert!(text.len() < 400);
    }
}
