//! Reads and writes of the Phase-0 tables.

use std::time::Duration;

use crm_store::phase0::{
    self, CandidateDecision, CandidateStatus, Entity, EntityKind, EntityLink, IndexedRow, Lease,
    LeaseOutcome, LeaseRequest, LinkChange, McpWrite, NewCandidate, NewMerge, RunStatus,
    StaleReason, SyncState,
};
use crm_store::{SourceTable, Timestamp, Watermark};
use rusqlite::TransactionBehavior;

use crate::helpers::TempCrm;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn entity(id: &str, kind: EntityKind) -> Entity {
    Entity {
        entity_id: id.to_owned(),
        kind,
        display_name: Some(id.to_uppercase()),
        created_at: ts("2026-01-01T00:00:00Z"),
        updated_at: ts("2026-01-01T00:00:00Z"),
        deleted_at: None,
        merged_into: None,
    }
}

fn link(table: SourceTable, id: i64, entity: &str, rule: &str) -> EntityLink {
    EntityLink {
        source_table: table,
        source_id: id,
        entity_id: entity.to_owned(),
        rule: rule.to_owned(),
        linked_at: ts("2026-01-02T00:00:00Z"),
    }
}

#[test]
fn entities_and_links() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    phase0::insert_entity(&tx, &entity("person:1", EntityKind::Person)).unwrap();
    phase0::insert_entity(&tx, &entity("person:2", EntityKind::Person)).unwrap();
    assert!(phase0::insert_entity(&tx, &entity("person:1", EntityKind::Person)).is_err());

    let l = link(SourceTable::People, 1, "person:1", "singleton");
    assert_eq!(phase0::upsert_link(&tx, &l).unwrap(), LinkChange::Inserted);
    assert_eq!(phase0::upsert_link(&tx, &l).unwrap(), LinkChange::Unchanged);
    let moved = EntityLink {
        entity_id: "person:2".into(),
        rule: "email".into(),
        ..l.clone()
    };
    assert_eq!(
        phase0::upsert_link(&tx, &moved).unwrap(),
        LinkChange::Moved {
            from: "person:1".into()
        }
    );
    assert_eq!(
        phase0::links_of_entity(&tx, "person:2").unwrap(),
        vec![moved.clone()]
    );
    // Links must point at an existing entity.
    let dangling = link(SourceTable::People, 3, "person:404", "email");
    let err = phase0::upsert_link(&tx, &dangling).unwrap_err();
    assert!(err.to_string().contains("person:404"), "{err}");

    let ids = phase0::entity_ids_of_rows(&tx, SourceTable::People, &[1, 2, 3]).unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[&1], "person:2");

    assert!(
        phase0::retire_entity(&tx, "person:1", "person:2", ts("2026-02-01T00:00:00Z")).unwrap()
    );
    assert!(
        !phase0::retire_entity(&tx, "person:1", "person:2", ts("2026-02-01T00:00:00Z")).unwrap()
    );
    let e = phase0::get_entity(&tx, "person:1").unwrap().unwrap();
    assert_eq!(e.merged_into.as_deref(), Some("person:2"));
    assert!(e.deleted_at.is_some());
    assert!(phase0::restore_entity(&tx, "person:1", ts("2026-03-01T00:00:00Z")).unwrap());
    let e = phase0::get_entity(&tx, "person:1").unwrap().unwrap();
    assert_eq!((e.deleted_at, e.merged_into), (None, None));

    assert!(
        phase0::set_entity_display_name(&tx, "person:1", Some("Ada"), Timestamp::now()).unwrap()
    );
    assert!(
        !phase0::set_entity_display_name(&tx, "person:1", Some("Ada"), Timestamp::now()).unwrap()
    );
    let page = phase0::entities_page(&tx, EntityKind::Person, None, 10).unwrap();
    assert_eq!(page.len(), 2);
    assert!(phase0::delete_link(&tx, SourceTable::People, 1).unwrap());
    tx.commit().unwrap();
}

