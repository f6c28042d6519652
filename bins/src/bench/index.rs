//! `crm-bench index`: building and syncing the search index, and hybrid queries on it.
//!
//! The CRM is a synthetic one (`crm_store::synthetic`, `--rows` rows over the four tables
//! in the proportions of the other suites). Dense vectors come from the instant embeddings
//! server (`embed::testing`, in this process, dimension `--dim`): an embedder that answers
//! at once with deterministic vectors, so the figures measure this project and not a
//! model. Builds and syncs run the real binaries (`crm-backfill`, `crm-sync`, beside
//! `crm-bench`) as child processes with a settings file of their own, so each one's peak
//! memory (from its `--json` summary) is its own.
//!
//! - **build**: `crm-backfill --recreate` into the embedded engine: chunks/s of the run
//!   (rendering, chunking, BM25, the embeddings round trips, upserts, records) and the
//!   optimizer pass after it (HNSW graphs), separately and together; peak RSS. Targets:
//!   at least 5,000 chunks/s and at most 1 GB on 1M rows. The peak RSS counts the pages
//!   of the index's memory-mapped files the kernel keeps resident; the anonymous part
//!   (heap, stacks) is reported beside it.
//! - **sync-noop**: `crm-sync` right after the build, nothing changed. Target: ≤ 1 s.
//! - **sync-changed**: `--changed` rows edited (new text, new stamp), then `crm-sync`.
//!   Target: ≤ 3 s for 1,000 rows.
//! - **serve**: `crm-mcp --sync-every 5`, the process that keeps the index loaded between
//!   syncs: the load at its start, its first sync, then `--changed` rows edited right
//!   after it and the duration of the sync that indexes them. Target: ≤ 3 s for 1,000.
//! - **query**: hybrid searches (dense and BM25 prefetches fused by RRF) on the built
//!   index, in this process, query vectors computed beforehand (query embedding
//!   excluded): p50 and p99. Targets: ≤ 5 ms and ≤ 20 ms at 1M points. The same queries
//!   in dense and in sparse mode show which half a hybrid query's time goes to. The time
//!   to open the index is reported beside them, and the time to read its search files
//!   into the page cache (`Index::warm_cache`, as `crm-mcp` does at an open: qdrant-edge
//!   evicts them when a process closes the collection), which the measurements wait for.
//! - **quality**: the dense (HNSW) search's recall@10 against an exact scan of every
//!   stored vector, for the top 10 of searches 10, 100 and 400 deep (the depths a dense
//!   search, a hybrid search and the `search` tool ask), and the share of a 1,000-deep
//!   hybrid search's top 10 that shallower prefetches keep.
//! - **local**: the same build with the in-process model (all-MiniLM-L6-v2 on candle) on a
//!   smaller CRM (`--local-rows`), in chunks/s; skipped when the model is not fetched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use crm_store::Timestamp;
use crm_store::synthetic::{self, SyntheticConfig};
use embed::testing::{INSTANT_MODEL, InstantEmbeddingServer, InstantServerConfig, instant_vector};
use embed::{Bm25Config, Bm25Encoder};
use index_qdrant::{ChunkId, Index, IndexConfig, ScrollRequest, SearchRequest, SparseVector};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::{BenchContext, Report, ms, per_sec, percentile};
use crate::settings::{HNSW_EF_CONSTRUCT_RANGE, HNSW_M_RANGE, env};

/// Parts of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Full build with the instant embedder.
    Build,
    /// Incremental syncs, nothing changed and some rows changed.
    Sync,
    /// A `crm-mcp --sync-every` process: its first sync (loading the index), then the
    /// changed rows synced by the process that already holds the index.
    Serve,
    /// Hybrid query latency.
    Query,
    /// Search quality: the dense (HNSW) top 10 of searches 10, 100 and 400 deep against
    /// an exact scan of every stored vector, and how much of the fused top 10 each
    /// hybrid prefetch depth keeps.
    Quality,
    /// Full build with the in-process model.
    Local,
}

