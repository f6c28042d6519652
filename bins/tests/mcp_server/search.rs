//! `search` against a real embedded index built by `sync_watermark`'s backfill, with the
//! instant embeddings server (`embed::testing`) as the dense model: the three modes,
//! filters, rows changed or deleted since indexing, paging, the sparse fallback and a
//! model that does not match the index.

use std::collections::BTreeSet;
use std::sync::Arc;

use crm_store::{Store, StoreConfig};
use crm_substrate::embedding::embedder_from_settings;
use crm_substrate::settings::Settings;
use embed::testing::{INSTANT_MODEL, InstantEmbeddingServer, InstantServerConfig};
use index_qdrant::{Index, IndexConfig};
use mcp_tools::http::CancellationToken;
use serde_json::{Value, json};
use sync_watermark::{Encoder, Indexer, LeaseConfig, NoProgress, SyncConfig};

use crate::support::*;

const DIM: usize = 64;

/// Settings that embed with the instant server at `url`.
fn settings(crm: &Crm, url: &str) -> Settings {
    let mut s = Settings {
        db_path: crm.db.clone(),
        ..Settings::default()
    };
    s.spark_control.url = Some(url.to_owned());
    s.spark_control.embedding_model = INSTANT_MODEL.to_owned();
    s
}

/// Builds the embedded index beside the CRM with a backfill, and releases it.
async fn build_index(crm: &Crm, url: &str) {
    let settings = settings(crm, url);
    let embedder = embedder_from_settings(&settings, &Default::default()).unwrap();
    let encoder = Arc::new(Encoder::new(Arc::new(embedder)).await.unwrap());
    let index = Index::open(IndexConfig::embedded(settings.embedded_index_dir()))
        .await
        .unwrap();
    let store = Store::open(StoreConfig::new(&crm.db)).unwrap();
    let indexer = Indexer::new(
        store,
        Arc::new(index),
        encoder,
        SyncConfig::new(LeaseConfig::new("mcp-test", "localhost")),
        Arc::new(NoProgress),
    )
    .unwrap();
    let report = indexer
        .backfill(true, &CancellationToken::new())
        .await
        .unwrap();
    assert!(report.error.is_none(), "{:?}", report.error);
    drop(indexer);
}

async fn instant(dim: usize) -> InstantEmbeddingServer {
    InstantEmbeddingServer::start(InstantServerConfig::new(dim))
        .await
        .unwrap()
}

fn model_env(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SPARK_CONTROL_URL", url.to_owned()),
        ("SPARK_EMBEDDING_MODEL", INSTANT_MODEL.to_owned()),
    ]
}

fn hits(answer: &Value) -> &Vec<Value> {
    answer["hits"].as_array().unwrap()
}

