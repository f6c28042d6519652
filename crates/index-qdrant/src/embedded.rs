//! One `qdrant-edge` shard of an embedded collection (see [`crate::shards`] for the
//! collection: its shards, their layout on disk and the fan-out of every operation).
//!
//! `EdgeShard` is synchronous, so every call runs on tokio's blocking pool. The shard
//! serves concurrent reads, but its writes are not safe to overlap: `flush()` asserts
//! with `try_lock().expect(..)` that no update holds the WAL or a segment-holder write
//! lock, and panics otherwise. So writes, flushes and optimisation take one mutex, while
//! searches only take the read side of the lock that guards the shard's existence
//! (dropping and re-creating the collection takes its write side).
//!
//! One process at a time: the shard keeps its mutable segment in memory and rewrites
//! files on flush, so a second process on the same directory would overwrite the first
//! one's data. The collection's exclusive lock file, held by every shard, enforces it.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParams, FieldCondition, FieldIndexOperations, Filter, Fusion,
    HnswIndexConfig, JsonPath, Match, Modifier, NamedQuery, OperationError, Payload,
    PayloadFieldSchema, PayloadOps, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStructPersisted, Prefetch, QuantizationConfig, QuantizationSearchParams,
    QueryEnum, QueryRequest, Range, Record, ScoredPoint, ScoringQuery,
    ScrollRequest as EdgeScrollRequest, SearchParams, SetPayloadOp, UpdateOperation,
    VectorInternal, VectorPersisted, VectorStructInternal, VectorStructPersisted, WalOptions,
    WithPayloadInterface, WithVector,
};
use serde_json::{Map, Value};

use crate::config::{CollectionSpec, EngineKind};
use crate::error::IndexError;
use crate::point::{
    ChunkId, ChunkPayload, ChunkPoint, PAYLOAD_INDEXES, PayloadIndexKind, SparseVector,
    StoredPoint, StoredVectors,
};
use crate::query::{Cond, FilterSpec, IndexInfo, OptimizeOutcome, ScrollPage, SearchHit};
use crate::{
    CollectionStatus, DENSE_VECTOR, Durability, PayloadTarget, PlanQuery, SPARSE_VECTOR, SearchPlan,
};

/// How many points one `update` call carries (one WAL record each).
const UPSERT_BATCH: usize = 512;

/// How many ids or source ids one delete/payload operation carries.
const ID_BATCH: usize = 4096;

/// Points upserted between two seals of the appendable segment.
///
/// qdrant-edge 0.7.2 keeps the appendable segment's sparse index in memory as sorted
/// posting lists and, on every insert, rewrites the `max_next_weight` of every earlier
/// element of the list (`PostingList::upsert` walks the whole prefix), so filling one
/// segment with n points costs O(n²) per common token: at 200k chunks that walk was most
/// of a build. Sealing the segment every `SEAL_POINTS` points (the optimizer turns it into
/// an immutable one and opens a fresh appendable segment) keeps every list short. Seals
/// after unflushed upserts run beside the writes (see [`State::seal_if_due`]), so their
/// cost leaves the writer's path and a small segment is cheap: at 100k chunks, 4,096
/// points per seal ingested 4,100 chunks/s, 8,192 3,400, 16,384 3,100.
///
/// This is the least; a large collection seals larger segments (see [`seal_points`]).
const SEAL_POINTS: usize = 4_096;

/// Collection size up to which segments are sealed at [`SEAL_POINTS`].
const SEAL_GROWTH_FROM: usize = 150_000;

/// Points upserted between two seals when the collection holds `points` points.
///
/// Every upsert looks its ids up in every segment, so the lookups cost a point about
/// `n / s` binary searches for `n` points in segments of `s`, while the appendable
/// segment's posting lists cost it about `s`: the sum is least at `s ∝ √n`. Profiled at
/// 500k chunks with 4,096 points per seal, the lookups took 22% of a build's CPU and
/// the posting lists 6.5%, which puts the best size at 4,096 · √(n / 150k): 4,096 up to
/// 150k points, 10,600 at 1M.
fn seal_points(points: usize) -> usize {
    let scale = (points as f64 / SEAL_GROWTH_FROM as f64).sqrt();
    ((SEAL_POINTS as f64 * scale) as usize).max(SEAL_POINTS)
}

/// Marks a collection in bulk mode and keeps its real HNSW and optimizer settings.
///
/// Sealed segments are written without an HNSW graph (`m = 0`), whatever their size, and
/// are not merged while a long write goes on, so that every point's graph links are
/// built once, by the next [`Embedded::optimize`], when the sealed segments are merged
/// into large ones. This file is written before the collection's config is changed and
/// removed after it is restored; a collection found with it (a run killed in bulk mode)
/// gets its settings back when it is next loaded.
const BULK_FILE: &str = "crm-bulk-mode.json";

/// The settings a collection had before it entered bulk mode.
#[derive(serde::Serialize, serde::Deserialize)]
struct BulkSaved {
    hnsw_config: HnswIndexConfig,
    optimizers: EdgeOptimizersConfig,
    /// Bulk mode began before anything was sealed (a build from empty): the optimizer
    /// pass that ends it merges every segment into one, whatever the segment size cap.
    #[serde(default)]
    merge_all: bool,
}

/// Segment size cap (KB) of the optimizer pass that ends a build from empty: larger than
/// any collection, so it merges every sealed segment into one.
///
/// Every search visits every segment, and every hit of every segment has its id looked
/// up again before the results are merged: at 1M chunks, one segment answered a dense
/// query in 1.1–1.3 ms where the default cap's three (plus a remainder) took 3.4–3.9,
/// and hybrid queries 5.2 where they took 6.4–6.8 (`crm-bench index`, query part, same
/// points). Later passes keep the usual cap, so the merged segment, already above it, is
/// never merged again: a sync that seals a few segments merges only those.
const MERGE_ALL_KB: usize = usize::MAX / 1024;

/// Puts the shard in bulk mode unless it already is: saves its settings in
/// [`BULK_FILE`] (durably), then builds sealed segments without a graph and merges none.
/// `written` is the number of points upserted since the last seal.
fn enter_bulk(shard: &EdgeShard, written: usize) -> Result<(), String> {
    let path = shard.path().join(BULK_FILE);
    if path.exists() {
        return Ok(());
    }
    let (hnsw_config, optimizers, dense_dim) = {
        let config = shard.config();
        let dense_dim = config.vectors.get(DENSE_VECTOR).map_or(1, |v| v.size);
        (config.hnsw_config, config.optimizers.clone(), dense_dim)
    };
    let saved = BulkSaved {
        hnsw_config,
        optimizers: optimizers.clone(),
        // Nothing older than this write: every point gets its graph at the end.
        merge_all: shard.info().points_count <= written,
    };
    let bytes = serde_json::to_vec(&saved).map_err(|err| format!("bulk settings: {err}"))?;
    write_durably(&path, &bytes)?;
    shard
        .set_hnsw_config(HnswIndexConfig {
            m: 0,
            payload_m: Some(0),
            ..hnsw_config
        })
        .map_err(|err| format!("bulk HNSW settings: {err}"))?;
    shard
        .set_optimizers_config(EdgeOptimizersConfig {
            default_segment_number: Some(BULK_SEGMENT_NUMBER),
            // Seal at `SEAL_POINTS` points whatever the vectors' size (the threshold is
            // in KB of f32 dense vectors; small ones would never reach the default
            // 10 MB), and not before: a seal running beside the writes loops until no
            // segment is due, so a lower threshold would seal every few points written
            // meanwhile.
            indexing_threshold: Some((SEAL_POINTS * dense_dim * 4 / 1024).max(1)),
            ..optimizers
        })
        .map_err(|err| format!("bulk optimizer settings: {err}"))?;
    Ok(())
}

