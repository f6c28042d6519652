//! Shared helpers: a real CRM file, the instant embeddings server, embedded indexes,
//! and a direct SQL writer playing the CRM (and the entity resolver).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crm_store::rusqlite::{self, Connection, params};
use crm_store::{Store, StoreConfig, Timestamp};
use embed::dense::{DenseEmbedder, SparkEmbedder, SparkEmbedderConfig};
use embed::http::{HttpClient, HttpClientConfig};
use embed::testing::{INSTANT_MODEL, InstantEmbeddingServer, InstantServerConfig};
use embed::{Bm25Config, ChunkerConfig, Embedder};
use index_qdrant::{ChunkId, ChunkPayload, Index, IndexConfig, ScrollRequest, SparseVector};
use sync_watermark::{Encoder, Indexer, LeaseConfig, NoProgress, ProgressSink, SyncConfig};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Dimension of the test vectors.
pub(crate) const DIM: usize = 24;

/// Host name the tests' leases claim.
pub(crate) const HOST: &str = "test-host";

/// A CRM file, an embeddings server and an encoder over it.
pub(crate) struct Harness {
    pub(crate) dir: TempDir,
    pub(crate) db: PathBuf,
    pub(crate) store: Store,
    pub(crate) server: InstantEmbeddingServer,
    pub(crate) encoder: Arc<Encoder>,
}

/// A temporary directory, in memory when the machine has `/dev/shm`: the index engine
/// syncs its files on every write, which on a busy disk makes tests slow, not different.
pub(crate) fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("sync-it-").clone();
    if shm.is_dir() {
        builder.tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        builder.tempdir().expect("tempdir")
    }
}

/// Small chunks, so that ordinary test documents have several.
pub(crate) fn small_chunks() -> ChunkerConfig {
    ChunkerConfig {
        max_tokens: 40,
        overlap_tokens: 8,
        max_title_tokens: 12,
    }
}

/// An embedder over the instant server at `url`, without retries (failures show at once).
pub(crate) async fn embedder(url: &str, chunks: ChunkerConfig) -> Arc<Embedder> {
    let mut http = HttpClientConfig::new(url);
    http.max_retries = 0;
    http.request_timeout = Duration::from_secs(20);
    let http = HttpClient::new(http).expect("http client");
    let mut spark = SparkEmbedderConfig::new(INSTANT_MODEL);
    spark.max_batch_inputs = 16;
    let dense = DenseEmbedder::Remote(SparkEmbedder::new(http, spark).expect("spark embedder"));
    Arc::new(Embedder::new(dense, chunks, Bm25Config::default()).expect("embedder"))
}

impl Harness {
    pub(crate) async fn new() -> Self {
        Self::with_chunks(small_chunks()).await
    }

    pub(crate) async fn with_chunks(chunks: ChunkerConfig) -> Self {
        let dir = scratch_dir();
        let db = dir.path().join("crm.db");
        let mut config = StoreConfig::new(&db);
        config.create_if_missing = true;
        let store = Store::open(config).expect("store");
        let server = InstantEmbeddingServer::start(InstantServerConfig::new(DIM))
            .await
            .expect("server");
        let embedder = embedder(server.url(), chunks).await;
        let encoder = Arc::new(Encoder::new(embedder).await.expect("encoder"));
        Self {
            dir,
            db,
            store,
            server,
            encoder,
        }
    }

    /// A fresh embedded index directory under the harness's temporary directory.
    pub(crate) fn index_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An indexer of collection `collection` in the embedded index at `dir`.
    pub(crate) async fn indexer(
        &self,
        dir: &Path,
        collection: &str,
        config: SyncConfig,
    ) -> Indexer {
        self.indexer_with(
            dir,
            collection,
            config,
            self.encoder.clone(),
            Arc::new(NoProgress),
        )
        .await
    }

    /// The usual indexer (collection `crm_chunks` in `main`, [`sync_config`]) reporting
    /// its progress to `progress`.
    pub(crate) async fn indexer_reporting(&self, progress: Arc<dyn ProgressSink>) -> Indexer {
        self.indexer_with(
            &self.index_dir("main"),
            "crm_chunks",
            sync_config(),
            self.encoder.clone(),
            progress,
        )
        .await
    }

    pub(crate) async fn indexer_with(
        &self,
        dir: &Path,
        collection: &str,
        config: SyncConfig,
        encoder: Arc<Encoder>,
        progress: Arc<dyn ProgressSink>,
    ) -> Indexer {
        let index = Index::open(IndexConfig::embedded(dir).with_collection(collection))
            .await
            .expect("index");
        Indexer::new(
            self.store.clone(),
            Arc::new(index),
            encoder,
            config,
            progress,
        )
        .expect("indexer")
    }

    /// A plain read-write connection, as the CRM (or the resolver) would hold. Foreign
    /// keys are not enforced, as in many real CRMs: hard deletes leave references dangling.
    pub(crate) fn crm(&self) -> Connection {
        let conn = Connection::open(&self.db).expect("open crm");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy");
        conn.pragma_update(None, "foreign_keys", "OFF")
            .expect("pragma");
        conn
    }
}

/// Batches of 5 rows, 2 s overlap.
pub(crate) fn sync_config() -> SyncConfig {
    let mut config = SyncConfig::new(LeaseConfig::new("test", HOST));
    config.batch_size = 5;
    config.overlap = Duration::from_secs(2);
    // A fresh build of the test CRMs commits in several groups.
    config.flush_every_chunks = 8;
    config
}

/// A token nobody cancels.
pub(crate) fn no_stop() -> CancellationToken {
    CancellationToken::new()
}

