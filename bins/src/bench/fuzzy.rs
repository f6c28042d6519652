//! `crm-bench fuzzy`: what the fuzzy tier costs besides the model.
//!
//! A synthetic CRM gets one singleton entity per person and `--candidates` flagged
//! pairs; a scripted chat server that answers instantly (`fuzzy_llm::testing`) plays the
//! model on its own thread. Measured:
//!
//! - **in-process work per candidate**: reading both entities' evidence from SQLite,
//!   building the prompt and the request body, validating a reply (no network);
//! - **full runs** of `adjudicate` at several concurrency limits: candidates per second,
//!   wall time per candidate (at concurrency 1 this is the whole client overhead plus one
//!   loopback round trip to a server that does nothing: an upper bound of the overhead),
//!   and the most requests the server saw in flight, which must not exceed the limit;
//! - side by side, the **bare HTTP floor**: the same number of chat requests sent through
//!   the shared HTTP client alone, without evidence, prompt, validation or SQLite;
//! - runs against a "model" that takes 20 ms per answer, where concurrency pays and the
//!   server's count of requests in flight shows the limit at work.
//!
//! Targets (issue 4): overhead below 1 ms per candidate; at least 500 candidates/s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crm_store::phase0::{self, Entity, EntityKind, EntityLink, NewCandidate};
use crm_store::synthetic::{SyntheticConfig, generate};
use crm_store::{Store, StoreConfig, Timestamp};
use embed::http::{HttpClient, HttpClientConfig};
use futures::StreamExt as _;
use fuzzy_llm::chat::{ChatClient, ChatConfig};
use fuzzy_llm::evidence::{EvidenceLimits, load_evidence};
use fuzzy_llm::merges::{self, Decider, Decision};
use fuzzy_llm::runner::{RunOptions, adjudicate, select_candidates};
use fuzzy_llm::testing::{
    Reply, ScriptedChatServer, ScriptedServerConfig, SeenRequest, answer_json,
};
use fuzzy_llm::{prompt, verdict};
use rusqlite::TransactionBehavior;
use serde_json::json;

use super::{BenchContext, Report, ms, per_sec, percentile};

const MODEL: &str = "bench/instant-judge";

/// Flags of `crm-bench fuzzy`.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzyArgs {
    /// Candidate pairs per run.
    #[arg(long, default_value_t = 2000)]
    pub candidates: u64,
    /// Concurrency limits to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub concurrency: Vec<usize>,
}

