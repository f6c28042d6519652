//! `crm-bench mcp`: MCP round trips over stdio, as an agent sees them.
//!
//! An rmcp client spawns the `crm-mcp` binary that sits beside `crm-bench` (build both in
//! the same profile: `cargo build --profile bench --bin crm-bench --bin crm-mcp`) and
//! times whole `tools/call` round trips: request written to the child's stdin, answer
//! parsed from its stdout.
//!
//! - **get**: `get_person` on random live people of a synthetic CRM, beside the SQLite
//!   floor (the same row read in-process with `queries::row_by_id`). Target: p50 ≤ 2 ms.
//! - **search**: `search` in hybrid, sparse and dense mode over an embedded index of at
//!   least `--chunks` chunks built by `sync_watermark`'s backfill. The server embeds
//!   queries with the instant embeddings server (`embed::testing`, microseconds per
//!   query), so the figures exclude query embedding; the peer is the same hybrid query
//!   run in-process on `index_qdrant::Index::search_grouped`. Target: hybrid p50 ≤ 15 ms.
//! - **embed**: what query embedding adds with the embedded model (all-MiniLM-L6-v2 on
//!   candle), `embed_query` p50/p99, reported separately.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use crm_store::synthetic::{SyntheticConfig, generate};
use crm_store::{Person, Store, StoreConfig, queries};
use rand::seq::IndexedRandom as _;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{Value, json};

use super::{BenchContext, Report, ms, percentile};
use crate::embedding::embedder_from_settings;
use crate::settings::Settings;

/// Parts of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// `get_person` round trips.
    Get,
    /// `search` round trips at `--chunks` indexed chunks.
    Search,
    /// Query embedding with the embedded model.
    Embed,
}

/// Flags of `crm-bench mcp`.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    /// People in the synthetic CRM of the `get` part.
    #[arg(long, default_value_t = 20_000)]
    pub people: u64,
    /// Timed calls per measure (after as many warm-up calls as a tenth of this).
    #[arg(long, default_value_t = 2_000)]
    pub calls: usize,
    /// Chunks the `search` part's index must hold at least.
    #[arg(long, default_value_t = 100_000)]
    pub chunks: u64,
    /// Timed searches per mode.
    #[arg(long, default_value_t = 500)]
    pub searches: usize,
    /// Parts to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "get,search,embed"
    )]
    pub parts: Vec<Part>,
    /// The `crm-mcp` binary (default: beside `crm-bench`).
    #[arg(long, value_name = "PATH")]
    pub server: Option<PathBuf>,
}

/// Runs the suite.
pub fn run(ctx: &BenchContext, args: &McpArgs) -> anyhow::Result<Vec<Report>> {
    ensure!(
        args.calls > 0 && args.searches > 0,
        "call counts must be at least 1"
    );
    let server = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .context("finding crm-bench's own path")?
            .with_file_name("crm-mcp"),
    };
    ensure!(
        server.is_file(),
        "{} does not exist: build it in the same profile as crm-bench \
         (cargo build --profile bench --bin crm-bench --bin crm-mcp) or pass --server",
        server.display()
    );
    let runtime = super::runtime()?;
    let mut report = Report::new(
        "mcp",
        &["measure", "crm-substrate", "peer", "ratio", "target"],
    );
    for part in &args.parts {
        match part {
            Part::Get => runtime.block_on(get(ctx, args, &server, &mut report))?,
            Part::Search => runtime.block_on(search(ctx, args, &server, &mut report))?,
            Part::Embed => runtime.block_on(embed_queries(ctx, args, &mut report))?,
        }
    }
    Ok(vec![report])
}

type Client = RunningService<RoleClient, ClientConfig>;

/// Spawns `crm-mcp` over stdio with a clean environment plus `env`.
async fn connect(
    server: &Path,
    dir: &Path,
    args: &[&str],
    env: &[(&str, String)],
) -> anyhow::Result<Client> {
    let mut cmd = tokio::process::Command::new(server);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .current_dir(dir)
        .args(args)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", server.display()))?;
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("crm-bench", env!("CARGO_PKG_VERSION")),
    );
    config
        .serve(transport)
        .await
        .context("MCP handshake with crm-mcp")
}

/// One timed `tools/call`; fails on a tool error.
async fn timed_call(client: &Client, tool: &str, args: Value) -> anyhow::Result<(Duration, Value)> {
    let Value::Object(map) = args else {
        bail!("tool arguments must be an object");
    };
    let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(map);
    let started = Instant::now();
    let result = client.call_tool(params).await?;
    let took = started.elapsed();
    if result.is_error == Some(true) {
        let text: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        bail!("{tool} failed: {}", text.join(" "));
    }
    Ok((took, result.structured_content.unwrap_or(Value::Null)))
}

