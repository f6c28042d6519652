//! `crm-demo run`: generate (or reuse) a CRM, resolve, score against the truth, index,
//! and search it the way an agent does, through the MCP server's `search` tool.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use crm_store::Store;
use crm_store::synthetic::{self, GenerationReport};
use crm_substrate::cli::{self, Context};
use crm_substrate::embedding::{dense_from_settings, embedder_from_settings};
use crm_substrate::indexing::{self, Bars, open_indexer, open_store, prepare, stop_on_signals};
use crm_substrate::resolving::{ResolveBars, resolve_config, run_options, thousands};
use crm_substrate::resources::ProcessUse;
use entity_resolve::quality::{QualityReport, score_against_truth};
use entity_resolve::{EntityKind, Progress as _, ResolveSummary, resolve};
use mcp_tools::{CrmTools, SearchBackend, SearchConfig, ToolsConfig};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use serde::Serialize;
use serde_json::{Value, json};
use sync_watermark::{RunOutcome, RunReport};

use super::{RunArgs, generate_crm, run_default, summary};

/// Questions asked when `--query` is not given: one the keywords answer, one only the
/// meaning does, one in between.
const DEFAULT_QUERIES: [&str; 3] = [
    "BitLicense application",
    "startups worried about how many months of money they have left",
    "multisig key management for bitcoin custody",
];

const MODES: [&str; 3] = ["hybrid", "dense", "sparse"];

/// Everything `crm-demo run` did, for `--json`.
#[derive(Debug, Serialize)]
struct DemoReport {
    db_path: String,
    generated: Option<GenerationReport>,
    resolve: ResolveSummary,
    quality: Option<Quality>,
    pending_candidates: u64,
    index: RunReport,
    searches: Vec<SearchRun>,
}

#[derive(Debug, Serialize)]
struct Quality {
    people: QualityReport,
    organizations: QualityReport,
}

#[derive(Debug, Serialize)]
struct SearchRun {
    query: String,
    mode: String,
    mode_used: Option<String>,
    fallback_reason: Option<String>,
    error: Option<String>,
    hits: Vec<Hit>,
}

#[derive(Debug, Serialize)]
struct Hit {
    rank: u64,
    score: f64,
    source_table: String,
    source_id: i64,
    entity_id: Option<String>,
    chunk: String,
}

