//! One hybrid-search index API over two engines.
//!
//! [`Index`] stores CRM chunks — a dense embedding, a sparse BM25 vector and a typed
//! [`ChunkPayload`] per point — and searches them in three modes: dense, sparse, and
//! hybrid (both as prefetches, fused by reciprocal rank fusion with an explicit `k`).
//! It runs on either engine behind the same async methods:
//!
//! - **embedded** (the default): Qdrant's in-process engine `qdrant-edge` 0.7.2, a
//!   collection in `{dir}/{collection}`, guarded by `{dir}/{collection}.lock` so that
//!   only one process opens it at a time. A collection may be split into shards
//!   ([`CollectionSpec::shards`]; the others in `{dir}/{collection}.shard-{k}`), written
//!   side by side and searched together; everything below holds for each shard. Writes are flushed before a call
//!   returns, except [`Index::upsert_unflushed`]'s, made durable by the next
//!   [`Index::flush`] (a flush writes every segment, so bulk loads pay it once per many
//!   batches). Its optimizer (HNSW indexing, merging, vacuum) only runs when
//!   [`Index::optimize`] is called: until then new dense vectors are searched
//!   exhaustively (tens of milliseconds per query at 100,000 points). Long writes seal
//!   the appendable segment every 4,096 points (its in-memory sparse index costs
//!   O(n²) to fill; after unflushed upserts the seal runs on its own thread beside the
//!   next writes) and put the collection in a bulk mode where sealed segments get no
//!   graph and are not merged, so the next [`Index::optimize`] builds every graph once;
//!   a collection left in bulk mode by a killed process gets its settings back when it
//!   is opened. Its write-ahead log grows with every write and is not read back by
//!   qdrant-edge 0.7.2 (durability comes from the flush); its closed files are removed
//!   when the collection is opened. Collections are created with an int8 copy of the
//!   dense vectors ([`CollectionSpec::quantize_int8`]: the graph is built and searched
//!   on it), without payload links ([`CollectionSpec::hnsw_payload_m`]), and with
//!   vectors, payloads, graph and sparse index in memory-mapped files
//!   ([`CollectionSpec::index_on_disk`]), so opening a large collection is quick and
//!   its memory is the OS's page cache rather than the process's.
//! - **server**: a Qdrant server or cluster (1.16 or newer) over gRPC, usually port
//!   6334; writes wait for the server (`wait=true`).
//!
//! Point ids come from [`ChunkId::new`] (UUIDv5 of `"{table}:{id}:{chunk}"`), so writing
//! the same chunk twice overwrites it. Every point is validated before anything is sent
//! (vector sizes, finite values, unique sparse indices, RFC 3339 dates); a bad point is
//! refused with an error that names it, and nothing of that call is written.
//!
//! The payload fields that filters use are indexed: keywords `source_table`, `kind`,
//! `entity_id`; integers `source_id`, `organization_id`, `chunk_index`; date-time
//! `occurred_at` (RFC 3339, compared as UTC instants by both engines).
//!
//! ```no_run
//! use index_qdrant::{
//!     ChunkPayload, ChunkPoint, CollectionSpec, Index, IndexConfig, SearchFilter,
//!     SearchRequest, SparseVector,
//! };
//!
//! # async fn example() -> Result<(), index_qdrant::IndexError> {
//! let index = Index::open(IndexConfig::embedded("/data/crm.index")).await?;
//! index.ensure_collection(&CollectionSpec::new(3), false).await?;
//!
//! let payload = ChunkPayload {
//!     source_table: "people".into(),
//!     source_id: 17,
//!     chunk_index: 0,
//!     entity_id: Some("person:17".into()),
//!     kind: "person".into(),
//!     title: "Ada Lovelace".into(),
//!     text: "Ada Lovelace, analyst at Babbage & Co.".into(),
//!     organization_id: Some(4),
//!     occurred_at: None,
//!     updated_at: "2026-06-05T13:55:12Z".into(),
//!     content_hash: "9f2c…".into(),
//!     extra: Default::default(),
//! };
//! let sparse = SparseVector::new(vec![771291085, 243905464], vec![1.1, 0.8]);
//! index.upsert(vec![ChunkPoint::new(vec![0.1, 0.7, 0.2], sparse.clone(), payload)]).await?;
//!
//! let request = SearchRequest::hybrid(vec![0.1, 0.6, 0.3], sparse, 10).with_filter(SearchFilter {
//!     source_tables: vec!["people".into()],
//!     ..SearchFilter::default()
//! });
//! for hit in index.search_grouped(&request).await? {
//!     println!("{:.4} {}:{} {}", hit.score, hit.payload.source_table, hit.payload.source_id, hit.payload.title);
//! }
//! # Ok(())
//! # }
//! ```

