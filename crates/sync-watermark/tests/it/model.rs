//! The model-based randomized test: random CRM histories interleaved with syncs (some
//! interrupted at random points); after the last sync the index must hold exactly what
//! a fresh full build of the final CRM holds, and `verify` must be clean.
//!
//! The CRM itself is the model: the oracle is a fresh full build into a second index.
//! Set `SYNC_MODEL_SEEDS` (default 40) and `SYNC_MODEL_OPS` (default 80) for longer runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crm_store::Timestamp;
use crm_store::rusqlite::{Connection, params};
use index_qdrant::{Index, IndexConfig};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use sync_watermark::{
    FailureKind, FaultAction, FaultPoint, FaultStage, Indexer, NoProgress, RunOutcome, SyncConfig,
    TableCounts,
};

use crate::behaviour::{assert_converged, base_time};
use crate::support::*;

const WORDS: &[&str] = &[
    "robot",
    "fund",
    "climate",
    "battery",
    "term",
    "sheet",
    "board",
    "seat",
    "pricing",
    "series",
    "seed",
    "lead",
    "diligence",
    "founder",
    "market",
    "revenue",
    "churn",
    "hiring",
    "nordic",
    "grid",
    "solar",
    "chip",
    "model",
    "agent",
    "coffee",
    "dinner",
    "call",
    "email",
    "résumé",
    "naïve",
    "東京",
    "Zürich",
    "<b>bold</b>",
    "&amp;",
    "o'brien",
    "x-ray",
    "2026",
];

struct World {
    rng: ChaCha8Rng,
    clock: Timestamp,
    next_id: i64,
    orgs: BTreeSet<i64>,
    people: BTreeSet<i64>,
    interactions: BTreeSet<i64>,
    deals: BTreeSet<i64>,
    /// Live entities by kind, and the rows each absorbed in merges (for undos).
    entities: BTreeMap<String, &'static str>,
    retired: BTreeMap<String, (String, Vec<(String, i64)>)>,
    /// Shards of the embedded collection the histories are synced into (1 to 3 by
    /// seed; the fresh build compared with is always one shard).
    shards: usize,
}

impl World {
    fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock: base_time(),
            next_id: 1,
            orgs: BTreeSet::new(),
            people: BTreeSet::new(),
            interactions: BTreeSet::new(),
            deals: BTreeSet::new(),
            entities: BTreeMap::new(),
            retired: BTreeMap::new(),
            shards: 1 + (seed % 3) as usize,
        }
    }

    fn tick(&mut self) {
        let ms = self.rng.random_range(1..2500);
        self.clock = self.clock.saturating_add(Duration::from_millis(ms));
    }

    /// A stamp for a write now: usually the clock, sometimes a little in the past (a
    /// writer whose clock lags or who committed late), sometimes with second resolution.
    fn stamp(&mut self) -> String {
        let late = if self.rng.random_bool(0.2) {
            self.rng.random_range(0..900)
        } else {
            0
        };
        let at = self.clock.saturating_sub(Duration::from_millis(late));
        stamp(at, self.rng.random_bool(0.3))
    }

    fn text(&mut self, max_words: usize) -> String {
        let n = self.rng.random_range(0..=max_words);
        let mut out = String::new();
        for i in 0..n {
            if i > 0 {
                out.push(if self.rng.random_bool(0.1) { '.' } else { ' ' });
                out.push(' ');
            }
            out.push_str(WORDS[self.rng.random_range(0..WORDS.len())]);
        }
        out
    }

    fn pick(&mut self, set: &BTreeSet<i64>) -> Option<i64> {
        if set.is_empty() {
            return None;
        }
        let i = self.rng.random_range(0..set.len());
        set.iter().nth(i).copied()
    }

    fn id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

fn table_set<'a>(w: &'a mut World, table: &str) -> &'a mut BTreeSet<i64> {
    match table {
        "organizations" => &mut w.orgs,
        "people" => &mut w.people,
        "interactions" => &mut w.interactions,
        _ => &mut w.deals,
    }
}

const TABLES: [&str; 4] = ["organizations", "people", "interactions", "deals"];