pub(crate) fn run(ctx: &Context, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let settings = &ctx.settings;
    let db = settings.db_path.clone();
    let embedded = settings.qdrant.url.is_none();

    // The model first: without it nothing below can finish.
    let embedder = embedder_from_settings(settings, &ctx.env).context(
        "loading the embedding model (scripts/fetch-model.sh fetches the in-process one)",
    )?;
    let dense = dense_from_settings(settings, &ctx.env).map_err(|e| format!("{e:#}"));

    // 1. The CRM.
    let generated = if args.force || !db.exists() {
        let config = args.generation.config(run_default());
        if args.force && embedded {
            remove_index_dir(&settings.embedded_index_dir())?;
        }
        let report = generate_crm(ctx, &config, args.force)?;
        if !args.json {
            cli::print_text(&format!("1. generate\n\n{}\n", summary(&report)))?;
        }
        Some(report)
    } else {
        if !args.json {
            cli::print_text(&format!(
                "1. using the existing CRM {} (pass --force to generate a new one)\n\n",
                db.display()
            ))?;
        }
        None
    };

    // 2. Entities.
    let store = open_store(settings)?;
    let (resolved, quality, pending) = resolve_step(ctx, &store)?;
    if !args.json {
        cli::print_text(&render_resolve(&resolved, quality.as_ref(), pending))?;
    }

    // 3. The index. A fresh CRM gets a fresh embedded collection; a server's collection
    // is never dropped here.
    let recreate = generated.is_some() && embedded;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let index = runtime.block_on(index_step(ctx, &store, embedder, recreate))?;
    if !args.json {
        cli::print_text(&format!(
            "3. index\n\n{}\n",
            indexing::render_report("crm-backfill", &index, ProcessUse::default())
        ))?;
    }
    if matches!(
        index.outcome,
        RunOutcome::Failed | RunOutcome::PartialFailure
    ) {
        bail!(
            "building the index did not finish: {}",
            index.error.as_deref().unwrap_or("see the log")
        );
    }

    // 4. Questions, through the MCP server's search tool.
    let queries: Vec<String> = if args.query.is_empty() {
        DEFAULT_QUERIES.iter().map(|q| (*q).to_owned()).collect()
    } else {
        args.query.clone()
    };
    let searches = runtime.block_on(search_step(ctx, &store, dense, &queries, args.hits))?;

    if args.json {
        cli::print_json_line(&DemoReport {
            db_path: db.display().to_string(),
            generated,
            resolve: resolved,
            quality,
            pending_candidates: pending,
            index,
            searches,
        })?;
    } else {
        cli::print_text(&render_searches(&searches))?;
        cli::print_text(&format!(
            "\nNext: serve this CRM to an agent with `crm-mcp --db {}` (see \
             crates/mcp-tools/README.md), keep the index fresh with `crm-sync --db {} --watch`.\n",
            db.display(),
            db.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the embedded index directory of a CRM about to be replaced.
fn remove_index_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("removing the old index {}", dir.display())),
    }
}

fn resolve_step(
    ctx: &Context,
    store: &Store,
) -> anyhow::Result<(ResolveSummary, Option<Quality>, u64)> {
    let db = &ctx.settings.db_path;
    let config = resolve_config(ctx)?;
    let options = run_options(ctx, "crm-demo", false, false);
    let bars = ResolveBars::new(&ctx.terminal);
    let mut conn = store.writer()?;
    let summary = resolve(&mut conn, &config, &options, &bars)
        .with_context(|| format!("resolving entities in {}", db.display()))?;
    bars.finish();
    let truth_path = synthetic::truth_path(db);
    let quality = if truth_path.exists() {
        let truth = synthetic::read_truth(&truth_path)?;
        Some(Quality {
            people: score_against_truth(&conn, EntityKind::Person, &truth)?,
            organizations: score_against_truth(&conn, EntityKind::Organization, &truth)?,
        })
    } else {
        None
    };
    let pending: i64 = conn
        .query_row(
            "SELECT count(*) FROM entity_candidates WHERE status = 'pending'",
            [],
            |r| r.get(0),
        )
        .context("counting pending candidates")?;
    Ok((summary, quality, u64::try_from(pending).unwrap_or(0)))
}

fn render_resolve(s: &ResolveSummary, quality: Option<&Quality>, pending: u64) -> String {
    let mut out = String::from("2. resolve entities\n\n");
    for (label, k) in [("people", &s.people), ("organizations", &s.organizations)] {
        let _ = writeln!(
            out,
            "{label}: {} rows -> {} entities ({} links added, {} candidates proposed)",
            thousands(k.rows),
            thousands(k.entities),
            thousands(k.links_added),
            thousands(k.candidates_proposed),
        );
    }
    if let Some(q) = quality {
        let _ = writeln!(out, "\nagainst the ground truth:");
        for (label, r) in [("people", &q.people), ("organizations", &q.organizations)] {
            let _ = writeln!(
                out,
                "  {label}: link precision {:.4}, link recall {:.3}, recall with candidates \
                 {:.3}, trap pairs linked {} of {}",
                r.link_precision(),
                r.link_recall(),
                r.reach_recall(),
                r.trap_violations,
                r.traps
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} candidate pairs wait for the fuzzy tier (crm-fuzzy, with a chat model) or a \
         person (the review_merge_candidate tool); resolved in {:.1} s\n",
        thousands(pending),
        s.elapsed_ms as f64 / 1000.0
    );
    out
}

async fn index_step(
    ctx: &Context,
    store: &Store,
    embedder: embed::Embedder,
    recreate: bool,
) -> anyhow::Result<RunReport> {
    let stop = stop_on_signals();
    let (encoder, config) = prepare(&ctx.settings, &ctx.env, embedder, "crm-demo").await?;
    let bars = Arc::new(Bars::new(&ctx.terminal));
    // The indexer holds the embedded index's lock; it is dropped before searching.
    let indexer = open_indexer(&ctx.settings, store, &encoder, config, bars.clone(), false).await?;
    let report = indexer.backfill(recreate, &stop).await?;
    bars.finish();
    Ok(report)
}

async fn search_step(
    ctx: &Context,
    store: &Store,
    dense: Result<embed::dense::DenseEmbedder, String>,
    queries: &[String],
    hits: u32,
) -> anyhow::Result<Vec<SearchRun>> {
    let settings = &ctx.settings;
    let mut search = SearchConfig::new(indexing::index_config(settings));
    search.rrf_k = settings.qdrant.rrf_k;
    let backend = SearchBackend::new(search, dense)?;
    let tools = CrmTools::with_search(
        store.clone(),
        ToolsConfig {
            read_only: true,
            collection: settings.qdrant.collection.clone(),
            ..ToolsConfig::default()
        },
        backend,
    )?;
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        match tools.serve(server_io).await {
            Ok(running) => {
                let _ = running.waiting().await;
            }
            Err(err) => tracing::error!(error = %err, "the in-process MCP server did not start"),
        }
    });
    let client_info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("crm-demo", env!("CARGO_PKG_VERSION")),
    );
    let client = client_info
        .serve(client_io)
        .await
        .context("connecting to the in-process MCP server")?;

    let mut runs = Vec::new();
    for query in queries {
        for mode in MODES {
            let arguments = json!({ "query": query, "mode": mode, "limit": hits });
            let Value::Object(arguments) = arguments else {
                unreachable!("json! of an object literal is an object")
            };
            let result = client
                .call_tool(CallToolRequestParams::new("search").with_arguments(arguments))
                .await
                .with_context(|| format!("calling search ({mode}) for {query:?}"))?;
            runs.push(search_run(query, mode, &result));
        }
    }
    client.cancel().await.ok();
    server.abort();
    Ok(runs)
}