/// Segment count the merge optimizer aims at in bulk mode: more than any build makes.
///
/// Every upsert looks its id up in every segment, so hundreds of sealed segments slow a
/// build down (at 1M chunks, a tenth of it was that lookup); merging them as the write
/// goes on cost more still (segments of up to 65,536 points, merged on the seal's
/// thread, took 2,100 rows/s where 2,600 were written without).
const BULK_SEGMENT_NUMBER: usize = 100_000;

/// Runs the optimizer, which seals the appendable segment of a shard in bulk mode.
fn seal(shard: &EdgeShard, points: usize) -> Result<(), String> {
    let started = std::time::Instant::now();
    shard.optimize().map_err(|err| err.to_string())?;
    tracing::debug!(
        points,
        seconds = started.elapsed().as_secs_f64(),
        segments = shard.info().segments_count,
        "sealed the appendable segment"
    );
    Ok(())
}

/// The settings saved by [`enter_bulk`], if the shard is in bulk mode.
fn bulk_saved(shard: &EdgeShard) -> Result<Option<BulkSaved>, String> {
    let path = shard.path().join(BULK_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("reading {}: {err}", path.display())),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| format!("{} is not readable: {err}", path.display()))
}

/// Puts back the settings saved by [`enter_bulk`], with the segment size cap replaced
/// by `cap` when one is given.
fn apply_saved(shard: &EdgeShard, saved: &BulkSaved, cap: Option<usize>) -> Result<(), String> {
    shard
        .set_hnsw_config(saved.hnsw_config)
        .map_err(|err| format!("restoring HNSW settings: {err}"))?;
    let optimizers = EdgeOptimizersConfig {
        max_segment_size: cap.or(saved.optimizers.max_segment_size),
        ..saved.optimizers.clone()
    };
    shard
        .set_optimizers_config(optimizers)
        .map_err(|err| format!("restoring optimizer settings: {err}"))
}

/// Removes [`BULK_FILE`]: the shard has its own settings again.
fn remove_bulk_file(shard: &EdgeShard) -> Result<(), String> {
    let path = shard.path().join(BULK_FILE);
    std::fs::remove_file(&path).map_err(|err| format!("removing {}: {err}", path.display()))
}

/// Restores the settings saved by [`enter_bulk`], if the shard is in bulk mode.
fn leave_bulk(shard: &EdgeShard) -> Result<(), String> {
    let Some(saved) = bulk_saved(shard)? else {
        return Ok(());
    };
    apply_saved(shard, &saved, None)?;
    remove_bulk_file(shard)
}

/// Runs the optimizer to completion, ending bulk mode first. After a build from empty
/// the pass runs with the real HNSW settings but no segment size cap, so it merges the
/// sealed segments into one, and the saved settings come back after it; a process
/// killed meanwhile leaves the bulk file, whose settings the next load restores.
fn optimize_fully(shard: &EdgeShard) -> Result<bool, String> {
    let saved = bulk_saved(shard)?;
    let merge_all = saved.as_ref().is_some_and(|saved| saved.merge_all);
    if let Some(saved) = &saved {
        apply_saved(shard, saved, merge_all.then_some(MERGE_ALL_KB))?;
        if !merge_all {
            remove_bulk_file(shard)?;
        }
    }
    let optimized = shard.optimize().map_err(|err| err.to_string())?;
    if let Some(saved) = saved.filter(|_| merge_all) {
        apply_saved(shard, &saved, None)?;
        remove_bulk_file(shard)?;
    }
    Ok(optimized)
}

