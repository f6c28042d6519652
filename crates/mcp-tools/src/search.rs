//! The `search` tool's backend: the index, the query encoders, and what `/health` and
//! `crm_stats` say about them.
//!
//! [`SearchBackend`] opens the index lazily, on the first search, and keeps it open.
//! The embedded engine admits one process at a time, so with
//! [`SearchConfig::release_after_idle`] set (the default for the embedded engine) the
//! handle is dropped after that long without a search, letting `crm-sync` and
//! `crm-backfill` take the index in between; the next search opens it again.
//! [`SearchBackend::sharing`] instead searches an index the caller holds open, e.g. one
//! that the same process keeps in step with the CRM (`crm-mcp --sync-every`).
//!
//! Dense retrieval needs an embedding model. Without one (no Spark Control configured and
//! no local model), or when the model does not match the index (another dimension or
//! fingerprint), `dense` searches fail with a tool error saying so, and `hybrid` searches
//! fall back to `sparse` and say so in the answer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crm_store::phase0;
use crm_store::rusqlite::Connection;
use crm_store::{Deal, Interaction, Organization, Person, SourceTable, queries};
use embed::dense::DenseEmbedder;
use embed::{Bm25Config, Bm25Encoder};
use index_qdrant::{
    EngineConfig, Index, IndexConfig, IndexError, SearchFilter, SearchHit, SearchRequest,
    SparseVector,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::args::{self, Lines, MAX_QUERY_CHARS, MAX_SHORT_ARG_CHARS, Position};
use crate::config::ToolsConfig;
use crate::error::{McpError, ToolError};
use crate::reads::{
    DealBrief, InteractionItem, OrganizationSummary, PageInfo, PersonSummary, page,
};
use crate::text::{LongText, TextLimits, clip, long_text, opt_clip, opt_long};
use crate::views::{OrgRef, PersonRef, org_refs, person_refs, u32_len};

/// Default and largest page of search results.
pub const DEFAULT_SEARCH_LIMIT: u32 = 10;
const MAX_SEARCH_LIMIT: u32 = 50;
/// How deep paging may go into one ranking.
const MAX_SEARCH_DEPTH: u32 = 100;
/// Candidates each hybrid prefetch gathers, the same for every page of a query.
///
/// Reciprocal rank fusion only ranks what the prefetches found, so a wider prefetch can
/// reorder the fused list; one fixed width, enough for the deepest page (grouped search
/// reads about four chunks per row), keeps the pages of one query from overlapping.
pub const HYBRID_PREFETCH: usize = 4 * MAX_SEARCH_DEPTH as usize;

/// The state of the search index as this server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// The index answers searches.
    Ready,
    /// Another process holds the embedded index (a sync or backfill is running);
    /// searches work again when it finishes.
    Busy,
    /// The collection has never been built (run `crm-backfill`).
    Missing,
    /// The index cannot be used (server unreachable, unreadable files, ...).
    Unavailable,
    /// This server was started without a search backend.
    NotConfigured,
}

/// What `/health` and `crm_stats` report about the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct IndexStatus {
    /// Ready, busy, missing, unavailable or not configured.
    pub state: IndexState,
    /// `embedded` or `server`, when configured.
    pub engine: Option<String>,
    /// Points (chunks) in the collection, when it answers.
    pub points: Option<u64>,
    /// Whether dense (embedding) queries can run; sparse (BM25) ones can whenever the
    /// index is ready.
    pub dense_available: bool,
    /// Why the index is not ready, or why dense queries cannot run.
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

/// How the search backend reaches the index.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchConfig {
    /// Engine, location and collection.
    pub index: IndexConfig,
    /// RRF `k` of hybrid retrieval, sent explicitly.
    pub rrf_k: u32,
    /// BM25 parameters (only the tokenisation matters for queries; they must be those the
    /// index was built with).
    pub bm25: Bm25Config,
    /// Drop the index handle after this long without a search (`None` keeps it).
    pub release_after_idle: Option<Duration>,
}

