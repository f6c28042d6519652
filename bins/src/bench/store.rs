//! `crm-bench generate | scan | migrate`: the storage layer on a large synthetic CRM.
//!
//! - **generate**: how fast `crm_store::synthetic` writes a CRM (target: 1,000,000 people in
//!   under a minute), per table, side by side with the floor: bare `INSERT`s of rows of the
//!   same shape with no generation work.
//! - **scan**: keyset paging by watermark over every row (ids only, typed rows) and
//!   rendering to documents, side by side with the same scan on a raw-text
//!   `(updated_at, id)` index (fast but wrong for mixed timestamp formats) and with
//!   `LIMIT/OFFSET` paging (what keyset paging avoids).
//! - **migrate**: the contract check, the first migration (Phase-0 tables and the indexes
//!   on the CRM tables) and the no-op re-run, on a freshly generated CRM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crm_store::queries::{self, KeysetPage};
use crm_store::synthetic::{self, GenerationReport, SyntheticConfig};
use crm_store::{
    Interaction, NORMALISED_UPDATED_AT, Person, SourceTable, Store, StoreConfig, contract,
    migrations, render,
};
use rusqlite::params;

use super::{BenchContext, Report, ms, per_sec, percentile};
use crate::resources;

/// Sizes of the CRM a suite generates.
#[derive(Debug, Clone, clap::Args)]
pub struct CrmSize {
    /// People rows (organisations, interactions and deals scale with it unless given).
    #[arg(long, default_value_t = 1_000_000)]
    pub people: u64,
    /// Organisation rows (default: people / 10).
    #[arg(long)]
    pub orgs: Option<u64>,
    /// Interaction rows (default: people / 5).
    #[arg(long)]
    pub interactions: Option<u64>,
    /// Deal rows (default: people / 50).
    #[arg(long)]
    pub deals: Option<u64>,
    /// Generator seed.
    #[arg(long, default_value_t = SyntheticConfig::default().seed)]
    pub seed: u64,
}

impl CrmSize {
    fn config(&self) -> SyntheticConfig {
        SyntheticConfig {
            seed: self.seed,
            people: self.people,
            organizations: self.orgs.unwrap_or(self.people / 10),
            interactions: self.interactions.unwrap_or(self.people / 5),
            deals: self.deals.unwrap_or(self.people / 50),
            ..SyntheticConfig::default()
        }
    }
}

/// Flags of `crm-bench generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    size: CrmSize,
}

/// Flags of `crm-bench scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    #[command(flatten)]
    size: CrmSize,
    /// Scan this existing CRM instead of generating one (it is migrated if needed; the
    /// raw-text peer, which needs its own index, is then skipped).
    #[arg(long, value_name = "PATH")]
    crm: Option<PathBuf>,
    /// Rows per keyset page.
    #[arg(long, default_value_t = 1000)]
    page: usize,
    /// Rows read by the LIMIT/OFFSET peer (it is quadratic).
    #[arg(long, default_value_t = 100_000)]
    offset_rows: u64,
}

/// Flags of `crm-bench migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    size: CrmSize,
}