/// Reads the files searches touch under `dir` (a collection's segments) once, so the
/// OS keeps them in its page cache: graphs and sparse indexes first, then the int8
/// copies, then the rest; payload storage is left out (a search reads the payloads of
/// its few hits only). Files that vanish meanwhile (an optimizer pass replaces
/// segments) are skipped. Returns how many files and bytes were read.
///
/// A read, not `posix_fadvise(WILLNEED)`: Linux caps that advice at one readahead
/// window per call, which left the int8 copy of a 1M-chunk collection uncached.
pub(crate) fn read_into_cache(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() && entry.file_name() != "payload_storage" => {
                    walk(&path, found);
                }
                Ok(kind) if kind.is_file() => found.push(path),
                _ => {}
            }
        }
    }
    fn rank(path: &Path) -> u8 {
        let text = path.to_string_lossy();
        if text.contains("vector_index") {
            0
        } else if text.contains("quantized") {
            1
        } else {
            2
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort_by_key(|path| rank(path));
    let mut buffer = vec![0u8; 1 << 20];
    let (mut count, mut bytes) = (0, 0);
    for path in files {
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        count += 1;
        loop {
            match std::io::Read::read(&mut file, &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes += n as u64,
            }
        }
    }
    (count, bytes)
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file =
        File::create(&tmp).map_err(|err| format!("creating {}: {err}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|err| format!("writing {}: {err}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|err| format!("renaming {}: {err}", tmp.display()))
}

/// One shard of an embedded collection, in its own directory. Clones are handles on
/// the same shard.
#[derive(Clone)]
pub(crate) struct Shard {
    state: Arc<State>,
}

struct State {
    collection: String,
    path: PathBuf,
    slot: RwLock<Slot>,
    /// Dense size of the open collection, 0 when none is open: lets a search check its
    /// query without a trip through the blocking pool.
    dense_dim: AtomicUsize,
    writes: Mutex<()>,
    /// Points upserted since the last optimizer pass (see [`SEAL_POINTS`]).
    unsealed: AtomicUsize,
    /// Points after which the appendable segment is sealed next (see [`seal_points`]).
    seal_at: AtomicUsize,
    /// A seal running beside unflushed upserts (see [`State::seal_if_due`]).
    seal: Mutex<Option<std::thread::JoinHandle<Result<(), String>>>>,
    /// The collection's lock, held for the life of every shard's handle; declared last
    /// so the shard is flushed and dropped before the lock can be released.
    _lock: Arc<File>,
}

impl Drop for State {
    /// A seal still running finishes before the shard and the lock go.
    fn drop(&mut self) {
        if let Err(err) = self.finish_seal() {
            tracing::warn!(error = %err, "sealing a segment failed as the index closed");
        }
    }
}

enum Slot {
    /// No collection on disk.
    Missing,
    /// A collection on disk, not loaded yet: the first operation that needs the shard
    /// loads it. Opening a large collection takes seconds (every segment's files are
    /// mapped, its id tracker and in-RAM indexes read), and a sync with nothing to write
    /// never needs it.
    Closed,
    /// A directory that does not load; only a re-create can fix it.
    Broken(String),
    /// The shard, open.
    Ready(Box<Loaded>),
}

struct Loaded {
    /// Shared with a background seal (see [`State::seal_if_due`]).
    shard: Arc<EdgeShard>,
    dense_dim: usize,
}

impl Shard {
    /// A handle on the shard in `path` (not loaded until first used); `broken` marks a
    /// shard the collection's layout says is unusable (only a re-create fixes it).
    pub(crate) fn new(
        path: PathBuf,
        collection: String,
        lock: Arc<File>,
        broken: Option<String>,
    ) -> Self {
        let slot = match broken {
            Some(detail) => Slot::Broken(detail),
            None if path.exists() => Slot::Closed,
            None => Slot::Missing,
        };
        tracing::debug!(path = %path.display(), exists = matches!(slot, Slot::Closed), "opened embedded shard");
        Self {
            state: Arc::new(State {
                collection,
                path,
                slot: RwLock::new(slot),
                dense_dim: AtomicUsize::new(0),
                writes: Mutex::new(()),
                unsealed: AtomicUsize::new(0),
                seal_at: AtomicUsize::new(SEAL_POINTS),
                seal: Mutex::new(None),
                _lock: lock,
            }),
        }
    }

    /// Whether the shard's directory is there (loaded or not).
    pub(crate) fn exists_on_disk(&self) -> bool {
        self.state.path.exists()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.state.path
    }

    /// Whether the shard is loaded (or the collection is missing or broken): false while
    /// a collection on disk waits for its first use.
    pub(crate) fn is_loaded(&self) -> bool {
        self.state
            .slot
            .read()
            .map_or(true, |slot| !matches!(*slot, Slot::Closed))
    }

    /// Runs `f` on the blocking pool and turns a panic into an error.
    async fn run<T, F>(&self, operation: &'static str, f: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> Result<T, IndexError> + Send + 'static,
    {
        let state = Arc::clone(&self.state);
        let task = tokio::task::spawn_blocking(move || f(&state));
        match task.await {
            Ok(result) => result,
            Err(join) => Err(self.state.panicked(operation, panic_message(join))),
        }
    }

    pub(crate) async fn exists(&self) -> Result<bool, IndexError> {
        self.run("exists", |state| {
            Ok(matches!(*state.loaded_slot("exists")?, Slot::Ready(_)))
        })
        .await
    }

    pub(crate) async fn dense_dim(&self) -> Result<usize, IndexError> {
        let cached = self.state.dense_dim.load(Ordering::Acquire);
        if cached != 0 {
            return Ok(cached);
        }
        // No collection open: let the slot say why (missing or broken).
        self.run("read config", |state| {
            state.with_shard("read config", |loaded| Ok(loaded.dense_dim))
        })
        .await
    }

    pub(crate) async fn ensure_collection(
        &self,
        spec: CollectionSpec,
        recreate: bool,
    ) -> Result<CollectionStatus, IndexError> {
        self.run("ensure collection", move |state| {
            state.ensure_blocking(&spec, recreate)
        })
        .await
    }

    pub(crate) async fn drop_collection(&self) -> Result<bool, IndexError> {
        self.run("drop collection", |state| {
            let mut slot = state.write_slot("drop collection")?;
            state.remove_blocking(&mut slot)
        })
        .await
    }

    pub(crate) async fn upsert(
        &self,
        points: Vec<ChunkPoint>,
        durability: Durability,
    ) -> Result<usize, IndexError> {
        self.run("upsert", move |state| {
            state.write_with("upsert", durability, |loaded| {
                let total = points.len();
                let mut points = points.into_iter();
                loop {
                    let batch: Vec<PointStructPersisted> = points
                        .by_ref()
                        .take(UPSERT_BATCH)
                        .map(|point| state.to_edge_point(point))
                        .collect::<Result<_, _>>()?;
                    if batch.is_empty() {
                        break;
                    }
                    state.update(
                        loaded,
                        "upsert",
                        UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                            PointInsertOperations::PointsList(batch),
                        )),
                    )?;
                }
                state.seal_if_due(loaded, total, durability)?;
                Ok(total)
            })
        })
        .await
    }

    /// Makes every write so far durable.
    pub(crate) async fn flush(&self) -> Result<(), IndexError> {
        self.run("flush", |state| state.write("flush", |_| Ok(())))
            .await
    }

    pub(crate) async fn delete_points(&self, ids: Vec<ChunkId>) -> Result<(), IndexError> {
        self.run("delete points", move |state| {
            state.write("delete points", |loaded| {
                for batch in ids.chunks(ID_BATCH) {
                    let ids = batch
                        .iter()
                        .map(|id| PointId::Uuid(*id.as_uuid()))
                        .collect();
                    state.update(
                        loaded,
                        "delete points",
                        UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }),
                    )?;
                }
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn delete_by_filter(
        &self,
        operation: &'static str,
        filters: Vec<FilterSpec>,
    ) -> Result<(), IndexError> {
        self.run(operation, move |state| {
            state.write(operation, |loaded| {
                for spec in &filters {
                    let filter = edge_filter(spec).ok_or_else(|| {
                        state.invalid(operation, "an empty filter would delete every point")
                    })?;
                    state.update(
                        loaded,
                        operation,
                        UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(
                            filter,
                        )),
                    )?;
                }
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn set_payload(
        &self,
        operation: &'static str,
        target: PayloadTarget,
        fields: Map<String, Value>,
    ) -> Result<(), IndexError> {
        self.run(operation, move |state| {
            state.write(operation, |loaded| {
                let ops: Vec<SetPayloadOp> = match target {
                    PayloadTarget::Ids(ids) => ids
                        .chunks(ID_BATCH)
                        .map(|batch| SetPayloadOp {
                            payload: Payload(fields.clone()),
                            points: Some(
                                batch
                                    .iter()
                                    .map(|id| PointId::Uuid(*id.as_uuid()))
                                    .collect(),
                            ),
                            filter: None,
                            key: None,
                        })
                        .collect(),
                    PayloadTarget::Filters(specs) => specs
                        .iter()
                        .map(|spec| {
                            let filter = edge_filter(spec).ok_or_else(|| {
                                state.invalid(operation, "an empty filter would update every point")
                            })?;
                            Ok(SetPayloadOp {
                                payload: Payload(fields.clone()),
                                points: None,
                                filter: Some(filter),
                                key: None,
                            })
                        })
                        .collect::<Result<_, IndexError>>()?,
                };
                for op in ops {
                    state.update(
                        loaded,
                        operation,
                        UpdateOperation::PayloadOperation(PayloadOps::SetPayload(op)),
                    )?;
                }
                Ok(())
            })
        })
        .await
    }

    /// The ids and scores of a prefetch of a hybrid search: `query` over the points that
    /// match `filter`, best `limit` first, without payloads.
    pub(crate) async fn ranked(
        &self,
        filter: Option<Filter>,
        query: ScoringQuery,
        limit: usize,
    ) -> Result<Vec<(PointId, f32)>, IndexError> {
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(query),
            filter,
            score_threshold: None,
            limit,
            offset: 0,
            params: Some(search_params()),
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(false),
        };
        self.run("search", move |state| {
            state.with_shard("search", |loaded| {
                let points = loaded
                    .shard
                    .query(request)
                    .map_err(|err| state.engine("search", &err))?;
                Ok(points.into_iter().map(|p| (p.id, p.score)).collect())
            })
        })
        .await
    }

    /// The hits of fused scores: each point's payload read, in the order given; a point
    /// deleted since it was ranked is left out.
    pub(crate) async fn hits(
        &self,
        fused: Vec<(PointId, f32)>,
    ) -> Result<Vec<SearchHit>, IndexError> {
        if fused.is_empty() {
            return Ok(Vec::new());
        }
        self.run("search", move |state| {
            state.with_shard("search", |loaded| {
                let ids: Vec<PointId> = fused.iter().map(|(id, _)| *id).collect();
                let mut payloads: HashMap<PointId, Option<Payload>> = loaded
                    .shard
                    .retrieve(&ids, Some(WithPayloadInterface::Bool(true)), None)
                    .map_err(|err| state.engine("search", &err))?
                    .into_iter()
                    .map(|record| (record.id, record.payload))
                    .collect();
                fused
                    .into_iter()
                    .filter_map(|(id, score)| {
                        payloads.remove(&id).map(|payload| (id, score, payload))
                    })
                    .map(|(id, score, payload)| {
                        let id = state.chunk_id(id)?;
                        let payload = state.payload(&id, payload)?;
                        Ok(SearchHit { id, score, payload })
                    })
                    .collect()
            })
        })
        .await
    }

    /// A search the engine runs whole (its own fusion, when the plan fuses).
    pub(crate) async fn single_search(
        &self,
        plan: SearchPlan,
    ) -> Result<Vec<SearchHit>, IndexError> {
        self.run("search", move |state| {
            state.with_shard("search", |loaded| {
                let request = edge_query(plan);
                let points = loaded
                    .shard
                    .query(request)
                    .map_err(|err| state.engine("search", &err))?;
                points
                    .into_iter()
                    .map(|point| state.to_hit(point))
                    .collect()
            })
        })
        .await
    }

    pub(crate) async fn count(&self, filter: FilterSpec) -> Result<u64, IndexError> {
        self.run("count", move |state| {
            state.with_shard("count", |loaded| {
                let count = loaded
                    .shard
                    .count(CountRequest {
                        filter: edge_filter(&filter),
                        exact: true,
                    })
                    .map_err(|err| state.engine("count", &err))?;
                Ok(count as u64)
            })
        })
        .await
    }

    pub(crate) async fn scroll(
        &self,
        filter: FilterSpec,
        limit: usize,
        offset: Option<ChunkId>,
        with_vectors: bool,
    ) -> Result<ScrollPage, IndexError> {
        self.run("scroll", move |state| {
            state.with_shard("scroll", |loaded| {
                let (records, next) = loaded
                    .shard
                    .scroll(EdgeScrollRequest {
                        offset: offset.map(|id| PointId::Uuid(*id.as_uuid())),
                        limit: Some(limit),
                        filter: edge_filter(&filter),
                        with_payload: Some(WithPayloadInterface::Bool(true)),
                        with_vector: WithVector::Bool(with_vectors),
                        order_by: None,
                    })
                    .map_err(|err| state.engine("scroll", &err))?;
                let points = records
                    .into_iter()
                    .map(|record| state.to_stored(record))
                    .collect::<Result<_, _>>()?;
                let next_offset = next.map(|id| state.chunk_id(id)).transpose()?;
                Ok(ScrollPage {
                    points,
                    next_offset,
                })
            })
        })
        .await
    }

    pub(crate) async fn retrieve(
        &self,
        ids: Vec<ChunkId>,
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, IndexError> {
        self.run("retrieve", move |state| {
            state.with_shard("retrieve", |loaded| {
                let ids: Vec<PointId> = ids.iter().map(|id| PointId::Uuid(*id.as_uuid())).collect();
                let records = loaded
                    .shard
                    .retrieve(
                        &ids,
                        Some(WithPayloadInterface::Bool(true)),
                        Some(WithVector::Bool(with_vectors)),
                    )
                    .map_err(|err| state.engine("retrieve", &err))?;
                records
                    .into_iter()
                    .map(|record| state.to_stored(record))
                    .collect()
            })
        })
        .await
    }

    pub(crate) async fn info(&self) -> Result<IndexInfo, IndexError> {
        self.run("info", |state| {
            state.with_shard("info", |loaded| {
                let info = loaded.shard.info();
                let points_count = loaded
                    .shard
                    .count(CountRequest {
                        filter: None,
                        exact: true,
                    })
                    .map_err(|err| state.engine("info", &err))?;
                let mut payload_indexes: Vec<(String, PayloadIndexKind)> = info
                    .payload_schema
                    .iter()
                    .filter_map(|(key, index)| {
                        let kind = match index.data_type {
                            PayloadSchemaType::Keyword => PayloadIndexKind::Keyword,
                            PayloadSchemaType::Integer => PayloadIndexKind::Integer,
                            PayloadSchemaType::Datetime => PayloadIndexKind::Datetime,
                            _ => return None,
                        };
                        Some((key.to_string(), kind))
                    })
                    .collect();
                payload_indexes.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(IndexInfo {
                    engine: EngineKind::Embedded,
                    collection: state.collection.clone(),
                    points_count: points_count as u64,
                    indexed_vectors_count: info.indexed_vectors_count as u64,
                    segments_count: info.segments_count as u64,
                    dense_dim: loaded.dense_dim,
                    payload_indexes,
                })
            })
        })
        .await
    }

    pub(crate) async fn optimize(&self) -> Result<OptimizeOutcome, IndexError> {
        self.run("optimize", |state| {
            state.write("optimize", |loaded| {
                let segments_before = loaded.shard.info().segments_count as u64;
                let optimized = optimize_fully(&loaded.shard)
                    .map_err(|detail| state.engine_text("optimize", &detail))?;
                state.unsealed.store(0, Ordering::Release);
                let info = loaded.shard.info();
                Ok(OptimizeOutcome {
                    optimized,
                    segments_before,
                    segments_after: info.segments_count as u64,
                    indexed_vectors_count: info.indexed_vectors_count as u64,
                })
            })
        })
        .await
    }
}

impl State {
    /// Seals the appendable segment once [`SEAL_POINTS`] points were upserted since the
    /// last optimizer pass, entering bulk mode first (see [`BULK_FILE`]).
    ///
    /// After a durable upsert the seal runs before the call returns. After an unflushed
    /// one it runs on its own thread while the next batches are written (qdrant's
    /// optimizer is built to run beside updates: it swaps the segment for a proxy that
    /// sends writes to a fresh segment); a seal still running when the next one is due
    /// lets the appendable segment grow meanwhile, and any durable write or flush waits
    /// for it first.
    fn seal_if_due(
        &self,
        loaded: &Loaded,
        upserted: usize,
        durability: Durability,
    ) -> Result<(), IndexError> {
        let pending = self.unsealed.fetch_add(upserted, Ordering::AcqRel) + upserted;
        if pending < self.seal_at.load(Ordering::Acquire) {
            return Ok(());
        }
        if durability == Durability::Later {
            let mut running = self.seal.lock().unwrap_or_else(PoisonError::into_inner);
            if running.as_ref().is_some_and(|seal| !seal.is_finished()) {
                return Ok(());
            }
            if let Some(seal) = running.take() {
                self.joined_seal(seal)?;
            }
            enter_bulk(&loaded.shard, pending)
                .map_err(|detail| self.engine_text("seal", &detail))?;
            self.next_seal_at(loaded);
            self.unsealed.store(0, Ordering::Release);
            let shard = Arc::clone(&loaded.shard);
            let handle = std::thread::Builder::new()
                .name("index-seal".to_owned())
                .spawn(move || seal(&shard, pending))
                .map_err(|err| self.engine_text("seal", &format!("starting a thread: {err}")))?;
            *running = Some(handle);
            return Ok(());
        }
        enter_bulk(&loaded.shard, pending).map_err(|detail| self.engine_text("seal", &detail))?;
        self.next_seal_at(loaded);
        seal(&loaded.shard, pending).map_err(|detail| self.engine_text("seal", &detail))?;
        self.unsealed.store(0, Ordering::Release);
        Ok(())
    }

    /// Sizes the next seal from the collection's size now (the segments are counted
    /// once per seal, not once per write).
    fn next_seal_at(&self, loaded: &Loaded) {
        let points = loaded.shard.info().points_count;
        self.seal_at.store(seal_points(points), Ordering::Release);
    }

    /// Waits for a background seal, if one runs; its failure becomes this call's.
    fn finish_seal(&self) -> Result<(), IndexError> {
        let running = self
            .seal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match running {
            Some(seal) => self.joined_seal(seal),
            None => Ok(()),
        }
    }

    fn joined_seal(
        &self,
        seal: std::thread::JoinHandle<Result<(), String>>,
    ) -> Result<(), IndexError> {
        match seal.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(self.engine_text("seal", &detail)),
            Err(panic) => Err(self.panicked("seal", panic_text(panic.as_ref()))),
        }
    }

    fn read_slot(
        &self,
        operation: &'static str,
    ) -> Result<std::sync::RwLockReadGuard<'_, Slot>, IndexError> {
        self.slot.read().map_err(|_| {
            self.panicked(
                operation,
                "an earlier drop or re-create of the collection panicked".into(),
            )
        })
    }

    fn write_slot(
        &self,
        operation: &'static str,
    ) -> Result<std::sync::RwLockWriteGuard<'_, Slot>, IndexError> {
        self.slot.write().map_err(|_| {
            self.panicked(
                operation,
                "an earlier drop or re-create of the collection panicked".into(),
            )
        })
    }

    /// The slot, with a collection that was on disk loaded first.
    fn loaded_slot(
        &self,
        operation: &'static str,
    ) -> Result<std::sync::RwLockReadGuard<'_, Slot>, IndexError> {
        loop {
            let slot = self.read_slot(operation)?;
            if !matches!(*slot, Slot::Closed) {
                return Ok(slot);
            }
            drop(slot);
            let mut slot = self.write_slot(operation)?;
            self.load_closed(&mut slot);
        }
    }

    /// Loads a collection that is on disk but not loaded yet (another thread may have
    /// done it meanwhile); one that does not load becomes [`Slot::Broken`].
    fn load_closed(&self, slot: &mut Slot) {
        if !matches!(*slot, Slot::Closed) {
            return;
        }
        let started = std::time::Instant::now();
        let loaded = load_shard(&self.path).and_then(|loaded| {
            // Collections made by older versions may lack payload indexes. No write
            // can be in flight: they all hold the slot's read side.
            let created = self
                .ensure_payload_indexes(&loaded)
                .map_err(|err| err.to_string())?;
            if created > 0 {
                loaded.shard.flush();
            }
            Ok(loaded)
        });
        *slot = match loaded {
            Ok(loaded) => {
                tracing::debug!(
                    path = %self.path.display(),
                    seconds = started.elapsed().as_secs_f64(),
                    "loaded embedded collection"
                );
                self.dense_dim.store(loaded.dense_dim, Ordering::Release);
                Slot::Ready(Box::new(loaded))
            }
            Err(detail) => {
                tracing::warn!(path = %self.path.display(), %detail, "embedded collection does not load");
                Slot::Broken(detail)
            }
        };
    }

    /// Runs a read on the open shard (loading it first if needed).
    fn with_shard<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Loaded) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let slot = self.loaded_slot(operation)?;
        match &*slot {
            Slot::Ready(loaded) => f(loaded),
            Slot::Closed => Err(self.panicked(operation, "the collection was not loaded".into())),
            Slot::Missing => Err(IndexError::CollectionMissing {
                engine: EngineKind::Embedded,
                collection: self.collection.clone(),
            }),
            Slot::Broken(detail) => Err(self.broken(operation, detail)),
        }
    }

    /// Runs writes on the open shard, one writer at a time, and flushes before returning.
    fn write<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&Loaded) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.write_with(operation, Durability::Now, f)
    }

    /// Runs writes on the open shard, one writer at a time, flushing before returning
    /// when `durability` asks for it.
    ///
    /// A flush writes every segment, those the write did not touch too (qdrant-edge
    /// flushes with `force`), so its cost grows with the segment count: during a bulk
    /// load into dozens of sealed segments it costs more than the batch it makes durable.
    fn write_with<T>(
        &self,
        operation: &'static str,
        durability: Durability,
        f: impl FnOnce(&Loaded) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        self.with_shard(operation, |loaded| {
            let _writer = self.writes.lock().map_err(|_: PoisonError<_>| {
                self.panicked(
                    operation,
                    "an earlier write panicked inside the engine".into(),
                )
            })?;
            // A durable write ends with a flush, which must not meet a running seal
            // (qdrant-edge's flush expects every lock free); writes that wait for a
            // seal are rare: a bulk load flushes once per many batches.
            if durability == Durability::Now {
                self.finish_seal()?;
            }
            let result = f(loaded);
            // Flush even after a failed batch: earlier batches of the call were applied.
            if durability == Durability::Now {
                loaded.shard.flush();
            }
            result
        })
    }

    fn update(
        &self,
        loaded: &Loaded,
        operation: &'static str,
        update: UpdateOperation,
    ) -> Result<(), IndexError> {
        loaded
            .shard
            .update(update)
            .map_err(|err| self.engine(operation, &err))
    }

    fn ensure_blocking(
        &self,
        spec: &CollectionSpec,
        recreate: bool,
    ) -> Result<CollectionStatus, IndexError> {
        let mut slot = self.write_slot("ensure collection")?;
        let mut status = CollectionStatus::Created;
        if recreate && self.remove_blocking(&mut slot)? {
            status = CollectionStatus::Recreated;
        }
        if matches!(*slot, Slot::Closed) {
            // Its stored config tells whether it matches without loading it (a sync
            // with nothing to write then never loads it); without one, load it.
            match stored_config(&self.path) {
                Some(config) => {
                    self.check_config(&config, spec)?;
                    return Ok(CollectionStatus::Existing);
                }
                None => self.load_closed(&mut slot),
            }
        }
        match &*slot {
            Slot::Ready(loaded) => {
                // Its payload indexes were ensured when it was loaded or created.
                self.check_config(&loaded.shard.config(), spec)?;
                return Ok(CollectionStatus::Existing);
            }
            Slot::Broken(detail) => return Err(self.broken("ensure collection", detail)),
            Slot::Closed => {
                return Err(
                    self.panicked("ensure collection", "the collection was not loaded".into())
                );
            }
            Slot::Missing => {}
        }
        std::fs::create_dir_all(&self.path).map_err(|source| IndexError::Io {
            operation: "create directory",
            path: self.path.clone(),
            source,
        })?;
        let config =
            edge_config(spec).map_err(|detail| self.invalid("create collection", &detail))?;
        let shard = EdgeShard::new(&self.path, config)
            .map_err(|err| self.engine("create collection", &err))?;
        let loaded = Loaded {
            shard: Arc::new(shard),
            dense_dim: spec.dense_dim,
        };
        self.ensure_payload_indexes(&loaded)?;
        loaded.shard.flush();
        tracing::info!(path = %self.path.display(), dense_dim = spec.dense_dim, "created embedded collection");
        self.dense_dim.store(spec.dense_dim, Ordering::Release);
        *slot = Slot::Ready(Box::new(loaded));
        Ok(status)
    }

    /// Drops the shard and deletes its directory; says whether there was one.
    fn remove_blocking(&self, slot: &mut Slot) -> Result<bool, IndexError> {
        // A seal's failure does not matter to a collection about to go.
        if let Err(err) = self.finish_seal() {
            tracing::debug!(error = %err, "a seal of the dropped collection failed");
        }
        let previous = std::mem::replace(slot, Slot::Missing);
        self.dense_dim.store(0, Ordering::Release);
        // A new collection starts with an empty appendable segment.
        self.unsealed.store(0, Ordering::Release);
        self.seal_at.store(SEAL_POINTS, Ordering::Release);
        // Dropping the shard flushes it; it must happen before its files go.
        drop(previous);
        if !self.path.exists() {
            return Ok(false);
        }
        std::fs::remove_dir_all(&self.path).map_err(|source| IndexError::Io {
            operation: "remove collection directory",
            path: self.path.clone(),
            source,
        })?;
        tracing::info!(path = %self.path.display(), "dropped embedded collection");
        Ok(true)
    }

    fn check_config(&self, config: &EdgeConfig, spec: &CollectionSpec) -> Result<(), IndexError> {
        let found = describe_config(config);
        let expected = CollectionSpec::describe(spec.dense_dim);
        if found == expected {
            Ok(())
        } else {
            Err(IndexError::CollectionMismatch {
                engine: EngineKind::Embedded,
                collection: self.collection.clone(),
                expected,
                found,
            })
        }
    }

    /// Creates the payload indexes the collection lacks; returns how many.
    fn ensure_payload_indexes(&self, loaded: &Loaded) -> Result<usize, IndexError> {
        let present = loaded.shard.info().payload_schema;
        let mut created = 0;
        for (name, kind) in PAYLOAD_INDEXES {
            let path =
                json_path(name).map_err(|detail| self.invalid("create payload index", &detail))?;
            if present.contains_key(&path) {
                continue;
            }
            // On disk (memory-mapped): loaded in RAM, the integer and date indexes of a
            // million points took most of the 13+ s an open took, and much of its memory.
            let kind_name = match kind {
                PayloadIndexKind::Keyword => "keyword",
                PayloadIndexKind::Integer => "integer",
                PayloadIndexKind::Datetime => "datetime",
            };
            let schema: PayloadFieldSchema =
                serde_json::from_value(serde_json::json!({ "type": kind_name, "on_disk": true }))
                    .map_err(|err| {
                    self.invalid("create payload index", &format!("{kind_name}: {err}"))
                })?;
            self.update(
                loaded,
                "create payload index",
                UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
                    CreateIndex {
                        field_name: path,
                        field_schema: Some(schema),
                    },
                )),
            )?;
            created += 1;
        }
        Ok(created)
    }

    fn to_edge_point(&self, point: ChunkPoint) -> Result<PointStructPersisted, IndexError> {
        let payload = ChunkPoint::payload_object(&point.payload).map_err(|err| {
            self.invalid("upsert", &format!("payload of point {}: {err}", point.id))
        })?;
        let mut sparse = point.sparse;
        sparse.sort_by_index();
        let sparse =
            qdrant_edge::SparseVector::new(sparse.indices, sparse.values).map_err(|err| {
                self.invalid(
                    "upsert",
                    &format!("sparse vector of point {}: {err}", point.id),
                )
            })?;
        let vectors = HashMap::from([
            (DENSE_VECTOR.to_owned(), VectorPersisted::Dense(point.dense)),
            (SPARSE_VECTOR.to_owned(), VectorPersisted::Sparse(sparse)),
        ]);
        Ok(PointStructPersisted {
            id: PointId::Uuid(*point.id.as_uuid()),
            vector: VectorStructPersisted::Named(vectors),
            payload: Some(Payload(payload)),
        })
    }

    fn chunk_id(&self, id: PointId) -> Result<ChunkId, IndexError> {
        match id {
            PointId::Uuid(uuid) => Ok(ChunkId::from_uuid(uuid)),
            PointId::NumId(num) => {
                Err(self.bad_point(num.to_string(), "a numeric id (chunk ids are UUIDs)"))
            }
        }
    }

    fn payload(&self, id: &ChunkId, payload: Option<Payload>) -> Result<ChunkPayload, IndexError> {
        let map = payload.map(|p| p.0).unwrap_or_default();
        serde_json::from_value(Value::Object(map))
            .map_err(|err| self.bad_point(id.to_string(), &format!("payload: {err}")))
    }

    fn to_hit(&self, point: ScoredPoint) -> Result<SearchHit, IndexError> {
        let id = self.chunk_id(point.id)?;
        let payload = self.payload(&id, point.payload)?;
        Ok(SearchHit {
            id,
            score: point.score,
            payload,
        })
    }

    fn to_stored(&self, record: Record) -> Result<StoredPoint, IndexError> {
        let id = self.chunk_id(record.id)?;
        let payload = self.payload(&id, record.payload)?;
        let vectors = record
            .vector
            .map(|vectors| self.stored_vectors(&id, vectors))
            .transpose()?;
        Ok(StoredPoint {
            id,
            payload,
            vectors,
        })
    }

    fn stored_vectors(
        &self,
        id: &ChunkId,
        vectors: VectorStructInternal,
    ) -> Result<StoredVectors, IndexError> {
        let VectorStructInternal::Named(mut named) = vectors else {
            return Err(self.bad_point(id.to_string(), "vectors are not named"));
        };
        let dense = match named.remove(DENSE_VECTOR) {
            Some(VectorInternal::Dense(dense)) => dense,
            _ => return Err(self.bad_point(id.to_string(), "no dense vector \"dense\"")),
        };
        let sparse = match named.remove(SPARSE_VECTOR) {
            Some(VectorInternal::Sparse(sparse)) => {
                SparseVector::new(sparse.indices, sparse.values)
            }
            None => SparseVector::default(),
            Some(_) => return Err(self.bad_point(id.to_string(), "vector \"bm25\" is not sparse")),
        };
        Ok(StoredVectors { dense, sparse })
    }

    fn engine(&self, operation: &'static str, err: &OperationError) -> IndexError {
        IndexError::Embedded {
            operation,
            collection: self.collection.clone(),
            path: self.path.clone(),
            detail: err.to_string(),
        }
    }

    fn engine_text(&self, operation: &'static str, detail: &str) -> IndexError {
        IndexError::Embedded {
            operation,
            collection: self.collection.clone(),
            path: self.path.clone(),
            detail: detail.to_owned(),
        }
    }

    fn broken(&self, operation: &'static str, detail: &str) -> IndexError {
        IndexError::Embedded {
            operation,
            collection: self.collection.clone(),
            path: self.path.clone(),
            detail: format!(
                "the collection directory does not load ({detail}); re-create the collection"
            ),
        }
    }

    fn invalid(&self, _operation: &'static str, reason: &str) -> IndexError {
        IndexError::InvalidRequest {
            engine: EngineKind::Embedded,
            collection: self.collection.clone(),
            reason: reason.to_owned(),
        }
    }

    fn bad_point(&self, id: String, reason: &str) -> IndexError {
        IndexError::BadStoredPoint {
            engine: EngineKind::Embedded,
            collection: self.collection.clone(),
            id,
            reason: reason.to_owned(),
        }
    }

    fn panicked(&self, operation: &'static str, detail: String) -> IndexError {
        IndexError::EnginePanicked {
            operation,
            collection: self.collection.clone(),
            path: self.path.clone(),
            detail,
        }
    }
}

