//! `crm-sync` and `crm-backfill` as processes: exit codes, summaries, `--verify`,
//! `--watch` until SIGTERM, the lease, fingerprint refusals, embedder outages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sync_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sync_support::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn exit_codes_and_summaries_say_what_happened() {
    let env = Env::new(60, 32);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["outcome"], "done");
    assert!(s["totals"]["rows_indexed"].as_u64().unwrap() > 60);
    assert!(s["peak_rss_bytes"].as_u64().unwrap() > 0);
    assert!(s["cpu_seconds"].as_f64().is_some(), "{s}");
    assert!(s["run_id"].as_i64().is_some());

    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "nothing to do: {}",
        stderr(&out)
    );
    assert_eq!(summary(&out)["outcome"], "nothing_to_do");

    let out = env.run(SYNC, &[], None);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("crm-sync: nothing to do"), "{text}");
    assert!(text.contains("| rows read |"), "{text}");

    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(summary(&out)["counts"], serde_json::json!({}));

    // Forget one record: verify reports it and exits 5; a backfill repairs it.
    env.crm()
        .execute(
            "DELETE FROM ingest_indexed_rows WHERE (source_table, source_id) IN \
             (SELECT source_table, source_id FROM ingest_indexed_rows WHERE chunk_count > 0 LIMIT 1)",
            [],
        )
        .unwrap();
    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(summary(&out)["counts"]["record_missing"], 1);
    let out = env.run(SYNC, &["--verify"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 difference(s)") && text.contains("RecordMissing"),
        "{text}"
    );

    let out = env.run(BACKFILL, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        summary(&out)["totals"]["repairs_found"],
        0,
        "a backfill reads every row"
    );
    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn help_documents_the_exit_codes() {
    // clap wraps the text at the terminal's width: compare words, not lines.
    let help_of = |bin: &str| {
        let out = std::process::Command::new(bin)
            .arg("--help")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    for bin in [SYNC, BACKFILL] {
        let help = help_of(bin);
        for needle in ["0 done", "3 nothing to do", "4 partial failure", "1 failed"] {
            assert!(
                help.contains(needle),
                "{bin} --help lacks {needle:?}:\n{help}"
            );
        }
    }
    let help = help_of(SYNC);
    assert!(help.contains("5 (--verify)"), "{help}");
}

#[test]
fn a_fingerprint_change_is_refused_until_a_recreate() {
    let env = Env::new(40, 32);
    assert_eq!(env.run(SYNC, &["--json"], None).status.code(), Some(0));
    // A document prefix changes every dense vector.
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env.config).unwrap()).unwrap();
    settings["spark_control"]["document_prefix"] = serde_json::json!("passage: ");
    std::fs::write(&env.config, serde_json::to_vec(&settings).unwrap()).unwrap();

    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["failure"], "fingerprint_mismatch");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("crm-backfill --recreate"),
        "{s}"
    );

    let out = env.run(BACKFILL, &["--recreate", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&out)["recreated"], true);
    assert_eq!(env.run(SYNC, &["--json"], None).status.code(), Some(3));
}

#[test]
fn a_held_lease_names_its_holder() {
    let env = Env::new(20, 32);
    assert_eq!(env.run(SYNC, &["--json"], None).status.code(), Some(0));
    let me = std::process::id();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    env.crm()
        .execute(
            "INSERT INTO substrate_leases VALUES ('index:crm_chunks', 'crm-sync#other', ?1, ?2, \
             '2026-01-01T00:00:00.000Z', '2999-01-01T00:00:00.000Z')",
            rusqlite::params![me, host],
        )
        .unwrap();
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let error = summary(&out)["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(&format!("pid {me} on host {host}")),
        "{error}"
    );
    assert!(error.contains("crm-sync#other"), "{error}");
}

#[test]
fn embedder_outages_are_failures_with_summaries() {
    let env = Env::new(80, 8);
    env.server.controls().fail_all(Some(503));
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let s = summary(&out);
    assert_eq!(s["outcome"], "failed");
    assert!(s["error"].as_str().unwrap().contains("503"), "{s}");

    // Down in the middle of a run: what was committed stays, the run says so.
    env.server.controls().reset();
    let requests = env.server.controls().requests();
    env.server.controls().fail_request_number(requests + 6, 500);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["outcome"], "partial_failure");
    assert_eq!(s["failure"], "embedder");
    assert!(s["batches_committed"].as_u64().unwrap() > 0);

    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.run(SYNC, &["--verify"], None).status.code(), Some(0));
}

