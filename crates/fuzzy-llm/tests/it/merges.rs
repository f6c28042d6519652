//! Confident answers become durable merges through `entity-resolve`'s machinery; the
//! threshold and the cap hold; people decide through the same functions.

use std::time::Duration;

use crm_store::Timestamp;
use crm_store::phase0::{self, CandidateStatus};
use fuzzy_llm::merges::{self, Decider, Decision};
use fuzzy_llm::runner::{MergePolicy, RunOptions, adjudicate};
use fuzzy_llm::testing::{Reply, ScriptedChatServer, SeenRequest, answer_json};

use crate::support::{Crm, MODEL, client, client_with, http_config, options};

fn yes(confidence: f64) -> impl Fn(&SeenRequest, u64) -> Reply + Send + Sync {
    move |request, _| {
        let (a, b) = request.pair().unwrap();
        Reply::content(answer_json(
            a,
            b,
            true,
            confidence,
            "same email local part and nickname",
        ))
    }
}

fn link_of(crm: &Crm, person: i64) -> String {
    let conn = crm.store.reader().unwrap();
    conn.query_row(
        "SELECT entity_id FROM entity_links WHERE source_table = 'people' AND source_id = ?1",
        [person],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_confident_yes_merges_and_records_who_decided() {
    let crm = Crm::new();
    let id = crm.pairs(1)[0];
    let server = ScriptedChatServer::start(MODEL, yes(0.97)).await.unwrap();

    let summary = adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap();

    assert_eq!(summary.merged, 1, "{summary:?}");
    let c = crm.get(id);
    assert_eq!(c.status, CandidateStatus::Merged);
    assert_eq!(c.decided_by.as_deref(), Some("llm:judge-1"));
    assert!(c.raw_reply.unwrap().contains("\"same_entity\":true"));

    let conn = crm.store.reader().unwrap();
    let merges = phase0::active_merges(&conn, None).unwrap();
    assert_eq!(merges.len(), 1);
    let m = &merges[0];
    assert_eq!(
        (m.winner.as_str(), m.loser.as_str()),
        ("person:1000", "person:1001")
    );
    assert_eq!(m.decided_by, "llm:judge-1");
    assert_eq!(m.confidence, Some(0.97));
    assert_eq!(
        m.rationale.as_deref(),
        Some("same email local part and nickname")
    );
    let loser = phase0::get_entity(&conn, "person:1001").unwrap().unwrap();
    assert!(loser.deleted_at.is_some());
    assert_eq!(loser.merged_into.as_deref(), Some("person:1000"));
    assert_eq!(link_of(&crm, 1001), "person:1000");
    assert_eq!(link_of(&crm, 1000), "person:1000");
}

#[tokio::test]
async fn below_the_threshold_nothing_merges() {
    let crm = Crm::new();
    let id = crm.pairs(1)[0];
    let server = ScriptedChatServer::start(MODEL, yes(0.97)).await.unwrap();
    let opts = RunOptions {
        policy: MergePolicy {
            min_confidence: 0.99,
            ..MergePolicy::default()
        },
        ..options()
    };
    let summary = adjudicate(&crm.store, &client(server.url()), &opts, &())
        .await
        .unwrap();
    assert_eq!((summary.merged, summary.uncertain), (0, 1));
    assert_eq!(crm.get(id).status, CandidateStatus::Pending);
    assert_eq!(crm.count("SELECT count(*) FROM entity_merges"), 0);
}

#[tokio::test]
async fn the_merge_cap_holds_even_with_answers_in_flight() {
    let crm = Crm::new();
    let ids = crm.pairs(5);
    let inner = yes(0.99);
    // The first three answers arrive together; the cap is two.
    let server = ScriptedChatServer::start(MODEL, move |request: &SeenRequest, n| {
        if n <= 3 {
            Reply::AfterInFlight {
                at_least: 3,
                max_wait: Duration::from_secs(5),
                then: Box::new(inner(request, n)),
            }
        } else {
            inner(request, n)
        }
    })
    .await
    .unwrap();
    let mut config = http_config(server.url());
    config.max_concurrency = 3;
    let client = client_with(config);
    let opts = RunOptions {
        policy: MergePolicy {
            max_merges_per_run: 2,
            ..MergePolicy::default()
        },
        ..options()
    };

    let summary = adjudicate(&crm.store, &client, &opts, &()).await.unwrap();

    // After the first merge a fourth question goes out (most answers are "no", so the
    // run keeps its slots busy); after the second, nothing more is sent, and the "yes"
    // answers still in flight are not merged.
    assert_eq!(summary.merged, 2, "{summary:?}");
    assert!(summary.cap_reached);
    assert_eq!((summary.capped, summary.not_reached), (2, 1), "{summary:?}");
    assert_eq!(crm.count("SELECT count(*) FROM entity_merges"), 2);
    let pending: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| crm.get(*id).status == CandidateStatus::Pending)
        .collect();
    assert_eq!(pending.len(), 3);
    for id in &pending {
        assert_eq!(
            crm.get(*id).raw_reply,
            None,
            "capped pairs are asked again next run"
        );
    }
    let conn = crm.store.reader().unwrap();
    let run = &phase0::recent_runs(&conn, Some("fuzzy"), 1).unwrap()[0];
    assert_eq!(run.counts["cap_reached"], true);

    let next = adjudicate(&crm.store, &client, &opts, &()).await.unwrap();
    assert_eq!(next.merged, 2);
}

#[tokio::test]
async fn a_cap_of_zero_asks_nothing() {
    let crm = Crm::new();
    crm.pairs(2);
    let server = ScriptedChatServer::start(MODEL, yes(0.99)).await.unwrap();
    let opts = RunOptions {
        policy: MergePolicy {
            max_merges_per_run: 0,
            ..MergePolicy::default()
        },
        ..options()
    };
    let summary = adjudicate(&crm.store, &client(server.url()), &opts, &())
        .await
        .unwrap();
    assert!(summary.cap_reached);
    assert_eq!((summary.asked, summary.not_reached), (0, 2));
    assert_eq!(server.stats().requests(), 0);
}

#[tokio::test]
async fn people_accept_reject_and_undo_through_the_same_machinery() {
    let crm = Crm::new();
    let ids = crm.pairs(2);
    let ana: Decider = "human:ana".parse().unwrap();
    let mut conn = crm.store.writer().unwrap();

    let tx = conn.transaction().unwrap();
    let decision = Decision {
        decided_by: &ana,
        confidence: None,
        rationale: "I met him: Bob is Robert",
        raw_reply: None,
    };
    let merged = merges::accept_candidate(&tx, ids[0], &decision, Timestamp::now()).unwrap();
    merges::reject_candidate(&tx, ids[1], &decision, Timestamp::now()).unwrap();
    tx.commit().unwrap();
    drop(conn);

    assert_eq!(crm.get(ids[0]).status, CandidateStatus::Merged);
    assert_eq!(crm.get(ids[0]).decided_by.as_deref(), Some("human:ana"));
    assert_eq!(crm.get(ids[1]).status, CandidateStatus::Rejected);
    assert_eq!(link_of(&crm, 1001), "person:1000");

    // The fuzzy tier leaves decided pairs alone.
    let server = ScriptedChatServer::start(MODEL, yes(0.99)).await.unwrap();
    let summary = adjudicate(&crm.store, &client(server.url()), &options(), &())
        .await
        .unwrap();
    assert_eq!(summary.selected, 0);

    let mut conn = crm.store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    merges::undo_merge(&tx, merged.merge_id, &ana, Timestamp::now()).unwrap();
    tx.commit().unwrap();
    drop(conn);
    assert_eq!(
        link_of(&crm, 1001),
        "person:1001",
        "the undo splits the pair again"
    );
    assert_eq!(crm.get(ids[0]).status, CandidateStatus::Rejected);
    assert_eq!(
        crm.count("SELECT count(*) FROM entity_merges WHERE undone_at IS NOT NULL"),
        1
    );
}