/// One point as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PointState {
    pub(crate) payload: ChunkPayload,
    pub(crate) dense: Vec<f32>,
    pub(crate) sparse: SparseVector,
}

/// Every point of an index, with vectors, by id.
pub(crate) async fn snapshot(index: &Index) -> BTreeMap<ChunkId, PointState> {
    let mut out = BTreeMap::new();
    let mut offset = None;
    loop {
        let page = index
            .scroll(&ScrollRequest {
                limit: 500,
                offset,
                with_vectors: true,
                ..ScrollRequest::default()
            })
            .await
            .expect("scroll");
        for point in page.points {
            let vectors = point.vectors.expect("vectors asked for");
            out.insert(
                point.id,
                PointState {
                    payload: point.payload,
                    dense: vectors.dense,
                    sparse: vectors.sparse,
                },
            );
        }
        match page.next_offset {
            Some(next) => offset = Some(next),
            None => return out,
        }
    }
}

/// Asserts two snapshots hold the same ids, payloads and vectors, naming the first
/// differences.
pub(crate) fn assert_same_points(
    got: &BTreeMap<ChunkId, PointState>,
    want: &BTreeMap<ChunkId, PointState>,
    context: &str,
) {
    let mut problems = Vec::new();
    for (id, w) in want {
        match got.get(id) {
            None => problems.push(format!(
                "missing {}:{}:{}",
                w.payload.source_table, w.payload.source_id, w.payload.chunk_index
            )),
            Some(g) if g != w => problems.push(format!(
                "differs {}:{}:{}\n  got  {:?}\n  want {:?}",
                w.payload.source_table,
                w.payload.source_id,
                w.payload.chunk_index,
                g.payload,
                w.payload
            )),
            Some(_) => {}
        }
    }
    for (id, g) in got {
        if !want.contains_key(id) {
            problems.push(format!(
                "extra {}:{}:{}",
                g.payload.source_table, g.payload.source_id, g.payload.chunk_index
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{context}: {} difference(s), first ones:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Timestamp text as the CRM writes it: canonical with milliseconds, or SQLite's
/// `CURRENT_TIMESTAMP` form (seconds only).
pub(crate) fn stamp(at: Timestamp, current_timestamp_format: bool) -> String {
    if current_timestamp_format {
        let text = at.to_canonical();
        format!("{} {}", &text[..10], &text[11..19])
    } else {
        at.to_canonical()
    }
}

/// Inserts an organisation.
pub(crate) fn insert_org(conn: &Connection, id: i64, name: &str, description: &str, at: &str) {
    conn.execute(
        "INSERT INTO organizations (id, name, kind, domain, description, created_at, updated_at) \
         VALUES (?1, ?2, 'startup', ?3, ?4, ?5, ?5)",
        params![id, name, format!("org{id}.example"), description, at],
    )
    .expect("insert org");
}

/// Inserts a person.
pub(crate) fn insert_person(
    conn: &Connection,
    id: i64,
    name: &str,
    org: Option<i64>,
    bio: &str,
    at: &str,
) {
    conn.execute(
        "INSERT INTO people (id, full_name, email, title, organization_id, bio, created_at, updated_at) \
         VALUES (?1, ?2, ?3, 'Partner', ?4, ?5, ?6, ?6)",
        params![id, name, format!("p{id}@example.com"), org, bio, at],
    )
    .expect("insert person");
}

/// Inserts an interaction with participants.
pub(crate) fn insert_interaction(
    conn: &Connection,
    id: i64,
    org: Option<i64>,
    people: &[i64],
    body: &str,
    at: &str,
) {
    conn.execute(
        "INSERT INTO interactions (id, kind, occurred_at, subject, body, organization_id, created_at, updated_at) \
         VALUES (?1, 'meeting', ?2, ?3, ?4, ?5, ?2, ?2)",
        params![id, at, format!("Meeting {id}"), body, org],
    )
    .expect("insert interaction");
    for p in people {
        conn.execute(
            "INSERT OR IGNORE INTO interaction_people (interaction_id, person_id) VALUES (?1, ?2)",
            params![id, p],
        )
        .expect("insert participant");
    }
}

/// Inserts a deal.
pub(crate) fn insert_deal(conn: &Connection, id: i64, org: Option<i64>, notes: &str, at: &str) {
    conn.execute(
        "INSERT INTO deals (id, organization_id, name, stage, amount_usd, notes, created_at, updated_at) \
         VALUES (?1, ?2, ?3, 'diligence', 1000000, ?4, ?5, ?5)",
        params![id, org, format!("Deal {id}"), notes, at],
    )
    .expect("insert deal");
}

/// Creates entity `entity_id` of `kind` and links the given rows of `table` to it, as the
/// resolver would.
pub(crate) fn link(
    conn: &Connection,
    kind: &str,
    table: &str,
    entity_id: &str,
    ids: &[i64],
    at: &str,
) {
    conn.execute(
        "INSERT OR IGNORE INTO entities (entity_id, kind, display_name, created_at, updated_at) \
         VALUES (?1, ?2, ?1, ?3, ?3)",
        params![entity_id, kind, at],
    )
    .expect("insert entity");
    for id in ids {
        conn.execute(
            "INSERT INTO entity_links (source_table, source_id, entity_id, rule, linked_at) \
             VALUES (?1, ?2, ?3, 'test', ?4) \
             ON CONFLICT (source_table, source_id) DO UPDATE SET entity_id = excluded.entity_id, \
             linked_at = excluded.linked_at",
            params![table, id, entity_id, at],
        )
        .expect("link");
    }
}

/// Runs `f` with the error type of rusqlite, for brevity in tests.
pub(crate) fn exec(conn: &Connection, sql: &str, args: impl rusqlite::Params) {
    conn.execute(sql, args)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}
