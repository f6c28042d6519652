//! Shared by the `crm-sync` / `crm-backfill` process tests: a synthetic CRM file, the
//! instant embeddings server, a settings file, child processes with a clean environment,
//! and in-process access to the same index for checks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use crm_store::synthetic::{self, SyntheticConfig};
use crm_substrate::embedding::embedder_from_settings;
use crm_substrate::indexing::{open_indexer, open_store, sync_config};
use crm_substrate::settings::{Settings, Sources};
use embed::testing::{INSTANT_MODEL, InstantEmbeddingServer, InstantServerConfig};
use index_qdrant::{ChunkId, ChunkPayload, Index, IndexConfig, ScrollRequest, SparseVector};
use sync_watermark::{Encoder, Indexer, NoProgress, VerifyReport};
use tempfile::TempDir;

pub(crate) const SYNC: &str = env!("CARGO_BIN_EXE_crm-sync");
pub(crate) const BACKFILL: &str = env!("CARGO_BIN_EXE_crm-backfill");

/// A CRM, an embeddings server and a settings file pointing the binaries at both.
pub(crate) struct Env {
    pub(crate) dir: TempDir,
    pub(crate) db: PathBuf,
    pub(crate) index_dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) server: InstantEmbeddingServer,
}

/// A temporary directory in memory when the machine has `/dev/shm` (the index engine
/// syncs its files on every write; on a busy disk that only makes tests slow).
pub(crate) fn scratch_dir() -> TempDir {
    let shm = Path::new("/dev/shm");
    let mut builder = tempfile::Builder::new();
    builder.prefix("sync-cli-");
    if shm.is_dir() {
        builder.tempdir_in(shm).expect("tempdir in /dev/shm")
    } else {
        builder.tempdir().expect("tempdir")
    }
}

impl Env {
    /// A synthetic CRM of about `people * 1.32` rows (messy rows and a 1 MB note
    /// included), batches of `batch_size` rows.
    pub(crate) fn new(people: u64, batch_size: u32) -> Self {
        Self::with_shards(people, batch_size, 1)
    }

    /// [`Env::new`], with an embedded collection of `shards` shards.
    pub(crate) fn with_shards(people: u64, batch_size: u32, shards: u32) -> Self {
        let dir = scratch_dir();
        let db = dir.path().join("crm.db");
        synthetic::generate(
            &db,
            &SyntheticConfig {
                people,
                organizations: (people / 10).max(2),
                interactions: (people / 5).max(2),
                deals: (people / 50).max(1),
                ..SyntheticConfig::default()
            },
            &mut |_| {},
        )
        .expect("generate");
        let server =
            InstantEmbeddingServer::start_background(InstantServerConfig::new(16)).expect("server");
        let index_dir = dir.path().join("crm.index");
        let config = dir.path().join("settings.json");
        let settings = serde_json::json!({
            "db_path": db,
            "qdrant": { "embedded_dir": index_dir, "embedded_shards": shards },
            "spark_control": {
                "url": server.url(),
                "embedding_model": INSTANT_MODEL,
                "max_retries": 0,
            },
            "sync": { "batch_size": batch_size, "overlap_secs": 2 },
            "log": { "format": "json" },
        });
        std::fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
        Self {
            dir,
            db,
            index_dir,
            config,
            server,
        }
    }

