//! The indexer: backfill and incremental sync, as a pipeline of reader, encoder and writer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crm_store::phase0::{self, IndexedRow, RunStatus, SyncState};
use crm_store::rusqlite::{Connection, Transaction, TransactionBehavior};
use crm_store::{SourceTable, Store, StoreError, Timestamp, Watermark, queries, sync_queries};
use index_qdrant::{ChunkId, CollectionSpec, CollectionStatus, Index};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::batch::{self, Batch, Origin, RowWork};
use crate::config::{FaultAction, FaultPoint, FaultStage, SyncConfig};
use crate::encode::{self, Encoder, PreparedChunk};
use crate::error::SyncError;
use crate::lease::RunLease;
use crate::plan::{self, Action, PENDING};
use crate::report::{
    FailureKind, ProgressEvent, ProgressSink, RunKind, RunOutcome, RunReport, StageSeconds,
    TableCounts,
};

/// Depth of dependents re-rendering: organisation → people → interactions.
const MAX_DEPENDENT_DEPTH: u8 = 3;

/// Rows stamped after the start of a run that one run reads (the rest wait for the next).
const FUTURE_ROWS_PER_RUN: usize = 100_000;

/// Keeps one index collection in step with the CRM.
///
/// [`Indexer::backfill`] passes over every row; [`Indexer::sync`] over the rows changed
/// since the watermark. Both then reconcile the records with the CRM (hard deletes, rows
/// the watermark cannot see, interrupted changes, entity moves). See the crate docs for
/// the order of operations and why a crash at any point loses nothing.
pub struct Indexer {
    store: Store,
    index: Arc<Index>,
    encoder: Arc<Encoder>,
    config: SyncConfig,
    progress: Arc<dyn ProgressSink>,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("collection", &self.index.collection())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Indexer {
    /// An indexer writing `index`'s collection from `store` with `encoder`.
    pub fn new(
        store: Store,
        index: Arc<Index>,
        encoder: Arc<Encoder>,
        config: SyncConfig,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Self, SyncError> {
        config.validate()?;
        Ok(Self {
            store,
            index,
            encoder,
            config,
            progress,
        })
    }

    /// The collection this indexer writes.
    pub fn collection(&self) -> &str {
        self.index.collection()
    }

    /// The CRM store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The index.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The encoder.
    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    /// The configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The progress sink.
    pub(crate) fn progress(&self) -> &Arc<dyn ProgressSink> {
        &self.progress
    }

    /// A full pass over every CRM row. With `recreate`, the collection is dropped and
    /// created again and every record and watermark of it forgotten first (the way out
    /// of a fingerprint mismatch). Without it, rows already in step are skipped, so an
    /// interrupted backfill resumes cheaply.
    ///
    /// Fails only when the run could not start (lease held); every later failure is
    /// in the report ([`RunReport::outcome`], [`RunReport::error`]).
    pub async fn backfill(
        &self,
        recreate: bool,
        cancel: &CancellationToken,
    ) -> Result<RunReport, SyncError> {
        self.run(RunKind::Backfill, recreate, cancel).await
    }

    /// An incremental pass: rows changed since the watermark (moved back by the overlap),
    /// then reconciliation. The first sync of an empty index is a full build.
    pub async fn sync(&self, cancel: &CancellationToken) -> Result<RunReport, SyncError> {
        self.run(RunKind::Sync, false, cancel).await
    }

    async fn run(
        &self,
        kind: RunKind,
        recreate: bool,
        cancel: &CancellationToken,
    ) -> Result<RunReport, SyncError> {
        let started = Instant::now();
        let started_at = Timestamp::now();
        let lease = RunLease::acquire(&self.store, self.collection(), &self.config.lease).await?;
        let run_id = self.blocking_write(move |tx| {
            phase0::start_run(tx, kind.step(), started_at).map_err(SyncError::from)
        });
        let run_id = match run_id.await {
            Ok(id) => Some(id),
            Err(err) => {
                tracing::warn!(error = %err, "could not record the run in ingest_runs");
                None
            }
        };
        // Cancelled by the caller's signal or by losing the lease.
        let stop = cancel.child_token();
        let lease_watch = {
            let stop = stop.clone();
            let lost = lease.lost().clone();
            tokio::spawn(async move {
                lost.cancelled().await;
                stop.cancel();
            })
        };
        let run = Run::new(
            self,
            kind,
            started_at,
            stop,
            lease.lost().clone(),
            lease.name(),
        );
        let result = run.execute(recreate).await;
        lease_watch.abort();
        let changed = run.committed_changes.load(Ordering::SeqCst);
        let optimize_ms = if result.is_ok() && changed && self.config.optimize {
            let started = Instant::now();
            tracing::info!("optimizing the index (HNSW graphs of the new points, segment merges)");
            self.progress.event(ProgressEvent::OptimizeStarted);
            let optimized = self.index.optimize().await;
            self.progress.event(ProgressEvent::OptimizeFinished);
            match optimized {
                Ok(_) => Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
                Err(err) => {
                    tracing::warn!(error = %err, "the index optimizer failed; searches stay correct, only slower");
                    None
                }
            }
        } else {
            None
        };

        let finished_at = Timestamp::now();
        let tables = run.counts();
        let mut totals = TableCounts::default();
        for counts in tables.values() {
            totals.add(counts);
        }
        let committed_changes = run.committed_changes.load(Ordering::SeqCst);
        let (outcome, error, failure) = match &result {
            Ok(()) if totals.changed_anything() => (RunOutcome::Done, None, None),
            Ok(()) => (RunOutcome::NothingToDo, None, None),
            Err(err) => {
                let outcome = if committed_changes {
                    RunOutcome::PartialFailure
                } else {
                    RunOutcome::Failed
                };
                (outcome, Some(err.to_string()), Some(FailureKind::of(err)))
            }
        };
        if let Err(err) = &result {
            tracing::error!(error = %err, ?outcome, "indexing run stopped");
        }
        let points_in_index = match self.index.points_count_if_loaded().await {
            Ok(points) => points,
            Err(err) => {
                tracing::debug!(error = %err, "could not count the points at the end of the run");
                None
            }
        };
        let report = RunReport {
            kind,
            outcome,
            collection: self.collection().to_owned(),
            run_id,
            started_at,
            finished_at,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            recreated: run.recreated.load(Ordering::SeqCst),
            batches_committed: run.batches_committed.load(Ordering::SeqCst),
            tables,
            totals,
            points_in_index,
            optimize_ms,
            stage_seconds: run.times.seconds(),
            error,
            failure,
        };
        if let Some(id) = run_id {
            let counts = serde_json::to_value(&report).unwrap_or_default();
            let status = if result.is_ok() {
                RunStatus::Ok
            } else {
                RunStatus::Failed
            };
            let error = report.error.clone();
            let finish = self.blocking_write(move |tx| {
                phase0::finish_run(tx, id, status, &counts, error.as_deref(), finished_at)
                    .map(drop)
                    .map_err(SyncError::from)
            });
            if let Err(err) = finish.await {
                tracing::warn!(error = %err, run_id = id, "could not record the end of the run");
            }
        }
        if let Err(err) = lease.release().await {
            tracing::warn!(error = %err, "could not release the lease; it lapses at its expiry");
        }
        Ok(report)
    }

    /// Runs `f` in one `IMMEDIATE` write transaction on the blocking pool.
    pub(crate) fn blocking_write<T, F>(&self, f: F) -> impl Future<Output = Result<T, SyncError>>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, SyncError> + Send + 'static,
    {
        let store = self.store.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = store.writer()?;
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|source| StoreError::Sqlite {
                        context: "starting a write transaction".to_owned(),
                        source,
                    })?;
                let out = f(&tx)?;
                tx.commit().map_err(|source| StoreError::Sqlite {
                    context: "committing a write transaction".to_owned(),
                    source,
                })?;
                Ok(out)
            })
            .await
            .map_err(SyncError::worker)?
        }
    }

    /// Runs `f` on a read-only connection on the blocking pool.
    pub(crate) fn blocking_read<T, F>(&self, f: F) -> impl Future<Output = Result<T, SyncError>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SyncError> + Send + 'static,
    {
        let store = self.store.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = store.reader()?;
                f(&mut conn)
            })
            .await
            .map_err(SyncError::worker)?
        }
    }
}

