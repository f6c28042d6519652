//! Executes a [`KindPlan`] in short transactions, so the CRM keeps working while a
//! large first run writes a million links.
//!
//! Order matters for crash safety: entities first (links reference them), then merges
//! (loser retired with `merged_into`), then links, then retirements, then candidates. A
//! run stopped between two batches leaves a consistent state that the next run
//! completes: a row still linked to a merged loser resolves through `merged_into`, an
//! entity created without links is claimed again by the row it is named after.

use crm_store::Timestamp;
use crm_store::phase0::{self, Entity};
use rusqlite::{Connection, Transaction, TransactionBehavior, params};

use crate::error::{ResolveError, sqlite};
use crate::ids::EntityKind;
use crate::merges::{Decider, MergeRecord, record_merge};
use crate::plan::KindPlan;

/// Runs `f` over `items` in transactions of at most `batch` items; `after_batch` runs
/// after each commit (lease renewal, progress).
fn batched<T>(
    conn: &mut Connection,
    items: &[T],
    batch: usize,
    mut f: impl FnMut(&Transaction<'_>, &T) -> Result<(), ResolveError>,
    after_batch: &mut dyn FnMut(&Connection, u64) -> Result<(), ResolveError>,
) -> Result<(), ResolveError> {
    for chunk in items.chunks(batch.max(1)) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("starting a write batch"))?;
        for item in chunk {
            f(&tx, item)?;
        }
        tx.commit().map_err(sqlite("committing a write batch"))?;
        after_batch(conn, chunk.len() as u64)?;
    }
    Ok(())
}

/// Writes one kind's plan.
pub(crate) fn write_plan(
    conn: &mut Connection,
    kind: EntityKind,
    plan: &KindPlan,
    batch: usize,
    now: Timestamp,
    after_batch: &mut dyn FnMut(&Connection, u64) -> Result<(), ResolveError>,
) -> Result<(), ResolveError> {
    let table = kind.source_table().as_str();
    batched(
        conn,
        &plan.creates,
        batch,
        |tx, (id, display)| {
            phase0::insert_entity(
                tx,
                &Entity {
                    entity_id: id.to_string(),
                    kind,
                    display_name: display.clone(),
                    created_at: now,
                    updated_at: now,
                    deleted_at: None,
                    merged_into: None,
                },
            )?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.revives,
        batch,
        |tx, id| {
            phase0::restore_entity(tx, &id.to_string(), now)?;
            Ok(())
        },
        after_batch,
    )?;
    // One merge per transaction item; a merge is small (its rows are few).
    let rule = Decider::Rule;
    batched(
        conn,
        &plan.merges,
        batch.clamp(1, 100),
        |tx, m| {
            record_merge(
                tx,
                &MergeRecord {
                    winner: m.merge.winner,
                    loser: m.merge.loser,
                    decided_by: &rule,
                    confidence: Some(1.0),
                    rationale: &m.rationale,
                    winner_rows: &m.merge.winner_rows,
                    loser_rows: &m.merge.loser_rows,
                },
                now,
            )?;
            Ok(())
        },
        after_batch,
    )?;
    let linked_at = now.to_canonical();
    batched(
        conn,
        &plan.links,
        batch,
        |tx, l| {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO entity_links (source_table, source_id, entity_id, rule, linked_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (source_table, source_id) DO UPDATE SET entity_id = excluded.entity_id, rule = excluded.rule, \
                     linked_at = CASE WHEN entity_links.entity_id IS excluded.entity_id THEN entity_links.linked_at ELSE excluded.linked_at END",
                )
                .map_err(sqlite("preparing link writes"))?;
            stmt.execute(params![
                table,
                l.source_id,
                l.entity.to_string(),
                l.rule.as_str(),
                linked_at
            ])
            .map_err(sqlite(format!(
                "linking {table}:{} to {}",
                l.source_id, l.entity
            )))?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.unlinks,
        batch,
        |tx, sid| {
            phase0::delete_link(tx, kind.source_table(), *sid)?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.renames,
        batch,
        |tx, (id, display)| {
            phase0::set_entity_display_name(tx, &id.to_string(), display.as_deref(), now)?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.retires,
        batch,
        |tx, id| {
            tx.prepare_cached("UPDATE entities SET deleted_at = ?2, updated_at = ?2 WHERE entity_id = ?1 AND deleted_at IS NULL")
                .and_then(|mut s| s.execute(params![id.to_string(), now.to_canonical()]))
                .map_err(sqlite(format!("retiring {id}")))?;
            Ok(())
        },
        after_batch,
    )?;
    let stamp = now.to_canonical();
    batched(
        conn,
        &plan.candidate_repoints,
        batch,
        |tx, (id, a, b)| {
            tx.prepare_cached("UPDATE entity_candidates SET entity_a = ?2, entity_b = ?3, updated_at = ?4 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, a.to_string(), b.to_string(), stamp]))
                .map_err(sqlite(format!("re-pointing candidate {id}")))?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.candidate_deletes,
        batch,
        |tx, id| {
            tx.prepare_cached("DELETE FROM entity_candidates WHERE id = ?1 AND status = 'pending'")
                .and_then(|mut s| s.execute([id]))
                .map_err(sqlite(format!("removing stale candidate {id}")))?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.candidate_updates,
        batch,
        |tx, (id, p)| {
            tx.prepare_cached("UPDATE entity_candidates SET score = ?2, reasons = ?3, updated_at = ?4 WHERE id = ?1 AND status = 'pending'")
                .and_then(|mut s| s.execute(params![id, p.score, p.reasons.to_json(), stamp]))
                .map_err(sqlite(format!("updating candidate {id}")))?;
            Ok(())
        },
        after_batch,
    )?;
    batched(
        conn,
        &plan.candidate_inserts,
        batch,
        |tx, p| {
            tx.prepare_cached(
                "INSERT INTO entity_candidates (kind, entity_a, entity_b, reasons, score, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6) ON CONFLICT (kind, entity_a, entity_b) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![kind.as_str(), p.a.to_string(), p.b.to_string(), p.reasons.to_json(), p.score, stamp]))
            .map_err(sqlite(format!("flagging candidate {} / {}", p.a, p.b)))?;
            Ok(())
        },
        after_batch,
    )?;
    Ok(())
}