mod config;
mod embedded;
mod error;
mod point;
mod query;
mod server;
mod shards;

use std::collections::HashSet;

use serde_json::{Map, Value};

pub use config::{
    ApiKey, CollectionSpec, DEFAULT_COLLECTION, DEFAULT_SERVER_TIMEOUT, EngineConfig, EngineKind,
    IndexConfig,
};
pub use error::IndexError;
pub use point::{
    CHUNK_ID_NAMESPACE, CHUNK_ID_NAMESPACE_NAME, CORE_PAYLOAD_FIELDS, ChunkId, ChunkPayload,
    ChunkPoint, PAYLOAD_INDEXES, PayloadIndexKind, SparseVector, StoredPoint, StoredVectors,
};
pub use query::{
    DEFAULT_PREFETCH_LIMIT, DEFAULT_RRF_K, IndexInfo, MAX_LIMIT, OptimizeOutcome, PointSelector,
    ScrollPage, ScrollRequest, SearchFilter, SearchHit, SearchMode, SearchRequest,
};

use query::{Cond, FilterSpec};
use server::Server;
use shards::Embedded;

/// When an engine's write must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before the call returns.
    Now,
    /// At the next flush or durable write (the embedded engine; a server is always `Now`).
    Later,
}

/// Name of the dense vector in every collection.
pub const DENSE_VECTOR: &str = "dense";

/// Name of the sparse (BM25) vector in every collection.
pub const SPARSE_VECTOR: &str = "bm25";

/// Grouped search fetches this many chunks per wanted row at first, then more.
const GROUP_OVERFETCH: usize = 4;

/// What [`Index::ensure_collection`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollectionStatus {
    /// The collection did not exist and was created.
    Created,
    /// The collection existed with the right configuration (missing payload indexes were added).
    Existing,
    /// The collection existed and was dropped and created again (`recreate`).
    Recreated,
}

/// A search, checked and ready for an engine.
pub(crate) struct SearchPlan {
    pub(crate) filter: FilterSpec,
    pub(crate) limit: usize,
    pub(crate) query: PlanQuery,
}

/// The scoring part of a [`SearchPlan`].
pub(crate) enum PlanQuery {
    Dense(Vec<f32>),
    Sparse(SparseVector),
    /// RRF over a dense prefetch and, when the query has terms, a sparse one.
    Fused {
        dense: Vec<f32>,
        sparse: Option<SparseVector>,
        rrf_k: u32,
        prefetch_limit: usize,
    },
}

/// Which points a payload update targets.
pub(crate) enum PayloadTarget {
    Ids(Vec<ChunkId>),
    Filters(Vec<FilterSpec>),
}

/// A handle on one collection of one engine. Cheap to share behind an `Arc`; every
/// method takes `&self` and may run concurrently with the others.
pub struct Index {
    engine: Engine,
    collection: String,
}

enum Engine {
    Embedded(Embedded),
    Server(Server),
}

