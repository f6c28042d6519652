//! Streamable HTTP: an axum router with `/mcp` and `/health`, ready to serve or to
//! embed in another service.
//!
//! - `/mcp` is rmcp's Streamable HTTP service (sessions kept in memory). When a token is
//!   configured, every request must carry `Authorization: Bearer <token>` (compared in
//!   constant time); otherwise it gets 401. The `Host` header must be a loopback name, the
//!   bound address, or one of [`HttpConfig::allowed_hosts`]; an `Origin` header, when
//!   present, must be a loopback origin or one of [`HttpConfig::allowed_origins`]; both
//!   get 403 otherwise (DNS-rebinding and cross-site protection). Request bodies above
//!   [`HttpConfig::max_body_bytes`] get 413.
//! - `/health` needs no token: 200 with `{"status": "ok", ...}` when the database answers
//!   and the index is ready (or not configured), 503 with `"status": "degraded"` and an
//!   `error` otherwise.
//!
//! Binding to anything but a loopback address without a token is refused
//! ([`McpError::TokenRequired`]). Cancelling the shutdown token stops accepting
//! connections, ends the MCP sessions, and lets requests in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
pub use tokio_util::sync::CancellationToken;

use crate::error::McpError;
use crate::server::{CrmTools, TokenAuthenticated};

/// Default request-body limit: large enough for a 100 000-character note with JSON
/// escaping, small enough that a flood of huge bodies cannot exhaust memory.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Host names always accepted in the `Host` header.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Origins always accepted (any port).
const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// How the HTTP endpoint is served. Deserialisable for services that read it from their
/// own configuration; deliberately not serialisable, so the token cannot be written out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The address to bind.
    pub addr: SocketAddr,
    /// The bearer token every `/mcp` request must carry; required unless `addr` is
    /// loopback.
    pub token: Option<String>,
    /// Extra `Origin` values accepted besides loopback ones, e.g.
    /// `https://agent.example.com` (scheme required; `:*` for any port).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Extra `Host` values accepted besides loopback names and the bound address, e.g.
    /// `crm.local` or `crm.local:8765`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl HttpConfig {
    /// Serve on `addr` without a token (loopback only), loopback hosts and origins, and
    /// the default body limit.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Checks the configuration: a token is required beyond loopback, a token must not be
    /// blank, origins need a scheme, the body limit must be usable.
    pub fn validate(&self) -> Result<(), McpError> {
        let token = self
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        if self.token.is_some() && token.is_none() {
            return Err(McpError::InvalidConfig(
                "the MCP HTTP token is empty; set a real token or none".into(),
            ));
        }
        if token.is_none() && !self.addr.ip().is_loopback() {
            return Err(McpError::TokenRequired { addr: self.addr });
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| *o != "null" && !o.starts_with("http://") && !o.starts_with("https://"))
        {
            return Err(McpError::InvalidConfig(format!(
                "allowed origin {bad:?} needs a scheme, e.g. https://{bad}"
            )));
        }
        if self.max_body_bytes < 64 * 1024 {
            return Err(McpError::InvalidConfig(format!(
                "max_body_bytes must be at least 65536, got {}",
                self.max_body_bytes
            )));
        }
        Ok(())
    }

    fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        let ip = self.addr.ip();
        if !ip.is_unspecified() && !ip.is_loopback() {
            hosts.push(ip.to_string());
        }
        hosts.extend(self.allowed_hosts.iter().map(|h| h.trim().to_owned()));
        hosts.retain(|h| !h.is_empty());
        hosts
    }

    fn origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = LOOPBACK_ORIGINS.iter().map(|o| (*o).to_owned()).collect();
        origins.extend(self.allowed_origins.iter().map(|o| o.trim().to_owned()));
        origins
    }
}

/// The token, hashed so the comparison takes the same time whatever its length.
#[derive(Clone)]
struct ExpectedToken(Arc<[u8; 32]>);

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