/// The state of one run.
struct Run<'a> {
    indexer: &'a Indexer,
    kind: RunKind,
    collection: String,
    started_at: Timestamp,
    stop: CancellationToken,
    lease_lost: CancellationToken,
    lease_name: String,
    states: Mutex<HashMap<SourceTable, SyncState>>,
    counts: Mutex<BTreeMap<SourceTable, TableCounts>>,
    faults: FaultCounters,
    committed_changes: AtomicBool,
    batches_committed: AtomicU64,
    recreated: AtomicBool,
    /// No row was recorded when the run started: rows new to the index cannot have
    /// dependents in it, so looking for them is skipped.
    fresh: AtomicBool,
    /// Reconciliation marks held across a batch's two writes (see [`HeldMark`]).
    marks_held: AtomicU64,
    /// Where the keyset passes spend their time.
    times: Arc<StageTimes>,
}

/// Nanoseconds per pipeline stage of the keyset passes (see [`StageSeconds`]).
#[derive(Default)]
struct StageTimes {
    /// Reader: keyset pages read and planned.
    read: AtomicU64,
    /// Encoder: chunking and BM25.
    prepare: AtomicU64,
    /// Encoder: dense vectors.
    dense: AtomicU64,
    /// Writer: waiting for the next encoded batch.
    writer_idle: AtomicU64,
    /// Writer: rows marked pending before the index writes.
    prewrite: AtomicU64,
    /// Writer: upserts, deletes and payload updates.
    index: AtomicU64,
    /// Writer: flushes of the index before a group of commits.
    flush: AtomicU64,
    /// Writer: records and watermark committed.
    commit: AtomicU64,
}

impl StageTimes {
    fn add(counter: &AtomicU64, since: Instant) {
        let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
        counter.fetch_add(nanos, Ordering::Relaxed);
    }

    fn seconds(&self) -> StageSeconds {
        let secs = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e9;
        StageSeconds {
            read: secs(&self.read),
            prepare: secs(&self.prepare),
            dense: secs(&self.dense),
            writer_idle: secs(&self.writer_idle),
            prewrite: secs(&self.prewrite),
            index: secs(&self.index),
            flush: secs(&self.flush),
            commit: secs(&self.commit),
        }
    }
}

/// Marks held by a batch start with this; no digest (hex) does.
const HELD_MARK_PREFIX: &str = "held:";

/// A table's reconciliation mark, set aside while one of this run's batches writes its
/// records, to be put back if nothing else wrote that table's records meanwhile.
///
/// Any write of a record deletes the table's mark (triggers), because a record might no
/// longer agree with the CRM. The reconciliation looks only at which ids are recorded,
/// with which entity, and whether pending; a committed batch that only re-indexed rows
/// already recorded, with the same entities, leaves all three as they were, so the
/// mark still holds after it. The batch's first write (marking rows pending) replaces
/// a present mark with a sentinel unique to the batch; its commit puts the mark back if
/// the batch was of that kind and the sentinel is still there, that is, if no other
/// write touched the table's records in between (a nested batch of this run, a hand
/// edit). A batch that records a new id, drops one or moves an entity never puts it
/// back (the CRM may move back before the reconciliation, so the digest alone would
/// not notice). A run killed between the two writes leaves the sentinel, which matches
/// no digest, so the next run reconciles in full. Only plain marks are held: a sentinel
/// found at the first write (another batch's, or a killed run's) is never restored.
struct HeldMark {
    sentinel: String,
    digest: String,
}

/// A batch written to the index and waiting for its commit (step 7 of [`Run::apply`]).
struct Staged {
    batch: Batch,
    /// Rows taken out of the batch because their record moved under it.
    redo: Vec<i64>,
    held: Option<HeldMark>,
}

/// What committing one batch writes (see [`Run::commit`]).
struct CommitWork {
    table: SourceTable,
    rows: u64,
    chunks: u64,
    records: Vec<IndexedRow>,
    gone: Vec<i64>,
    state: Option<SyncState>,
    held: Option<HeldMark>,
}

impl CommitWork {
    fn changed(&self) -> bool {
        !self.records.is_empty() || !self.gone.is_empty()
    }
}

/// Whether a batch's index writes are flushed as they are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    Now,
    /// At the next [`Index::flush`], which must come before the batch's commit.
    Later,
}

#[derive(Default)]
struct FaultCounters {
    counts: Mutex<HashMap<FaultStage, u64>>,
}

impl<'a> Run<'a> {
    fn new(
        indexer: &'a Indexer,
        kind: RunKind,
        started_at: Timestamp,
        stop: CancellationToken,
        lease_lost: CancellationToken,
        lease_name: &str,
    ) -> Self {
        Self {
            indexer,
            kind,
            collection: indexer.collection().to_owned(),
            started_at,
            stop,
            lease_lost,
            lease_name: lease_name.to_owned(),
            states: Mutex::new(HashMap::new()),
            counts: Mutex::new(BTreeMap::new()),
            faults: FaultCounters::default(),
            committed_changes: AtomicBool::new(false),
            batches_committed: AtomicU64::new(0),
            recreated: AtomicBool::new(false),
            fresh: AtomicBool::new(false),
            marks_held: AtomicU64::new(0),
            times: Arc::default(),
        }
    }

