//! Scores the stored resolution against a ground truth (the `PATH.truth.jsonl` that
//! `crm_store::synthetic` writes), for `crm-bench resolve` and the end-to-end tests.
//!
//! Definitions, per kind:
//! - a *true pair* is two rows of one truth cluster; a *linked pair* is two rows linked
//!   to one live entity;
//! - link precision = true linked pairs / linked pairs; link recall = linked true pairs
//!   / true pairs;
//! - a candidate is *true* when its two entities hold rows of the same truth cluster;
//! - recall of links ∪ candidates = true pairs whose rows are joined by links and true
//!   pending candidates (what an oracle fuzzy tier that accepts exactly the true
//!   candidates would reach);
//! - true pairs left = pairs of distinct entities inside one truth cluster after the
//!   deterministic links; candidates per true pair left = pending candidates / that;
//! - trap violations = trap pairs linked to one entity (must be 0).

use std::collections::{BTreeMap, HashMap};

use crm_store::synthetic::{DupKind, TruthRecord};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::{ResolveError, sqlite};
use crate::ids::{EntityId, EntityKind};

/// Figures of one duplicate kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindRecall {
    /// True pairs in clusters whose duplicates are all of this kind.
    pub true_pairs: u64,
    /// Of those, linked deterministically.
    pub linked: u64,
    /// Of those, joined by links and true candidates.
    pub reachable: u64,
}

impl KindRecall {
    /// Linked / true pairs (1 when there are none).
    pub fn link_recall(&self) -> f64 {
        ratio(self.linked, self.true_pairs)
    }

    /// Reachable / true pairs (1 when there are none).
    pub fn reach_recall(&self) -> f64 {
        ratio(self.reachable, self.true_pairs)
    }
}

/// Figures of one entity kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// Pairs of rows linked to one entity.
    pub linked_pairs: u64,
    /// Of those, true.
    pub linked_pairs_true: u64,
    /// True pairs.
    pub true_pairs: u64,
    /// Of those, linked.
    pub true_pairs_linked: u64,
    /// Of those, joined by links and true candidates.
    pub true_pairs_reachable: u64,
    /// Pending candidates of this kind.
    pub candidates: u64,
    /// Of those, true.
    pub candidates_true: u64,
    /// Pairs of distinct entities inside one truth cluster.
    pub true_pairs_left: u64,
    /// Trap pairs in the truth.
    pub traps: u64,
    /// Trap pairs linked to one entity (must be 0).
    pub trap_violations: u64,
    /// Trap pairs flagged as a candidate (allowed, reported).
    pub traps_flagged: u64,
    /// Per duplicate kind (`mixed`: clusters with several kinds).
    pub by_dup_kind: BTreeMap<String, KindRecall>,
}

impl QualityReport {
    /// Pairwise precision of deterministic links (1 when nothing is linked).
    pub fn link_precision(&self) -> f64 {
        ratio(self.linked_pairs_true, self.linked_pairs)
    }

    /// Pairwise recall of deterministic links.
    pub fn link_recall(&self) -> f64 {
        ratio(self.true_pairs_linked, self.true_pairs)
    }

    /// Recall of links ∪ true candidates.
    pub fn reach_recall(&self) -> f64 {
        ratio(self.true_pairs_reachable, self.true_pairs)
    }

