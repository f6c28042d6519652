//! Every read tool's happy path, paging to the end, truncation and the response budget.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::*;

/// The default response budget of `ToolsConfig`.
const BUDGET: usize = 40_000;

fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn get_tools_return_rows_entities_and_cut_long_texts() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "reads").await;

    let ada = ok(&client, "get_person", json!({"id": ADA})).await;
    assert!(ada.to_string().len() <= BUDGET, "{}", ada.to_string().len());
    let p = &ada["person"];
    assert_eq!(p["full_name"], "Ada Lovelace");
    assert_eq!(p["email"], "ada@analytical.example");
    assert_eq!(
        p["organization"],
        json!({"id": ENGINES, "name": "Analytical Engines Ltd"})
    );
    assert_eq!(p["deleted_at"], Value::Null);
    assert_eq!(p["bio"]["truncated"], true);
    assert_eq!(p["bio"]["full_length"], BIG_BIO_CHARS as u64);
    let bio = p["bio"]["text"].as_str().unwrap();
    assert!(bio.starts_with("Ada wrote the first program."));
    assert!(bio.ends_with('…'));
    assert!(bio.chars().count() <= 8_001);
    let entity = &ada["entity"];
    assert_eq!(entity["entity_id"], "person:900001");
    assert_eq!(entity["rows_total"], 2);
    let rows: Vec<i64> = entity["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source_id"].as_i64().unwrap())
        .collect();
    assert_eq!(rows, vec![ADA, ADA_DUPLICATE]);
    assert_eq!(entity["rows"][1]["rule"], "email");
    assert_eq!(entity["rows"][1]["name"], "A. Lovelace");
    assert_eq!(entity["merges"][0]["decided_by"], "rule");
    assert_eq!(entity["merges"][0]["loser"], "person:900004");
    let recent = ids(&ada["recent_interactions"]);
    let newest = ADA_FIRST_INTERACTION + ADA_INTERACTIONS - 1;
    assert_eq!(recent, (newest - 4..=newest).rev().collect::<Vec<_>>());
    assert_eq!(ada["interactions_total"], ADA_INTERACTIONS);

    let deleted = ok(&client, "get_person", json!({"id": DELETED_PERSON})).await;
    assert!(deleted["person"]["deleted_at"].is_string());
    assert_eq!(deleted["entity"], Value::Null);

    let err = tool_error(&client, "get_person", json!({"id": 123_456_789})).await;
    assert!(err.contains("person 123456789 does not exist"), "{err}");

    let org = ok(&client, "get_organization", json!({"id": ENGINES})).await;
    assert_eq!(org["organization"]["name"], "Analytical Engines Ltd");
    assert_eq!(org["organization"]["description"]["truncated"], true);
    assert_eq!(org["people_total"], 3, "live people only");
    let people: BTreeSet<i64> = ids(&org["people"]).into_iter().collect();
    assert_eq!(people, BTreeSet::from([ADA, CHARLES, ADA_DUPLICATE]));
    assert_eq!(org["deals_total"], 1);
    assert_eq!(org["deals"][0]["name"], "Engines Seed");
    assert_eq!(org["interactions_total"], ADA_INTERACTIONS);

    let first = ok(
        &client,
        "get_interaction",
        json!({"id": ADA_FIRST_INTERACTION}),
    )
    .await;
    let i = &first["interaction"];
    assert_eq!(i["kind"], "call");
    assert_eq!(i["occurred_at"], "2025-01-01T10:00:00.000Z");
    assert_eq!(i["subject"], "Engine review 0");
    assert_eq!(i["body"]["truncated"], false);
    assert_eq!(i["organization"]["id"], ENGINES);
    assert_eq!(ids(&first["participants"]), vec![ADA, CHARLES]);
    assert_eq!(first["participants_total"], 2);

    let deal = ok(&client, "get_deal", json!({"id": DEAL})).await;
    assert_eq!(deal["deal"]["amount_usd"], 1_500_000.0);
    assert_eq!(deal["deal"]["stage"], "term_sheet");
    assert_eq!(deal["deal"]["notes"]["text"], "Lead: <b>us</b>");
    assert_eq!(
        deal["deal"]["organization"]["name"],
        "Analytical Engines Ltd"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn find_tools_match_structured_fields() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "finds").await;

    let by_name = ok(&client, "find_people", json!({"name": "love ADA"})).await;
    assert_eq!(ids(&by_name["people"]), vec![ADA]);
    let first = &by_name["people"][0];
    assert_eq!(first["organization"]["name"], "Analytical Engines Ltd");
    assert_eq!(first["entity_id"], "person:900001");

    let by_email = ok(
        &client,
        "find_people",
        json!({"email": "@ANALYTICAL.example"}),
    )
    .await;
    assert_eq!(ids(&by_email["people"]), vec![ADA, CHARLES, ADA_DUPLICATE]);

    let by_domain = ok(
        &client,
        "find_people",
        json!({"domain": "https://www.analytical.example/"}),
    )
    .await;
    assert_eq!(ids(&by_domain["people"]), vec![ADA, CHARLES, ADA_DUPLICATE]);

    let by_org = ok(
        &client,
        "find_people",
        json!({"organization_id": ENGINES, "name": "charles"}),
    )
    .await;
    assert_eq!(ids(&by_org["people"]), vec![CHARLES]);

    let none = ok(&client, "find_people", json!({"name": "Deleted Person"})).await;
    assert_eq!(
        none["people"],
        json!([]),
        "soft-deleted people are not found"
    );
    assert_eq!(none["page"]["next_cursor"], Value::Null);

    // LIKE wildcards in input match literally.
    let wild = ok(&client, "find_people", json!({"name": "%"})).await;
    assert_eq!(wild["people"], json!([]));

    let orgs = ok(
        &client,
        "find_organizations",
        json!({"domain": "analytical.example"}),
    )
    .await;
    assert_eq!(ids(&orgs["organizations"]), vec![ENGINES]);
    let orgs = ok(
        &client,
        "find_organizations",
        json!({"name": "engines analytical", "kind": "STARTUP"}),
    )
    .await;
    assert_eq!(ids(&orgs["organizations"]), vec![ENGINES]);
    let gone = ok(&client, "find_organizations", json!({"name": "Defunct"})).await;
    assert_eq!(gone["organizations"], json!([]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn paging_reaches_the_end_without_gaps_or_repeats() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "pager").await;

    let live_people: Vec<i64> = {
        let conn = crm.conn();
        let mut stmt = conn
            .prepare("SELECT id FROM people WHERE NULLIF(TRIM(deleted_at), '') IS NULL ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let page = ok(
            &client,
            "find_people",
            json!({"limit": 37, "cursor": cursor}),
        )
        .await;
        assert!(page["people"].as_array().unwrap().len() <= 37);
        seen.extend(ids(&page["people"]));
        pages += 1;
        cursor = page["page"]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(pages < 1_000, "paging does not end");
    }
    assert_eq!(seen, live_people);

    // Interactions, newest first, in a date range and by kind.
    let mut all = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = ok(
            &client,
            "list_interactions",
            json!({"person_id": ADA, "limit": 10, "cursor": cursor}),
        )
        .await;
        for i in page["interactions"].as_array().unwrap() {
            all.push((
                i["occurred_at"].as_str().unwrap().to_owned(),
                i["id"].as_i64().unwrap(),
            ));
        }
        cursor = page["page"]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(all.len(), ADA_INTERACTIONS as usize);
    assert!(
        all.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {all:?}"
    );

    let range = ok(
        &client,
        "list_interactions",
        json!({"person_id": ADA, "since": "2025-01-10", "until": "2025-01-19", "limit": 100}),
    )
    .await;
    let got = ids(&range["interactions"]);
    assert_eq!(
        got,
        (ADA_FIRST_INTERACTION + 9..=ADA_FIRST_INTERACTION + 18)
            .rev()
            .collect::<Vec<_>>()
    );
    let calls = ok(
        &client,
        "list_interactions",
        json!({"organization_id": ENGINES, "kind": "call", "limit": 100}),
    )
    .await;
    assert_eq!(calls["interactions"].as_array().unwrap().len(), 15);

    // A cursor only continues the query it came from.
    let first = ok(
        &client,
        "list_interactions",
        json!({"person_id": ADA, "limit": 5}),
    )
    .await;
    let cursor = first["page"]["next_cursor"].as_str().unwrap().to_owned();
    let err = tool_error(
        &client,
        "list_interactions",
        json!({"person_id": CHARLES, "cursor": cursor}),
    )
    .await;
    assert!(err.contains("`cursor`"), "{err}");
    let err = tool_error(&client, "find_people", json!({"cursor": cursor})).await;
    assert!(err.contains("`cursor`"), "{err}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_large_page_is_shortened_to_fit_the_budget_and_continues() {
    let crm = Crm::build();
    // Long bodies make 45 list items larger than the budget.
    crm.conn()
        .execute(
            "UPDATE interactions SET body = ?1 WHERE id IN (SELECT interaction_id FROM interaction_people WHERE person_id = ?2)",
            rusqlite::params!["x".repeat(5_000), ADA],
        )
        .unwrap();
    let client = stdio(&crm, &[], "budget").await;
    let page = ok(
        &client,
        "list_interactions",
        json!({"person_id": ADA, "limit": 100}),
    )
    .await;
    let n = page["interactions"].as_array().unwrap().len();
    assert!(n < ADA_INTERACTIONS as usize, "{n} items");
    assert_eq!(page["page"]["shortened_to_fit"], true);
    assert_eq!(page["page"]["limit"], 100);
    assert_eq!(page["interactions"][0]["body"]["truncated"], true);
    assert_eq!(page["interactions"][0]["body"]["full_length"], 5_000);
    let rest = ok(
        &client,
        "list_interactions",
        json!({"person_id": ADA, "limit": 100, "cursor": page["page"]["next_cursor"]}),
    )
    .await;
    let total = n + rest["interactions"].as_array().unwrap().len();
    assert!(total <= ADA_INTERACTIONS as usize);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn every_messy_synthetic_row_reads_within_the_budget() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "messy").await;
    let conn = crm.conn();
    for (table, tool) in [
        ("people", "get_person"),
        ("organizations", "get_organization"),
        ("deals", "get_deal"),
        ("interactions", "get_interaction"),
    ] {
        let ids: Vec<i64> = conn
            .prepare(&format!(
                "SELECT id FROM {table} WHERE id < 900000 ORDER BY id"
            ))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!ids.is_empty());
        for id in ids {
            let answer = ok(&client, tool, json!({"id": id})).await;
            let size = answer.to_string().len();
            assert!(size <= BUDGET, "{tool}({id}) is {size} bytes");
        }
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn stats_and_candidates_report_the_database() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "stats").await;
    let stats = ok(&client, "crm_stats", json!({})).await;
    let conn = crm.conn();
    for t in stats["tables"].as_array().unwrap() {
        let table = t["table"].as_str().unwrap();
        let (live, deleted): (i64, i64) = conn
            .query_row(
                &format!(
                    "SELECT sum(NULLIF(TRIM(deleted_at), '') IS NULL), sum(NULLIF(TRIM(deleted_at), '') IS NOT NULL) FROM {table}"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(t["live"], live, "{table}");
        assert_eq!(t["soft_deleted"], deleted, "{table}");
    }
    assert_eq!(stats["candidates"]["pending"], 2);
    assert_eq!(stats["entities"]["people"], 3);
    assert_eq!(stats["entities"]["linked_rows"], 4);
    assert_eq!(stats["collection"], "crm_chunks");
    let people_sync = stats["sync"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["table"] == "people")
        .unwrap();
    let all_people: i64 = conn
        .query_row("SELECT count(*) FROM people", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        people_sync["rows_behind"], all_people,
        "never synced: every row is behind"
    );
    assert_eq!(people_sync["watermark_updated_at"], Value::Null);
    assert_eq!(stats["index"]["state"], "missing");
    assert_eq!(
        stats["index"]["dense_available"], false,
        "no model in the test env"
    );

    let candidates = ok(&client, "list_merge_candidates", json!({})).await;
    assert_eq!(candidates["candidates"].as_array().unwrap().len(), 2);
    let c = &candidates["candidates"][0];
    assert_eq!(c["id"], CANDIDATE);
    assert_eq!(c["status"], "pending");
    assert_eq!(c["reasons"], json!(["shared_organization"]));
    assert_eq!(c["entity_a"]["entity_id"], "person:900001");
    assert_eq!(c["entity_a"]["rows"][1]["email"], "ADA@analytical.example ");
    assert_eq!(c["entity_b"]["rows"][0]["title"], "Inventor");
    let merged = ok(
        &client,
        "list_merge_candidates",
        json!({"status": "merged"}),
    )
    .await;
    assert_eq!(merged["candidates"], json!([]));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn search_without_an_index_says_to_run_the_backfill() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "early-bird").await;
    for mode in ["hybrid", "sparse", "dense"] {
        let err = tool_error(
            &client,
            "search",
            json!({"query": "engine review", "mode": mode}),
        )
        .await;
        assert!(err.contains("crm-backfill"), "{mode}: {err}");
    }
    let err = tool_error(&client, "search", json!({"query": "  "})).await;
    assert!(err.contains("`query`"), "{err}");
    let err = tool_error(&client, "search", json!({"query": "x", "limit": 0})).await;
    assert!(err.contains("`limit`"), "{err}");
    assert!(
        !crm.dir.join("crm.db.index").exists(),
        "a search must not create the index"
    );
    client.cancel().await.unwrap();
}
