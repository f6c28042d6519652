//! Durable merges: accept or reject a candidate, merge two entities, undo a merge.
//!
//! Every function works inside the caller's [`Transaction`], so a decision and its
//! bookkeeping (the candidate's status, a run log, an MCP write log) commit together or
//! not at all. What a merge writes:
//! - an `entity_merges` row (`decided_by` = `rule`, `llm:<model>` or `human:<who>`,
//!   confidence, rationale) and, in `entity_merge_rows`, the source rows each side held;
//! - the loser soft-deleted with `merged_into` = the winner;
//! - the loser's links re-pointed to the winner; rows of both sides get the rule
//!   `merge`, which the next run keeps;
//! - the pair's candidate marked `merged`; other candidates of the loser re-pointed to
//!   the winner (a rejection of L/X still holds for W/X once L is W).
//!
//! How re-runs treat merges (see the crate README): the rows recorded for a merge in
//! force are kept together whatever the rules say, so the winner keeps its id and the
//! loser is never resurrected. An undo is a new fact (`undone_at`, `undone_by`): the
//! loser comes back with the rows it held, the pair's candidate becomes `rejected`, and
//! re-runs keep the two sides apart even if a deterministic rule would join them: a
//! person's undo wins over the rules.
//!
//! ```no_run
//! use entity_resolve::merges::{self, Decider, Decision};
//! # fn main() -> Result<(), entity_resolve::ResolveError> {
//! # let mut conn = rusqlite::Connection::open("/data/crm.db").unwrap();
//! let tx = conn.transaction().unwrap();
//! let decider: Decider = "llm:qwen3-8b".parse()?;
//! let outcome = merges::accept_candidate(
//!     &tx,
//!     42,
//!     &Decision { decided_by: &decider, confidence: Some(0.97), rationale: "same person", raw_reply: None },
//!     crm_store::Timestamp::now(),
//! )?;
//! tx.commit().unwrap();
//! println!("merged {} into {}", outcome.loser, outcome.winner);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crm_store::phase0::{self, CandidateDecision, CandidateStatus, NewMerge};
use crm_store::{Organization, Person, Timestamp, queries};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{ResolveError, sqlite};
use crate::ids::{EntityId, EntityKind, LinkRule};
use crate::normalize::{LinkedinId, org_domain_from_url};

/// Who made a decision: `rule`, `llm:<model>` or `human:<who>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decider {
    /// The deterministic resolver.
    Rule,
    /// A model of the fuzzy tier.
    Llm(String),
    /// A person.
    Human(String),
}

impl Decider {
    /// Whether a person decided (a person may override conflicting hard evidence).
    pub fn is_human(&self) -> bool {
        matches!(self, Self::Human(_))
    }
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rule => f.write_str("rule"),
            Self::Llm(m) => write!(f, "llm:{m}"),
            Self::Human(w) => write!(f, "human:{w}"),
        }
    }
}

impl FromStr for Decider {
    type Err = ResolveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ResolveError::BadDecider(s.chars().take(80).collect());
        if s == "rule" {
            return Ok(Self::Rule);
        }
        let (kind, who) = s.split_once(':').ok_or_else(bad)?;
        let who = who.trim();
        if who.is_empty() || who.len() > 200 || who.chars().any(char::is_control) {
            return Err(bad());
        }
        match kind {
            "llm" => Ok(Self::Llm(who.to_owned())),
            "human" => Ok(Self::Human(who.to_owned())),
            _ => Err(bad()),
        }
    }
}

/// A decision on a candidate or a merge.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// Who decided.
    pub decided_by: &'a Decider,
    /// The decider's confidence in `[0, 1]`, if it gave one.
    pub confidence: Option<f64>,
    /// Why, in a sentence.
    pub rationale: &'a str,
    /// The judge's raw reply, kept on the candidate for inspection.
    pub raw_reply: Option<&'a str>,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The `entity_merges` row.
    pub merge_id: i64,
    /// The entity that kept its id.
    pub winner: EntityId,
    /// The entity retired into the winner.
    pub loser: EntityId,
    /// Links moved from the loser to the winner.
    pub rows_moved: u64,
    /// Other candidates of the loser moved onto the winner (or closed).
    pub candidates_repointed: u64,
}

