//! `crm-bench resolve`: deterministic entity resolution on a large synthetic CRM,
//! scored against the ground truth the generator writes.
//!
//! Measures the first run (time, peak RSS), the quality of its links and candidates
//! (pairwise precision and recall, recall of links ∪ candidates per duplicate kind,
//! candidates per true pair left, trap violations; definitions in
//! `entity_resolve::quality`), a re-run with no change (time, rows written; it stops
//! after reading when it finds its input unchanged), and the same re-run forced to
//! compute in full (`--full`: the cost of a run after a one-row change, bar writes).
//! Targets: precision ≥ 0.999, 0 trap violations, links ∪ candidates recall ≥ 0.98 per
//! kind, ≤ 3 candidates per true pair left; 1M people + 100k organisations in ≤ 60 s and
//! ≤ 2 GB; the re-run ≤ 15 s with 0 entity-table writes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crm_store::synthetic::{self, SyntheticConfig};
use crm_store::{Store, StoreConfig};
use entity_resolve::quality::{QualityReport, score_against_truth};
use entity_resolve::{EntityKind, NoProgress, ResolveConfig, ResolveSummary, RunOptions, resolve};

use super::{BenchContext, Report, ms};
use crate::resources;

/// Flags of `crm-bench resolve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResolveArgs {
    /// People rows of the generated CRM.
    #[arg(long, default_value_t = 1_000_000)]
    pub people: u64,
    /// Organisation rows (default: people / 10).
    #[arg(long)]
    pub orgs: Option<u64>,
    /// Generator seed.
    #[arg(long, default_value_t = SyntheticConfig::default().seed)]
    pub seed: u64,
    /// Resolve this existing generated CRM (its `.truth.jsonl` beside it) instead of
    /// generating one; it must not have been resolved yet for first-run figures.
    #[arg(long, value_name = "PATH")]
    pub crm: Option<PathBuf>,
}

/// `crm-bench resolve`.
pub fn run(ctx: &BenchContext, args: &ResolveArgs) -> anyhow::Result<Vec<Report>> {
    let path = match &args.crm {
        Some(p) => p.clone(),
        None => {
            let path = ctx.work_dir.join("resolve.db");
            let config = SyntheticConfig {
                seed: args.seed,
                people: args.people,
                organizations: args.orgs.unwrap_or(args.people / 10),
                interactions: 0,
                deals: 0,
                ..SyntheticConfig::default()
            };
            let bar = crate::progress::spinner(&ctx.terminal, "generate");
            synthetic::generate(&path, &config, &mut |p| {
                bar.set_message(format!("{} {}/{}", p.table, p.done, p.total));
            })
            .with_context(|| format!("generating a synthetic CRM at {}", path.display()))?;
            bar.finish_and_clear();
            path
        }
    };
    let truth = synthetic::read_truth(&synthetic::truth_path(&path))
        .with_context(|| format!("reading the ground truth of {}", path.display()))?;
    let store = Store::open(StoreConfig::new(&path))
        .with_context(|| format!("opening {}", path.display()))?;
    let mut conn = store.writer()?;
    let options = RunOptions {
        dry_run: false,
        holder: format!("crm-bench-{}", std::process::id()),
        hostname: "crm-bench".to_owned(),
        full: false,
    };
    let config = ResolveConfig {
        default_region: ctx
            .settings
            .resolve
            .default_region
            .parse()
            .context("resolve.default_region")?,
        ..ResolveConfig::default()
    };

    // The peak of the resolver alone: forget the generator's.
    let reset = reset_peak_rss();
    let rss_before = resources::current_rss_bytes().unwrap_or(0);
    let started = Instant::now();
    let first = resolve(&mut conn, &config, &options, &NoProgress).context("first resolve run")?;
    let first_time = started.elapsed();
    let peak = resources::peak_rss_bytes().unwrap_or(0);

    let people_q = score_against_truth(&conn, EntityKind::Person, &truth)?;
    let org_q = score_against_truth(&conn, EntityKind::Organization, &truth)?;

    let changes_before: i64 = conn.query_row("SELECT total_changes()", [], |r| r.get(0))?;
    let started = Instant::now();
    let again = resolve(&mut conn, &config, &options, &NoProgress).context("re-run")?;
    let rerun_time = started.elapsed();
    let changes_after: i64 = conn.query_row("SELECT total_changes()", [], |r| r.get(0))?;
    let rerun_row_changes = changes_after - changes_before;
    // The same re-run told to compute in full: what a run costs when a single row
    // changed, bar the writes.
    let started = Instant::now();
    let full = resolve(
        &mut conn,
        &config,
        &RunOptions {
            full: true,
            ..options.clone()
        },
        &NoProgress,
    )
    .context("full re-run")?;
    let full_time = started.elapsed();

    let mut report = Report::new("resolve", &["measure", "organizations", "people", "target"]);
    quality_rows(&mut report, &org_q, &people_q);
    perf_rows(
        &mut report,
        &first,
        first_time,
        peak,
        rss_before,
        reset,
        &again,
        rerun_time,
        rerun_row_changes,
    );
    for (name, q) in [("organizations", &org_q), ("people", &people_q)] {
        report.figure(&format!("{name}_link_precision"), q.link_precision());
        report.figure(&format!("{name}_link_recall"), q.link_recall());
        report.figure(&format!("{name}_reach_recall"), q.reach_recall());
        report.figure(
            &format!("{name}_candidates_per_true_pair_left"),
            q.candidates_per_true_pair_left(),
        );
        report.figure(&format!("{name}_trap_violations"), q.trap_violations);
        report.figure(&format!("{name}_candidates"), q.candidates);
        for (kind, r) in &q.by_dup_kind {
            report.figure(&format!("{name}_{kind}_reach_recall"), r.reach_recall());
            report.figure(&format!("{name}_{kind}_link_recall"), r.link_recall());
        }
    }
    report.figure("people_rows", first.people.rows);
    report.figure("organization_rows", first.organizations.rows);
    report.figure("first_run_ms", ms(first_time));
    for (phase, v) in &first.phase_ms {
        report.figure(&format!("first_run_{phase}_ms"), *v);
    }
    report.figure("first_run_peak_rss_bytes", peak);
    report.figure("peak_rss_reset", reset);
    report.figure("first_run_entity_writes", first.entity_writes);
    report.row([
        "full re-run (--full), no change".to_owned(),
        format!("{:.1} s", full_time.as_secs_f64()),
        format!(
            "{}; {} entity-table writes",
            phase_list(&full),
            full.entity_writes
        ),
        String::new(),
    ]);
    report.figure("rerun_ms", ms(rerun_time));
    report.figure("rerun_unchanged", again.unchanged);
    for (phase, v) in &again.phase_ms {
        report.figure(&format!("rerun_{phase}_ms"), *v);
    }
    report.figure("full_rerun_ms", ms(full_time));
    report.figure("full_rerun_entity_writes", full.entity_writes);
    for (phase, v) in &full.phase_ms {
        report.figure(&format!("full_rerun_{phase}_ms"), *v);
    }
    report.figure("rerun_entity_writes", again.entity_writes);
    report.figure("rerun_sqlite_row_changes", rerun_row_changes);
    Ok(vec![report])
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS, so the peak measured
/// next is the resolver's and not the generator's (Linux: `5` in `/proc/self/clear_refs`).
/// Returns whether the reset took.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A run's phases in seconds, e.g. `read 3.1, cluster 3.9`.
fn phase_list(s: &ResolveSummary) -> String {
    s.phase_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.1}", *v as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_ratio(v: f64) -> String {
    format!("{v:.5}")
}