/// Applies one random CRM change.
fn mutate(w: &mut World, c: &Connection) {
    w.tick();
    let roll = w.rng.random_range(0..100);
    match roll {
        0..=7 => {
            let id = w.id();
            let (name, desc, at) = (format!("Org {id} {}", w.text(2)), w.text(60), w.stamp());
            insert_org(c, id, &name, &desc, &at);
            w.orgs.insert(id);
        }
        8..=17 => {
            let id = w.id();
            let org = if w.rng.random_bool(0.8) {
                w.pick(&w.orgs.clone())
            } else {
                None
            };
            let (name, bio, at) = (format!("Person {id} {}", w.text(2)), w.text(120), w.stamp());
            insert_person(c, id, &name, org, &bio, &at);
            w.people.insert(id);
        }
        18..=25 => {
            let id = w.id();
            let org = w.pick(&w.orgs.clone());
            let mut parts = Vec::new();
            for _ in 0..w.rng.random_range(0..4) {
                if let Some(p) = w.pick(&w.people.clone()) {
                    parts.push(p);
                }
            }
            let (body, at) = (w.text(250), w.stamp());
            insert_interaction(c, id, org, &parts, &body, &at);
            w.interactions.insert(id);
        }
        26..=29 => {
            let id = w.id();
            let org = w.pick(&w.orgs.clone());
            let (notes, at) = (w.text(80), w.stamp());
            insert_deal(c, id, org, &notes, &at);
            w.deals.insert(id);
        }
        30..=49 => {
            // An edit of a text field (lengths vary, so chunk counts grow and shrink).
            let table = TABLES[w.rng.random_range(0..4)];
            let rows = table_set(w, table).clone();
            let Some(id) = w.pick(&rows) else { return };
            let (text, at) = (w.text(250), w.stamp());
            edit_text(c, table, id, &text, &at);
        }
        50..=55 => {
            // Renames: organisations and people are embedded in other documents.
            let (table, column) = if w.rng.random_bool(0.5) {
                ("organizations", "name")
            } else {
                ("people", "full_name")
            };
            let rows = table_set(w, table).clone();
            let Some(id) = w.pick(&rows) else { return };
            let (name, at) = (format!("Renamed {id} {}", w.text(2)), w.stamp());
            exec(
                c,
                &format!("UPDATE {table} SET {column} = ?1, updated_at = ?2 WHERE id = ?3"),
                params![name, at, id],
            );
        }
        56..=58 => {
            // A person moves to another organisation.
            let Some(id) = w.pick(&w.people.clone()) else {
                return;
            };
            let org = w.pick(&w.orgs.clone());
            let at = w.stamp();
            exec(
                c,
                "UPDATE people SET organization_id = ?1, updated_at = ?2 WHERE id = ?3",
                params![org, at, id],
            );
        }
        59..=61 => {
            // Participants change; a well-behaved CRM bumps the interaction.
            let Some(id) = w.pick(&w.interactions.clone()) else {
                return;
            };
            exec(
                c,
                "DELETE FROM interaction_people WHERE interaction_id = ?1",
                [id],
            );
            for _ in 0..w.rng.random_range(0..3) {
                if let Some(p) = w.pick(&w.people.clone()) {
                    exec(
                        c,
                        "INSERT OR IGNORE INTO interaction_people VALUES (?1, ?2)",
                        [id, p],
                    );
                }
            }
            let at = w.stamp();
            exec(
                c,
                "UPDATE interactions SET updated_at = ?1 WHERE id = ?2",
                params![at, id],
            );
        }
        62..=68 => {
            // Soft delete or undelete.
            let table = TABLES[w.rng.random_range(0..4)];
            let rows = table_set(w, table).clone();
            let Some(id) = w.pick(&rows) else { return };
            let at = w.stamp();
            let deleted: Option<String> = if w.rng.random_bool(0.6) {
                Some(at.clone())
            } else {
                None
            };
            exec(
                c,
                &format!("UPDATE {table} SET deleted_at = ?1, updated_at = ?2 WHERE id = ?3"),
                params![deleted, at, id],
            );
        }
        69..=73 => {
            // Hard delete. References to the row are left dangling, as a CRM without
            // cascades leaves them, or cleaned up with a bump of the referring rows.
            let table = TABLES[w.rng.random_range(0..4)];
            let rows = table_set(w, table).clone();
            let Some(id) = w.pick(&rows) else { return };
            exec(c, &format!("DELETE FROM {table} WHERE id = ?1"), [id]);
            table_set(w, table).remove(&id);
            if table == "interactions" {
                exec(
                    c,
                    "DELETE FROM interaction_people WHERE interaction_id = ?1",
                    [id],
                );
            }
            if table == "people" && w.rng.random_bool(0.5) {
                let at = w.stamp();
                exec(
                    c,
                    "UPDATE interactions SET updated_at = ?1 WHERE id IN \
                     (SELECT interaction_id FROM interaction_people WHERE person_id = ?2)",
                    params![at, id],
                );
                exec(
                    c,
                    "DELETE FROM interaction_people WHERE person_id = ?1",
                    [id],
                );
            }
            if matches!(table, "people" | "organizations") && w.rng.random_bool(0.5) {
                exec(
                    c,
                    "DELETE FROM entity_links WHERE source_table = ?1 AND source_id = ?2",
                    params![table, id],
                );
            }
        }
        74..=83 => {
            // The resolver links a row to its own entity or to an existing one.
            let (table, kind) = if w.rng.random_bool(0.6) {
                ("people", "person")
            } else {
                ("organizations", "organization")
            };
            let rows = table_set(w, table).clone();
            let Some(id) = w.pick(&rows) else { return };
            let live: Vec<String> = w
                .entities
                .iter()
                .filter(|(_, k)| **k == kind)
                .map(|(e, _)| e.clone())
                .collect();
            let entity = if !live.is_empty() && w.rng.random_bool(0.4) {
                live[w.rng.random_range(0..live.len())].clone()
            } else {
                format!("{kind}:{id}")
            };
            let at = w.stamp();
            link(c, kind, table, &entity, &[id], &at);
            exec(
                c,
                "UPDATE entities SET deleted_at = NULL, merged_into = NULL WHERE entity_id = ?1",
                [&entity],
            );
            w.retired.remove(&entity);
            w.entities.insert(entity, kind);
        }
        84..=89 => {
            // A merge: every row of the loser moves to the winner.
            let live: Vec<(String, &'static str)> =
                w.entities.iter().map(|(e, k)| (e.clone(), *k)).collect();
            if live.len() < 2 {
                return;
            }
            let (loser, kind) = live[w.rng.random_range(0..live.len())].clone();
            let winners: Vec<&(String, &str)> = live
                .iter()
                .filter(|(e, k)| *k == kind && *e != loser)
                .collect();
            let Some(winner) = winners.choose(&mut w.rng).map(|(e, _)| e.clone()) else {
                return;
            };
            let rows: Vec<(String, i64)> = c
                .prepare("SELECT source_table, source_id FROM entity_links WHERE entity_id = ?1")
                .unwrap()
                .query_map([&loser], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let at = w.stamp();
            exec(
                c,
                "UPDATE entity_links SET entity_id = ?1, linked_at = ?2 WHERE entity_id = ?3",
                params![winner, at, loser],
            );
            exec(
                c,
                "UPDATE entities SET deleted_at = ?1, merged_into = ?2 WHERE entity_id = ?3",
                params![at, winner, loser],
            );
            w.entities.remove(&loser);
            w.retired.insert(loser, (winner, rows));
        }
        90..=93 => {
            // An undo: the loser comes back with the rows it had.
            let Some(loser) = w.retired.keys().next().cloned() else {
                return;
            };
            let Some((winner, rows)) = w.retired.remove(&loser) else {
                return;
            };
            let at = w.stamp();
            exec(
                c,
                "UPDATE entities SET deleted_at = NULL, merged_into = NULL WHERE entity_id = ?1",
                [&loser],
            );
            for (table, id) in rows {
                exec(
                    c,
                    "UPDATE entity_links SET entity_id = ?1, linked_at = ?2 \
                     WHERE source_table = ?3 AND source_id = ?4 AND entity_id = ?5",
                    params![loser, at, table, id, winner],
                );
            }
            let kind = if loser.starts_with("person:") {
                "person"
            } else {
                "organization"
            };
            w.entities.insert(loser, kind);
        }
        _ => {
            // A row imported with an old stamp, which only reconciliation can find.
            let id = w.id();
            let (name, desc) = (format!("Imported {id}"), w.text(30));
            insert_org(c, id, &name, &desc, "2001-02-03 04:05:06");
            w.orgs.insert(id);
        }
    }
}

fn text_column(table: &str) -> &'static str {
    match table {
        "organizations" => "description",
        "people" => "bio",
        "interactions" => "body",
        _ => "notes",
    }
}

fn edit_text(c: &Connection, table: &str, id: i64, text: &str, at: &str) {
    exec(
        c,
        &format!(
            "UPDATE {table} SET {} = ?1, updated_at = ?2 WHERE id = ?3",
            text_column(table)
        ),
        params![text, at, id],
    );
}

/// Two edits of one row within one second of `CURRENT_TIMESTAMP` resolution, with a
/// sync reading the row between them: the second edit leaves the row's key unchanged.
fn same_second_edit(w: &mut World, c: &Connection) -> Option<(&'static str, i64, String)> {
    let table = TABLES[w.rng.random_range(0..4)];
    let rows = table_set(w, table).clone();
    let id = w.pick(&rows)?;
    let at = stamp(w.clock, true);
    let text = w.text(150);
    edit_text(c, table, id, &text, &at);
    Some((table, id, at))
}

fn config(w: &mut World, fault: Option<FaultPoint>) -> SyncConfig {
    let mut config = sync_config();
    config.batch_size = w.rng.random_range(1..8);
    config.pipeline_depth = w.rng.random_range(1..4);
    config.flush_every_chunks = w.rng.random_range(1..40);
    config.fault = fault;
    config.collection.shards = w.shards;
    config
}

/// What the runs of all seeds did, to show the histories exercise every path.
#[derive(Debug, Default)]
struct Coverage {
    totals: TableCounts,
    faults_fired: u64,
    partial_failures: u64,
    shrunk_chunks: u64,
    sharded_seeds: u64,
}

async fn run_seed(seed: u64, ops: usize, coverage: &mut Coverage) {
    let h = Harness::new().await;
    let mut w = World::new(seed);
    if w.shards > 1 {
        coverage.sharded_seeds += 1;
    }
    let c = h.crm();
    let index = Arc::new(
        Index::open(IndexConfig::embedded(h.index_dir("main")))
            .await
            .expect("index"),
    );
    let make = |config: SyncConfig| {
        Indexer::new(
            h.store.clone(),
            index.clone(),
            h.encoder.clone(),
            config,
            Arc::new(NoProgress),
        )
        .expect("indexer")
    };
    for step in 0..ops {
        mutate(&mut w, &c);
        let double_edit = if w.rng.random_bool(0.06) {
            same_second_edit(&mut w, &c)
        } else {
            None
        };
        if double_edit.is_none() && !w.rng.random_bool(0.18) {
            continue;
        }
        let interrupted = w.rng.random_bool(0.35);
        let fault = interrupted.then(|| FaultPoint {
            stage: FaultStage::ALL[w.rng.random_range(0..FaultStage::ALL.len())],
            batch: w.rng.random_range(1..5),
            action: FaultAction::Error,
        });
        let indexer = make(config(&mut w, fault));
        let report = if w.rng.random_bool(0.1) {
            indexer.backfill(false, &no_stop()).await
        } else {
            indexer.sync(&no_stop()).await
        }
        .expect("run");
        add(&mut coverage.totals, &report.totals);
        if report.failure == Some(FailureKind::InjectedFault) {
            coverage.faults_fired += 1;
        }
        if report.outcome == RunOutcome::PartialFailure {
            coverage.partial_failures += 1;
        }
        coverage.shrunk_chunks += report.totals.points_deleted;
        if let Some((table, id, at)) = double_edit {
            // The second edit of the same second, after the sync read the first.
            let text = w.text(150);
            edit_text(&c, table, id, &text, &at);
            continue;
        }
        if fault.is_none() {
            assert!(
                report.error.is_none(),
                "seed {seed} step {step}: run failed: {:?}",
                report.error
            );
            let check = indexer.verify().await.expect("verify");
            assert!(
                check.is_clean(),
                "seed {seed} step {step}: verify after a clean sync: {:?} {:#?}",
                check.counts,
                check.differences.iter().take(8).collect::<Vec<_>>()
            );
        }
    }
    let indexer = make(config(&mut w, None));
    let report = indexer.sync(&no_stop()).await.expect("final sync");
    assert!(report.error.is_none(), "seed {seed}: {:?}", report.error);
    assert_converged(&h, &indexer, &format!("seed {seed}")).await;
}

fn add(into: &mut TableCounts, from: &TableCounts) {
    into.rows_read += from.rows_read;
    into.rows_indexed += from.rows_indexed;
    into.points_deleted += from.points_deleted;
    into.rows_removed += from.rows_removed;
    into.rows_hard_deleted += from.rows_hard_deleted;
    into.entity_updates += from.entity_updates;
    into.records_only += from.records_only;
    into.dependents_checked += from.dependents_checked;
    into.repairs_found += from.repairs_found;
    into.conflicts_redone += from.conflicts_redone;
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_converge_to_a_fresh_build() {
    let seeds = env_usize("SYNC_MODEL_SEEDS", 40) as u64;
    let ops = env_usize("SYNC_MODEL_OPS", 80);
    let mut coverage = Coverage::default();
    for seed in 0..seeds {
        run_seed(seed, ops, &mut coverage).await;
    }
    eprintln!("model coverage over {seeds} seeds x {ops} ops: {coverage:#?}");
    // The histories must reach every path, or the convergence above proves little.
    let t = &coverage.totals;
    for (what, n) in [
        ("faults fired", coverage.faults_fired),
        ("partial failures", coverage.partial_failures),
        ("points deleted", coverage.shrunk_chunks),
        ("seeds synced into several shards", coverage.sharded_seeds),
        ("entity patches", t.entity_updates),
        ("soft-deleted rows removed", t.rows_removed),
        ("hard deletes", t.rows_hard_deleted),
        ("repairs found", t.repairs_found),
        ("dependents re-rendered", t.dependents_checked),
        ("records only", t.records_only),
    ] {
        assert!(n > 0, "no {what} in {seeds} seeds: {coverage:#?}");
    }
}
