//! `crm-fuzzy`: an LLM adjudicates the candidate pairs `crm-resolve` flagged; confident
//! "same entity" answers become durable merges.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context as _;
use clap::Parser;
use crm_store::phase0::{self, CandidateStatus};
use crm_store::{Store, StoreConfig};
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::progress;
use embed::http::HttpClient;
use fuzzy_llm::chat::{ChatClient, ChatConfig};
use fuzzy_llm::runner::{Action, Decision, MergePolicy, RunObserver, RunOptions, adjudicate};
use indicatif::ProgressBar;

/// Ask the chat model behind Spark Control about the flagged candidate pairs, highest
/// score first, and merge the pairs it is sure about.
///
/// A merge needs a "same entity" answer at or above fuzzy.min_confidence and no
/// conflicting hard evidence (LinkedIn pages, corporate domains, Jr/Sr); at most
/// fuzzy.max_merges_per_run merges are made per run. Malformed answers mark the pair
/// `error` with the reply kept; nothing is ever merged by default. Each decision is
/// committed as it arrives, so an interrupted run loses none and the next run repeats
/// none. Without a chat endpoint (spark_control.url / SPARK_CONTROL_URL) nothing is done
/// and the pairs stay pending for a person to review.
#[derive(Debug, Parser)]
#[command(name = "crm-fuzzy", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// At most this many candidates (the highest scores).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Only candidates whose resolver score is at least this.
    #[arg(long, value_name = "SCORE", default_value_t = 0.0)]
    min_score: f64,

    /// Ask the model but write nothing; print what each answer would do.
    #[arg(long)]
    dry_run: bool,

    /// Also ask again the pairs answered before without a decision (unsure answers, and
    /// pairs in `error`).
    #[arg(long)]
    reask: bool,

    /// Print JSON lines (each decision in a dry run, then the summary) instead of text.
    #[arg(long)]
    json: bool,
}

/// Drives the progress bar and keeps the decisions a dry run prints.
struct Progress {
    bar: ProgressBar,
    keep: bool,
    decisions: Mutex<Vec<Decision>>,
}

impl RunObserver for Progress {
    fn started(&self, candidates: u64) {
        self.bar.set_length(candidates);
    }

    fn decided(&self, decision: &Decision) {
        self.bar.inc(1);
        if self.keep
            && let Ok(mut all) = self.decisions.lock()
        {
            all.push(decision.clone());
        }
    }
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let ctx = Context::init(&args.common, Vec::new())?;
        let settings = &ctx.settings;
        let store = Store::open(StoreConfig::new(&settings.db_path))
            .with_context(|| format!("opening {}", settings.db_path.display()))?;

        let Some(http) = settings.spark_control.http_config() else {
            let pending = {
                let conn = store.reader()?;
                phase0::candidate_counts(&conn)?
                    .get(&CandidateStatus::Pending)
                    .copied()
                    .unwrap_or(0)
            };
            if args.json {
                cli::print_json_line(&serde_json::json!({
                    "status": "skipped",
                    "reason": "no chat endpoint configured",
                    "pending": pending,
                }))?;
            } else {
                cli::print_text(&format!(
                    "crm-fuzzy: no chat endpoint is configured (set SPARK_CONTROL_URL or \
                     spark_control.url); nothing was asked, {pending} candidate pair(s) stay \
                     pending for review\n"
                ))?;
            }
            return Ok(ExitCode::SUCCESS);
        };

        let client = ChatClient::new(
            HttpClient::new(http)?,
            ChatConfig::new(settings.spark_control.chat_model.clone()),
        )?;
        let options = RunOptions {
            limit: args.limit,
            min_score: args.min_score,
            dry_run: args.dry_run,
            reask: args.reask,
            policy: MergePolicy {
                min_confidence: settings.fuzzy.min_confidence,
                max_merges_per_run: settings.fuzzy.max_merges_per_run,
            },
            ..RunOptions::default()
        };
        let observer = Progress {
            bar: progress::bar(&ctx.terminal, 0, "fuzzy"),
            keep: args.dry_run,
            decisions: Mutex::new(Vec::new()),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let summary = runtime.block_on(adjudicate(&store, &client, &options, &observer))?;
        observer.bar.finish_and_clear();

        let decisions = observer.decisions.into_inner().unwrap_or_default();
        if args.json {
            for decision in &decisions {
                cli::print_json_line(decision)?;
            }
            cli::print_json_line(&summary)?;
        } else {
            let mut text = String::new();
            for d in &decisions {
                writeln!(text, "{}", describe(d))?;
            }
            let verb = if summary.dry_run {
                "would merge"
            } else {
                "merged"
            };
            writeln!(
                text,
                "crm-fuzzy{}: {} candidate(s) selected, {} asked of model {}",
                if summary.dry_run {
                    " (dry run, nothing written)"
                } else {
                    ""
                },
                summary.selected,
                summary.asked,
                summary.model
            )?;
            writeln!(
                text,
                "  {verb} {}, rejected {}, vetoed by hard evidence {}, unsure (left pending) {}, \
                 invalid replies (marked error) {}, failed requests {}, stale {}, decided \
                 elsewhere {}",
                summary.merged,
                summary.rejected,
                summary.vetoed,
                summary.uncertain,
                summary.invalid_replies,
                summary.request_failures,
                summary.stale,
                summary.decided_elsewhere,
            )?;
            if summary.cap_reached {
                writeln!(
                    text,
                    "  merge cap of {} reached: {} candidate(s) left pending for the next run",
                    summary.max_merges_per_run,
                    summary.capped + summary.not_reached
                )?;
            }
            if let Some(why) = &summary.aborted {
                writeln!(text, "  run stopped early: {why}")?;
            }
            writeln!(text, "  took {:.1} s", summary.elapsed_ms / 1000.0)?;
            cli::print_text(&text)?;
        }
        Ok(if summary.aborted.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

fn describe(d: &Decision) -> String {
    let what = match &d.action {
        Action::Merged { merge_id } => format!("merged (merge {merge_id})"),
        Action::WouldMerge => "would merge".to_owned(),
        Action::Rejected => "different".to_owned(),
        Action::Vetoed { conflict } => format!("vetoed: {conflict}"),
        Action::Uncertain => "unsure, left pending".to_owned(),
        Action::Capped => "same, but the merge cap is reached".to_owned(),
        Action::InvalidReply { problem } => format!("invalid reply: {problem}"),
        Action::RequestFailed { error } => format!("request failed: {error}"),
        Action::Stale { entity, why } => format!("stale: {entity} is {why:?}"),
        Action::DecidedElsewhere => "decided elsewhere meanwhile".to_owned(),
    };
    let verdict = d
        .verdict
        .as_ref()
        .map(|v| {
            format!(
                " [{} {:.2}: {}]",
                if v.same_entity { "same" } else { "different" },
                v.confidence,
                v.reason
            )
        })
        .unwrap_or_default();
    format!(
        "candidate {} {} ~ {} (score {:.2}): {what}{verdict}",
        d.candidate_id, d.entity_a, d.entity_b, d.score
    )
}