/// Runs the suite.
pub fn run(ctx: &BenchContext, args: &FuzzyArgs) -> anyhow::Result<Vec<Report>> {
    anyhow::ensure!(args.candidates > 0, "--candidates must be at least 1");
    let db = ctx.work_dir.join("fuzzy-bench.db");
    let store = build_crm(&db, args.candidates)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    let mut report = Report::new("fuzzy", &["measure", "concurrency", "value", "unit"]);
    report.figure("candidates", args.candidates);

    // In-process work per candidate, no network, in three parts.
    let parts = in_process_samples(&store)?;
    for (label, key, mut samples) in [
        (
            "evidence, prompt, body, validation",
            "prepare",
            parts.prepare,
        ),
        ("hard-evidence check", "hard_evidence", parts.hard_evidence),
        ("commit of one decision", "commit", parts.commit),
    ] {
        let p50 = percentile(&mut samples, 50.0).unwrap_or_default();
        let p99 = percentile(&mut samples, 99.0).unwrap_or_default();
        let mean =
            samples.iter().sum::<Duration>() / u32::try_from(samples.len().max(1)).unwrap_or(1);
        report.row([
            format!("in-process per candidate: {label} (mean / p50 / p99)"),
            "-".to_owned(),
            format!("{:.3} / {:.3} / {:.3}", ms(mean), ms(p50), ms(p99)),
            "ms".to_owned(),
        ]);
        report.figure(&format!("{key}_mean_ms"), ms(mean));
        report.figure(&format!("{key}_p50_ms"), ms(p50));
        report.figure(&format!("{key}_p99_ms"), ms(p99));
    }

    let mut per_candidate_c1 = None;
    let mut best_rate: f64 = 0.0;
    let mut limits_honoured = true;
    for &limit in &args.concurrency {
        let limit = limit.max(1);
        reset_candidates(&store)?;
        let server = instant_server()?;
        let client = chat_client(server.url(), limit)?;
        let started = Instant::now();
        let summary = runtime.block_on(adjudicate(&store, &client, &RunOptions::default(), &()))?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            summary.rejected + summary.vetoed == args.candidates && summary.aborted.is_none(),
            "the benchmark run did not decide every candidate: {summary:?}"
        );
        let rate = per_sec(args.candidates, elapsed);
        let per_candidate = elapsed / u32::try_from(args.candidates).unwrap_or(u32::MAX);
        let max_in_flight = server.stats().max_in_flight();
        limits_honoured &= max_in_flight <= limit as u64;
        best_rate = best_rate.max(rate);
        if limit == 1 {
            per_candidate_c1 = Some(per_candidate);
        }
        let c = limit.to_string();
        report.row([
            "crm-substrate adjudicate: candidates/s",
            &c,
            &format!("{rate:.0}"),
            "1/s",
        ]);
        report.row([
            "crm-substrate adjudicate: wall per candidate",
            &c,
            &format!("{:.3}", ms(per_candidate)),
            "ms",
        ]);
        report.row([
            "server max in flight (limit honoured?)",
            &c,
            &format!(
                "{max_in_flight} ({})",
                if max_in_flight <= limit as u64 {
                    "yes"
                } else {
                    "NO"
                }
            ),
            "requests",
        ]);
        report.row([
            "questions sent (the rest vetoed by hard evidence)",
            &c,
            &summary.asked.to_string(),
            "requests",
        ]);
        report.figure(&format!("candidates_per_sec_c{limit}"), rate);
        report.figure(&format!("asked_c{limit}"), summary.asked);
        report.figure(&format!("ms_per_candidate_c{limit}"), ms(per_candidate));
        report.figure(&format!("max_in_flight_c{limit}"), max_in_flight);

        let bare = bare_http_floor(&runtime, args.candidates, limit)?;
        let bare_rate = per_sec(args.candidates, bare);
        report.row([
            "bare shared HTTP client: requests/s",
            &c,
            &format!("{bare_rate:.0}"),
            "1/s",
        ]);
        report.row([
            "adjudicate / bare",
            &c,
            &format!("{:.2}", rate / bare_rate.max(f64::MIN_POSITIVE)),
            "ratio",
        ]);
        report.figure(&format!("bare_requests_per_sec_c{limit}"), bare_rate);
    }

    // A model that takes 20 ms per answer: concurrency now pays, and the server sees
    // exactly as many requests at once as the limit allows.
    let latency = Duration::from_millis(20);
    let slow_candidates = args.candidates.min(400);
    for &limit in &args.concurrency {
        let limit = limit.max(1);
        reset_candidates(&store)?;
        let server = slow_server(latency)?;
        let client = chat_client(server.url(), limit)?;
        let options = RunOptions {
            limit: Some(usize::try_from(slow_candidates).unwrap_or(usize::MAX)),
            ..RunOptions::default()
        };
        let started = Instant::now();
        let summary = runtime.block_on(adjudicate(&store, &client, &options, &()))?;
        let elapsed = started.elapsed();
        let rate = per_sec(summary.selected, elapsed);
        let max_in_flight = server.stats().max_in_flight();
        limits_honoured &= max_in_flight <= limit as u64;
        let c = limit.to_string();
        report.row([
            "20 ms model: candidates/s",
            &c,
            &format!("{rate:.0}"),
            "1/s",
        ]);
        report.row([
            "20 ms model: server max in flight",
            &c,
            &max_in_flight.to_string(),
            "requests",
        ]);
        report.figure(&format!("slow_model_candidates_per_sec_c{limit}"), rate);
        report.figure(&format!("slow_model_max_in_flight_c{limit}"), max_in_flight);
    }

    let overhead_ms = per_candidate_c1.map(ms);
    report.figure("client_overhead_upper_bound_ms", overhead_ms);
    report.figure("target_overhead_ms", 1.0);
    report.figure("target_candidates_per_sec", 500.0);
    report.figure("overhead_target_met", overhead_ms.map(|m| m < 1.0));
    report.figure("throughput_target_met", best_rate >= 500.0);
    report.figure("concurrency_limit_honoured", limits_honoured);
    Ok(vec![report])
}

