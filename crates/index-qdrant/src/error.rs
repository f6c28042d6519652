//! The one error type of this crate.

use std::path::PathBuf;

use crate::config::EngineKind;
use crate::point::ChunkId;

/// Everything that can go wrong in the index.
///
/// Messages name the engine, the collection and, where there is one, the point or the
/// endpoint. A server endpoint is shown without credentials; the API key never appears.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The configuration cannot work (bad collection name, bad URL, ...).
    #[error("invalid index configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// The server URL names Qdrant's REST port, but this client speaks gRPC.
    #[error(
        "Qdrant URL {endpoint} uses port 6333, Qdrant's REST port; this client speaks gRPC, \
         which Qdrant serves on port 6334 by default: use {suggestion}"
    )]
    RestPort {
        /// The endpoint as configured (without credentials).
        endpoint: String,
        /// The same URL with port 6334.
        suggestion: String,
    },

    /// The server answered the gRPC handshake like an HTTP/1 server (a REST port, a proxy
    /// without HTTP/2, a web server).
    #[error(
        "Qdrant endpoint {endpoint} did not answer over gRPC (HTTP/2); it looks like an HTTP/1 \
         server, e.g. Qdrant's REST port 6333 or a proxy without HTTP/2: point the URL at \
         Qdrant's gRPC port (6334 by default). Detail: {detail}"
    )]
    NotGrpc {
        /// The endpoint (without credentials).
        endpoint: String,
        /// What the transport reported.
        detail: String,
    },

    /// The server could not be reached at all.
    #[error("Qdrant server {endpoint} is unreachable: {detail}")]
    Unreachable {
        /// The endpoint (without credentials).
        endpoint: String,
        /// What the transport reported.
        detail: String,
    },

    /// A request to the Qdrant server failed.
    #[error("qdrant server {endpoint}: {operation} on collection {collection:?} failed: {source}")]
    Server {
        /// What was being done (`upsert`, `query`, ...).
        operation: &'static str,
        /// The collection.
        collection: String,
        /// The endpoint (without credentials).
        endpoint: String,
        /// The client's error.
        #[source]
        source: Box<qdrant_client::QdrantError>,
    },

    /// The embedded engine refused an operation.
    #[error("embedded index {path}: {operation} on collection {collection:?} failed: {detail}")]
    Embedded {
        /// What was being done.
        operation: &'static str,
        /// The collection.
        collection: String,
        /// The shard directory.
        path: PathBuf,
        /// What the engine reported.
        detail: String,
    },

    /// The embedded engine panicked, or an earlier panic left it unusable.
    #[error(
        "embedded index {path}: {operation} on collection {collection:?} panicked inside the \
         engine: {detail}; reopen the index (the last flushed state is on disk)"
    )]
    EnginePanicked {
        /// What was being done.
        operation: &'static str,
        /// The collection.
        collection: String,
        /// The shard directory.
        path: PathBuf,
        /// The panic message.
        detail: String,
    },

    /// Another process (or another handle in this one) has the embedded index open.
    #[error(
        "embedded index {path} is in use by another process (lock file {lock}); the embedded \
         engine allows one process at a time: stop the other process, or use a Qdrant server \
         (QDRANT_URL) to share the index"
    )]
    Locked {
        /// The shard directory.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },

    /// The collection does not exist yet.
    #[error("{engine} index: collection {collection:?} does not exist (build the index first)")]
    CollectionMissing {
        /// Which engine.
        engine: EngineKind,
        /// The collection.
        collection: String,
    },

    /// The collection exists with another vector configuration than the one asked for.
    #[error(
        "{engine} index: collection {collection:?} exists with {found}, but {expected} is \
         needed; vectors of different models cannot be mixed: rebuild the collection"
    )]
    CollectionMismatch {
        /// Which engine.
        engine: EngineKind,
        /// The collection.
        collection: String,
        /// What the caller asked for.
        expected: String,
        /// What the collection has.
        found: String,
    },

    /// A point failed validation; nothing of its batch was written.
    #[error(
        "{engine} index: point {id} ({source_table}:{source_id} chunk {chunk_index}) of \
         collection {collection:?} is invalid: {reason}"
    )]
    InvalidPoint {
        /// Which engine.
        engine: EngineKind,
        /// The collection.
        collection: String,
        /// The point.
        id: ChunkId,
        /// Its source table.
        source_table: String,
        /// Its source row.
        source_id: i64,
        /// Its chunk index.
        chunk_index: u32,
        /// What is wrong.
        reason: String,
    },

    /// A search, scroll or payload request is malformed.
    #[error("{engine} index: invalid request on collection {collection:?}: {reason}")]
    InvalidRequest {
        /// Which engine.
        engine: EngineKind,
        /// The collection.
        collection: String,
        /// What is wrong.
        reason: String,
    },

    /// A point read back from the index cannot be understood.
    #[error(
        "{engine} index: stored point {id} of collection {collection:?} is unreadable: {reason}"
    )]
    BadStoredPoint {
        /// Which engine.
        engine: EngineKind,
        /// The collection.
        collection: String,
        /// The point id as stored.
        id: String,
        /// What is wrong.
        reason: String,
    },

    /// A file-system operation on the embedded index failed.
    #[error("embedded index: {operation} {path} failed: {source}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl IndexError {
    /// Whether retrying the same call later may succeed (server unavailable, overloaded,
    /// timed out). Validation and configuration errors are never transient.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Server { source, .. } => match source.as_ref() {
                qdrant_client::QdrantError::ResponseError { status } => matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Aborted
                        | tonic::Code::ResourceExhausted
                ),
                qdrant_client::QdrantError::ResourceExhaustedError { .. } => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// Seconds the server asked to wait before retrying, when it said so.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            Self::Server { source, .. } => match source.as_ref() {
                qdrant_client::QdrantError::ResourceExhaustedError {
                    retry_after_seconds,
                    ..
                } => Some(*retry_after_seconds),
                _ => None,
            },
            _ => None,
        }
    }
}