fn p(samples: &mut [Duration], pct: f64) -> Duration {
    percentile(samples, pct).unwrap_or_default()
}

async fn get(
    ctx: &BenchContext,
    args: &McpArgs,
    server: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let db = ctx.work_dir.join(format!("mcp-get-{}.db", args.people));
    if !db.exists() {
        let config = SyntheticConfig {
            people: args.people,
            organizations: (args.people / 10).max(10),
            interactions: args.people * 2,
            deals: (args.people / 20).max(10),
            ..SyntheticConfig::default()
        };
        generate(&db, &config, &mut |_| {}).context("generating the benchmark CRM")?;
    }
    let store = Store::open(StoreConfig::new(&db))?;
    let ids: Vec<i64> = {
        let conn = store.reader()?;
        let mut stmt = conn.prepare(
            "SELECT id FROM people WHERE NULLIF(TRIM(deleted_at), '') IS NULL ORDER BY id",
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    ensure!(!ids.is_empty(), "the benchmark CRM has no live people");
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let sample: Vec<i64> = (0..args.calls)
        .map(|_| ids.choose(&mut rng).copied().unwrap_or(ids[0]))
        .collect();

    // The SQLite floor: the same row read in-process.
    let floor = {
        let conn = store.reader()?;
        let mut samples = Vec::with_capacity(sample.len());
        for id in &sample {
            let started = Instant::now();
            let row: Option<Person> = queries::row_by_id(&conn, *id)?;
            samples.push(started.elapsed());
            ensure!(row.is_some(), "person {id} vanished");
        }
        samples
    };
    drop(store);

    let dir = db.parent().unwrap_or(Path::new("."));
    let db_arg = db.display().to_string();
    let client = connect(server, dir, &["--db", &db_arg], &[]).await?;
    for id in sample.iter().take((args.calls / 10).max(1)) {
        timed_call(&client, "get_person", json!({ "id": id })).await?;
    }
    let mut samples = Vec::with_capacity(sample.len());
    let mut bytes = 0usize;
    for id in &sample {
        let (took, answer) = timed_call(&client, "get_person", json!({ "id": id })).await?;
        bytes += answer.to_string().len();
        samples.push(took);
    }
    client.cancel().await.ok();

    let mut floor = floor;
    let (p50, p99) = (p(&mut samples, 50.0), p(&mut samples, 99.0));
    let (f50, f99) = (p(&mut floor, 50.0), p(&mut floor, 99.0));
    let ratio = |a: Duration, b: Duration| {
        if b.is_zero() {
            0.0
        } else {
            a.as_secs_f64() / b.as_secs_f64()
        }
    };
    report.row([
        "get_person round trip p50 (stdio)".to_owned(),
        format!("{:.3} ms", ms(p50)),
        format!("{:.3} ms (SQLite row read)", ms(f50)),
        format!("{:.1}×", ratio(p50, f50)),
        "≤ 2 ms".to_owned(),
    ]);
    report.row([
        "get_person round trip p99 (stdio)".to_owned(),
        format!("{:.3} ms", ms(p99)),
        format!("{:.3} ms (SQLite row read)", ms(f99)),
        format!("{:.1}×", ratio(p99, f99)),
        String::new(),
    ]);
    report.figure("get_person_calls", samples.len());
    report.figure("get_person_people", args.people);
    report.figure("get_person_p50_ms", ms(p50));
    report.figure("get_person_p99_ms", ms(p99));
    report.figure("sqlite_row_p50_ms", ms(f50));
    report.figure("sqlite_row_p99_ms", ms(f99));
    report.figure("get_person_mean_answer_bytes", bytes / samples.len().max(1));
    report.figure("get_person_target_met", ms(p50) <= 2.0);
    Ok(())
}

/// Query embedding with the embedded model, which the search round trips exclude.
async fn embed_queries(
    ctx: &BenchContext,
    args: &McpArgs,
    report: &mut Report,
) -> anyhow::Result<()> {
    use embed::dense::{LocalBertEmbedder, LocalModelConfig};
    let dir = ctx.settings.local_model_dir(&ctx.env);
    let model =
        tokio::task::block_in_place(|| LocalBertEmbedder::load(LocalModelConfig::new(&dir)))
            .with_context(|| {
                format!(
                    "loading the local model from {} (run scripts/fetch-model.sh)",
                    dir.display()
                )
            })?;
    let queries = sample_queries(args.searches);
    for q in queries.iter().take(20) {
        model.embed_query(q).await?;
    }
    let mut samples = Vec::with_capacity(queries.len());
    for q in &queries {
        let started = Instant::now();
        model.embed_query(q).await?;
        samples.push(started.elapsed());
    }
    let (p50, p99) = (p(&mut samples, 50.0), p(&mut samples, 99.0));
    report.row([
        format!("query embedding p50 ({})", model.model_id()),
        format!("{:.3} ms", ms(p50)),
        String::new(),
        String::new(),
        "reported separately".to_owned(),
    ]);
    report.row([
        format!("query embedding p99 ({})", model.model_id()),
        format!("{:.3} ms", ms(p99)),
        String::new(),
        String::new(),
        String::new(),
    ]);
    report.figure("query_embed_model", model.model_id());
    report.figure("query_embed_p50_ms", ms(p50));
    report.figure("query_embed_p99_ms", ms(p99));
    Ok(())
}

/// Search queries of the kind agents send: names, topics, a few words.
fn sample_queries(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "custody",
        "lightning",
        "seed round",
        "term sheet",
        "bitcoin mining",
        "follow-up",
        "board meeting",
        "due diligence",
        "founder",
        "Austin",
        "payments",
        "energy",
        "hardware wallet",
        "introduction",
        "pricing",
        "hiring",
        "series A",
        "partnership",
        "compliance",
        "self-custody",
        "treasury",
        "exchange",
        "node",
        "fund",
        "LP update",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let k = rng.random_range(1..=3);
            (0..k)
                .filter_map(|_| WORDS.choose(&mut rng).copied())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Dimension of the instant embeddings (that of all-MiniLM-L6-v2).
const SEARCH_DIM: usize = 384;

async fn search(
    ctx: &BenchContext,
    args: &McpArgs,
    server: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    use embed::testing::{INSTANT_MODEL, InstantEmbeddingServer, InstantServerConfig};
    use index_qdrant::{Index, IndexConfig, SearchRequest, SparseVector};
    use sync_watermark::{Encoder, Indexer, LeaseConfig, NoProgress, SyncConfig};

    let instant = InstantEmbeddingServer::start(InstantServerConfig::new(SEARCH_DIM))
        .await
        .context("starting the instant embeddings server")?;
    let db = ctx.work_dir.join(format!("mcp-search-{}.db", args.chunks));
    let mut settings = Settings {
        db_path: db.clone(),
        ..ctx.settings.clone()
    };
    settings.qdrant.url = None;
    settings.qdrant.embedded_dir = None;
    settings.spark_control.url = Some(instant.url().to_owned());
    settings.spark_control.api_key = None;
    settings.spark_control.embedding_model = INSTANT_MODEL.to_owned();
    let collection = settings.qdrant.collection.clone();
    let index_config =
        IndexConfig::embedded(settings.embedded_index_dir()).with_collection(&collection);
    let embedder = Arc::new(tokio::task::block_in_place(|| {
        embedder_from_settings(&settings, &ctx.env)
    })?);

    // Build the index once per size; later runs with --work-dir reuse it.
    let index = Arc::new(Index::open(index_config.clone()).await?);
    let points = if index.exists().await? {
        index.info().await?.points_count
    } else {
        0
    };
    let built_in = if points < args.chunks {
        if !db.exists() {
            let n = args.chunks;
            let config = SyntheticConfig {
                people: n * 4 / 10,
                organizations: (n / 20).max(10),
                interactions: n / 2,
                deals: (n / 20).max(10),
                ..SyntheticConfig::default()
            };
            generate(&db, &config, &mut |_| {}).context("generating the benchmark CRM")?;
        }
        let started = Instant::now();
        let store = Store::open(StoreConfig::new(&db))?;
        let encoder = Arc::new(Encoder::new(embedder.clone()).await?);
        let indexer = Indexer::new(
            store,
            index.clone(),
            encoder,
            SyncConfig::new(LeaseConfig::new("crm-bench-mcp", "localhost")),
            Arc::new(NoProgress),
        )?;
        let run = indexer
            .backfill(true, &mcp_tools::http::CancellationToken::new())
            .await?;
        if let Some(error) = run.error {
            bail!("building the benchmark index failed: {error}");
        }
        drop(indexer);
        index.optimize().await?;
        Some(started.elapsed())
    } else {
        None
    };
    let info = index.info().await?;
    ensure!(
        info.points_count >= args.chunks,
        "the benchmark index holds {} chunks, fewer than --chunks {}",
        info.points_count,
        args.chunks
    );

    // The peer: the same grouped hybrid query in-process, vectors computed beforehand.
    let queries = sample_queries(args.searches);
    let mut vectors = Vec::with_capacity(queries.len());
    let mut embed_samples = Vec::with_capacity(queries.len());
    for q in &queries {
        let started = Instant::now();
        let v = embedder.embed_query_vectors(q).await?;
        embed_samples.push(started.elapsed());
        vectors.push(v);
    }
    let to_sparse =
        |v: &embed::SparseVector| SparseVector::new(v.indices.clone(), v.values.clone());
    let rrf_k = settings.qdrant.rrf_k;
    let mut peer = Vec::with_capacity(queries.len());
    for (i, v) in vectors.iter().enumerate() {
        let request = SearchRequest::hybrid(v.dense.clone(), to_sparse(&v.sparse), 11)
            .with_rrf_k(rrf_k)
            .with_prefetch_limit(400);
        let started = Instant::now();
        let hits = index.search_grouped(&request).await?;
        if i >= queries.len() / 10 {
            peer.push(started.elapsed());
        }
        ensure!(
            !hits.is_empty() || v.sparse.indices.is_empty(),
            "query {:?} found nothing",
            queries[i]
        );
    }
    drop(index);

    let dir = db.parent().unwrap_or(Path::new("."));
    let db_arg = db.display().to_string();
    let env = [
        ("SPARK_CONTROL_URL", instant.url().to_owned()),
        ("SPARK_EMBEDDING_MODEL", INSTANT_MODEL.to_owned()),
        ("QDRANT_COLLECTION", collection.clone()),
    ];
    let client = connect(server, dir, &["--db", &db_arg], &env).await?;
    let mut results = Vec::new();
    for mode in ["hybrid", "sparse", "dense"] {
        for q in queries.iter().take((args.searches / 10).max(1)) {
            timed_call(&client, "search", json!({ "query": q, "mode": mode })).await?;
        }
        let mut samples = Vec::with_capacity(queries.len());
        let mut hits = 0usize;
        for q in &queries {
            let (took, answer) =
                timed_call(&client, "search", json!({ "query": q, "mode": mode })).await?;
            ensure!(
                answer["mode_used"] == mode,
                "search fell back from {mode}: {}",
                answer["fallback_reason"]
            );
            hits += answer["hits"].as_array().map_or(0, Vec::len);
            samples.push(took);
        }
        results.push((mode, samples, hits));
    }
    client.cancel().await.ok();

    let (e50, _) = (p(&mut embed_samples, 50.0), ());
    let (peer50, peer99) = (p(&mut peer, 50.0), p(&mut peer, 99.0));
    report.figure("search_chunks", info.points_count);
    report.figure("search_dense_dim", info.dense_dim);
    report.figure("search_queries", queries.len());
    report.figure("search_instant_embed_p50_ms", ms(e50));
    if let Some(built) = built_in {
        report.figure("search_index_build_secs", built.as_secs_f64());
    }
    report.figure("inprocess_hybrid_p50_ms", ms(peer50));
    report.figure("inprocess_hybrid_p99_ms", ms(peer99));
    for (mode, mut samples, hits) in results {
        let (p50, p99) = (p(&mut samples, 50.0), p(&mut samples, 99.0));
        let peer_cell = if mode == "hybrid" {
            format!("{:.3} ms (in-process search_grouped)", ms(peer50))
        } else {
            String::new()
        };
        let ratio = if mode == "hybrid" && !peer50.is_zero() {
            format!("{:.1}×", p50.as_secs_f64() / peer50.as_secs_f64())
        } else {
            String::new()
        };
        report.row([
            format!(
                "{mode} search round trip p50 ({} chunks)",
                info.points_count
            ),
            format!("{:.3} ms", ms(p50)),
            peer_cell,
            ratio,
            if mode == "hybrid" {
                "≤ 15 ms".to_owned()
            } else {
                String::new()
            },
        ]);
        report.row([
            format!("{mode} search round trip p99"),
            format!("{:.3} ms", ms(p99)),
            if mode == "hybrid" {
                format!("{:.3} ms", ms(peer99))
            } else {
                String::new()
            },
            String::new(),
            String::new(),
        ]);
        report.figure(&format!("search_{mode}_p50_ms"), ms(p50));
        report.figure(&format!("search_{mode}_p99_ms"), ms(p99));
        report.figure(
            &format!("search_{mode}_mean_hits"),
            hits as f64 / samples.len().max(1) as f64,
        );
        if mode == "hybrid" {
            report.figure("search_hybrid_target_met", ms(p50) <= 15.0);
        }
    }
    drop(instant);
    Ok(())
}