impl SearchConfig {
    /// Defaults for `index`: RRF `k` 60, default BM25, and for the embedded engine a
    /// 30 s idle release.
    pub fn new(index: IndexConfig) -> Self {
        let release_after_idle = match index.engine {
            EngineConfig::Embedded { .. } => Some(Duration::from_secs(30)),
            EngineConfig::Server { .. } => None,
        };
        Self {
            index,
            rrf_k: index_qdrant::DEFAULT_RRF_K,
            bm25: Bm25Config::default(),
            release_after_idle,
        }
    }
}

/// The dense model, or why there is none.
pub type DenseModel = Result<DenseEmbedder, String>;

/// The index and the query encoders behind the `search` tool.
pub struct SearchBackend {
    config: SearchConfig,
    dense: Result<DenseEmbedder, String>,
    bm25: Bm25Encoder,
    open: Mutex<Option<OpenIndex>>,
    /// An index the caller holds open (never released here).
    shared: Option<Arc<Index>>,
    /// The shared index's dimension, once read (an exact count of the points comes
    /// with it, which is not free at a million points).
    shared_dim: tokio::sync::OnceCell<usize>,
}

impl std::fmt::Debug for SearchBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchBackend")
            .field("collection", &self.config.index.collection)
            .field("dense", &self.dense.as_ref().map(DenseEmbedder::model_id))
            .finish_non_exhaustive()
    }
}

struct OpenIndex {
    index: Arc<Index>,
    dense_dim: usize,
    last_used: Instant,
}

/// Why the index cannot be searched now.
enum Unusable {
    Busy(String),
    Missing(String),
    Unavailable(String),
}

impl From<Unusable> for ToolError {
    fn from(u: Unusable) -> Self {
        match u {
            Unusable::Busy(d) | Unusable::Missing(d) | Unusable::Unavailable(d) => {
                ToolError::SearchUnavailable(d)
            }
        }
    }
}

impl SearchBackend {
    /// A backend over `config`, with the dense model (or why there is none).
    pub fn new(config: SearchConfig, dense: DenseModel) -> Result<Arc<Self>, McpError> {
        Self::build(config, dense, None).map(Arc::new)
    }

    fn build(
        config: SearchConfig,
        dense: DenseModel,
        shared: Option<Arc<Index>>,
    ) -> Result<Self, McpError> {
        if config.rrf_k == 0 {
            return Err(McpError::InvalidConfig("rrf_k must be at least 1".into()));
        }
        let bm25 = Bm25Encoder::new(config.bm25)
            .map_err(|e| McpError::InvalidConfig(format!("BM25 settings: {e}")))?;
        Ok(Self {
            config,
            dense,
            bm25,
            open: Mutex::new(None),
            shared,
            shared_dim: tokio::sync::OnceCell::new(),
        })
    }

    /// A backend that searches `index`, which the caller opened (with `config.index`)
    /// and keeps: it is never released on idle, and a collection that does not exist
    /// yet is reported as missing until someone builds it through the same handle.
    pub fn sharing(
        config: SearchConfig,
        dense: DenseModel,
        index: Arc<Index>,
    ) -> Result<Arc<Self>, McpError> {
        Self::build(config, dense, Some(index)).map(Arc::new)
    }

    /// The collection searched.
    pub fn collection(&self) -> &str {
        &self.config.index.collection
    }

    /// The dense model's id, when there is one.
    pub fn dense_model(&self) -> Option<&str> {
        self.dense.as_ref().ok().map(DenseEmbedder::model_id)
    }