#[test]
fn candidates_keep_their_decision_when_flagged_again() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    let new = NewCandidate {
        kind: EntityKind::Person,
        entity_a: "person:9".into(),
        entity_b: "person:10".into(),
        reasons: vec!["nickname".into()],
        score: 0.7,
    };
    let c = phase0::upsert_candidate(&tx, &new, ts("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(c.status, CandidateStatus::Pending);
    // Stored with the smaller id first, whatever order it was flagged in.
    assert_eq!(
        (c.entity_a.as_str(), c.entity_b.as_str()),
        ("person:10", "person:9")
    );

    // A pending pair takes new evidence.
    let again = NewCandidate {
        entity_a: "person:10".into(),
        entity_b: "person:9".into(),
        reasons: vec!["nickname".into(), "same_org".into()],
        score: 0.8,
        ..new.clone()
    };
    let c2 = phase0::upsert_candidate(&tx, &again, ts("2026-01-02T00:00:00Z")).unwrap();
    assert_eq!(c2.id, c.id);
    assert_eq!(c2.reasons, vec!["nickname", "same_org"]);
    assert_eq!(c2.score, 0.8);

    // Decided: re-flagging changes nothing.
    let decision = CandidateDecision {
        status: CandidateStatus::Rejected,
        decided_by: "llm:qwen3".into(),
        raw_reply: Some("{\"same\": false}".into()),
    };
    assert!(phase0::decide_candidate(&tx, c.id, &decision, ts("2026-01-03T00:00:00Z")).unwrap());
    let c3 = phase0::upsert_candidate(&tx, &new, ts("2026-01-04T00:00:00Z")).unwrap();
    assert_eq!(c3.status, CandidateStatus::Rejected);
    assert_eq!(c3.reasons, vec!["nickname", "same_org"]);
    assert_eq!(c3.decided_by.as_deref(), Some("llm:qwen3"));
    assert_eq!(c3.raw_reply.as_deref(), Some("{\"same\": false}"));
    assert_eq!(c3.updated_at, ts("2026-01-03T00:00:00Z"));

    assert!(
        phase0::candidates_by_status(&tx, CandidateStatus::Pending, None, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        phase0::candidates_by_status(&tx, CandidateStatus::Rejected, None, 10)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        phase0::candidate_counts(&tx).unwrap()[&CandidateStatus::Rejected],
        1
    );
    assert!(!phase0::decide_candidate(&tx, 999, &decision, Timestamp::now()).unwrap());
}

#[test]
fn merges_are_durable_and_an_undo_is_a_new_fact() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    let m = NewMerge {
        kind: EntityKind::Organization,
        winner: "organization:1".into(),
        loser: "organization:7".into(),
        decided_by: "human:alex".into(),
        confidence: Some(0.93),
        rationale: Some("same domain".into()),
    };
    let id = phase0::insert_merge(&tx, &m, ts("2026-01-01T00:00:00Z")).unwrap();
    assert_eq!(phase0::active_merges(&tx, None).unwrap().len(), 1);
    assert_eq!(
        phase0::active_merges(&tx, Some(EntityKind::Person))
            .unwrap()
            .len(),
        0
    );
    assert!(phase0::undo_merge(&tx, id, "human:sam", ts("2026-01-02T00:00:00Z")).unwrap());
    assert!(!phase0::undo_merge(&tx, id, "human:sam", ts("2026-01-03T00:00:00Z")).unwrap());
    assert!(phase0::active_merges(&tx, None).unwrap().is_empty());
    let stored = phase0::get_merge(&tx, id).unwrap().unwrap();
    assert_eq!(stored.undone_by.as_deref(), Some("human:sam"));
    assert_eq!(stored.undone_at, Some(ts("2026-01-02T00:00:00Z")));
    assert_eq!(stored.confidence, Some(0.93));
}

#[test]
fn sync_state_and_indexed_rows() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    assert!(
        phase0::get_sync_state(&tx, "crm_chunks", SourceTable::People)
            .unwrap()
            .is_none()
    );
    let mut state = SyncState {
        collection: "crm_chunks".into(),
        source_table: SourceTable::People,
        watermark: None,
        fingerprint: Some("minilm:384:bm25".into()),
        last_run_at: Some(ts("2026-01-01T00:00:00Z")),
        last_full_at: None,
    };
    phase0::set_sync_state(&tx, &state).unwrap();
    assert_eq!(
        phase0::get_sync_state(&tx, "crm_chunks", SourceTable::People).unwrap(),
        Some(state.clone())
    );
    state.watermark = Some(Watermark::new(ts("2026-06-05T13:55:12.123Z"), 42));
    phase0::set_sync_state(&tx, &state).unwrap();
    assert_eq!(
        phase0::get_sync_state(&tx, "crm_chunks", SourceTable::People).unwrap(),
        Some(state)
    );

    phase0::insert_entity(&tx, &entity("person:1", EntityKind::Person)).unwrap();
    phase0::insert_entity(&tx, &entity("person:2", EntityKind::Person)).unwrap();
    phase0::upsert_link(&tx, &link(SourceTable::People, 1, "person:1", "singleton")).unwrap();
    for id in [1, 2] {
        phase0::upsert_indexed_row(
            &tx,
            &IndexedRow {
                collection: "crm_chunks".into(),
                source_table: SourceTable::People,
                source_id: id,
                entity_id: Some("person:1".into()),
                content_hash: format!("{id:064}"),
                chunk_count: 2,
                indexed_at: ts("2026-01-01T00:00:00Z"),
            },
        )
        .unwrap();
    }
    let rows = phase0::indexed_rows(&tx, "crm_chunks", SourceTable::People, &[1, 2, 3]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[&2].chunk_count, 2);
    assert_eq!(
        phase0::count_indexed_rows(&tx, "crm_chunks", SourceTable::People).unwrap(),
        2
    );

    // Nothing is stale until a link moves.
    assert!(
        phase0::stale_entity_rows(&tx, "crm_chunks", 10)
            .unwrap()
            .is_empty()
    );
    phase0::upsert_link(&tx, &link(SourceTable::People, 1, "person:2", "merge")).unwrap();
    let stale = phase0::stale_entity_rows(&tx, "crm_chunks", 10).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].source_id, 1);
    assert_eq!(stale[0].current_entity_id.as_deref(), Some("person:2"));
    assert!(
        phase0::set_indexed_entity(&tx, "crm_chunks", SourceTable::People, 1, Some("person:2"))
            .unwrap()
    );
    assert!(
        phase0::stale_entity_rows(&tx, "crm_chunks", 10)
            .unwrap()
            .is_empty()
    );

    assert!(phase0::delete_indexed_row(&tx, "crm_chunks", SourceTable::People, 2).unwrap());
    assert!(!phase0::delete_indexed_row(&tx, "crm_chunks", SourceTable::People, 2).unwrap());
    assert_eq!(phase0::reset_collection(&tx, "crm_chunks").unwrap(), 1);
    assert!(
        phase0::get_sync_state(&tx, "crm_chunks", SourceTable::People)
            .unwrap()
            .is_none()
    );
}

