//! Merge review through MCP: rejecting and accepting candidates, undoing a merge, and
//! the effect of each on the canonical entities.

use serde_json::{Value, json};

use crate::support::*;

fn entity_of(person: &Value) -> String {
    person["entity"]["entity_id"].as_str().unwrap().to_owned()
}

fn row_ids(entity: &Value) -> Vec<i64> {
    entity["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn reject_accept_and_undo_move_rows_between_entities() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "reviewer").await;

    // Reject: the candidate is closed, nothing moves.
    let rejected = ok(
        &client,
        "review_merge_candidate",
        json!({"id": KING_CANDIDATE, "decision": "reject", "rationale": "Different people: Ada King is a fixture."}),
    )
    .await;
    assert_eq!(rejected["candidate"]["status"], "rejected");
    assert_eq!(rejected["candidate"]["decided_by"], "human:reviewer");
    assert_eq!(rejected["merge"], Value::Null);
    let king = ok(&client, "get_person", json!({"id": ADA_KING})).await;
    assert_eq!(entity_of(&king), "person:900005");

    // A decided candidate cannot be decided again; the refusal is logged.
    let err = tool_error(
        &client,
        "review_merge_candidate",
        json!({"id": KING_CANDIDATE, "decision": "accept", "rationale": "changed my mind"}),
    )
    .await;
    assert!(err.contains("rejected") || err.contains("decided"), "{err}");
    let err = tool_error(
        &client,
        "review_merge_candidate",
        json!({"id": 424_242, "decision": "accept", "rationale": "x"}),
    )
    .await;
    assert!(
        err.contains("merge candidate 424242 does not exist"),
        "{err}"
    );
    let err = tool_error(
        &client,
        "review_merge_candidate",
        json!({"id": CANDIDATE, "decision": "accept", "rationale": "  "}),
    )
    .await;
    assert!(err.contains("`rationale`"), "{err}");

    // Accept: Charles's entity is merged into Ada's (the lower id wins).
    let accepted = ok(
        &client,
        "review_merge_candidate",
        json!({"id": CANDIDATE, "decision": "accept", "rationale": "Testing a wrong merge."}),
    )
    .await;
    assert_eq!(accepted["candidate"]["status"], "merged");
    assert_eq!(accepted["candidate"]["decided_by"], "human:reviewer");
    let merge = &accepted["merge"];
    assert_eq!(merge["winner"], "person:900001");
    assert_eq!(merge["loser"], "person:900002");
    assert_eq!(merge["decided_by"], "human:reviewer");
    assert_eq!(merge["rationale"], "Testing a wrong merge.");
    let merge_id = merge["id"].as_i64().unwrap();

    let charles = ok(&client, "get_person", json!({"id": CHARLES})).await;
    assert_eq!(entity_of(&charles), "person:900001");
    assert_eq!(
        row_ids(&charles["entity"]),
        vec![ADA, CHARLES, ADA_DUPLICATE]
    );
    assert_eq!(charles["entity"]["merges"][0]["id"], merge_id);
    let (deleted, merged_into): (Option<String>, Option<String>) = crm
        .conn()
        .query_row(
            "SELECT deleted_at, merged_into FROM entities WHERE entity_id = 'person:900002'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(deleted.is_some());
    assert_eq!(merged_into.as_deref(), Some("person:900001"));

    // Undo: Charles gets his entity back.
    let undone = ok(
        &client,
        "undo_merge",
        json!({"merge_id": merge_id, "reason": "They are different people."}),
    )
    .await;
    assert_eq!(undone["rows_returned"], 1);
    assert_eq!(undone["merge"]["undone_by"], "human:reviewer");
    assert!(undone["merge"]["undone_at"].is_string());
    assert_eq!(undone["restored"]["entity_id"], "person:900002");
    assert_eq!(row_ids(&undone["restored"]), vec![CHARLES]);
    assert_eq!(row_ids(&undone["winner"]), vec![ADA, ADA_DUPLICATE]);
    let charles = ok(&client, "get_person", json!({"id": CHARLES})).await;
    assert_eq!(entity_of(&charles), "person:900002");
    assert_eq!(charles["entity"]["merged_into"], Value::Null);
    let rejected_now = ok(
        &client,
        "list_merge_candidates",
        json!({"status": "rejected"}),
    )
    .await;
    let ids: Vec<i64> = rejected_now["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![CANDIDATE, KING_CANDIDATE],
        "an undone merge rejects its pair"
    );

    let err = tool_error(&client, "undo_merge", json!({"merge_id": merge_id})).await;
    assert!(err.contains("already undone"), "{err}");
    let err = tool_error(&client, "undo_merge", json!({"merge_id": 999})).await;
    assert!(err.contains("merge 999 does not exist"), "{err}");

    let log = write_log(&crm);
    let summary: Vec<(String, String)> = log
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().chars().take(8).collect(),
            )
        })
        .collect();
    let expect = |t: &str, o: &str| (t.to_owned(), o.to_owned());
    assert_eq!(
        summary,
        vec![
            expect("review_merge_candidate", "ok"),
            expect("review_merge_candidate", "rejected"),
            expect("review_merge_candidate", "rejected"),
            expect("review_merge_candidate", "ok"),
            expect("undo_merge", "ok"),
            expect("undo_merge", "rejected"),
            expect("undo_merge", "rejected"),
        ]
    );
    let accept_row = &log[3];
    assert_eq!(accept_row["client"], "reviewer (stdio)");
    assert_eq!(accept_row["target_table"], "entity_candidates");
    assert_eq!(accept_row["target_id"], CANDIDATE);
    assert_eq!(accept_row["before"]["status"], "pending");
    assert_eq!(accept_row["after"]["candidate"]["status"], "merged");
    assert_eq!(accept_row["after"]["merge"]["id"], merge_id);
    let undo_row = &log[4];
    assert_eq!(undo_row["target_table"], "entity_merges");
    assert_eq!(undo_row["target_id"], merge_id);
    assert_eq!(
        undo_row["arguments"]["reason"],
        "They are different people."
    );
    assert_eq!(undo_row["after"]["rows_returned"], 1);
    client.cancel().await.unwrap();
}
