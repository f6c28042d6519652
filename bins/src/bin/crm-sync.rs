//! `crm-sync`: incremental indexing since the watermark; `--watch` loops, `--verify`
//! compares the index with the CRM.
//!
//! Test hook: `CRM_SYNC_FAULT=STAGE:N` (e.g. `after_upsert:3`) aborts the process when the
//! N-th batch reaches STAGE, like a crash there; the crash-safety tests use it. Never set
//! it in production.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::embedding::embedder_from_settings;
use crm_substrate::indexing::{
    self, Bars, EXIT_DIFFERENCES, exit_code, open_indexer, open_store, prepare, print_failure,
    print_run, stop_on_signals,
};
use sync_watermark::{CancellationToken, Encoder, RunReport};

/// Index what changed in the CRM since the last sync.
///
/// Reads the rows changed since the watermark (moved back by sync.overlap_secs), skips
/// those whose content and entity are unchanged, embeds and upserts the others, removes
/// points of deleted rows and stale chunks, patches entity ids after merges, re-renders
/// the documents that embed a changed organisation or person, then records the rows and
/// advances the watermark. Rows the watermark cannot see (hard deletes, rows stamped in
/// the past, entity moves) are found by comparing the records with the CRM. A crash at
/// any point loses nothing: the next run redoes exactly what was not committed. The
/// first sync of an empty index is a full build.
#[derive(Debug, Parser)]
#[command(name = "crm-sync", version, after_help = AFTER_HELP)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Keep running: sync, wait --interval seconds, sync again, until SIGTERM or SIGINT
    /// (the batch being written is finished, the one being embedded is abandoned).
    #[arg(long)]
    watch: bool,

    /// Seconds between syncs with --watch (overrides sync.interval_secs).
    #[arg(long, value_name = "SECS", requires = "watch")]
    interval: Option<u64>,

    /// Compare the index with the CRM without changing either: every live row's chunks
    /// present with the right content hash and entity id, no point of a deleted or
    /// unknown row, every record settled, no watermark in the future. Lists each
    /// difference; exits 5 when there is any.
    #[arg(long, conflicts_with = "watch")]
    verify: bool,

    /// Print the summary as one JSON line (one per run with --watch).
    #[arg(long)]
    json: bool,
}

const AFTER_HELP: &str = concat!(
    "Exit status: 0 done (changes indexed); 3 nothing to do (the index was already in ",
    "step); 4 partial failure (some batches were committed, then an error or a signal ",
    "stopped the run: what was committed is consistent and the next run continues from ",
    "there); 1 failed (nothing was committed: bad settings, the lease is held by another ",
    "run, the embedder or the index is unreachable, or the index was built with other ",
    "embedding settings, which needs crm-backfill --recreate); 5 (--verify) the index ",
    "differs from the CRM. With --watch: 0 after a signal, 1 when a run cannot continue ",
    "without an operator (fingerprint mismatch)."
);

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let mut overrides = Vec::new();
        if let Some(interval) = args.interval {
            overrides.push(("sync.interval_secs".to_owned(), interval.to_string()));
        }
        let ctx = Context::init(&args.common, overrides)?;
        // Loading the local model is blocking work: done before the runtime starts.
        let embedder = match embedder_from_settings(&ctx.settings, &ctx.env) {
            Ok(embedder) => embedder,
            Err(err) => {
                return print_failure(&err.context("loading the embedding model"), args.json);
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run(&ctx, &args, embedder))
    })
}

async fn run(ctx: &Context, args: &Args, embedder: embed::Embedder) -> anyhow::Result<ExitCode> {
    let settings = &ctx.settings;
    crm_substrate::resources::start_anon_sampling();
    let stop = stop_on_signals();
    let store = match open_store(settings) {
        Ok(store) => store,
        Err(err) => return print_failure(&err, args.json),
    };
    let (encoder, config) = match prepare(settings, &ctx.env, embedder, "crm-sync").await {
        Ok(prepared) => prepared,
        Err(err) => return print_failure(&err, args.json),
    };
    let bars = Arc::new(Bars::new(&ctx.terminal));

    if args.verify {
        let indexer =
            match open_indexer(settings, &store, &encoder, config, bars.clone(), false).await {
                Ok(indexer) => indexer,
                Err(err) => return print_failure(&err, args.json),
            };
        let report = match indexer.verify().await {
            Ok(report) => report,
            Err(err) => return print_failure(&err.into(), args.json),
        };
        bars.finish();
        if args.json {
            cli::print_json_line(&report)?;
        } else {
            cli::print_text(&indexing::render_verify(&report))?;
        }
        return Ok(if report.is_clean() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_DIFFERENCES)
        });
    }

    if !args.watch {
        return Ok(
            match once(ctx, &store, &encoder, &config, &bars, &stop).await {
                Ok(report) => {
                    print_run("crm-sync", &report, args.json)?;
                    exit_code(report.outcome)
                }
                Err(err) => print_failure(&err, args.json)?,
            },
        );
    }

    let interval = Duration::from_secs(settings.sync.interval_secs.max(1));
    tracing::info!(interval_secs = interval.as_secs(), "watching the CRM");
    indexing::watch(
        interval,
        &stop,
        || once(ctx, &store, &encoder, &config, &bars, &stop),
        |report| print_run("crm-sync", report, args.json),
    )
    .await?;
    tracing::info!("stopped watching");
    Ok(ExitCode::SUCCESS)
}

/// One sync. The index is opened for the run and closed after it, so that with the
/// embedded engine other processes (crm-mcp) can open it between runs.
async fn once(
    ctx: &Context,
    store: &crm_store::Store,
    encoder: &Arc<Encoder>,
    config: &sync_watermark::SyncConfig,
    bars: &Arc<Bars>,
    stop: &CancellationToken,
) -> anyhow::Result<RunReport> {
    let indexer = open_indexer(
        &ctx.settings,
        store,
        encoder,
        config.clone(),
        bars.clone(),
        false,
    )
    .await?;
    let report = indexer.sync(stop).await;
    bars.finish();
    Ok(report?)
}