fn quality_rows(report: &mut Report, o: &QualityReport, p: &QualityReport) {
    report.row([
        "link precision (pairwise)".to_owned(),
        fmt_ratio(o.link_precision()),
        fmt_ratio(p.link_precision()),
        "≥ 0.999".into(),
    ]);
    report.row([
        "link recall (pairwise)".to_owned(),
        fmt_ratio(o.link_recall()),
        fmt_ratio(p.link_recall()),
        String::new(),
    ]);
    report.row([
        "links ∪ candidates recall".to_owned(),
        fmt_ratio(o.reach_recall()),
        fmt_ratio(p.reach_recall()),
        "≥ 0.98".into(),
    ]);
    let mut kinds: Vec<&String> = o.by_dup_kind.keys().chain(p.by_dup_kind.keys()).collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let cell = |q: &QualityReport| {
            q.by_dup_kind.get(kind).map_or_else(String::new, |r| {
                format!(
                    "{} (links {}; {} pairs)",
                    fmt_ratio(r.reach_recall()),
                    fmt_ratio(r.link_recall()),
                    r.true_pairs
                )
            })
        };
        report.row([
            format!("  {kind}: links ∪ candidates"),
            cell(o),
            cell(p),
            "≥ 0.98".into(),
        ]);
    }
    report.row([
        "candidates (true)".to_owned(),
        format!("{} ({})", o.candidates, o.candidates_true),
        format!("{} ({})", p.candidates, p.candidates_true),
        String::new(),
    ]);
    report.row([
        "candidates per true pair left".to_owned(),
        format!("{:.2}", o.candidates_per_true_pair_left()),
        format!("{:.2}", p.candidates_per_true_pair_left()),
        "≤ 3".into(),
    ]);
    report.row([
        "trap pairs linked (of)".to_owned(),
        format!("{} ({})", o.trap_violations, o.traps),
        format!("{} ({})", p.trap_violations, p.traps),
        "0".into(),
    ]);
}

#[allow(clippy::too_many_arguments)]
fn perf_rows(
    report: &mut Report,
    first: &ResolveSummary,
    first_time: Duration,
    peak: u64,
    rss_before: u64,
    reset: bool,
    again: &ResolveSummary,
    rerun_time: Duration,
    rerun_row_changes: i64,
) {
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0));
    report.row([
        "rows resolved".to_owned(),
        first.organizations.rows.to_string(),
        first.people.rows.to_string(),
        String::new(),
    ]);
    report.row([
        "entities".to_owned(),
        first.organizations.entities.to_string(),
        first.people.entities.to_string(),
        String::new(),
    ]);
    report.row([
        "first run (both kinds)".to_owned(),
        format!("{:.1} s", first_time.as_secs_f64()),
        phase_list(first),
        "≤ 60 s".into(),
    ]);
    report.row([
        "first run peak RSS".to_owned(),
        mib(peak),
        if reset {
            format!("(RSS before: {})", mib(rss_before))
        } else {
            "(peak includes generation)".to_owned()
        },
        "≤ 2 GB".into(),
    ]);
    report.row([
        "first run entity-table writes".to_owned(),
        first.entity_writes.to_string(),
        String::new(),
        String::new(),
    ]);
    report.row([
        "re-run, no change".to_owned(),
        format!("{:.1} s", rerun_time.as_secs_f64()),
        if again.unchanged {
            format!(
                "input unchanged, stopped after reading: {}",
                phase_list(again)
            )
        } else {
            format!("computed in full: {}", phase_list(again))
        },
        "≤ 15 s".into(),
    ]);
    report.row([
        "re-run entity-table writes".to_owned(),
        again.entity_writes.to_string(),
        format!("(SQLite row changes incl. run log and lease: {rerun_row_changes})"),
        "0".into(),
    ]);
}