async fn require_token(
    State(expected): State<ExpectedToken>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let ok = presented.is_some_and(|t| bool::from(digest(t).ct_eq(expected.0.as_ref())));
    if !ok {
        tracing::warn!(
            had_header = presented.is_some(),
            "rejected an mcp request without a valid bearer token"
        );
        let mut response = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({
                "error": "missing or invalid bearer token (Authorization: Bearer <MCP_HTTP_TOKEN>)"
            })),
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"crm-substrate\""),
        );
        return response;
    }
    request.extensions_mut().insert(TokenAuthenticated);
    next.run(request).await
}

async fn health(State(tools): State<CrmTools>) -> Response {
    let health = tools.health().await;
    let code = if health.status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health)).into_response()
}

/// The axum router: `/mcp` and `/health`. Cancel `shutdown` to end the MCP sessions.
pub fn router(
    tools: CrmTools,
    config: &HttpConfig,
    shutdown: CancellationToken,
) -> Result<Router, McpError> {
    config.validate()?;
    let rmcp_config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.hosts())
        .with_allowed_origins(config.origins())
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_cancellation_token(shutdown.child_token());
    let factory_tools = tools.clone();
    let service = StreamableHttpService::new(
        move || Ok(factory_tools.clone()),
        Arc::new(LocalSessionManager::default()),
        rmcp_config,
    );
    let mut mcp = Router::new().nest_service("/mcp", service);
    if let Some(token) = config.token.as_deref().map(str::trim) {
        mcp = mcp.layer(middleware::from_fn_with_state(
            ExpectedToken(Arc::new(digest(token))),
            require_token,
        ));
    }
    Ok(Router::new()
        .route("/health", get(health).with_state(tools))
        .merge(mcp))
}

/// Serves the router on an already bound listener until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tools: CrmTools,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> Result<(), McpError> {
    let app = router(tools, &config, shutdown.clone())?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| config.addr.to_string());
    tracing::info!(%addr, token = config.token.is_some(), "serving mcp over http");
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| McpError::Io {
            action: "serve",
            addr,
            source,
        })
}

/// Binds [`HttpConfig::addr`] and serves until `shutdown` is cancelled.
pub async fn bind_and_serve(
    tools: CrmTools,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> Result<(), McpError> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| McpError::Io {
            action: "bind",
            addr: config.addr.to_string(),
            source,
        })?;
    serve(listener, tools, config, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_required_beyond_loopback() {
        let mut c = HttpConfig::new("0.0.0.0:8765".parse().unwrap());
        assert!(matches!(c.validate(), Err(McpError::TokenRequired { .. })));
        c.token = Some("  ".into());
        assert!(matches!(c.validate(), Err(McpError::InvalidConfig(_))));
        c.token = Some("s3cret".into());
        assert!(c.validate().is_ok());
        assert!(
            HttpConfig::new("127.0.0.1:0".parse().unwrap())
                .validate()
                .is_ok()
        );
        assert!(
            HttpConfig::new("[::1]:0".parse().unwrap())
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn hosts_include_loopback_the_bound_ip_and_extras() {
        let mut c = HttpConfig::new("192.168.1.5:8765".parse().unwrap());
        c.allowed_hosts = vec!["crm.local".into()];
        let hosts = c.hosts();
        assert!(hosts.contains(&"localhost".to_owned()));
        assert!(hosts.contains(&"192.168.1.5".to_owned()));
        assert!(hosts.contains(&"crm.local".to_owned()));
        let any = HttpConfig::new("0.0.0.0:8765".parse().unwrap());
        assert!(!any.hosts().contains(&"0.0.0.0".to_owned()));
    }

    #[test]
    fn origins_need_a_scheme_and_the_token_never_prints() {
        let mut c = HttpConfig::new("127.0.0.1:8765".parse().unwrap());
        c.allowed_origins = vec!["agent.example.com".into()];
        assert!(c.validate().is_err());
        c.allowed_origins = vec!["https://agent.example.com".into()];
        c.token = Some("very-secret".into());
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
