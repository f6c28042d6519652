//! What `crm-backfill`, `crm-sync` and `crm-bench index` share: the index and the
//! indexer the settings describe, progress bars, the summary, and the exit codes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::resources::ProcessUse;
use anyhow::Context as _;
use crm_store::{SourceTable, Store, StoreConfig};
use index_qdrant::{ApiKey, Index, IndexConfig};
use indicatif::ProgressBar;
use serde::Serialize;
use sync_watermark::{
    CancellationToken, Encoder, FailureKind, FaultPoint, Indexer, LeaseConfig, ProgressEvent,
    ProgressSink, RunOutcome, RunReport, SyncConfig, SyncError, VerifyReport,
};

use crate::cli::Terminal;
use crate::progress;
use crate::settings::Settings;

/// Test hook read by `crm-backfill` and `crm-sync`: `STAGE:N` makes the process abort
/// when the N-th batch reaches STAGE (see [`sync_watermark::FaultPoint`]). Never set it
/// in production.
pub const FAULT_ENV: &str = "CRM_SYNC_FAULT";

/// Exit status: changes were indexed and the run finished.
pub const EXIT_DONE: u8 = 0;
/// Exit status: the run did not start or committed nothing (see the error).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the index was already in step with the CRM.
pub const EXIT_NOTHING_TO_DO: u8 = 3;
/// Exit status: some batches were committed, then an error or a signal stopped the run.
pub const EXIT_PARTIAL: u8 = 4;
/// Exit status of `crm-sync --verify`: the index differs from the CRM.
pub const EXIT_DIFFERENCES: u8 = 5;

/// The exit-status table, for `--help`.
pub const EXIT_CODES_HELP: &str = "Exit status: 0 done (changes indexed); 3 nothing to do \
(the index was already in step); 4 partial failure (some batches were committed, then an \
error or a signal stopped the run: what was committed is consistent and the next run \
continues from there); 1 failed (nothing was committed: bad settings, the lease is held by \
another run, the embedder or the index is unreachable, or the index was built with other \
embedding settings, which needs crm-backfill --recreate).";

/// The exit status of a run's outcome.
pub fn exit_code(outcome: RunOutcome) -> ExitCode {
    ExitCode::from(match outcome {
        RunOutcome::Done => EXIT_DONE,
        RunOutcome::NothingToDo => EXIT_NOTHING_TO_DO,
        RunOutcome::PartialFailure => EXIT_PARTIAL,
        RunOutcome::Failed => EXIT_FAILED,
    })
}

/// Where the index is: a Qdrant server when `qdrant.url` is set, else the embedded engine
/// beside the database.
pub fn index_config(settings: &Settings) -> IndexConfig {
    let q = &settings.qdrant;
    let config = match &q.url {
        Some(url) => IndexConfig::server(url, q.api_key.as_ref().map(|k| ApiKey::new(k.expose()))),
        None => IndexConfig::embedded(settings.embedded_index_dir()),
    };
    config.with_collection(&q.collection)
}

/// This host's name, for the run lease (a dead holder on this host is taken over).
pub fn hostname(env: &BTreeMap<String, String>) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| env.get("HOSTNAME").cloned())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// The indexer's configuration from the settings, for the binary `holder`. The test hook
/// [`FAULT_ENV`] is read from `env` here, and only here.
pub fn sync_config(
    settings: &Settings,
    env: &BTreeMap<String, String>,
    holder: &str,
) -> anyhow::Result<SyncConfig> {
    let mut config = SyncConfig::new(LeaseConfig::new(holder, hostname(env)));
    config.batch_size = usize::try_from(settings.sync.batch_size.max(1)).unwrap_or(1024);
    config.overlap = Duration::from_secs(u64::from(settings.sync.overlap_secs));
    config.collection.hnsw_m = Some(settings.qdrant.hnsw_m as usize);
    config.collection.hnsw_ef_construct = Some(settings.qdrant.hnsw_ef_construct as usize);
    if let Some(fault) = env.get(FAULT_ENV).filter(|v| !v.is_empty()) {
        let point: FaultPoint = fault
            .parse()
            .with_context(|| format!("${FAULT_ENV} (a test hook)"))?;
        tracing::warn!(fault = %point, "test fault hook armed: the process will abort there");
        config.fault = Some(point);
    }
    Ok(config)
}