fn hit_keys(answer: &Value) -> Vec<(String, i64)> {
    hits(answer)
        .iter()
        .map(|h| {
            (
                h["source_table"].as_str().unwrap().to_owned(),
                h["source_id"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn three_modes_filters_and_fresh_rows() {
    let crm = Crm::build();
    let server = instant(DIM).await;
    build_index(&crm, server.url()).await;
    let env = model_env(server.url());
    let client = stdio_env(&crm, &[], &env, "searcher").await;

    // Hybrid (the default): both prefetches, fused.
    let hybrid = ok(
        &client,
        "search",
        json!({"query": "Engine review discussed the engine"}),
    )
    .await;
    assert_eq!(hybrid["mode_used"], "hybrid", "{hybrid}");
    assert_eq!(hybrid["fallback_reason"], Value::Null);
    let first = &hits(&hybrid)[0];
    assert_eq!(first["rank"], 1);
    assert!(first["score"].as_f64().unwrap() > 0.0);
    assert!(first["chunk"]["text"].as_str().unwrap().len() > 10);
    let engine_reviews = hits(&hybrid)
        .iter()
        .filter(|h| {
            h["row"]["interaction"]["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("Engine review"))
        })
        .count();
    assert!(engine_reviews >= 5, "{hybrid}");

    // Sparse: keywords.
    let sparse = ok(
        &client,
        "search",
        json!({"query": "Lovelace", "mode": "sparse", "kinds": ["person"]}),
    )
    .await;
    assert_eq!(sparse["mode_used"], "sparse");
    let people: BTreeSet<i64> = hit_keys(&sparse).into_iter().map(|(_, id)| id).collect();
    assert!(
        people.contains(&ADA) && people.contains(&ADA_DUPLICATE),
        "{sparse}"
    );
    for h in hits(&sparse) {
        assert_eq!(h["source_table"], "people");
        assert!(h["row"]["person"]["full_name"].is_string());
    }
    let ada = hits(&sparse)
        .iter()
        .find(|h| h["source_id"] == ADA)
        .unwrap();
    assert_eq!(ada["entity_id"], "person:900001");

    // Dense: meaning (here, the instant model's shared words).
    let dense = ok(
        &client,
        "search",
        json!({"query": "Analytical Engines Ltd London", "mode": "dense", "limit": 5}),
    )
    .await;
    assert_eq!(dense["mode_used"], "dense");
    assert_eq!(hits(&dense).len(), 5);

    // Filters.
    let org = ok(
        &client,
        "search",
        json!({"query": "engine", "organization_id": ENGINES, "limit": 50}),
    )
    .await;
    assert!(!hits(&org).is_empty());
    for h in hits(&org) {
        let row = &h["row"];
        let org_id = row["person"]["organization"]["id"]
            .as_i64()
            .or(row["interaction"]["organization"]["id"].as_i64())
            .or(row["deal"]["organization"]["id"].as_i64())
            .or(row["organization"]["id"].as_i64());
        assert_eq!(org_id, Some(ENGINES), "{h}");
    }
    let dated = ok(
        &client,
        "search",
        json!({"query": "engine review", "kinds": ["interaction"], "since": "2025-01-10", "until": "2025-01-12", "limit": 50}),
    )
    .await;
    let dates: Vec<&str> = hits(&dated)
        .iter()
        .map(|h| h["row"]["interaction"]["occurred_at"].as_str().unwrap())
        .collect();
    assert!(!dates.is_empty());
    assert!(
        dates
            .iter()
            .all(|d| ("2025-01-10".."2025-01-13").contains(d)),
        "{dates:?}"
    );
    let entity = ok(
        &client,
        "search",
        json!({"query": "Lovelace", "mode": "sparse", "entity_id": "person:900001"}),
    )
    .await;
    assert!(
        hits(&entity)
            .iter()
            .all(|h| h["entity_id"] == "person:900001"),
        "{entity}"
    );

    // Rows changed or deleted since indexing: hits show the current row, deleted rows
    // never come back.
    crm.conn()
        .execute_batch(&format!(
            "UPDATE people SET deleted_at = '2026-01-01T00:00:00.000Z' WHERE id = {ADA};
             UPDATE people SET title = 'Retired countess' WHERE id = {ADA_DUPLICATE};
             DELETE FROM interaction_people WHERE interaction_id = {ADA_FIRST_INTERACTION};
             DELETE FROM interactions WHERE id = {ADA_FIRST_INTERACTION};"
        ))
        .unwrap();
    let after = ok(
        &client,
        "search",
        json!({"query": "Lovelace", "mode": "sparse", "kinds": ["person"]}),
    )
    .await;
    let keys = hit_keys(&after);
    assert!(!keys.contains(&("people".to_owned(), ADA)), "{after}");
    assert!(after["dropped_deleted"].as_u64().unwrap() >= 1);
    let dup = hits(&after)
        .iter()
        .find(|h| h["source_id"] == ADA_DUPLICATE)
        .unwrap();
    assert_eq!(dup["row"]["person"]["title"], "Retired countess");
    let gone = ok(&client, "search", json!({"query": "Engine review 0", "mode": "sparse", "kinds": ["interaction"], "limit": 50})).await;
    assert!(!hit_keys(&gone).contains(&("interactions".to_owned(), ADA_FIRST_INTERACTION)));

    // Stats and the index state.
    let stats = ok(&client, "crm_stats", json!({})).await;
    assert_eq!(stats["index"]["state"], "ready", "{}", stats["index"]);
    assert_eq!(stats["index"]["dense_available"], true);
    assert!(stats["index"]["points"].as_u64().unwrap() > 1_000);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn search_pages_to_the_end_of_its_depth() {
    let crm = Crm::build();
    let server = instant(DIM).await;
    build_index(&crm, server.url()).await;
    let client = stdio_env(&crm, &[], &model_env(server.url()), "pager").await;
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let page = ok(
            &client,
            "search",
            json!({"query": "meeting founders engine", "limit": 50, "cursor": cursor}),
        )
        .await;
        for h in hits(&page) {
            seen.push((
                h["rank"].as_u64().unwrap(),
                hit_keys(&json!({"hits": [h]}))[0].clone(),
            ));
        }
        pages += 1;
        cursor = page["page"]["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(pages < 100, "paging does not end");
    }
    let ranks: Vec<u64> = seen.iter().map(|(r, _)| *r).collect();
    assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
    let rows: BTreeSet<&(String, i64)> = seen.iter().map(|(_, k)| k).collect();
    assert_eq!(rows.len(), seen.len(), "a row came back twice");
    assert!(seen.len() > 50);
    assert!(
        *ranks.last().unwrap() <= 200,
        "pages end at the depth limit"
    );
    assert!(pages >= 2);
    let err = tool_error(
        &client,
        "search",
        json!({"query": "other words", "cursor": cursor_of(&client).await}),
    )
    .await;
    assert!(err.contains("`cursor`"), "{err}");
    client.cancel().await.unwrap();
}

async fn cursor_of(client: &Client) -> String {
    let page = ok(
        client,
        "search",
        json!({"query": "meeting founders engine", "limit": 5}),
    )
    .await;
    page["page"]["next_cursor"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_a_matching_model_hybrid_falls_back_and_dense_refuses() {
    let crm = Crm::build();
    let server = instant(DIM).await;
    build_index(&crm, server.url()).await;

    // No model at all: no Spark Control, no local model directory.
    let client = stdio(&crm, &[], "no-model").await;
    let hybrid = ok(&client, "search", json!({"query": "Lovelace"})).await;
    assert_eq!(hybrid["mode_used"], "sparse");
    let why = hybrid["fallback_reason"].as_str().unwrap();
    assert!(why.contains("model"), "{why}");
    assert!(!hits(&hybrid).is_empty());
    let err = tool_error(
        &client,
        "search",
        json!({"query": "Lovelace", "mode": "dense"}),
    )
    .await;
    assert!(
        err.contains("dense retrieval is unavailable") && err.contains("sparse"),
        "{err}"
    );
    client.cancel().await.unwrap();

    // A model of another dimension than the index.
    let other = instant(DIM * 2).await;
    let client = stdio_env(&crm, &[], &model_env(other.url()), "wrong-model").await;
    let hybrid = ok(&client, "search", json!({"query": "Lovelace"})).await;
    assert_eq!(hybrid["mode_used"], "sparse");
    let why = hybrid["fallback_reason"].as_str().unwrap();
    assert!(why.contains("crm-backfill --recreate"), "{why}");
    let err = tool_error(
        &client,
        "search",
        json!({"query": "Lovelace", "mode": "dense"}),
    )
    .await;
    assert!(err.contains("crm-backfill --recreate"), "{err}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn health_is_ok_once_the_index_is_built() {
    let crm = Crm::build();
    let server = instant(DIM).await;
    build_index(&crm, server.url()).await;
    let owned = model_env(server.url());
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let http = http(&crm, &[], &env).await;
    let r = reqwest::get(format!("{}/health", http.base)).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let health: Value = r.json().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["index"]["state"], "ready");
    assert_eq!(health["index"]["dense_available"], true);
    http.terminate().await;
}

/// Polls a sparse search for `query` until `done` holds for its hits (60 s at most).
async fn poll_sparse(
    client: &Client,
    query: &str,
    done: impl Fn(&[(String, i64)]) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = call(
            client,
            "search",
            json!({"query": query, "mode": "sparse", "limit": 50}),
        )
        .await;
        if answer.is_error != Some(true) {
            let answer: Value = serde_json::from_str(&text_of(&answer)).unwrap();
            if done(&hit_keys(&answer)) {
                return answer;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no search for {query:?} satisfied the condition within 60 s: {}",
            text_of(&answer)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Whether `crm_stats` lists a sync run that ended well.
fn synced(stats: &Value) -> bool {
    stats["last_runs"].as_array().is_some_and(|runs| {
        runs.iter()
            .any(|r| r["step"] == "sync" && r["status"] == "ok")
    })
}

/// Asks `probe` every 200 ms until `done` holds for its answer, which is returned; fails
/// saying `what` never happened after 60 s.
async fn eventually<T: std::fmt::Debug, F: Future<Output = T>>(
    what: &str,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let answer = probe().await;
        if done(&answer) {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {what} within 60 s; last answer: {answer:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// `/health` of the server at `base`: HTTP status and body.
async fn health_of(base: &str) -> (u16, Value) {
    let res = reqwest::get(format!("{base}/health")).await.unwrap();
    let code = res.status().as_u16();
    (code, res.json().await.unwrap())
}

#[tokio::test]
async fn a_server_that_syncs_builds_its_index_and_follows_the_crm() {
    // No index yet: `--sync-every` builds it with its first sync, then keeps it in step
    // while serving searches from the same open index.
    let crm = Crm::build();
    let server = instant(DIM).await;
    let env = model_env(server.url());
    let client = stdio_env(&crm, &["--sync-every", "1"], &env, "syncing").await;

    poll_sparse(&client, "Lovelace", |keys| {
        keys.contains(&("people".to_owned(), ADA))
    })
    .await;
    // Searchable early in the build; wait for the first sync to end.
    eventually(
        "the first sync ended",
        || ok(&client, "crm_stats", json!({})),
        synced,
    )
    .await;

    // A new row is found by a later sync; a hard delete is noticed too.
    const NEW: i64 = 990_001;
    crm.conn()
        .execute(
            "INSERT INTO people (id, full_name, email, created_at, updated_at)
             VALUES (?1, 'Zenobia Quillfeather', 'zq@example.org', ?2, ?2)",
            rusqlite::params![NEW, "2026-11-30T00:00:00.000Z"],
        )
        .unwrap();
    poll_sparse(&client, "Quillfeather", |keys| {
        keys.contains(&("people".to_owned(), NEW))
    })
    .await;
    let points_before = ok(&client, "crm_stats", json!({})).await["index"]["points"]
        .as_u64()
        .unwrap();
    crm.conn()
        .execute("DELETE FROM people WHERE id = ?1", [NEW])
        .unwrap();
    eventually(
        "the deleted row's points went",
        || ok(&client, "crm_stats", json!({})),
        |stats| stats["index"]["points"].as_u64().unwrap() < points_before,
    )
    .await;

    // The process holds the embedded index: a crm-sync beside it is told so.
    let settings = settings(&crm, server.url());
    // (tokio's Command: the instant server runs on this test's runtime.)
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_crm-sync"))
        .env_clear()
        .env("SPARK_CONTROL_URL", server.url())
        .env("SPARK_EMBEDDING_MODEL", INSTANT_MODEL)
        .arg("--db")
        .arg(&settings.db_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_syncing_http_server_stops_cleanly_on_sigterm() {
    let crm = Crm::build();
    let server = instant(DIM).await;
    let owned = model_env(server.url());
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let http = http(&crm, &["--sync-every", "1"], &env).await;
    let (_, health) = eventually(
        "the index was ready",
        || health_of(&http.base),
        |(_, health)| health["index"]["state"] == "ready",
    )
    .await;
    assert_eq!(health["status"], "ok", "{health}");
    // SIGTERM may land in the middle of the first sync (a full build): the server exits
    // cleanly, and what it committed is consistent, so a plain crm-sync completes it.
    assert!(http.terminate().await.success());
    let crm_sync = |extra: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_crm-sync"));
        cmd.env_clear()
            .env("SPARK_CONTROL_URL", server.url())
            .env("SPARK_EMBEDDING_MODEL", INSTANT_MODEL)
            .arg("--db")
            .arg(&crm.db)
            .args(extra);
        cmd
    };
    let finish = crm_sync(&[]).output().await.unwrap();
    assert!(matches!(finish.status.code(), Some(0 | 3)), "{finish:?}");
    let verify = crm_sync(&["--verify"]).output().await.unwrap();
    assert!(verify.status.success(), "{verify:?}");
}

#[tokio::test]
async fn a_syncing_server_serves_while_its_embedder_is_down_and_syncs_once_it_answers() {
    // Spark Control answers nothing but 503 when the server starts: reads are served
    // all the same, and the first sync runs once the embedder is back. `--sync-every`
    // without a value takes the interval from the settings.
    let crm = Crm::build();
    let server = instant(DIM).await;
    server.controls().fail_all(Some(503));
    let mut env = model_env(server.url());
    env.push(("CRM_SYNC_INTERVAL_SECS", "1".to_owned()));
    let client = stdio_env(&crm, &["--sync-every"], &env, "embedder-down").await;

    let ada = ok(&client, "get_person", json!({ "id": ADA })).await;
    assert_eq!(ada["person"]["full_name"], "Ada Lovelace", "{ada}");
    // Long enough for several attempts; none may have synced.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        server.controls().requests() >= 2,
        "the sync should keep trying: {} requests",
        server.controls().requests()
    );
    let stats = ok(&client, "crm_stats", json!({})).await;
    assert!(!synced(&stats), "no sync can have run: {stats}");

    server.controls().fail_all(None);
    eventually(
        "a sync after the embedder came back",
        || ok(&client, "crm_stats", json!({})),
        synced,
    )
    .await;
    poll_sparse(&client, "Lovelace", |keys| {
        keys.contains(&("people".to_owned(), ADA))
    })
    .await;
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn health_shows_the_servers_own_sync_waiting_then_stopped_for_a_rebuild() {
    // The index was built with one model; the server's embedder has another dimension.
    // While the embedder fails, the sync waits (the server is healthy); once it
    // answers, its fingerprint does not match the index, the sync stops, and /health
    // turns degraded with the reason.
    let crm = Crm::build();
    let built_with = instant(DIM).await;
    build_index(&crm, built_with.url()).await;
    let other = instant(DIM * 2).await;
    other.controls().fail_all(Some(503));
    let owned = model_env(other.url());
    let env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let http = http(&crm, &["--sync-every", "1"], &env).await;

    let (code, health) = eventually(
        "the sync said it was waiting",
        || health_of(&http.base),
        |(_, health)| health["sync"]["state"] == "starting" && health["sync"]["detail"].is_string(),
    )
    .await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");

    other.controls().fail_all(None);
    let (code, health) = eventually(
        "the sync stopped on the mismatch",
        || health_of(&http.base),
        |(_, health)| health["sync"]["state"] == "stopped",
    )
    .await;
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let error = health["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("index sync stopped:") && error.contains("--recreate"),
        "{health}"
    );
    assert!(http.terminate().await.success());
}

#[tokio::test]
async fn sync_every_without_a_model_is_refused() {
    let crm = Crm::build();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crm-mcp"))
        .env_clear()
        .env("CRM_MODEL_DIR", crm.dir.join("no-model"))
        .arg("--db")
        .arg(&crm.db)
        .args(["--sync-every", "5"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sync-every needs an embedding model"),
        "{stderr}"
    );
    let zero = std::process::Command::new(env!("CARGO_BIN_EXE_crm-mcp"))
        .args(["--sync-every", "0"])
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(2), "{zero:?}");
}
