//! `crm-bench`: benchmark suites. Each prints a table and one JSON line of figures.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use crm_substrate::bench::{BenchContext, Suite};
use crm_substrate::cli::{self, CommonArgs, Context};

/// Measure crm-substrate, side by side with peers where there are any.
///
/// Run in the release profile (`cargo run --profile bench --bin crm-bench -- SUITE`):
/// figures from a debug build are not comparable. Each suite prints a table and then
/// one JSON line `{"suite":..,"machine":{..},"figures":{..}}`.
#[derive(Debug, Parser)]
#[command(name = "crm-bench", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Scratch directory for databases, indexes and servers (default: a new temporary
    /// directory, removed at the end unless --keep).
    #[arg(long, value_name = "DIR", global = true)]
    work_dir: Option<std::path::PathBuf>,

    /// Keep the scratch directory.
    #[arg(long, global = true)]
    keep: bool,

    /// Only the JSON lines, no tables.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    suite: Suite,
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let ctx = Context::init(&args.common, Vec::new())?;
        // The temporary directory lives until the suites are done; --keep leaves it behind.
        let mut temp = None;
        let work_dir = match &args.work_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating work dir {}", dir.display()))?;
                dir.clone()
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("crm-bench-")
                    .tempdir()
                    .context("creating a scratch directory")?;
                let path = dir.path().to_path_buf();
                if args.keep {
                    tracing::info!(dir = %dir.keep().display(), "keeping the scratch directory");
                } else {
                    temp = Some(dir);
                }
                path
            }
        };
        let bench = BenchContext {
            settings: ctx.settings,
            env: ctx.env,
            terminal: ctx.terminal,
            work_dir,
        };
        let reports = args.suite.run(&bench)?;
        for report in reports {
            if !args.json {
                cli::print_text(&format!("\n## {}\n\n{}\n", report.suite, report.table()))?;
            }
            cli::print_json_line(&report.json_line())?;
        }
        drop(temp);
        Ok(ExitCode::SUCCESS)
    })
}
