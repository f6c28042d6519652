//! Hostile input: SQL metacharacters, 1 MB strings, control characters and lone
//! surrogates in every string parameter; unknown tools; wrong types. The server answers
//! each with a tool or protocol error (never a crash) and the CRM is left intact.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

/// Every string parameter of every tool, with arguments that make the rest valid.
fn string_params() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("find_people", "name", json!({})),
        ("find_people", "email", json!({})),
        ("find_people", "domain", json!({})),
        ("find_people", "cursor", json!({})),
        ("find_organizations", "name", json!({})),
        ("find_organizations", "domain", json!({})),
        ("find_organizations", "kind", json!({})),
        ("find_organizations", "cursor", json!({})),
        ("list_interactions", "since", json!({"person_id": ADA})),
        ("list_interactions", "until", json!({"person_id": ADA})),
        ("list_interactions", "kind", json!({"person_id": ADA})),
        ("list_interactions", "cursor", json!({"person_id": ADA})),
        ("list_merge_candidates", "cursor", json!({})),
        ("add_note", "body", json!({"person_ids": [ADA]})),
        (
            "add_note",
            "subject",
            json!({"body": "b", "person_ids": [ADA]}),
        ),
        (
            "add_note",
            "occurred_at",
            json!({"body": "b", "person_ids": [ADA]}),
        ),
        ("update_person", "title", json!({"id": ADA})),
        ("update_person", "email", json!({"id": ADA})),
        ("update_person", "phone", json!({"id": ADA})),
        ("update_person", "location", json!({"id": ADA})),
        ("update_person", "bio", json!({"id": ADA})),
        ("update_organization", "website", json!({"id": ENGINES})),
        ("update_organization", "domain", json!({"id": ENGINES})),
        ("update_organization", "description", json!({"id": ENGINES})),
        ("update_organization", "location", json!({"id": ENGINES})),
        (
            "review_merge_candidate",
            "rationale",
            json!({"id": 424_242, "decision": "reject"}),
        ),
        ("undo_merge", "reason", json!({"merge_id": 424_242})),
        ("search", "query", json!({})),
        ("search", "entity_id", json!({"query": "engines"})),
        ("search", "since", json!({"query": "engines"})),
        ("search", "until", json!({"query": "engines"})),
        ("search", "cursor", json!({"query": "engines"})),
    ]
}

fn with(mut base: Value, key: &str, value: &str) -> Value {
    base[key] = Value::String(value.to_owned());
    base
}

