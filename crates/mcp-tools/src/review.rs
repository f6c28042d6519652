//! Human review of entity resolution: `review_merge_candidate` (accept or reject a
//! flagged pair) and `undo_merge`, through `entity_resolve::merges` with
//! `decided_by = human:<client>`.
//!
//! Like the other writes, each decision and its `mcp_write_log` row commit in one
//! transaction; a refused decision (unknown candidate, already decided, merge already
//! undone) is rolled back and logged with the outcome `rejected: <why>`.

use crm_store::Timestamp;
use crm_store::phase0::{self, McpWrite};
use crm_store::rusqlite::Connection;
use entity_resolve::ResolveError;
use entity_resolve::merges::{self, Decider, Decision};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::args::{self, Lines};
use crate::config::ToolsConfig;
use crate::error::ToolError;
use crate::reads::{CandidateView, candidate_view};
use crate::text::{TextLimits, fit};
use crate::views::{EntityView, MergeView, entity_view};
use crate::writes::{ClientIdentity, logged, to_value};

/// Longest accepted rationale, in characters.
const MAX_RATIONALE_CHARS: usize = 2_000;
/// Rows shown per entity in a review answer.
const REVIEW_ROWS: usize = 10;

impl From<ResolveError> for ToolError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::CandidateNotFound(id) => Self::not_found("merge candidate", id),
            ResolveError::MergeNotFound(id) => Self::not_found("merge", id),
            ResolveError::CandidateDecided { .. }
            | ResolveError::MergeAlreadyUndone(_)
            | ResolveError::EntityNotLive { .. }
            | ResolveError::InvalidMerge { .. }
            | ResolveError::ConflictingEvidence { .. }
            | ResolveError::BadEntityId(_)
            | ResolveError::BadDecider(_) => Self::Refused(e.to_string()),
            ResolveError::Store(s) => Self::Store(s),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// What to decide about a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// The two entities are the same: merge them (the lower entity id is kept).
    Accept,
    /// They are different: never propose this pair again.
    Reject,
}

/// Parameters of `review_merge_candidate`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewCandidateParams {
    /// The candidate id, from `list_merge_candidates`.
    pub id: i64,
    /// `accept` merges the two entities; `reject` records that they differ.
    pub decision: ReviewDecision,
    /// Why, in a sentence (kept with the decision; at most 2000 characters).
    pub rationale: String,
}

/// Answer of `review_merge_candidate`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReviewCandidateResult {
    /// The candidate after the decision.
    pub candidate: CandidateView,
    /// The merge made, when accepted (its id is what `undo_merge` takes).
    pub merge: Option<MergeView>,
    /// The `mcp_write_log` row that records the decision.
    pub log_id: i64,
}

pub(crate) fn review_candidate(
    conn: &mut Connection,
    config: &ToolsConfig,
    client: &ClientIdentity,
    p: &ReviewCandidateParams,
) -> Result<ReviewCandidateResult, ToolError> {
    const TOOL: &str = "review_merge_candidate";
    let rationale =
        args::required_text("rationale", &p.rationale, MAX_RATIONALE_CHARS, Lines::Multi)?;
    let decider = Decider::Human(client.name.clone());
    let arguments = to_value(p)?;
    let id = p.id;
    let (merge_id, log_id) = logged(conn, client, TOOL, &arguments, None, |tx| {
        let before = phase0::get_candidate(tx, id)?
            .ok_or_else(|| ToolError::not_found("merge candidate", id))?;
        let now = Timestamp::now();
        let decision = Decision {
            decided_by: &decider,
            confidence: None,
            rationale: &rationale,
            raw_reply: None,
        };
        let merge_id = match p.decision {
            ReviewDecision::Accept => {
                Some(merges::accept_candidate(tx, id, &decision, now)?.merge_id)
            }
            ReviewDecision::Reject => {
                merges::reject_candidate(tx, id, &decision, now)?;
                None
            }
        };
        let after = phase0::get_candidate(tx, id)?
            .ok_or_else(|| ToolError::Internal(format!("candidate {id} vanished")))?;
        let merge = merge_id
            .map(|m| phase0::get_merge(tx, m))
            .transpose()?
            .flatten();
        let log_id = phase0::insert_mcp_write(
            tx,
            &McpWrite {
                at: now,
                tool: TOOL.to_owned(),
                client: Some(client.label()),
                arguments: arguments.clone(),
                target_table: Some("entity_candidates".to_owned()),
                target_id: Some(id),
                before: Some(to_value(&before)?),
                after: Some(
                    serde_json::json!({ "candidate": to_value(&after)?, "merge": to_value(&merge)? }),
                ),
                outcome: "ok".to_owned(),
            },
        )?;
        Ok((merge_id, log_id))
    })?;
    let candidate = phase0::get_candidate(conn, id)?
        .ok_or_else(|| ToolError::not_found("merge candidate", id))?;
    let merge = merge_id
        .map(|m| phase0::get_merge(conn, m))
        .transpose()?
        .flatten();
    fit(config.response_budget_bytes as usize, limits(config), |l| {
        Ok(ReviewCandidateResult {
            candidate: candidate_view(conn, &candidate, l)?,
            merge: merge.as_ref().map(|m| MergeView::new(m, l)),
            log_id,
        })
    })
}

