//! The difference between what the run computed and what is stored: the only writes a
//! run makes.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::assign::{Assignment, RuleMerge};
use crate::candidates::{Proposed, ordered};
use crate::ids::{EntityId, LinkRule};
use crate::state::{StoredState, StoredStatus};

/// A link to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkWrite {
    pub(crate) source_id: i64,
    pub(crate) entity: EntityId,
    pub(crate) rule: LinkRule,
    pub(crate) change: LinkChange,
}

/// What a link write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkChange {
    /// The row had no link.
    Added,
    /// The row moves to another entity.
    Moved,
    /// Same entity, another rule.
    RuleChanged,
}

/// A rule merge with its rationale.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedMerge {
    pub(crate) merge: RuleMerge,
    pub(crate) rationale: String,
}

/// Every write of one kind.
#[derive(Debug, Default)]
pub(crate) struct KindPlan {
    pub(crate) creates: Vec<(EntityId, Option<String>)>,
    pub(crate) revives: Vec<EntityId>,
    pub(crate) renames: Vec<(EntityId, Option<String>)>,
    pub(crate) merges: Vec<PlannedMerge>,
    pub(crate) retires: Vec<EntityId>,
    pub(crate) links: Vec<LinkWrite>,
    pub(crate) unlinks: Vec<i64>,
    /// Decided candidates whose entity lost a merge in this run: `(id, a, b)` moves
    /// the decision onto the winner (a rejection of L/X holds for W/X once L is W).
    pub(crate) candidate_repoints: Vec<(i64, EntityId, EntityId)>,
    pub(crate) candidate_inserts: Vec<Proposed>,
    pub(crate) candidate_updates: Vec<(i64, Proposed)>,
    pub(crate) candidate_deletes: Vec<i64>,
    /// Proposed pairs already pending with the same score and reasons.
    pub(crate) candidates_kept: u64,
    /// Proposed pairs a person or the fuzzy tier already decided: never re-flagged.
    pub(crate) candidates_decided: u64,
    /// Proposed pairs that are the two sides of an undone merge: never re-flagged.
    pub(crate) candidates_undone: u64,
}

impl KindPlan {
    /// Number of row writes the plan makes.
    pub(crate) fn write_count(&self) -> u64 {
        let merges: u64 = self
            .merges
            .iter()
            .map(|m| 2 + (m.merge.winner_rows.len() + m.merge.loser_rows.len()) as u64)
            .sum();
        (self.creates.len()
            + self.revives.len()
            + self.renames.len()
            + self.retires.len()
            + self.links.len()
            + self.unlinks.len()
            + self.candidate_repoints.len()
            + self.candidate_inserts.len()
            + self.candidate_updates.len()
            + self.candidate_deletes.len()) as u64
            + merges
    }
}

/// Inputs of [`diff`] for one kind.
pub(crate) struct Computed<'a> {
    /// Source ids of the live rows, ascending.
    pub(crate) ids: &'a [i64],
    /// Display names of the rows.
    pub(crate) display: &'a [&'a str],
    /// Clusters of row indexes.
    pub(crate) groups: &'a [Vec<u32>],
    /// Rule of each row's first union (`None`: a singleton).
    pub(crate) rule_of: &'a [Option<LinkRule>],
    pub(crate) assignment: &'a Assignment,
    /// Proposed candidates (pairs of distinct entities).
    pub(crate) proposed: &'a [Proposed],
}

