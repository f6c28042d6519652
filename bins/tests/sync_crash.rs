//! Crash safety of the real binaries: `crm-sync` and `crm-backfill` killed at many points
//! (the test fault hook aborts the process where asked; SIGKILL at random times), with the
//! CRM changing in between. After each crash the watermark is not ahead of what the index
//! holds; after the last, clean run the index equals a fresh full build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use std::collections::HashSet;
use std::time::Duration;

use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use sync_support::*;
use sync_watermark::DifferenceKind;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Random CRM edits between runs: text edits, renames, soft and hard deletes, a merge.
fn edit(env: &Env, rng: &mut ChaCha8Rng, round: u64) {
    let c = env.crm();
    let now = crm_store::Timestamp::now().to_canonical();
    // Rounds of hard deletes can empty a small table: then it has no id to pick.
    let max = |table: &str| -> i64 {
        c.query_row(
            &format!("SELECT coalesce(max(id), 0) FROM {table}"),
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    for _ in 0..5 {
        let id = rng.random_range(1..=max("people"));
        c.execute(
            "UPDATE people SET bio = ?1, updated_at = ?2 WHERE id = ?3",
            rusqlite::params![
                format!(
                    "Round {round}: {}",
                    "new words ".repeat(rng.random_range(1..300))
                ),
                now,
                id
            ],
        )
        .unwrap();
    }
    let org = rng.random_range(1..=max("organizations"));
    c.execute(
        "UPDATE organizations SET name = ?1, updated_at = ?2 WHERE id = ?3",
        rusqlite::params![format!("Renamed Org {round}"), now, org],
    )
    .unwrap();
    let soft = rng.random_range(1..=max("interactions"));
    c.execute(
        "UPDATE interactions SET deleted_at = ?1, updated_at = ?1 WHERE id = ?2",
        rusqlite::params![now, soft],
    )
    .unwrap();
    if max("deals") > 0 {
        let hard = rng.random_range(1..=max("deals"));
        c.execute("DELETE FROM deals WHERE id = ?1", [hard])
            .unwrap();
    }
    // A merge as the resolver writes it: two people rows on one entity.
    let (a, b) = (
        rng.random_range(1..=max("people")),
        rng.random_range(1..=max("people")),
    );
    for (id, entity) in [(a, a), (b, a)] {
        c.execute(
            "INSERT OR IGNORE INTO entities (entity_id, kind, created_at, updated_at) \
             VALUES (?1, 'person', ?2, ?2)",
            rusqlite::params![format!("person:{entity}"), now],
        )
        .unwrap();
        c.execute(
            "INSERT INTO entity_links (source_table, source_id, entity_id, rule, linked_at) \
             VALUES ('people', ?1, ?2, 'test', ?3) ON CONFLICT (source_table, source_id) \
             DO UPDATE SET entity_id = excluded.entity_id",
            rusqlite::params![id, format!("person:{entity}"), now],
        )
        .unwrap();
    }
}

/// After a crash, the watermark must not be ahead of the index: every difference at or
/// before a table's watermark is a row left pending, a row whose document embeds an
/// organisation or person that is pending or changed after its own table's watermark
/// (re-rendered when that row is synced), or a row whose entity alone moved (found by
/// reconciliation on every run).
fn assert_watermark_not_ahead(env: &Env, runtime: &tokio::runtime::Runtime, context: &str) {
    let report = env.verify(runtime);
    let c = env.crm();
    let pending = |table: &str| -> HashSet<i64> {
        c.prepare(
            "SELECT source_id FROM ingest_indexed_rows WHERE source_table = ?1 AND content_hash = 'pending'",
        )
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    // Rows changed after their table's watermark: not seen yet by the killed run; the
    // next run reads them and re-renders the documents that embed them.
    let unseen = |table: &str| -> HashSet<i64> {
        let watermark: Option<(Option<String>, Option<i64>)> = c
            .query_row(
                "SELECT watermark_updated_at, watermark_id FROM ingest_sync_state \
                 WHERE collection = 'crm_chunks' AND source_table = ?1",
                [table],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let (at, id) = match watermark {
            Some((Some(at), Some(id))) => (at, id),
            _ => (String::new(), i64::MIN),
        };
        c.prepare(&format!(
            "SELECT id FROM {table} WHERE updated_at > ?1 OR (updated_at = ?1 AND id > ?2)"
        ))
        .unwrap()
        .query_map(rusqlite::params![at, id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let orgs: HashSet<i64> = pending("organizations")
        .union(&unseen("organizations"))
        .copied()
        .collect();
    let people: HashSet<i64> = pending("people")
        .union(&unseen("people"))
        .copied()
        .collect();
    let entity_moved: HashSet<(crm_store::SourceTable, i64)> = report
        .differences
        .iter()
        .filter(|d| {
            d.kind == DifferenceKind::RecordMismatch
                && d.detail.starts_with("record has entity ")
                && !d.detail.contains(", ")
        })
        .filter_map(|d| Some((d.table?, d.source_id?)))
        .collect();
    for d in report.differences.iter().filter(|d| d.behind_watermark) {
        let (Some(table), Some(id)) = (d.table, d.source_id) else {
            panic!("{context}: {d:?}");
        };
        if d.kind == DifferenceKind::RecordPending || pending(table.as_str()).contains(&id) {
            continue;
        }
        // Only the entity differs (a merge written by the resolver without touching the
        // row), in the record and so in the points: every run's reconciliation compares
        // each record's entity with `entity_links`, whatever the watermark.
        if matches!(
            d.kind,
            DifferenceKind::RecordMismatch | DifferenceKind::WrongEntity
        ) && entity_moved.contains(&(table, id))
        {
            continue;
        }
        let org_of = |sql: &str| -> Option<i64> {
            c.query_row(sql, [id], |r| r.get::<_, Option<i64>>(0))
                .ok()
                .flatten()
        };
        let covered = match table {
            crm_store::SourceTable::People => {
                org_of("SELECT organization_id FROM people WHERE id = ?1")
                    .is_some_and(|o| orgs.contains(&o))
            }
            crm_store::SourceTable::Deals => {
                org_of("SELECT organization_id FROM deals WHERE id = ?1")
                    .is_some_and(|o| orgs.contains(&o))
            }
            crm_store::SourceTable::Interactions => {
                org_of("SELECT organization_id FROM interactions WHERE id = ?1")
                    .is_some_and(|o| orgs.contains(&o))
                    || c.prepare(
                        "SELECT person_id FROM interaction_people WHERE interaction_id = ?1",
                    )
                    .unwrap()
                    .query_map([id], |r| r.get::<_, i64>(0))
                    .unwrap()
                    .any(|p| p.is_ok_and(|p| people.contains(&p)))
            }
            crm_store::SourceTable::Organizations => false,
        };
        assert!(
            covered,
            "{context}: the watermark is ahead of the index: {d:?}"
        );
    }
}

fn assert_clean_finish(env: &Env, runtime: &tokio::runtime::Runtime) {
    let out = env.run(SYNC, &["--json"], None);
    assert!(
        matches!(out.status.code(), Some(0 | 3)),
        "final sync: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify after the final sync: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_same_as_fresh_build(env, runtime);
}

#[test]
fn killed_at_every_stage_the_next_run_converges() {
    let env = Env::new(150, 16);
    let runtime = runtime();
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let points = [
        "before_embed:2",
        "after_prewrite:1",
        "after_upsert:1",
        "after_upsert:5",
        "after_index_writes:3",
        "after_commit:2",
        "after_prewrite:9",
        "after_index_writes:14",
        "before_embed:20",
        "after_upsert:2",
    ];
    let mut crashes = 0;
    for (round, point) in points.iter().enumerate() {
        if round > 0 {
            edit(&env, &mut rng, round as u64);
        }
        let out = env.run(SYNC, &["--json"], Some(point));
        if crashed(&out) {
            crashes += 1;
        } else {
            // The run finished before reaching that batch.
            assert!(
                matches!(out.status.code(), Some(0 | 3)),
                "{point}: {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_watermark_not_ahead(&env, &runtime, point);
    }
    assert!(
        crashes >= 6,
        "only {crashes} of the fault points were reached"
    );
    assert_clean_finish(&env, &runtime);
}

#[test]
fn sigkill_at_random_times_never_corrupts_the_index() {
    sigkill_at_random_times(1, 77);
}

#[test]
fn sigkill_at_random_times_never_corrupts_a_sharded_index() {
    sigkill_at_random_times(2, 78);
}

/// Kills backfills and syncs of an index of `shards` shards at random moments; every
/// next run picks up from a consistent state, and the last one ends as a fresh build.
fn sigkill_at_random_times(shards: u32, seed: u64) {
    let env = Env::with_shards(400, 8, shards);
    let runtime = runtime();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Every embeddings request takes 100 ms, so a run's length is set by its work, not by
    // the speed of this machine, and the random kill moments below land inside runs.
    env.server.controls().delay(Duration::from_millis(100));
    let mut kills = 0;
    for round in 0..8u64 {
        if round > 0 {
            edit(&env, &mut rng, 100 + round);
        }
        let bin = if round % 2 == 0 { BACKFILL } else { SYNC };
        let mut child = env.command(bin, &["--json"]).spawn().expect("spawn");
        // A random moment of the run, not a wait for something: the point is to kill the
        // process wherever it happens to be.
        std::thread::sleep(Duration::from_millis(rng.random_range(100..2000)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            crashed(&out) || matches!(out.status.code(), Some(0 | 3)),
            "round {round}: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_watermark_not_ahead(&env, &runtime, &format!("kill round {round}"));
    }
    assert!(kills >= 3, "only {kills} runs were still going when killed");
    assert_clean_finish(&env, &runtime);
    let sharded = env.index_dir.join("crm_chunks.shard-1").is_dir();
    assert_eq!(sharded, shards > 1, "layout of {}", env.index_dir.display());
}