/// What an undo did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoOutcome {
    /// The merge.
    pub merge_id: i64,
    /// The entity brought back.
    pub loser: EntityId,
    /// The entity it had been merged into.
    pub winner: EntityId,
    /// Links returned to the loser.
    pub rows_returned: u64,
}

/// Accepts a pending (or errored) candidate: merges its pair, the lower id winning
/// (as for rule merges), and marks it `merged`. Fails with
/// [`ResolveError::ConflictingEvidence`] when hard evidence conflicts, unless a person
/// decides.
pub fn accept_candidate(
    tx: &Transaction<'_>,
    candidate_id: i64,
    decision: &Decision<'_>,
    now: Timestamp,
) -> Result<MergeOutcome, ResolveError> {
    let (a, b) = open_candidate(tx, candidate_id)?;
    let (winner, loser) = if a <= b { (a, b) } else { (b, a) };
    let outcome = apply_merge(tx, winner, loser, decision, now)?;
    // apply_merge marked the pair's candidate merged; record the raw reply on it too.
    if let Some(raw) = decision.raw_reply {
        tx.execute(
            "UPDATE entity_candidates SET raw_reply = ?2 WHERE id = ?1",
            params![candidate_id, raw],
        )
        .map_err(sqlite(format!(
            "recording the reply on candidate {candidate_id}"
        )))?;
    }
    Ok(outcome)
}

/// Rejects a pending (or errored) candidate. The rationale is kept in the candidate's
/// `raw_reply` (with the judge's reply, when given). A rejected pair is never flagged
/// again; if both entities later share hard evidence, the deterministic rules still
/// link them (a rejection judges the fuzzy evidence, not new hard evidence).
pub fn reject_candidate(
    tx: &Transaction<'_>,
    candidate_id: i64,
    decision: &Decision<'_>,
    now: Timestamp,
) -> Result<(), ResolveError> {
    open_candidate(tx, candidate_id)?;
    let raw = match decision.raw_reply {
        Some(r) if !decision.rationale.is_empty() => Some(format!("{}\n\n{r}", decision.rationale)),
        Some(r) => Some(r.to_owned()),
        None => (!decision.rationale.is_empty()).then(|| decision.rationale.to_owned()),
    };
    phase0::decide_candidate(
        tx,
        candidate_id,
        &CandidateDecision {
            status: CandidateStatus::Rejected,
            decided_by: decision.decided_by.to_string(),
            raw_reply: raw,
        },
        now,
    )?;
    Ok(())
}

/// Marks a pending candidate `error` (the judge failed or answered off-topic), keeping
/// its raw reply. The candidate stays reviewable; it is never a merge.
pub fn mark_candidate_error(
    tx: &Transaction<'_>,
    candidate_id: i64,
    decided_by: &Decider,
    raw_reply: &str,
    now: Timestamp,
) -> Result<(), ResolveError> {
    open_candidate(tx, candidate_id)?;
    phase0::decide_candidate(
        tx,
        candidate_id,
        &CandidateDecision {
            status: CandidateStatus::Error,
            decided_by: decided_by.to_string(),
            raw_reply: Some(raw_reply.to_owned()),
        },
        now,
    )?;
    Ok(())
}

/// The candidate's pair, if it can still be decided.
fn open_candidate(
    conn: &Connection,
    candidate_id: i64,
) -> Result<(EntityId, EntityId), ResolveError> {
    let c = phase0::get_candidate(conn, candidate_id)?
        .ok_or(ResolveError::CandidateNotFound(candidate_id))?;
    if !matches!(c.status, CandidateStatus::Pending | CandidateStatus::Error) {
        return Err(ResolveError::CandidateDecided {
            id: candidate_id,
            status: c.status.to_string(),
        });
    }
    Ok((c.entity_a.parse()?, c.entity_b.parse()?))
}

