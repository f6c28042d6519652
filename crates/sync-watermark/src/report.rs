//! What a run did: counts per table, the outcome, and progress events.

use std::collections::BTreeMap;

use crm_store::{SourceTable, Timestamp};
use serde::Serialize;

use crate::error::SyncError;

/// Which kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// A full pass over every row (`crm-backfill`).
    Backfill,
    /// An incremental pass from the watermark (`crm-sync`).
    Sync,
}

impl RunKind {
    /// The step name recorded in `ingest_runs`.
    pub fn step(self) -> &'static str {
        match self {
            Self::Backfill => "backfill",
            Self::Sync => "sync",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Everything was already in step: no point, payload or record changed.
    NothingToDo,
    /// Changes were indexed and the run finished.
    Done,
    /// Some batches were committed, then the run stopped on an error or a signal. What was
    /// committed is consistent; the next run continues from there.
    PartialFailure,
    /// The run stopped before committing any change.
    Failed,
}

/// Why a run stopped, in a form tests and operators can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The index was built with other embedding settings.
    FingerprintMismatch,
    /// Another run took the lease over.
    LeaseLost,
    /// The embedder failed.
    Embedder,
    /// The index failed.
    Index,
    /// SQLite failed.
    Store,
    /// A signal stopped the run.
    Cancelled,
    /// The test hook fired.
    InjectedFault,
    /// Anything else.
    Other,
}

impl FailureKind {
    pub(crate) fn of(err: &SyncError) -> Self {
        match err {
            SyncError::FingerprintMismatch { .. } => Self::FingerprintMismatch,
            SyncError::LeaseLost { .. } => Self::LeaseLost,
            SyncError::Embed { .. } | SyncError::EmbedCount { .. } => Self::Embedder,
            SyncError::Index(_) => Self::Index,
            SyncError::Store(_) => Self::Store,
            SyncError::Cancelled => Self::Cancelled,
            SyncError::InjectedFault(_) => Self::InjectedFault,
            SyncError::InvalidConfig(_) | SyncError::LeaseHeld { .. } | SyncError::Worker(_) => {
                Self::Other
            }
        }
    }
}

/// Counts of one table (or of all tables together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableCounts {
    /// Rows read from the CRM (keyset pages, repairs and dependents).
    pub rows_read: u64,
    /// Rows whose record already matched.
    pub rows_unchanged: u64,
    /// Rows (re)embedded and upserted.
    pub rows_indexed: u64,
    /// Points upserted.
    pub chunks_upserted: u64,
    /// Point ids deleted (stale chunks and removed rows; ids that did not exist count too).
    pub points_deleted: u64,
    /// Rows whose points were removed because they were soft-deleted or became empty.
    pub rows_removed: u64,
    /// Rows gone from the CRM whose points and record were removed.
    pub rows_hard_deleted: u64,
    /// Rows whose entity id was patched into their payloads without re-embedding.
    pub entity_updates: u64,
    /// Rows whose record changed without any index write (soft-deleted rows never indexed).
    pub records_only: u64,
    /// Rows re-rendered because a row their document embeds changed.
    pub dependents_checked: u64,
    /// Rows found by reconciliation: never indexed, left pending, or entity moved.
    pub repairs_found: u64,
    /// Rows whose record changed between planning and writing, redone from fresh data.
    pub conflicts_redone: u64,
    /// Rows stamped after the start of the run (written meanwhile, or clocks ahead),
    /// read apart from the keyset pass.
    pub future_dated: u64,
    /// Records read by reconciliation. A sync skips reading them (0) when the table's ids
    /// and entity links have the digest its last complete reconciliation recorded and no
    /// record of the table was written since; a backfill always reads them.
    pub records_scanned: u64,
}