    fn engine_name(&self) -> &'static str {
        match self.config.index.engine {
            EngineConfig::Embedded { .. } => "embedded",
            EngineConfig::Server { .. } => "server",
        }
    }

    fn embedded_collection_dir(&self) -> Option<PathBuf> {
        match &self.config.index.engine {
            EngineConfig::Embedded { dir } => Some(dir.join(&self.config.index.collection)),
            EngineConfig::Server { .. } => None,
        }
    }

    fn classify(&self, e: IndexError) -> Unusable {
        match e {
            IndexError::Locked { .. } => Unusable::Busy(format!(
                "the embedded index is in use by another process (a crm-sync or crm-backfill \
                 run); try again when it finishes ({e})"
            )),
            IndexError::CollectionMissing { .. } => self.missing(),
            other => Unusable::Unavailable(other.to_string()),
        }
    }

    fn missing(&self) -> Unusable {
        Unusable::Missing(format!(
            "there is no search index yet (collection {:?}): run `crm-backfill` to build \
             it (or wait for the sync daemon's first run); the structured tools \
             (find_people, list_interactions, ...) work without it",
            self.config.index.collection
        ))
    }

    /// Opens the index without keeping it (`keep` = false) or keeps it for searches.
    async fn handle(self: &Arc<Self>, keep: bool) -> Result<(Arc<Index>, usize), Unusable> {
        if let Some(index) = &self.shared {
            if !index.exists().await.map_err(|e| self.classify(e))? {
                return Err(self.missing());
            }
            let dim = self
                .shared_dim
                .get_or_try_init(|| async {
                    index
                        .info()
                        .await
                        .map(|info| info.dense_dim)
                        .map_err(|e| self.classify(e))
                })
                .await?;
            return Ok((index.clone(), *dim));
        }
        let mut open = self.open.lock().await;
        if let Some(o) = open.as_mut() {
            if keep {
                o.last_used = Instant::now();
            }
            return Ok((o.index.clone(), o.dense_dim));
        }
        // A never-built embedded index is reported without creating its directory.
        if let Some(dir) = self.embedded_collection_dir()
            && !dir.exists()
        {
            return Err(self.missing());
        }
        let index = Index::open(self.config.index.clone())
            .await
            .map_err(|e| self.classify(e))?;
        if !index.exists().await.map_err(|e| self.classify(e))? {
            return Err(self.missing());
        }
        let info = index.info().await.map_err(|e| self.classify(e))?;
        let index = Arc::new(index);
        if keep {
            // Its files were evicted from the page cache by whoever closed it last.
            index.warm_cache();
            tracing::info!(
                collection = %self.config.index.collection,
                points = info.points_count,
                "opened the search index"
            );
            *open = Some(OpenIndex {
                index: index.clone(),
                dense_dim: info.dense_dim,
                last_used: Instant::now(),
            });
            if let Some(idle) = self.config.release_after_idle {
                tokio::spawn(release_when_idle(Arc::downgrade(self), idle));
            }
        }
        Ok((index, info.dense_dim))
    }

    /// The index's state, for `/health` and `crm_stats`. Opens the index for a moment
    /// when it is not open, without keeping it.
    pub async fn status(self: &Arc<Self>) -> IndexStatus {
        let engine = Some(self.engine_name().to_owned());
        let (state, points, detail, dim) = match self.handle(false).await {
            Ok((index, dim)) => match index.info().await {
                Ok(info) => (IndexState::Ready, Some(info.points_count), None, Some(dim)),
                Err(e) => (IndexState::Unavailable, None, Some(e.to_string()), None),
            },
            Err(Unusable::Busy(d)) => (IndexState::Busy, None, Some(d), None),
            Err(Unusable::Missing(d)) => (IndexState::Missing, None, Some(d), None),
            Err(Unusable::Unavailable(d)) => (IndexState::Unavailable, None, Some(d), None),
        };
        let dense = match (&self.dense, dim) {
            (Err(why), _) => Err(why.clone()),
            (Ok(model), Some(dim)) => self.check_dense(model, dim).await,
            (Ok(_), None) => Ok(()),
        };
        let detail = match (detail, &dense) {
            (Some(d), _) => Some(d),
            (None, Err(why)) => Some(format!("dense retrieval is unavailable: {why}")),
            (None, Ok(())) => None,
        };
        IndexStatus {
            state,
            engine,
            points,
            dense_available: dense.is_ok(),
            detail,
        }
    }

    /// Whether `model` can query an index of `dim`-dimension vectors.
    async fn check_dense(&self, model: &DenseEmbedder, dim: usize) -> Result<(), String> {
        let model_dim = model
            .dimension()
            .await
            .map_err(|e| format!("the embedding model does not answer: {e}"))?;
        if model_dim != dim {
            return Err(format!(
                "the index holds {dim}-dimension vectors but the embedding model {} gives \
                 {model_dim}; rebuild the index with `crm-backfill --recreate`",
                model.model_id()
            ));
        }
        Ok(())
    }

    /// Whether the index was built by the configured dense model (same fingerprint),
    /// judged from the sync state recorded beside the CRM.
    async fn fingerprint_mismatch(
        &self,
        model: &DenseEmbedder,
        conn_fingerprint: Option<String>,
    ) -> Option<String> {
        let stored = conn_fingerprint?;
        let ours = model.fingerprint().await.ok()?;
        let ours = serde_json::to_string(&ours).ok()?;
        (!stored.contains(&ours)).then(|| {
            format!(
                "the index was built with other embedding settings than this server's model \
                 {}; rebuild it with `crm-backfill --recreate` or configure the same model",
                model.model_id()
            )
        })
    }
}