    fn counts(&self) -> BTreeMap<SourceTable, TableCounts> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self, table: SourceTable, f: impl FnOnce(&mut TableCounts)) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        f(counts.entry(table).or_default());
    }

    /// Stops with the right error when the run was cancelled or the lease lost.
    fn check_stop(&self) -> Result<(), SyncError> {
        if self.lease_lost.is_cancelled() {
            return Err(SyncError::LeaseLost {
                name: self.lease_name.clone(),
            });
        }
        if self.stop.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        Ok(())
    }

    /// The test hook: fires when the `n`-th batch reaches `stage`.
    fn fault(&self, stage: FaultStage) -> Result<(), SyncError> {
        let Some(FaultPoint {
            stage: want,
            batch,
            action,
        }) = self.indexer.config.fault
        else {
            return Ok(());
        };
        if want != stage {
            return Ok(());
        }
        let n = {
            let mut counts = self
                .faults
                .counts
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = counts.entry(stage).or_default();
            *n += 1;
            *n
        };
        if n != batch {
            return Ok(());
        }
        let point = format!("{stage}:{batch}");
        match action {
            FaultAction::Abort => {
                tracing::error!(fault = %point, "test fault hook: aborting the process");
                std::process::abort();
            }
            FaultAction::Error => Err(SyncError::InjectedFault(point)),
        }
    }

    async fn execute(&self, recreate: bool) -> Result<(), SyncError> {
        self.prepare(recreate).await?;
        for table in SourceTable::ALL {
            self.check_stop()?;
            self.keyset_pass(table).await?;
            self.check_stop()?;
            self.future_rows(table).await?;
            self.check_stop()?;
            self.reconcile(table).await?;
            self.indexer
                .progress()
                .event(ProgressEvent::TableFinished { table });
        }
        if self.kind == RunKind::Backfill {
            let now = Timestamp::now();
            let states: Vec<SyncState> = {
                let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
                states
                    .values_mut()
                    .map(|s| {
                        s.last_full_at = Some(now);
                        s.clone()
                    })
                    .collect()
            };
            self.indexer
                .blocking_write(move |tx| {
                    for state in &states {
                        phase0::set_sync_state(tx, state)?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Makes the collection and the state agree before any batch: refuses a fingerprint
    /// mismatch, creates or recreates the collection, and recovers from a lost index.
    async fn prepare(&self, recreate: bool) -> Result<(), SyncError> {
        let indexer = self.indexer;
        let fingerprint = indexer.encoder.fingerprint();
        let collection = self.collection.clone();
        let (stored, recorded) = {
            let collection = collection.clone();
            indexer
                .blocking_read(move |conn| {
                    let mut states = HashMap::new();
                    for table in SourceTable::ALL {
                        if let Some(state) = phase0::get_sync_state(conn, &collection, table)? {
                            states.insert(table, state);
                        }
                    }
                    let recorded = sync_queries::has_indexed_rows(conn, &collection)?;
                    Ok((states, recorded))
                })
                .await?
        };
        if !recreate {
            for table in SourceTable::ALL {
                if let Some(stored) = stored.get(&table).and_then(|s| s.fingerprint.as_ref())
                    && *stored != fingerprint
                {
                    return Err(SyncError::FingerprintMismatch {
                        collection,
                        table,
                        stored: stored.clone(),
                        current: fingerprint,
                    });
                }
            }
        }

        let dim = indexer.encoder.dense_dim().await?;
        let spec = CollectionSpec {
            dense_dim: dim,
            ..indexer.config.collection.clone()
        };
        let mut reset = recreate;
        if recreate {
            indexer.index.ensure_collection(&spec, true).await?;
            tracing::info!(collection = %collection, dense_dim = dim, "recreated the collection");
        } else {
            match indexer.index.ensure_collection(&spec, false).await? {
                CollectionStatus::Created if recorded => {
                    tracing::warn!(
                        collection = %collection,
                        "the collection was missing although rows are recorded as indexed; \
                         forgetting the records and rebuilding"
                    );
                    reset = true;
                }
                CollectionStatus::Existing if !recorded => {
                    let points = indexer.index.info().await?.points_count;
                    if points > 0 {
                        tracing::warn!(
                            collection = %collection,
                            points,
                            "the collection holds points but no row is recorded as indexed; \
                             recreating it so that no unknown point survives"
                        );
                        indexer.index.ensure_collection(&spec, true).await?;
                        reset = true;
                    }
                }
                _ => {}
            }
        }
        self.recreated.store(reset, Ordering::SeqCst);
        self.fresh.store(reset || !recorded, Ordering::SeqCst);

        let states = indexer
            .blocking_write(move |tx| {
                if reset {
                    let forgotten = phase0::reset_collection(tx, &collection)?;
                    tracing::info!(collection = %collection, forgotten, "reset the sync state");
                }
                let mut states = HashMap::new();
                for table in SourceTable::ALL {
                    let existing = if reset {
                        None
                    } else {
                        stored.get(&table).cloned()
                    };
                    let state = match existing {
                        Some(state) if state.fingerprint.is_some() => state,
                        existing => {
                            let state = SyncState {
                                collection: collection.clone(),
                                source_table: table,
                                watermark: existing.as_ref().and_then(|s| s.watermark),
                                fingerprint: Some(fingerprint.clone()),
                                last_run_at: existing.as_ref().and_then(|s| s.last_run_at),
                                last_full_at: existing.as_ref().and_then(|s| s.last_full_at),
                            };
                            phase0::set_sync_state(tx, &state)?;
                            state
                        }
                    };
                    states.insert(table, state);
                }
                Ok(states)
            })
            .await?;
        *self.states.lock().unwrap_or_else(PoisonError::into_inner) = states;
        Ok(())
    }

    /// Where the keyset pass of `table` starts.
    fn start_position(&self, table: SourceTable) -> Option<Watermark> {
        match self.kind {
            RunKind::Backfill => None,
            RunKind::Sync => self
                .states
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&table)
                .and_then(|s| s.watermark)
                .map(|w| w.rewind(self.indexer.config.overlap)),
        }
    }

    /// Reads the changed rows of `table` page by page and applies them: reader, encoder
    /// and writer run concurrently, connected by bounded channels.
    async fn keyset_pass(&self, table: SourceTable) -> Result<(), SyncError> {
        let indexer = self.indexer;
        let start = self.start_position(table);
        let estimate = match self.kind {
            RunKind::Backfill => indexer
                .blocking_read(move |conn| Ok(queries::row_counts(conn)?.get(table)))
                .await
                .ok(),
            RunKind::Sync => None,
        };
        indexer.progress().event(ProgressEvent::TableStarted {
            table,
            rows: estimate,
        });
        tracing::debug!(%table, start = ?start, "keyset pass");

        // The pass ends at the start of the run: rows written during the run are left to
        // the next one (the watermark never passes the start of the run anyway), so a
        // CRM that keeps writing cannot keep the pass going. Rows stamped later than the
        // start (clocks ahead, rows written meanwhile) are taken separately, once.
        let until = Watermark::new(self.started_at, i64::MAX);
        let depth = indexer.config.pipeline_depth;
        let (read_tx, mut read_rx) = mpsc::channel::<Result<Batch, SyncError>>(depth);
        let (enc_tx, enc_rx) = mpsc::channel::<Result<Batch, SyncError>>(depth);
        // Stops this pass's reader and encoder when the writer stops, for whatever reason.
        let pass_stop = self.stop.child_token();

        // Reader: one read transaction per page, never held across anything else.
        let reader = {
            let store = indexer.store.clone();
            let collection = self.collection.clone();
            let limit = indexer.config.batch_size;
            let stop = pass_stop.clone();
            let times = Arc::clone(&self.times);
            tokio::task::spawn_blocking(move || {
                let mut cursor = start;
                while !stop.is_cancelled() {
                    let began = Instant::now();
                    let page = store
                        .reader()
                        .map_err(SyncError::from)
                        .and_then(|mut conn| {
                            batch::read_keyset_page(
                                &mut conn,
                                &collection,
                                table,
                                cursor,
                                until,
                                limit,
                            )
                            .map_err(SyncError::from)
                        });
                    StageTimes::add(&times.read, began);
                    let (page, last) = match page {
                        Ok((batch, _)) if batch.rows.is_empty() => return,
                        Ok((batch, last)) => {
                            cursor = batch.position.or(cursor);
                            (Ok(batch), last)
                        }
                        Err(err) => (Err(err), true),
                    };
                    if read_tx.blocking_send(page).is_err() || last {
                        return;
                    }
                }
            })
        };

        // Encoder: chunk, BM25 and dense vectors of the rows that need them. A signal
        // abandons the batch being embedded: nothing of it was written yet.
        let encoder_task = {
            let stop = pass_stop.clone();
            let encoder = indexer.encoder.clone();
            let faults = FaultHook::new(self);
            let times = &self.times;
            async move {
                while let Some(item) = read_rx.recv().await {
                    let item = match item {
                        Ok(mut batch) => {
                            let encoded = tokio::select! {
                                () = stop.cancelled() => Err(SyncError::Cancelled),
                                encoded = encode_batch(&encoder, &mut batch, &faults, times) => encoded,
                            };
                            encoded.map(|()| batch)
                        }
                        Err(err) => Err(err),
                    };
                    let failed = item.is_err();
                    if enc_tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            }
        };

        // Writer: applies batches in order and finishes the one it has started; stops at
        // the first error or at a signal, before taking the next batch. A fresh build
        // commits its batches in groups, after one flush each, in lanes; every other run
        // commits (and flushes) batch by batch.
        let writer = {
            let pass_stop = pass_stop.clone();
            async move {
                let mut enc_rx = enc_rx;
                let result = if self.fresh.load(Ordering::SeqCst) {
                    self.write_in_lanes(&mut enc_rx).await
                } else {
                    self.write_in_order(&mut enc_rx).await
                };
                pass_stop.cancel();
                drop(enc_rx);
                result
            }
        };

        let (written, ()) = tokio::join!(writer, encoder_task);
        reader.await.map_err(SyncError::worker)?;
        tracing::debug!(%table, stages = ?self.times.seconds(), "keyset pass finished");
        written
    }

    /// Rows stamped after the start of the run: the keyset pass stops there, and the
    /// watermark never passes it, so they are read here by id, from one snapshot of the
    /// keyset index, every run until their time has come (unchanged ones are skipped by
    /// hash).
    async fn future_rows(&self, table: SourceTable) -> Result<(), SyncError> {
        let after = Watermark::new(self.started_at, i64::MAX);
        let ids: Vec<i64> = self
            .indexer
            .blocking_read(move |conn| {
                Ok(
                    queries::keyset_keys(conn, table, Some(after), FUTURE_ROWS_PER_RUN)?
                        .into_iter()
                        .map(|w| w.id)
                        .collect(),
                )
            })
            .await?;
        if ids.is_empty() {
            return Ok(());
        }
        tracing::debug!(%table, rows = ids.len(), "rows stamped after the start of the run");
        let mut ids = ids;
        ids.sort_unstable();
        self.count(table, |c| c.future_dated += ids.len() as u64);
        self.process_ids(table, ids, Origin::Repair, 0).await
    }

    /// Finds what the watermark cannot see and applies it: rows gone from the CRM, rows
    /// without a record, records left pending, rows whose entity moved. Three ordered
    /// lists are merged in one pass: the CRM's ids (read from a covering index), the
    /// records, and the table's entity links, all from one snapshot.
    ///
    /// The records are the long read (a million of them is 100+ MB of pages). A sync
    /// skips it when the ids and links hash to the digest the last complete
    /// reconciliation of the table recorded, and no record of the table was written
    /// since (database triggers forget the digest on any record write): the records then
    /// still agree with the CRM. A backfill always reads everything.
    async fn reconcile(&self, table: SourceTable) -> Result<(), SyncError> {
        let collection = self.collection.clone();
        let trust_mark = self.kind == RunKind::Sync;
        let read = self
            .indexer
            .blocking_read(move |conn| {
                let tx = conn.transaction().map_err(|source| {
                    SyncError::from(StoreError::Sqlite {
                        context: format!("starting the reconciliation read of `{table}`"),
                        source,
                    })
                })?;
                let ids = sync_queries::source_ids(&tx, table)?;
                let links = sync_queries::entity_links_of_table(&tx, table)?;
                let digest = sync_queries::reconcile_digest(&ids, &links);
                if trust_mark
                    && sync_queries::reconciled_digest(&tx, &collection, table)?.as_deref()
                        == Some(digest.as_str())
                {
                    return Ok(None);
                }
                let keys = sync_queries::indexed_row_keys(&tx, &collection, table, PENDING)?;
                Ok(Some((ids, keys, links, digest)))
            })
            .await?;
        let Some((ids, keys, links, digest)) = read else {
            tracing::debug!(%table, "ids and links unchanged since the last reconciliation");
            return Ok(());
        };
        self.count(table, |c| c.records_scanned += keys.len() as u64);
        let plan = reconcile_plan(&ids, &keys, &links);
        drop((ids, keys, links));
        if !plan.work.is_empty() {
            tracing::info!(
                %table,
                rows = plan.work.len(),
                hard_deleted = plan.hard_deleted,
                "reconciling rows the watermark does not see"
            );
            let repairs = plan.work.len() as u64 - plan.hard_deleted;
            self.count(table, |c| c.repairs_found += repairs);
            self.process_ids(table, plan.work, Origin::Repair, 0)
                .await?;
        }
        // The records now agree with the CRM as it was read (the repairs above wrote
        // them from rows read since, at least as new). Later record writes in this run
        // (dependents of another table) forget the mark again.
        let collection = self.collection.clone();
        self.check_stop_lease()?;
        self.indexer
            .blocking_write(move |tx| {
                sync_queries::set_reconciled_digest(tx, &collection, table, &digest)?;
                Ok(())
            })
            .await
    }

    /// Reads, encodes and applies the rows `ids` of `table` now, in batches.
    fn process_ids(
        &self,
        table: SourceTable,
        ids: Vec<i64>,
        origin: Origin,
        depth: u8,
    ) -> Pin<Box<dyn Future<Output = Result<(), SyncError>> + Send + '_>> {
        Box::pin(async move {
            let faults = FaultHook::new(self);
            for chunk in ids.chunks(self.indexer.config.batch_size) {
                self.check_stop()?;
                let chunk = chunk.to_vec();
                let collection = self.collection.clone();
                let indexed_only = origin == Origin::Dependents;
                let mut batch = self
                    .indexer
                    .blocking_read(move |conn| {
                        batch::read_rows_by_ids(
                            conn,
                            &collection,
                            table,
                            &chunk,
                            origin,
                            indexed_only,
                            depth,
                        )
                        .map_err(SyncError::from)
                    })
                    .await?;
                if origin == Origin::Dependents {
                    self.count(table, |c| c.dependents_checked += batch.rows.len() as u64);
                }
                encode_batch(&self.indexer.encoder, &mut batch, &faults, &self.times).await?;
                self.apply(batch).await?;
            }
            Ok(())
        })
    }

    /// Applies one batch, in the order that makes a crash at any point harmless:
    /// mark touched records pending; upsert; delete stale points; patch entity ids;
    /// re-render dependents; then record the rows and advance the watermark together.
    async fn apply(&self, batch: Batch) -> Result<(), SyncError> {
        let staged = self.stage(batch, Durability::Now).await?;
        self.commit(vec![staged]).await
    }

    /// Everything of [`Run::apply`] but the commit. With [`Durability::Later`] the
    /// upsert is not flushed: the batch may be committed only after an
    /// [`Index::flush`] (its rows stay pending until then, so a crash loses nothing).
    async fn stage(&self, batch: Batch, durability: Durability) -> Result<Staged, SyncError> {
        let marked = self.mark_pending(batch).await?;
        self.write_index(marked, durability).await
    }

    /// Step 1 of [`Run::stage`]: counts the batch's rows and marks those about to change
    /// in the index pending, after checking that their records are still what the plan
    /// saw.
    async fn mark_pending(&self, mut batch: Batch) -> Result<Staged, SyncError> {
        let table = batch.table;
        let read = batch.rows.len() as u64;
        self.count(table, |c| {
            c.rows_read += read;
            c.rows_unchanged += batch
                .rows
                .iter()
                .filter(|r| r.action == Action::Skip)
                .count() as u64;
        });
        if batch.is_noop() {
            return Ok(Staged {
                batch,
                redo: Vec::new(),
                held: None,
            });
        }

        let began = Instant::now();
        let (redo, held) = self.prewrite(&mut batch).await?;
        StageTimes::add(&self.times.prewrite, began);
        if batch.rows.iter().any(|r| r.action.touches_index()) || !batch.gone.is_empty() {
            self.fault(FaultStage::AfterPrewrite)?;
        }
        Ok(Staged { batch, redo, held })
    }

    /// Steps 2–6 of [`Run::stage`], for a batch marked by [`Run::mark_pending`].
    async fn write_index(
        &self,
        marked: Staged,
        durability: Durability,
    ) -> Result<Staged, SyncError> {
        let Staged {
            mut batch,
            redo,
            held,
        } = marked;
        if batch.is_noop() && redo.is_empty() {
            return Ok(Staged { batch, redo, held });
        }
        let table = batch.table;
        let began = Instant::now();

        // 2. Upsert the new chunks (durable when the call returns).
        let points: Vec<index_qdrant::ChunkPoint> = batch
            .rows
            .iter_mut()
            .filter(|r| r.action == Action::Index)
            .flat_map(|r| std::mem::take(&mut r.points))
            .collect();
        let upserted = points.len() as u64;
        if !points.is_empty() {
            match durability {
                Durability::Now => self.indexer.index.upsert(points).await?,
                Durability::Later => self.indexer.index.upsert_unflushed(points).await?,
            };
            self.fault(FaultStage::AfterUpsert)?;
        }

        // 3. Delete chunks that no longer exist, and every point of removed rows.
        let mut stale: Vec<ChunkId> = Vec::new();
        let table_name = table.as_str();
        for row in &batch.rows {
            let range = match row.action {
                Action::Index => plan::stale_range(row.final_chunk_count(), row.observed.as_ref()),
                Action::Remove => plan::stale_range(0, row.observed.as_ref()),
                Action::Skip | Action::RecordOnly | Action::EntityOnly => continue,
            };
            stale.extend(range.map(|k| ChunkId::new(table_name, row.source_id(), k)));
        }
        for gone in &batch.gone {
            stale.extend(
                plan::stale_range(0, Some(&gone.observed))
                    .map(|k| ChunkId::new(table_name, gone.source_id, k)),
            );
        }
        let deleted = stale.len() as u64;
        if !stale.is_empty() {
            self.indexer.index.delete_points(&stale).await?;
        }

        // 4. Patch entity ids without re-embedding, one call per target entity.
        let mut by_entity: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
        for row in batch.rows.iter().filter(|r| r.action == Action::EntityOnly) {
            by_entity
                .entry(row.entity_id.clone())
                .or_default()
                .push(row.source_id());
        }
        for (entity, ids) in &by_entity {
            self.indexer
                .index
                .set_entity_id(table_name, ids, entity.as_deref())
                .await?;
        }
        StageTimes::add(&self.times.index, began);
        if batch.rows.iter().any(|r| r.action.touches_index()) || !batch.gone.is_empty() {
            self.fault(FaultStage::AfterIndexWrites)?;
        }

        self.count(table, |c| {
            for row in &batch.rows {
                match row.action {
                    Action::Skip => {}
                    Action::RecordOnly => c.records_only += 1,
                    Action::EntityOnly => c.entity_updates += 1,
                    Action::Index => c.rows_indexed += 1,
                    Action::Remove => c.rows_removed += 1,
                }
            }
            c.rows_hard_deleted += batch.gone.len() as u64;
            c.chunks_upserted += upserted;
            c.points_deleted += deleted;
            c.conflicts_redone += redo.len() as u64;
        });

        // 5. Rows whose record moved under us are redone from fresh data.
        if !redo.is_empty() {
            self.process_ids(table, redo.clone(), Origin::Redo, batch.depth)
                .await?;
        }

        // 6. Documents that embed data of changed rows are re-rendered before this batch
        //    is recorded: a crash before the commit leaves the trigger pending, so the
        //    next run comes back here.
        self.dependents(&batch).await?;

        Ok(Staged { batch, redo, held })
    }

    /// Checks the batch's records against the plan and marks the rows about to change
    /// pending. Returns the ids of rows whose record changed since they were read (they
    /// are taken out of the batch) and the table's reconciliation mark, held.
    async fn prewrite(&self, batch: &mut Batch) -> Result<(Vec<i64>, Option<HeldMark>), SyncError> {
        let table = batch.table;
        let collection = self.collection.clone();
        let mut ids: Vec<i64> = batch.rows.iter().map(RowWork::source_id).collect();
        ids.extend(batch.gone.iter().map(|g| g.source_id));
        let expected: HashMap<i64, Option<plan::Observed>> = batch
            .rows
            .iter()
            .map(|r| (r.source_id(), r.observed.clone()))
            .chain(
                batch
                    .gone
                    .iter()
                    .map(|g| (g.source_id, Some(g.observed.clone()))),
            )
            .collect();
        let mut pending: Vec<IndexedRow> = Vec::new();
        let now = Timestamp::now();
        for row in batch.rows.iter().filter(|r| r.action.touches_index()) {
            let bound = row
                .observed
                .as_ref()
                .map_or(0, |o| o.chunk_count)
                .max(row.final_chunk_count());
            pending.push(IndexedRow {
                collection: collection.clone(),
                source_table: table,
                source_id: row.source_id(),
                entity_id: row.observed.as_ref().and_then(|o| o.entity_id.clone()),
                content_hash: PENDING.to_owned(),
                chunk_count: bound,
                indexed_at: now,
            });
        }
        for gone in &batch.gone {
            pending.push(IndexedRow {
                collection: collection.clone(),
                source_table: table,
                source_id: gone.source_id,
                entity_id: gone.observed.entity_id.clone(),
                content_hash: PENDING.to_owned(),
                chunk_count: gone.observed.chunk_count,
                indexed_at: now,
            });
        }
        let sentinel = format!(
            "{HELD_MARK_PREFIX}{}/{}/{}",
            std::process::id(),
            self.started_at.to_canonical(),
            self.marks_held.fetch_add(1, Ordering::SeqCst)
        );
        let (conflicts, held) = self
            .indexer
            .blocking_write(move |tx| {
                let mark = sync_queries::reconciled_digest(tx, &collection, table)?;
                let current = phase0::indexed_rows(tx, &collection, table, &ids)?;
                let conflicts: Vec<i64> = ids
                    .iter()
                    .copied()
                    .filter(|id| {
                        let now = current.get(id).map(plan::Observed::from);
                        expected.get(id).is_some_and(|want| *want != now)
                    })
                    .collect();
                for row in pending.iter().filter(|r| !conflicts.contains(&r.source_id)) {
                    phase0::upsert_indexed_row(tx, row)?;
                }
                let held = match mark {
                    Some(digest) if !digest.starts_with(HELD_MARK_PREFIX) => {
                        sync_queries::set_reconciled_digest(tx, &collection, table, &sentinel)?;
                        Some(HeldMark { sentinel, digest })
                    }
                    _ => None,
                };
                Ok((conflicts, held))
            })
            .await?;
        if !conflicts.is_empty() {
            tracing::warn!(
                table = %batch.table,
                rows = conflicts.len(),
                "records changed between planning and writing; redoing those rows"
            );
            batch.rows.retain(|r| !conflicts.contains(&r.source_id()));
            batch.gone.retain(|g| !conflicts.contains(&g.source_id));
        }
        Ok((conflicts, held))
    }

    /// Re-renders the rows whose documents embed data of this batch's changed rows.
    async fn dependents(&self, batch: &Batch) -> Result<(), SyncError> {
        if batch.depth >= MAX_DEPENDENT_DEPTH
            || !matches!(
                batch.table,
                SourceTable::Organizations | SourceTable::People
            )
        {
            return Ok(());
        }
        let fresh = self.fresh.load(Ordering::SeqCst);
        let triggers: Vec<i64> = batch
            .rows
            .iter()
            .filter(|r| r.action != Action::Skip && r.document_changed())
            .filter(|r| !fresh || r.observed.is_some())
            .map(RowWork::source_id)
            .chain(batch.gone.iter().map(|g| g.source_id))
            .collect();
        if triggers.is_empty() {
            return Ok(());
        }
        let (orgs, people) = match batch.table {
            SourceTable::Organizations => (triggers, Vec::new()),
            _ => (Vec::new(), triggers),
        };
        let deps = self
            .indexer
            .blocking_read(move |conn| {
                queries::dependents(conn, &orgs, &people).map_err(SyncError::from)
            })
            .await?;
        let depth = batch.depth + 1;
        for (table, ids) in [
            (SourceTable::People, deps.people),
            (SourceTable::Interactions, deps.interactions),
            (SourceTable::Deals, deps.deals),
        ] {
            if !ids.is_empty() {
                self.process_ids(table, ids, Origin::Dependents, depth)
                    .await?;
            }
        }
        Ok(())
    }

    /// Writes and commits the encoded batches one at a time, each durable before its
    /// commit.
    async fn write_in_order(
        &self,
        encoded: &mut mpsc::Receiver<Result<Batch, SyncError>>,
    ) -> Result<(), SyncError> {
        loop {
            let waiting = Instant::now();
            let Some(item) = encoded.recv().await else {
                break;
            };
            StageTimes::add(&self.times.writer_idle, waiting);
            self.check_stop()?;
            self.apply(item?).await?;
        }
        self.check_stop()
    }

    /// A fresh build's writes, in three lanes that run concurrently, each in batch
    /// order: marking rows pending (SQLite), writing the index unflushed, and committing
    /// each group of batches after the flush that made it durable (SQLite again). A
    /// batch is marked while the one before is written to the index, and a group is
    /// committed while the next one is written: the index, the slowest lane, never
    /// waits for SQLite.
    ///
    /// The order of each row's writes stays that of [`Run::apply`]: marked, then written
    /// to the index, then flushed, then committed. Rows whose record moved between
    /// planning and marking are redone from fresh data by the index lane; the next
    /// batch is marked only after that redo, so that its check against the records sees
    /// what the redo recorded (a row may come twice in one pass when its timestamps go
    /// backwards).
    async fn write_in_lanes(
        &self,
        encoded: &mut mpsc::Receiver<Result<Batch, SyncError>>,
    ) -> Result<(), SyncError> {
        type Marked = (Staged, Option<oneshot::Sender<()>>);
        let (marked_tx, mut marked_rx) = mpsc::channel::<Marked>(1);
        let (group_tx, mut group_rx) = mpsc::channel::<Vec<Staged>>(1);

        let marker = async move {
            loop {
                let waiting = Instant::now();
                let item = tokio::select! {
                    item = encoded.recv() => item,
                    // The index lane stopped; its result tells why.
                    () = marked_tx.closed() => return Ok(()),
                };
                let Some(item) = item else {
                    break;
                };
                StageTimes::add(&self.times.writer_idle, waiting);
                self.check_stop()?;
                let marked = self.mark_pending(item?).await?;
                let (redone_tx, redone_rx) = if marked.redo.is_empty() {
                    (None, None)
                } else {
                    let (tx, rx) = oneshot::channel();
                    (Some(tx), Some(rx))
                };
                if marked_tx.send((marked, redone_tx)).await.is_err() {
                    // The index lane stopped; its result tells why.
                    return Ok(());
                }
                if let Some(redone) = redone_rx {
                    // An error means the index lane stopped before the redo.
                    let _ = redone.await;
                }
            }
            self.check_stop()
        };

        let index_lane = async move {
            let mut staged: Vec<Staged> = Vec::new();
            let mut unflushed: u64 = 0;
            let result = async {
                while let Some((marked, redone)) = marked_rx.recv().await {
                    if group_tx.is_closed() {
                        // The commit lane stopped; its result tells why.
                        return Ok(());
                    }
                    self.check_stop()?;
                    let written = self.write_index(marked, Durability::Later).await?;
                    drop(redone);
                    unflushed += written.batch.chunks();
                    staged.push(written);
                    if unflushed >= self.indexer.config.flush_every_chunks {
                        unflushed = 0;
                        self.flush_index().await?;
                        if group_tx.send(std::mem::take(&mut staged)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            }
            .await;
            // Stops the marker: nothing more is written.
            drop(marked_rx);
            // Batches written before a stop or a failure are still recorded, if the
            // index takes the flush (if not, their rows stay pending: the next run
            // redoes them).
            let finished = if staged.is_empty() {
                Ok(None)
            } else {
                self.flush_index().await.map(|()| Some(staged))
            };
            match finished {
                Ok(Some(staged)) => {
                    // A closed commit lane has its own error to report.
                    let _ = group_tx.send(staged).await;
                    result
                }
                Ok(None) => result,
                Err(err) => result.and(Err(err)),
            }
        };

        let committer = async move {
            while let Some(group) = group_rx.recv().await {
                self.commit(group).await?;
            }
            Ok(())
        };

        let (marked, indexed, committed) = tokio::join!(marker, index_lane, committer);
        committed.and(indexed).and(marked)
    }

    /// Makes every unflushed index write durable.
    async fn flush_index(&self) -> Result<(), SyncError> {
        let began = Instant::now();
        self.indexer.index.flush().await?;
        StageTimes::add(&self.times.flush, began);
        Ok(())
    }

    /// Records the batches' rows and, for keyset batches, advances the watermark, in one
    /// transaction, in batch order; puts back a table's reconciliation mark `held` by a
    /// batch's first write when nothing else wrote the table's records since.
    ///
    /// One transaction for a group of batches: each batch's records are about a
    /// thousand rows spread over the records table's whole key range (keyset order is
    /// not id order), so every transaction rewrites about as many pages as it has rows,
    /// and a group's batches share many of them.
    async fn commit(&self, group: Vec<Staged>) -> Result<(), SyncError> {
        let work: Vec<CommitWork> = group
            .into_iter()
            .filter_map(|staged| self.commit_work(staged))
            .collect();
        if work.is_empty() {
            return Ok(());
        }
        self.check_stop_lease()?;
        let began = Instant::now();
        let collection = self.collection.clone();
        let work = self
            .indexer
            .blocking_write(move |tx| {
                for w in &work {
                    // The mark goes back only if the batch's sentinel is still in its place.
                    let restore = match &w.held {
                        Some(h) => (sync_queries::reconciled_digest(tx, &collection, w.table)?
                            == Some(h.sentinel.clone()))
                        .then_some(&h.digest),
                        None => None,
                    };
                    for record in &w.records {
                        phase0::upsert_indexed_row(tx, record)?;
                    }
                    for id in &w.gone {
                        phase0::delete_indexed_row(tx, &collection, w.table, *id)?;
                    }
                    if let Some(state) = &w.state {
                        phase0::set_sync_state(tx, state)?;
                    }
                    if let Some(digest) = restore {
                        sync_queries::set_reconciled_digest(tx, &collection, w.table, digest)?;
                    }
                }
                Ok(work)
            })
            .await?;
        StageTimes::add(&self.times.commit, began);
        for w in &work {
            if w.changed() {
                self.committed_changes.store(true, Ordering::SeqCst);
            }
            self.batches_committed.fetch_add(1, Ordering::SeqCst);
            self.indexer
                .progress()
                .event(ProgressEvent::BatchCommitted {
                    table: w.table,
                    rows: w.rows,
                    chunks: w.chunks,
                });
        }
        for _ in &work {
            self.fault(FaultStage::AfterCommit)?;
        }
        Ok(())
    }

    /// What committing one batch writes, or `None` when it would write nothing.
    fn commit_work(&self, staged: Staged) -> Option<CommitWork> {
        let Staged { batch, redo, held } = staged;
        let table = batch.table;
        let now = Timestamp::now();
        let records: Vec<IndexedRow> = batch
            .rows
            .iter()
            .filter(|r| r.action != Action::Skip && !redo.contains(&r.source_id()))
            .map(|r| batch::final_record(&self.collection, r, now))
            .collect();
        let gone: Vec<i64> = batch.gone.iter().map(|g| g.source_id).collect();
        let changed = !records.is_empty() || !gone.is_empty();
        // The mark may come back only if the batch leaves what the reconciliation looks
        // at as it found it: the same recorded ids, each with the same entity, none
        // pending. New content for rows already recorded is all it may have written.
        let held = held.filter(|_| {
            gone.is_empty()
                && batch
                    .rows
                    .iter()
                    .filter(|r| r.action != Action::Skip && !redo.contains(&r.source_id()))
                    .all(|r| {
                        matches!(r.action, Action::Index | Action::RecordOnly)
                            && r.observed
                                .as_ref()
                                .is_some_and(|o| !o.is_pending() && o.entity_id == r.entity_id)
                    })
        });
        let state = match (batch.origin, batch.position) {
            (Origin::Keyset, Some(position)) => {
                // Never past the start of the run: rows stamped later (clock skew, rows
                // written during the run) are read again next time.
                let ceiling = Watermark::new(self.started_at, i64::MAX);
                let position = position.min(ceiling);
                let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
                states.get_mut(&table).and_then(|state| {
                    if state.watermark == Some(position) && !changed {
                        None
                    } else {
                        state.watermark = Some(position);
                        state.last_run_at = Some(now);
                        Some(state.clone())
                    }
                })
            }
            _ => None,
        };
        if !changed && state.is_none() && held.is_none() {
            return None;
        }
        Some(CommitWork {
            table,
            rows: batch.rows.len() as u64,
            chunks: batch.chunks(),
            records,
            gone,
            state,
            held,
        })
    }

    /// Refuses to commit once the lease is lost: another run may be writing.
    fn check_stop_lease(&self) -> Result<(), SyncError> {
        if self.lease_lost.is_cancelled() {
            Err(SyncError::LeaseLost {
                name: self.lease_name.clone(),
            })
        } else {
            Ok(())
        }
    }
}

/// A handle on the run's fault hook that the encoder task can carry.
struct FaultHook<'r, 'a> {
    run: &'r Run<'a>,
}

impl<'r, 'a> FaultHook<'r, 'a> {
    fn new(run: &'r Run<'a>) -> Self {
        Self { run }
    }

    fn fire(&self, stage: FaultStage) -> Result<(), SyncError> {
        self.run.fault(stage)
    }
}

/// Chunks, BM25-encodes and embeds the rows of a batch that need it, and turns them
/// into points.
async fn encode_batch(
    encoder: &Arc<Encoder>,
    batch: &mut Batch,
    faults: &FaultHook<'_, '_>,
    times: &StageTimes,
) -> Result<(), SyncError> {
    faults.fire(FaultStage::BeforeEmbed)?;
    let wanted: Vec<usize> = batch
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.action == Action::Index)
        .map(|(i, _)| i)
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    // Chunking and BM25 are CPU work: off the async threads.
    let docs: Vec<crm_store::Document> =
        wanted.iter().map(|&i| batch.rows[i].doc.clone()).collect();
    let began = Instant::now();
    let prepared: Vec<Vec<PreparedChunk>> = {
        let encoder = encoder.clone();
        tokio::task::spawn_blocking(move || docs.iter().map(|d| encoder.prepare(d)).collect())
            .await
            .map_err(SyncError::worker)?
    };
    let texts: Vec<String> = prepared
        .iter()
        .flat_map(|chunks| chunks.iter().map(|c| c.text.clone()))
        .collect();
    StageTimes::add(&times.prepare, began);
    let what = batch.describe();
    let began = Instant::now();
    // `dense` returns exactly one vector per text, in order.
    let mut dense = encoder.dense(texts, &what).await?.into_iter();
    StageTimes::add(&times.dense, began);
    for (&i, chunks) in wanted.iter().zip(prepared) {
        let row = &mut batch.rows[i];
        row.action = plan::after_chunking(chunks.len(), row.observed.as_ref());
        let mut points = Vec::with_capacity(chunks.len());
        for (chunk, vector) in chunks.into_iter().zip(dense.by_ref()) {
            points.push(encode::point(
                &row.doc,
                &row.content_hash,
                row.entity_id.as_deref(),
                chunk,
                vector,
            ));
        }
        row.chunk_count = u32::try_from(points.len()).unwrap_or(u32::MAX);
        row.points = points;
    }
    Ok(())
}

/// What reconciliation of one table found.
#[derive(Debug, PartialEq, Eq)]
struct ReconcilePlan {
    /// Rows to process, ascending: hard-deleted, never recorded, pending, entity moved.
    work: Vec<i64>,
    /// How many of them are gone from the CRM.
    hard_deleted: u64,
}

/// Merges the CRM's ids, the records and the entity links (each sorted by id).
fn reconcile_plan(
    ids: &[i64],
    keys: &[sync_queries::IndexedRowKey],
    links: &[(i64, String)],
) -> ReconcilePlan {
    let mut work = Vec::new();
    let mut hard_deleted = 0;
    // Ids only grow, so the link cursor only moves forward.
    let mut link = 0;
    let mut entity_of = |id: i64| -> Option<&str> {
        while links.get(link).is_some_and(|(l, _)| *l < id) {
            link += 1;
        }
        links
            .get(link)
            .filter(|(l, _)| *l == id)
            .map(|(_, e)| e.as_str())
    };
    let (mut i, mut k) = (0, 0);
    loop {
        match (ids.get(i), keys.get(k)) {
            (Some(&id), Some(key)) if id == key.source_id => {
                if key.pending || entity_of(id) != key.entity_id.as_deref() {
                    work.push(id);
                }
                i += 1;
                k += 1;
            }
            (Some(&id), Some(key)) if id < key.source_id => {
                work.push(id);
                i += 1;
            }
            (Some(&id), None) => {
                work.push(id);
                i += 1;
            }
            (_, Some(key)) => {
                work.push(key.source_id);
                hard_deleted += 1;
                k += 1;
            }
            (None, None) => break,
        }
    }
    ReconcilePlan { work, hard_deleted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64, pending: bool, entity: Option<&str>) -> sync_queries::IndexedRowKey {
        sync_queries::IndexedRowKey {
            source_id: id,
            chunk_count: 1,
            pending,
            entity_id: entity.map(str::to_owned),
        }
    }

    #[test]
    fn reconciliation_finds_each_kind_of_row_once() {
        let ids = [1, 2, 3, 4, 5, 7];
        let keys = [
            key(1, false, None),             // in step
            key(2, true, None),              // pending
            key(3, false, Some("person:3")), // link removed
            key(4, false, Some("person:4")), // in step
            key(6, false, None),             // hard-deleted
            key(7, false, Some("person:7")), // merged into person:4
            key(9, false, None),             // hard-deleted
        ];
        let links = [
            (0, "person:0".to_owned()),
            (4, "person:4".to_owned()),
            (5, "person:5".to_owned()),
            (7, "person:4".to_owned()),
        ];
        let plan = reconcile_plan(&ids, &keys, &links);
        // 5 has no record.
        assert_eq!(plan.work, vec![2, 3, 5, 6, 7, 9]);
        assert_eq!(plan.hard_deleted, 2);
        assert_eq!(
            reconcile_plan(&[], &[], &[]),
            ReconcilePlan {
                work: vec![],
                hard_deleted: 0
            }
        );
    }
}
