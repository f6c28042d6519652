//! One run of the fuzzy tier over the pending candidates.
//!
//! Candidates are taken highest score first. For each, the evidence of both entities is
//! read (a short read, never held across the network call); hard evidence that
//! conflicts rejects the pair by rule without asking the model; otherwise the model is
//! asked, up to the HTTP client's concurrency limit at once. Each answer is committed in
//! its own short `IMMEDIATE` transaction as soon as it arrives, after checking that the
//! candidate is still undecided, so a crash loses no committed decision and a re-run
//! repeats none.
//!
//! What an answer leads to:
//!
//! | answer | candidate afterwards |
//! | --- | --- |
//! | same entity, confidence ≥ `min_confidence`, under the cap | `merged` (through `entity-resolve`'s merge machinery) |
//! | same entity, confidence below `min_confidence` | stays `pending`, the reply kept in `raw_reply`; not asked again unless `reask` |
//! | same entity, but the cap is reached | stays `pending`, untouched; asked again next run |
//! | not the same entity | `rejected` |
//! | malformed, prose, wrong fields, out of range, other ids | `error`, the reply kept in `raw_reply` |
//! | the request failed (after retries) | stays `pending`, untouched |
//! | hard evidence conflicts (checked before asking) | `rejected`, decided by `rule` |
//!
//! Once the cap of merges is reached no new question is sent: the rest stay pending for
//! the next run, and the summary says the cap was reached.

use std::time::{Duration, Instant};

use crm_store::phase0::{self, Candidate, CandidateStatus, EntityKind, RunStatus};
use crm_store::{Store, Timestamp};
use entity_resolve::EntityId;
use entity_resolve::merges::{self, Decider};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::chat::{ChatClient, ChatMessage, ChatReply};
use crate::decide::Accepted;
use crate::error::{FuzzyError, sql};
use crate::evidence::{EvidenceLimits, NotLive, generation_conflict, load_evidence};
use crate::verdict::{ReplyProblem, Verdict, cut, parse_verdict, response_format};
use crate::{decide, prompt};

/// The `ingest_runs.step` of this tier.
pub const STEP: &str = "fuzzy";

/// Longest raw reply kept in `raw_reply`, in characters.
pub const MAX_RAW_REPLY_CHARS: usize = 16_000;

/// When a "same entity" answer may become a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MergePolicy {
    /// A "same entity" answer merges only at or above this confidence (0..=1).
    pub min_confidence: f64,
    /// At most this many merges per run; 0 means none at all.
    pub max_merges_per_run: u32,
}

impl Default for MergePolicy {
    fn default() -> Self {
        Self {
            min_confidence: 0.9,
            max_merges_per_run: 200,
        }
    }
}

/// What one run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunOptions {
    /// At most this many candidates (the highest scores); all when `None`.
    pub limit: Option<usize>,
    /// Only candidates whose resolver score is at least this.
    pub min_score: f64,
    /// Ask the model but write nothing: no decision, no merge, no `ingest_runs` row.
    pub dry_run: bool,
    /// Also ask again the candidates the model answered before without a decision
    /// (uncertain answers still pending, and candidates in `error`).
    pub reask: bool,
    /// Merge threshold and cap.
    pub policy: MergePolicy,
    /// How much evidence the model is shown.
    pub evidence: EvidenceLimits,
    /// Stop the run after this many requests in a row failed (endpoint down, timeouts).
    pub max_consecutive_failures: u32,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            limit: None,
            min_score: 0.0,
            dry_run: false,
            reask: false,
            policy: MergePolicy::default(),
            evidence: EvidenceLimits::default(),
            max_consecutive_failures: 5,
        }
    }
}

