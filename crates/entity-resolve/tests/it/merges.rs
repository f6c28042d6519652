//! The merge machinery: accept, reject, undo, apply, and how re-runs respect them.

use crm_store::Timestamp;
use entity_resolve::merges::{self, Decider, Decision};
use entity_resolve::{EntityId, EntityKind, ResolveError};

use crate::support::{Crm, P, p};

fn pid(n: i64) -> EntityId {
    EntityId::new(EntityKind::Person, n)
}

/// Robert Smith and Bob Smith at one organisation: a nickname candidate.
fn nickname_pair() -> Crm {
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.person(P {
        org: Some(1),
        email: Some("robert.smith@acme.com"),
        ..p(1, "Robert Smith")
    });
    crm.person(P {
        org: Some(1),
        email: Some("bob@gmail.com"),
        ..p(2, "Bob Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(3, "Alice Jones")
    });
    crm.resolve();
    crm
}

fn candidate_id(crm: &Crm, a: &str, b: &str) -> i64 {
    crm.conn()
        .query_row(
            "SELECT id FROM entity_candidates WHERE entity_a = ?1 AND entity_b = ?2",
            [a, b],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no candidate {a}/{b}: {e}"))
}

fn status(crm: &Crm, id: i64) -> (String, Option<String>) {
    crm.conn()
        .query_row(
            "SELECT status, decided_by FROM entity_candidates WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

fn llm() -> Decider {
    "llm:qwen3-8b".parse().unwrap()
}

fn decision<'a>(by: &'a Decider, why: &'a str) -> Decision<'a> {
    Decision {
        decided_by: by,
        confidence: Some(0.95),
        rationale: why,
        raw_reply: Some("{\"same_entity\": true}"),
    }
}

#[test]
fn accepting_a_candidate_merges_durably() {
    let crm = nickname_pair();
    let id = candidate_id(&crm, "person:1", "person:2");
    let by = llm();
    let outcome = {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        let o = merges::accept_candidate(
            &tx,
            id,
            &decision(&by, "nickname, same company"),
            Timestamp::now(),
        )
        .unwrap();
        tx.commit().unwrap();
        o
    };
    assert_eq!(
        (outcome.winner, outcome.loser, outcome.rows_moved),
        (pid(1), pid(2), 1)
    );
    assert_eq!(
        status(&crm, id),
        ("merged".into(), Some("llm:qwen3-8b".into()))
    );
    assert_eq!(crm.person_entity(2), "person:1");
    let (decided_by, confidence, rationale): (String, f64, String) = crm
        .conn()
        .query_row(
            "SELECT decided_by, confidence, rationale FROM entity_merges WHERE id = ?1",
            [outcome.merge_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (decided_by.as_str(), confidence, rationale.as_str()),
        ("llm:qwen3-8b", 0.95, "nickname, same company")
    );
    // Re-runs respect the merge: nothing moves, nothing is written.
    let s = crm.resolve();
    assert_eq!(s.people.merges_respected, 1);
    assert_eq!(s.entity_writes, 0, "{s:#?}");
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(crm.count("SELECT count(*) FROM entities WHERE entity_id = 'person:2' AND merged_into = 'person:1'"), 1);
}

#[test]
fn a_rejected_candidate_is_never_flagged_again() {
    let crm = nickname_pair();
    let id = candidate_id(&crm, "person:1", "person:2");
    let by: Decider = "human:alice".parse().unwrap();
    {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        merges::reject_candidate(
            &tx,
            id,
            &Decision {
                decided_by: &by,
                confidence: None,
                rationale: "two brothers",
                raw_reply: None,
            },
            Timestamp::now(),
        )
        .unwrap();
        tx.commit().unwrap();
    }
    assert_eq!(
        status(&crm, id),
        ("rejected".into(), Some("human:alice".into()))
    );
    let s = crm.resolve();
    assert_eq!(s.people.candidates_decided_respected, 1);
    assert_eq!(s.people.candidates_new, 0);
    assert_eq!(s.entity_writes, 0);
    assert_eq!(status(&crm, id).0, "rejected");
    assert_eq!(crm.count("SELECT count(*) FROM entity_candidates"), 1);
    // Deciding twice is refused.
    let mut conn = crm.conn();
    let tx = conn.transaction().unwrap();
    let err =
        merges::accept_candidate(&tx, id, &decision(&llm(), "x"), Timestamp::now()).unwrap_err();
    assert!(
        matches!(err, ResolveError::CandidateDecided { .. }),
        "{err}"
    );
    let err =
        merges::reject_candidate(&tx, 9999, &decision(&llm(), "x"), Timestamp::now()).unwrap_err();
    assert!(
        matches!(err, ResolveError::CandidateNotFound(9999)),
        "{err}"
    );
}

#[test]
fn an_undone_merge_splits_and_stays_split() {
    let crm = nickname_pair();
    let id = candidate_id(&crm, "person:1", "person:2");
    let merge_id = {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        let o = merges::accept_candidate(&tx, id, &decision(&llm(), "nickname"), Timestamp::now())
            .unwrap();
        tx.commit().unwrap();
        o.merge_id
    };
    crm.resolve();
    let human: Decider = "human:bob".parse().unwrap();
    {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        let undo = merges::undo_merge(&tx, merge_id, &human, Timestamp::now()).unwrap();
        assert_eq!((undo.loser, undo.rows_returned), (pid(2), 1));
        let again = merges::undo_merge(&tx, merge_id, &human, Timestamp::now()).unwrap_err();
        assert!(
            matches!(again, ResolveError::MergeAlreadyUndone(_)),
            "{again}"
        );
        tx.commit().unwrap();
    }
    assert_eq!(crm.person_entity(2), "person:2");
    assert_eq!(crm.count("SELECT count(*) FROM entities WHERE entity_id = 'person:2' AND deleted_at IS NULL AND merged_into IS NULL"), 1);
    assert_eq!(
        status(&crm, id),
        ("rejected".into(), Some("human:bob".into()))
    );
    assert_eq!(crm.count("SELECT count(*) FROM entity_merges WHERE undone_at IS NOT NULL AND undone_by = 'human:bob'"), 1);
    let s = crm.resolve();
    assert_eq!(s.people.undone_merges_respected, 1);
    assert_eq!(crm.person_entity(2), "person:2");
    assert_eq!(
        s.people.candidates_new, 0,
        "an undone pair is not flagged again"
    );
    let again = crm.resolve();
    assert_eq!(again.entity_writes, 0);
}

#[test]
fn a_human_undo_wins_over_the_rules() {
    // Two rows with one email: the rules link them. A person says they differ.
    let crm = Crm::new();
    crm.person(P {
        email: Some("family@home.net"),
        ..p(1, "Pat Kim")
    });
    crm.person(P {
        email: Some("family@home.net"),
        ..p(2, "Pat Kim")
    });
    crm.resolve();
    assert_eq!(crm.person_entity(2), "person:1");
    // Split them with a merge record of person:2 into person:1, then undo it.
    crm.person(P {
        email: Some("pat2@home.net"),
        ..p(3, "Pat Kim")
    });
    crm.resolve();
    let human: Decider = "human:ops".parse().unwrap();
    {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        // Move row 2 out, as a person would with a manual split: record a merge of a
        // fresh entity for row 2 into person:1, then undo it.
        tx.execute("INSERT INTO entities (entity_id, kind, created_at, updated_at) VALUES ('person:2', 'person', '2026-01-01', '2026-01-01')", []).unwrap();
        tx.execute("UPDATE entity_links SET entity_id = 'person:2' WHERE source_table = 'people' AND source_id = 2", []).unwrap();
        let m = merges::apply_merge(
            &tx,
            pid(1),
            pid(2),
            &Decision {
                decided_by: &human,
                confidence: None,
                rationale: "test",
                raw_reply: None,
            },
            Timestamp::now(),
        )
        .unwrap();
        merges::undo_merge(&tx, m.merge_id, &human, Timestamp::now()).unwrap();
        tx.commit().unwrap();
    }
    let s = crm.resolve();
    assert_eq!(crm.person_entity(1), "person:1");
    assert_eq!(
        crm.person_entity(2),
        "person:2",
        "the email rule must not re-link an undone merge"
    );
    assert_eq!(s.people.undone_merges_respected, 1);
    assert_eq!(crm.resolve().entity_writes, 0);
}

#[test]
fn conflicting_hard_evidence_stops_a_model_but_not_a_person() {
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.person(P {
        org: Some(1),
        linkedin: Some("linkedin.com/in/rob-smith-1"),
        ..p(1, "Robert Smith")
    });
    crm.person(P {
        org: Some(1),
        linkedin: Some("linkedin.com/in/rob-smith-2"),
        ..p(2, "Rob Smith")
    });
    crm.resolve();
    let mut conn = crm.conn();
    let tx = conn.transaction().unwrap();
    let err = merges::apply_merge(
        &tx,
        pid(1),
        pid(2),
        &decision(&llm(), "same"),
        Timestamp::now(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ResolveError::ConflictingEvidence { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("rob-smith-1"));
    let conflict = merges::hard_evidence_conflict(&tx, pid(1), pid(2)).unwrap();
    assert!(conflict.is_some());
    let human: Decider = "human:alice".parse().unwrap();
    merges::apply_merge(
        &tx,
        pid(1),
        pid(2),
        &Decision {
            decided_by: &human,
            confidence: None,
            rationale: "checked by phone",
            raw_reply: None,
        },
        Timestamp::now(),
    )
    .unwrap();
    tx.commit().unwrap();
    drop(conn);
    // A person's merge stands even though the profiles differ.
    let s = crm.resolve();
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(s.people.merges_respected, 1);
}

#[test]
fn merges_refuse_bad_pairs() {
    let crm = nickname_pair();
    let mut conn = crm.conn();
    let tx = conn.transaction().unwrap();
    let by = llm();
    let d = decision(&by, "x");
    let now = Timestamp::now();
    let e = merges::apply_merge(&tx, pid(1), pid(1), &d, now).unwrap_err();
    assert!(matches!(e, ResolveError::InvalidMerge { .. }), "{e}");
    let e = merges::apply_merge(
        &tx,
        pid(1),
        EntityId::new(EntityKind::Organization, 1),
        &d,
        now,
    )
    .unwrap_err();
    assert!(matches!(e, ResolveError::InvalidMerge { .. }), "{e}");
    let e = merges::apply_merge(&tx, pid(1), pid(77), &d, now).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let bad = Decision {
        confidence: Some(1.5),
        ..d
    };
    let e = merges::apply_merge(&tx, pid(1), pid(3), &bad, now).unwrap_err();
    assert!(e.to_string().contains("confidence"), "{e}");
    merges::apply_merge(&tx, pid(1), pid(3), &d, now).unwrap();
    let e = merges::apply_merge(&tx, pid(1), pid(3), &d, now).unwrap_err();
    assert!(e.to_string().contains("merged into person:1"), "{e}");
    let e = merges::undo_merge(&tx, 4242, &by, now).unwrap_err();
    assert!(matches!(e, ResolveError::MergeNotFound(4242)), "{e}");
}

#[test]
fn a_merge_moves_the_losers_other_candidates_to_the_winner() {
    // Robert (1), Bob (2) and R. (3) Smith: candidates 1/2, 1/3, 2/3.
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.person(P {
        org: Some(1),
        ..p(1, "Robert Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(2, "Bob Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(3, "R. Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(4, "Rob Smith")
    });
    crm.resolve();
    let c24 = candidate_id(&crm, "person:2", "person:4");
    let c12 = candidate_id(&crm, "person:1", "person:2");
    {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        merges::reject_candidate(&tx, c24, &decision(&llm(), "no"), Timestamp::now()).unwrap();
        // person:2 merges into person:1: the rejection of 2/4 now reads 1/4.
        merges::accept_candidate(&tx, c12, &decision(&llm(), "yes"), Timestamp::now()).unwrap();
        tx.commit().unwrap();
    }
    let (a, b, st): (String, String, String) = crm
        .conn()
        .query_row(
            "SELECT entity_a, entity_b, status FROM entity_candidates WHERE id = ?1",
            [c24],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // 1/4 existed already as a pending pair, so the decided 2/4 stays as history.
    assert_eq!(st, "rejected");
    assert!(a == "person:2" || a == "person:1", "{a} {b}");
    let s = crm.resolve();
    assert_eq!(crm.person_entity(2), "person:1");
    assert!(s.people.candidates_new == 0, "{s:#?}");
    assert_eq!(crm.resolve().entity_writes, 0);
}
