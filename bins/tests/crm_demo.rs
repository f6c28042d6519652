//! `crm-demo generate`, run as a process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn demo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crm-demo"))
        .args(args)
        .current_dir(dir)
        // Keep the tests independent of the developer's environment.
        .env_remove("CRM_DB_PATH")
        .env_remove("CRM_SUBSTRATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn generate_writes_a_crm_and_its_truth_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/crm.db");
    let db_arg = db.to_str().unwrap();
    let small = [
        "--people",
        "600",
        "--orgs",
        "60",
        "--interactions",
        "300",
        "--deals",
        "20",
        "--dup-rate",
        "0.1",
        "--seed",
        "9",
    ];

    let mut args = vec!["generate", "--db", db_arg, "--json"];
    args.extend(small);
    let out = demo(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"]["people"], 600);
    assert_eq!(report["rows"]["organizations"], 60);
    assert!(
        report["duplicates"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v.as_u64() > Some(0))
    );
    let truth = dir.path().join("nested/crm.db.truth.jsonl");
    let truth_text = std::fs::read_to_string(&truth).unwrap();
    assert!(truth_text.lines().count() > 0);
    let first: serde_json::Value =
        serde_json::from_str(truth_text.lines().next().unwrap()).unwrap();
    assert!(first["ids"].as_array().unwrap().len() >= 2);

    // The store opens what was written.
    let store = crm_store::Store::open(crm_store::StoreConfig::new(&db)).unwrap();
    let counts = crm_store::queries::row_counts(&store.reader().unwrap()).unwrap();
    assert_eq!(counts.people, 600);
    drop(store);

    // No overwrite without --force; the existing file is untouched.
    let before = std::fs::read(&truth).unwrap();
    let out = demo(&args, dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&truth).unwrap(), before);

    // With --force and another seed, it is replaced.
    let mut forced = vec!["generate", "--db", db_arg, "--force", "--seed", "10"];
    forced.extend(&small[..small.len() - 2]);
    let out = demo(&forced, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("| people | 600 |"),
        "{}",
        text(&out.stdout)
    );
    assert_ne!(std::fs::read(&truth).unwrap(), before);
}

#[test]
fn bad_rates_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(
        &[
            "generate",
            "--db",
            "x.db",
            "--people",
            "10",
            "--dup-rate",
            "2",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("duplicate_rate"),
        "{}",
        text(&out.stderr)
    );
}