/// Removes the write-ahead log's closed segment files except the newest one.
///
/// qdrant-edge 0.7.2 writes every update to its WAL but never reads it back (segments are
/// flushed on every write and are the only source of truth on load) and never truncates
/// it, so the log grows by a few KiB per point written, forever. It cannot simply be
/// deleted: the WAL hands out the operation numbers, and segments ignore operations
/// numbered at or below what they already applied, so a fresh log would make later writes
/// vanish. Removing closed segments from the front, keeping the newest closed one, is what
/// the WAL's own `prefix_truncate` does: numbering continues from the files that remain.
/// Runs under the collection lock, before the shard is loaded.
fn compact_wal(path: &Path) -> Result<usize, String> {
    let wal_dir = path.join("wal");
    let entries = match std::fs::read_dir(&wal_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(format!("reading {}: {err}", wal_dir.display())),
    };
    let mut closed: Vec<(u64, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| format!("reading {}: {err}", wal_dir.display()))?;
        let name = entry.file_name();
        let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_prefix("closed-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        closed.push((start, entry.path()));
    }
    closed.sort_unstable_by_key(|(start, _)| *start);
    closed.pop();
    for (_, file) in &closed {
        std::fs::remove_file(file).map_err(|err| format!("removing {}: {err}", file.display()))?;
    }
    if !closed.is_empty() {
        tracing::debug!(path = %wal_dir.display(), removed = closed.len(), "compacted the embedded index's write-ahead log");
    }
    Ok(closed.len())
}

