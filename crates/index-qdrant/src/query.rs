//! Requests and answers of the read side: search, filters, scroll, info.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::EngineKind;
use crate::point::{ChunkId, ChunkPayload, PayloadIndexKind, SparseVector, StoredPoint, field};

/// RRF `k` used when the caller does not choose one. Qdrant's own default is 2; the
/// literature (and the Python pipeline) use 60. It is always sent explicitly.
pub const DEFAULT_RRF_K: u32 = 60;

/// How many candidates each hybrid prefetch gathers when the caller does not say.
pub const DEFAULT_PREFETCH_LIMIT: usize = 100;

/// The largest `limit` (and prefetch limit) a request may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// Which vectors score the points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Nearest neighbours of the dense query embedding (cosine).
    Dense,
    /// BM25: dot product of the sparse query with the IDF-weighted document vectors.
    Sparse,
    /// Both, each as a prefetch, fused with reciprocal rank fusion.
    Hybrid,
}

/// Which points a search, count or scroll may see. Empty lists do not constrain; a
/// non-empty list matches any of its values; all given constraints must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    /// `kind` is one of these.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// `source_table` is one of these.
    #[serde(default)]
    pub source_tables: Vec<String>,
    /// `entity_id` is one of these.
    #[serde(default)]
    pub entity_ids: Vec<String>,
    /// `organization_id` is one of these.
    #[serde(default)]
    pub organization_ids: Vec<i64>,
    /// `occurred_at` is at or after this instant (points without `occurred_at` never match).
    #[serde(default)]
    pub date_from: Option<DateTime<Utc>>,
    /// `occurred_at` is at or before this instant (points without `occurred_at` never match).
    #[serde(default)]
    pub date_to: Option<DateTime<Utc>>,
}

impl SearchFilter {
    /// Whether the filter lets every point through.
    pub fn is_empty(&self) -> bool {
        self.to_spec().must.is_empty()
    }

    pub(crate) fn to_spec(&self) -> FilterSpec {
        let mut must = Vec::new();
        if !self.kinds.is_empty() {
            must.push(Cond::Keywords(field::KIND, self.kinds.clone()));
        }
        if !self.source_tables.is_empty() {
            must.push(Cond::Keywords(
                field::SOURCE_TABLE,
                self.source_tables.clone(),
            ));
        }
        if !self.entity_ids.is_empty() {
            must.push(Cond::Keywords(field::ENTITY_ID, self.entity_ids.clone()));
        }
        if !self.organization_ids.is_empty() {
            must.push(Cond::Integers(
                field::ORGANIZATION_ID,
                self.organization_ids.clone(),
            ));
        }
        if self.date_from.is_some() || self.date_to.is_some() {
            must.push(Cond::Datetime {
                key: field::OCCURRED_AT,
                gte: self.date_from,
                lte: self.date_to,
            });
        }
        FilterSpec { must }
    }
}

/// One search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Which vectors score.
    pub mode: SearchMode,
    /// Dense query embedding (needed by `Dense` and `Hybrid`).
    #[serde(default)]
    pub dense: Option<Vec<f32>>,
    /// Sparse BM25 query vector (needed by `Sparse` and `Hybrid`). An empty one matches
    /// nothing: `Sparse` returns no hit and `Hybrid` ranks by the dense prefetch alone.
    #[serde(default)]
    pub sparse: Option<SparseVector>,
    /// Which points may match.
    #[serde(default)]
    pub filter: SearchFilter,
    /// How many hits (or, for grouped search, source rows) to return: 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// RRF `k` for `Hybrid`: a hit at 0-based rank `r` of a prefetch scores `1 / (k + r)`.
    #[serde(default = "default_rrf_k")]
    pub rrf_k: u32,
    /// Candidates per prefetch for `Hybrid`. Fusion ranks only what the prefetches found,
    /// so at most twice this many hits come back. Grouped search raises it to its window.
    #[serde(default = "default_prefetch_limit")]
    pub prefetch_limit: usize,
}

fn default_rrf_k() -> u32 {
    DEFAULT_RRF_K
}

fn default_prefetch_limit() -> usize {
    DEFAULT_PREFETCH_LIMIT
}

impl SearchRequest {
    /// A dense search with the default parameters.
    pub fn dense(query: Vec<f32>, limit: usize) -> Self {
        Self::new(SearchMode::Dense, Some(query), None, limit)
    }

    /// A sparse (BM25) search with the default parameters.
    pub fn sparse(query: SparseVector, limit: usize) -> Self {
        Self::new(SearchMode::Sparse, None, Some(query), limit)
    }

