//! A run whose input is exactly what the last run left stops after reading; every
//! change to that input, by anyone, makes the next run compute in full.

use crm_store::Timestamp;
use entity_resolve::merges::{self, Decider, Decision};
use entity_resolve::{
    NoProgress, Phase, Progress, ResolveConfig, ResolveSummary, RunOptions, resolve,
};
use rusqlite::Connection;

use crate::support::{Crm, P, p};

/// Robert and Bob Smith at Acme (a nickname candidate), Ann twice by email (a link),
/// and Cy alone.
fn crm() -> Crm {
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.person(P {
        org: Some(1),
        email: Some("robert.smith@acme.com"),
        phone: Some("+1 415 555 2671"),
        ..p(1, "Robert Smith")
    });
    crm.person(P {
        org: Some(1),
        email: Some("bob@gmail.com"),
        ..p(2, "Bob Smith")
    });
    crm.person(P {
        email: Some("ann@x.io"),
        ..p(3, "Ann Lee")
    });
    crm.person(P {
        email: Some("ANN@x.io"),
        ..p(4, "Ann Lee")
    });
    crm.person(p(5, "Cy Young"));
    crm
}

fn run(crm: &Crm, full: bool) -> ResolveSummary {
    run_with(crm, full, &ResolveConfig::default(), &NoProgress)
}

fn run_with(
    crm: &Crm,
    full: bool,
    config: &ResolveConfig,
    progress: &dyn Progress,
) -> ResolveSummary {
    let mut conn = crm.conn();
    let options = RunOptions {
        dry_run: false,
        holder: "unchanged-test".into(),
        hostname: "test-host".into(),
        full,
    };
    resolve(&mut conn, config, &options, progress).unwrap()
}

