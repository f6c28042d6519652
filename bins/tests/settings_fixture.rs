//! The config files the StartOS package writes, read by the one settings loader.
//!
//! The fixtures in `tests/fixtures/` are shared with the package: its check
//! (`start9/0.4/scripts/check-config-fixtures.ts`, run by `scripts/check-package.sh`)
//! proves that the Configure action and a fresh install write exactly
//! `config.startos.json` and `config.startos.fresh.json`, and that its zod schema accepts
//! all three. This side proves the Rust loader reads them as meant, so a key renamed on
//! either side breaks one of the two checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crm_substrate::settings::{LogFormat, Secret, Settings, Sources};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    // The directory the test runner gives at run time, not the one compiled in: a test
    // binary built in another clone that shares the target directory is reused as is.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("tests/fixtures")
        .join(name)
}

fn load(path: &Path) -> anyhow::Result<Settings> {
    Settings::load(&Sources {
        config_file: Some(path.to_path_buf()),
        ..Default::default()
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes `doc` to a temporary `config.json` and loads it.
fn load_doc(doc: &Value) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    load(&path)
}

fn exposed(secret: Option<&Secret>) -> Option<&str> {
    secret.map(Secret::expose)
}

/// Every key path of a JSON object, e.g. `spark_control.url`.
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Value::Object(map) = value {
        for (key, child) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if child.is_object() {
                key_paths(child, &path, out);
            } else {
                out.insert(path);
            }
        }
    }
}

#[test]
fn configure_action_output_loads_with_every_value() {
    let s = load(&fixture("config.startos.json")).unwrap();

    assert_eq!(s.db_path, PathBuf::from("/data/crm.db"));

    let spark = &s.spark_control;
    assert_eq!(spark.url.as_deref(), Some("https://spark.local:8443"));
    assert_eq!(exposed(spark.api_key.as_ref()), Some("sk-spark-fixture"));
    assert!(!spark.verify_tls);
    assert_eq!(spark.embedding_model, "intfloat/multilingual-e5-large");
    assert_eq!(spark.chat_model, "Qwen/Qwen3-14B");
    // Trailing spaces of the prefixes are part of the value (and of the index fingerprint).
    assert_eq!(spark.query_prefix, "query: ");
    assert_eq!(spark.document_prefix, "passage: ");

    assert_eq!(s.qdrant.url.as_deref(), Some("http://qdrant.local:6334"));
    assert_eq!(
        exposed(s.qdrant.api_key.as_ref()),
        Some("qdrant-fixture-key")
    );
    assert_eq!(s.qdrant.collection, "ten31_chunks");

    assert_eq!(s.resolve.default_region, "GB");
    assert_eq!(s.fuzzy.min_confidence, 0.95);
    assert_eq!(s.fuzzy.max_merges_per_run, 50);
    assert_eq!(s.sync.interval_secs, 120);

    assert_eq!(
        exposed(s.mcp.token.as_ref()),
        Some("tok-fixture-0123456789abcdef0123456789abcdef")
    );
    assert!(s.mcp.read_only);
    assert_eq!(
        s.mcp.allowed_hosts,
        vec!["192.168.1.20".to_owned(), "ten31-database.local".to_owned()]
    );

    assert_eq!(s.log.format, LogFormat::Text);
    assert_eq!(s.log.filter, "info,sync_watermark=debug");

    // What the form does not set keeps the built-in default.
    let defaults = Settings::default();
    assert_eq!(s.embedding, defaults.embedding);
    assert_eq!(s.qdrant.rrf_k, defaults.qdrant.rrf_k);
    assert_eq!(s.qdrant.embedded_dir, None);
    assert_eq!(s.sync.batch_size, defaults.sync.batch_size);
    assert_eq!(s.mcp.http_addr, defaults.mcp.http_addr);
    assert_eq!(spark.max_retries, defaults.spark_control.max_retries);
    // The embedded index sits beside the database the package points at.
    assert_eq!(s.embedded_index_dir(), PathBuf::from("/data/crm.db.index"));
}