/// The config a collection stored when it was created (`edge_config.json`, qdrant-edge's
/// own file), if it is there and readable.
fn stored_config(path: &Path) -> Option<EdgeConfig> {
    let bytes = std::fs::read(path.join("edge_config.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn load_shard(path: &Path) -> Result<Loaded, String> {
    compact_wal(path)?;
    // `EdgeShard::load` can panic on some corrupt files; keep that from taking the
    // process down with it.
    let shard = std::panic::catch_unwind(|| EdgeShard::load(path, None))
        .map_err(|panic| format!("loading panicked: {}", panic_text(panic.as_ref())))?
        .map_err(|err| err.to_string())?;
    // A run killed in bulk mode: the collection gets its own settings back (its sealed
    // segments get their graphs at the next optimize).
    leave_bulk(&shard)?;
    let dense_dim = shard
        .config()
        .vectors
        .get(DENSE_VECTOR)
        .map(|params| params.size)
        .unwrap_or(0);
    Ok(Loaded {
        shard: Arc::new(shard),
        dense_dim,
    })
}

fn edge_config(spec: &CollectionSpec) -> Result<EdgeConfig, String> {
    let defaults = HnswIndexConfig::default();
    let hnsw = HnswIndexConfig {
        m: spec.hnsw_m.unwrap_or(defaults.m),
        ef_construct: spec.hnsw_ef_construct.unwrap_or(defaults.ef_construct),
        payload_m: spec.hnsw_payload_m.or(defaults.payload_m),
        on_disk: Some(spec.index_on_disk),
        ..defaults
    };
    let builder = EdgeConfig::builder()
        .on_disk_payload(spec.payload_on_disk)
        .vector(
            DENSE_VECTOR,
            EdgeVectorParams::builder(spec.dense_dim, Distance::Cosine)
                .on_disk(spec.dense_on_disk)
                .build(),
        )
        .sparse_vector(
            SPARSE_VECTOR,
            EdgeSparseVectorParams::builder()
                .modifier(Modifier::Idf)
                .on_disk(spec.index_on_disk)
                .build(),
        )
        .hnsw_config(hnsw)
        .optimizers(EdgeOptimizersConfig {
            max_segment_size: spec.max_segment_kb,
            ..EdgeOptimizersConfig::default()
        });
    let builder = match spec.wal_segment_bytes {
        Some(bytes) => builder.wal_options(WalOptions {
            segment_capacity: bytes,
            ..WalOptions::default()
        }),
        None => builder,
    };
    if !spec.quantize_int8 {
        return Ok(builder.build());
    }
    // The scalar wrapper type is not exported by qdrant-edge; its serde form is.
    let quantization: QuantizationConfig = serde_json::from_value(serde_json::json!({
        "scalar": {"type": "int8", "always_ram": !spec.index_on_disk}
    }))
    .map_err(|err| format!("int8 quantization config: {err}"))?;
    Ok(builder.quantization_config(quantization).build())
}

/// The same words [`CollectionSpec::describe`] uses, read from a stored config, so a
/// mismatch message shows both sides alike.
fn describe_config(config: &EdgeConfig) -> String {
    let dense = match config.vectors.get(DENSE_VECTOR) {
        Some(params) if params.distance == Distance::Cosine => {
            format!(
                "dense vector \"dense\" of {} dimensions (cosine)",
                params.size
            )
        }
        Some(params) => format!(
            "dense vector \"dense\" of {} dimensions ({:?})",
            params.size, params.distance
        ),
        None => "no dense vector \"dense\"".to_owned(),
    };
    let sparse = match config.sparse_vectors.get(SPARSE_VECTOR) {
        Some(params) if params.modifier == Some(Modifier::Idf) => {
            "sparse vector \"bm25\" (IDF)".to_owned()
        }
        Some(_) => "sparse vector \"bm25\" (no IDF)".to_owned(),
        None => "no sparse vector \"bm25\"".to_owned(),
    };
    format!("{dense} and {sparse}")
}

fn json_path(key: &str) -> Result<JsonPath, String> {
    key.parse::<JsonPath>()
        .map_err(|_| format!("{key:?} is not a payload key"))
}

/// The engine's filter for a spec, or `None` when the spec does not constrain.
pub(crate) fn edge_filter(spec: &FilterSpec) -> Option<Filter> {
    if spec.must.is_empty() {
        return None;
    }
    let must = spec
        .must
        .iter()
        .filter_map(|cond| {
            let field = match cond {
                Cond::Keywords(key, values) => {
                    FieldCondition::new_match(json_path(key).ok()?, Match::from(values.clone()))
                }
                Cond::Integers(key, values) => {
                    FieldCondition::new_match(json_path(key).ok()?, Match::from(values.clone()))
                }
                Cond::IntegerAtLeast(key, min) => FieldCondition::new_range(
                    json_path(key).ok()?,
                    Range {
                        gte: Some(OrderedFloat(*min as f64)),
                        ..Range::default()
                    },
                ),
                Cond::Datetime { key, gte, lte } => FieldCondition::new_datetime_range(
                    json_path(key).ok()?,
                    Range {
                        gte: gte.map(Into::into),
                        lte: lte.map(Into::into),
                        gt: None,
                        lt: None,
                    },
                ),
            };
            Some(qdrant_edge::Condition::Field(field))
        })
        .collect();
    Some(Filter {
        must: Some(must),
        ..Filter::default()
    })
}

fn nearest(vector: VectorInternal, using: &str) -> ScoringQuery {
    ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
        query: vector,
        using: Some(using.to_owned()),
    }))
}