fn pending_candidate(crm: &Crm) -> i64 {
    crm.conn()
        .query_row(
            "SELECT id FROM entity_candidates WHERE status = 'pending' ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

fn human() -> Decider {
    "human:alice".parse().unwrap()
}

fn decision(by: &Decider) -> Decision<'_> {
    Decision {
        decided_by: by,
        confidence: None,
        rationale: "checked by hand",
        raw_reply: None,
    }
}

/// A person accepts (or rejects) the first pending candidate.
fn decide(crm: &Crm, accept: bool) {
    let id = pending_candidate(crm);
    let by = human();
    let mut conn = crm.conn();
    let tx = conn.transaction().unwrap();
    if accept {
        merges::accept_candidate(&tx, id, &decision(&by), Timestamp::now()).unwrap();
    } else {
        merges::reject_candidate(&tx, id, &decision(&by), Timestamp::now()).unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_run_over_unchanged_input_stops_after_reading() {
    let crm = crm();
    let first = run(&crm, false);
    assert!(!first.unchanged);
    assert!(first.entity_writes > 0);
    let fp = first.input_fingerprint.clone().expect("a fingerprint");
    assert_eq!(fp.len(), 64);
    let before = crm.snapshot();

    let second = run(&crm, false);
    assert!(second.unchanged, "{second:#?}");
    assert_eq!(second.unchanged_since_run, first.run_id);
    assert_eq!(second.entity_writes, 0);
    assert_eq!(second.input_fingerprint.as_deref(), Some(fp.as_str()));
    assert_eq!(
        (second.people.rows, second.people.entities),
        (5, first.people.entities)
    );
    assert_eq!(
        (second.organizations.rows, second.organizations.entities),
        (1, 1)
    );
    assert_eq!(second.people.links_added + second.people.candidates_new, 0);
    assert_eq!(crm.snapshot(), before);
    // It is a run like any other in the log, and the next one chains on it.
    let third = run(&crm, false);
    assert!(third.unchanged);
    assert_eq!(third.unchanged_since_run, second.run_id);
    assert_eq!(
        crm.count("SELECT count(*) FROM ingest_runs WHERE step = 'resolve' AND status = 'ok'"),
        3
    );
}

/// The fingerprint a writing run records is the one a full computation over its
/// output finds: the skip is exactly "computing again would write nothing".
#[test]
fn a_full_run_over_unchanged_input_agrees_and_writes_nothing() {
    let crm = crm();
    let first = run(&crm, false);
    let before = crm.snapshot();
    let full = run(&crm, true);
    assert!(!full.unchanged);
    assert_eq!(full.entity_writes, 0, "{full:#?}");
    assert_eq!(full.input_fingerprint, first.input_fingerprint);
    assert_eq!(crm.snapshot(), before);
}

#[test]
fn a_dry_run_may_stop_early_but_records_nothing() {
    let crm = crm();
    run(&crm, false);
    let mut conn = crm.conn();
    let dry = resolve(
        &mut conn,
        &ResolveConfig::default(),
        &RunOptions {
            dry_run: true,
            holder: "dry".into(),
            hostname: "h".into(),
            full: false,
        },
        &NoProgress,
    )
    .unwrap();
    assert!(dry.unchanged && dry.dry_run);
    assert_eq!(dry.input_fingerprint, None);
}

/// Each change, made after a run, and whether the next run must compute.
#[test]
fn every_change_to_the_input_makes_the_next_run_compute() {
    type Change = fn(&Crm);
    let changes: [(&str, Change, bool); 13] = [
        (
            "an identifying column",
            |c| exec(c, "UPDATE people SET email = 'cy@young.io' WHERE id = 5"),
            true,
        ),
        (
            "a phone",
            |c| {
                exec(
                    c,
                    "UPDATE people SET phone = '+1 415 555 2672' WHERE id = 1",
                )
            },
            true,
        ),
        (
            "a column resolution never reads",
            |c| {
                exec(
                    c,
                    "UPDATE people SET bio = 'new bio', updated_at = '2027-01-01' WHERE id = 5",
                )
            },
            false,
        ),
        ("a new row", |c| c.person(p(6, "Dee Dee")), true),
        (
            "a soft delete",
            |c| {
                exec(
                    c,
                    "UPDATE people SET deleted_at = '2027-01-01' WHERE id = 5",
                )
            },
            true,
        ),
        (
            "a hard delete",
            |c| exec(c, "DELETE FROM people WHERE id = 5"),
            true,
        ),
        (
            "an organisation renamed",
            |c| {
                exec(
                    c,
                    "UPDATE organizations SET name = 'Acme Corp' WHERE id = 1",
                )
            },
            true,
        ),
        (
            "a candidate accepted by a person",
            |c| decide(c, true),
            true,
        ),
        ("a candidate rejected", |c| decide(c, false), true),
        (
            "a link edited by hand",
            |c| {
                exec(
                    c,
                    "UPDATE entity_links SET entity_id = 'person:5' \
                     WHERE source_table = 'people' AND source_id = 4",
                );
            },
            true,
        ),
        (
            "an entity renamed by hand",
            |c| {
                exec(
                    c,
                    "UPDATE entities SET display_name = 'x' WHERE entity_id = 'person:5'",
                )
            },
            true,
        ),
        (
            "a pending candidate deleted by hand",
            |c| exec(c, "DELETE FROM entity_candidates WHERE status = 'pending'"),
            true,
        ),
        (
            "the run log only",
            |c| {
                exec(
                    c,
                    "INSERT INTO ingest_runs (step, started_at, status) \
                     VALUES ('sync', '2027-01-01', 'ok')",
                );
            },
            false,
        ),
    ];
    for (what, change, computes) in changes {
        let crm = crm();
        run(&crm, false);
        change(&crm);
        let after = run(&crm, false);
        assert_eq!(!after.unchanged, computes, "{what}: {after:#?}");
        // Whatever happened, the run after that one has nothing left to do, and a
        // full computation agrees.
        let settled = run(&crm, false);
        assert!(settled.unchanged, "{what}: {settled:#?}");
        let full = run(&crm, true);
        assert_eq!(full.entity_writes, 0, "{what}: {full:#?}");
        assert_eq!(full.input_fingerprint, settled.input_fingerprint, "{what}");
    }
}

#[test]
fn a_hand_edited_link_is_repaired() {
    let crm = crm();
    run(&crm, false);
    let right = crm.person_entity(4);
    exec(
        &crm,
        "UPDATE entity_links SET entity_id = 'person:5' WHERE source_table = 'people' AND source_id = 4",
    );
    let s = run(&crm, false);
    assert!(!s.unchanged);
    assert_eq!(s.people.links_moved, 1);
    assert_eq!(crm.person_entity(4), right);
}

#[test]
fn a_new_rule_tuning_makes_the_next_run_compute() {
    let crm = crm();
    run(&crm, false);
    let gb = ResolveConfig {
        default_region: "GB".parse().unwrap(),
        ..ResolveConfig::default()
    };
    let s = run_with(&crm, false, &gb, &NoProgress);
    assert!(!s.unchanged);
    let batches = ResolveConfig {
        default_region: "GB".parse().unwrap(),
        write_batch: 1,
        read_page: 2,
        ..ResolveConfig::default()
    };
    assert!(run_with(&crm, false, &batches, &NoProgress).unchanged);
}

/// Rejects a pending candidate from another connection when the run starts writing.
struct DecideWhileWriting {
    path: std::path::PathBuf,
    done: std::sync::atomic::AtomicBool,
}

impl Progress for DecideWhileWriting {
    fn start(&self, phase: Phase, _total: Option<u64>) {
        if phase != Phase::Write || self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut conn = Connection::open(&self.path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let id: i64 = conn
            .query_row(
                "SELECT id FROM entity_candidates WHERE status = 'pending' ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let by = human();
        let tx = conn.transaction().unwrap();
        merges::reject_candidate(&tx, id, &decision(&by), Timestamp::now()).unwrap();
        tx.commit().unwrap();
    }
}

#[test]
fn a_decision_made_while_a_run_writes_is_not_taken_for_its_output() {
    let crm = crm();
    run(&crm, false);
    // A change that makes the next run write, and a person deciding meanwhile.
    crm.person(P {
        email: Some("ann@x.io"),
        ..p(6, "Ann Lee")
    });
    let meddler = DecideWhileWriting {
        path: crm.store.path().to_path_buf(),
        done: false.into(),
    };
    let s = run_with(&crm, false, &ResolveConfig::default(), &meddler);
    assert!(meddler.done.load(std::sync::atomic::Ordering::SeqCst));
    assert!(s.entity_writes > 0);
    assert_eq!(s.input_fingerprint, None, "{s:#?}");
    // So the next run computes, and sees the decision.
    let next = run(&crm, false);
    assert!(!next.unchanged);
    assert_eq!(next.people.candidates_decided_respected, 1, "{next:#?}");
    assert!(run(&crm, false).unchanged);
}

fn exec(crm: &Crm, sql: &str) {
    crm.conn().execute(sql, []).unwrap();
}
