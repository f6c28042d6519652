//! The one error type of this crate.

use crm_store::SourceTable;
use crm_store::phase0::Lease;

/// Everything that can stop a backfill, a sync or a verification.
///
/// Messages say what failed, on which table, batch or row, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The configuration cannot work.
    #[error("invalid sync configuration: {0}")]
    InvalidConfig(String),

    /// SQLite (the CRM or the Phase-0 tables) failed.
    #[error(transparent)]
    Store(#[from] crm_store::StoreError),

    /// The index failed.
    #[error(transparent)]
    Index(#[from] index_qdrant::IndexError),

    /// Chunking or embedding failed.
    #[error("embedding {what} failed: {source}")]
    Embed {
        /// What was being embedded (table and batch).
        what: String,
        /// The embedder's error.
        #[source]
        source: embed::EmbedError,
    },

    /// The embedder answered with vectors that do not fit the collection.
    #[error(
        "the embedder returned {got} vectors for {expected} chunks of {what}; refusing to index them"
    )]
    EmbedCount {
        /// What was being embedded.
        what: String,
        /// Chunks sent.
        expected: usize,
        /// Vectors received.
        got: usize,
    },

    /// Another run holds the lease.
    #[error(
        "another indexing run holds the lease {name:?}: {} (pid {} on host {}) since {}, until {} \
         unless renewed; wait for it to finish, or stop it",
        .holder.holder, .holder.pid, .holder.hostname, .holder.acquired_at, .holder.expires_at
    )]
    LeaseHeld {
        /// The lease name.
        name: String,
        /// Who holds it.
        holder: Box<Lease>,
    },

    /// Our lease was taken over while we ran (we stopped renewing in time).
    #[error(
        "lost the lease {name:?} while running (another run took it over); stopped without \
         committing further batches"
    )]
    LeaseLost {
        /// The lease name.
        name: String,
    },

    /// The index was built with other embedding settings.
    #[error(
        "the index collection {collection:?} was built for {table} with fingerprint {stored:?}, \
         but the current settings give {current:?}; mixing vectors of two configurations would \
         corrupt search results: run `crm-backfill --recreate` to rebuild the index"
    )]
    FingerprintMismatch {
        /// The collection.
        collection: String,
        /// The table whose state disagrees.
        table: SourceTable,
        /// The fingerprint stored in `ingest_sync_state`.
        stored: String,
        /// The fingerprint of the current settings.
        current: String,
    },

    /// The test-only fault hook fired (`FaultAction::Error`).
    #[error("injected fault at {0}")]
    InjectedFault(String),

    /// The run was cancelled (signal) before it finished.
    #[error("cancelled before the run finished")]
    Cancelled,

    /// A worker task panicked or was lost.
    #[error("an indexing worker failed: {0}")]
    Worker(String),
}

impl SyncError {
    pub(crate) fn worker(err: impl std::fmt::Display) -> Self {
        Self::Worker(err.to_string())
    }
}
