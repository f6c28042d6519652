//! Writing one decision, inside the caller's transaction.
//!
//! Merges, rejections and errors go through `entity-resolve`'s merge machinery (the one
//! place that knows how to retire an entity, re-point its links and candidates, and
//! record the merge); an unsure answer only keeps the reply on the still-pending
//! candidate, through `crm-store`'s helper.

use crm_store::Timestamp;
use crm_store::phase0::{self, Candidate, CandidateDecision, CandidateStatus};
use entity_resolve::ResolveError;
use entity_resolve::merges::{self, Decider, Decision};
use rusqlite::Transaction;

use crate::error::FuzzyError;
use crate::verdict::Verdict;

/// What accepting a candidate came to.
pub(crate) enum Accepted {
    /// Merged; the `entity_merges` id.
    Merged(i64),
    /// The merge machinery found conflicting hard evidence after all (e.g. a row that
    /// arrived since the candidate was read); the pair was rejected by rule instead.
    Vetoed(String),
    /// An entity of the pair was merged away or retired meanwhile; nothing was written.
    NotLive(String),
}

/// Merges the candidate's two entities on the model's answer.
pub(crate) fn accept(
    tx: &Transaction<'_>,
    candidate: &Candidate,
    decider: &Decider,
    verdict: &Verdict,
    raw_reply: &str,
) -> Result<Accepted, FuzzyError> {
    let decision = Decision {
        decided_by: decider,
        confidence: Some(verdict.confidence),
        rationale: &verdict.reason,
        raw_reply: Some(raw_reply),
    };
    match merges::accept_candidate(tx, candidate.id, &decision, Timestamp::now()) {
        Ok(outcome) => Ok(Accepted::Merged(outcome.merge_id)),
        Err(ResolveError::ConflictingEvidence { evidence, .. }) => {
            let why = format!("conflicting hard evidence: {evidence}");
            veto(tx, candidate, &why)?;
            Ok(Accepted::Vetoed(why))
        }
        Err(ResolveError::EntityNotLive { entity, .. }) => Ok(Accepted::NotLive(entity)),
        Err(e) => Err(e.into()),
    }
}

/// Marks the candidate `rejected` on the model's answer.
pub(crate) fn reject(
    tx: &Transaction<'_>,
    candidate: &Candidate,
    decider: &Decider,
    verdict: &Verdict,
    raw_reply: &str,
) -> Result<(), FuzzyError> {
    let decision = Decision {
        decided_by: decider,
        confidence: Some(verdict.confidence),
        rationale: "",
        raw_reply: Some(raw_reply),
    };
    merges::reject_candidate(tx, candidate.id, &decision, Timestamp::now())?;
    Ok(())
}

/// Marks the candidate `rejected` by rule, without (or despite) the model.
pub(crate) fn veto(
    tx: &Transaction<'_>,
    candidate: &Candidate,
    why: &str,
) -> Result<(), FuzzyError> {
    let rationale = format!("vetoed by the fuzzy tier: {why}");
    let decision = Decision {
        decided_by: &Decider::Rule,
        confidence: None,
        rationale: &rationale,
        raw_reply: None,
    };
    merges::reject_candidate(tx, candidate.id, &decision, Timestamp::now())?;
    Ok(())
}

/// Marks the candidate `error`, keeping the reply for inspection.
pub(crate) fn mark_error(
    tx: &Transaction<'_>,
    candidate: &Candidate,
    decider: &Decider,
    raw_reply: &str,
) -> Result<(), FuzzyError> {
    merges::mark_candidate_error(tx, candidate.id, decider, raw_reply, Timestamp::now())?;
    Ok(())
}

/// Leaves the candidate pending but keeps the reply, so that the next run does not ask
/// again (unless told to) and a person can see what the model thought.
pub(crate) fn keep_pending(
    tx: &Transaction<'_>,
    candidate: &Candidate,
    raw_reply: &str,
) -> Result<(), FuzzyError> {
    let decision = CandidateDecision {
        status: CandidateStatus::Pending,
        decided_by: String::new(),
        raw_reply: Some(raw_reply.to_owned()),
    };
    phase0::decide_candidate(tx, candidate.id, &decision, Timestamp::now())?;
    Ok(())
}
