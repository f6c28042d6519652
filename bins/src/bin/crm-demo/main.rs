//! `crm-demo`: a synthetic CRM and the whole pipeline on embedded defaults.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use crm_store::SourceTable;
use crm_store::synthetic::{self, GenerationReport, SyntheticConfig};
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::progress;

/// Create a realistic synthetic venture-firm CRM with known duplicates, and run the
/// pipeline on it.
#[derive(Debug, Parser)]
#[command(name = "crm-demo", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a synthetic CRM to --db, and its ground truth to <db>.truth.jsonl.
    ///
    /// The same --seed gives the same rows and the same truth file.
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    /// Seed of the generator.
    #[arg(long, default_value_t = SyntheticConfig::default().seed)]
    seed: u64,

    /// Rows in `people` (duplicates and traps included).
    #[arg(long, default_value_t = SyntheticConfig::default().people)]
    people: u64,

    /// Rows in `organizations` (duplicates included).
    #[arg(long, default_value_t = SyntheticConfig::default().organizations)]
    orgs: u64,

    /// Rows in `interactions`.
    #[arg(long, default_value_t = SyntheticConfig::default().interactions)]
    interactions: u64,

    /// Rows in `deals`.
    #[arg(long, default_value_t = SyntheticConfig::default().deals)]
    deals: u64,

    /// Fraction of people and organisation rows that duplicate an earlier row.
    #[arg(long, value_name = "F", default_value_t = SyntheticConfig::default().duplicate_rate)]
    dup_rate: f64,

    /// Fraction of people rows that are traps (alike, but never the same person).
    #[arg(long, value_name = "F", default_value_t = SyntheticConfig::default().trap_rate)]
    trap_rate: f64,

    /// Fraction of rows made messy (NULLs, HTML, odd unicode, CURRENT_TIMESTAMP times, ...).
    #[arg(long, value_name = "F", default_value_t = SyntheticConfig::default().messy_rate)]
    messy_rate: f64,

    /// Replace an existing database (and its -wal, -shm and truth files).
    #[arg(long)]
    force: bool,

    /// Print the summary as one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let ctx = Context::init(&args.common, Vec::new())?;
        match args.command {
            Command::Generate(generate) => run_generate(&ctx, &generate),
        }
    })
}

fn run_generate(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let db = ctx.settings.db_path.clone();
    let config = SyntheticConfig {
        seed: args.seed,
        people: args.people,
        organizations: args.orgs,
        interactions: args.interactions,
        deals: args.deals,
        duplicate_rate: args.dup_rate,
        trap_rate: args.trap_rate,
        messy_rate: args.messy_rate,
    };
    // Checked before --force removes anything.
    config.validate()?;
    prepare_target(&db, args.force)?;
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the directory {}", parent.display()))?;
    }
    tracing::info!(db = %db.display(), seed = config.seed, people = config.people, "generating a synthetic crm");

    let mut bars = std::collections::HashMap::new();
    let report = synthetic::generate(&db, &config, &mut |p| {
        let bar = bars
            .entry(p.table)
            .or_insert_with(|| progress::bar(&ctx.terminal, p.total, p.table.as_str()));
        bar.set_position(p.done);
        if p.done >= p.total {
            bar.finish();
        }
    })
    .with_context(|| format!("generating a synthetic CRM at {}", db.display()))?;
    for bar in bars.values() {
        bar.finish_and_clear();
    }

    if args.json {
        cli::print_json_line(&report)?;
    } else {
        cli::print_text(&summary(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to overwrite an existing CRM unless `force`, in which case the database and the
/// files that belong to it are removed.
fn prepare_target(db: &Path, force: bool) -> anyhow::Result<()> {
    let mut companions = vec![db.to_path_buf(), synthetic::truth_path(db)];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        companions.push(name.into());
    }
    let existing: Vec<_> = companions.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        return Ok(());
    }
    if !force {
        bail!(
            "{} already exists; pass --force to replace it (and its truth, -wal and -shm files)",
            existing[0].display()
        );
    }
    for path in existing {
        if path.is_dir() {
            bail!("{} is a directory, not a database file", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

fn summary(report: &GenerationReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "synthetic CRM: {}", report.db_path.display());
    let _ = writeln!(out, "ground truth:  {}", report.truth_path.display());
    let _ = writeln!(out, "\n| table | rows |\n| --- | ---: |");
    for table in SourceTable::ALL {
        let _ = writeln!(out, "| {table} | {} |", report.rows.get(table));
    }
    let _ = writeln!(
        out,
        "| interaction_people | {} |",
        report.rows.interaction_people
    );
    let _ = writeln!(out, "\n| injected | count |\n| --- | ---: |");
    for (kind, n) in &report.duplicates {
        let _ = writeln!(out, "| duplicate: {} | {n} |", kind.as_str());
    }
    for (kind, n) in &report.traps {
        let _ = writeln!(out, "| trap: {} | {n} |", kind.as_str());
    }
    let _ = writeln!(out, "| person clusters | {} |", report.person_clusters);
    let _ = writeln!(
        out,
        "| organization clusters | {} |",
        report.organization_clusters
    );
    let _ = writeln!(out, "| messy rows | {} |", report.messy_rows);
    let _ = writeln!(out, "| 1 MB notes | {} |", report.large_notes);
    let _ = writeln!(out, "\ngenerated in {:.1} s", report.seconds);
    out
}