/// Drops the backend's index handle once it has been idle for `idle`; ends with the
/// handle or the backend.
async fn release_when_idle(backend: Weak<SearchBackend>, idle: Duration) {
    let tick = (idle / 4).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        let mut open = backend.open.lock().await;
        match open.as_ref() {
            None => return,
            Some(o) if o.last_used.elapsed() >= idle => {
                *open = None;
                tracing::info!(
                    collection = %backend.config.index.collection,
                    idle_secs = idle.as_secs_f64(),
                    "released the idle search index"
                );
                return;
            }
            Some(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// the tool

/// Retrieval mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchModeParam {
    /// Meaning and keywords together, fused by reciprocal rank (the default).
    #[default]
    Hybrid,
    /// Meaning only: embedding similarity.
    Dense,
    /// Keywords only: BM25.
    Sparse,
}

/// What kind of CRM row a hit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// A row of `people`.
    Person,
    /// A row of `organizations`.
    Organization,
    /// A row of `interactions` (meeting, call, email, note).
    Interaction,
    /// A row of `deals`.
    Deal,
}

impl RowKind {
    fn table(self) -> SourceTable {
        match self {
            Self::Person => SourceTable::People,
            Self::Organization => SourceTable::Organizations,
            Self::Interaction => SourceTable::Interactions,
            Self::Deal => SourceTable::Deals,
        }
    }
}

/// Parameters of `search`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// What to look for, in plain words (at most 2000 characters).
    pub query: String,
    /// `hybrid` (default), `dense` (meaning) or `sparse` (keywords).
    pub mode: Option<SearchModeParam>,
    /// Rows to return, default 10, capped at 50.
    pub limit: Option<u32>,
    /// Only these kinds of rows: `person`, `organization`, `interaction`, `deal`.
    pub kinds: Option<Vec<RowKind>>,
    /// Only rows of this organization (its people, interactions, deals, and itself).
    pub organization_id: Option<i64>,
    /// Only rows of this canonical entity, e.g. `person:17`.
    pub entity_id: Option<String>,
    /// Only interactions at or after this date or date-time (ISO-8601, UTC).
    pub since: Option<String>,
    /// Only interactions at or before this date (the whole day) or date-time.
    pub until: Option<String>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// The current CRM row of a hit: exactly one field is set, per `source_table`.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct HitRow {
    /// The person, when the hit is a `people` row.
    pub person: Option<PersonSummary>,
    /// The organization, when the hit is an `organizations` row.
    pub organization: Option<OrganizationSummary>,
    /// The interaction, when the hit is an `interactions` row.
    pub interaction: Option<InteractionItem>,
    /// The deal, when the hit is a `deals` row.
    pub deal: Option<DealHit>,
}