/// Merges `loser` into `winner` (both live, same kind). See the module docs for what
/// is written. Fails on conflicting hard evidence (two LinkedIn profiles, two corporate
/// domains) or on a pair a person has split with an undo, unless a person decides.
pub fn apply_merge(
    tx: &Transaction<'_>,
    winner: EntityId,
    loser: EntityId,
    decision: &Decision<'_>,
    now: Timestamp,
) -> Result<MergeOutcome, ResolveError> {
    if winner.kind != loser.kind || winner == loser {
        return Err(ResolveError::InvalidMerge {
            winner: winner.to_string(),
            loser: loser.to_string(),
            reason: if winner == loser {
                "it is the same entity".into()
            } else {
                "they are of different kinds".into()
            },
        });
    }
    if let Some(c) = decision.confidence
        && !(0.0..=1.0).contains(&c)
    {
        return Err(ResolveError::InvalidMerge {
            winner: winner.to_string(),
            loser: loser.to_string(),
            reason: format!("confidence {c} is outside [0, 1]"),
        });
    }
    for e in [winner, loser] {
        require_live(tx, e)?;
    }
    if !decision.decided_by.is_human()
        && let Some(evidence) = hard_evidence_conflict(tx, winner, loser)?
    {
        return Err(ResolveError::ConflictingEvidence {
            winner: winner.to_string(),
            loser: loser.to_string(),
            evidence,
        });
    }
    let table = winner.kind.source_table();
    let winner_rows = linked_rows(tx, winner)?;
    let loser_rows = linked_rows(tx, loser)?;
    let merge_id = record_merge(
        tx,
        &MergeRecord {
            winner,
            loser,
            decided_by: decision.decided_by,
            confidence: decision.confidence,
            rationale: decision.rationale,
            winner_rows: &winner_rows,
            loser_rows: &loser_rows,
        },
        now,
    )?;
    let moved = tx
        .execute(
            "UPDATE entity_links SET entity_id = ?3, rule = ?4, linked_at = ?5 \
             WHERE source_table = ?1 AND entity_id = ?2",
            params![
                table.as_str(),
                loser.to_string(),
                winner.to_string(),
                LinkRule::Merge.as_str(),
                now.to_canonical()
            ],
        )
        .map_err(sqlite(format!("moving the links of {loser} to {winner}")))?;
    tx.execute(
        "UPDATE entity_links SET rule = ?3 WHERE source_table = ?1 AND entity_id = ?2 AND rule IS NOT ?3",
        params![table.as_str(), winner.to_string(), LinkRule::Merge.as_str()],
    )
    .map_err(sqlite(format!("marking the links of {winner} as merged")))?;
    let repointed = repoint_candidates(tx, winner, loser, decision.decided_by, now)?;
    tracing::info!(
        merge_id,
        winner = %winner,
        loser = %loser,
        decided_by = %decision.decided_by,
        rows_moved = moved,
        "merged entities"
    );
    Ok(MergeOutcome {
        merge_id,
        winner,
        loser,
        rows_moved: moved as u64,
        candidates_repointed: repointed,
    })
}

