//! The `search` tool's backend: the index, the query encoders, and what `/health` and
//! `crm_stats` say about them.

use schemars::JsonSchema;
use serde::Serialize;

/// The state of the search index as this server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// The index answers searches.
    Ready,
    /// The collection has never been built (run `crm-backfill`).
    Missing,
    /// The index exists but cannot be used now (locked by another process, server down).
    Unavailable,
    /// This server was started without a search backend.
    NotConfigured,
}

/// What `/health` and `crm_stats` report about the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct IndexStatus {
    /// Ready, missing, unavailable or not configured.
    pub state: IndexState,
    /// `embedded` or `server`, when configured.
    pub engine: Option<String>,
    /// Points (chunks) in the collection, when it answers.
    pub points: Option<u64>,
    /// Whether dense (embedding) queries can run; sparse (BM25) ones always can.
    pub dense_available: bool,
    /// Why the index is not ready, when it is not.
    pub detail: Option<String>,
}

impl IndexStatus {
    /// The status of a server without a search backend.
    pub fn not_configured() -> Self {
        Self {
            state: IndexState::NotConfigured,
            engine: None,
            points: None,
            dense_available: false,
            detail: Some("this server was started without a search index".to_owned()),
        }
    }
}