impl RunOptions {
    fn validate(&self) -> Result<(), FuzzyError> {
        let c = self.policy.min_confidence;
        if !(c.is_finite() && c > 0.0 && c <= 1.0) {
            return Err(FuzzyError::InvalidConfig(format!(
                "min_confidence must be in (0, 1], got {c}"
            )));
        }
        if !self.min_score.is_finite() {
            return Err(FuzzyError::InvalidConfig(format!(
                "min_score must be a number, got {}",
                self.min_score
            )));
        }
        if self.max_consecutive_failures == 0 {
            return Err(FuzzyError::InvalidConfig(
                "max_consecutive_failures must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Merged; the `entity_merges` row.
    Merged {
        /// The merge's id.
        merge_id: i64,
    },
    /// Dry run: would have been merged.
    WouldMerge,
    /// The model said they differ.
    Rejected,
    /// Hard evidence conflicts; rejected by rule without asking the model.
    Vetoed {
        /// What conflicts.
        conflict: String,
    },
    /// "Same entity", but below the confidence threshold: left pending.
    Uncertain,
    /// "Same entity" with enough confidence, but the run's merge cap was reached.
    Capped,
    /// The reply could not be accepted: candidate marked `error`.
    InvalidReply {
        /// Why.
        problem: ReplyProblem,
    },
    /// The request failed after retries: left pending.
    RequestFailed {
        /// The error, as text.
        error: String,
    },
    /// An entity of the pair no longer exists or was merged away: left alone.
    Stale {
        /// The entity that is not live.
        entity: String,
        /// Why.
        why: NotLive,
    },
    /// Someone else decided the candidate while the model was thinking: left alone.
    DecidedElsewhere,
}

/// One candidate's outcome, as reported to the [`RunObserver`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The candidate's id.
    pub candidate_id: i64,
    /// Person or organisation.
    pub kind: EntityKind,
    /// One entity.
    pub entity_a: String,
    /// The other.
    pub entity_b: String,
    /// The resolver's score.
    pub score: f64,
    /// The model's valid answer, if it gave one.
    pub verdict: Option<Verdict>,
    /// What was done.
    #[serde(flatten)]
    pub action: Action,
    /// Time of the model call including retries, if the model was asked.
    pub latency_ms: Option<f64>,
}

/// Counts of one run. In a dry run, `merged` counts the merges that would have been made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The `ingest_runs` row (none in a dry run).
    pub run_id: Option<i64>,
    /// The chat model asked.
    pub model: String,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Candidates selected for this run.
    pub selected: u64,
    /// Questions sent to the model (answered or not).
    pub asked: u64,
    /// Merged (or, in a dry run, would have been).
    pub merged: u64,
    /// Rejected on the model's answer.
    pub rejected: u64,
    /// Rejected by the hard-evidence rule, without asking.
    pub vetoed: u64,
    /// Left pending: "same entity" below the threshold.
    pub uncertain: u64,
    /// Left pending: the merge cap was reached.
    pub capped: u64,
    /// Marked `error`: the reply was not acceptable.
    pub invalid_replies: u64,
    /// Left pending: the request failed.
    pub request_failures: u64,
    /// Left alone: an entity of the pair is gone.
    pub stale: u64,
    /// Left alone: decided by someone else during the run.
    pub decided_elsewhere: u64,
    /// Selected but not looked at, because the cap was reached or the run stopped early.
    pub not_reached: u64,
    /// The cap in force.
    pub max_merges_per_run: u32,
    /// Whether the cap stopped the run.
    pub cap_reached: bool,
    /// Why the run stopped early, if it did (the endpoint kept failing).
    pub aborted: Option<String>,
    /// Wall time.
    pub elapsed_ms: f64,
}

impl RunSummary {
    fn count(&mut self, action: &Action) {
        let slot = match action {
            Action::Merged { .. } | Action::WouldMerge => &mut self.merged,
            Action::Rejected => &mut self.rejected,
            Action::Vetoed { .. } => &mut self.vetoed,
            Action::Uncertain => &mut self.uncertain,
            Action::Capped => &mut self.capped,
            Action::InvalidReply { .. } => &mut self.invalid_replies,
            Action::RequestFailed { .. } => &mut self.request_failures,
            Action::Stale { .. } => &mut self.stale,
            Action::DecidedElsewhere => &mut self.decided_elsewhere,
        };
        *slot += 1;
    }
}

/// Hears about a run as it goes (progress bars, logs, streaming output).
pub trait RunObserver: Send + Sync {
    /// The run selected `candidates` candidates.
    fn started(&self, _candidates: u64) {}
    /// One candidate was dealt with.
    fn decided(&self, _decision: &Decision) {}
}

impl RunObserver for () {}

/// The candidates a run would take, highest score first: pending ones never answered
/// (plus, with `reask`, pending ones answered without a decision and those in `error`),
/// with at least `min_score`, at most `limit`.
pub fn select_candidates(conn: &Connection, options: &RunOptions) -> Result<Vec<i64>, FuzzyError> {
    let limit = options
        .limit
        .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
    conn.prepare_cached(
        "SELECT id FROM entity_candidates \
         WHERE score >= ?1 \
           AND ((status = 'pending' AND (?2 OR raw_reply IS NULL)) \
                OR (?2 AND status = 'error')) \
         ORDER BY score DESC, id LIMIT ?3",
    )
    .and_then(|mut s| {
        s.query_map(
            rusqlite::params![options.min_score, options.reask, limit],
            |r| r.get(0),
        )?
        .collect()
    })
    .map_err(sql("selecting candidates for the fuzzy tier"))
}

/// Whether a candidate in `status` may be decided by this run.
fn askable(status: CandidateStatus, reask: bool) -> bool {
    match status {
        CandidateStatus::Pending => true,
        CandidateStatus::Error => reask,
        CandidateStatus::Merged | CandidateStatus::Rejected => false,
    }
}

/// A candidate ready to go, or one settled without the model.
enum Prepared {
    Ask {
        candidate: Candidate,
        messages: Vec<ChatMessage>,
    },
    Settled {
        candidate: Candidate,
        action: Action,
    },
    Gone,
}

struct Asked {
    candidate: Candidate,
    reply: Result<ChatReply, FuzzyError>,
    latency: Duration,
}

/// Adjudicates the selected candidates. See the module documentation for what each
/// answer leads to.
///
/// Fails before asking anything when the options are invalid or the server does not
/// offer the model; fails mid-run only when SQLite does (decisions committed so far
/// stay). An endpoint that keeps failing ends the run early with
/// [`RunSummary::aborted`] set and the run recorded as failed.
#[tracing::instrument(skip_all, fields(model = %client.model(), dry_run = options.dry_run))]
pub async fn adjudicate(
    store: &Store,
    client: &ChatClient,
    options: &RunOptions,
    observer: &dyn RunObserver,
) -> Result<RunSummary, FuzzyError> {
    options.validate()?;
    let started = Instant::now();
    let decider: Decider = format!("llm:{}", client.model()).parse().map_err(|_| {
        FuzzyError::InvalidConfig(format!(
            "the chat model name {:?} cannot be recorded as a decider (empty, too long or \
                 with control characters)",
            client.model()
        ))
    })?;
    client.ensure_model().await?;

    let reader = store.reader()?;
    let ids = select_candidates(&reader, options)?;
    let mut writer = if options.dry_run {
        None
    } else {
        Some(store.writer()?)
    };
    let run_id = match writer.as_deref_mut() {
        Some(conn) => Some(in_transaction(conn, "starting a fuzzy run", |tx| {
            Ok(phase0::start_run(tx, STEP, Timestamp::now())?)
        })?),
        None => None,
    };
    let mut summary = RunSummary {
        run_id,
        model: client.model().to_owned(),
        dry_run: options.dry_run,
        selected: ids.len() as u64,
        max_merges_per_run: options.policy.max_merges_per_run,
        ..RunSummary::default()
    };
    tracing::info!(candidates = ids.len(), run_id, "fuzzy run started");
    observer.started(summary.selected);

    let mut reader = reader;
    let setup = Setup {
        client,
        decider: &decider,
        options,
        observer,
    };
    let outcome = drive(
        &mut reader,
        writer.as_deref_mut(),
        &setup,
        ids,
        &mut summary,
    )
    .await;
    summary.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;

    if let (Some(conn), Some(id)) = (writer.as_deref_mut(), run_id) {
        let counts = serde_json::to_value(&summary).unwrap_or_default();
        let (status, error) = match (&outcome, &summary.aborted) {
            (Err(e), _) => (RunStatus::Failed, Some(e.to_string())),
            (Ok(()), Some(why)) => (RunStatus::Failed, Some(why.clone())),
            (Ok(()), None) => (RunStatus::Ok, None),
        };
        let finished = in_transaction(conn, "finishing a fuzzy run", |tx| {
            Ok(phase0::finish_run(
                tx,
                id,
                status,
                &counts,
                error.as_deref(),
                Timestamp::now(),
            )?)
        });
        if let Err(e) = finished {
            // The run's own error matters more than failing to record it.
            if outcome.is_ok() {
                return Err(e);
            }
            tracing::warn!(error = %e, "could not record the end of the fuzzy run");
        }
    }
    outcome?;
    tracing::info!(
        merged = summary.merged,
        rejected = summary.rejected,
        uncertain = summary.uncertain,
        invalid = summary.invalid_replies,
        failed = summary.request_failures,
        cap_reached = summary.cap_reached,
        "fuzzy run finished"
    );
    Ok(summary)
}

/// What a run asks with, decides as, and reports to.
struct Setup<'a> {
    client: &'a ChatClient,
    decider: &'a Decider,
    options: &'a RunOptions,
    observer: &'a dyn RunObserver,
}

async fn drive(
    // `&mut` only so that the future stays `Send` (a `Connection` is not `Sync`).
    reader: &mut Connection,
    mut writer: Option<&mut Connection>,
    setup: &Setup<'_>,
    ids: Vec<i64>,
    summary: &mut RunSummary,
) -> Result<(), FuzzyError> {
    let Setup {
        client,
        decider,
        options,
        observer,
    } = *setup;
    let format = client.config().json_schema.then(response_format);
    let width = client.http().config().max_concurrency.max(1);
    let cap = u64::from(options.policy.max_merges_per_run);
    let mut queue = ids.into_iter();
    let mut in_flight = FuturesUnordered::new();
    let mut consecutive_failures = 0u32;
    // Set once the merges reach the cap: nothing more is sent, and "yes" answers still
    // in flight become `Capped`. (Not earlier: most answers are "no", so holding back
    // slots for possible merges would slow every run to protect a few questions.)
    let mut stop = cap == 0;
    if stop {
        summary.cap_reached = true;
    }

    loop {
        while !stop && summary.aborted.is_none() && in_flight.len() < width {
            let Some(id) = queue.next() else { break };
            match prepare(reader, id, options)? {
                Prepared::Gone => summary.decided_elsewhere += 1,
                Prepared::Settled { candidate, action } => {
                    let action = match (&action, writer.as_deref_mut()) {
                        (Action::Vetoed { conflict }, Some(conn)) => {
                            commit(conn, &candidate, options.reask, |tx| {
                                decide::veto(tx, &candidate, conflict)?;
                                Ok(action.clone())
                            })?
                        }
                        _ => action,
                    };
                    report(summary, observer, &candidate, None, action, None);
                }
                Prepared::Ask {
                    candidate,
                    messages,
                } => {
                    summary.asked += 1;
                    let format = format.as_ref();
                    in_flight.push(async move {
                        let sent = Instant::now();
                        let reply = client.complete(&messages, format).await;
                        Asked {
                            candidate,
                            reply,
                            latency: sent.elapsed(),
                        }
                    });
                }
            }
        }
        let Some(asked) = in_flight.next().await else {
            break;
        };
        let latency_ms = Some(asked.latency.as_secs_f64() * 1000.0);
        let candidate = asked.candidate;
        let reply = match asked.reply {
            Ok(reply) => {
                consecutive_failures = 0;
                reply
            }
            Err(error) => {
                consecutive_failures += 1;
                let text = error.to_string();
                tracing::warn!(candidate = candidate.id, error = %text, "asking the model failed");
                if summary.aborted.is_none() {
                    if is_fatal(&error) {
                        summary.aborted = Some(format!("stopped: {text}"));
                    } else if consecutive_failures >= options.max_consecutive_failures {
                        summary.aborted = Some(format!(
                            "stopped after {consecutive_failures} failed requests in a row; \
                             last: {text}"
                        ));
                    }
                }
                let action = Action::RequestFailed { error: text };
                report(summary, observer, &candidate, None, action, latency_ms);
                continue;
            }
        };
        let raw = raw_reply(&reply);
        let verdict = match &reply.content {
            None => Err(ReplyProblem::NoContent {
                finish_reason: reply.finish_reason.clone(),
            }),
            Some(content) => parse_verdict(content, &candidate.entity_a, &candidate.entity_b),
        };
        let merges_so_far = summary.merged;
        let (verdict, action) = match writer.as_deref_mut() {
            None => {
                let action = planned_action(&verdict, &options.policy, merges_so_far, cap);
                (verdict.ok(), action)
            }
            Some(conn) => {
                let action = commit(conn, &candidate, options.reask, |tx| {
                    let planned = planned_action(&verdict, &options.policy, merges_so_far, cap);
                    Ok(match (planned, &verdict) {
                        (Action::WouldMerge, Ok(v)) => {
                            match decide::accept(tx, &candidate, decider, v, &raw)? {
                                Accepted::Merged(merge_id) => Action::Merged { merge_id },
                                Accepted::Vetoed(conflict) => Action::Vetoed { conflict },
                                Accepted::NotLive(entity) => Action::Stale {
                                    entity,
                                    why: NotLive::Retired,
                                },
                            }
                        }
                        (Action::Rejected, Ok(v)) => {
                            decide::reject(tx, &candidate, decider, v, &raw)?;
                            Action::Rejected
                        }
                        (invalid @ Action::InvalidReply { .. }, _) => {
                            decide::mark_error(tx, &candidate, decider, &raw)?;
                            invalid
                        }
                        (Action::Uncertain, _) => {
                            decide::keep_pending(tx, &candidate, &raw)?;
                            Action::Uncertain
                        }
                        (other, _) => other,
                    })
                })?;
                (verdict.ok(), action)
            }
        };
        if matches!(action, Action::Merged { .. } | Action::WouldMerge) && summary.merged + 1 >= cap
        {
            stop = true;
            summary.cap_reached = true;
        }
        if matches!(action, Action::Capped) {
            summary.cap_reached = true;
        }
        report(summary, observer, &candidate, verdict, action, latency_ms);
    }
    summary.not_reached = queue.len() as u64;
    if stop && summary.not_reached > 0 {
        tracing::warn!(
            cap,
            left = summary.not_reached,
            "merge cap reached; the remaining candidates stay pending for the next run"
        );
    }
    Ok(())
}

fn report(
    summary: &mut RunSummary,
    observer: &dyn RunObserver,
    candidate: &Candidate,
    verdict: Option<Verdict>,
    action: Action,
    latency_ms: Option<f64>,
) {
    summary.count(&action);
    let decision = Decision {
        candidate_id: candidate.id,
        kind: candidate.kind,
        entity_a: candidate.entity_a.clone(),
        entity_b: candidate.entity_b.clone(),
        score: candidate.score,
        verdict,
        action,
        latency_ms,
    };
    tracing::debug!(
        candidate = decision.candidate_id,
        action = ?decision.action,
        "candidate dealt with"
    );
    observer.decided(&decision);
}

/// What a reply leads to, before the candidate's current state is checked.
fn planned_action(
    verdict: &Result<Verdict, ReplyProblem>,
    policy: &MergePolicy,
    merges_so_far: u64,
    cap: u64,
) -> Action {
    match verdict {
        Err(problem) => Action::InvalidReply {
            problem: problem.clone(),
        },
        Ok(v) if !v.same_entity => Action::Rejected,
        Ok(v) if v.confidence < policy.min_confidence => Action::Uncertain,
        Ok(_) if merges_so_far >= cap => Action::Capped,
        Ok(_) => Action::WouldMerge,
    }
}

/// Errors that will not go away by asking about the next candidate.
fn is_fatal(error: &FuzzyError) -> bool {
    use embed::http::HttpError;
    match error {
        FuzzyError::Http(http) => match http {
            HttpError::Tls { .. }
            | HttpError::InvalidBaseUrl { .. }
            | HttpError::InvalidApiKey { .. }
            | HttpError::ClientBuild { .. }
            | HttpError::ModelNotFound { .. } => true,
            HttpError::Status { status, .. } => matches!(status, 401 | 403 | 404),
            _ => false,
        },
        FuzzyError::InvalidConfig(_) => true,
        _ => false,
    }
}

/// The reply as kept in `raw_reply`: the content, else the whole choice.
fn raw_reply(reply: &ChatReply) -> String {
    let text = reply
        .content
        .as_deref()
        .or(reply.raw_choice.as_deref())
        .unwrap_or("");
    cut(text, MAX_RAW_REPLY_CHARS)
}

/// Reads the candidate and both entities' evidence; settles it without the model when
/// an entity is gone or hard evidence conflicts.
fn prepare(reader: &Connection, id: i64, options: &RunOptions) -> Result<Prepared, FuzzyError> {
    let Some(candidate) = phase0::get_candidate(reader, id)? else {
        return Ok(Prepared::Gone);
    };
    if !askable(candidate.status, options.reask) {
        return Ok(Prepared::Gone);
    }
    let mut evidence = Vec::with_capacity(2);
    for entity in [candidate.entity_a.clone(), candidate.entity_b.clone()] {
        match load_evidence(reader, &entity, candidate.kind, &options.evidence)? {
            Ok(ev) => evidence.push(ev),
            Err(why) => {
                let action = Action::Stale { entity, why };
                return Ok(Prepared::Settled { candidate, action });
            }
        }
    }
    let (a, b) = (&evidence[0], &evidence[1]);
    let conflict = match (
        candidate.entity_a.parse::<EntityId>(),
        candidate.entity_b.parse::<EntityId>(),
    ) {
        (Ok(ida), Ok(idb)) => merges::hard_evidence_conflict(reader, ida, idb)?,
        // Both entities exist, so their ids are well formed; a damaged row is vetoed
        // rather than trusted.
        _ => Some("an entity id that is not `kind:<n>`".to_owned()),
    }
    .or_else(|| generation_conflict(a, b));
    if let Some(conflict) = conflict {
        return Ok(Prepared::Settled {
            candidate,
            action: Action::Vetoed { conflict },
        });
    }
    let messages = prompt::messages(a, b);
    Ok(Prepared::Ask {
        candidate,
        messages,
    })
}

/// Runs `write` in one `IMMEDIATE` transaction if the candidate is still undecided;
/// [`Action::DecidedElsewhere`] otherwise.
fn commit(
    conn: &mut Connection,
    candidate: &Candidate,
    reask: bool,
    write: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<Action, FuzzyError>,
) -> Result<Action, FuzzyError> {
    in_transaction(
        conn,
        &format!("deciding candidate {}", candidate.id),
        |tx| {
            let current = phase0::get_candidate(tx, candidate.id)?;
            match current {
                Some(c) if askable(c.status, reask) => write(tx),
                _ => Ok(Action::DecidedElsewhere),
            }
        },
    )
}

fn in_transaction<T>(
    conn: &mut Connection,
    what: &str,
    body: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, FuzzyError>,
) -> Result<T, FuzzyError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql(format!("{what} (begin)")))?;
    let value = body(&tx)?;
    tx.commit().map_err(sql(format!("{what} (commit)")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(same: bool, confidence: f64) -> Result<Verdict, ReplyProblem> {
        Ok(Verdict {
            same_entity: same,
            confidence,
            reason: "r".to_owned(),
        })
    }

    #[test]
    fn actions_follow_the_policy() {
        let policy = MergePolicy {
            min_confidence: 0.9,
            max_merges_per_run: 2,
        };
        assert_eq!(
            planned_action(&verdict(true, 0.95), &policy, 0, 2),
            Action::WouldMerge
        );
        assert_eq!(
            planned_action(&verdict(true, 0.9), &policy, 1, 2),
            Action::WouldMerge
        );
        assert_eq!(
            planned_action(&verdict(true, 0.95), &policy, 2, 2),
            Action::Capped
        );
        assert_eq!(
            planned_action(&verdict(true, 0.89), &policy, 0, 2),
            Action::Uncertain
        );
        assert_eq!(
            planned_action(&verdict(false, 0.99), &policy, 0, 2),
            Action::Rejected
        );
        assert_eq!(
            planned_action(&verdict(false, 0.0), &policy, 0, 2),
            Action::Rejected
        );
        let bad = Err(ReplyProblem::Empty);
        assert!(matches!(
            planned_action(&bad, &policy, 0, 2),
            Action::InvalidReply { .. }
        ));
    }

    #[test]
    fn options_are_validated() {
        let mut o = RunOptions::default();
        assert!(o.validate().is_ok());
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            o.policy.min_confidence = bad;
            assert!(o.validate().is_err(), "{bad}");
        }
        o.policy.min_confidence = 1.0;
        o.min_score = f64::INFINITY;
        assert!(o.validate().is_err());
    }

    #[test]
    fn only_undecided_candidates_are_askable() {
        assert!(askable(CandidateStatus::Pending, false));
        assert!(!askable(CandidateStatus::Error, false));
        assert!(askable(CandidateStatus::Error, true));
        assert!(!askable(CandidateStatus::Merged, true));
        assert!(!askable(CandidateStatus::Rejected, true));
    }
}