/// A deal in a search hit.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DealHit {
    /// The deal.
    #[serde(flatten)]
    pub deal: DealBrief,
    /// The organisation the deal is with.
    pub organization: Option<OrgRef>,
}

/// One search hit: a CRM row as it is now, and the chunk of it that matched.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SearchHitView {
    /// 1 for the best hit of the ranking.
    pub rank: u32,
    /// Cosine similarity (dense), BM25 score (sparse) or RRF score (hybrid).
    pub score: f64,
    /// `people`, `organizations`, `interactions` or `deals`.
    pub source_table: String,
    /// The row id (what the get_* tools take).
    pub source_id: i64,
    /// The row's canonical entity, when it has one.
    pub entity_id: Option<String>,
    /// The best matching chunk of the row's document, as indexed.
    pub chunk: LongText,
    /// Position of that chunk in the document, from 0.
    pub chunk_index: u32,
    /// The row as it is now in the CRM (re-read, not the indexed copy).
    pub row: HitRow,
}

/// Answer of `search`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SearchResult {
    /// The mode that ranked these hits: the one asked for, or `sparse` after a fallback.
    pub mode_used: SearchModeParam,
    /// Why `hybrid` fell back to `sparse`, when it did.
    pub fallback_reason: Option<String>,
    /// The hits, best first, one per CRM row.
    pub hits: Vec<SearchHitView>,
    /// Hits left out of this page because their row was deleted since it was indexed.
    pub dropped_deleted: u32,
    /// Paging.
    pub page: PageInfo,
}

/// What a search asks of the index, after checking the arguments.
struct Plan {
    query: String,
    mode: SearchModeParam,
    filter: SearchFilter,
    offset: u32,
    limit: u32,
    hash: String,
}

const TOOL: &str = "search";

fn plan(p: &SearchParams) -> Result<Plan, ToolError> {
    let query = args::required_text("query", &p.query, MAX_QUERY_CHARS, Lines::Multi)?;
    let mode = p.mode.unwrap_or_default();
    let limit = match p.limit {
        None => DEFAULT_SEARCH_LIMIT,
        Some(0) => {
            return Err(ToolError::arg(
                "limit",
                format!("must be between 1 and {MAX_SEARCH_LIMIT}"),
            ));
        }
        Some(n) => n.min(MAX_SEARCH_LIMIT),
    };
    let entity_id = args::opt_text(
        "entity_id",
        p.entity_id.as_deref(),
        MAX_SHORT_ARG_CHARS,
        Lines::Single,
    )?;
    let since = args::date("since", p.since.as_deref(), false)?;
    let until = args::date("until", p.until.as_deref(), true)?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(ToolError::arg("since", "is after `until`"));
    }
    let mut kinds: Vec<RowKind> = p.kinds.clone().unwrap_or_default();
    kinds.sort_by_key(|k| k.table());
    kinds.dedup();
    let to_utc = |name: &'static str, t: crm_store::Timestamp| {
        chrono::DateTime::parse_from_rfc3339(&t.to_canonical())
            .map(|d| d.with_timezone(&chrono::Utc))
            .map_err(|_| ToolError::arg(name, "is outside the dates the index can filter on"))
    };
    let filter = SearchFilter {
        kinds: Vec::new(),
        source_tables: kinds
            .iter()
            .map(|k| k.table().as_str().to_owned())
            .collect(),
        entity_ids: entity_id.iter().cloned().collect(),
        organization_ids: p.organization_id.into_iter().collect(),
        date_from: since.map(|t| to_utc("since", t)).transpose()?,
        date_to: until.map(|t| to_utc("until", t)).transpose()?,
    };
    let hash = args::query_hash(&(&query, mode, &filter));
    let offset = match args::decode_cursor(TOOL, &hash, p.cursor.as_deref())? {
        None => 0,
        Some(Position::Offset { n }) => n,
        Some(_) => return Err(ToolError::arg("cursor", "does not fit this list")),
    };
    if offset >= MAX_SEARCH_DEPTH {
        return Err(ToolError::arg(
            "cursor",
            format!(
                "search pages end after {MAX_SEARCH_DEPTH} results; refine the query or the \
                 filters instead"
            ),
        ));
    }
    // The last page stops at the depth limit.
    let limit = limit.min(MAX_SEARCH_DEPTH - offset);
    Ok(Plan {
        query,
        mode,
        filter,
        offset,
        limit,
        hash,
    })
}

