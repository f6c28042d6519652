//! `crm-resolve` as a process: summaries, dry runs, idempotent re-runs, bad settings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use crm_store::synthetic::{self, SyntheticConfig};

fn resolve(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crm-resolve"))
        .args(["--db", "crm.db"])
        .args(args)
        .current_dir(dir)
        .env_remove("CRM_DB_PATH")
        .env_remove("CRM_SUBSTRATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn crm() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = SyntheticConfig {
        people: 400,
        organizations: 40,
        interactions: 50,
        deals: 5,
        duplicate_rate: 0.1,
        ..SyntheticConfig::default()
    };
    synthetic::generate(&dir.path().join("crm.db"), &config, &mut |_| {}).unwrap();
    dir
}

#[test]
fn dry_run_writes_nothing_then_a_run_writes_and_a_rerun_writes_nothing() {
    let dir = crm();
    let db = dir.path().join("crm.db");

    let dry = json(&resolve(dir.path(), &["--dry-run", "--json"]));
    assert_eq!(dry["dry_run"], true);
    assert!(dry["entity_writes"].as_u64().unwrap() > 0);
    assert!(dry["run_id"].is_null());
    assert_eq!(count(&db, "SELECT count(*) FROM entities"), 0);
    assert_eq!(count(&db, "SELECT count(*) FROM ingest_runs"), 0);

    let first = json(&resolve(dir.path(), &["--json"]));
    assert_eq!(
        first["entity_writes"], dry["entity_writes"],
        "the dry run predicted the run"
    );
    assert!(first["run_id"].as_i64().is_some());
    let people = first["people"]["entities"].as_u64().unwrap();
    assert!(
        people > 0 && people < 400,
        "duplicates are linked: {people}"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM entity_links WHERE source_table = 'people'"
        ),
        count(&db, "SELECT count(*) FROM people WHERE deleted_at IS NULL"),
        "every live person row is linked"
    );

    let second = json(&resolve(dir.path(), &["--json"]));
    assert_eq!(second["entity_writes"], 0, "{second}");
    assert_eq!(second["unchanged"], true, "{second}");
    assert_eq!(second["unchanged_since_run"], first["run_id"], "{second}");
    assert_eq!(second["people"]["entities"], first["people"]["entities"]);
    assert_eq!(second["input_fingerprint"], first["input_fingerprint"]);

    // The text summary says why nothing was done.
    let out = resolve(dir.path(), &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| rows resolved |"), "{text}");
    assert!(
        text.contains("nothing changed since the last run"),
        "{text}"
    );

    // --full computes, finds nothing to write, and names every figure.
    let out = resolve(dir.path(), &["--full"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("| links added / moved |"), "{text}");
    assert!(text.contains("wrote 0 rows to the entity tables"), "{text}");
}

#[test]
fn bad_inputs_are_named() {
    let dir = crm();
    let out = resolve(dir.path(), &["--default-region", "XX-nowhere"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resolve.default_region"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_crm-resolve"))
        .args(["--db", "missing/crm.db"])
        .current_dir(dir.path())
        .env_remove("CRM_DB_PATH")
        .env_remove("CRM_SUBSTRATE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing/crm.db"), "{err}");
}