/// Calls the same method on whichever engine this is.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.engine {
            Engine::Embedded(engine) => engine.$method($($arg),*).await,
            Engine::Server(engine) => engine.$method($($arg),*).await,
        }
    };
}

/// The page-cache reading started by [`Index::warm_cache`].
#[derive(Debug)]
pub struct CacheWarming(std::thread::JoinHandle<(u64, u64)>);

impl CacheWarming {
    /// Waits until every file was read; returns how many files and bytes were.
    pub fn wait(self) -> (u64, u64) {
        self.0.join().unwrap_or((0, 0))
    }
}

impl Index {
    /// Opens the configured engine. Nothing is created: a missing collection is reported
    /// by the calls that need it, and made by [`Index::ensure_collection`].
    ///
    /// The embedded engine takes the directory's lock (one process at a time); the
    /// server engine checks that the server answers over gRPC (a REST URL on port 6333,
    /// or anything that answers like HTTP/1, gets an error that says to use port 6334).
    pub async fn open(config: IndexConfig) -> Result<Self, IndexError> {
        config.validate_collection()?;
        let collection = config.collection.clone();
        let engine = match config.engine {
            EngineConfig::Embedded { dir } => {
                Engine::Embedded(Embedded::open(dir, collection.clone()).await?)
            }
            EngineConfig::Server {
                url,
                api_key,
                timeout,
            } => Engine::Server(
                Server::open(&url, api_key.as_ref(), timeout, collection.clone()).await?,
            ),
        };
        Ok(Self { engine, collection })
    }

    /// The collection this handle works on.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// Which engine this handle runs on.
    pub fn engine_kind(&self) -> EngineKind {
        match self.engine {
            Engine::Embedded(_) => EngineKind::Embedded,
            Engine::Server(_) => EngineKind::Server,
        }
    }

    /// The embedded engine's collection directory (its first shard's), when this is the
    /// embedded engine.
    pub fn embedded_path(&self) -> Option<&std::path::Path> {
        match &self.engine {
            Engine::Embedded(engine) => Some(engine.path()),
            Engine::Server(_) => None,
        }
    }

    /// How many shards the embedded collection has (1 while it does not exist; see
    /// [`CollectionSpec::shards`]), when this is the embedded engine.
    pub fn embedded_shards(&self) -> Option<usize> {
        match &self.engine {
            Engine::Embedded(engine) => Some(engine.shard_count()),
            Engine::Server(_) => None,
        }
    }

    /// Whether the collection exists.
    pub async fn exists(&self) -> Result<bool, IndexError> {
        dispatch!(self.exists())
    }

    /// Makes sure the collection exists with this spec, creating it (and its payload
    /// indexes) when missing. With `recreate`, an existing collection is dropped first.
    ///
    /// An existing collection with another dense size, distance or sparse modifier is
    /// an [`IndexError::CollectionMismatch`]: vectors of two models are never mixed.
    #[tracing::instrument(skip_all, fields(collection = %self.collection, engine = %self.engine_kind(), dense_dim = spec.dense_dim, recreate))]
    pub async fn ensure_collection(
        &self,
        spec: &CollectionSpec,
        recreate: bool,
    ) -> Result<CollectionStatus, IndexError> {
        if spec.shards == 0 || spec.shards > shards::MAX_SHARDS {
            return Err(self.invalid(format!(
                "shard count {} is out of range (1 to {})",
                spec.shards,
                shards::MAX_SHARDS
            )));
        }
        if spec.dense_dim == 0 || spec.dense_dim > 65_536 {
            return Err(self.invalid(format!(
                "dense dimension {} is out of range (1 to 65536)",
                spec.dense_dim
            )));
        }
        let status = dispatch!(self.ensure_collection(spec.clone(), recreate))?;
        tracing::debug!(?status, "collection ensured");
        Ok(status)
    }

    /// Drops the collection and everything in it; says whether it existed.
    pub async fn drop_collection(&self) -> Result<bool, IndexError> {
        dispatch!(self.drop_collection())
    }