/// A synthetic CRM with one entity per person and `pairs` pending candidates.
fn build_crm(db: &Path, pairs: u64) -> anyhow::Result<Store> {
    let config = SyntheticConfig {
        people: pairs * 2,
        organizations: (pairs / 5).max(10),
        interactions: pairs * 4,
        deals: pairs / 10,
        ..SyntheticConfig::default()
    };
    generate(db, &config, &mut |_| {}).context("generating the benchmark CRM")?;
    let store = Store::open(StoreConfig::new(db))?;
    let mut conn = store.writer()?;
    let tx = conn.transaction()?;
    let now = Timestamp::now();
    let person_ids: Vec<i64> = {
        let mut stmt = tx.prepare("SELECT id FROM people ORDER BY id")?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    for &id in &person_ids {
        let entity_id = EntityKind::Person.entity_id(id);
        phase0::insert_entity(
            &tx,
            &Entity {
                entity_id: entity_id.clone(),
                kind: EntityKind::Person,
                display_name: None,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                merged_into: None,
            },
        )?;
        phase0::upsert_link(
            &tx,
            &EntityLink {
                source_table: EntityKind::Person.source_table(),
                source_id: id,
                entity_id,
                rule: "singleton".to_owned(),
                linked_at: now,
            },
        )?;
    }
    for (i, pair) in person_ids.chunks_exact(2).take(pairs as usize).enumerate() {
        phase0::upsert_candidate(
            &tx,
            &NewCandidate {
                kind: EntityKind::Person,
                entity_a: EntityKind::Person.entity_id(pair[0]),
                entity_b: EntityKind::Person.entity_id(pair[1]),
                reasons: vec!["bench".to_owned()],
                score: 1.0 - (i as f64) / (pairs as f64 * 2.0),
            },
            now,
        )?;
    }
    // Synthetic neighbours often have two different LinkedIn profiles, which vetoes the
    // pair without a question; without them nearly every pair takes the full path.
    tx.execute("UPDATE people SET linkedin_url = NULL", [])?;
    tx.commit()?;
    drop(conn);
    Ok(store)
}

fn reset_candidates(store: &Store) -> anyhow::Result<()> {
    let conn = store.writer()?;
    conn.execute(
        "UPDATE entity_candidates SET status = 'pending', decided_by = NULL, decided_at = NULL, \
         raw_reply = NULL",
        [],
    )?;
    Ok(())
}

/// A server that says "different" at once, on its own thread.
fn instant_server() -> anyhow::Result<ScriptedChatServer> {
    slow_server(Duration::ZERO)
}

/// A server that says "different" after `latency` (zero: at once), on its own thread.
fn slow_server(latency: Duration) -> anyhow::Result<ScriptedChatServer> {
    let server = ScriptedChatServer::start_background(
        ScriptedServerConfig::new(MODEL),
        move |request: &SeenRequest, _| {
            let answer = match request.pair() {
                Some((a, b)) => Reply::content(answer_json(a, b, false, 0.9, "instant")),
                None => Reply::status(400, "no pair in the prompt"),
            };
            if latency.is_zero() {
                answer
            } else {
                Reply::Delayed(latency, Box::new(answer))
            }
        },
        1,
    )
    .context("starting the scripted chat server")?;
    server.stats().keep_requests(false);
    Ok(server)
}

fn http_config(url: &str, limit: usize) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.max_concurrency = limit;
    config.request_timeout = Duration::from_secs(30);
    config
}

fn chat_client(url: &str, limit: usize) -> anyhow::Result<ChatClient> {
    Ok(ChatClient::new(
        HttpClient::new(http_config(url, limit))?,
        ChatConfig::new(MODEL),
    )?)
}