fn to_index_sparse(v: embed::SparseVector) -> SparseVector {
    SparseVector::new(v.indices, v.values)
}

/// The ranked hits of a search, before they are re-read from the CRM.
pub(crate) struct Ranked {
    hits: Vec<SearchHit>,
    mode_used: SearchModeParam,
    fallback_reason: Option<String>,
    offset: u32,
    limit: u32,
    hash: String,
    /// Whether the index had more hits than this page.
    more: bool,
}

impl SearchBackend {
    /// Runs the search against the index (no CRM access).
    pub(crate) async fn rank(
        self: &Arc<Self>,
        p: &SearchParams,
        stored_fingerprint: Option<String>,
    ) -> Result<Ranked, ToolError> {
        let plan = plan(p)?;
        let (index, dim) = self.handle(true).await?;
        let sparse = to_index_sparse(self.bm25.query(&plan.query));
        let mut fallback_reason = None;
        let dense = match plan.mode {
            SearchModeParam::Sparse => None,
            SearchModeParam::Dense | SearchModeParam::Hybrid => {
                match self.dense_query(&plan.query, dim, stored_fingerprint).await {
                    Ok(v) => Some(v),
                    Err(why) if plan.mode == SearchModeParam::Hybrid => {
                        fallback_reason = Some(why);
                        None
                    }
                    Err(why) => {
                        return Err(ToolError::SearchUnavailable(format!(
                            "dense retrieval is unavailable: {why}; use mode `sparse` \
                             (keywords)"
                        )));
                    }
                }
            }
        };
        let window = (plan.offset + plan.limit + 1) as usize;
        let (request, mode_used) = match dense {
            Some(d) if plan.mode == SearchModeParam::Dense => {
                (SearchRequest::dense(d, window), SearchModeParam::Dense)
            }
            Some(d) => (
                SearchRequest::hybrid(d, sparse, window)
                    .with_rrf_k(self.config.rrf_k)
                    .with_prefetch_limit(HYBRID_PREFETCH),
                SearchModeParam::Hybrid,
            ),
            None => (
                SearchRequest::sparse(sparse, window),
                SearchModeParam::Sparse,
            ),
        };
        let request = request.with_filter(plan.filter.clone());
        let mut hits = index
            .search_grouped(&request)
            .await
            .map_err(|e| ToolError::from(self.classify(e)))?;
        let more = hits.len() > (plan.offset + plan.limit) as usize;
        hits.truncate((plan.offset + plan.limit) as usize);
        let hits = hits.split_off((plan.offset as usize).min(hits.len()));
        Ok(Ranked {
            hits,
            mode_used,
            fallback_reason,
            offset: plan.offset,
            limit: plan.limit,
            hash: plan.hash,
            more,
        })
    }

