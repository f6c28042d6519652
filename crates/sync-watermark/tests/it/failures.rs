//! Failures: the embedder or the index failing, a fingerprint mismatch, leases, signals,
//! and `verify` catching every kind of tampering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_store::phase0::{self, LeaseRequest};
use crm_store::rusqlite::{TransactionBehavior, params};
use crm_store::{SourceTable, Timestamp};
use index_qdrant::ChunkId;
use sync_watermark::{
    DifferenceKind, Encoder, FailureKind, Indexer, ProgressEvent, ProgressSink, RunOutcome,
    SyncError, lease_name,
};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{assert_converged, base_time, seed};
use crate::support::*;

/// Thirty more people, so that a sync has several batches.
fn seed_many(h: &Harness) {
    let c = h.crm();
    let base = base_time();
    for i in 0..30 {
        let at = stamp(base.saturating_add(Duration::from_secs(1000 + i)), false);
        let id = 100 + i64::try_from(i).unwrap();
        insert_person(
            &c,
            id,
            &format!("Person {id}"),
            Some(1),
            "Plays chess. Reads novels.",
            &at,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_that_is_down_fails_the_run_without_committing_anything() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    h.server.controls().fail_all(Some(500));
    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    assert_eq!(report.failure, Some(FailureKind::Embedder));
    let error = report.error.unwrap();
    assert!(error.contains("500"), "{error}");
    assert_eq!(report.batches_committed, 0);
    assert_eq!(report.points_in_index, Some(0));

    h.server.controls().reset();
    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert_converged(&h, &indexer, "after the embedder came back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_failing_mid_run_is_a_partial_failure_that_the_next_run_completes() {
    let h = Harness::new().await;
    seed(&h, base_time());
    seed_many(&h);
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    // Requests so far were the encoder's probe; fail the fourth embedding request.
    let first = h.server.controls().requests() + 4;
    h.server.controls().fail_request_number(first, 500);
    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::PartialFailure, "{report:?}");
    assert_eq!(report.failure, Some(FailureKind::Embedder));
    assert!(report.batches_committed > 0);

    // What was committed is consistent: every difference is a row the run did not reach.
    let check = indexer.verify().await.expect("verify");
    assert!(!check.is_clean());
    for d in &check.differences {
        assert!(
            matches!(
                d.kind,
                DifferenceKind::RecordMissing | DifferenceKind::MissingPoint
            ),
            "{d:?}"
        );
        assert!(
            !d.behind_watermark,
            "the watermark is ahead of the index: {d:?}"
        );
    }

    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert_converged(&h, &indexer, "after a partial failure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_of_the_wrong_dimension_are_refused() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    indexer.sync(&no_stop()).await.expect("run");
    let before = snapshot(indexer.index()).await;

    let c = h.crm();
    let at = stamp(base_time().saturating_add(Duration::from_secs(5000)), false);
    exec(
        &c,
        "UPDATE people SET bio = 'Changed.', updated_at = ?1 WHERE id = 10",
        [&at],
    );
    h.server.controls().wrong_dimension(Some(DIM + 1));
    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    assert_eq!(report.failure, Some(FailureKind::Embedder));
    let error = report.error.unwrap();
    assert!(
        error.contains(&format!("{} components, expected {DIM}", DIM + 1)),
        "{error}"
    );
    assert_same_points(&snapshot(indexer.index()).await, &before, "index untouched");

    h.server.controls().reset();
    indexer.sync(&no_stop()).await.expect("run");
    assert_converged(&h, &indexer, "after the dimension was fixed").await;
}

/// Drops the collection when the n-th batch commits: the index failing mid-run.
struct DropIndexAt {
    index: Mutex<Option<Arc<index_qdrant::Index>>>,
    at: u64,
    seen: AtomicU64,
}

impl ProgressSink for DropIndexAt {
    fn event(&self, event: ProgressEvent) {
        if let ProgressEvent::BatchCommitted { .. } = event
            && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.at
            && let Some(index) = self.index.lock().unwrap().take()
        {
            // On a thread of its own with its own runtime: the sink is called inside the
            // run's future, and blocking the runtime that drives it (block_in_place on the
            // test's block_on thread) hung now and then under load.
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(index.drop_collection())
                    .expect("drop");
            })
            .join()
            .expect("drop thread");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_lost_mid_run_is_reported_and_rebuilt_by_the_next_run() {
    let h = Harness::new().await;
    seed(&h, base_time());
    seed_many(&h);
    let sink = Arc::new(DropIndexAt {
        index: Mutex::new(None),
        at: 2,
        seen: AtomicU64::new(0),
    });
    let indexer = h.indexer_reporting(sink.clone()).await;
    *sink.index.lock().unwrap() = Some(indexer.index().clone());
    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::PartialFailure, "{report:?}");
    assert_eq!(report.failure, Some(FailureKind::Index));
    assert!(report.error.unwrap().contains("crm_chunks"));

    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert!(report.recreated, "records of a lost index are forgotten");
    assert_converged(&h, &indexer, "after the index was lost").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fingerprint_mismatch_refuses_to_mix_vectors_until_a_recreate() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let dir = h.index_dir("main");
    {
        let indexer = h.indexer(&dir, "crm_chunks", sync_config()).await;
        indexer.sync(&no_stop()).await.expect("run");
    }
    let mut chunks = small_chunks();
    chunks.max_tokens = 60;
    let other = Arc::new(
        Encoder::new(embedder(h.server.url(), chunks).await)
            .await
            .expect("encoder"),
    );
    assert_ne!(other.fingerprint(), h.encoder.fingerprint());
    let indexer = h
        .indexer_with(
            &dir,
            "crm_chunks",
            sync_config(),
            other,
            Arc::new(sync_watermark::NoProgress),
        )
        .await;
    let points = indexer.index().info().await.unwrap().points_count;
    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    assert_eq!(report.failure, Some(FailureKind::FingerprintMismatch));
    assert!(report.error.unwrap().contains("crm-backfill --recreate"));
    assert_eq!(indexer.index().info().await.unwrap().points_count, points);
    let check = indexer.verify().await.expect("verify");
    assert!(
        check
            .counts
            .contains_key(&DifferenceKind::FingerprintMismatch)
    );

    let report = indexer.backfill(true, &no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Done, "{report:?}");
    assert!(indexer.verify().await.expect("verify").is_clean());
}

fn hold_lease(h: &Harness, holder: &str, pid: u32, hostname: &str, ttl: Duration, now: Timestamp) {
    let mut conn = h.crm();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let outcome = phase0::acquire_lease(
        &tx,
        &LeaseRequest {
            name: lease_name("crm_chunks"),
            holder: holder.to_owned(),
            pid,
            hostname: hostname.to_owned(),
            ttl,
        },
        now,
    )
    .unwrap();
    assert!(
        matches!(outcome, phase0::LeaseOutcome::Acquired(_)),
        "{outcome:?}"
    );
    tx.commit().unwrap();
}

fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_is_refused_with_who_holds_it() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    let me = std::process::id();
    hold_lease(
        &h,
        "crm-sync#other",
        me,
        HOST,
        Duration::from_secs(600),
        Timestamp::now(),
    );
    let err = indexer.sync(&no_stop()).await.expect_err("lease held");
    assert!(matches!(err, SyncError::LeaseHeld { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("pid {me} on host {HOST}")),
        "{message}"
    );
    assert!(message.contains("crm-sync#other"), "{message}");
    // A live holder on another host is refused too (its pid cannot be checked here).
    exec(&h.crm(), "DELETE FROM substrate_leases", []);
    hold_lease(
        &h,
        "crm-sync#far",
        dead_pid(),
        "elsewhere",
        Duration::from_secs(600),
        Timestamp::now(),
    );
    assert!(matches!(
        indexer.sync(&no_stop()).await,
        Err(SyncError::LeaseHeld { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_leases_are_recovered() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    // A process of this host that is gone.
    hold_lease(
        &h,
        "crm-sync#crashed",
        dead_pid(),
        HOST,
        Duration::from_secs(600),
        Timestamp::now(),
    );
    let report = indexer
        .sync(&no_stop())
        .await
        .expect("stale lease recovered");
    assert_eq!(report.outcome, RunOutcome::Done);
    // An expired lease of another host.
    hold_lease(
        &h,
        "crm-sync#expired",
        1,
        "elsewhere",
        Duration::from_secs(5),
        Timestamp::now().saturating_sub(Duration::from_secs(60)),
    );
    indexer
        .sync(&no_stop())
        .await
        .expect("expired lease recovered");
    // The lease is released after a run.
    let held: i64 = h
        .crm()
        .query_row("SELECT count(*) FROM substrate_leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(held, 0);
}

/// Cancels the run when the first batch commits, as a signal would.
struct CancelAtFirstCommit(CancellationToken);

impl ProgressSink for CancelAtFirstCommit {
    fn event(&self, event: ProgressEvent) {
        if matches!(event, ProgressEvent::BatchCommitted { .. }) {
            self.0.cancel();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_the_run_between_batches_and_the_next_run_completes() {
    let h = Harness::new().await;
    seed(&h, base_time());
    seed_many(&h);
    let stop = CancellationToken::new();
    let indexer = h
        .indexer_reporting(Arc::new(CancelAtFirstCommit(stop.clone())))
        .await;
    let report = indexer.sync(&stop).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::PartialFailure, "{report:?}");
    assert_eq!(report.failure, Some(FailureKind::Cancelled));
    assert_eq!(
        report.batches_committed, 1,
        "stopped after the batch in hand"
    );

    let report = indexer.sync(&no_stop()).await.expect("run");
    assert_eq!(report.outcome, RunOutcome::Done);
    assert_converged(&h, &indexer, "after a signal").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_every_kind_of_tampering() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer: Indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    indexer.sync(&no_stop()).await.expect("run");
    assert!(indexer.verify().await.unwrap().is_clean());
    let index = indexer.index();
    let c = h.crm();

    // A chunk goes missing; a row's entity is wrong in the index.
    index
        .delete_points(&[ChunkId::new("interactions", 20, 1)])
        .await
        .unwrap();
    index
        .set_entity_id("people", &[12], Some("person:999"))
        .await
        .unwrap();
    // A point of a row the CRM does not have, copied from a real one.
    let mut stray = snapshot(index)
        .await
        .into_values()
        .find(|p| p.payload.source_table == "deals")
        .unwrap();
    stray.payload.source_id = 777;
    index
        .upsert(vec![index_qdrant::ChunkPoint::new(
            stray.dense,
            stray.sparse,
            stray.payload,
        )])
        .await
        .unwrap();
    // Records: a wrong hash, a pending one, one for a row that is gone.
    exec(
        &c,
        "UPDATE ingest_indexed_rows SET content_hash = 'x' WHERE source_table = 'people' AND source_id = 10",
        [],
    );
    exec(
        &c,
        "UPDATE ingest_indexed_rows SET content_hash = 'pending' WHERE source_table = 'people' AND source_id = 11",
        [],
    );
    exec(
        &c,
        "INSERT INTO ingest_indexed_rows VALUES ('crm_chunks', 'deals', 888, NULL, 'h', 1, ?1)",
        params![Timestamp::now().to_canonical()],
    );
    // A watermark from the future.
    exec(
        &c,
        "UPDATE ingest_sync_state SET watermark_updated_at = '2999-01-01T00:00:00.000Z' WHERE source_table = 'deals'",
        [],
    );

    let check = indexer.verify().await.expect("verify");
    for kind in [
        DifferenceKind::MissingPoint,
        DifferenceKind::WrongEntity,
        DifferenceKind::UnexpectedPoint,
        DifferenceKind::RecordMismatch,
        DifferenceKind::RecordPending,
        DifferenceKind::RecordForMissingRow,
        DifferenceKind::WatermarkAhead,
    ] {
        assert!(
            check.counts.contains_key(&kind),
            "{kind:?} not reported: {:#?}",
            check.differences
        );
    }
    let missing = check
        .differences
        .iter()
        .find(|d| d.kind == DifferenceKind::MissingPoint)
        .unwrap();
    assert_eq!(
        (missing.table, missing.source_id, missing.chunk_index),
        (Some(SourceTable::Interactions), Some(20), Some(1))
    );
    assert!(missing.behind_watermark, "the sync thinks that row is done");
}
