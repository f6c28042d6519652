//! Shared helpers: an engine harness and builders of points with known geometry.

use std::time::{SystemTime, UNIX_EPOCH};

use index_qdrant::{
    ApiKey, ChunkPayload, ChunkPoint, CollectionSpec, Index, IndexConfig, SparseVector,
};
use tempfile::TempDir;

/// Dense size used by most tests.
pub(crate) const DIM: usize = 8;

/// One engine under test, with a fresh collection.
pub(crate) struct Harness {
    pub(crate) index: Index,
    /// Keeps the embedded engine's directory alive.
    pub(crate) dir: Option<TempDir>,
    /// Shards of the collections the test creates (embedded engine).
    pub(crate) shards: usize,
}

impl Harness {
    /// The embedded engine in a new temporary directory.
    pub(crate) async fn embedded() -> Self {
        Self::embedded_sharded(1).await
    }

    /// The embedded engine in a new temporary directory, its collections made of
    /// `shards` shards.
    pub(crate) async fn embedded_sharded(shards: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(IndexConfig::embedded(dir.path()))
            .await
            .unwrap();
        Self {
            index,
            dir: Some(dir),
            shards,
        }
    }

    /// The spec of a collection of `dense_dim` dimensions for this harness.
    pub(crate) fn spec(&self, dense_dim: usize) -> CollectionSpec {
        CollectionSpec {
            shards: self.shards,
            ..CollectionSpec::new(dense_dim)
        }
    }

    /// The server at `QDRANT_URL` with a collection of its own, or `None` (after saying
    /// so on stderr) when `QDRANT_URL` is not set.
    #[allow(clippy::print_stderr)] // the skip notice the suite promises, on stderr
    pub(crate) async fn server(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("QDRANT_URL") else {
            eprintln!("skipped: QDRANT_URL not set (server variant of {test})");
            return None;
        };
        let api_key = std::env::var("QDRANT_API_KEY").ok().map(ApiKey::new);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let collection = format!("it_{test}_{}_{nanos}", std::process::id());
        let config = IndexConfig::server(url, api_key).with_collection(collection);
        let index = Index::open(config).await.unwrap();
        Some(Self {
            index,
            dir: None,
            shards: 1,
        })
    }

    /// Drops the server collection a test made.
    pub(crate) async fn cleanup(&self) {
        if self.dir.is_none() {
            self.index.drop_collection().await.unwrap();
        }
    }

    /// Creates the collection with [`DIM`] dimensions.
    pub(crate) async fn create(&self) {
        self.index
            .ensure_collection(&self.spec(DIM), false)
            .await
            .unwrap();
    }
}

/// A payload with every required field filled in.
pub(crate) fn payload(table: &str, source_id: i64, chunk_index: u32) -> ChunkPayload {
    ChunkPayload {
        source_table: table.to_owned(),
        source_id,
        chunk_index,
        entity_id: Some(format!("{}:{source_id}", kind_of(table))),
        kind: kind_of(table).to_owned(),
        title: format!("{table} {source_id}"),
        text: format!("chunk {chunk_index} of {table} row {source_id}"),
        organization_id: None,
        occurred_at: None,
        updated_at: "2026-06-05T13:55:12Z".to_owned(),
        content_hash: format!("hash-{table}-{source_id}"),
        extra: Default::default(),
    }
}

fn kind_of(table: &str) -> &'static str {
    match table {
        "people" => "person",
        "organizations" => "organization",
        "interactions" => "meeting",
        _ => "deal",
    }
}

/// A unit vector in the plane of the first two axes with cosine `cos` to axis 0.
pub(crate) fn at_cosine(cos: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[0] = cos;
    v[1] = (1.0 - cos * cos).max(0.0).sqrt();
    v
}

/// A vector that differs for every `(seed)`, never zero, spread over all axes.
pub(crate) fn spread(seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..DIM)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5 + 1e-3
        })
        .collect()
}

/// A sparse vector from `(index, weight)` pairs.
pub(crate) fn sparse(pairs: &[(u32, f32)]) -> SparseVector {
    SparseVector::new(
        pairs.iter().map(|p| p.0).collect(),
        pairs.iter().map(|p| p.1).collect(),
    )
}

/// A point of `table`/`source_id`/`chunk` with the given vectors and the default payload.
pub(crate) fn point(
    table: &str,
    source_id: i64,
    chunk: u32,
    dense: Vec<f32>,
    sparse: SparseVector,
) -> ChunkPoint {
    ChunkPoint::new(dense, sparse, payload(table, source_id, chunk))
}

/// `n` points of table `people` with distinct vectors and a shared common token 7.
pub(crate) fn people(n: i64) -> Vec<ChunkPoint> {
    (0..n)
        .map(|id| {
            point(
                "people",
                id,
                0,
                spread(id as u64),
                sparse(&[(7, 1.0), (1000 + id as u32, 0.5)]),
            )
        })
        .collect()
}

/// Unit-normalises a vector the way cosine storage does.
pub(crate) fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}