    /// A child process of `bin` with only these settings (nothing from the caller's
    /// environment), run in the temporary directory.
    pub(crate) fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("HOME", self.dir.path())
            .env("RUST_LOG", "info")
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args);
        cmd
    }

    /// Runs `bin` to the end, with the test fault hook set when `fault` is given.
    pub(crate) fn run(&self, bin: &str, args: &[&str], fault: Option<&str>) -> Output {
        let mut cmd = self.command(bin, args);
        if let Some(fault) = fault {
            cmd.env("CRM_SYNC_FAULT", fault);
        }
        cmd.output().expect("run child")
    }

    /// The settings the binaries load.
    pub(crate) fn settings(&self) -> Settings {
        Settings::load(&Sources {
            config_file: Some(self.config.clone()),
            ..Sources::default()
        })
        .expect("settings")
    }

    /// A plain connection to the CRM, as the CRM itself would write (no foreign keys).
    pub(crate) fn crm(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.pragma_update(None, "foreign_keys", "OFF").unwrap();
        conn
    }

    /// Verifies in this process, with the binaries' own settings (the children must
    /// have exited: the embedded index is one process at a time).
    pub(crate) fn verify(&self, runtime: &tokio::runtime::Runtime) -> VerifyReport {
        runtime.block_on(async {
            let indexer = self.indexer().await;
            indexer.verify_listing(usize::MAX).await.expect("verify")
        })
    }

    /// An indexer like the binaries build.
    pub(crate) async fn indexer(&self) -> Indexer {
        let settings = self.settings();
        let env = BTreeMap::new();
        let embedder = embedder_from_settings(&settings, &env).expect("embedder");
        let encoder = Arc::new(Encoder::new(Arc::new(embedder)).await.expect("encoder"));
        let store = open_store(&settings).expect("store");
        let config = sync_config(&settings, &env, "test").expect("config");
        open_indexer(
            &settings,
            &store,
            &encoder,
            config,
            Arc::new(NoProgress),
            false,
        )
        .await
        .expect("indexer")
    }
}

/// Whether the child was killed by SIGABRT (the fault hook) or SIGKILL.
pub(crate) fn crashed(out: &Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    matches!(out.status.signal(), Some(6 | 9))
}

/// The last JSON line of a child's stdout.
pub(crate) fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no JSON summary (status {:?}); stderr:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("summary is JSON")
}

/// One point as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PointState {
    pub(crate) payload: ChunkPayload,
    pub(crate) dense: Vec<f32>,
    pub(crate) sparse: SparseVector,
}

/// Every point of the embedded index at `dir`, collection `collection`, with vectors.
pub(crate) async fn snapshot(dir: &Path, collection: &str) -> BTreeMap<ChunkId, PointState> {
    let index = Index::open(IndexConfig::embedded(dir).with_collection(collection))
        .await
        .expect("open index");
    let mut out = BTreeMap::new();
    let mut offset = None;
    loop {
        let page = index
            .scroll(&ScrollRequest {
                limit: 1000,
                offset,
                with_vectors: true,
                ..ScrollRequest::default()
            })
            .await
            .expect("scroll");
        for point in page.points {
            let vectors = point.vectors.expect("vectors");
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

/// Builds the CRM afresh into another index directory with `crm-backfill --recreate` and
/// asserts the index of `env` holds exactly the same points (ids, payloads, vectors).
pub(crate) fn assert_same_as_fresh_build(env: &Env, runtime: &tokio::runtime::Runtime) {
    let fresh_dir = env.dir.path().join("fresh.index");
    let fresh_config = env.dir.path().join("fresh.json");
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env.config).unwrap()).unwrap();
    settings["qdrant"]["embedded_dir"] = serde_json::json!(fresh_dir);
    settings["qdrant"]["collection"] = serde_json::json!("fresh");
    std::fs::write(&fresh_config, serde_json::to_vec(&settings).unwrap()).unwrap();
    let out = Command::new(BACKFILL)
        .env_clear()
        .env("HOME", env.dir.path())
        .current_dir(env.dir.path())
        .arg("--config")
        .arg(&fresh_config)
        .args(["--recreate", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "fresh build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (got, want) = runtime.block_on(async {
        (
            snapshot(&env.index_dir, "crm_chunks").await,
            snapshot(&fresh_dir, "fresh").await,
        )
    });
    let mut problems = Vec::new();
    for (id, w) in &want {
        match got.get(id) {
            None => problems.push(format!(
                "missing {}:{}:{}",
                w.payload.source_table, w.payload.source_id, w.payload.chunk_index
            )),
            Some(g) if g != w => problems.push(format!(
                "differs {}:{}:{}",
                w.payload.source_table, w.payload.source_id, w.payload.chunk_index
            )),
            Some(_) => {}
        }
    }
    for (id, g) in &got {
        if !want.contains_key(id) {
            problems.push(format!(
                "extra {}:{}:{}",
                g.payload.source_table, g.payload.source_id, g.payload.chunk_index
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} difference(s) from a fresh build: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    assert!(!want.is_empty());
}