    /// Pending candidates per true pair left for the fuzzy tier.
    pub fn candidates_per_true_pair_left(&self) -> f64 {
        if self.true_pairs_left == 0 {
            return self.candidates as f64;
        }
        self.candidates as f64 / self.true_pairs_left as f64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores the stored links and pending candidates of `kind` against `truth`.
pub fn score_against_truth(
    conn: &Connection,
    kind: EntityKind,
    truth: &[TruthRecord],
) -> Result<QualityReport, ResolveError> {
    let table = kind.source_table();
    // Row -> truth cluster; cluster -> label.
    let mut cluster_of: HashMap<i64, usize> = HashMap::new();
    let mut clusters: Vec<(&[i64], String)> = Vec::new();
    let mut traps: Vec<(i64, i64)> = Vec::new();
    for t in truth.iter().filter(|t| t.kind == kind && t.table == table) {
        if t.trap.is_some() {
            if let [a, b] = t.ids.as_slice() {
                traps.push((*a, *b));
            }
            continue;
        }
        let label = match t.dup_kinds.as_slice() {
            [one] => dup_label(*one),
            _ => "mixed".to_owned(),
        };
        for id in &t.ids {
            cluster_of.insert(*id, clusters.len());
        }
        clusters.push((t.ids.as_slice(), label));
    }
    // Links of live entities.
    let mut entity_of: HashMap<i64, EntityId> = HashMap::new();
    let mut rows_of: HashMap<EntityId, Vec<i64>> = HashMap::new();
    {
        let ctx = "reading links for the quality report";
        let mut stmt = conn
            .prepare(
                "SELECT l.source_id, l.entity_id FROM entity_links l JOIN entities e ON e.entity_id = l.entity_id \
                 WHERE l.source_table = ?1 AND e.deleted_at IS NULL",
            )
            .map_err(sqlite(ctx))?;
        let mut rows = stmt.query([table.as_str()]).map_err(sqlite(ctx))?;
        while let Some(row) = rows.next().map_err(sqlite(ctx))? {
            let sid: i64 = row.get(0).map_err(sqlite(ctx))?;
            let eid: String = row.get(1).map_err(sqlite(ctx))?;
            let Ok(eid) = eid.parse::<EntityId>() else {
                continue;
            };
            entity_of.insert(sid, eid);
            rows_of.entry(eid).or_default().push(sid);
        }
    }
    let mut report = QualityReport::default();
    for rows in rows_of.values() {
        let n = rows.len() as u64;
        report.linked_pairs += n * n.saturating_sub(1) / 2;
        let mut per_cluster: HashMap<usize, u64> = HashMap::new();
        for r in rows {
            if let Some(&c) = cluster_of.get(r) {
                *per_cluster.entry(c).or_default() += 1;
            }
        }
        report.linked_pairs_true += per_cluster
            .values()
            .map(|k| k * k.saturating_sub(1) / 2)
            .sum::<u64>();
    }
    // The truth cluster an entity stands for: the one most of its rows belong to.
    let truth_of_entity = |e: &EntityId| -> Option<usize> {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for r in rows_of.get(e)? {
            if let Some(&c) = cluster_of.get(r) {
                *counts.entry(c).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(c, n)| (*n, std::cmp::Reverse(*c)))
            .map(|(c, _)| c)
    };
    // Pending candidates; the true ones join entities for the reach measure.
    let mut reach = EntityUnion::default();
    {
        let ctx = "reading candidates for the quality report";
        let mut stmt = conn
            .prepare("SELECT entity_a, entity_b FROM entity_candidates WHERE kind = ?1 AND status = 'pending'")
            .map_err(sqlite(ctx))?;
        let mut rows = stmt.query([kind.as_str()]).map_err(sqlite(ctx))?;
        while let Some(row) = rows.next().map_err(sqlite(ctx))? {
            let a: String = row.get(0).map_err(sqlite(ctx))?;
            let b: String = row.get(1).map_err(sqlite(ctx))?;
            let (Ok(a), Ok(b)) = (a.parse::<EntityId>(), b.parse::<EntityId>()) else {
                continue;
            };
            report.candidates += 1;
            let (ta, tb) = (truth_of_entity(&a), truth_of_entity(&b));
            if ta.is_some() && ta == tb {
                report.candidates_true += 1;
                reach.union(a, b);
            }
            let is_trap = |x: &EntityId, y: &EntityId| {
                traps.iter().any(|(p, q)| {
                    let (ep, eq) = (entity_of.get(p), entity_of.get(q));
                    (ep == Some(x) && eq == Some(y)) || (ep == Some(y) && eq == Some(x))
                })
            };
            if !traps.is_empty() && is_trap(&a, &b) {
                report.traps_flagged += 1;
            }
        }
    }
    for (ids, label) in &clusters {
        let entry = report.by_dup_kind.entry(label.clone()).or_default();
        let mut distinct: Vec<EntityId> = ids
            .iter()
            .filter_map(|r| entity_of.get(r).copied())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let k = distinct.len() as u64;
        report.true_pairs_left += k * k.saturating_sub(1) / 2;
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                report.true_pairs += 1;
                entry.true_pairs += 1;
                let (ea, eb) = (entity_of.get(a).copied(), entity_of.get(b).copied());
                let (Some(ea), Some(eb)) = (ea, eb) else {
                    continue;
                };
                if ea == eb {
                    report.true_pairs_linked += 1;
                    report.true_pairs_reachable += 1;
                    entry.linked += 1;
                    entry.reachable += 1;
                } else if reach.find(ea) == reach.find(eb) {
                    report.true_pairs_reachable += 1;
                    entry.reachable += 1;
                }
            }
        }
    }
    report.traps = traps.len() as u64;
    report.trap_violations = traps
        .iter()
        .filter(
            |(a, b)| matches!((entity_of.get(a), entity_of.get(b)), (Some(x), Some(y)) if x == y),
        )
        .count() as u64;
    Ok(report)
}

fn dup_label(k: DupKind) -> String {
    k.as_str().to_owned()
}

/// Union-find over entity ids.
#[derive(Default)]
struct EntityUnion {
    parent: HashMap<EntityId, EntityId>,
}

impl EntityUnion {
    fn find(&mut self, e: EntityId) -> EntityId {
        let mut root = e;
        while let Some(&p) = self.parent.get(&root) {
            if p == root {
                break;
            }
            root = p;
        }
        let mut cur = e;
        while cur != root {
            let next = self.parent.get(&cur).copied().unwrap_or(root);
            self.parent.insert(cur, root);
            cur = next;
        }
        root
    }

    fn union(&mut self, a: EntityId, b: EntityId) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(hi, lo);
        }
    }
}
