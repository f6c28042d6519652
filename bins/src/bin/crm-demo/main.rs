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

    /// The whole pipeline on embedded defaults: generate a synthetic CRM (unless --db
    /// already exists), resolve entities and score them against the ground truth, build
    /// the search index, and ask example questions through the MCP server's search tool
    /// in the three modes (hybrid, dense, sparse).
    ///
    /// Needs the embedding model (scripts/fetch-model.sh) unless spark_control.url is
    /// set; no Qdrant server (the index is embedded, in <db>.index) and no chat model.
    /// Re-running on the same --db resolves and indexes only what changed.
    Run(RunArgs),
}

/// The generator's knobs; each defaults to the subcommand's own size.
#[derive(Debug, clap::Args)]
struct Generation {
    /// Seed of the generator.
    #[arg(long)]
    seed: Option<u64>,

    /// Rows in `people`, duplicates and traps included (generate: 10000; run: 2000).
    #[arg(long)]
    people: Option<u64>,

    /// Rows in `organizations`, duplicates included (generate: 1000; run: 200).
    #[arg(long)]
    orgs: Option<u64>,

    /// Rows in `interactions` (generate: 20000; run: 4000).
    #[arg(long)]
    interactions: Option<u64>,

    /// Rows in `deals` (generate: 1000; run: 200).
    #[arg(long)]
    deals: Option<u64>,

    /// Fraction of people and organisation rows that duplicate an earlier row [0.05].
    #[arg(long, value_name = "F")]
    dup_rate: Option<f64>,

    /// Fraction of people rows that are traps (alike, but never the same person) [0.01].
    #[arg(long, value_name = "F")]
    trap_rate: Option<f64>,

    /// Fraction of rows made messy (NULLs, HTML, odd unicode, CURRENT_TIMESTAMP times,
    /// ...) [0.03].
    #[arg(long, value_name = "F")]
    messy_rate: Option<f64>,
}

impl Generation {
    /// `base` with the flags given applied.
    fn config(&self, base: SyntheticConfig) -> SyntheticConfig {
        SyntheticConfig {
            seed: self.seed.unwrap_or(base.seed),
            people: self.people.unwrap_or(base.people),
            organizations: self.orgs.unwrap_or(base.organizations),
            interactions: self.interactions.unwrap_or(base.interactions),
            deals: self.deals.unwrap_or(base.deals),
            duplicate_rate: self.dup_rate.unwrap_or(base.duplicate_rate),
            trap_rate: self.trap_rate.unwrap_or(base.trap_rate),
            messy_rate: self.messy_rate.unwrap_or(base.messy_rate),
        }
    }
}

#[derive(Debug, clap::Args)]
struct GenerateArgs {
    #[command(flatten)]
    generation: Generation,

    /// Replace an existing database (and its -wal, -shm and truth files).
    #[arg(long)]
    force: bool,

    /// Print the summary as one JSON line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    generation: Generation,

    /// Generate a new CRM even when --db exists (replacing it, its truth file and its
    /// index).
    #[arg(long)]
    force: bool,

    /// A question to ask in the three modes (repeatable; default: three examples).
    #[arg(long, value_name = "TEXT")]
    query: Vec<String>,

    /// Hits shown per question and mode.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    hits: u32,

    /// Print the summary as one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// The size `crm-demo run` generates by default: the whole pipeline in a few minutes
/// on two cores with the in-process model.
fn run_default() -> SyntheticConfig {
    SyntheticConfig {
        people: 2_000,
        organizations: 200,
        interactions: 4_000,
        deals: 200,
        ..SyntheticConfig::default()
    }
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let ctx = Context::init(&args.common, Vec::new())?;
        match args.command {
            Command::Generate(generate) => run_generate(&ctx, &generate),
            Command::Run(run) => demo::run(&ctx, &run),
        }
    })
}

fn run_generate(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let config = args.generation.config(SyntheticConfig::default());
    let report = generate_crm(ctx, &config, args.force)?;
    if args.json {
        cli::print_json_line(&report)?;
    } else {
        cli::print_text(&summary(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a synthetic CRM at the settings' database path, with progress bars.
fn generate_crm(
    ctx: &Context,
    config: &SyntheticConfig,
    force: bool,
) -> anyhow::Result<GenerationReport> {
    let db = ctx.settings.db_path.clone();
    // Checked before --force removes anything.
    config.validate()?;
    prepare_target(&db, force)?;
    if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the directory {}", parent.display()))?;
    }
    tracing::info!(db = %db.display(), seed = config.seed, people = config.people, "generating a synthetic crm");

    let mut bars = std::collections::HashMap::new();
    let report = synthetic::generate(&db, config, &mut |p| {
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
    Ok(report)
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

mod demo;

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