/// Search parameters: the candidates the graph search finds on the int8 copy are
/// re-scored with the original vectors, so a dense search's scores and order are the
/// exact cosines. Qdrant re-scores an int8 copy only when asked. Oversampling (more
/// candidates re-scored than asked for) found no more of the exact top 10 at 1M
/// chunks (1, 2 and 4 times the same), so none is asked. Sparse vectors have no int8
/// copy: this changes nothing for them.
fn search_params() -> SearchParams {
    SearchParams {
        quantization: Some(QuantizationSearchParams {
            ignore: false,
            rescore: Some(true),
            oversampling: None,
        }),
        ..SearchParams::default()
    }
}

pub(crate) fn dense_query(dense: Vec<f32>) -> ScoringQuery {
    nearest(VectorInternal::Dense(dense), DENSE_VECTOR)
}

pub(crate) fn sparse_query(sparse: SparseVector) -> ScoringQuery {
    nearest(
        VectorInternal::Sparse(qdrant_edge::SparseVector {
            indices: sparse.indices,
            values: sparse.values,
        }),
        SPARSE_VECTOR,
    )
}

/// Reciprocal rank fusion of ranked id lists, as qdrant-edge computes it with equal
/// weights: each list adds `1 / (k + i)` to its i-th point (counting from 0). The
/// best `limit`, by score then by id.
pub(crate) fn rrf(lists: &[Vec<PointId>], k: u32, limit: usize) -> Vec<(PointId, f32)> {
    let mut scores: HashMap<PointId, f32> = HashMap::new();
    for list in lists {
        for (position, id) in list.iter().enumerate() {
            // The engine's own arithmetic (f32, this order), so scores match it exactly.
            let score = 1.0 / ((position + 1) as f32 / 1.0 + k as f32 - 1.0);
            *scores.entry(*id).or_insert(0.0) += score;
        }
    }
    let mut fused: Vec<(PointId, f32)> = scores.into_iter().collect();
    fused.sort_unstable_by(|a, b| {
        OrderedFloat(b.1)
            .cmp(&OrderedFloat(a.1))
            .then_with(|| a.0.cmp(&b.0))
    });
    fused.truncate(limit);
    fused
}