    async fn dense_query(
        &self,
        query: &str,
        dim: usize,
        stored_fingerprint: Option<String>,
    ) -> Result<Vec<f32>, String> {
        let model = self.dense.as_ref().map_err(Clone::clone)?;
        if let Some(why) = self.fingerprint_mismatch(model, stored_fingerprint).await {
            return Err(why);
        }
        let vector = model
            .embed_query(query)
            .await
            .map_err(|e| format!("embedding the query failed: {e}"))?;
        if vector.len() != dim {
            return Err(format!(
                "the index holds {dim}-dimension vectors but the embedding model {} gives \
                 {}; rebuild the index with `crm-backfill --recreate`",
                model.model_id(),
                vector.len()
            ));
        }
        Ok(vector)
    }
}

/// The fingerprint recorded by the last sync of `collection`, if any.
pub(crate) fn stored_fingerprint(
    conn: &Connection,
    collection: &str,
) -> Result<Option<String>, ToolError> {
    for table in SourceTable::ALL {
        if let Some(fp) =
            phase0::get_sync_state(conn, collection, table)?.and_then(|s| s.fingerprint)
        {
            return Ok(Some(fp));
        }
    }
    Ok(None)
}

/// Re-reads the ranked rows from the CRM, drops deleted ones and builds the answer.
pub(crate) fn answer(
    conn: &Connection,
    config: &ToolsConfig,
    ranked: Ranked,
) -> Result<SearchResult, ToolError> {
    let limits = TextLimits {
        long: config.list_text_chars as usize,
        field: config.max_field_chars as usize,
    };
    let ids = |t: SourceTable| -> Vec<i64> {
        ranked
            .hits
            .iter()
            .filter(|h| h.payload.source_table == t.as_str())
            .map(|h| h.payload.source_id)
            .collect()
    };
    let people: HashMap<i64, Person> =
        queries::rows_by_ids::<Person>(conn, &ids(SourceTable::People))?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
    let orgs: HashMap<i64, Organization> =
        queries::rows_by_ids::<Organization>(conn, &ids(SourceTable::Organizations))?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
    let interactions: HashMap<i64, Interaction> =
        queries::rows_by_ids::<Interaction>(conn, &ids(SourceTable::Interactions))?
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
    let deals: HashMap<i64, Deal> = queries::rows_by_ids::<Deal>(conn, &ids(SourceTable::Deals))?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let entity_people =
        phase0::entity_ids_of_rows(conn, SourceTable::People, &ids(SourceTable::People))?;
    let entity_orgs = phase0::entity_ids_of_rows(
        conn,
        SourceTable::Organizations,
        &ids(SourceTable::Organizations),
    )?;
    let mut org_ids: Vec<i64> = people.values().filter_map(|p| p.organization_id).collect();
    org_ids.extend(interactions.values().filter_map(|i| i.organization_id));
    org_ids.extend(deals.values().filter_map(|d| d.organization_id));
    let org_names = org_refs(conn, &org_ids, limits)?;
    let participant_ids: Vec<i64> = interactions
        .values()
        .flat_map(|i| i.participant_ids.iter().take(10).copied())
        .collect();
    let participants: HashMap<i64, PersonRef> = person_refs(conn, &participant_ids, limits)?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();

    // Hits whose row is gone or soft-deleted are dropped: never returned.
    let f = limits.field;
    let mut dropped = 0u32;
    let mut kept: Vec<(u32, &SearchHit, HitRow, Option<String>)> = Vec::new();
    for (i, hit) in ranked.hits.iter().enumerate() {
        let rank = ranked.offset + u32_len(i) + 1;
        let id = hit.payload.source_id;
        let org = |o: Option<i64>| o.and_then(|o| org_names.get(&o).cloned());
        let built = match hit.payload.source_table.as_str() {
            "people" => people.get(&id).filter(|p| p.deleted_at.is_none()).map(|p| {
                let entity = entity_people.get(&id).cloned();
                (
                    HitRow {
                        person: Some(PersonSummary {
                            id,
                            full_name: clip(&p.full_name, f),
                            title: opt_clip(p.title.as_deref(), f),
                            email: opt_clip(p.email.as_deref(), f),
                            phone: opt_clip(p.phone.as_deref(), f),
                            organization: org(p.organization_id),
                            location: opt_clip(p.location.as_deref(), f),
                            entity_id: entity.clone(),
                        }),
                        ..HitRow::default()
                    },
                    entity,
                )
            }),
            "organizations" => orgs.get(&id).filter(|o| o.deleted_at.is_none()).map(|o| {
                let entity = entity_orgs.get(&id).cloned();
                (
                    HitRow {
                        organization: Some(OrganizationSummary {
                            id,
                            name: clip(&o.name, f),
                            kind: opt_clip(o.kind.as_deref(), f),
                            domain: opt_clip(o.domain.as_deref(), f),
                            website: opt_clip(o.website.as_deref(), f),
                            location: opt_clip(o.location.as_deref(), f),
                            entity_id: entity.clone(),
                        }),
                        ..HitRow::default()
                    },
                    entity,
                )
            }),
            "interactions" => interactions
                .get(&id)
                .filter(|i| i.deleted_at.is_none())
                .map(|i| {
                    (
                        HitRow {
                            interaction: Some(InteractionItem {
                                id,
                                kind: clip(&i.kind, f),
                                occurred_at: i.occurred_at.to_canonical(),
                                subject: opt_clip(i.subject.as_deref(), f),
                                body: opt_long(i.body.as_deref(), limits.long),
                                organization: org(i.organization_id),
                                participants: i
                                    .participant_ids
                                    .iter()
                                    .take(10)
                                    .filter_map(|p| participants.get(p).cloned())
                                    .collect(),
                                participants_total: u32_len(i.participant_ids.len()),
                                created_by: opt_clip(i.created_by.as_deref(), f),
                            }),
                            ..HitRow::default()
                        },
                        hit.payload.entity_id.clone(),
                    )
                }),
            "deals" => deals.get(&id).filter(|d| d.deleted_at.is_none()).map(|d| {
                (
                    HitRow {
                        deal: Some(DealHit {
                            deal: DealBrief {
                                id,
                                name: clip(&d.name, f),
                                stage: opt_clip(d.stage.as_deref(), f),
                                amount_usd: d.amount_usd,
                            },
                            organization: org(d.organization_id),
                        }),
                        ..HitRow::default()
                    },
                    hit.payload.entity_id.clone(),
                )
            }),
            _ => None,
        };
        match built {
            Some((row, entity)) => kept.push((rank, hit, row, entity)),
            None => dropped += 1,
        }
    }

    let budget = config.response_budget_bytes as usize;
    let (hits, next, short) = page(
        &kept,
        kept.len(),
        budget,
        800,
        |(rank, hit, row, entity)| {
            Ok(SearchHitView {
                rank: *rank,
                score: f64::from(hit.score),
                source_table: hit.payload.source_table.clone(),
                source_id: hit.payload.source_id,
                entity_id: entity.clone(),
                chunk: long_text(&hit.payload.text, limits.long),
                chunk_index: hit.payload.chunk_index,
                row: row.clone(),
            })
        },
        |(rank, _, _, _)| Position::Offset { n: *rank },
    )?;
    // The page ends early when the budget was reached, or continues after the window
    // when the index had more.
    let next = if short {
        next
    } else if ranked.more && ranked.offset + ranked.limit < MAX_SEARCH_DEPTH {
        Some(Position::Offset {
            n: ranked.offset + ranked.limit,
        })
    } else {
        None
    };
    let result = SearchResult {
        mode_used: ranked.mode_used,
        fallback_reason: ranked.fallback_reason,
        hits,
        dropped_deleted: dropped,
        page: PageInfo {
            next_cursor: next.map(|p| args::encode_cursor(TOOL, &ranked.hash, p)),
            limit: ranked.limit,
            shortened_to_fit: short,
        },
    };
    Ok(result)
}
