//! `crm-fuzzy`, run as a process against a real CRM file and a scripted chat server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use crm_store::phase0::{self, CandidateStatus, Entity, EntityKind, EntityLink, NewCandidate};
use crm_store::{Store, StoreConfig, Timestamp};
use fuzzy_llm::testing::{
    Reply, ScriptedChatServer, ScriptedServerConfig, SeenRequest, answer_json,
};
use serde_json::Value;

const MODEL: &str = "cli-judge";

/// A CRM with two people and one pending candidate between their entities; returns the
/// candidate id.
fn crm(db: &Path) -> i64 {
    let mut config = StoreConfig::new(db);
    config.create_if_missing = true;
    let store = Store::open(config).unwrap();
    let mut conn = store.writer().unwrap();
    let tx = conn.transaction().unwrap();
    let now = Timestamp::now();
    for (id, name, email) in [
        (1, "Robert Smith", "rob@acme.com"),
        (2, "Bob Smith", "bob@acme.com"),
    ] {
        tx.execute(
            "INSERT INTO people (id, full_name, email, created_at, updated_at) \
             VALUES (?1, ?2, ?3, '2026-01-01', '2026-01-01')",
            rusqlite::params![id, name, email],
        )
        .unwrap();
        let entity_id = EntityKind::Person.entity_id(id);
        phase0::insert_entity(
            &tx,
            &Entity {
                entity_id: entity_id.clone(),
                kind: EntityKind::Person,
                display_name: Some(name.to_owned()),
                created_at: now,
                updated_at: now,
                deleted_at: None,
                merged_into: None,
            },
        )
        .unwrap();
        phase0::upsert_link(
            &tx,
            &EntityLink {
                source_table: EntityKind::Person.source_table(),
                source_id: id,
                entity_id,
                rule: "singleton".to_owned(),
                linked_at: now,
            },
        )
        .unwrap();
    }
    let candidate = phase0::upsert_candidate(
        &tx,
        &NewCandidate {
            kind: EntityKind::Person,
            entity_a: "person:1".to_owned(),
            entity_b: "person:2".to_owned(),
            reasons: vec!["nickname".to_owned()],
            score: 0.9,
        },
        now,
    )
    .unwrap();
    tx.commit().unwrap();
    candidate.id
}

fn status(db: &Path, id: i64) -> CandidateStatus {
    let store = Store::open(StoreConfig::new(db)).unwrap();
    let conn = store.reader().unwrap();
    phase0::get_candidate(&conn, id).unwrap().unwrap().status
}

fn fuzzy(dir: &Path, args: &[&str], spark_url: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crm-fuzzy"));
    cmd.args(args)
        .current_dir(dir)
        // Keep the tests independent of the developer's environment.
        .env_remove("CRM_DB_PATH")
        .env_remove("CRM_SUBSTRATE_CONFIG")
        .env_remove("SPARK_CONTROL_URL")
        .env_remove("SPARK_CONTROL_API_KEY")
        .env("SPARK_CHAT_MODEL", MODEL)
        .env("RUST_LOG", "warn");
    if let Some(url) = spark_url {
        cmd.env("SPARK_CONTROL_URL", url);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn server(same: bool) -> ScriptedChatServer {
    ScriptedChatServer::start_background(
        ScriptedServerConfig::new(MODEL),
        move |request: &SeenRequest, _| {
            let (a, b) = request.pair().unwrap();
            Reply::content(answer_json(a, b, same, 0.97, "scripted"))
        },
        1,
    )
    .unwrap()
}

#[test]
fn without_a_chat_endpoint_it_says_so_and_leaves_the_pairs_pending() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let id = crm(&db);
    let db_arg = db.to_str().unwrap();

    let out = fuzzy(dir.path(), &["--db", db_arg], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("no chat endpoint is configured"),
        "{stdout}"
    );
    assert!(stdout.contains("SPARK_CONTROL_URL"), "{stdout}");
    assert!(
        stdout.contains("1 candidate pair(s) stay pending"),
        "{stdout}"
    );

    let out = fuzzy(dir.path(), &["--db", db_arg, "--json"], None);
    assert!(out.status.success());
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "skipped");
    assert_eq!(line["pending"], 1);
    assert_eq!(status(&db, id), CandidateStatus::Pending);
}

#[test]
fn a_dry_run_prints_each_decision_and_writes_nothing_then_a_real_run_merges() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let id = crm(&db);
    let db_arg = db.to_str().unwrap();
    let server = server(true);

    let out = fuzzy(
        dir.path(),
        &["--db", db_arg, "--dry-run"],
        Some(server.url()),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("person:1 ~ person:2"), "{stdout}");
    assert!(stdout.contains("would merge"), "{stdout}");
    assert!(stdout.contains("dry run, nothing written"), "{stdout}");
    assert_eq!(status(&db, id), CandidateStatus::Pending);

    let out = fuzzy(dir.path(), &["--db", db_arg, "--json"], Some(server.url()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["merged"], 1, "{summary}");
    assert_eq!(summary["model"], MODEL);
    assert_eq!(status(&db, id), CandidateStatus::Merged);
    assert_eq!(server.stats().requests(), 2);
}

#[test]
fn a_failing_endpoint_ends_the_run_with_an_error_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crm.db");
    let id = crm(&db);
    let db_arg = db.to_str().unwrap();
    let server = ScriptedChatServer::start_background(
        ScriptedServerConfig::new(MODEL),
        |_: &SeenRequest, _| Reply::status(401, "{\"error\":{\"message\":\"bad key\"}}"),
        1,
    )
    .unwrap();

    let out = fuzzy(dir.path(), &["--db", db_arg], Some(server.url()));
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.contains("run stopped early"), "{stdout}");
    assert!(stdout.contains("401"), "{stdout}");
    assert_eq!(status(&db, id), CandidateStatus::Pending);
}