/// Opens the CRM (applying pending Phase-0 migrations).
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    Store::open(StoreConfig::new(&settings.db_path))
        .with_context(|| format!("opening the CRM database {}", settings.db_path.display()))
}

/// What every indexing run needs besides the CRM: the encoder over `embedder` (its
/// fingerprint read) and the run configuration for the binary `holder`.
pub async fn prepare(
    settings: &Settings,
    env: &BTreeMap<String, String>,
    embedder: embed::Embedder,
    holder: &str,
) -> anyhow::Result<(Arc<Encoder>, SyncConfig)> {
    let encoder = Arc::new(Encoder::new(Arc::new(embedder)).await?);
    let config = sync_config(settings, env, holder)?;
    Ok((encoder, config))
}

/// CRM rows (all four tables) from which `qdrant.embedded_shards = 0` (auto) creates an
/// embedded collection of several shards on a machine of two cores or more; below it
/// one shard is fast enough and keeps BM25 statistics exact (see the README's section
/// on shards).
pub const AUTO_SHARDS_FROM_ROWS: u64 = 500_000;

/// CRM rows per shard of an automatic count from [`AUTO_SHARDS_FROM_ROWS`] on: two
/// shards at 500k rows, three at 1M.
///
/// At 1M rows on 2 cores (jemalloc), three shards ingested 6,985 chunks/s where two took
/// 6,705 and one 5,247, with an anonymous peak of 0.74 GB against 0.98 and 1.61 (each
/// shard's optimizer merge is smaller) and 13% less optimize time; hybrid p50 rose from
/// 3.5 to 3.9–4.2 ms on a fresh index (4.5–5.0 after the bench's syncs).
pub const AUTO_ROWS_PER_SHARD: u64 = 350_000;

/// The most shards an automatic count chooses: the most measured (more can be set).
///
/// Three even on two cores, where searches would be faster with two (hybrid p50 3.91
/// against 5.02 ms at 1M rows, same day): inside a 1 GiB memory limit the three-shard
/// build finished and the two-shard one was killed in its first merge (983 MB
/// anonymous).
pub const AUTO_MAX_SHARDS: usize = 3;

