//! A small CRM, an embedded index of its rows (sparse vectors from BM25, placeholder
//! dense vectors), and an in-process client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_store::{Store, StoreConfig};
use embed::{Bm25Config, Bm25Encoder};
use index_qdrant::{ChunkPayload, ChunkPoint, CollectionSpec, Index, IndexConfig, SparseVector};
use mcp_tools::{CrmTools, SearchBackend, SearchConfig, ToolsConfig};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tempfile::TempDir;

pub(crate) const DIM: usize = 4;

pub(crate) struct Crm {
    _dir: TempDir,
    pub(crate) db: PathBuf,
    pub(crate) index_dir: PathBuf,
}

impl Crm {
    /// Ten people whose bios mention orbital mechanics; their rows indexed.
    pub(crate) async fn with_index() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("crm.db");
        let index_dir = dir.path().join("crm.db.index");
        let mut config = StoreConfig::new(&db);
        config.create_if_missing = true;
        let store = Store::open(config).unwrap();
        let conn = store.writer().unwrap();
        let t = "2026-01-01T00:00:00.000Z";
        for id in 1..=10i64 {
            conn.execute(
                "INSERT INTO people (id, full_name, bio, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                rusqlite::params![id, format!("Person {id}"), format!("Works on orbital mechanics, case {id}."), t],
            )
            .unwrap();
        }
        drop(conn);
        let bm25 = Bm25Encoder::new(Bm25Config::default()).unwrap();
        let index = Index::open(IndexConfig::embedded(&index_dir))
            .await
            .unwrap();
        index
            .ensure_collection(&CollectionSpec::new(DIM), false)
            .await
            .unwrap();
        let points = (1..=10i64)
            .map(|id| {
                let text = format!("Person {id}\nWorks on orbital mechanics, case {id}.");
                let sparse = bm25.document(&text);
                ChunkPoint::new(
                    vec![1.0, 0.0, 0.0, id as f32 / 10.0],
                    SparseVector::new(sparse.indices, sparse.values),
                    ChunkPayload {
                        source_table: "people".into(),
                        source_id: id,
                        chunk_index: 0,
                        entity_id: None,
                        kind: "person".into(),
                        title: format!("Person {id}"),
                        text,
                        organization_id: None,
                        occurred_at: None,
                        updated_at: t.into(),
                        content_hash: format!("hash-{id}"),
                        extra: Default::default(),
                    },
                )
            })
            .collect();
        index.upsert(points).await.unwrap();
        drop(index);
        Self {
            _dir: dir,
            db,
            index_dir,
        }
    }
}

pub(crate) type Client = RunningService<RoleClient, ClientConfig>;

/// Serves `CrmTools` (sparse-only search, the index released after `idle`) to an
/// in-process client.
pub(crate) async fn serve(crm: &Crm, idle: Duration) -> Client {
    let store = Store::open(StoreConfig::new(&crm.db)).unwrap();
    let mut search = SearchConfig::new(IndexConfig::embedded(&crm.index_dir));
    search.release_after_idle = Some(idle);
    let backend =
        SearchBackend::new(search, Err("no embedding model in this test".into())).unwrap();
    let tools = CrmTools::with_search(store, ToolsConfig::default(), backend).unwrap();
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let running = tools.serve(server_io).await.unwrap();
        let _ = running.waiting().await;
    });
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("it", "1.0"),
    )
    .serve(client_io)
    .await
    .unwrap()
}

pub(crate) async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(map) = args else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(map))
        .await
        .unwrap()
}

pub(crate) fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Opens the embedded index, retrying until `deadline` while another handle holds it.
pub(crate) async fn open_within(dir: &Path, deadline: Duration) -> Arc<Index> {
    let until = Instant::now() + deadline;
    loop {
        match Index::open(IndexConfig::embedded(dir)).await {
            Ok(index) => return Arc::new(index),
            Err(index_qdrant::IndexError::Locked { .. }) if Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("the index never became free: {e}"),
        }
    }
}