    /// Writes the points (insert or replace by id) and returns how many were written.
    ///
    /// All points are validated first; one bad point fails the whole call before
    /// anything is written. Points are sent in bounded batches; when the call returns
    /// they are durable (flushed to disk, or acknowledged by the server with `wait`).
    /// If a later batch fails, earlier batches of the same call may be stored: writing
    /// the same points again is always safe.
    #[tracing::instrument(skip_all, fields(collection = %self.collection, engine = %self.engine_kind(), points = points.len()))]
    pub async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<usize, IndexError> {
        self.upsert_checked(points, Durability::Now).await
    }

    /// Validates the points (each against the collection, and no id twice), then writes
    /// them with `durability`.
    async fn upsert_checked(
        &self,
        points: Vec<ChunkPoint>,
        durability: Durability,
    ) -> Result<usize, IndexError> {
        if points.is_empty() {
            return Ok(0);
        }
        let dim = self.dense_dim().await?;
        for point in &points {
            if let Some(reason) = point.problem(dim) {
                return Err(IndexError::InvalidPoint {
                    engine: self.engine_kind(),
                    collection: self.collection.clone(),
                    id: point.id,
                    source_table: point.payload.source_table.clone(),
                    source_id: point.payload.source_id,
                    chunk_index: point.payload.chunk_index,
                    reason,
                });
            }
        }
        let mut seen = HashSet::with_capacity(points.len());
        if let Some(point) = points.iter().find(|point| !seen.insert(point.id)) {
            return Err(IndexError::InvalidPoint {
                engine: self.engine_kind(),
                collection: self.collection.clone(),
                id: point.id,
                source_table: point.payload.source_table.clone(),
                source_id: point.payload.source_id,
                chunk_index: point.payload.chunk_index,
                reason: "the same id appears twice in one upsert".to_owned(),
            });
        }
        dispatch!(self.upsert(points, durability))
    }

    /// [`Index::upsert`] for bulk loads: on the embedded engine the points are written but
    /// not flushed, so they may be lost in a crash until the next [`Index::flush`] (or
    /// the next durable write) returns. A flush writes every segment, so one per batch
    /// costs a large collection more than the batch itself; a loader that records its
    /// progress only after a flush pays it once per many batches. A server acknowledges
    /// every write with `wait`, so there this is [`Index::upsert`].
    #[tracing::instrument(skip_all, fields(collection = %self.collection, engine = %self.engine_kind(), points = points.len()))]
    pub async fn upsert_unflushed(&self, points: Vec<ChunkPoint>) -> Result<usize, IndexError> {
        self.upsert_checked(points, Durability::Later).await
    }

    /// Makes every write so far durable: flushes the embedded engine (a no-op on a
    /// server, which acknowledged each write durably already).
    pub async fn flush(&self) -> Result<(), IndexError> {
        match &self.engine {
            Engine::Embedded(engine) => engine.flush().await,
            Engine::Server(_) => Ok(()),
        }
    }