/// Generates a CRM in the work dir, with a progress bar per table; returns its report and
/// how long each table took.
fn generate_crm(
    ctx: &BenchContext,
    path: &Path,
    config: &SyntheticConfig,
) -> anyhow::Result<(GenerationReport, HashMap<SourceTable, Duration>)> {
    let mut bars = HashMap::new();
    let mut first: HashMap<SourceTable, Instant> = HashMap::new();
    let mut spans: HashMap<SourceTable, Duration> = HashMap::new();
    let mut previous_end = Instant::now();
    let report = synthetic::generate(path, config, &mut |p| {
        let now = Instant::now();
        // A table's time runs from the end of the previous table (its generation starts
        // there) to its last inserted chunk.
        let start = *first.entry(p.table).or_insert(previous_end);
        spans.insert(p.table, now - start);
        if p.done >= p.total {
            previous_end = now;
        }
        let bar = bars
            .entry(p.table)
            .or_insert_with(|| crate::progress::bar(&ctx.terminal, p.total, p.table.as_str()));
        bar.set_position(p.done);
    })
    .with_context(|| format!("generating a synthetic CRM at {}", path.display()))?;
    for bar in bars.values() {
        bar.finish_and_clear();
    }
    Ok((report, spans))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// `crm-bench generate`.
pub fn generate(ctx: &BenchContext, args: &GenerateArgs) -> anyhow::Result<Vec<Report>> {
    let config = args.size.config();
    let path = ctx.work_dir.join("generate.db");
    let started = Instant::now();
    let (generated, spans) = generate_crm(ctx, &path, &config)?;
    let total = started.elapsed();
    let rows_total = generated.rows.organizations
        + generated.rows.people
        + generated.rows.interactions
        + generated.rows.interaction_people
        + generated.rows.deals;

    let floor_path = ctx.work_dir.join("generate-floor.db");
    let floor = insert_floor(&floor_path, generated.rows.people)?;

    let mut report = Report::new("generate", &["measure", "value", "unit"]);
    report.row([
        "people rows".to_owned(),
        generated.rows.people.to_string(),
        "rows".into(),
    ]);
    report.row([
        "all rows (5 tables)".to_owned(),
        rows_total.to_string(),
        "rows".into(),
    ]);
    report.row([
        "total time".to_owned(),
        format!("{:.2}", total.as_secs_f64()),
        "s".into(),
    ]);
    report.row([
        "all rows / s".to_owned(),
        format!("{:.0}", per_sec(rows_total, total)),
        "rows/s".into(),
    ]);
    for table in SourceTable::ALL {
        if let Some(d) = spans.get(&table) {
            let n = generated.rows.get(table);
            report.row([
                format!("{table}"),
                format!("{:.0}", per_sec(n, *d)),
                format!("rows/s ({n} rows in {:.2} s)", d.as_secs_f64()),
            ]);
            report.figure(&format!("{table}_rows_per_sec"), per_sec(n, *d));
            report.figure(&format!("{table}_ms"), ms(*d));
        }
    }
    report.row([
        "peer: bare INSERT floor, people".to_owned(),
        format!("{:.0}", per_sec(generated.rows.people, floor)),
        format!("rows/s ({:.2} s)", floor.as_secs_f64()),
    ]);
    report.row([
        "database size".to_owned(),
        mib(file_size(&path)),
        "MiB".into(),
    ]);
    let peak = resources::peak_rss_bytes().unwrap_or(0);
    report.row(["peak RSS".to_owned(), mib(peak), "MiB".into()]);
    let target = generated.rows.people < 1_000_000 || total < Duration::from_secs(60);
    report.row([
        "target: 1M people < 60 s".to_owned(),
        if generated.rows.people < 1_000_000 {
            "n/a (smaller run)".to_owned()
        } else if target {
            "met".to_owned()
        } else {
            "MISSED".to_owned()
        },
        String::new(),
    ]);
    report.figure("people", generated.rows.people);
    report.figure("rows_total", rows_total);
    report.figure("total_ms", ms(total));
    report.figure("rows_per_sec", per_sec(rows_total, total));
    report.figure(
        "people_floor_rows_per_sec",
        per_sec(generated.rows.people, floor),
    );
    report.figure("duplicates", generated.duplicates.values().sum::<u64>());
    report.figure("messy_rows", generated.messy_rows);
    report.figure("db_bytes", file_size(&path));
    report.figure("peak_rss_bytes", peak);
    report.figure("target_met", target);
    Ok(vec![report])
}

/// The floor under generation: `n` people rows of the same shape (short constant-ish
/// strings), inserted with the same statement, pragmas and single transaction, and no
/// generation work at all.
fn insert_floor(path: &Path, n: u64) -> anyhow::Result<Duration> {
    let mut conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE; \
         PRAGMA cache_size = -262144; PRAGMA foreign_keys = OFF;",
    )?;
    conn.execute_batch(contract::CRM_SCHEMA_SQL)?;
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO people (id, first_name, last_name, full_name, email, phone, title, \
             organization_id, linkedin_url, location, bio, created_at, updated_at, deleted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for id in 1..=n as i64 {
            stmt.execute(params![
                id,
                "Jane",
                "Doe",
                "Jane Doe",
                format!("jane.doe{id}@example.com"),
                "+1 (415) 555-0100",
                "Partner",
                id % 100_000 + 1,
                format!("https://www.linkedin.com/in/jane-doe-{id:08x}"),
                "San Francisco, CA",
                Option::<String>::None,
                "2025-01-01T00:00:00.000Z",
                "2025-06-01T00:00:00.000Z",
                Option::<String>::None,
            ])?;
        }
    }
    tx.commit()?;
    Ok(started.elapsed())
}

