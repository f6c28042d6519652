//! Full and incremental indexing of the CRM, exactly in step through crashes, deletes
//! and merges.
//!
//! An [`Indexer`] keeps one index collection in step with the CRM's SQLite file:
//! [`Indexer::backfill`] passes over every row (with `recreate`, from an empty
//! collection), [`Indexer::sync`] over the rows changed since the watermark, and
//! [`Indexer::verify`] compares the index with the CRM without changing either.
//!
//! # What is recorded
//!
//! Every CRM row the indexer has seen has one record in `ingest_indexed_rows`: the
//! content hash of its rendered document, its chunk count and the entity id its points
//! carry. Soft-deleted rows (and documents without a chunk) are recorded with zero
//! chunks, so after a run "every CRM id has a record, and every record a CRM id" holds,
//! and a cheap comparison of id lists finds what a watermark cannot see. Per table,
//! `ingest_sync_state` holds the keyset watermark `(updated_at, id)` and the fingerprint
//! of the settings that made the vectors.
//!
//! # One batch, in order
//!
//! 1. read a keyset page `(updated_at, id) > watermark − overlap` (or a list of ids) in one
//!    short read transaction: rows, their records, their entity ids; render documents;
//!    skip rows whose content hash and entity id match their record;
//! 2. chunk, BM25-encode and embed the changed rows (no transaction open);
//! 3. in one short transaction, check the records are still as read and mark the rows
//!    about to change **pending** (hash `pending`, chunk count raised to cover both the old
//!    and the new chunks);
//! 4. upsert the new points (durable when the call returns); delete the chunks past the
//!    new count and every point of removed rows, by id; patch entity ids of rows whose
//!    document did not change, without re-embedding;
//! 5. re-render the rows whose documents embed the changed rows (an organisation's
//!    people, interactions and deals; a person's interactions);
//! 6. in one transaction, write the final records and advance the watermark.
//!
//! A crash anywhere leaves the watermark at or before the last batch whose points are
//! all in the index, and every row the index may disagree with either after the
//! watermark or pending, so the next run redoes exactly those rows. Hashes are never
//! trusted across a crash: a pending record matches no document.
//!
//! After the keyset pass, each table is **reconciled**: rows gone from the CRM (hard
//! deletes) lose their points and records; rows without a record (inserted with an old
//! or missing `updated_at`), pending rows and rows whose `entity_links` entry moved
//! (merges, undos) are processed like any other. The watermark never moves past the
//! start of the run, so rows stamped in the future are read again until their time.
//!
//! Reading, encoding and writing run as a pipeline with bounded channels
//! ([`SyncConfig::pipeline_depth`]), so memory does not grow with the CRM. One run at a
//! time: backfill, sync and verify share a lease in `substrate_leases`, renewed while
//! they run; a stale lease (expired, or its process gone from this host) is recovered.
//!
//! # Limits
//!
//! A row whose `updated_at` is set more than the overlap before the newest row already
//! synced (a clock far behind, a transaction committed long after it stamped the row) is
//! not seen by a sync; a change to `interaction_people` must bump the interaction's
//! `updated_at` to be seen. [`Indexer::verify`] reports both; a backfill repairs them.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sync_watermark::{Encoder, Indexer, LeaseConfig, NoProgress, SyncConfig};
//!
//! # async fn demo(store: crm_store::Store, index: index_qdrant::Index, embedder: embed::Embedder)
//! # -> Result<(), sync_watermark::SyncError> {
//! let encoder = Arc::new(Encoder::new(Arc::new(embedder)).await?);
//! let config = SyncConfig::new(LeaseConfig::new("crm-sync", "host-a"));
//! let indexer = Indexer::new(store, Arc::new(index), encoder, config, Arc::new(NoProgress))?;
//! let stop = sync_watermark::CancellationToken::new();
//! let report = indexer.sync(&stop).await?;
//! println!("{:?}: {} rows indexed", report.outcome, report.totals.rows_indexed);
//! let check = indexer.verify().await?;
//! assert!(check.is_clean(), "{:?}", check.differences);
//! # Ok(()) }
//! ```

mod batch;
mod config;
mod encode;
mod error;
mod indexer;
mod lease;
mod plan;
mod report;
mod verify;

pub use config::{FaultAction, FaultPoint, FaultStage, LeaseConfig, SyncConfig};
pub use encode::{Encoder, PAYLOAD_VERSION};
pub use error::SyncError;
pub use indexer::Indexer;
pub use lease::lease_name;
pub use report::{
    FailureKind, NoProgress, ProgressEvent, ProgressSink, RunKind, RunOutcome, RunReport,
    StageSeconds, TableCounts,
};
pub use verify::{Difference, DifferenceKind, MAX_LISTED_DIFFERENCES, VerifyReport};

/// The token that stops a run (re-exported so callers name the same type).
pub use tokio_util::sync::CancellationToken;