/// Undoes a merge: a new fact, the row stays. The loser comes back with the rows it
/// held when the merge was made, and the pair's candidate becomes `rejected`. The next
/// runs keep the two sides apart (see the module docs).
pub fn undo_merge(
    tx: &Transaction<'_>,
    merge_id: i64,
    undone_by: &Decider,
    now: Timestamp,
) -> Result<UndoOutcome, ResolveError> {
    let m = phase0::get_merge(tx, merge_id)?.ok_or(ResolveError::MergeNotFound(merge_id))?;
    if m.undone_at.is_some() {
        return Err(ResolveError::MergeAlreadyUndone(merge_id));
    }
    let winner: EntityId = m.winner.parse()?;
    let loser: EntityId = m.loser.parse()?;
    phase0::undo_merge(tx, merge_id, &undone_by.to_string(), now)?;
    phase0::restore_entity(tx, &m.loser, now)?;
    let table = loser.kind.source_table();
    let rows = merge_rows(tx, merge_id, "loser")?;
    let mut returned = 0u64;
    {
        let mut stmt = tx
            .prepare_cached(
                "UPDATE entity_links SET entity_id = ?3, rule = ?4, linked_at = ?5 \
                 WHERE source_table = ?1 AND source_id = ?2 AND entity_id IS NOT ?3",
            )
            .map_err(sqlite("preparing the undo of a merge"))?;
        for sid in &rows {
            returned += stmt
                .execute(params![
                    table.as_str(),
                    sid,
                    m.loser,
                    LinkRule::Undo.as_str(),
                    now.to_canonical()
                ])
                .map_err(sqlite(format!("returning {table}:{sid} to {loser}")))?
                as u64;
        }
    }
    let (a, b) = if m.winner <= m.loser {
        (&m.winner, &m.loser)
    } else {
        (&m.loser, &m.winner)
    };
    tx.execute(
        "UPDATE entity_candidates SET status = 'rejected', decided_by = ?4, decided_at = ?5, updated_at = ?5 \
         WHERE kind = ?1 AND entity_a = ?2 AND entity_b = ?3",
        params![winner.kind.as_str(), a, b, undone_by.to_string(), now.to_canonical()],
    )
    .map_err(sqlite(format!("rejecting the candidate {a} / {b} after an undo")))?;
    tracing::info!(merge_id, winner = %winner, loser = %loser, undone_by = %undone_by, rows_returned = returned, "undid merge");
    Ok(UndoOutcome {
        merge_id,
        loser,
        winner,
        rows_returned: returned,
    })
}