fn limits(config: &ToolsConfig) -> TextLimits {
    TextLimits {
        long: config.list_text_chars as usize,
        field: config.max_field_chars as usize,
    }
}

/// Parameters of `undo_merge`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoMergeParams {
    /// The merge id, from a `merges` list in `get_person` / `get_organization` or from
    /// `review_merge_candidate`.
    pub merge_id: i64,
    /// Why (recorded in the write log; at most 2000 characters).
    pub reason: Option<String>,
}

/// Answer of `undo_merge`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UndoMergeResult {
    /// The merge, now with `undone_at` and `undone_by`.
    pub merge: MergeView,
    /// The entity that was kept, with its rows after the undo.
    pub winner: EntityView,
    /// The entity brought back, with the rows it held before the merge.
    pub restored: EntityView,
    /// How many CRM rows went back to the restored entity.
    pub rows_returned: u32,
    /// The `mcp_write_log` row that records the undo.
    pub log_id: i64,
}

pub(crate) fn undo_merge(
    conn: &mut Connection,
    config: &ToolsConfig,
    client: &ClientIdentity,
    p: &UndoMergeParams,
) -> Result<UndoMergeResult, ToolError> {
    const TOOL: &str = "undo_merge";
    args::opt_text(
        "reason",
        p.reason.as_deref(),
        MAX_RATIONALE_CHARS,
        Lines::Multi,
    )?;
    let decider = Decider::Human(client.name.clone());
    let arguments = to_value(p)?;
    let id = p.merge_id;
    let (outcome, log_id) = logged(conn, client, TOOL, &arguments, None, |tx| {
        let before = phase0::get_merge(tx, id)?.ok_or_else(|| ToolError::not_found("merge", id))?;
        let now = Timestamp::now();
        let outcome = merges::undo_merge(tx, id, &decider, now)?;
        let after = phase0::get_merge(tx, id)?;
        let log_id = phase0::insert_mcp_write(
            tx,
            &McpWrite {
                at: now,
                tool: TOOL.to_owned(),
                client: Some(client.label()),
                arguments: arguments.clone(),
                target_table: Some("entity_merges".to_owned()),
                target_id: Some(id),
                before: Some(to_value(&before)?),
                after: Some(serde_json::json!({
                    "merge": to_value(&after)?,
                    "rows_returned": outcome.rows_returned,
                })),
                outcome: "ok".to_owned(),
            },
        )?;
        Ok((outcome, log_id))
    })?;
    let merge = phase0::get_merge(conn, id)?.ok_or_else(|| ToolError::not_found("merge", id))?;
    let winner = outcome.winner.to_string();
    let loser = outcome.loser.to_string();
    fit(config.response_budget_bytes as usize, limits(config), |l| {
        Ok(UndoMergeResult {
            merge: MergeView::new(&merge, l),
            winner: entity_view(conn, &winner, l, REVIEW_ROWS)?,
            restored: entity_view(conn, &loser, l, REVIEW_ROWS)?,
            rows_returned: u32::try_from(outcome.rows_returned).unwrap_or(u32::MAX),
            log_id,
        })
    })
}