#[test]
fn runs_record_counts_and_errors() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    let a = phase0::start_run(&tx, "resolve", ts("2026-01-01T00:00:00Z")).unwrap();
    let b = phase0::start_run(&tx, "sync", ts("2026-01-01T00:01:00Z")).unwrap();
    let counts = serde_json::json!({"people": 10, "links": 12});
    assert!(
        phase0::finish_run(
            &tx,
            a,
            RunStatus::Ok,
            &counts,
            None,
            ts("2026-01-01T00:02:00Z")
        )
        .unwrap()
    );
    assert!(
        phase0::finish_run(
            &tx,
            b,
            RunStatus::Failed,
            &serde_json::json!({}),
            Some("embedder down"),
            Timestamp::now()
        )
        .unwrap()
    );
    let runs = phase0::recent_runs(&tx, None, 10).unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, b);
    assert_eq!(runs[0].error.as_deref(), Some("embedder down"));
    let resolve = phase0::recent_runs(&tx, Some("resolve"), 10).unwrap();
    assert_eq!(resolve[0].counts, counts);
    assert_eq!(resolve[0].status, RunStatus::Ok);
}

#[test]
fn the_mcp_write_log_commits_and_rolls_back_with_the_write() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let entry = McpWrite {
        at: ts("2026-01-01T00:00:00Z"),
        tool: "add_note".into(),
        client: Some("claude-code/1.0".into()),
        arguments: serde_json::json!({"organization_id": 1, "text": "hello"}),
        target_table: Some("interactions".into()),
        target_id: Some(1),
        before: None,
        after: Some(serde_json::json!({"id": 1})),
        outcome: "ok".into(),
    };
    {
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO interactions (id, kind, occurred_at, body) VALUES (1, 'note', '2026-01-01', 'hello')",
            [],
        )
        .unwrap();
        phase0::insert_mcp_write(&tx, &entry).unwrap();
        // Dropped without commit: both disappear.
    }
    assert!(phase0::recent_mcp_writes(&conn, 10).unwrap().is_empty());
    let tx = conn.transaction().unwrap();
    phase0::insert_mcp_write(&tx, &entry).unwrap();
    tx.commit().unwrap();
    assert_eq!(phase0::recent_mcp_writes(&conn, 10).unwrap(), vec![entry]);
}