#[test]
fn watch_syncs_on_every_interval_until_sigterm() {
    let env = Env::new(40, 32);
    let mut child = env
        .command(SYNC, &["--watch", "--interval", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_summary = |deadline: Instant| -> serde_json::Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("a summary before the deadline");
            if line.starts_with('{') {
                return serde_json::from_str(&line).unwrap();
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    assert_eq!(next_summary(deadline)["outcome"], "done");
    assert_eq!(next_summary(deadline)["outcome"], "nothing_to_do");
    // A change made while it watches is picked up by a later run.
    env.crm()
        .execute(
            "UPDATE people SET bio = 'Changed while watching.', updated_at = ?1 WHERE id = 1",
            [crm_store::Timestamp::now().to_canonical()],
        )
        .unwrap();
    let mut seen_change = false;
    for _ in 0..5 {
        if next_summary(deadline)["outcome"] == "done" {
            seen_change = true;
            break;
        }
    }
    assert!(seen_change, "the watcher never indexed the change");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "a SIGTERM ends --watch cleanly");
    reader.join().unwrap();
}

/// Sets `qdrant.embedded_shards` in the settings file the children read.
fn set_shards(env: &Env, shards: u32) {
    let mut settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&env.config).unwrap()).unwrap();
    settings["qdrant"]["embedded_shards"] = serde_json::json!(shards);
    std::fs::write(&env.config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
}

#[test]
fn shards_are_chosen_when_the_collection_is_created_and_kept_after() {
    let env = Env::with_shards(60, 32, 0);
    let second_shard = env.index_dir.join("crm_chunks.shard-1");
    // Automatic: a small CRM gets one shard.
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(env.index_dir.join("crm_chunks").is_dir());
    assert!(!second_shard.exists());

    // A new count applies to a collection created from now on, not to this one.
    set_shards(&env, 2);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!second_shard.exists());

    let out = env.run(BACKFILL, &["--recreate", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(second_shard.is_dir());
    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&out)["counts"], serde_json::json!({}));

    // Back to automatic: the re-created collection is one shard, the second one gone.
    set_shards(&env, 0);
    let out = env.run(BACKFILL, &["--recreate", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!second_shard.exists());
    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Out of range: refused by name before anything runs.
    set_shards(&env, 65);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("qdrant.embedded_shards"), "{err}");
    assert!(err.contains("65"), "{err}");
}

/// The HNSW parameters in an embedded shard's own configuration file.
fn stored_hnsw(env: &Env) -> (u64, u64) {
    let path = env.index_dir.join("crm_chunks").join("edge_config.json");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let hnsw = &config["hnsw_config"];
    (
        hnsw["m"].as_u64().unwrap(),
        hnsw["ef_construct"].as_u64().unwrap(),
    )
}

#[test]
fn hnsw_settings_apply_when_the_collection_is_created() {
    let env = Env::with_shards(60, 32, 1);
    let set = |m: u32, ef: u32| {
        let mut settings: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&env.config).unwrap()).unwrap();
        settings["qdrant"]["hnsw_m"] = serde_json::json!(m);
        settings["qdrant"]["hnsw_ef_construct"] = serde_json::json!(ef);
        std::fs::write(&env.config, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    };
    set(12, 48);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stored_hnsw(&env), (12, 48));

    // An existing collection keeps the graph it was created with; a rebuild takes the
    // new values.
    set(20, 64);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stored_hnsw(&env), (12, 48));
    let out = env.run(BACKFILL, &["--recreate", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stored_hnsw(&env), (20, 64));
    let out = env.run(SYNC, &["--verify", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Out of range: refused by name before anything runs.
    set(16, 2);
    let out = env.run(SYNC, &["--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("qdrant.hnsw_ef_construct"), "{err}");
}

/// qdrant-edge's start-up chatter (settings it expects a server to initialise, its WAL
/// opened) is kept out of the log unless the filter names the engine.
#[test]
fn the_engines_start_up_chatter_stays_out_of_the_log() {
    const CHATTER: [&str; 3] = [
        "Feature flags not initialized",
        "MULTI_MMAP_SUPPORT_CHECK_RESULT",
        "}: opened",
    ];
    let env = Env::with_shards(60, 32, 2);
    let out = env.run(SYNC, &[], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // `RUST_LOG=info`, as every run here: our own lines, none of the engine's chatter.
    let out = env.run(SYNC, &["--verify"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let quiet = stderr(&out);
    for line in CHATTER {
        assert!(!quiet.contains(line), "{line:?} in:\n{quiet}");
    }

    // A filter that names the engine gets its lines as written.
    let out = env
        .command(SYNC, &["--verify"])
        .env("RUST_LOG", "info,qdrant_edge=info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let loud = stderr(&out);
    for line in CHATTER {
        assert!(loud.contains(line), "{line:?} missing from:\n{loud}");
    }
}
