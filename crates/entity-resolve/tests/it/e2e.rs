//! End to end on a generated demo CRM, scored against its ground truth.

use crm_store::synthetic::{SyntheticConfig, generate, read_truth, truth_path};
use entity_resolve::EntityKind;
use entity_resolve::quality::score_against_truth;

use crate::support::Crm;

#[test]
fn generated_demo_meets_the_quality_targets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.db");
    let config = SyntheticConfig {
        people: 20_000,
        organizations: 2_000,
        interactions: 0,
        deals: 0,
        ..SyntheticConfig::default()
    };
    generate(&path, &config, &mut |_| {}).unwrap();
    let truth = read_truth(&truth_path(&path)).unwrap();
    let crm = Crm::open(dir, path);
    let summary = crm.resolve();
    eprintln!("{}", serde_json::to_string_pretty(&summary).unwrap());
    for kind in [EntityKind::Person, EntityKind::Organization] {
        let q = score_against_truth(&crm.conn(), kind, &truth).unwrap();
        eprintln!("{kind}: {}", serde_json::to_string_pretty(&q).unwrap());
        eprintln!(
            "{kind}: precision {:.5} recall {:.4} reach {:.4} cand/pair {:.2}",
            q.link_precision(),
            q.link_recall(),
            q.reach_recall(),
            q.candidates_per_true_pair_left()
        );
        assert_eq!(q.trap_violations, 0, "{kind}: trap pairs linked");
        assert!(
            q.link_precision() >= 0.999,
            "{kind}: link precision {}",
            q.link_precision()
        );
        for (dup, r) in &q.by_dup_kind {
            assert!(
                r.reach_recall() >= 0.98,
                "{kind} {dup}: links ∪ candidates recall {} ({r:?})",
                r.reach_recall()
            );
        }
        assert!(
            q.candidates_per_true_pair_left() <= 3.0,
            "{kind}: {} candidates per true pair left",
            q.candidates_per_true_pair_left()
        );
    }
    // A second run over the same data changes nothing.
    let before = crm.snapshot();
    let again = crm.resolve();
    assert_eq!(again.entity_writes, 0, "{again:?}");
    assert_eq!(crm.snapshot(), before);
}

/// The full-size run, for profiling in release mode (`crm-bench resolve` is the
/// measurement of record): `cargo test --release -p entity-resolve --test it -- --ignored
/// scale --nocapture`, size from `RESOLVE_SCALE_PEOPLE` (default 1,000,000).
#[test]
#[ignore = "minutes long; run by hand in release mode"]
fn scale() {
    let people: u64 = std::env::var("RESOLVE_SCALE_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.db");
    let config = SyntheticConfig {
        people,
        organizations: people / 10,
        interactions: 0,
        deals: 0,
        ..SyntheticConfig::default()
    };
    let t = std::time::Instant::now();
    generate(&path, &config, &mut |_| {}).unwrap();
    eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    let truth = read_truth(&truth_path(&path)).unwrap();
    let crm = Crm::open(dir, path);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = std::time::Instant::now();
    let summary = crm.resolve();
    let first = t.elapsed();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("")
        .to_owned();
    eprintln!(
        "first run {:.1} s, {hwm}, phases {:?}, writes {}",
        first.as_secs_f64(),
        summary.phase_ms,
        summary.entity_writes
    );
    for kind in [EntityKind::Person, EntityKind::Organization] {
        let q = score_against_truth(&crm.conn(), kind, &truth).unwrap();
        eprintln!(
            "{kind}: precision {:.5} recall {:.4} reach {:.4} cand/pair {:.2} traps {}",
            q.link_precision(),
            q.link_recall(),
            q.reach_recall(),
            q.candidates_per_true_pair_left(),
            q.trap_violations
        );
        for (k, r) in &q.by_dup_kind {
            eprintln!(
                "   {k}: reach {:.4} link {:.4} ({} pairs)",
                r.reach_recall(),
                r.link_recall(),
                r.true_pairs
            );
        }
    }
    let t = std::time::Instant::now();
    let again = crm.resolve();
    eprintln!(
        "re-run {:.1} s, writes {}, phases {:?}",
        t.elapsed().as_secs_f64(),
        again.entity_writes,
        again.phase_ms
    );
}