/// Hard evidence that says two entities differ: two different LinkedIn profiles
/// (people) or LinkedIn pages / corporate domains with nothing in common
/// (organisations), or an undone merge between them. `None` when nothing conflicts.
pub fn hard_evidence_conflict(
    conn: &Connection,
    a: EntityId,
    b: EntityId,
) -> Result<Option<String>, ResolveError> {
    let undone: Option<i64> = conn
        .query_row(
            "SELECT id FROM entity_merges WHERE undone_at IS NOT NULL AND \
             ((winner = ?1 AND loser = ?2) OR (winner = ?2 AND loser = ?1)) ORDER BY id LIMIT 1",
            params![a.to_string(), b.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(sqlite("looking for an undone merge"))?;
    if let Some(id) = undone {
        return Ok(Some(format!(
            "a person undid merge {id} of these two entities"
        )));
    }
    let ea = evidence_of(conn, a)?;
    let eb = evidence_of(conn, b)?;
    for (what, x, y) in [
        ("LinkedIn", &ea.linkedin, &eb.linkedin),
        ("corporate domain", &ea.domains, &eb.domains),
    ] {
        if !x.is_empty() && !y.is_empty() && x.is_disjoint(y) {
            let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
            return Ok(Some(format!("{what} {} vs {}", list(x), list(y))));
        }
    }
    Ok(None)
}

#[derive(Default)]
struct HardEvidence {
    linkedin: BTreeSet<String>,
    domains: BTreeSet<String>,
}

fn evidence_of(conn: &Connection, e: EntityId) -> Result<HardEvidence, ResolveError> {
    let rows = linked_rows(conn, e)?;
    let mut ev = HardEvidence::default();
    match e.kind {
        EntityKind::Person => {
            for p in queries::rows_by_ids::<Person>(conn, &rows)? {
                if p.deleted_at.is_some() {
                    continue;
                }
                if let Some(LinkedinId::Profile(slug)) =
                    p.linkedin_url.as_deref().and_then(LinkedinId::parse)
                {
                    ev.linkedin.insert(slug);
                }
            }
        }
        EntityKind::Organization => {
            for o in queries::rows_by_ids::<Organization>(conn, &rows)? {
                if o.deleted_at.is_some() {
                    continue;
                }
                for raw in [o.domain.as_deref(), o.website.as_deref()]
                    .into_iter()
                    .flatten()
                {
                    match LinkedinId::parse(raw) {
                        Some(LinkedinId::Company(slug)) => {
                            ev.linkedin.insert(slug);
                        }
                        _ => {
                            if let Some(d) = org_domain_from_url(raw) {
                                ev.domains.insert(d);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(ev)
}

fn require_live(conn: &Connection, e: EntityId) -> Result<(), ResolveError> {
    let hint = "merge live entities only (resolve the loser's winner first)";
    match phase0::get_entity(conn, &e.to_string())? {
        None => Err(ResolveError::EntityNotLive {
            entity: e.to_string(),
            state: "missing".into(),
            hint,
        }),
        Some(ent) if ent.kind != e.kind => Err(ResolveError::EntityNotLive {
            entity: e.to_string(),
            state: format!("stored as a {}", ent.kind),
            hint,
        }),
        Some(ent) if ent.deleted_at.is_some() => Err(ResolveError::EntityNotLive {
            entity: e.to_string(),
            state: match ent.merged_into {
                Some(w) => format!("merged into {w}"),
                None => "retired".into(),
            },
            hint,
        }),
        Some(_) => Ok(()),
    }
}

/// Source ids linked to an entity, ascending.
fn linked_rows(conn: &Connection, e: EntityId) -> Result<Vec<i64>, ResolveError> {
    // `+source_table` keeps the planner on the entity_id index: through the primary key
    // (source_table, source_id) it would walk every link of the table to find one
    // entity's rows.
    let mut stmt = conn
        .prepare_cached("SELECT source_id FROM entity_links WHERE +source_table = ?1 AND entity_id = ?2 ORDER BY source_id")
        .map_err(sqlite("reading the rows of an entity"))?;
    stmt.query_map(
        params![e.kind.source_table().as_str(), e.to_string()],
        |r| r.get(0),
    )
    .and_then(Iterator::collect)
    .map_err(sqlite(format!("reading the rows of {e}")))
}

fn merge_rows(conn: &Connection, merge_id: i64, side: &str) -> Result<Vec<i64>, ResolveError> {
    let mut stmt = conn
        .prepare_cached("SELECT source_id FROM entity_merge_rows WHERE merge_id = ?1 AND side = ?2 ORDER BY source_id")
        .map_err(sqlite("reading merge rows"))?;
    stmt.query_map(params![merge_id, side], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(sqlite(format!(
            "reading the {side} rows of merge {merge_id}"
        )))
}

/// Everything an `entity_merges` row and its rows hold.
pub(crate) struct MergeRecord<'a> {
    pub(crate) winner: EntityId,
    pub(crate) loser: EntityId,
    pub(crate) decided_by: &'a Decider,
    pub(crate) confidence: Option<f64>,
    pub(crate) rationale: &'a str,
    pub(crate) winner_rows: &'a [i64],
    pub(crate) loser_rows: &'a [i64],
}

/// Writes the merge row, its rows, and retires the loser into the winner.
pub(crate) fn record_merge(
    tx: &Transaction<'_>,
    m: &MergeRecord<'_>,
    now: Timestamp,
) -> Result<i64, ResolveError> {
    let merge_id = phase0::insert_merge(
        tx,
        &NewMerge {
            kind: m.winner.kind,
            winner: m.winner.to_string(),
            loser: m.loser.to_string(),
            decided_by: m.decided_by.to_string(),
            confidence: m.confidence,
            rationale: (!m.rationale.is_empty()).then(|| m.rationale.to_owned()),
        },
        now,
    )?;
    let table = m.winner.kind.source_table();
    let mut stmt = tx
        .prepare_cached("INSERT OR IGNORE INTO entity_merge_rows (merge_id, side, source_table, source_id) VALUES (?1, ?2, ?3, ?4)")
        .map_err(sqlite("preparing merge rows"))?;
    for (side, rows) in [("winner", m.winner_rows), ("loser", m.loser_rows)] {
        for sid in rows {
            stmt.execute(params![merge_id, side, table.as_str(), sid])
                .map_err(sqlite(format!(
                    "recording row {table}:{sid} of merge {merge_id}"
                )))?;
        }
    }
    phase0::retire_entity(tx, &m.loser.to_string(), &m.winner.to_string(), now)?;
    Ok(merge_id)
}

/// After `loser` merged into `winner`: the pair's open candidate becomes `merged`; any
/// other candidate of the loser moves onto the winner, unless the winner already has
/// one with the same entity (then an open duplicate is dropped, a decided one kept as
/// history). Returns how many candidates moved or closed.
fn repoint_candidates(
    tx: &Transaction<'_>,
    winner: EntityId,
    loser: EntityId,
    decided_by: &Decider,
    now: Timestamp,
) -> Result<u64, ResolveError> {
    let kind = winner.kind.as_str();
    let (w, l) = (winner.to_string(), loser.to_string());
    let ctx = || format!("re-pointing the candidates of {l} to {w}");
    let rows: Vec<(i64, String, String, String)> = {
        let mut stmt = tx
            .prepare_cached("SELECT id, entity_a, entity_b, status FROM entity_candidates WHERE kind = ?1 AND (entity_a = ?2 OR entity_b = ?2)")
            .map_err(sqlite(ctx()))?;
        stmt.query_map(params![kind, l], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .and_then(Iterator::collect)
        .map_err(sqlite(ctx()))?
    };
    let mut changed = 0u64;
    for (id, a, b, status) in rows {
        let other = if a == l { b } else { a };
        let open = status == "pending" || status == "error";
        if other == w {
            if open {
                tx.execute(
                    "UPDATE entity_candidates SET status = 'merged', decided_by = ?2, decided_at = ?3, updated_at = ?3 WHERE id = ?1",
                    params![id, decided_by.to_string(), now.to_canonical()],
                )
                .map_err(sqlite(ctx()))?;
                changed += 1;
            }
            continue;
        }
        let (na, nb) = if w <= other {
            (w.clone(), other)
        } else {
            (other, w.clone())
        };
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM entity_candidates WHERE kind = ?1 AND entity_a = ?2 AND entity_b = ?3)",
                params![kind, na, nb],
                |r| r.get(0),
            )
            .map_err(sqlite(ctx()))?;
        if exists {
            if open {
                tx.execute("DELETE FROM entity_candidates WHERE id = ?1", [id])
                    .map_err(sqlite(ctx()))?;
                changed += 1;
            }
            continue;
        }
        tx.execute(
            "UPDATE entity_candidates SET entity_a = ?2, entity_b = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, na, nb, now.to_canonical()],
        )
        .map_err(sqlite(ctx()))?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciders_round_trip() {
        for s in ["rule", "llm:qwen3-8b", "human:alice@example.com"] {
            assert_eq!(s.parse::<Decider>().unwrap().to_string(), s);
        }
        for s in [
            "",
            "robot",
            "llm:",
            "human: ",
            "llm",
            "human:a\u{0}b",
            "Rule",
        ] {
            assert!(s.parse::<Decider>().is_err(), "{s:?}");
        }
        assert!("human:bob".parse::<Decider>().unwrap().is_human());
        assert!(!"llm:x".parse::<Decider>().unwrap().is_human());
    }
}
