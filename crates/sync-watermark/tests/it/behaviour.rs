//! Targeted scenarios: each change the sync must follow, checked against `verify` and
//! against a fresh full build.

use crm_store::{SourceTable, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use sync_watermark::{Indexer, ProgressEvent, ProgressSink, RunOutcome};

use crate::support::*;

/// Verify is clean, and the index equals a fresh full build of the same CRM.
pub(crate) async fn assert_converged(h: &Harness, indexer: &Indexer, context: &str) {
    let check = indexer.verify().await.expect("verify");
    assert!(
        check.is_clean(),
        "{context}: verify found {:?}: {:#?}",
        check.counts,
        check.differences.iter().take(10).collect::<Vec<_>>()
    );
    let dir = h.index_dir(&format!("fresh-{}", rand_suffix()));
    let fresh = h.indexer(&dir, "fresh", sync_config()).await;
    let report = fresh.backfill(true, &no_stop()).await.expect("fresh build");
    assert!(
        report.error.is_none(),
        "{context}: fresh build failed: {:?}",
        report.error
    );
    let want = snapshot(fresh.index()).await;
    let got = snapshot(indexer.index()).await;
    assert_same_points(&got, &want, context);
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// A little CRM: 2 organisations, 4 people, 3 interactions, 2 deals.
pub(crate) fn seed(h: &Harness, base: Timestamp) {
    let c = h.crm();
    let at = |s: u64| stamp(base.saturating_add(Duration::from_secs(s)), false);
    insert_org(
        &c,
        1,
        "Acme Robotics",
        "Robots for warehouses. They build arms and grippers.",
        &at(1),
    );
    insert_org(
        &c,
        2,
        "Borealis Capital",
        "A fund investing in climate hardware across the Nordics.",
        &at(2),
    );
    insert_person(
        &c,
        10,
        "Ada Lovelace",
        Some(1),
        "Engineer who likes analytical engines and poetry.",
        &at(3),
    );
    insert_person(
        &c,
        11,
        "Grace Hopper",
        Some(1),
        "Compiler pioneer. Navy rear admiral.",
        &at(4),
    );
    insert_person(&c, 12, "Alan Turing", Some(2), "", &at(5));
    insert_person(
        &c,
        13,
        "Katherine Johnson",
        None,
        "Computed trajectories for orbital flights.",
        &at(6),
    );
    let long = "We discussed the Series A terms at length. The board seat was contested. \
                Pricing of the round depends on the next quarter. Everyone agreed to meet again. "
        .repeat(3);
    insert_interaction(&c, 20, Some(1), &[10, 11], &long, &at(7));
    insert_interaction(
        &c,
        21,
        Some(2),
        &[12],
        "Short call about the fund's LP base.",
        &at(8),
    );
    insert_interaction(&c, 22, None, &[13, 10], "Coffee chat.", &at(9));
    insert_deal(
        &c,
        30,
        Some(1),
        "Lead the Series A; co-invest with Borealis.",
        &at(10),
    );
    insert_deal(&c, 31, Some(2), "", &at(11));
}

pub(crate) fn base_time() -> Timestamp {
    Timestamp::now().saturating_sub(Duration::from_secs(86_400))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_builds_everything_and_a_second_has_nothing_to_do() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    let first = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(first.outcome, RunOutcome::Done, "{first:?}");
    assert_eq!(first.totals.rows_indexed, 11);
    assert!(
        first.totals.chunks_upserted > 11,
        "long documents have several chunks"
    );
    assert_eq!(first.points_in_index, Some(first.totals.chunks_upserted));
    assert_converged(&h, &indexer, "after the first sync").await;

    let served = h.server.controls().inputs_embedded();
    let second = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(second.outcome, RunOutcome::NothingToDo, "{second:?}");
    assert_eq!(second.totals.rows_indexed, 0);
    assert_eq!(
        h.server.controls().inputs_embedded(),
        served,
        "nothing re-embedded"
    );
}

/// Records the progress events of a run, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<ProgressEvent>>);

impl Recorder {
    fn take(&self) -> Vec<ProgressEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl ProgressSink for Recorder {
    fn event(&self, event: ProgressEvent) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_optimize_step_is_announced_after_the_tables_of_a_run_that_changed_something() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let recorder = Arc::new(Recorder::default());
    let indexer = h.indexer_reporting(recorder.clone()).await;
    let first = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(first.outcome, RunOutcome::Done, "{first:?}");
    assert!(first.optimize_ms.is_some(), "{first:?}");
    let events = recorder.take();
    let started = events
        .iter()
        .position(|e| *e == ProgressEvent::OptimizeStarted)
        .expect("optimize announced");
    assert_eq!(
        &events[started..],
        [
            ProgressEvent::OptimizeStarted,
            ProgressEvent::OptimizeFinished
        ],
        "the optimizer runs last, once: {events:?}"
    );
    let last_table = events
        .iter()
        .rposition(|e| matches!(e, ProgressEvent::TableFinished { .. }))
        .expect("tables finished");
    assert!(last_table < started, "{events:?}");

    // Nothing changed: no optimizer.
    let second = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(second.outcome, RunOutcome::NothingToDo, "{second:?}");
    let events = recorder.take();
    assert!(
        !events.iter().any(|e| matches!(
            e,
            ProgressEvent::OptimizeStarted | ProgressEvent::OptimizeFinished
        )),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_shrinks_deletes_and_renames_are_followed() {
    let h = Harness::new().await;
    let base = base_time();
    seed(&h, base);
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    indexer.sync(&no_stop()).await.expect("sync");

    let c = h.crm();
    let at = stamp(base.saturating_add(Duration::from_secs(100)), false);
    // The long meeting shrinks to one chunk: its stale chunks must go.
    exec(
        &c,
        "UPDATE interactions SET body = 'Short now.', updated_at = ?1 WHERE id = 20",
        [&at],
    );
    // Soft delete, hard delete.
    exec(
        &c,
        "UPDATE interactions SET deleted_at = ?1, updated_at = ?1 WHERE id = 21",
        [&at],
    );
    exec(&c, "DELETE FROM deals WHERE id = 31", []);
    exec(
        &c,
        "DELETE FROM interaction_people WHERE interaction_id = 22 AND person_id = 13",
        [],
    );
    exec(
        &c,
        "UPDATE interactions SET updated_at = ?1 WHERE id = 22",
        [&at],
    );
    // A rename of an organisation changes its people's, interactions' and deals' documents.
    exec(
        &c,
        "UPDATE organizations SET name = 'Acme Automation', updated_at = ?1 WHERE id = 1",
        [&at],
    );

    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert_eq!(report.totals.rows_removed, 1, "{report:?}");
    assert_eq!(report.totals.rows_hard_deleted, 1, "{report:?}");
    assert!(report.totals.dependents_checked >= 3, "{report:?}");
    assert_converged(&h, &indexer, "after edits").await;

    // Undelete comes back.
    let later = stamp(base.saturating_add(Duration::from_secs(200)), false);
    exec(
        &c,
        "UPDATE interactions SET deleted_at = NULL, updated_at = ?1 WHERE id = 21",
        [&later],
    );
    indexer.sync(&no_stop()).await.expect("sync");
    assert_converged(&h, &indexer, "after an undelete").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_updates_with_current_timestamp_are_not_missed() {
    let h = Harness::new().await;
    let base = base_time();
    seed(&h, base);
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    let c = h.crm();
    // Second-resolution stamps, as SQLite's CURRENT_TIMESTAMP writes them.
    let second = stamp(base.saturating_add(Duration::from_millis(500_300)), true);
    exec(
        &c,
        "UPDATE people SET bio = 'First edit.', updated_at = ?1 WHERE id = 13",
        [&second],
    );
    indexer.sync(&no_stop()).await.expect("sync");
    // Same second, after the sync read the row: the key does not move.
    exec(
        &c,
        "UPDATE people SET bio = 'Second edit, same second.', updated_at = ?1 WHERE id = 13",
        [&second],
    );
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.rows_indexed, 1, "{report:?}");
    assert_converged(&h, &indexer, "after same-second edits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_and_undos_patch_payloads_without_re_embedding() {
    let h = Harness::new().await;
    let base = base_time();
    seed(&h, base);
    let c = h.crm();
    let at = stamp(base, false);
    for id in [10, 11, 12, 13] {
        link(&c, "person", "people", &format!("person:{id}"), &[id], &at);
    }
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    indexer.sync(&no_stop()).await.expect("sync");
    assert_converged(&h, &indexer, "linked").await;

    // Merge person:11 into person:10, as the resolver does.
    link(&c, "person", "people", "person:10", &[11], &at);
    exec(
        &c,
        "UPDATE entities SET deleted_at = ?1, merged_into = 'person:10' WHERE entity_id = 'person:11'",
        [&at],
    );
    let served = h.server.controls().inputs_embedded();
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert_eq!(report.totals.entity_updates, 1, "{report:?}");
    assert_eq!(report.totals.rows_indexed, 0, "{report:?}");
    assert_eq!(
        h.server.controls().inputs_embedded(),
        served,
        "no re-embedding"
    );
    assert_converged(&h, &indexer, "after a merge").await;

    // Undo.
    link(&c, "person", "people", "person:11", &[11], &at);
    exec(
        &c,
        "UPDATE entities SET deleted_at = NULL, merged_into = NULL WHERE entity_id = 'person:11'",
        [],
    );
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.entity_updates, 1, "{report:?}");
    assert_converged(&h, &indexer, "after an undo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_watermark_cannot_see_are_found_by_reconciliation() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    indexer.sync(&no_stop()).await.expect("sync");
    let c = h.crm();
    // Stamped long before the watermark, and with no usable stamp at all.
    insert_person(
        &c,
        40,
        "Old Import",
        Some(1),
        "Imported from a spreadsheet.",
        "2001-01-01T00:00:00Z",
    );
    exec(
        &c,
        "INSERT INTO people (id, full_name, created_at, updated_at) VALUES (41, 'No Stamp', NULL, NULL)",
        [],
    );
    exec(
        &c,
        "INSERT INTO deals (id, name, updated_at) VALUES (42, 'Garbage stamp', 'not a date')",
        [],
    );
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.repairs_found, 3, "{report:?}");
    assert_converged(&h, &indexer, "after hidden inserts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_resumes_and_recreate_starts_over() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    let first = indexer.backfill(false, &no_stop()).await.expect("backfill");
    assert_eq!(first.outcome, RunOutcome::Done);
    let again = indexer.backfill(false, &no_stop()).await.expect("backfill");
    assert_eq!(again.outcome, RunOutcome::NothingToDo, "{again:?}");
    let recreated = indexer.backfill(true, &no_stop()).await.expect("backfill");
    assert!(recreated.recreated);
    assert_eq!(recreated.totals.rows_indexed, first.totals.rows_indexed);
    assert_converged(&h, &indexer, "after recreate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_crm_skips_reading_the_records_until_something_moves() {
    let h = Harness::new().await;
    let base = base_time();
    seed(&h, base);
    let c = h.crm();
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    let first = indexer.sync(&no_stop()).await.expect("sync");
    assert!(first.totals.records_scanned > 0, "{first:?}");
    let scanned = |report: &sync_watermark::RunReport, table: SourceTable| {
        report.tables.get(&table).map_or(0, |t| t.records_scanned)
    };
    let quiet = |context: &'static str| {
        let indexer = &indexer;
        async move {
            let report = indexer.sync(&no_stop()).await.expect("sync");
            assert_eq!(
                report.outcome,
                RunOutcome::NothingToDo,
                "{context}: {report:?}"
            );
            assert_eq!(report.totals.records_scanned, 0, "{context}: {report:?}");
        }
    };
    quiet("after the first sync").await;

    // A hard delete changes no stamp: the ids' digest moves.
    exec(&c, "DELETE FROM deals WHERE id = 31", []);
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.rows_hard_deleted, 1, "{report:?}");
    assert!(scanned(&report, SourceTable::Deals) > 0, "{report:?}");
    assert_eq!(scanned(&report, SourceTable::People), 0, "{report:?}");
    assert_converged(&h, &indexer, "after a hard delete").await;
    quiet("after the hard delete").await;

    // A merge changes only entity links.
    let at = stamp(base, false);
    link(&c, "person", "people", "person:10", &[10, 11], &at);
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.entity_updates, 2, "{report:?}");
    assert_converged(&h, &indexer, "after a link").await;
    quiet("after the link").await;

    // Content edits move no id and no link: the run's own committed batches put the
    // mark back, so its reconciliation still skips the records.
    let now = stamp(Timestamp::now(), false);
    exec(
        &c,
        "UPDATE people SET bio = 'Rewritten for the test.', updated_at = ?1 WHERE id IN (12, 13)",
        [&now],
    );
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert!(
        report
            .tables
            .get(&SourceTable::People)
            .map_or(0, |t| t.rows_indexed)
            >= 2,
        "{report:?}"
    );
    assert_eq!(report.totals.records_scanned, 0, "{report:?}");
    assert_converged(&h, &indexer, "after content edits").await;
    quiet("after the content edits").await;

    // A record left pending (a run killed between marking and upserting), or written by
    // anyone else: the trigger forgets the digest.
    exec(
        &c,
        "UPDATE ingest_indexed_rows SET content_hash = 'pending' \
         WHERE source_table = 'people' AND source_id = 12",
        [],
    );
    let report = indexer.sync(&no_stop()).await.expect("sync");
    // Redone by whichever pass reads it first (the keyset pass's overlap window reads
    // the newest rows again).
    assert_eq!(report.totals.rows_indexed, 1, "{report:?}");
    assert!(scanned(&report, SourceTable::People) > 0, "{report:?}");
    assert_converged(&h, &indexer, "after a pending record").await;
    quiet("after the repair").await;

    // A row added with an old stamp: the keyset pass cannot see it, the ids' digest can.
    insert_person(
        &c,
        50,
        "Late Import",
        Some(1),
        "Imported late.",
        "2001-01-01T00:00:00Z",
    );
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.repairs_found, 1, "{report:?}");
    assert_converged(&h, &indexer, "after a hidden insert").await;
    quiet("at the end").await;
}

/// Syncs into `dir` until a sync skips reading the records, then releases the index.
async fn build_until_quiet(h: &Harness, dir: &std::path::Path) {
    let indexer = h.indexer(dir, "crm_chunks", sync_config()).await;
    indexer.sync(&no_stop()).await.expect("sync");
    let quiet = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(quiet.totals.records_scanned, 0, "{quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_between_a_batch_s_writes_leaves_a_full_reconciliation() {
    use sync_watermark::{FaultAction, FaultPoint, FaultStage};

    let h = Harness::new().await;
    seed(&h, base_time());
    let c = h.crm();
    let dir = h.index_dir("main");
    let people_scanned = |report: &sync_watermark::RunReport| {
        report
            .tables
            .get(&SourceTable::People)
            .map_or(0, |t| t.records_scanned)
    };
    build_until_quiet(&h, &dir).await;
    // Content edits, and a run that stops after upserting the first batch, before
    // recording it: the batch's rows stay pending and its held mark is never put back.
    let now = stamp(Timestamp::now(), false);
    exec(
        &c,
        "UPDATE people SET bio = 'Edited before a failure.', updated_at = ?1 WHERE id IN (10, 12)",
        [&now],
    );
    for stage in [FaultStage::AfterPrewrite, FaultStage::AfterUpsert] {
        let mut config = sync_config();
        config.fault = Some(FaultPoint {
            stage,
            batch: 1,
            action: FaultAction::Error,
        });
        let faulty = h.indexer(&dir, "crm_chunks", config).await;
        let report = faulty.sync(&no_stop()).await.expect("run");
        assert!(report.error.is_some(), "{stage}: {report:?}");
        drop(faulty);
        let pending: i64 = c
            .query_row(
                "SELECT count(*) FROM ingest_indexed_rows \
                 WHERE collection = 'crm_chunks' AND content_hash = 'pending'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            pending > 0,
            "{stage}: the stopped batch left no pending record"
        );
        let marks: Vec<String> = c
            .prepare(
                "SELECT digest FROM ingest_reconciled \
                 WHERE collection = 'crm_chunks' AND source_table = 'people'",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            marks.iter().all(|m| m.starts_with("held:")),
            "{stage}: a usable mark survived the stopped batch: {marks:?}"
        );
        let indexer = h.indexer(&dir, "crm_chunks", sync_config()).await;
        let report = indexer.sync(&no_stop()).await.expect("sync");
        assert!(report.error.is_none(), "{stage}: {report:?}");
        assert!(people_scanned(&report) > 0, "{stage}: {report:?}");
        assert_converged(&h, &indexer, "after a stopped batch").await;
        let quiet = indexer.sync(&no_stop()).await.expect("sync");
        assert_eq!(quiet.totals.records_scanned, 0, "{stage}: {quiet:?}");
        // Edit again for the next stage.
        let now = stamp(Timestamp::now(), false);
        exec(
            &c,
            "UPDATE people SET bio = 'Edited again.', updated_at = ?1 WHERE id IN (10, 12)",
            [&now],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_records_a_new_row_does_not_keep_the_mark() {
    use sync_watermark::{FaultAction, FaultPoint, FaultStage};

    // A batch records a new row and the run stops before its reconciliation; the row is
    // then hard-deleted, which brings the CRM's ids back to what the old mark describes.
    // Had the batch put the mark back, the next run would trust it and keep the record
    // and points of a row that no longer exists.
    let h = Harness::new().await;
    seed(&h, base_time());
    let c = h.crm();
    let dir = h.index_dir("main");
    build_until_quiet(&h, &dir).await;
    insert_person(
        &c,
        60,
        "Brief Visitor",
        Some(1),
        "Here for one sync.",
        &stamp(Timestamp::now(), false),
    );
    let mut config = sync_config();
    config.fault = Some(FaultPoint {
        stage: FaultStage::AfterCommit,
        batch: 1,
        action: FaultAction::Error,
    });
    {
        let faulty = h.indexer(&dir, "crm_chunks", config).await;
        let report = faulty.sync(&no_stop()).await.expect("run");
        assert_eq!(
            report
                .tables
                .get(&SourceTable::People)
                .map_or(0, |t| t.rows_indexed),
            1,
            "{report:?}"
        );
    }
    exec(&c, "DELETE FROM people WHERE id = 60", []);
    let indexer = h.indexer(&dir, "crm_chunks", sync_config()).await;
    let report = indexer.sync(&no_stop()).await.expect("sync");
    assert_eq!(report.totals.rows_hard_deleted, 1, "{report:?}");
    assert_converged(&h, &indexer, "after the brief visitor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_build_stopped_in_any_lane_reports_that_lane_and_the_next_run_converges() {
    use sync_watermark::{FaultAction, FaultPoint, FaultStage};

    // A fresh build marks rows pending, writes the index and commits in three lanes
    // that run at once (several groups here: a flush every 8 chunks). Whichever lane
    // fails, the run reports that failure, never records a batch the index did not
    // take durably, and the next run converges.
    for stage in [
        FaultStage::AfterPrewrite,
        FaultStage::AfterUpsert,
        FaultStage::AfterCommit,
    ] {
        let h = Harness::new().await;
        seed(&h, base_time());
        let dir = h.index_dir("main");
        let mut config = sync_config();
        config.fault = Some(FaultPoint {
            stage,
            batch: 4,
            action: FaultAction::Error,
        });
        let faulty = h.indexer(&dir, "crm_chunks", config).await;
        let report = faulty.backfill(false, &no_stop()).await.expect("run");
        let error = report.error.clone().unwrap_or_default();
        assert!(
            error.contains(&format!("{stage}:4")),
            "{stage}: the run reported {error:?} instead of the fault"
        );
        assert!(
            report.batches_committed < 4 || stage == FaultStage::AfterCommit,
            "{stage}: {report:?}"
        );
        // The batches before the fault were read, encoded and written: each stage of
        // the pipeline has time to show.
        let stages = report.stage_seconds;
        assert!(
            stages.read > 0.0
                && stages.prepare > 0.0
                && stages.prewrite > 0.0
                && stages.index > 0.0,
            "{stage}: {stages:?}"
        );
        if stage == FaultStage::AfterCommit {
            // The commit lane stopped after the group holding the fourth batch: nothing
            // later is recorded, whatever the index lane had written meanwhile.
            assert!(report.batches_committed >= 4, "{report:?}");
            assert_eq!(report.outcome, RunOutcome::PartialFailure, "{report:?}");
        }
        drop(faulty);
        let indexer = h.indexer(&dir, "crm_chunks", sync_config()).await;
        let report = indexer.sync(&no_stop()).await.expect("sync");
        assert!(report.error.is_none(), "{stage}: {report:?}");
        assert_converged(&h, &indexer, &format!("after a build stopped at {stage}")).await;
    }
}
