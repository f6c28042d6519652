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
