//! The crate's error types: [`McpError`] for setting a server up and running it, and
//! [`ToolError`] for a tool call that cannot be answered (sent to the agent as a tool
//! error, `isError: true`, with the message as text).

use std::net::SocketAddr;

use rmcp::model::{ContentBlock, IntoContents};

/// Everything that can stop the server from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// An HTTP endpoint bound beyond loopback must require a bearer token.
    #[error(
        "refusing to serve MCP over HTTP on {addr} without a token: only loopback addresses \
         may be served without one (set MCP_HTTP_TOKEN / mcp.token, or bind 127.0.0.1)"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },

    /// The configuration cannot work.
    #[error("invalid MCP server configuration: {0}")]
    InvalidConfig(String),

    /// The listening socket failed.
    #[error("cannot {action} on {addr}: {source}")]
    Io {
        /// What was being done (`bind`, `serve`, ...).
        action: &'static str,
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The stdio transport failed.
    #[error("the MCP session over stdio failed: {0}")]
    Session(String),

    /// The CRM database could not be opened or read.
    #[error(transparent)]
    Store(#[from] crm_store::StoreError),
}

/// Why a tool call was not answered. The message is what the agent sees.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An argument is malformed, too long, out of range or inconsistent with another.
    #[error("invalid argument `{argument}`: {message}")]
    InvalidArgument {
        /// The argument's name, as in the tool's input schema.
        argument: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// The row or record asked for does not exist.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// What was looked for (`person`, `organization`, `merge candidate`, ...).
        what: &'static str,
        /// Its id.
        id: String,
    },

    /// The request is well-formed but the data's state does not allow it (e.g. updating
    /// a deleted person, reviewing a decided candidate).
    #[error("{0}")]
    Refused(String),

    /// Search cannot run in the requested mode right now.
    #[error("search is unavailable: {0}")]
    SearchUnavailable(String),

    /// The CRM database failed.
    #[error("the CRM database failed: {0}")]
    Store(#[from] crm_store::StoreError),

    /// Something that should not happen (a task panicked, a value failed to serialise).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ToolError {
    /// An [`ToolError::InvalidArgument`].
    pub(crate) fn arg(argument: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            argument,
            message: message.into(),
        }
    }

    /// A [`ToolError::NotFound`].
    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(self.to_string())]
    }
}
