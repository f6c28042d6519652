//! `crm-resolve`: deterministic entity resolution — canonical ids, links, and the
//! candidate pairs left for `crm-fuzzy`.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use crm_store::{Store, StoreConfig};
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::resolving::{ResolveBars, render_summary, resolve_config, run_options};
use entity_resolve::{Progress as _, resolve};

/// Give every person and organisation row a canonical entity with a stable id, link
/// the rows that are certainly the same (same email, LinkedIn profile, phone with a
/// compatible name, name within one organisation; same corporate domain or legal
/// name), and flag the pairs that might be for the fuzzy tier.
///
/// Only the differences from the last run are written, in short transactions; a
/// re-run with no CRM change writes nothing to the entity tables, and when neither the
/// CRM rows nor the entity tables changed since the last run it stops after reading
/// them (it says so; --full computes anyway). Merges decided by
/// the fuzzy tier or a person are kept; undone merges stay split. The rules and the
/// summary are explained in crates/entity-resolve/README.md.
#[derive(Debug, Parser)]
#[command(name = "crm-resolve", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Compute and print what would change; write nothing.
    #[arg(long)]
    dry_run: bool,

    /// Compute in full even when nothing changed since the last run (for instance after
    /// editing the entity tables by hand while a run was writing).
    #[arg(long)]
    full: bool,

    /// Print the summary as one JSON line instead of a table.
    #[arg(long)]
    json: bool,

    /// Region for phone numbers written without a country code (ISO 3166-1 alpha-2;
    /// overrides resolve.default_region).
    #[arg(long, value_name = "CC")]
    default_region: Option<String>,
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let overrides = args
            .default_region
            .iter()
            .map(|r| ("resolve.default_region".to_owned(), r.clone()))
            .collect();
        let ctx = Context::init(&args.common, overrides)?;
        let config = resolve_config(&ctx)?;
        let db = &ctx.settings.db_path;
        let store = Store::open(StoreConfig::new(db))
            .with_context(|| format!("opening the CRM database {}", db.display()))?;
        let mut conn = store.writer()?;
        let options = run_options(&ctx, "crm-resolve", args.dry_run, args.full);
        let bars = ResolveBars::new(&ctx.terminal);
        let summary = resolve(&mut conn, &config, &options, &bars)
            .with_context(|| format!("resolving entities in {}", db.display()))?;
        bars.finish();
        if args.json {
            cli::print_json_line(&summary)?;
        } else {
            cli::print_text(&render_summary(&summary))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}