/// Per-candidate timings of the work around the model call.
struct InProcess {
    /// Both entities' evidence, the prompt, the request body, validating a reply.
    prepare: Vec<Duration>,
    /// `entity-resolve`'s hard-evidence check of the pair.
    hard_evidence: Vec<Duration>,
    /// One decision in its own `IMMEDIATE` transaction (a rejection).
    commit: Vec<Duration>,
}

/// Times the work around the model call for every candidate, then puts the candidates
/// back to pending.
fn in_process_samples(store: &Store) -> anyhow::Result<InProcess> {
    let conn = store.reader()?;
    let ids = select_candidates(&conn, &RunOptions::default())?;
    let limits = EvidenceLimits::default();
    let format = verdict::response_format();
    let decider: Decider = format!("llm:{MODEL}").parse()?;
    let mut out = InProcess {
        prepare: Vec::with_capacity(ids.len()),
        hard_evidence: Vec::with_capacity(ids.len()),
        commit: Vec::with_capacity(ids.len()),
    };
    let mut writer = store.writer()?;
    for id in ids {
        let Some(candidate) = phase0::get_candidate(&conn, id)? else {
            continue;
        };
        let started = Instant::now();
        let a = load_evidence(&conn, &candidate.entity_a, candidate.kind, &limits)?;
        let b = load_evidence(&conn, &candidate.entity_b, candidate.kind, &limits)?;
        let (Ok(a), Ok(b)) = (a, b) else {
            anyhow::bail!("candidate {id} names an entity that is not live");
        };
        let messages = prompt::messages(&a, &b);
        let body = serde_json::to_vec(&json!({
            "model": MODEL, "messages": messages, "temperature": 0.0, "response_format": format,
        }))?;
        let reply = answer_json(
            &candidate.entity_a,
            &candidate.entity_b,
            false,
            0.9,
            "instant",
        );
        let parsed = verdict::parse_verdict(&reply, &candidate.entity_a, &candidate.entity_b);
        out.prepare.push(started.elapsed());
        anyhow::ensure!(
            parsed.is_ok() && !body.is_empty(),
            "the canned reply did not validate"
        );

        let started = Instant::now();
        merges::hard_evidence_conflict(
            &conn,
            candidate.entity_a.parse()?,
            candidate.entity_b.parse()?,
        )?;
        out.hard_evidence.push(started.elapsed());

        let started = Instant::now();
        let tx = writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let decision = Decision {
            decided_by: &decider,
            confidence: Some(0.9),
            rationale: "",
            raw_reply: Some(&reply),
        };
        merges::reject_candidate(&tx, id, &decision, Timestamp::now())?;
        tx.commit()?;
        out.commit.push(started.elapsed());
    }
    drop(writer);
    reset_candidates(store)?;
    Ok(out)
}

/// `n` chat requests through the shared HTTP client with `limit` in flight, nothing else.
fn bare_http_floor(
    runtime: &tokio::runtime::Runtime,
    n: u64,
    limit: usize,
) -> anyhow::Result<Duration> {
    let server = instant_server()?;
    let http = HttpClient::new(http_config(server.url(), limit))?;
    let body = Arc::new(json!({
        "model": MODEL,
        "temperature": 0.0,
        "messages": [
            {"role": "system", "content": "x"},
            {"role": "user", "content": "Record A (entity_id \"person:1\"):\n<record>\n{}\n</record>\n\nRecord B (entity_id \"person:2\"):\n<record>\n{}\n</record>"}
        ]
    }));
    let started = Instant::now();
    runtime.block_on(async {
        futures::stream::iter(0..n)
            .map(|_| {
                let http = http.clone();
                let body = body.clone();
                async move {
                    http.post_json::<_, serde_json::Value>(
                        fuzzy_llm::chat::CHAT_COMPLETIONS_PATH,
                        &*body,
                    )
                    .await
                }
            })
            .buffer_unordered(limit)
            .fold(Ok(()), |acc, r| async move { acc.and(r.map(drop)) })
            .await
    })?;
    Ok(started.elapsed())
}
