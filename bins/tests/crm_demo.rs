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

/// Settings pointing the demo at the instant embeddings server (no model needed).
fn instant_settings(dir: &Path, url: &str) -> std::path::PathBuf {
    let config = dir.join("settings.json");
    let settings = serde_json::json!({
        "spark_control": {
            "url": url,
            "embedding_model": embed::testing::INSTANT_MODEL,
            "max_retries": 0,
        },
        "log": { "format": "json" },
    });
    std::fs::write(&config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    config
}

#[test]
fn run_resolves_indexes_and_searches_in_three_modes() {
    use embed::testing::{InstantEmbeddingServer, InstantServerConfig};
    let dir = tempfile::tempdir().unwrap();
    let server = InstantEmbeddingServer::start_background(InstantServerConfig::new(16)).unwrap();
    let config = instant_settings(dir.path(), server.url());
    let config_arg = config.to_str().unwrap();
    let args = [
        "--config",
        config_arg,
        "--db",
        "demo.db",
        "run",
        "--people",
        "300",
        "--orgs",
        "30",
        "--interactions",
        "300",
        "--deals",
        "20",
        "--query",
        "BitLicense application",
        "--hits",
        "5",
        "--json",
    ];
    let out = demo(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["generated"]["rows"]["people"], 300);
    assert!(report["resolve"]["people"]["entities"].as_u64().unwrap() < 300);
    assert_eq!(report["quality"]["people"]["trap_violations"], 0);
    assert_eq!(report["index"]["outcome"], "done");
    assert!(report["index"]["points_in_index"].as_u64().unwrap() > 300);

    let searches = report["searches"].as_array().unwrap();
    let modes: Vec<&str> = searches
        .iter()
        .map(|s| s["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["hybrid", "dense", "sparse"]);
    for search in searches {
        assert!(search["error"].is_null(), "{search}");
        assert_eq!(search["mode_used"], search["mode"], "{search}");
        let hits = search["hits"].as_array().unwrap();
        assert!(!hits.is_empty() && hits.len() <= 5, "{search}");
    }
    // Keywords find the rows that contain them.
    let sparse = &searches[2]["hits"].as_array().unwrap()[0];
    assert!(
        sparse["chunk"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("bitlicense"),
        "{sparse}"
    );

    // A second run reuses the CRM and finds nothing to do.
    let out = demo(&args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(again["generated"].is_null());
    assert_eq!(again["resolve"]["entity_writes"], 0);
    assert_eq!(again["index"]["outcome"], "nothing_to_do");

    // Text output walks through the four steps.
    let text_args: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
    let out = demo(&text_args, dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for needle in [
        "1. using the existing CRM",
        "2. resolve entities",
        "3. index",
        "4. search",
        "  sparse",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
}

#[test]
fn run_without_a_model_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("no-model");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crm-demo"))
        .args(["--db", "demo.db", "run", "--people", "50", "--orgs", "5"])
        .args(["--interactions", "10", "--deals", "2"])
        .current_dir(dir.path())
        .env_remove("CRM_DB_PATH")
        .env_remove("CRM_SUBSTRATE_CONFIG")
        .env_remove("SPARK_CONTROL_URL")
        .env("CRM_MODEL_DIR", &empty)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("scripts/fetch-model.sh"),
        "{}",
        text(&out.stderr)
    );
}
