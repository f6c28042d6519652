//! `crm-mcp`: the MCP server over the CRM. stdio by default; `--http [ADDR]` serves
//! Streamable HTTP (`/mcp` and `/health`) instead.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use crm_store::{Store, StoreConfig};
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::embedding::dense_from_settings;
use crm_substrate::indexing::index_config;
use crm_substrate::settings::Settings;
use mcp_tools::http::{CancellationToken, HttpConfig};
use mcp_tools::search::DenseModel;
use mcp_tools::{CrmTools, SearchBackend, SearchConfig, ToolsConfig};

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
        runtime.block_on(run(&ctx.settings, dense, args.http.is_some()))?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn run(settings: &Settings, dense: DenseModel, http: bool) -> anyhow::Result<()> {
    let store = Store::open(StoreConfig::new(&settings.db_path))
        .with_context(|| format!("opening the CRM database {}", settings.db_path.display()))?;
    let config = ToolsConfig {
        read_only: settings.mcp.read_only,
        collection: settings.qdrant.collection.clone(),
        ..ToolsConfig::default()
    };
    let mut search = SearchConfig::new(index_config(settings));
    search.rrf_k = settings.qdrant.rrf_k;
    let search = SearchBackend::new(search, dense)?;
    let tools = CrmTools::with_search(store, config, search)?;
    tracing::info!(
        db = %settings.db_path.display(),
        read_only = settings.mcp.read_only,
        tools = tools.tool_names().len(),
        "crm-mcp ready"
    );
    if !http {
        mcp_tools::serve_stdio(tools).await?;
        return Ok(());
    }
    let config = HttpConfig {
        token: settings.mcp.token.as_ref().map(|t| t.expose().to_owned()),
        allowed_origins: settings.mcp.allowed_origins.clone(),
        allowed_hosts: settings.mcp.allowed_hosts.clone(),
        ..HttpConfig::new(settings.mcp.http_addr)
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    mcp_tools::http::bind_and_serve(tools, config, shutdown).await?;
    tracing::info!("crm-mcp stopped");
    Ok(())
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