/// Reads a `search` answer: its structured content, or the tool error's text.
fn search_run(query: &str, mode: &str, result: &rmcp::model::CallToolResult) -> SearchRun {
    let text = || {
        result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut run = SearchRun {
        query: query.to_owned(),
        mode: mode.to_owned(),
        mode_used: None,
        fallback_reason: None,
        error: None,
        hits: Vec::new(),
    };
    let structured = match (&result.structured_content, result.is_error) {
        (Some(v), Some(false) | None) => v,
        _ => {
            run.error = Some(text());
            return run;
        }
    };
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    run.mode_used = str_of(structured, "mode_used");
    run.fallback_reason = str_of(structured, "fallback_reason");
    for hit in structured
        .get("hits")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        run.hits.push(Hit {
            rank: hit.get("rank").and_then(Value::as_u64).unwrap_or(0),
            score: hit.get("score").and_then(Value::as_f64).unwrap_or(0.0),
            source_table: str_of(hit, "source_table").unwrap_or_default(),
            source_id: hit.get("source_id").and_then(Value::as_i64).unwrap_or(0),
            entity_id: str_of(hit, "entity_id"),
            chunk: hit
                .get("chunk")
                .and_then(|c| c.get("text"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    run
}

fn render_searches(runs: &[SearchRun]) -> String {
    let mut out = String::from("4. search (the MCP search tool, as an agent calls it)\n");
    let mut last_query = None;
    for run in runs {
        if last_query != Some(&run.query) {
            let _ = writeln!(out, "\n{:?}", run.query);
            last_query = Some(&run.query);
        }
        let used = match (&run.mode_used, &run.fallback_reason) {
            (Some(used), Some(why)) if *used != run.mode => {
                format!(" (fell back to {used}: {why})")
            }
            _ => String::new(),
        };
        let _ = writeln!(out, "  {}{used}", run.mode);
        if let Some(err) = &run.error {
            let _ = writeln!(out, "    error: {err}");
            continue;
        }
        if run.hits.is_empty() {
            let _ = writeln!(out, "    no hits");
        }
        for hit in &run.hits {
            let _ = writeln!(
                out,
                "    {}. {}:{} ({:.4})  {}",
                hit.rank,
                hit.source_table,
                hit.source_id,
                hit.score,
                snippet(&hit.chunk, 100)
            );
        }
    }
    out
}

/// The first `max` characters of `text` on one line.
fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_line_and_bounded() {
        assert_eq!(snippet("a\n b\t c", 10), "a b c");
        let long = "word ".repeat(100);
        let s = snippet(&long, 20);
        assert_eq!(s.chars().count(), 21);
        assert!(s.ends_with('…'));
    }
}