/// The shard count of an embedded collection this run may create: the setting, or for
/// `0` (auto) [`auto_shards`] of the CRM's rows and the machine's cores. The CRM is
/// counted only when the run will create the collection (`recreate`, or no collection
/// directory yet): an existing collection keeps the shards it was created with.
pub fn embedded_shards(
    settings: &Settings,
    store: &Store,
    recreate: bool,
) -> anyhow::Result<usize> {
    let setting = settings.qdrant.embedded_shards;
    if setting > 0 {
        return Ok(usize::try_from(setting).unwrap_or(1));
    }
    let collection_dir = settings
        .embedded_index_dir()
        .join(&settings.qdrant.collection);
    if settings.qdrant.url.is_some() || (!recreate && collection_dir.exists()) {
        return Ok(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if auto_shards(u64::MAX, cores) == 1 {
        return Ok(1);
    }
    let conn = store.reader().context("counting the CRM's rows")?;
    let counts = crm_store::queries::row_counts(&conn).context("counting the CRM's rows")?;
    let rows = counts.people + counts.organizations + counts.interactions + counts.deals;
    let shards = auto_shards(rows, cores);
    tracing::info!(
        rows,
        cores,
        shards,
        "chose the shards of the embedded collection"
    );
    Ok(shards)
}

/// The automatic shard count of a CRM of `rows` rows on `cores` cores: one below
/// [`AUTO_SHARDS_FROM_ROWS`] rows or on one core, else one per [`AUTO_ROWS_PER_SHARD`]
/// rows (rounded up), two to [`AUTO_MAX_SHARDS`].
pub fn auto_shards(rows: u64, cores: usize) -> usize {
    if cores < 2 || rows < AUTO_SHARDS_FROM_ROWS {
        return 1;
    }
    usize::try_from(rows.div_ceil(AUTO_ROWS_PER_SHARD))
        .unwrap_or(AUTO_MAX_SHARDS)
        .clamp(2, AUTO_MAX_SHARDS)
}

/// Opens the index the settings name and builds an indexer over it; `recreate` says
/// whether the run re-creates the collection (see [`embedded_shards`]).
pub async fn open_indexer(
    settings: &Settings,
    store: &Store,
    encoder: &Arc<Encoder>,
    mut config: SyncConfig,
    progress: Arc<dyn ProgressSink>,
    recreate: bool,
) -> anyhow::Result<Indexer> {
    config.collection.shards = embedded_shards(settings, store, recreate)?;
    let index = Index::open(index_config(settings))
        .await
        .context("opening the search index")?;
    Ok(Indexer::new(
        store.clone(),
        Arc::new(index),
        encoder.clone(),
        config,
        progress,
    )?)
}

/// Progress bars: one per table, a bar when the row count is known, a spinner otherwise;
/// a timer while the index is optimized.
pub struct Bars {
    terminal: Terminal,
    bars: Mutex<BTreeMap<SourceTable, ProgressBar>>,
    verify: Mutex<Option<ProgressBar>>,
    optimize: Mutex<Option<ProgressBar>>,
}

impl Bars {
    /// Bars drawn on `terminal` (hidden when stderr is not a terminal).
    pub fn new(terminal: &Terminal) -> Self {
        Self {
            terminal: terminal.clone(),
            bars: Mutex::new(BTreeMap::new()),
            verify: Mutex::new(None),
            optimize: Mutex::new(None),
        }
    }

    /// Clears every bar.
    pub fn finish(&self) {
        if let Ok(mut bars) = self.bars.lock() {
            for (_, bar) in std::mem::take(&mut *bars) {
                bar.finish_and_clear();
            }
        }
        for slot in [&self.verify, &self.optimize] {
            if let Ok(mut slot) = slot.lock()
                && let Some(bar) = slot.take()
            {
                bar.finish_and_clear();
            }
        }
    }
}

impl ProgressSink for Bars {
    fn event(&self, event: ProgressEvent) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            ProgressEvent::TableStarted { table, rows } => {
                let bar = match rows {
                    Some(n) => progress::bar(&self.terminal, n, table.as_str()),
                    None => progress::spinner(&self.terminal, table.as_str()),
                };
                if let Some(old) = bars.insert(table, bar) {
                    old.finish_and_clear();
                }
            }
            ProgressEvent::BatchCommitted { table, rows, .. } => {
                if let Some(bar) = bars.get(&table) {
                    bar.inc(rows);
                }
            }
            ProgressEvent::TableFinished { table } => {
                if let Some(bar) = bars.get(&table) {
                    bar.finish();
                }
            }
            ProgressEvent::OptimizeStarted => {
                drop(bars);
                if let Ok(mut optimize) = self.optimize.lock() {
                    let timer = progress::timer(
                        &self.terminal,
                        "optimize",
                        "building the search graphs of the new points",
                    );
                    if let Some(old) = optimize.replace(timer) {
                        old.finish_and_clear();
                    }
                }
            }
            ProgressEvent::OptimizeFinished => {
                drop(bars);
                if let Ok(mut optimize) = self.optimize.lock()
                    && let Some(timer) = optimize.take()
                {
                    timer.finish_with_message("done");
                }
            }
            ProgressEvent::Verified { what, count } => {
                drop(bars);
                if let Ok(mut verify) = self.verify.lock() {
                    let bar =
                        verify.get_or_insert_with(|| progress::spinner(&self.terminal, "verify"));
                    bar.set_message(format!("{count} {what}"));
                }
            }
        }
    }
}

/// The `--json` summary of a run: the report, and the process's peak memory and CPU time.
#[derive(Debug, Serialize)]
pub struct RunSummary<'a> {
    /// The run.
    #[serde(flatten)]
    pub report: &'a RunReport,
    /// What the process used.
    #[serde(flatten)]
    pub used: ProcessUse,
}

/// The `--json` summary of a failure that happened before a run could start.
#[derive(Debug, Serialize)]
pub struct FailureSummary<'a> {
    /// Always `failed`.
    pub outcome: RunOutcome,
    /// What went wrong.
    pub error: &'a str,
    /// Peak resident memory of this process, in bytes.
    pub peak_rss_bytes: Option<u64>,
}

use crate::resolving::thousands as n;