fn request(holder: &str, pid: u32, host: &str) -> LeaseRequest {
    LeaseRequest {
        name: "sync:crm_chunks".into(),
        holder: holder.into(),
        pid,
        hostname: host.into(),
        ttl: Duration::from_secs(60),
    }
}

fn acquire(conn: &mut rusqlite::Connection, req: &LeaseRequest, now: Timestamp) -> LeaseOutcome {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    let out = phase0::acquire_lease(&tx, req, now).unwrap();
    tx.commit().unwrap();
    out
}

/// A process id that existed and has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn one_lease_holder_at_a_time_with_stale_recovery() {
    let (_t, store) = TempCrm::created();
    let mut conn = store.writer().unwrap();
    let t0 = ts("2026-01-01T00:00:00Z");
    let me = std::process::id();

    let first = acquire(&mut conn, &request("run-a", me, "host-1"), t0);
    let LeaseOutcome::Acquired(lease) = first else {
        panic!("{first:?}")
    };
    assert_eq!(lease.expires_at, ts("2026-01-01T00:01:00Z"));

    // Another live run is refused while the lease is valid, on any host.
    for host in ["host-1", "host-2"] {
        let out = acquire(
            &mut conn,
            &request("run-b", me, host),
            ts("2026-01-01T00:00:30Z"),
        );
        assert!(
            matches!(out, LeaseOutcome::Held(Lease { ref holder, .. }) if holder == "run-a"),
            "{out:?}"
        );
    }
    // The holder renews; someone else cannot.
    let tx = conn.transaction().unwrap();
    let renewed = phase0::renew_lease(
        &tx,
        "sync:crm_chunks",
        "run-a",
        Duration::from_secs(60),
        ts("2026-01-01T00:00:50Z"),
    )
    .unwrap();
    assert_eq!(renewed.unwrap().expires_at, ts("2026-01-01T00:01:50Z"));
    assert!(
        phase0::renew_lease(&tx, "sync:crm_chunks", "run-b", Duration::from_secs(60), t0)
            .unwrap()
            .is_none()
    );
    tx.commit().unwrap();

    // Expired: taken over.
    let out = acquire(
        &mut conn,
        &request("run-b", me, "host-2"),
        ts("2026-01-01T00:02:00Z"),
    );
    let LeaseOutcome::TookOver {
        previous,
        reason,
        lease,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        (previous.holder.as_str(), reason),
        ("run-a", StaleReason::Expired)
    );
    assert_eq!(lease.holder, "run-b");

    // Held by a process of this host that died: taken over before expiry.
    let dead = dead_pid();
    let tx = conn.transaction().unwrap();
    assert!(phase0::release_lease(&tx, "sync:crm_chunks", "run-b").unwrap());
    tx.commit().unwrap();
    let out = acquire(&mut conn, &request("run-c", dead, "host-1"), t0);
    assert!(matches!(out, LeaseOutcome::Acquired(_)));
    assert_eq!(phase0::process_is_alive(dead), Some(false));
    let out = acquire(
        &mut conn,
        &request("run-d", me, "host-1"),
        ts("2026-01-01T00:00:10Z"),
    );
    assert!(
        matches!(
            out,
            LeaseOutcome::TookOver {
                reason: StaleReason::DeadProcess,
                ..
            }
        ),
        "{out:?}"
    );
    // A dead pid on another host says nothing: the lease is held until it expires.
    let tx = conn.transaction().unwrap();
    assert!(phase0::release_lease(&tx, "sync:crm_chunks", "run-d").unwrap());
    tx.commit().unwrap();
    acquire(&mut conn, &request("run-e", dead, "host-9"), t0);
    let out = acquire(
        &mut conn,
        &request("run-f", me, "host-1"),
        ts("2026-01-01T00:00:10Z"),
    );
    assert!(matches!(out, LeaseOutcome::Held(_)), "{out:?}");

    // Re-acquiring one's own lease extends it and keeps acquired_at.
    let out = acquire(
        &mut conn,
        &request("run-e", dead, "host-9"),
        ts("2026-01-01T00:00:20Z"),
    );
    let LeaseOutcome::Acquired(l) = out else {
        panic!("{out:?}")
    };
    assert_eq!(l.acquired_at, t0);
    assert_eq!(l.expires_at, ts("2026-01-01T00:01:20Z"));
    assert_eq!(
        phase0::get_lease(&conn, "sync:crm_chunks").unwrap(),
        Some(l)
    );
}