    /// Deletes points by id (ids that do not exist are ignored).
    pub async fn delete_points(&self, ids: &[ChunkId]) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        dispatch!(self.delete_points(ids.to_vec()))
    }

    /// Deletes every chunk of the given rows of one table.
    pub async fn delete_source_rows(
        &self,
        source_table: &str,
        source_ids: &[i64],
    ) -> Result<(), IndexError> {
        if source_ids.is_empty() {
            return Ok(());
        }
        self.check_table(source_table)?;
        let filters = source_ids
            .chunks(4096)
            .map(|ids| FilterSpec::source_rows(source_table, ids))
            .collect();
        dispatch!(self.delete_by_filter("delete source rows", filters))
    }

    /// Deletes the chunks of one row whose index is `first_stale_chunk_index` or more
    /// (the row's document got shorter).
    pub async fn delete_chunks_from(
        &self,
        source_table: &str,
        source_id: i64,
        first_stale_chunk_index: u32,
    ) -> Result<(), IndexError> {
        self.check_table(source_table)?;
        let mut filter = FilterSpec::source_rows(source_table, &[source_id]);
        filter.must.push(Cond::IntegerAtLeast(
            "chunk_index",
            i64::from(first_stale_chunk_index),
        ));
        dispatch!(self.delete_by_filter("delete stale chunks", vec![filter]))
    }

    /// Sets the canonical entity id of every chunk of these rows, without re-embedding
    /// (`None` clears it).
    pub async fn set_entity_id(
        &self,
        source_table: &str,
        source_ids: &[i64],
        entity_id: Option<&str>,
    ) -> Result<(), IndexError> {
        if source_ids.is_empty() {
            return Ok(());
        }
        self.check_table(source_table)?;
        let value = entity_id.map_or(Value::Null, |id| Value::String(id.to_owned()));
        let fields = Map::from_iter([("entity_id".to_owned(), value)]);
        let filters = source_ids
            .chunks(4096)
            .map(|ids| FilterSpec::source_rows(source_table, ids))
            .collect();
        dispatch!(self.set_payload("set entity id", PayloadTarget::Filters(filters), fields))
    }

    /// Sets extra payload fields on the selected points, keeping their vectors and other
    /// fields. The typed fields of [`ChunkPayload`] (see [`CORE_PAYLOAD_FIELDS`]) are
    /// refused: change those by re-upserting, or with [`Index::set_entity_id`].
    pub async fn set_payload_fields(
        &self,
        selector: PointSelector,
        fields: Map<String, Value>,
    ) -> Result<(), IndexError> {
        if let Some(key) = fields
            .keys()
            .find(|key| CORE_PAYLOAD_FIELDS.contains(&key.as_str()))
        {
            return Err(self.invalid(format!(
                "payload field {key:?} is typed: re-upsert the point (or use set_entity_id)"
            )));
        }
        if fields.is_empty() {
            return Ok(());
        }
        let target = match selector {
            PointSelector::Ids(ids) if ids.is_empty() => return Ok(()),
            PointSelector::Ids(ids) => PayloadTarget::Ids(ids),
            PointSelector::SourceRows { source_ids, .. } if source_ids.is_empty() => {
                return Ok(());
            }
            PointSelector::SourceRows {
                source_table,
                source_ids,
            } => {
                self.check_table(&source_table)?;
                PayloadTarget::Filters(
                    source_ids
                        .chunks(4096)
                        .map(|ids| FilterSpec::source_rows(&source_table, ids))
                        .collect(),
                )
            }
        };
        dispatch!(self.set_payload("set payload", target, fields))
    }

    /// The best chunks for the request, best first (at most `limit`).
    #[tracing::instrument(skip_all, fields(collection = %self.collection, engine = %self.engine_kind(), mode = ?request.mode, limit = request.limit))]
    pub async fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, IndexError> {
        let Some(plan) = self.plan(request, request.limit).await? else {
            return Ok(Vec::new());
        };
        dispatch!(self.search(plan))
    }

    /// The best chunk of each of the best source rows `(source_table, source_id)`, best
    /// first (at most `limit` rows).
    ///
    /// Chunks are fetched in growing windows until `limit` distinct rows are found or
    /// the matches run out, so a row with many good chunks cannot crowd out others. For
    /// hybrid search each prefetch is widened to the window too.
    #[tracing::instrument(skip_all, fields(collection = %self.collection, engine = %self.engine_kind(), mode = ?request.mode, limit = request.limit))]
    pub async fn search_grouped(
        &self,
        request: &SearchRequest,
    ) -> Result<Vec<SearchHit>, IndexError> {
        let mut window = request.limit.saturating_mul(GROUP_OVERFETCH).min(MAX_LIMIT);
        loop {
            let Some(plan) = self.plan(request, window).await? else {
                return Ok(Vec::new());
            };
            let hits = dispatch!(self.search(plan))?;
            let exhausted = hits.len() < window || window >= MAX_LIMIT;
            let mut seen = HashSet::new();
            let groups: Vec<SearchHit> = hits
                .into_iter()
                .filter(|hit| {
                    seen.insert((hit.payload.source_table.clone(), hit.payload.source_id))
                })
                .take(request.limit)
                .collect();
            if groups.len() >= request.limit || exhausted {
                return Ok(groups);
            }
            window = window.saturating_mul(GROUP_OVERFETCH).min(MAX_LIMIT);
        }
    }

    /// Reads the collection's search files (graphs, sparse indexes, vectors; not the
    /// payload storage) once from a thread of its own, so the OS keeps them in its page
    /// cache, and returns at once; a process that opens the collection to search calls
    /// it so its first queries do not wait for the disk. `None` on a server (which has
    /// its own cache) or when the thread could not start; dropping the returned
    /// [`CacheWarming`] lets the reading go on.
    ///
    /// qdrant-edge evicts a collection's memory-mapped files from the page cache when it
    /// closes the collection, so every process that opens it finds the graph, the int8
    /// copy and the sparse index on disk: at 1M chunks, hybrid queries right after an
    /// open had a p99 of 30–47 ms, and 10–19 ms with this reading started at the open
    /// (`crm-bench index`, query part).
    pub fn warm_cache(&self) -> Option<CacheWarming> {
        match &self.engine {
            Engine::Embedded(engine) => engine.warm_cache().map(CacheWarming),
            Engine::Server(_) => None,
        }
    }

    /// Number of points that pass the filter (exact).
    pub async fn count(&self, filter: &SearchFilter) -> Result<u64, IndexError> {
        dispatch!(self.count(filter.to_spec()))
    }

    /// One page of points in id order. Pass the page's `next_offset` to get the next.
    pub async fn scroll(&self, request: &ScrollRequest) -> Result<ScrollPage, IndexError> {
        if request.limit == 0 || request.limit > MAX_LIMIT {
            return Err(self.invalid(format!(
                "scroll limit {} is out of range (1 to {MAX_LIMIT})",
                request.limit
            )));
        }
        dispatch!(self.scroll(
            request.filter.to_spec(),
            request.limit,
            request.offset,
            request.with_vectors
        ))
    }

    /// The points with these ids that exist, in the order asked.
    pub async fn retrieve(
        &self,
        ids: &[ChunkId],
        with_vectors: bool,
    ) -> Result<Vec<StoredPoint>, IndexError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self.retrieve(ids.to_vec(), with_vectors))
    }

    /// Counts and configuration of the collection.
    pub async fn info(&self) -> Result<IndexInfo, IndexError> {
        dispatch!(self.info())
    }

    /// The number of points, when it costs nothing much to know: always from a server;
    /// from the embedded engine only if the collection is already loaded (`None`
    /// otherwise: loading a million points only to count them takes seconds).
    pub async fn points_count_if_loaded(&self) -> Result<Option<u64>, IndexError> {
        match &self.engine {
            Engine::Embedded(engine) if !engine.is_loaded() => Ok(None),
            _ => Ok(Some(self.info().await?.points_count)),
        }
    }

    /// Runs the embedded engine's optimizer until it has nothing left to do: builds the
    /// HNSW graphs of large segments, merges small ones, vacuums deleted points. Call
    /// it after a bulk load; it can take minutes on millions of points, during which
    /// searches keep working and writes wait. The server optimizes on its own, so there
    /// this only reports the state.
    #[tracing::instrument(skip_all, fields(collection = %self.collection, engine = %self.engine_kind()))]
    pub async fn optimize(&self) -> Result<OptimizeOutcome, IndexError> {
        let started = std::time::Instant::now();
        let outcome = dispatch!(self.optimize())?;
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            optimized = outcome.optimized,
            segments_before = outcome.segments_before,
            segments_after = outcome.segments_after,
            indexed_vectors = outcome.indexed_vectors_count,
            "optimize finished"
        );
        Ok(outcome)
    }

    async fn dense_dim(&self) -> Result<usize, IndexError> {
        dispatch!(self.dense_dim())
    }

    fn invalid(&self, reason: String) -> IndexError {
        IndexError::InvalidRequest {
            engine: self.engine_kind(),
            collection: self.collection.clone(),
            reason,
        }
    }

    fn check_table(&self, source_table: &str) -> Result<(), IndexError> {
        if source_table.is_empty() {
            Err(self.invalid("source table is empty".to_owned()))
        } else {
            Ok(())
        }
    }

    /// Checks a request and turns it into a plan fetching `limit` hits; `None` when it
    /// cannot match anything (a sparse search with an empty query).
    async fn plan(
        &self,
        request: &SearchRequest,
        limit: usize,
    ) -> Result<Option<SearchPlan>, IndexError> {
        if request.limit == 0 || request.limit > MAX_LIMIT {
            return Err(self.invalid(format!(
                "limit {} is out of range (1 to {MAX_LIMIT})",
                request.limit
            )));
        }
        if request.mode == SearchMode::Hybrid {
            if request.rrf_k == 0 {
                return Err(self
                    .invalid("rrf_k must be at least 1 (the top hit would score 1/0)".to_owned()));
            }
            if request.prefetch_limit == 0 || request.prefetch_limit > MAX_LIMIT {
                return Err(self.invalid(format!(
                    "prefetch limit {} is out of range (1 to {MAX_LIMIT})",
                    request.prefetch_limit
                )));
            }
        }
        let dense = match (request.mode, &request.dense) {
            (SearchMode::Sparse, _) => None,
            (_, None) => {
                return Err(self.invalid(format!(
                    "a {:?} search needs a dense query vector",
                    request.mode
                )));
            }
            (_, Some(dense)) => {
                let dim = self.dense_dim().await?;
                if let Some(problem) = point::dense_problem(dense, dim) {
                    return Err(self.invalid(format!("query: {problem}")));
                }
                Some(dense.clone())
            }
        };
        let sparse = match (request.mode, &request.sparse) {
            (SearchMode::Dense, _) => None,
            (_, None) => {
                return Err(self.invalid(format!(
                    "a {:?} search needs a sparse query vector",
                    request.mode
                )));
            }
            (_, Some(sparse)) => {
                if let Some(problem) = sparse.problem() {
                    return Err(self.invalid(format!("query: {problem}")));
                }
                let mut sparse = sparse.clone();
                sparse.sort_by_index();
                Some(sparse)
            }
        };
        let query = match (request.mode, dense, sparse) {
            (SearchMode::Dense, Some(dense), _) => PlanQuery::Dense(dense),
            (SearchMode::Sparse, _, Some(sparse)) if sparse.is_empty() => return Ok(None),
            (SearchMode::Sparse, _, Some(sparse)) => PlanQuery::Sparse(sparse),
            (SearchMode::Hybrid, Some(dense), Some(sparse)) => PlanQuery::Fused {
                dense,
                sparse: (!sparse.is_empty()).then_some(sparse),
                rrf_k: request.rrf_k,
                // A grouped search widens its window past `limit`; the prefetches follow.
                prefetch_limit: if limit > request.limit {
                    request.prefetch_limit.max(limit)
                } else {
                    request.prefetch_limit
                },
            },
            (mode, _, _) => {
                return Err(self.invalid(format!("a {mode:?} search is missing a query vector")));
            }
        };
        Ok(Some(SearchPlan {
            filter: request.filter.to_spec(),
            limit,
            query,
        }))
    }
}