/// The human summary of a run.
pub fn render_report(title: &str, r: &RunReport, used: ProcessUse) -> String {
    let mut out = String::new();
    let outcome = match r.outcome {
        RunOutcome::Done => "done",
        RunOutcome::NothingToDo => "nothing to do",
        RunOutcome::PartialFailure => "partial failure",
        RunOutcome::Failed => "failed",
    };
    let _ = writeln!(out, "{title}: {outcome} (collection {})\n", r.collection);
    let tables: Vec<SourceTable> = r.tables.keys().copied().collect();
    let mut header = String::from("| |");
    let mut rule = String::from("| --- |");
    for t in &tables {
        let _ = write!(header, " {t} |");
        rule.push_str(" ---: |");
    }
    header.push_str(" total |");
    rule.push_str(" ---: |");
    let _ = writeln!(out, "{header}\n{rule}");
    type Field = fn(&sync_watermark::TableCounts) -> u64;
    let rows: [(&str, Field); 12] = [
        ("rows read", |c| c.rows_read),
        ("unchanged", |c| c.rows_unchanged),
        ("indexed", |c| c.rows_indexed),
        ("chunks upserted", |c| c.chunks_upserted),
        ("removed (soft-deleted, empty)", |c| c.rows_removed),
        ("hard-deleted", |c| c.rows_hard_deleted),
        ("entity ids patched", |c| c.entity_updates),
        ("records only", |c| c.records_only),
        ("point ids deleted", |c| c.points_deleted),
        ("dependents re-rendered", |c| c.dependents_checked),
        ("found by reconciliation", |c| c.repairs_found),
        ("redone after a conflict", |c| c.conflicts_redone),
    ];
    for (label, field) in rows {
        let _ = write!(out, "| {label} |");
        for t in &tables {
            let v = r.tables.get(t).map_or(0, field);
            let _ = write!(out, " {} |", n(v));
        }
        let _ = writeln!(out, " {} |", n(field(&r.totals)));
    }
    let _ = writeln!(out);
    if r.recreated {
        let _ = writeln!(out, "the collection was (re)created first");
    }
    let _ = write!(
        out,
        "{} batches committed in {:.1} s",
        n(r.batches_committed),
        r.duration_ms as f64 / 1000.0
    );
    if let Some(points) = r.points_in_index {
        let _ = write!(out, "; {} points in the index", n(points));
    }
    if let Some(rss) = used.peak_rss_bytes {
        let _ = write!(out, "; peak memory {:.0} MB", rss as f64 / 1e6);
        if let Some(anon) = used.peak_anon_bytes {
            let _ = write!(
                out,
                " ({:.0} MB of it not file-backed)",
                anon.min(rss) as f64 / 1e6
            );
        }
    }
    if let Some(cpu) = used.cpu_seconds {
        let _ = write!(out, "; {cpu:.1} CPU s");
    }
    let _ = writeln!(out);
    if let Some(id) = r.run_id {
        let _ = writeln!(out, "run logged as ingest_runs.id = {id}");
    }
    if let Some(error) = &r.error {
        let _ = writeln!(out, "error: {error}");
    }
    out
}

/// The human summary of a verification.
pub fn render_verify(r: &VerifyReport) -> String {
    let mut out = String::new();
    let verdict = if r.is_clean() {
        "clean: the index and the records match the CRM".to_owned()
    } else {
        format!("{} difference(s)", n(r.total()))
    };
    let _ = writeln!(
        out,
        "crm-sync --verify: {verdict} (collection {}, {} rows, {} points)",
        r.collection,
        n(r.rows_checked),
        n(r.points_checked)
    );
    for (kind, count) in &r.counts {
        let _ = writeln!(out, "  {kind:?}: {}", n(*count));
    }
    if r.behind_watermark > 0 {
        let _ = writeln!(
            out,
            "  {} of them at or before their table's watermark (the sync believes those rows \
             are done: run crm-backfill to repair)",
            n(r.behind_watermark)
        );
    }
    for d in &r.differences {
        let at = match (d.table, d.source_id, d.chunk_index) {
            (Some(t), Some(id), Some(k)) => format!("{t}:{id} chunk {k}"),
            (Some(t), Some(id), None) => format!("{t}:{id}"),
            (Some(t), None, _) => t.to_string(),
            _ => "index".to_owned(),
        };
        let _ = writeln!(out, "  - {:?} {at}: {}", d.kind, d.detail);
    }
    if r.total() > r.differences.len() as u64 {
        let _ = writeln!(
            out,
            "  … {} more",
            n(r.total() - r.differences.len() as u64)
        );
    }
    out
}