/// Flags of `crm-bench index`.
#[derive(Debug, Clone, clap::Args)]
pub struct IndexArgs {
    /// Rows of the synthetic CRM, all four tables together.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Rows edited before the "changed" sync.
    #[arg(long, default_value_t = 1_000)]
    pub changed: u64,
    /// Hybrid queries timed.
    #[arg(long, default_value_t = 2_000)]
    pub queries: usize,
    /// Hits of each prefetch (dense and BM25) a hybrid query fuses, as `search` asks
    /// by default; lower costs less (every hit of every segment is looked up by id)
    /// at some recall of the fused list.
    #[arg(long, default_value_t = index_qdrant::DEFAULT_PREFETCH_LIMIT)]
    pub prefetch_limit: usize,
    /// Dimension of the instant embedder's vectors (all-MiniLM-L6-v2 has 384).
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// CRM rows per sync batch (`sync.batch_size`; the settings' default when not given).
    #[arg(long)]
    pub batch_size: Option<u32>,
    /// Rows of the smaller CRM the in-process model builds.
    #[arg(long, default_value_t = 20_000)]
    pub local_rows: u64,
    /// Which parts to run (sync and query need a build of the same size in this work dir).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "build,sync,serve,query,quality,local"
    )]
    pub parts: Vec<Part>,
    /// Shards of the embedded collection (`qdrant.embedded_shards`; when not given, the
    /// settings' default: automatic, one per 350,000 rows, two to three, from 500,000 rows
    /// on two cores or more). A build with an explicit count above one goes to its own
    /// index directory, `index-{rows}-{shards}shards`, so builds of several layouts can
    /// be kept side by side.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: Option<u32>,
    /// Links per point of the HNSW graph (`qdrant.hnsw_m`; the settings' default when
    /// not given). A build with it goes to an index directory of its own (`-m{M}`
    /// appended).
    #[arg(long, value_parser = clap::value_parser!(u32).range(range_i64(&HNSW_M_RANGE)))]
    pub hnsw_m: Option<u32>,
    /// Build beam of the HNSW graph (`qdrant.hnsw_ef_construct`; the settings' default
    /// when not given). A build with it goes to an index directory of its own (`-ef{N}`
    /// appended).
    #[arg(long, value_parser = clap::value_parser!(u32).range(range_i64(&HNSW_EF_CONSTRUCT_RANGE)))]
    pub hnsw_ef_construct: Option<u32>,
    /// Directory holding `crm-backfill` and `crm-sync` (default: beside `crm-bench`).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

/// A settings range as clap's value parsers take it.
fn range_i64(range: &std::ops::RangeInclusive<u32>) -> std::ops::RangeInclusive<i64> {
    i64::from(*range.start())..=i64::from(*range.end())
}

/// The four table sizes for `rows` rows, in the other suites' proportions (people : orgs
/// : interactions : deals = 50 : 5 : 10 : 1).
fn sizes(rows: u64) -> SyntheticConfig {
    let unit = rows / 66;
    let people = rows - unit * 16;
    SyntheticConfig {
        people,
        organizations: unit * 5,
        interactions: unit * 10,
        deals: unit,
        ..SyntheticConfig::default()
    }
}

/// A generated CRM, reused when the work dir already has one of this size.
fn crm(ctx: &BenchContext, rows: u64, name: &str) -> anyhow::Result<PathBuf> {
    let path = ctx.work_dir.join(format!("{name}-{rows}.db"));
    if path.exists() {
        tracing::info!(path = %path.display(), "reusing the generated CRM");
        return Ok(path);
    }
    let bar = crate::progress::spinner(&ctx.terminal, "generate");
    let report = synthetic::generate(&path, &sizes(rows), &mut |p| {
        bar.set_message(format!("{} {}/{}", p.table, p.done, p.total));
    })
    .with_context(|| format!("generating a CRM of {rows} rows at {}", path.display()))?;
    bar.finish_and_clear();
    tracing::info!(seconds = report.seconds, "generated the CRM");
    Ok(path)
}

/// One child run's `--json` summary and wall time.
struct ChildRun {
    summary: Value,
    wall: Duration,
}

impl ChildRun {
    fn u64(&self, key: &str) -> u64 {
        self.summary[key].as_u64().unwrap_or(0)
    }

    fn total(&self, key: &str) -> u64 {
        self.summary["totals"][key].as_u64().unwrap_or(0)
    }

    fn outcome(&self) -> &str {
        self.summary["outcome"].as_str().unwrap_or("?")
    }
}

