//! Each write tool, its effect on the CRM and its `mcp_write_log` row.

use serde_json::{Value, json};

use crate::support::*;

fn canonical_recent(ts: &str) -> bool {
    let parsed = crm_store::Timestamp::parse(ts).unwrap();
    ts.len() == 24 && ts.ends_with('Z') && parsed.to_canonical() == ts && ts > "2026-01-01"
}

#[tokio::test]
async fn add_note_inserts_a_note_and_logs_it_in_one_transaction() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "note-taker").await;
    let args = json!({
        "subject": "Follow-up",
        "body": "Met Ada and Charles.\nNext: send the term sheet.",
        "person_ids": [CHARLES, ADA, ADA],
        "organization_id": ENGINES,
    });
    let note = ok(&client, "add_note", args.clone()).await;
    let i = &note["interaction"];
    let id = i["id"].as_i64().unwrap();
    assert_eq!(i["kind"], "note");
    assert_eq!(i["subject"], "Follow-up");
    assert_eq!(
        i["body"]["text"],
        "Met Ada and Charles.\nNext: send the term sheet."
    );
    assert_eq!(i["created_by"], "mcp:note-taker");
    assert_eq!(i["organization"]["id"], ENGINES);
    let participants: Vec<i64> = note["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert_eq!(participants, vec![ADA, CHARLES]);
    assert!(canonical_recent(i["updated_at"].as_str().unwrap()), "{i}");

    let (kind, created_by, updated_at): (String, String, String) = crm
        .conn()
        .query_row(
            "SELECT kind, created_by, updated_at FROM interactions WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), created_by.as_str()),
        ("note", "mcp:note-taker")
    );
    assert!(canonical_recent(&updated_at));

    let log = write_log(&crm);
    assert_eq!(log.len(), 1);
    let row = &log[0];
    assert_eq!(row["id"], note["log_id"]);
    assert_eq!(row["tool"], "add_note");
    assert_eq!(row["client"], "note-taker (stdio)");
    assert_eq!(row["arguments"]["person_ids"], json!([CHARLES, ADA, ADA]));
    assert_eq!(row["target_table"], "interactions");
    assert_eq!(row["target_id"], id);
    assert_eq!(row["before"], Value::Null);
    assert_eq!(
        row["after"]["body"],
        "Met Ada and Charles.\nNext: send the term sheet."
    );
    assert_eq!(row["after"]["participant_ids"], json!([ADA, CHARLES]));
    assert_eq!(row["outcome"], "ok");

    // The new note is visible to the read tools at once.
    let listed = ok(
        &client,
        "list_interactions",
        json!({"person_id": CHARLES, "kind": "note"}),
    )
    .await;
    assert_eq!(listed["interactions"][0]["id"], id);
    let got = ok(&client, "get_interaction", json!({"id": id})).await;
    assert_eq!(got["participants_total"], 2);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn refused_writes_change_nothing_but_are_logged() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "careful").await;
    let before: i64 = crm
        .conn()
        .query_row("SELECT count(*) FROM interactions", [], |r| r.get(0))
        .unwrap();

    let err = tool_error(
        &client,
        "add_note",
        json!({"body": "hi", "person_ids": [ADA, DELETED_PERSON]}),
    )
    .await;
    assert!(
        err.contains("person_ids") && err.contains("900003 is deleted"),
        "{err}"
    );
    let err = tool_error(
        &client,
        "add_note",
        json!({"body": "hi", "organization_id": 777_777_777}),
    )
    .await;
    assert!(
        err.contains("organization_id") && err.contains("does not exist"),
        "{err}"
    );
    let err = tool_error(
        &client,
        "update_person",
        json!({"id": DELETED_PERSON, "title": "CEO"}),
    )
    .await;
    assert!(err.contains("deleted"), "{err}");
    let err = tool_error(
        &client,
        "update_organization",
        json!({"id": 555_555_555, "location": "Paris"}),
    )
    .await;
    assert!(
        err.contains("organization 555555555 does not exist"),
        "{err}"
    );

    // Argument errors never reach the database and are not logged.
    let err = tool_error(&client, "add_note", json!({"body": "hi"})).await;
    assert!(err.contains("`person_ids`"), "{err}");
    let err = tool_error(
        &client,
        "add_note",
        json!({"body": "   ", "person_ids": [ADA]}),
    )
    .await;
    assert!(err.contains("`body`"), "{err}");
    let err = tool_error(&client, "update_person", json!({"id": ADA})).await;
    assert!(err.contains("at least one field"), "{err}");
    let err = tool_error(
        &client,
        "update_person",
        json!({"id": ADA, "email": "not an email"}),
    )
    .await;
    assert!(err.contains("`email`"), "{err}");
    let err = tool_error(
        &client,
        "update_organization",
        json!({"id": ENGINES, "website": "javascript:alert(1)"}),
    )
    .await;
    assert!(err.contains("`website`"), "{err}");

    let after: i64 = crm
        .conn()
        .query_row("SELECT count(*) FROM interactions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, after);
    let log = write_log(&crm);
    let outcomes: Vec<&str> = log.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(log.len(), 4, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| o.starts_with("rejected: ")),
        "{outcomes:?}"
    );
    assert_eq!(log[2]["target_table"], "people");
    assert_eq!(log[2]["target_id"], DELETED_PERSON);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn updates_change_whitelisted_fields_and_record_before_and_after() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "editor").await;
    let old_updated: String = crm
        .conn()
        .query_row("SELECT updated_at FROM people WHERE id = ?1", [ADA], |r| {
            r.get(0)
        })
        .unwrap();

    let updated = ok(
        &client,
        "update_person",
        json!({"id": ADA, "title": "Mathematician", "phone": "", "location": "London"}),
    )
    .await;
    assert_eq!(
        updated["changed_fields"],
        json!(["title", "phone"]),
        "location was already London"
    );
    assert_eq!(updated["person"]["title"], "Mathematician");
    assert_eq!(updated["person"]["phone"], Value::Null);
    let new_updated = updated["person"]["updated_at"].as_str().unwrap().to_owned();
    assert!(canonical_recent(&new_updated));
    assert!(new_updated > old_updated);

    let (title, phone, name): (String, Option<String>, String) = crm
        .conn()
        .query_row(
            "SELECT title, phone, full_name FROM people WHERE id = ?1",
            [ADA],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (title.as_str(), phone, name.as_str()),
        ("Mathematician", None, "Ada Lovelace")
    );

    let log = write_log(&crm);
    let row = &log[0];
    assert_eq!(row["tool"], "update_person");
    assert_eq!(row["client"], "editor (stdio)");
    assert_eq!(row["target_table"], "people");
    assert_eq!(row["target_id"], ADA);
    assert_eq!(row["before"]["title"], "Countess");
    assert_eq!(row["before"]["phone"], "+44 20 7946 0001");
    assert_eq!(row["after"]["title"], "Mathematician");
    assert_eq!(row["after"]["phone"], Value::Null);
    assert_eq!(row["outcome"], "ok");

    // The same request again changes nothing and leaves updated_at alone.
    let again = ok(
        &client,
        "update_person",
        json!({"id": ADA, "title": "Mathematician"}),
    )
    .await;
    assert_eq!(again["changed_fields"], json!([]));
    assert_eq!(again["person"]["updated_at"], new_updated.as_str());
    assert_eq!(write_log(&crm)[1]["outcome"], "unchanged");

    let org = ok(
        &client,
        "update_organization",
        json!({"id": ENGINES, "website": "https://engines.example", "domain": "engines.example", "description": "Difference\nand analytical engines."}),
    )
    .await;
    assert_eq!(
        org["changed_fields"],
        json!(["website", "domain", "description"])
    );
    assert_eq!(org["organization"]["domain"], "engines.example");
    assert_eq!(
        org["organization"]["description"]["text"],
        "Difference\nand analytical engines."
    );
    let row = &write_log(&crm)[2];
    assert_eq!(row["before"]["domain"], "analytical.example");
    assert_eq!(row["after"]["domain"], "engines.example");
    // The find tools see the new domain at once.
    let found = ok(
        &client,
        "find_organizations",
        json!({"domain": "engines.example"}),
    )
    .await;
    assert_eq!(found["organizations"][0]["id"], ENGINES);
    client.cancel().await.unwrap();
}