/// Prints a run's summary: one JSON line with `--json`, else the table.
pub fn print_run(title: &str, report: &RunReport, json: bool) -> anyhow::Result<()> {
    let used = ProcessUse::now();
    if json {
        crate::cli::print_json_line(&RunSummary { report, used })
    } else {
        crate::cli::print_text(&render_report(title, report, used))
    }
}

/// The loop of `crm-sync --watch` and `crm-mcp --sync-every`: runs `once` now and then
/// `interval` after each run ends, until `stop`, handing every report to `report`. A run
/// that could not start (lease held, index taken, embedder down) is logged and tried
/// again at the next interval; a fingerprint mismatch, which needs an operator
/// (`crm-backfill --recreate`), ends the loop with that error.
pub async fn watch<F, Fut>(
    interval: Duration,
    stop: &CancellationToken,
    mut once: F,
    mut report: impl FnMut(&RunReport) -> anyhow::Result<()>,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<RunReport>>,
{
    while !stop.is_cancelled() {
        match once().await {
            Ok(run) => {
                report(&run)?;
                if run.failure == Some(FailureKind::FingerprintMismatch) {
                    anyhow::bail!(
                        "{}",
                        run.error
                            .unwrap_or_else(|| "fingerprint mismatch".to_owned())
                    );
                }
            }
            Err(err) => match err.downcast_ref::<SyncError>() {
                Some(SyncError::LeaseHeld { .. }) => {
                    tracing::info!(reason = %err, "skipping this sync: another run is indexing");
                }
                _ if matches!(
                    err.downcast_ref::<index_qdrant::IndexError>(),
                    Some(index_qdrant::IndexError::Locked { .. })
                ) =>
                {
                    tracing::info!(
                        reason = %format!("{err:#}"),
                        "skipping this sync: another process (crm-mcp searching) holds the embedded index"
                    );
                }
                _ => {
                    tracing::error!(error = %format!("{err:#}"), "sync could not run; retrying at the next interval")
                }
            },
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
    Ok(())
}

/// Reports a failure that happened before a run could start, and returns the "failed"
/// exit status. With `--json` the summary is a JSON line on stdout, so callers that read
/// summaries get one for every outcome; the error also goes to the log.
pub fn print_failure(err: &anyhow::Error, json: bool) -> anyhow::Result<ExitCode> {
    let error = format!("{err:#}");
    tracing::error!(error = %error, "the run could not start");
    if json {
        crate::cli::print_json_line(&FailureSummary {
            outcome: RunOutcome::Failed,
            error: &error,
            peak_rss_bytes: crate::resources::peak_rss_bytes(),
        })?;
    } else {
        crate::cli::print_text(&format!("error: {error}\n"))?;
    }
    Ok(ExitCode::from(EXIT_FAILED))
}

/// A token cancelled by SIGINT or SIGTERM: the run finishes the batch it is writing (or
/// abandons the one it is embedding) and stops.
pub fn stop_on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping after the current batch"),
            () = terminate => tracing::info!("terminated: stopping after the current batch"),
        }
        token.cancel();
    });
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_shards_only_for_a_large_crm_on_several_cores() {
        assert_eq!(auto_shards(AUTO_SHARDS_FROM_ROWS - 1, 2), 1);
        assert_eq!(auto_shards(AUTO_SHARDS_FROM_ROWS, 2), 2);
        assert_eq!(auto_shards(2 * AUTO_ROWS_PER_SHARD, 2), 2);
        assert_eq!(auto_shards(2 * AUTO_ROWS_PER_SHARD + 1, 2), 3);
        assert_eq!(auto_shards(1_000_000, 2), 3);
        assert_eq!(auto_shards(u64::MAX, 16), AUTO_MAX_SHARDS);
        assert_eq!(auto_shards(10_000_000, 1), 1);
        assert_eq!(auto_shards(0, 8), 1);
    }
}