/// `crm-bench scan`.
pub fn scan(ctx: &BenchContext, args: &ScanArgs) -> anyhow::Result<Vec<Report>> {
    anyhow::ensure!(args.page > 0, "--page must be at least 1");
    let (path, generated) = match &args.crm {
        Some(p) => (p.clone(), false),
        None => {
            let path = ctx.work_dir.join("scan.db");
            generate_crm(ctx, &path, &args.size.config())?;
            (path, true)
        }
    };
    let store = Store::open(StoreConfig::new(&path))
        .with_context(|| format!("opening {}", path.display()))?;
    let conn = store.reader()?;
    let counts = queries::row_counts(&conn)?;
    let mut report = Report::new(
        "scan",
        &["measure", "rows", "rows/s", "p50 page ms", "p99 page ms"],
    );
    let add = |report: &mut Report,
               key: &str,
               label: &str,
               rows: u64,
               elapsed: Duration,
               pages: &mut Vec<Duration>| {
        let p50 = percentile(pages, 50.0).map_or(0.0, ms);
        let p99 = percentile(pages, 99.0).map_or(0.0, ms);
        report.row([
            label.to_owned(),
            rows.to_string(),
            format!("{:.0}", per_sec(rows, elapsed)),
            format!("{p50:.2}"),
            format!("{p99:.2}"),
        ]);
        report.figure(&format!("{key}_rows_per_sec"), per_sec(rows, elapsed));
        report.figure(&format!("{key}_page_p50_ms"), p50);
        report.figure(&format!("{key}_page_p99_ms"), p99);
    };

    // Keys only (the index alone).
    let (n, elapsed, mut pages) = timed_pages(|after| {
        let keys = queries::keyset_keys(&conn, SourceTable::People, after, args.page)?;
        Ok((keys.len(), keys.last().copied()))
    })?;
    add(
        &mut report,
        "people_keys",
        "keyset keys, people",
        n,
        elapsed,
        &mut pages,
    );

    // Typed rows.
    let (n, elapsed, mut pages) = timed_pages(|after| {
        let page: KeysetPage<Person> = queries::keyset_page(&conn, after, args.page)?;
        Ok((page.rows.len(), page.next))
    })?;
    add(
        &mut report,
        "people_rows",
        "keyset rows, people",
        n,
        elapsed,
        &mut pages,
    );
    let (n, elapsed, mut pages) = timed_pages(|after| {
        let page: KeysetPage<Interaction> = queries::keyset_page(&conn, after, args.page)?;
        Ok((page.rows.len(), page.next))
    })?;
    add(
        &mut report,
        "interaction_rows",
        "keyset rows, interactions (+participants)",
        n,
        elapsed,
        &mut pages,
    );

    // Rendering (read + related names + documents).
    for (table, key) in [
        (SourceTable::People, "people_docs"),
        (SourceTable::Interactions, "interaction_docs"),
        (SourceTable::Organizations, "organization_docs"),
        (SourceTable::Deals, "deal_docs"),
    ] {
        let (n, elapsed, mut pages) = timed_pages(|after| {
            let page = render::render_changed(&conn, table, after, args.page)?;
            Ok((page.documents.len(), page.next))
        })?;
        add(
            &mut report,
            key,
            &format!("render documents, {table}"),
            n,
            elapsed,
            &mut pages,
        );
    }

    // Peers.
    if generated {
        drop(conn);
        let writer = store.writer()?;
        writer.execute_batch(
            "CREATE INDEX IF NOT EXISTS bench_people_raw ON people(updated_at, id)",
        )?;
        drop(writer);
        let conn = store.reader()?;
        let (n, elapsed, mut pages) =
            timed_pages(|after| raw_keyset_page(&conn, after, args.page))?;
        add(
            &mut report,
            "peer_raw_keys",
            "peer: raw-text keyset keys, people (wrong order for mixed formats)",
            n,
            elapsed,
            &mut pages,
        );
    }
    let conn = store.reader()?;
    let limit = args.offset_rows.min(counts.people);
    let mut pages = Vec::new();
    let started = Instant::now();
    let mut offset = 0u64;
    let mut n = 0u64;
    let query =
        format!("SELECT id FROM people ORDER BY {NORMALISED_UPDATED_AT}, id LIMIT ?1 OFFSET ?2");
    let mut stmt = conn.prepare(&query)?;
    while offset < limit {
        let t = Instant::now();
        let ids: Vec<i64> = stmt
            .query_map(params![args.page as i64, offset as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        pages.push(t.elapsed());
        if ids.is_empty() {
            break;
        }
        n += ids.len() as u64;
        offset += ids.len() as u64;
    }
    add(
        &mut report,
        "peer_offset",
        &format!("peer: LIMIT/OFFSET ids, first {limit} people"),
        n,
        started.elapsed(),
        &mut pages,
    );
    report.figure("people", counts.people);
    report.figure("interactions", counts.interactions);
    report.figure("page_rows", args.page as u64);
    report.figure("db_bytes", file_size(&path));
    Ok(vec![report])
}

/// Pages through a scan until an empty page; returns rows, wall time and per-page times.
fn timed_pages<C>(
    mut next: impl FnMut(Option<C>) -> anyhow::Result<(usize, Option<C>)>,
) -> anyhow::Result<(u64, Duration, Vec<Duration>)> {
    let started = Instant::now();
    let mut pages = Vec::new();
    let mut rows = 0u64;
    let mut after = None;
    loop {
        let t = Instant::now();
        let (n, last) = next(after.take())?;
        pages.push(t.elapsed());
        let Some(last) = last else { break };
        rows += n as u64;
        after = Some(last);
    }
    Ok((rows, started.elapsed(), pages))
}

/// Keyset on the raw `updated_at` text and a plain index: what a naive sync would do.
/// Fast, but `2026-06-05 13:55:12` sorts before `2026-06-05T00:00:00Z`, so rows written
/// in the two CRM formats come out of order and a watermark skips some.
fn raw_keyset_page(
    conn: &rusqlite::Connection,
    after: Option<(String, i64)>,
    limit: usize,
) -> anyhow::Result<(usize, Option<(String, i64)>)> {
    let (key, id) = after.unwrap_or((String::new(), i64::MIN));
    let mut stmt = conn.prepare_cached(
        "SELECT id, updated_at FROM people WHERE (updated_at, id) > (?1, ?2) \
         ORDER BY updated_at, id LIMIT ?3",
    )?;
    let rows: Vec<(i64, String)> = stmt
        .query_map(params![key, id, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok((rows.len(), rows.last().map(|(id, k)| (k.clone(), *id))))
}

/// `crm-bench migrate`.
pub fn migrate(ctx: &BenchContext, args: &MigrateArgs) -> anyhow::Result<Vec<Report>> {
    let path = ctx.work_dir.join("migrate.db");
    let (generated, _) = generate_crm(ctx, &path, &args.size.config())?;
    let size_before = file_size(&path);
    let mut conn = crm_store::open_connection(
        &path,
        rusqlite::OpenFlags::default(),
        Duration::from_secs(5),
    )?;

    const CHECKS: u32 = 50;
    let started = Instant::now();
    for _ in 0..CHECKS {
        contract::check(&conn, &path)?;
    }
    let check = started.elapsed() / CHECKS;

    let started = Instant::now();
    let first = migrations::migrate(&mut conn, &path)?;
    let first_time = started.elapsed();
    let started = Instant::now();
    let rerun = migrations::migrate(&mut conn, &path)?;
    let rerun_time = started.elapsed();
    anyhow::ensure!(
        rerun.applied.is_empty(),
        "the re-run applied {:?}",
        rerun.applied
    );
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    drop(conn);
    let size_after = file_size(&path);

    let started = Instant::now();
    let store = Store::open(StoreConfig::new(&path))?;
    let open_time = started.elapsed();
    drop(store);

    let mut report = Report::new("migrate", &["measure", "value", "unit"]);
    report.row([
        "people rows".to_owned(),
        generated.rows.people.to_string(),
        "rows".into(),
    ]);
    report.row([
        "interactions rows".to_owned(),
        generated.rows.interactions.to_string(),
        "rows".into(),
    ]);
    report.row([
        "contract check".to_owned(),
        format!("{:.3}", ms(check)),
        "ms".into(),
    ]);
    report.row([
        format!("first migration (versions {:?})", first.applied),
        format!("{:.0}", ms(first_time)),
        "ms".into(),
    ]);
    report.row([
        "no-op re-run".to_owned(),
        format!("{:.3}", ms(rerun_time)),
        "ms".into(),
    ]);
    report.row([
        "Store::open, migrated CRM".to_owned(),
        format!("{:.3}", ms(open_time)),
        "ms".into(),
    ]);
    report.row([
        "file size before / after".to_owned(),
        format!("{} / {}", mib(size_before), mib(size_after)),
        "MiB".into(),
    ]);
    report.figure("people", generated.rows.people);
    report.figure("contract_check_ms", ms(check));
    report.figure("first_migration_ms", ms(first_time));
    report.figure("noop_rerun_ms", ms(rerun_time));
    report.figure("store_open_ms", ms(open_time));
    report.figure("applied_versions", first.applied.len());
    report.figure("db_bytes_before", size_before);
    report.figure("db_bytes_after", size_after);
    Ok(vec![report])
}
