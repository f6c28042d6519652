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