#[test]
fn fresh_install_file_is_the_defaults_plus_the_package_keys() {
    let s = load(&fixture("config.startos.fresh.json")).unwrap();
    let expected = Settings {
        db_path: PathBuf::from("/data/crm.db"),
        log: crm_substrate::settings::LogSettings {
            format: LogFormat::Text,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(s, expected);
}

#[test]
fn all_keys_fixture_names_every_setting_and_round_trips() {
    let path = fixture("config.all-keys.json");
    let doc = read_json(&path);

    // The fixture has exactly the keys of `Settings`: a setting added to the Rust struct
    // must be added here, and then the package's strict zod schema must accept it.
    let mut fixture_keys = BTreeSet::new();
    key_paths(&doc, "", &mut fixture_keys);
    let mut settings_keys = BTreeSet::new();
    key_paths(
        &serde_json::to_value(Settings::default()).unwrap(),
        "",
        &mut settings_keys,
    );
    // Option fields that are None serialise as null and still count as keys.
    let missing: Vec<_> = settings_keys.difference(&fixture_keys).collect();
    let unknown: Vec<_> = fixture_keys.difference(&settings_keys).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "config.all-keys.json must have exactly the keys of Settings: missing {missing:?}, unknown {unknown:?}"
    );

    // Every value is read as written: nothing is dropped, renamed or coerced.
    let loaded = load(&path).unwrap();
    assert_eq!(serde_json::to_value(&loaded).unwrap(), doc);
    assert_eq!(
        loaded.mcp.http_addr,
        "0.0.0.0:9000".parse::<SocketAddr>().unwrap()
    );
    assert_ne!(loaded, Settings::default());
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let base = read_json(&fixture("config.startos.json"));

    let mut nested = base.clone();
    nested["spark_control"]["verify_tsl"] = Value::Bool(false);
    let err = format!("{:#}", load_doc(&nested).unwrap_err());
    assert!(err.contains("verify_tsl"), "{err}");
    assert!(err.contains("config.json"), "{err}");

    let mut top = base.clone();
    top["qdrant_url"] = Value::String("http://qdrant.local:6334".to_owned());
    let err = format!("{:#}", load_doc(&top).unwrap_err());
    assert!(err.contains("qdrant_url"), "{err}");

    let mut section = base;
    section["schedule"] = serde_json::json!({ "interval_secs": 60 });
    let err = format!("{:#}", load_doc(&section).unwrap_err());
    assert!(err.contains("schedule"), "{err}");
}

#[test]
fn null_clears_optional_settings() {
    // The package's schema accepts null for every Option key; so must the loader.
    let doc = serde_json::json!({
        "db_path": "/data/crm.db",
        "spark_control": { "url": null, "api_key": null },
        "embedding": { "local_model_dir": null },
        "qdrant": { "url": null, "api_key": null, "embedded_dir": null },
        "mcp": { "token": null }
    });
    let s = load_doc(&doc).unwrap();
    assert_eq!(s.spark_control.url, None);
    assert_eq!(s.spark_control.api_key, None);
    assert_eq!(s.embedding.local_model_dir, None);
    assert_eq!(s.qdrant.url, None);
    assert_eq!(s.qdrant.embedded_dir, None);
    assert_eq!(s.mcp.token, None);
}

#[test]
fn values_the_schema_rejects_are_rejected_here_too() {
    let base = read_json(&fixture("config.startos.json"));
    let cases: [(&str, &str, Value, &str); 4] = [
        (
            "spark_control",
            "url",
            Value::String("spark.local:8443".into()),
            "spark_control.url",
        ),
        (
            "qdrant",
            "url",
            Value::String("qdrant.local".into()),
            "qdrant.url",
        ),
        (
            "resolve",
            "default_region",
            Value::String("gb".into()),
            "default_region",
        ),
        (
            "fuzzy",
            "min_confidence",
            serde_json::json!(1.5),
            "min_confidence",
        ),
    ];
    for (section, key, value, named) in cases {
        let mut doc = base.clone();
        doc[section][key] = value;
        let err = format!("{:#}", load_doc(&doc).unwrap_err());
        assert!(err.contains(named), "{section}.{key}: {err}");
    }
}

#[test]
fn secrets_from_the_file_never_print() {
    let s = load(&fixture("config.startos.json")).unwrap();
    let shown = format!("{s:?}");
    for secret in [
        "sk-spark-fixture",
        "qdrant-fixture-key",
        "tok-fixture-0123456789abcdef0123456789abcdef",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}
