//! `crm-backfill`: a full (re)build of the search index.
//!
//! Test hook: `CRM_SYNC_FAULT=STAGE:N` (e.g. `after_upsert:3`) aborts the process when the
//! N-th batch reaches STAGE, like a crash there. Never set it in production.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::embedding::embedder_from_settings;
use crm_substrate::indexing::{
    Bars, EXIT_CODES_HELP, exit_code, open_indexer, open_store, prepare, print_failure, print_run,
    stop_on_signals,
};

/// Build the search index from every CRM row.
///
/// Renders, chunks and embeds every row and writes its points, then records the rows
/// and watermarks so that crm-sync continues from there. Rows already in step are
/// skipped, so an interrupted backfill resumes where it stopped. With --recreate the
/// collection is dropped and created again and every record forgotten first: needed
/// after a change of embedding model, dimension, prefixes, chunking or BM25 settings
/// (crm-sync refuses to mix vectors and says so). SIGINT or SIGTERM stops it after the
/// batch being written.
#[derive(Debug, Parser)]
#[command(name = "crm-backfill", version, after_help = EXIT_CODES_HELP)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Drop and recreate the collection, and forget its records and watermarks, first.
    #[arg(long)]
    recreate: bool,

    /// Print the summary as one JSON line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let ctx = Context::init(&args.common, Vec::new())?;
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
    let (encoder, config) = match prepare(settings, &ctx.env, embedder, "crm-backfill").await {
        Ok(prepared) => prepared,
        Err(err) => return print_failure(&err, args.json),
    };
    let bars = Arc::new(Bars::new(&ctx.terminal));
    let indexer = match open_indexer(
        settings,
        &store,
        &encoder,
        config,
        bars.clone(),
        args.recreate,
    )
    .await
    {
        Ok(indexer) => indexer,
        Err(err) => return print_failure(&err, args.json),
    };
    let report = match indexer.backfill(args.recreate, &stop).await {
        Ok(report) => report,
        Err(err) => return print_failure(&err.into(), args.json),
    };
    bars.finish();
    print_run("crm-backfill", &report, args.json)?;
    Ok(exit_code(report.outcome))
}
