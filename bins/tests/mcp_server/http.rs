//! Streamable HTTP: the rmcp client through a token, and the HTTP guards (token, Origin,
//! Host, body size), `/health`, refusal to serve beyond loopback without a token, and
//! graceful shutdown on SIGTERM.

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use serde_json::{Value, json};

use crate::support::*;

const TOKEN: &str = "it-token-5f1c9e7a";

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw-http","version":"0"}}}"#;

fn post(server: &HttpServer, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(server.mcp_url())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .body(body)
}

#[tokio::test]
async fn an_rmcp_client_works_through_the_token() {
    let crm = Crm::build();
    let server = http(&crm, &[], &[("MCP_HTTP_TOKEN", TOKEN)]).await;
    let client = http_client(&server, Some(TOKEN), "http-agent").await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 15);
    let ada = ok(&client, "get_person", json!({"id": ADA})).await;
    assert_eq!(ada["person"]["full_name"], "Ada Lovelace");
    let page = ok(
        &client,
        "find_people",
        json!({"domain": "analytical.example", "limit": 2}),
    )
    .await;
    let next = ok(
        &client,
        "find_people",
        json!({"domain": "analytical.example", "limit": 2, "cursor": page["page"]["next_cursor"]}),
    )
    .await;
    assert_eq!(next["people"][0]["id"], ADA_DUPLICATE);
    let note = ok(
        &client,
        "add_note",
        json!({"body": "Over HTTP.", "organization_id": ENGINES}),
    )
    .await;
    assert_eq!(note["interaction"]["created_by"], "mcp:http-agent");
    let log = write_log(&crm);
    assert_eq!(log[0]["client"], "http-agent (http+token)");
    client.cancel().await.unwrap();

    let status = server.terminate().await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn http_guards_answer_401_403_and_413() {
    let crm = Crm::build();
    let server = http(&crm, &[], &[("MCP_HTTP_TOKEN", TOKEN)]).await;

    let good = post(&server, INIT).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(good.status(), StatusCode::OK);

    let none = post(&server, INIT).send().await.unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers().get("www-authenticate").is_some());
    let body: Value = none.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    assert!(!body.to_string().contains(TOKEN));

    for bad in ["wrong", "it-token-5f1c9e7", "it-token-5f1c9e7a0", ""] {
        let r = post(&server, INIT).bearer_auth(bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "token {bad:?}");
    }
    let basic = post(&server, INIT)
        .header(AUTHORIZATION, format!("Basic {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

    let evil_origin = post(&server, INIT)
        .bearer_auth(TOKEN)
        .header(ORIGIN, "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(evil_origin.status(), StatusCode::FORBIDDEN);
    let local_origin = post(&server, INIT)
        .bearer_auth(TOKEN)
        .header(ORIGIN, "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(local_origin.status(), StatusCode::OK);

    let evil_host = post(&server, INIT)
        .bearer_auth(TOKEN)
        .header(HOST, "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(evil_host.status(), StatusCode::FORBIDDEN);

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"find_people","arguments":{{"name":"{}"}}}}}}"#,
        "a".repeat(3 * 1024 * 1024)
    );
    let too_big = post(&server, huge).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let surrogate = post(
        &server,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"\ud800","version":"0"}}}"#,
    )
    .bearer_auth(TOKEN)
    .send()
    .await
    .unwrap();
    assert!(
        surrogate.status().is_client_error(),
        "{}",
        surrogate.status()
    );
    let garbage = post(&server, "{{{")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(garbage.status().is_client_error(), "{}", garbage.status());

    // Still serving.
    let again = post(&server, INIT).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    server.terminate().await;
}

#[tokio::test]
async fn health_reports_the_database_and_index_without_a_token() {
    let crm = Crm::build();
    let server = http(&crm, &[], &[("MCP_HTTP_TOKEN", TOKEN)]).await;
    // No index has been built: the database answers, the index does not.
    let r = reqwest::get(format!("{}/health", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["db_ok"], true);
    assert_eq!(health["index"]["state"], "missing");
    assert_eq!(health["index"]["engine"], "embedded");
    let error = health["error"].as_str().unwrap();
    assert!(error.contains("crm-backfill"), "{health}");
    assert!(
        !crm.dir.join("crm.db.index").exists(),
        "health must not create the index"
    );
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(!health.to_string().contains(TOKEN));

    server.terminate().await;
}

#[tokio::test]
async fn serving_beyond_loopback_needs_a_token() {
    let crm = Crm::build();
    let out = tokio::process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(&crm.dir)
        .args(["--db"])
        .arg(&crm.db)
        .args(["--http", "0.0.0.0:0", "--log-format", "json"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");

    // With a token it serves on all interfaces.
    let server = http_at(&crm, "0.0.0.0:0", &[], &[("MCP_HTTP_TOKEN", TOKEN)]).await;
    assert!(server.addr.starts_with("0.0.0.0:"), "{}", server.addr);
    let port = server.addr.rsplit(':').next().unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/mcp"))
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json, text/event-stream")
        .bearer_auth(TOKEN)
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    server.terminate().await;
}

#[tokio::test]
async fn configured_hosts_and_origins_are_accepted() {
    let crm = Crm::build();
    let config = crm.dir.join("config.json");
    std::fs::write(
        &config,
        json!({"mcp": {"allowed_hosts": ["crm.local"], "allowed_origins": ["https://agent.example:*"]}})
            .to_string(),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let server = http(&crm, &["--config", &config], &[]).await;
    let host = post(&server, INIT)
        .header(HOST, "crm.local")
        .send()
        .await
        .unwrap();
    assert_eq!(host.status(), StatusCode::OK);
    let origin = post(&server, INIT)
        .header(ORIGIN, "https://agent.example:8443")
        .send()
        .await
        .unwrap();
    assert_eq!(origin.status(), StatusCode::OK);
    let other = post(&server, INIT)
        .header(ORIGIN, "https://agent.example.evil")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    server.terminate().await;
}