fn edge_query(plan: SearchPlan) -> QueryRequest {
    let filter = edge_filter(&plan.filter);
    let base = QueryRequest {
        prefetches: Vec::new(),
        query: None,
        filter: None,
        score_threshold: None,
        limit: plan.limit,
        offset: 0,
        params: Some(search_params()),
        with_vector: WithVector::Bool(false),
        with_payload: WithPayloadInterface::Bool(true),
    };
    match plan.query {
        PlanQuery::Dense(dense) => QueryRequest {
            query: Some(dense_query(dense)),
            filter,
            ..base
        },
        PlanQuery::Sparse(sparse) => QueryRequest {
            query: Some(sparse_query(sparse)),
            filter,
            ..base
        },
        PlanQuery::Fused {
            dense,
            sparse,
            rrf_k,
            prefetch_limit,
        } => {
            // The filter goes into each prefetch: fusion only ranks what they found.
            let prefetch = |query| Prefetch {
                prefetches: Vec::new(),
                query: Some(query),
                limit: prefetch_limit,
                params: Some(search_params()),
                filter: filter.clone(),
                score_threshold: None,
            };
            let mut prefetches = vec![prefetch(dense_query(dense))];
            if let Some(sparse) = sparse {
                prefetches.push(prefetch(sparse_query(sparse)));
            }
            QueryRequest {
                prefetches,
                query: Some(ScoringQuery::Fusion(Fusion::Rrf {
                    k: rrf_k as usize,
                    weights: None,
                })),
                ..base
            }
        }
    }
}