#[tokio::test]
async fn hostile_strings_get_tool_errors_naming_the_argument() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "fuzzer").await;
    let huge = "A".repeat(1_048_576);
    let hostile = [
        "'; DROP TABLE people; --",
        "\" OR 1=1 --",
        "%_\\%",
        "Robert'); DELETE FROM interactions WHERE ('1'='1",
        "\u{202e}gnp.exe \u{1F4A9} ﷽ 𝕏",
    ];
    for (tool, param, base) in string_params() {
        // 1 MB: rejected, naming the argument and the limit.
        let err = tool_error(&client, tool, with(base.clone(), param, &huge)).await;
        assert!(
            err.contains(&format!("`{param}`")) && err.contains("1048576") && err.contains("limit"),
            "{tool}.{param}: {err}"
        );
        // A NUL and an escape character: rejected, naming the argument.
        let err = tool_error(
            &client,
            tool,
            with(base.clone(), param, "a\u{0}b\u{1b}[31m"),
        )
        .await;
        assert!(err.contains(&format!("`{param}`")), "{tool}.{param}: {err}");
        // SQL metacharacters and odd unicode are data: the call succeeds, or fails for a
        // reason of the data (an unknown id), or is refused by a format check that names
        // the argument.
        for value in hostile {
            let result = call(&client, tool, with(base.clone(), param, value)).await;
            if result.is_error == Some(true) {
                let err = text_of(&result);
                assert!(
                    !err.starts_with("invalid argument") || err.contains(&format!("`{param}`")),
                    "{tool}.{param} = {value:?}: {err}"
                );
                assert!(
                    !err.contains("database failed") && !err.contains("internal error"),
                    "{tool}.{param} = {value:?}: {err}"
                );
            }
        }
    }

    // The CRM is intact and the server still answers.
    let people: i64 = crm
        .conn()
        .query_row("SELECT count(*) FROM people", [], |r| r.get(0))
        .unwrap();
    assert!(people > 300);
    let ada = ok(&client, "get_person", json!({"id": ADA})).await;
    assert_eq!(ada["person"]["full_name"], "Ada Lovelace");
    // Metacharacters were stored verbatim where they were accepted.
    let location: String = crm
        .conn()
        .query_row(
            "SELECT location FROM organizations WHERE id = ?1",
            [ENGINES],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(location, "\u{202e}gnp.exe \u{1F4A9} ﷽ 𝕏");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn wrong_types_and_unknown_tools_are_errors_not_crashes() {
    let crm = Crm::build();
    let client = stdio(&crm, &[], "types").await;
    let bad_calls = [
        ("get_person", json!({"id": "900001"})),
        ("get_person", json!({"id": 1.5})),
        ("get_person", json!({})),
        ("get_person", json!({"id": null})),
        ("get_person", json!({"id": 1, "sql": "SELECT 1"})),
        ("find_people", json!({"limit": -1})),
        ("find_people", json!({"limit": 1e20})),
        ("find_people", json!({"name": ["ada"]})),
        ("find_people", json!({"organization_id": {"$gt": 0}})),
        ("list_merge_candidates", json!({"status": "everything"})),
        ("add_note", json!({"body": "x", "person_ids": "900001"})),
        ("update_person", json!({"id": ADA, "full_name": "Mallory"})),
        (
            "update_person",
            json!({"id": ADA, "updated_at": "2000-01-01"}),
        ),
        (
            "update_organization",
            json!({"id": ENGINES, "name": "Evil Corp"}),
        ),
        ("drop_database", json!({})),
        ("", json!({})),
    ];
    for (tool, args) in bad_calls {
        let mut params = rmcp::model::CallToolRequestParams::new(tool.to_owned());
        params = params.with_arguments(args.as_object().unwrap().clone());
        match client.call_tool(params).await {
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty());
            }
            Ok(result) => assert_eq!(
                result.is_error,
                Some(true),
                "{tool}({args}) was accepted: {}",
                text_of(&result)
            ),
        }
    }
    let err = tool_error(&client, "find_people", json!({"limit": 0})).await;
    assert!(err.contains("`limit`"), "{err}");
    let err = tool_error(
        &client,
        "list_interactions",
        json!({"person_id": ADA, "organization_id": ENGINES}),
    )
    .await;
    assert!(err.contains("organization_id"), "{err}");
    let err = tool_error(
        &client,
        "list_interactions",
        json!({"person_id": ADA, "since": "2025-02-01", "until": "2025-01-01"}),
    )
    .await;
    assert!(err.contains("`since`"), "{err}");
    let err = tool_error(
        &client,
        "add_note",
        json!({"body": "x", "person_ids": (0..101).collect::<Vec<i64>>()}),
    )
    .await;
    assert!(err.contains("`person_ids`") && err.contains("100"), "{err}");

    let name: String = crm
        .conn()
        .query_row("SELECT full_name FROM people WHERE id = ?1", [ADA], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(name, "Ada Lovelace");
    assert!(write_log(&crm).is_empty());
    let still = ok(&client, "get_person", json!({"id": ADA})).await;
    assert_eq!(still["person"]["id"], ADA);
    client.cancel().await.unwrap();
}

/// Raw JSON-RPC lines over stdio: lone surrogates, garbage and truncated JSON are
/// dropped or answered with an error, and the session goes on.
#[tokio::test]
async fn raw_stdio_survives_lone_surrogates_and_garbage() {
    let crm = Crm::build();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&crm.dir)
        .arg("--db")
        .arg(&crm.db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async move |line: &str| {
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.write_all(b"\n").await.unwrap();
        stdin.flush().await.unwrap();
    };
    send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#).await;
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"find_people","arguments":{"name":"\ud800"}}}"#).await;
    send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"find_people","arguments":{"name":"\udfff\ud800x"}}}"#).await;
    send("{{{ this is not json").await;
    send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get_person","arguments":{"id":"#).await;
    send(r#"{"jsonrpc":"2.0","id":5,"method":"no/such/method","params":{}}"#).await;
    send(&format!(
        r#"{{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{{"name":"get_person","arguments":{{"id":{ADA}}}}}}}"#
    ))
    .await;

    let mut by_id = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !by_id.contains_key(&6) {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("no answer to the valid call after the hostile lines")
            .unwrap()
            .expect("crm-mcp closed stdout");
        let msg: Value = serde_json::from_str(&line).unwrap();
        if let Some(id) = msg["id"].as_i64() {
            by_id.insert(id, msg);
        }
    }
    assert_eq!(by_id[&1]["result"]["serverInfo"]["name"], "crm-substrate");
    assert_eq!(
        by_id[&6]["result"]["structuredContent"]["person"]["full_name"],
        "Ada Lovelace"
    );
    assert!(by_id.get(&5).is_none_or(|m| m["error"].is_object()));
    for id in [2, 3, 4] {
        if let Some(m) = by_id.get(&id) {
            assert!(
                m["error"].is_object() || m["result"]["isError"] == true,
                "id {id}: {m}"
            );
        }
    }
    drop(send);
    // Closing stdin ends the session cleanly.
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("crm-mcp did not exit after stdin closed")
        .unwrap();
    assert!(status.success(), "{status}");
}