/// Runs `bin` with the settings file `config` and `--json`; the child sees none of the
/// caller's settings variables.
fn run_child(bin: &Path, config: &Path, extra: &[&str]) -> anyhow::Result<ChildRun> {
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config).arg("--json").args(extra);
    for (var, _) in env::TABLE {
        cmd.env_remove(var);
    }
    cmd.env_remove(env::CONFIG)
        .env_remove(env::LOG)
        .env("RUST_LOG", "warn");
    let started = Instant::now();
    let output = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let Some(line) = line else {
        bail!(
            "{} printed no summary (exit {:?}): {}",
            bin.display(),
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let summary: Value = serde_json::from_str(line).context("parsing the child's summary")?;
    if summary["outcome"] == "failed" || summary["outcome"] == "partial_failure" {
        bail!(
            "{} failed: {}",
            bin.display(),
            summary["error"].as_str().unwrap_or("(no error)")
        );
    }
    Ok(ChildRun { summary, wall })
}

/// A settings file for the children: this CRM, this index directory, the instant server
/// (or the local model when `spark_url` is `None`).
fn write_settings(
    dir: &Path,
    db: &Path,
    index_dir: &Path,
    spark_url: Option<&str>,
    model_dir: Option<&Path>,
    args: &IndexArgs,
) -> anyhow::Result<PathBuf> {
    let mut settings = serde_json::json!({
        "db_path": db,
        "qdrant": { "embedded_dir": index_dir },
        "log": { "format": "json", "filter": "warn" },
    });
    if let Some(shards) = args.shards {
        settings["qdrant"]["embedded_shards"] = serde_json::json!(shards);
    }
    if let Some(m) = args.hnsw_m {
        settings["qdrant"]["hnsw_m"] = serde_json::json!(m);
    }
    if let Some(ef) = args.hnsw_ef_construct {
        settings["qdrant"]["hnsw_ef_construct"] = serde_json::json!(ef);
    }
    if let Some(rows) = args.batch_size {
        settings["sync"] = serde_json::json!({ "batch_size": rows });
    }
    if let Some(url) = spark_url {
        settings["spark_control"] = serde_json::json!({
            "url": url,
            "embedding_model": INSTANT_MODEL,
            "max_retries": 0,
        });
    }
    if let Some(model) = model_dir {
        settings["embedding"] = serde_json::json!({ "local_model_dir": model });
    }
    let path = dir.join(format!(
        "settings-{}.json",
        index_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("index")
    ));
    std::fs::write(&path, serde_json::to_vec_pretty(&settings)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// Edits `n` random people and interactions: new text, stamped now.
fn edit_rows(db: &Path, n: u64) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let max_person: i64 = conn.query_row("SELECT max(id) FROM people", [], |r| r.get(0))?;
    let max_interaction: i64 =
        conn.query_row("SELECT max(id) FROM interactions", [], |r| r.get(0))?;
    let mut rng = ChaCha8Rng::seed_from_u64(n);
    let now = Timestamp::now().to_canonical();
    let tx = conn.unchecked_transaction()?;
    for i in 0..n {
        if i % 2 == 0 {
            tx.execute(
                "UPDATE people SET bio = ?1, updated_at = ?2 WHERE id = ?3",
                rusqlite::params![
                    format!(
                        "Edited for the benchmark, revision {i}. Now advises on climate hardware."
                    ),
                    now,
                    rng.random_range(1..=max_person)
                ],
            )?;
        } else {
            tx.execute(
                "UPDATE interactions SET body = ?1, updated_at = ?2 WHERE id = ?3",
                rusqlite::params![
                    format!(
                        "Follow-up {i}: the term sheet was signed; diligence starts next week."
                    ),
                    now,
                    rng.random_range(1..=max_interaction)
                ],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// What a `crm-mcp --sync-every` process reported.
struct ServedSyncs {
    load_ms: u64,
    first_ms: u64,
    changed_ms: u64,
    changed_rows: u64,
}

/// Starts `crm-mcp --sync-every 5` (stdio, no client traffic), waits for its first sync,
/// edits `changed` rows right after it, and reads the duration of the sync that indexes
/// them from the process's log; then stops it with SIGTERM.
fn serving_sync(mcp: &Path, config: &Path, db: &Path, changed: u64) -> anyhow::Result<ServedSyncs> {
    use std::io::BufRead as _;
    use std::process::Stdio;

    let mut cmd = Command::new(mcp);
    cmd.arg("--config").arg(config).args(["--sync-every", "5"]);
    for (var, _) in env::TABLE {
        cmd.env_remove(var);
    }
    cmd.env_remove(env::CONFIG)
        .env("RUST_LOG", "warn,crm_mcp=info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", mcp.display()))?;
    let stderr = child.stderr.take().context("crm-mcp's stderr")?;
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && (v["message"] == "sync finished" || v["message"] == "index loaded")
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let next = |what: &str| -> anyhow::Result<Value> {
        let line = rx
            .recv_timeout(Duration::from_secs(900))
            .with_context(|| format!("crm-mcp logged no {what} within 15 minutes"))?;
        ensure!(
            line["outcome"] != "Failed" && line["outcome"] != "PartialFailure",
            "crm-mcp's {what} failed: {line}"
        );
        Ok(line)
    };
    let outcome = (|| {
        let loaded = next("index load")?;
        ensure!(
            loaded["message"] == "index loaded",
            "crm-mcp synced before loading the index: {loaded}"
        );
        let first = next("first sync")?;
        edit_rows(db, changed)?;
        let mut synced = next("sync of the changed rows")?;
        while synced["rows_indexed"].as_u64().unwrap_or(0) == 0 {
            synced = next("sync of the changed rows")?;
        }
        Ok(ServedSyncs {
            load_ms: loaded["duration_ms"].as_u64().unwrap_or(0),
            first_ms: first["duration_ms"].as_u64().unwrap_or(0),
            changed_ms: synced["duration_ms"].as_u64().unwrap_or(0),
            changed_rows: synced["rows_indexed"].as_u64().unwrap_or(0),
        })
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    outcome
}

const QUERIES: &[&str] = &[
    "series a term sheet board seat",
    "climate hardware fund in the nordics",
    "who introduced us to the founder",
    "follow up on diligence next week",
    "battery startup pricing",
    "coffee with the general partner",
    "lp commitments for fund two",
    "robotics warehouse automation",
    "email about the data room",
    "law firm engagement letter",
    "pre-seed round lead investor",
    "quarterly update revenue churn",
];

/// Runs the suite.
pub fn run(ctx: &BenchContext, args: &IndexArgs) -> anyhow::Result<Vec<Report>> {
    ensure!(args.rows >= 66, "--rows must be at least 66");
    ensure!(
        args.dim > 0 && args.queries > 0,
        "--dim and --queries must be at least 1"
    );
    ensure!(
        (1..=index_qdrant::MAX_LIMIT).contains(&args.prefetch_limit),
        "--prefetch-limit must be 1 to {}, not {}",
        index_qdrant::MAX_LIMIT,
        args.prefetch_limit
    );
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("finding crm-bench's own path")?
            .parent()
            .map(Path::to_path_buf)
            .context("crm-bench has no parent directory")?,
    };
    let backfill = bin_dir.join("crm-backfill");
    let sync = bin_dir.join("crm-sync");
    let mcp = bin_dir.join("crm-mcp");
    for bin in [&backfill, &sync, &mcp] {
        ensure!(
            bin.is_file(),
            "{} does not exist: build it in the same profile as crm-bench \
             (cargo build --profile bench -p crm-substrate --bins) or pass --bin-dir",
            bin.display()
        );
    }

    let mut report = Report::new("index", &["part", "figure", "value", "target"]);
    report.figure("rows", args.rows);
    report.figure("dim", args.dim as u64);
    let server = InstantEmbeddingServer::start_background(InstantServerConfig::new(args.dim))
        .context("starting the instant embeddings server")?;
    let db = crm(ctx, args.rows, "crm")?;
    let mut index_name = format!("index-{}", args.rows);
    if let Some(shards) = args.shards.filter(|shards| *shards > 1) {
        report.figure("shards", u64::from(shards));
        index_name.push_str(&format!("-{shards}shards"));
    }
    if let Some(m) = args.hnsw_m {
        report.figure("hnsw_m", u64::from(m));
        index_name.push_str(&format!("-m{m}"));
    }
    if let Some(ef) = args.hnsw_ef_construct {
        report.figure("hnsw_ef_construct", u64::from(ef));
        index_name.push_str(&format!("-ef{ef}"));
    }
    let index_dir = ctx.work_dir.join(index_name);
    let settings = write_settings(
        &ctx.work_dir,
        &db,
        &index_dir,
        Some(server.url()),
        None,
        args,
    )?;

    if args.parts.contains(&Part::Build) {
        let run = run_child(&backfill, &settings, &["--recreate"])?;
        let chunks = run.total("chunks_upserted");
        let duration = Duration::from_millis(run.u64("duration_ms"));
        let optimize = Duration::from_millis(run.u64("optimize_ms"));
        let ingest = duration.saturating_sub(optimize);
        let rss = run.u64("peak_rss_bytes");
        let rate = per_sec(chunks, ingest);
        report.row([
            "build",
            "rows indexed",
            &run.total("rows_indexed").to_string(),
            "",
        ]);
        report.row(["build", "chunks", &chunks.to_string(), ""]);
        report.row(["build", "ingest chunks/s", &format!("{rate:.0}"), ">= 5000"]);
        report.row([
            "build",
            "optimize (HNSW) s",
            &format!("{:.1}", optimize.as_secs_f64()),
            "",
        ]);
        report.row([
            "build",
            "chunks/s incl. optimize",
            &format!("{:.0}", per_sec(chunks, duration)),
            "",
        ]);
        report.row([
            "build",
            "process wall s",
            &format!("{:.1}", run.wall.as_secs_f64()),
            "",
        ]);
        report.row(["build", "peak RSS", &mb(rss), "<= 1000 MB"]);
        let anon = run.u64("peak_anon_bytes");
        report.row(["build", "peak RSS not file-backed", &mb(anon), ""]);
        // Cores kept busy: CPU seconds over the run's own duration (the process's
        // start-up and summary are outside it, and take no CPU to speak of).
        let cpu = run.summary["cpu_seconds"].as_f64().unwrap_or(0.0);
        report.row([
            "build",
            "CPU s (cores busy)",
            &format!("{cpu:.1} ({:.2})", cpu / duration.as_secs_f64().max(1e-3)),
            "",
        ]);
        report.figure("build_cpu_seconds", cpu);
        let stages = &run.summary["stage_seconds"];
        if let Some(stages) = stages.as_object() {
            let busy: Vec<String> = stages
                .iter()
                .map(|(stage, secs)| format!("{stage} {:.1}", secs.as_f64().unwrap_or(0.0)))
                .collect();
            report.row(["build", "stage seconds", &busy.join(", "), ""]);
        }
        report.figure("build_peak_anon_bytes", anon);
        report.figure("build_chunks", chunks);
        report.figure("build_ingest_chunks_per_sec", rate);
        report.figure("build_optimize_ms", ms(optimize));
        report.figure(
            "build_chunks_per_sec_with_optimize",
            per_sec(chunks, duration),
        );
        report.figure("build_wall_ms", ms(run.wall));
        report.figure("build_peak_rss_bytes", rss);
        report.figure("build_embedding_requests", server.controls().requests());
    }

    if args.parts.contains(&Part::Sync) {
        ensure!(
            index_dir.exists(),
            "the sync part needs the build part first (same --rows and --work-dir)"
        );
        let noop = run_child(&sync, &settings, &[])?;
        let noop_ms = noop.u64("duration_ms");
        report.row([
            "sync",
            "nothing changed: run ms",
            &noop_ms.to_string(),
            "<= 1000",
        ]);
        report.row([
            "sync",
            "nothing changed: process wall ms",
            &format!("{:.0}", ms(noop.wall)),
            "",
        ]);
        report.row([
            "sync",
            "nothing changed: outcome",
            noop.outcome(),
            "nothing_to_do",
        ]);
        report.figure("sync_noop_ms", noop_ms);
        report.figure("sync_noop_wall_ms", ms(noop.wall));

        edit_rows(&db, args.changed)?;
        let changed = run_child(&sync, &settings, &[])?;
        let changed_ms = changed.u64("duration_ms");
        let label = format!("{} changed: run ms", args.changed);
        report.row(["sync", &label, &changed_ms.to_string(), "<= 3000"]);
        report.row([
            "sync",
            "changed: rows indexed",
            &changed.total("rows_indexed").to_string(),
            "",
        ]);
        report.row([
            "sync",
            "changed: dependents re-rendered",
            &changed.total("dependents_checked").to_string(),
            "",
        ]);
        report.row([
            "sync",
            "changed: optimize ms",
            &changed.u64("optimize_ms").to_string(),
            "",
        ]);
        report.row([
            "sync",
            "changed: process wall ms",
            &format!("{:.0}", ms(changed.wall)),
            "",
        ]);
        report.figure("sync_changed_rows", args.changed);
        report.figure("sync_changed_ms", changed_ms);
        report.figure("sync_changed_rows_indexed", changed.total("rows_indexed"));
        report.figure("sync_changed_wall_ms", ms(changed.wall));
    }

    if args.parts.contains(&Part::Serve) {
        ensure!(
            index_dir.exists(),
            "the serve part needs the build part first (same --rows and --work-dir)"
        );
        let served = serving_sync(&mcp, &settings, &db, args.changed)?;
        report.row([
            "serve",
            "crm-mcp --sync-every: index load at start ms",
            &served.load_ms.to_string(),
            "",
        ]);
        report.row([
            "serve",
            "crm-mcp --sync-every: first sync ms",
            &served.first_ms.to_string(),
            "",
        ]);
        let label = format!(
            "crm-mcp --sync-every: {} changed, index held: run ms",
            args.changed
        );
        report.row(["serve", &label, &served.changed_ms.to_string(), "<= 3000"]);
        report.row([
            "serve",
            "crm-mcp --sync-every: changed: rows indexed",
            &served.changed_rows.to_string(),
            "",
        ]);
        report.figure("serve_load_ms", served.load_ms);
        report.figure("serve_first_sync_ms", served.first_ms);
        report.figure("serve_changed_ms", served.changed_ms);
        report.figure("serve_changed_rows_indexed", served.changed_rows);
    }

    if args.parts.contains(&Part::Query) {
        ensure!(
            index_dir.exists(),
            "the query part needs the build part first"
        );
        let latency = query_latency(&index_dir, args)?;
        report.row(["query", "points", &latency.points.to_string(), ""]);
        report.row(["query", "shards", &latency.shards.to_string(), ""]);
        report.row([
            "query",
            "hybrid prefetch limit",
            &args.prefetch_limit.to_string(),
            "",
        ]);
        report.row(["query", "open ms", &format!("{:.0}", ms(latency.open)), ""]);
        report.row([
            "query",
            "page cache warmed ms",
            &format!("{:.0}", ms(latency.warm)),
            "",
        ]);
        for m in &latency.modes {
            let (p50_target, p99_target) = if m.mode == "hybrid" {
                ("<= 5", "<= 20")
            } else {
                ("", "")
            };
            let p50 = format!("{} p50 ms", m.mode);
            let p99 = format!("{} p99 ms", m.mode);
            report.row(["query", &p50, &format!("{:.2}", ms(m.p50)), p50_target]);
            report.row(["query", &p99, &format!("{:.2}", ms(m.p99)), p99_target]);
            let key = m.mode.replace(' ', "_");
            report.figure(&format!("query_{key}_p50_ms"), ms(m.p50));
            report.figure(&format!("query_{key}_p99_ms"), ms(m.p99));
        }
        report.figure("query_points", latency.points);
        report.figure("query_shards", latency.shards as u64);
        report.figure("query_prefetch_limit", args.prefetch_limit as u64);
        report.figure("query_open_ms", ms(latency.open));
        report.figure("query_warm_ms", ms(latency.warm));
    }
    if args.parts.contains(&Part::Quality) {
        ensure!(
            index_dir.exists(),
            "the quality part needs the build part first"
        );
        let quality = search_quality(&index_dir, args)?;
        report.row(["quality", "queries", &quality.queries.to_string(), ""]);
        report.row([
            "quality",
            "exact scan: points, s",
            &format!("{}, {:.1}", quality.scanned, quality.scan.as_secs_f64()),
            "",
        ]);
        for recall in &quality.recall {
            // Figures keep their names of before for a search 10 deep.
            let suffix = match recall.depth {
                10 => String::new(),
                depth => format!("_of_{depth}"),
            };
            report.row([
                "quality",
                &format!(
                    "dense recall@10 (HNSW vs exact), {}-deep search: the queries",
                    recall.depth
                ),
                &format!("{:.3}", recall.queries),
                "",
            ]);
            report.figure(
                &format!("quality_dense_recall_at_10{suffix}"),
                recall.queries,
            );
            report.row([
                "quality",
                &format!(
                    "dense recall@10, {}-deep search: {STORED_QUERIES} stored vectors",
                    recall.depth
                ),
                &format!("{:.3}", recall.stored),
                "",
            ]);
            report.figure(
                &format!("quality_stored_recall_at_10{suffix}"),
                recall.stored,
            );
        }
        for (depth, share) in &quality.agreement {
            report.row([
                "quality",
                &format!("hybrid top 10, prefetch {depth}: share of {AGREEMENT_REFERENCE}'s"),
                &format!("{share:.3}"),
                "",
            ]);
            report.figure(&format!("quality_top10_agreement_prefetch_{depth}"), *share);
        }
    }
    drop(server);

    if args.parts.contains(&Part::Local) {
        let model = ctx.settings.local_model_dir(&ctx.env);
        if model.join("model.safetensors").is_file() {
            let db = crm(ctx, args.local_rows, "crm-local")?;
            let index_dir = ctx
                .work_dir
                .join(format!("index-local-{}", args.local_rows));
            let settings =
                write_settings(&ctx.work_dir, &db, &index_dir, None, Some(&model), args)?;
            let run = run_child(&backfill, &settings, &["--recreate"])?;
            let chunks = run.total("chunks_upserted");
            let duration = Duration::from_millis(run.u64("duration_ms"));
            let rate = per_sec(chunks, duration);
            let label = format!("{} rows: chunks/s", args.local_rows);
            report.row(["local model", &label, &format!("{rate:.1}"), ""]);
            report.row(["local model", "chunks", &chunks.to_string(), ""]);
            report.row([
                "local model",
                "peak RSS",
                &mb(run.u64("peak_rss_bytes")),
                "",
            ]);
            report.figure("local_rows", args.local_rows);
            report.figure("local_chunks", chunks);
            report.figure("local_chunks_per_sec", rate);
            report.figure("local_peak_rss_bytes", run.u64("peak_rss_bytes"));
        } else {
            report.row([
                "local model",
                "skipped",
                "model not fetched (scripts/fetch-model.sh)",
                "",
            ]);
        }
    }
    Ok(vec![report])
}

/// `n` queries of the suite (text, dense and sparse vectors): one of [`QUERIES`] alone
/// every third time, else two of them together, the same on every run.
fn bench_queries(n: usize, dim: usize) -> anyhow::Result<Vec<(String, Vec<f32>, SparseVector)>> {
    let bm25 = Bm25Encoder::new(Bm25Config::default())?;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    Ok((0..n)
        .map(|i| {
            let base = QUERIES[i % QUERIES.len()];
            let extra = QUERIES[rng.random_range(0..QUERIES.len())];
            let text = if i % 3 == 0 {
                base.to_owned()
            } else {
                format!("{base} {extra}")
            };
            let sparse = bm25.query(&text);
            let dense = instant_vector(&text, dim);
            (
                text,
                dense,
                SparseVector::new(sparse.indices, sparse.values),
            )
        })
        .collect())
}

/// Turns a query's two vectors into the request of one mode.
type MakeRequest = Box<dyn Fn(&(Vec<f32>, SparseVector)) -> SearchRequest>;

/// Search latency of one mode.
struct ModeLatency {
    mode: &'static str,
    p50: Duration,
    p99: Duration,
}

/// What the query part measured.
struct QueryLatency {
    points: u64,
    /// Shards of the collection searched.
    shards: usize,
    open: Duration,
    /// Reading the search files into the page cache after the open (`Index::warm_cache`).
    warm: Duration,
    modes: Vec<ModeLatency>,
}

/// Search latency on the built index in each mode (hybrid first), query vectors computed
/// beforehand. The dense and sparse runs show where a hybrid query's time goes: it runs
/// both as prefetches and fuses them.
fn query_latency(index_dir: &Path, args: &IndexArgs) -> anyhow::Result<QueryLatency> {
    let queries: Vec<(Vec<f32>, SparseVector)> = bench_queries(args.queries, args.dim)?
        .into_iter()
        .map(|(_, dense, sparse)| (dense, sparse))
        .collect();
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let started = Instant::now();
        let index = Index::open(IndexConfig::embedded(index_dir)).await?;
        let points = index.info().await?.points_count;
        let open = started.elapsed();
        // As `crm-mcp` does when it opens the index to search; a server that has been up
        // for a few seconds has its files cached, which is the state measured here.
        let started = Instant::now();
        if let Some(warming) = index.warm_cache() {
            warming.wait();
        }
        let warm = started.elapsed();
        let prefetch = args.prefetch_limit;
        // The search tool's first page: grouped per row, one more than the page to know
        // whether another follows, prefetches as wide as its deepest page needs.
        let page = mcp_tools::search::DEFAULT_SEARCH_LIMIT as usize + 1;
        let modes: [(&'static str, bool, MakeRequest); 4] = [
            (
                "hybrid",
                false,
                Box::new(move |(d, s)| {
                    SearchRequest::hybrid(d.clone(), s.clone(), 10).with_prefetch_limit(prefetch)
                }),
            ),
            (
                "dense",
                false,
                Box::new(|(d, _)| SearchRequest::dense(d.clone(), 10)),
            ),
            (
                "sparse",
                false,
                Box::new(|(_, s)| SearchRequest::sparse(s.clone(), 10)),
            ),
            (
                "search tool",
                true,
                Box::new(move |(d, s)| {
                    SearchRequest::hybrid(d.clone(), s.clone(), page)
                        .with_prefetch_limit(mcp_tools::search::HYBRID_PREFETCH)
                }),
            ),
        ];
        let mut measured = Vec::new();
        for (mode, grouped, request) in modes {
            let requests: Vec<SearchRequest> = queries.iter().map(request).collect();
            // Warm-up: page the index in, as a running server would have it.
            for request in requests.iter().take(50) {
                timed_search(&index, request, grouped).await?;
            }
            let mut samples = Vec::with_capacity(requests.len());
            for request in &requests {
                let started = Instant::now();
                let hits = timed_search(&index, request, grouped).await?;
                samples.push(started.elapsed());
                ensure!(
                    mode == "sparse" || !hits.is_empty(),
                    "a {mode} query found nothing"
                );
            }
            measured.push(ModeLatency {
                mode,
                p50: percentile(&mut samples, 50.0).unwrap_or_default(),
                p99: percentile(&mut samples, 99.0).unwrap_or_default(),
            });
        }
        Ok(QueryLatency {
            points,
            shards: index.embedded_shards().unwrap_or(1),
            open,
            warm,
            modes: measured,
        })
    })
}

/// One search of the query part, grouped per row as the `search` tool asks or plain.
async fn timed_search(
    index: &Index,
    request: &SearchRequest,
    grouped: bool,
) -> Result<Vec<index_qdrant::SearchHit>, index_qdrant::IndexError> {
    if grouped {
        index.search_grouped(request).await
    } else {
        index.search(request).await
    }
}

/// Prefetch depths whose fused top 10 the quality part compares.
const AGREEMENT_DEPTHS: [usize; 5] = [20, 40, 100, 200, 400];

/// The prefetch depth taken as exact: with RRF's k = 60 a chunk ranked below 1,000 in
/// both lists scores under 2/1,060, far below any fused top 10.
const AGREEMENT_REFERENCE: usize = 1_000;

/// Distinct queries the quality part asks.
const QUALITY_QUERIES: usize = 200;

/// Stored vectors the quality part also searches with: queries from the collection's
/// own distribution, unlike the suite's few words.
const STORED_QUERIES: usize = 50;

/// Depths of the dense searches whose top 10 the quality part compares with the exact
/// top 10: 10 is a dense search's own, 100 a hybrid search's default prefetch, 400 the
/// `search` tool's ([`mcp_tools::search::HYBRID_PREFETCH`]). The engine's beam is at
/// least the depth asked, so a deeper search finds more of the true neighbours.
const RECALL_DEPTHS: [usize; 3] = [
    10,
    index_qdrant::DEFAULT_PREFETCH_LIMIT,
    mcp_tools::search::HYBRID_PREFETCH,
];

/// Dense recall@10 at one search depth.
struct DenseRecall {
    depth: usize,
    /// The suite's queries.
    queries: f64,
    /// Stored vectors as the queries.
    stored: f64,
}

/// What the quality part measured.
struct SearchQuality {
    queries: usize,
    /// Points the exact scan read.
    scanned: u64,
    scan: Duration,
    /// For each of [`RECALL_DEPTHS`]: the share of the exact top 10 that the top 10 of
    /// a dense (HNSW) search that deep finds, for the suite's queries and for
    /// [`STORED_QUERIES`] stored vectors as the queries; a hit scoring (exactly) as high
    /// as the exact tenth counts as found.
    recall: Vec<DenseRecall>,
    /// For each of [`AGREEMENT_DEPTHS`], the mean share of the hybrid top 10 at
    /// [`AGREEMENT_REFERENCE`] that the top 10 at that depth also holds.
    agreement: Vec<(usize, f64)>,
}

/// The ten best of a stream of scored ids, kept sorted best first.
struct TopTen(Vec<(f32, ChunkId)>);

impl TopTen {
    fn offer(&mut self, score: f32, id: ChunkId) {
        if self.0.len() == 10 && self.0.last().is_some_and(|(worst, _)| score <= *worst) {
            return;
        }
        let at = self.0.partition_point(|(s, _)| *s >= score);
        self.0.insert(at, (score, id));
        self.0.truncate(10);
    }
}

/// Recall of the dense search against an exact scan of every stored vector, and the
/// fused top 10's agreement across prefetch depths; see [`SearchQuality`].
fn search_quality(index_dir: &Path, args: &IndexArgs) -> anyhow::Result<SearchQuality> {
    let mut seen = std::collections::HashSet::new();
    let queries: Vec<(Vec<f32>, SparseVector)> = bench_queries(QUALITY_QUERIES * 4, args.dim)?
        .into_iter()
        .filter(|(text, _, _)| seen.insert(text.clone()))
        .take(QUALITY_QUERIES)
        .map(|(_, dense, sparse)| (dense, sparse))
        .collect();
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let index = Index::open(IndexConfig::embedded(index_dir)).await?;
        // The suite's dense queries, then stored vectors spread over the first points.
        let first = index
            .scroll(&ScrollRequest {
                limit: STORED_QUERIES * 40,
                with_vectors: true,
                ..ScrollRequest::default()
            })
            .await?;
        let mut dense_queries: Vec<Vec<f32>> = queries.iter().map(|(d, _)| d.clone()).collect();
        dense_queries.extend(
            first
                .points
                .iter()
                .step_by(40)
                .filter_map(|point| point.vectors.as_ref().map(|v| v.dense.clone())),
        );
        // The dense search's hits first; the scan below scores them exactly too, so a
        // hit tied with the exact tenth counts as found whatever score the engine gave.
        // `searched[d][q]`: the top 10 of query `q`'s search `RECALL_DEPTHS[d]` deep.
        let mut searched: Vec<Vec<Vec<ChunkId>>> = Vec::with_capacity(RECALL_DEPTHS.len());
        for depth in RECALL_DEPTHS {
            let mut tops = Vec::with_capacity(dense_queries.len());
            for dense in &dense_queries {
                let hits = index
                    .search(&SearchRequest::dense(dense.clone(), depth))
                    .await?;
                tops.push(hits.into_iter().take(10).map(|hit| hit.id).collect());
            }
            searched.push(tops);
        }
        // Exact: every stored vector against every query (unit vectors: cosine is the
        // dot product), in pages of the collection in id order.
        let started = Instant::now();
        let mut exact: Vec<TopTen> = dense_queries.iter().map(|_| TopTen(Vec::new())).collect();
        // The queries each point was a hit of, at any depth, and their exact scores.
        let mut hit_of: HashMap<ChunkId, Vec<usize>> = HashMap::new();
        for tops in &searched {
            for (q, hits) in tops.iter().enumerate() {
                for id in hits {
                    hit_of.entry(*id).or_default().push(q);
                }
            }
        }
        let mut hit_score: HashMap<(usize, ChunkId), f32> = HashMap::new();
        let mut scanned = 0u64;
        let mut offset = None;
        loop {
            let page = index
                .scroll(&ScrollRequest {
                    limit: 10_000,
                    offset,
                    with_vectors: true,
                    ..ScrollRequest::default()
                })
                .await?;
            for point in &page.points {
                let Some(vectors) = &point.vectors else {
                    bail!("point {} came back without its vectors", point.id);
                };
                let hit_of_point = hit_of.get(&point.id);
                for (q, query) in dense_queries.iter().enumerate() {
                    let score: f32 = query.iter().zip(&vectors.dense).map(|(a, b)| a * b).sum();
                    exact[q].offer(score, point.id);
                    if hit_of_point.is_some_and(|of| of.contains(&q)) {
                        hit_score.insert((q, point.id), score);
                    }
                }
            }
            scanned += page.points.len() as u64;
            match page.next_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        let scan = started.elapsed();

        let recall = |tops: &[Vec<ChunkId>], range: std::ops::Range<usize>| {
            let mut found = 0usize;
            let mut wanted = 0usize;
            for q in range {
                let top = &exact[q];
                let tenth = top.0.last().map_or(f32::MIN, |(score, _)| *score);
                wanted += top.0.len();
                found += tops[q]
                    .iter()
                    .filter(|id| {
                        hit_score
                            .get(&(q, **id))
                            .is_some_and(|score| *score >= tenth - 1e-6)
                    })
                    .count()
                    .min(top.0.len());
            }
            found as f64 / wanted.max(1) as f64
        };
        let recall = RECALL_DEPTHS
            .iter()
            .zip(&searched)
            .map(|(depth, tops)| DenseRecall {
                depth: *depth,
                queries: recall(tops, 0..queries.len()),
                stored: recall(tops, queries.len()..dense_queries.len()),
            })
            .collect();

        let fused = |depth: usize, (d, s): &(Vec<f32>, SparseVector)| {
            let request =
                SearchRequest::hybrid(d.clone(), s.clone(), 10).with_prefetch_limit(depth);
            let index = &index;
            async move {
                let hits = index.search(&request).await?;
                Ok::<_, anyhow::Error>(hits.into_iter().map(|hit| hit.id).collect::<Vec<_>>())
            }
        };
        let mut kept = vec![0usize; AGREEMENT_DEPTHS.len()];
        let mut total = 0usize;
        for query in &queries {
            let reference = fused(AGREEMENT_REFERENCE, query).await?;
            total += reference.len();
            for (depth, kept) in AGREEMENT_DEPTHS.iter().zip(&mut kept) {
                let hits = fused(*depth, query).await?;
                *kept += hits.iter().filter(|id| reference.contains(id)).count();
            }
        }
        Ok(SearchQuality {
            queries: queries.len(),
            scanned,
            scan,
            recall,
            agreement: AGREEMENT_DEPTHS
                .iter()
                .zip(kept)
                .map(|(depth, kept)| (*depth, kept as f64 / total.max(1) as f64))
                .collect(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up_in_the_suite_proportions() {
        for rows in [66, 1_000, 20_000, 1_000_000] {
            let c = sizes(rows);
            assert_eq!(c.people + c.organizations + c.interactions + c.deals, rows);
            assert_eq!(c.organizations, 5 * c.deals);
        }
    }
}