impl TableCounts {
    pub(crate) fn add(&mut self, other: &Self) {
        self.rows_read += other.rows_read;
        self.rows_unchanged += other.rows_unchanged;
        self.rows_indexed += other.rows_indexed;
        self.chunks_upserted += other.chunks_upserted;
        self.points_deleted += other.points_deleted;
        self.rows_removed += other.rows_removed;
        self.rows_hard_deleted += other.rows_hard_deleted;
        self.entity_updates += other.entity_updates;
        self.records_only += other.records_only;
        self.dependents_checked += other.dependents_checked;
        self.repairs_found += other.repairs_found;
        self.conflicts_redone += other.conflicts_redone;
        self.future_dated += other.future_dated;
        self.records_scanned += other.records_scanned;
    }

    /// Whether anything in the index or the records changed.
    pub fn changed_anything(&self) -> bool {
        self.rows_indexed
            + self.rows_removed
            + self.rows_hard_deleted
            + self.entity_updates
            + self.records_only
            > 0
    }
}

/// The summary of a backfill or sync.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Backfill or sync.
    pub kind: RunKind,
    /// How it ended.
    pub outcome: RunOutcome,
    /// The collection.
    pub collection: String,
    /// The `ingest_runs` id, when the run was recorded.
    pub run_id: Option<i64>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Whether the collection was dropped and created again first.
    pub recreated: bool,
    /// Batches committed.
    pub batches_committed: u64,
    /// Counts per table.
    pub tables: BTreeMap<SourceTable, TableCounts>,
    /// Counts over all tables.
    pub totals: TableCounts,
    /// Points in the collection at the end, when the index could tell without loading
    /// an embedded collection the run never needed.
    pub points_in_index: Option<u64>,
    /// Milliseconds the index optimizer took after the run (`None` when it did not run).
    pub optimize_ms: Option<u64>,
    /// Busy time of each pipeline stage over the run's keyset passes.
    pub stage_seconds: StageSeconds,
    /// What stopped the run, for partial failures and failures.
    pub error: Option<String>,
    /// The kind of failure, when the run stopped early.
    pub failure: Option<FailureKind>,
}

/// Seconds each stage of the keyset passes' pipeline spent, summed over the passes.
///
/// The reader, the encoder and the writer run concurrently: the stage that was busy for
/// about the whole pass is the one that set the pace, and the others waited for it
/// (`writer_idle` is the writer waiting for the encoder).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageSeconds {
    /// Keyset pages read from the CRM and planned.
    pub read: f64,
    /// Chunking and BM25 encoding.
    pub prepare: f64,
    /// Waiting for dense vectors.
    pub dense: f64,
    /// The writer waiting for the next encoded batch.
    pub writer_idle: f64,
    /// Rows marked pending before their index writes.
    pub prewrite: f64,
    /// Upserts, deletes and payload updates of the index.
    pub index: f64,
    /// Flushes of the index before a group of commits.
    pub flush: f64,
    /// Records and watermarks committed.
    pub commit: f64,
}

/// Where a run is; the binaries turn these into progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A table's keyset pass starts; `rows` is the number of rows it will read when known.
    TableStarted {
        /// The table.
        table: SourceTable,
        /// Rows to read, when known (a backfill counts them; a sync does not).
        rows: Option<u64>,
    },
    /// A batch of a table was committed.
    BatchCommitted {
        /// The table.
        table: SourceTable,
        /// Rows in the batch.
        rows: u64,
        /// Points upserted by the batch.
        chunks: u64,
    },
    /// A table's pass (keyset and reconciliation) finished.
    TableFinished {
        /// The table.
        table: SourceTable,
    },
    /// The index's optimizer starts, after the tables of a run that changed something
    /// (when [`crate::SyncConfig::optimize`] is set). On the embedded engine it builds
    /// the HNSW graphs of the new points: minutes after a large build.
    OptimizeStarted,
    /// The optimizer is done, or failed (the run goes on; its log says why).
    OptimizeFinished,
    /// Verification progress: rows or points checked so far.
    Verified {
        /// What was checked (`rows` or `points`).
        what: &'static str,
        /// How many so far.
        count: u64,
    },
}

/// Receives progress events. Implementations must be cheap: events come from the
/// pipeline's threads.
pub trait ProgressSink: Send + Sync {
    /// Called for each event.
    fn event(&self, event: ProgressEvent);
}

/// A sink that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}
