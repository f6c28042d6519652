//! The MCP server of crm-substrate: typed tools over the CRM for AI agents.
//!
//! [`CrmTools`] is an rmcp [`ServerHandler`](rmcp::ServerHandler) with a fixed set of
//! tools (see the crate README for the list):
//! - **reads**: one row by id with its canonical entity, duplicates and merge history;
//!   structured finds; interactions of a person or organisation in a date range; merge
//!   candidates; statistics;
//! - **search** in `dense`, `sparse` or `hybrid` mode, hits re-read from SQLite;
//! - **logged writes**: notes, whitelisted field updates, merge review and undo, each
//!   committed together with its `mcp_write_log` row. [`ToolsConfig::read_only`] removes
//!   them from the tool list.
//!
//! Every list is paged (a capped `limit`, an opaque `cursor`), long texts are cut with a
//! marker and their full length, and a whole answer stays within a byte budget. CRM text
//! is always returned as data fields. SQL is always bound parameters. There is no
//! outbound or contact tool.
//!
//! Transports: any rmcp transport (stdio for Agent SDK / Claude Code registrations), and
//! [`http`]: an axum router with `/mcp` (Streamable HTTP) and `/health`, bearer-token
//! checking, Host and Origin validation, a request-size limit and graceful shutdown, so
//! other Rust services can embed it.
//!
//! ```no_run
//! use crm_store::{Store, StoreConfig};
//! use mcp_tools::{CrmTools, ToolsConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open(StoreConfig::new("/data/crm.db"))?;
//! let tools = CrmTools::new(store, ToolsConfig::default())?;
//! // stdio:
//! mcp_tools::serve_stdio(tools.clone()).await?;
//! // or Streamable HTTP on 127.0.0.1:8765:
//! let config = mcp_tools::http::HttpConfig::new("127.0.0.1:8765".parse()?);
//! mcp_tools::http::bind_and_serve(tools, config, Default::default()).await?;
//! # Ok(())
//! # }
//! ```

mod args;
mod config;
mod error;
pub mod http;
mod reads;
mod review;
pub mod search;
mod server;
mod text;
mod views;
mod writes;

pub use args::{
    MAX_CURSOR_CHARS, MAX_IDS, MAX_LONG_ARG_CHARS, MAX_QUERY_CHARS, MAX_SHORT_ARG_CHARS,
};
pub use config::ToolsConfig;
pub use error::{McpError, ToolError};
pub use reads::*;
pub use review::*;
pub use search::{IndexState, IndexStatus, SearchBackend, SearchConfig};
pub use server::{
    CrmTools, Health, SERVER_NAME, SyncHealth, SyncState, SyncStatus, WRITE_TOOLS, serve_stdio,
};
pub use text::{CLIP_MARKER, LongText};
pub use views::{EntityView, InteractionRef, LinkedRow, MergeView, OrgRef, PersonRef};
pub use writes::*;