pub(crate) fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(panic) => panic_text(panic.as_ref()),
        Err(join) => join.to_string(),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_into_cache_reads_every_file_but_the_payload_storage() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["s1/vector_index-dense", "s1/payload_storage", "s2"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(
            dir.path().join("s1/vector_index-dense/links.bin"),
            vec![1u8; 3_000_000],
        )
        .unwrap();
        std::fs::write(
            dir.path().join("s1/payload_storage/page_0.dat"),
            vec![2u8; 5_000],
        )
        .unwrap();
        std::fs::write(dir.path().join("s2/quantized.data"), vec![3u8; 300]).unwrap();
        std::fs::write(dir.path().join("s2/empty"), b"").unwrap();
        assert_eq!(read_into_cache(dir.path()), (3, 3_000_300));
        // A directory that is gone (segments replaced meanwhile) is nothing to do.
        assert_eq!(read_into_cache(&dir.path().join("missing")), (0, 0));
    }

    #[test]
    fn seals_grow_with_the_square_root_of_the_collection() {
        assert_eq!(seal_points(0), SEAL_POINTS);
        assert_eq!(seal_points(SEAL_GROWTH_FROM), SEAL_POINTS);
        // Four times the points, twice the seal.
        assert_eq!(seal_points(4 * SEAL_GROWTH_FROM), 2 * SEAL_POINTS);
        let at_1m = seal_points(1_000_000);
        assert!((10_500..10_700).contains(&at_1m), "{at_1m}");
        assert!(seal_points(usize::MAX) > at_1m);
    }

    #[test]
    fn rrf_adds_reciprocal_ranks_and_breaks_ties_by_id() {
        let ids: Vec<PointId> = (1..=4u64).map(PointId::NumId).collect();
        let fused = rrf(
            &[vec![ids[2], ids[0]], vec![ids[1], ids[2], ids[3]]],
            60,
            10,
        );
        let order: Vec<PointId> = fused.iter().map(|(id, _)| *id).collect();
        // 3: 1/60 + 1/61 (first and second); 2: 1/60; 1: 1/61; 4: 1/62.
        assert_eq!(order, vec![ids[2], ids[1], ids[0], ids[3]]);
        assert!((fused[0].1 - (1.0 / 60.0 + 1.0 / 61.0)).abs() < 1e-7);
        let tie = rrf(&[vec![ids[3]], vec![ids[0]]], 2, 10);
        assert_eq!(tie, vec![(ids[0], 0.5), (ids[3], 0.5)]);
        assert_eq!(rrf(std::slice::from_ref(&ids), 2, 2).len(), 2);
    }
}