    /// A hybrid search with the default parameters (`rrf_k` 60).
    pub fn hybrid(dense: Vec<f32>, sparse: SparseVector, limit: usize) -> Self {
        Self::new(SearchMode::Hybrid, Some(dense), Some(sparse), limit)
    }

    fn new(
        mode: SearchMode,
        dense: Option<Vec<f32>>,
        sparse: Option<SparseVector>,
        limit: usize,
    ) -> Self {
        Self {
            mode,
            dense,
            sparse,
            filter: SearchFilter::default(),
            limit,
            rrf_k: DEFAULT_RRF_K,
            prefetch_limit: DEFAULT_PREFETCH_LIMIT,
        }
    }

    /// The same request with a filter.
    pub fn with_filter(mut self, filter: SearchFilter) -> Self {
        self.filter = filter;
        self
    }

    /// The same request with another RRF `k`.
    pub fn with_rrf_k(mut self, rrf_k: u32) -> Self {
        self.rrf_k = rrf_k;
        self
    }

    /// The same request with another prefetch limit.
    pub fn with_prefetch_limit(mut self, prefetch_limit: usize) -> Self {
        self.prefetch_limit = prefetch_limit;
        self
    }
}

/// One scored chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The point.
    pub id: ChunkId,
    /// Cosine similarity (dense), BM25 score (sparse) or RRF score (hybrid).
    pub score: f32,
    /// Its payload.
    pub payload: ChunkPayload,
}

/// One page of a scroll through the collection, in point-id order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrollRequest {
    /// Which points to list.
    #[serde(default)]
    pub filter: SearchFilter,
    /// Page size: 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Start at this id (the previous page's `next_offset`); `None` starts at the beginning.
    #[serde(default)]
    pub offset: Option<ChunkId>,
    /// Return the vectors too.
    #[serde(default)]
    pub with_vectors: bool,
}

/// A page of points and where the next page starts.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrollPage {
    /// The points, in id order.
    pub points: Vec<StoredPoint>,
    /// The first id of the next page; `None` when this was the last page.
    pub next_offset: Option<ChunkId>,
}

/// Which points a payload update applies to.
#[derive(Clone, Debug, PartialEq)]
pub enum PointSelector {
    /// These points.
    Ids(Vec<ChunkId>),
    /// Every chunk of these rows of one table.
    SourceRows {
        /// The table.
        source_table: String,
        /// The rows.
        source_ids: Vec<i64>,
    },
}

/// What the index holds.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexInfo {
    /// Which engine.
    pub engine: EngineKind,
    /// The collection.
    pub collection: String,
    /// Number of points (exact).
    pub points_count: u64,
    /// Qdrant's `indexed_vectors_count`: vectors of all kinds held in an index
    /// structure. A sparse vector counts from insertion (the inverted index is built as
    /// points arrive); a dense one only once its segment has an HNSW graph. Dense vectors
    /// outside HNSW graphs are searched exhaustively.
    pub indexed_vectors_count: u64,
    /// Number of segments.
    pub segments_count: u64,
    /// Size of the dense vectors.
    pub dense_dim: usize,
    /// Payload indexes present, by field.
    pub payload_indexes: Vec<(String, PayloadIndexKind)>,
}

/// What an optimisation pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptimizeOutcome {
    /// Whether any segment was rebuilt (merged, vacuumed or given an HNSW index).
    pub optimized: bool,
    /// Segments before and after.
    pub segments_before: u64,
    /// Segments after.
    pub segments_after: u64,
    /// [`IndexInfo::indexed_vectors_count`] after the pass.
    pub indexed_vectors_count: u64,
}

/// A filter both engines translate: all conditions must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FilterSpec {
    pub(crate) must: Vec<Cond>,
}

/// One condition of a [`FilterSpec`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cond {
    /// The keyword field equals one of the values.
    Keywords(&'static str, Vec<String>),
    /// The integer field equals one of the values.
    Integers(&'static str, Vec<i64>),
    /// The integer field is at least this value.
    IntegerAtLeast(&'static str, i64),
    /// The date-time field lies in the inclusive range.
    Datetime {
        key: &'static str,
        gte: Option<DateTime<Utc>>,
        lte: Option<DateTime<Utc>>,
    },
}

impl FilterSpec {
    /// Every chunk of the given rows of one table.
    pub(crate) fn source_rows(source_table: &str, source_ids: &[i64]) -> Self {
        Self {
            must: vec![
                Cond::Keywords(field::SOURCE_TABLE, vec![source_table.to_owned()]),
                Cond::Integers(field::SOURCE_ID, source_ids.to_vec()),
            ],
        }
    }
}
