//! `crm-mcp`: the MCP server over the CRM. stdio by default; `--http [ADDR]` serves
//! Streamable HTTP (`/mcp` and `/health`) instead. `--sync-every SECS` also keeps the
//! index in step from this process, sharing one open index with the searches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use crm_store::{Store, StoreConfig};
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::embedding::{dense_from_settings, embedder_over};
use crm_substrate::indexing::{embedded_shards, index_config, prepare, render_report, watch};
use crm_substrate::resources::ProcessUse;
use crm_substrate::settings::Settings;
use embed::dense::DenseEmbedder;
use index_qdrant::Index;
use mcp_tools::http::{CancellationToken, HttpConfig};
use mcp_tools::search::DenseModel;
use mcp_tools::{CrmTools, SearchBackend, SearchConfig, SyncStatus, ToolsConfig};
use sync_watermark::{Indexer, NoProgress, SyncError};

/// Serve the CRM to AI agents over MCP.
///
/// With no flag, speaks MCP on stdin/stdout (register it with an Agent SDK or Claude
/// Code as a stdio server). With --http, serves Streamable HTTP on ADDR (default
/// mcp.http_addr, 127.0.0.1:8765): /mcp for agents, /health for probes. Binding to
/// anything but loopback requires MCP_HTTP_TOKEN.
#[derive(Debug, Parser)]
#[command(name = "crm-mcp", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Serve Streamable HTTP instead of stdio, on ADDR (e.g. 127.0.0.1:8765) or on
    /// mcp.http_addr when ADDR is left out.
    #[arg(long, value_name = "ADDR")]
    http: Option<Option<SocketAddr>>,

    /// Remove the write tools from the tool list (same as MCP_READ_ONLY=true).
    #[arg(long)]
    read_only: bool,

    /// Also keep the index in step with the CRM from this process: an incremental sync
    /// (what crm-sync does) at start and then SECS seconds after each one ends (default
    /// sync.interval_secs), sharing one open index with the searches. The embedded
    /// engine admits one process at a time and loading a large collection takes
    /// seconds, which a crm-sync --watch beside this server pays on every run and a
    /// search after an idle release pays again; one process doing both pays it once.
    /// Do not also run crm-sync --watch (its runs would find the index taken). Needs an
    /// embedding model (Spark Control or the local one); while Spark Control does not
    /// answer, the server serves and the sync retries every SECS.
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    sync_every: Option<Option<u64>>,
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let mut overrides = Vec::new();
        if args.read_only {
            overrides.push(("mcp.read_only".to_owned(), "true".to_owned()));
        }
        if let Some(Some(addr)) = args.http {
            overrides.push(("mcp.http_addr".to_owned(), addr.to_string()));
        }
        let ctx = Context::init(&args.common, overrides)?;
        // Loading the local model is blocking work: done before the runtime starts.
        let dense: DenseModel = match dense_from_settings(&ctx.settings, &ctx.env) {
            Ok(model) => Ok(model),
            Err(err) => {
                let why = format!("{err:#}");
                tracing::warn!(reason = %why, "no dense embedding model: dense search is off, hybrid falls back to sparse");
                Err(why)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let sync_every = args.sync_every.map(|secs| {
            Duration::from_secs(secs.unwrap_or(ctx.settings.sync.interval_secs).max(1))
        });
        runtime.block_on(run(&ctx, dense, args.http.is_some(), sync_every))?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn run(
    ctx: &Context,
    dense: DenseModel,
    http: bool,
    sync_every: Option<Duration>,
) -> anyhow::Result<()> {
    let settings = &ctx.settings;
    let store = Store::open(StoreConfig::new(&settings.db_path))
        .with_context(|| format!("opening the CRM database {}", settings.db_path.display()))?;
    let config = ToolsConfig {
        read_only: settings.mcp.read_only,
        collection: settings.qdrant.collection.clone(),
        ..ToolsConfig::default()
    };
    let mut search = SearchConfig::new(index_config(settings));
    search.rrf_k = settings.qdrant.rrf_k;
    let shutdown = CancellationToken::new();
    let mut syncing = None;
    let sync_status = SyncStatus::default();
    let search = match sync_every {
        None => SearchBackend::new(search, dense)?,
        Some(interval) => {
            let dense_model = match &dense {
                Ok(model) => model.clone(),
                Err(why) => anyhow::bail!("--sync-every needs an embedding model: {why}"),
            };
            let index = Arc::new(
                Index::open(search.index.clone())
                    .await
                    .context("opening the search index")?,
            );
            // Its files were evicted from the page cache by whoever closed it last.
            index.warm_cache();
            let setup = SyncSetup {
                settings: settings.clone(),
                env: ctx.env.clone(),
                store: store.clone(),
                index: index.clone(),
                dense: dense_model,
            };
            syncing = Some(tokio::spawn(sync_loop(
                setup,
                interval,
                shutdown.clone(),
                sync_status.clone(),
            )));
            SearchBackend::sharing(search, dense, index)?
        }
    };
    let tools = CrmTools::with_search(store, config, search)?;
    if syncing.is_some() {
        tools.report_sync(sync_status);
    }
    tracing::info!(
        db = %settings.db_path.display(),
        read_only = settings.mcp.read_only,
        tools = tools.tool_names().len(),
        sync_every_secs = sync_every.map(|d| d.as_secs()),
        "crm-mcp ready"
    );
    let served = if http {
        let config = HttpConfig {
            token: settings.mcp.token.as_ref().map(|t| t.expose().to_owned()),
            allowed_origins: settings.mcp.allowed_origins.clone(),
            allowed_hosts: settings.mcp.allowed_hosts.clone(),
            ..HttpConfig::new(settings.mcp.http_addr)
        };
        tokio::spawn(cancel_on_signal(shutdown.clone()));
        mcp_tools::http::bind_and_serve(tools, config, shutdown.clone()).await
    } else {
        mcp_tools::serve_stdio(tools).await
    };
    // The sync in progress finishes the batch it is writing, then the loop ends.
    shutdown.cancel();
    if let Some(task) = syncing
        && let Err(err) = task.await
    {
        tracing::error!(error = %err, "the sync loop panicked");
    }
    served?;
    tracing::info!("crm-mcp stopped");
    Ok(())
}

/// What the sync loop needs to build its indexer.
struct SyncSetup {
    settings: Settings,
    env: BTreeMap<String, String>,
    store: Store,
    index: Arc<Index>,
    dense: DenseEmbedder,
}

impl SyncSetup {
    /// The indexer over the shared index. Learning the embedder's fingerprint embeds a
    /// probe text, so this fails while Spark Control does not answer.
    async fn indexer(&self) -> anyhow::Result<Indexer> {
        let (encoder, mut sync_config) = prepare(
            &self.settings,
            &self.env,
            embedder_over(self.dense.clone())?,
            "crm-mcp",
        )
        .await?;
        sync_config.collection.shards = embedded_shards(&self.settings, &self.store, false)?;
        Ok(Indexer::new(
            self.store.clone(),
            self.index.clone(),
            encoder,
            sync_config,
            Arc::new(NoProgress),
        )?)
    }
}

/// Syncs now and then `interval` after each run ends, until `stop`, reporting its state
/// to `status`. Failures are logged and retried at the next interval, including an
/// embedder that does not answer when the server starts (the server serves meanwhile),
/// except a fingerprint mismatch, which needs an operator (`crm-backfill --recreate`),
/// and a setup that cannot work (settings the indexer refuses): those end the loop with
/// an error logged and the state `stopped`, and searches go on.
async fn sync_loop(
    setup: SyncSetup,
    interval: Duration,
    stop: CancellationToken,
    status: SyncStatus,
) {
    tracing::info!(
        interval_secs = interval.as_secs(),
        "keeping the index in step with the CRM"
    );
    // Load the collection now (seconds at a million points), not in the first search or
    // the first sync that writes.
    let started = std::time::Instant::now();
    match setup.index.exists().await {
        Ok(true) => match setup.index.info().await {
            Ok(info) => tracing::info!(
                points = info.points_count,
                duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "index loaded"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "the index does not load; the sync will say why")
            }
        },
        Ok(false) => tracing::info!("no index yet: the first sync builds it"),
        Err(err) => tracing::warn!(error = %err, "cannot tell whether the index exists"),
    }
    let indexer = loop {
        match setup.indexer().await {
            Ok(indexer) => break indexer,
            // Anything but the embedder not answering is not going to change by itself.
            Err(err)
                if !matches!(
                    err.downcast_ref::<SyncError>(),
                    Some(SyncError::Embed { .. })
                ) =>
            {
                let reason = format!("{err:#}");
                status.stopped(reason.clone());
                tracing::error!(reason = %reason, "the sync cannot start; searches and reads go on");
                return;
            }
            Err(err) => {
                let reason = format!("{err:#}");
                status.waiting(format!(
                    "{reason} (retrying every {} s)",
                    interval.as_secs()
                ));
                tracing::warn!(
                    reason = %reason,
                    retry_in_secs = interval.as_secs(),
                    "the sync cannot start yet; searches and reads go on"
                );
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    };
    status.running();
    let watched = watch(
        interval,
        &stop,
        || async { Ok(indexer.sync(&stop).await?) },
        |report| {
            tracing::info!(
                outcome = ?report.outcome,
                duration_ms = report.duration_ms,
                rows_indexed = report.totals.rows_indexed,
                summary = %render_report("sync", report, ProcessUse::default()),
                "sync finished"
            );
            Ok(())
        },
    )
    .await;
    if let Err(why) = watched {
        let reason = format!("{why:#}");
        status.stopped(reason.clone());
        tracing::error!(reason = %reason, "stopped syncing: the index needs crm-backfill --recreate");
    }
}

/// Cancels `shutdown` on SIGTERM (how StartOS and Docker stop a daemon) or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: finishing requests in flight");
    shutdown.cancel();
}
