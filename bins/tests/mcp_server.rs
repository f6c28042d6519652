//! `crm-mcp` driven as agents drive it: a real rmcp client over stdio (spawning the
//! binary) and over Streamable HTTP, against a real CRM file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mcp_server/hostile.rs"]
mod hostile;
#[path = "mcp_server/http.rs"]
mod http;
#[path = "mcp_server/reads.rs"]
mod reads;
#[path = "mcp_server/review.rs"]
mod review;
#[path = "mcp_server/search.rs"]
mod search;
#[path = "mcp_server/support.rs"]
mod support;
#[path = "mcp_server/tools.rs"]
mod tools;
#[path = "mcp_server/writes.rs"]
mod writes;