/// Computes the writes that turn `stored` into `computed`.
pub(crate) fn diff(computed: &Computed<'_>, stored: &StoredState) -> KindPlan {
    let mut plan = KindPlan::default();
    let a = computed.assignment;
    let id_of = |row: u32| computed.ids[row as usize];
    // Entities.
    let created: HashSet<EntityId> = a.created.iter().copied().collect();
    let mut seen: HashSet<EntityId> = HashSet::new();
    for (g, rows) in computed.groups.iter().enumerate() {
        let entity = a.entity_of_group[g];
        if !seen.insert(entity) {
            continue;
        }
        let anchor = rows.iter().find(|&&r| id_of(r) == entity.n).copied();
        let display = anchor
            .into_iter()
            .chain(rows.iter().copied())
            .map(|r| computed.display[r as usize])
            .find(|d| !d.is_empty())
            .map(str::to_owned);
        if created.contains(&entity) {
            plan.creates.push((entity, display));
        } else if let Some(stored_entity) = stored.entities.get(&entity)
            && stored_entity.display_name.as_deref() != display.as_deref()
        {
            plan.renames.push((entity, display));
        }
    }
    plan.revives = a.revived.clone();
    plan.retires = a.retired.clone();
    // Merges, with the rules that joined their cluster as rationale.
    for m in &a.merges {
        let rules: BTreeSet<&str> = computed.groups[m.group]
            .iter()
            .filter_map(|&r| computed.rule_of[r as usize])
            .map(LinkRule::as_str)
            .collect();
        let rules: Vec<&str> = rules.into_iter().collect();
        plan.merges.push(PlannedMerge {
            merge: m.clone(),
            rationale: format!(
                "deterministic rules joined their rows: {}",
                rules.join(", ")
            ),
        });
    }
    // Links.
    let mut live: HashSet<i64> = HashSet::with_capacity(computed.ids.len());
    for (g, rows) in computed.groups.iter().enumerate() {
        let entity = a.entity_of_group[g];
        for &r in rows {
            let sid = id_of(r);
            live.insert(sid);
            let rule = computed.rule_of[r as usize].unwrap_or(LinkRule::Singleton);
            let change = match stored.links.get(&sid) {
                None => Some(LinkChange::Added),
                Some(l) if l.entity != entity => Some(LinkChange::Moved),
                Some(l) if l.rule != Some(rule) => Some(LinkChange::RuleChanged),
                Some(_) => None,
            };
            if let Some(change) = change {
                plan.links.push(LinkWrite {
                    source_id: sid,
                    entity,
                    rule,
                    change,
                });
            }
        }
    }
    let mut unlinks: Vec<i64> = stored
        .links
        .keys()
        .copied()
        .filter(|sid| !live.contains(sid))
        .collect();
    unlinks.sort_unstable();
    plan.unlinks = unlinks;
    // Candidates. Decided pairs touching a loser of this run move onto the winner.
    let winner_of: HashMap<EntityId, EntityId> =
        a.merges.iter().map(|m| (m.loser, m.winner)).collect();
    let follow = |mut e: EntityId| {
        for _ in 0..64 {
            match winner_of.get(&e) {
                Some(&w) => e = w,
                None => break,
            }
        }
        e
    };
    let mut by_pair: HashMap<(String, String), (i64, StoredStatus, f64, &str)> =
        HashMap::with_capacity(stored.candidates.len());
    for c in &stored.candidates {
        by_pair.insert(
            (c.a.clone(), c.b.clone()),
            (c.id, c.status, c.score, c.reasons.as_str()),
        );
    }
    for c in &stored.candidates {
        if c.status != StoredStatus::Decided {
            continue;
        }
        let (Ok(ea), Ok(eb)) = (c.a.parse::<EntityId>(), c.b.parse::<EntityId>()) else {
            continue;
        };
        let (na, nb) = (follow(ea), follow(eb));
        if (na, nb) == (ea, eb) || na == nb {
            continue;
        }
        let (x, y) = ordered(na, nb);
        let key = (x.to_string(), y.to_string());
        if by_pair.contains_key(&key) {
            continue;
        }
        by_pair.insert(key, (c.id, c.status, c.score, c.reasons.as_str()));
        plan.candidate_repoints.push((c.id, x, y));
    }
    let undone: HashSet<(EntityId, EntityId)> = stored
        .merges
        .iter()
        .filter(|m| m.undone)
        .map(|m| ordered(m.winner, m.loser))
        .collect();
    let mut matched: HashSet<i64> = HashSet::new();
    for p in computed.proposed {
        if undone.contains(&(p.a, p.b)) {
            plan.candidates_undone += 1;
            continue;
        }
        match by_pair.get(&(p.a.to_string(), p.b.to_string())) {
            Some(&(id, StoredStatus::Pending, score, reasons)) => {
                matched.insert(id);
                if score != p.score || reasons != p.reasons.to_json() {
                    plan.candidate_updates.push((id, p.clone()));
                } else {
                    plan.candidates_kept += 1;
                }
            }
            Some(&(id, StoredStatus::Decided, _, _)) => {
                matched.insert(id);
                plan.candidates_decided += 1;
            }
            None => plan.candidate_inserts.push(p.clone()),
        }
    }
    let mut deletes: Vec<i64> = stored
        .candidates
        .iter()
        .filter(|c| c.status == StoredStatus::Pending && !matched.contains(&c.id))
        .map(|c| c.id)
        .collect();
    deletes.sort_unstable();
    plan.candidate_deletes = deletes;
    plan
}
