//! Id stability across re-runs and new rows, splits, deletes, dry runs, the lease.

use crm_store::Timestamp;
use crm_store::phase0::{self, LeaseRequest};
use entity_resolve::{NoProgress, ResolveConfig, ResolveError, RunOptions, resolve};

use crate::support::{Crm, P, p};

fn three_people(crm: &Crm) {
    crm.person(P {
        email: Some("ann@x.io"),
        ..p(1, "Ann Lee")
    });
    crm.person(P {
        email: Some("ANN@x.io"),
        ..p(2, "Ann Lee")
    });
    crm.person(P {
        email: Some("bo@y.io"),
        ..p(3, "Bo Diddley")
    });
}

#[test]
fn a_rerun_with_no_change_writes_nothing() {
    let crm = Crm::new();
    three_people(&crm);
    let first = crm.resolve();
    assert!(first.entity_writes > 0);
    let before = crm.snapshot();
    let changes_before: i64 = crm
        .conn()
        .query_row("SELECT total_changes()", [], |r| r.get(0))
        .unwrap();
    let again = crm.resolve();
    assert_eq!(again.entity_writes, 0, "{again:#?}");
    assert_eq!(
        again.people.entities_created + again.people.links_added + again.people.candidates_new,
        0
    );
    assert_eq!(crm.snapshot(), before);
    // The only writes: the lease and the run log (start, finish, release).
    let changes_after: i64 = crm
        .conn()
        .query_row("SELECT total_changes()", [], |r| r.get(0))
        .unwrap();
    assert!(
        changes_after - changes_before <= 4,
        "{} row changes",
        changes_after - changes_before
    );
    assert_eq!(
        crm.count("SELECT count(*) FROM ingest_runs WHERE step = 'resolve' AND status = 'ok'"),
        2
    );
}

#[test]
fn a_dry_run_writes_nothing_but_reports() {
    let crm = Crm::new();
    three_people(&crm);
    let before = crm.snapshot();
    let dry = crm.resolve_with(true);
    assert!(dry.dry_run);
    assert_eq!(dry.people.entities_created, 2);
    assert_eq!(dry.people.links_added, 3);
    assert!(dry.entity_writes > 0);
    assert_eq!(crm.snapshot(), before);
    assert_eq!(crm.count("SELECT count(*) FROM ingest_runs"), 0);
    assert_eq!(crm.count("SELECT count(*) FROM substrate_leases"), 0);
    // A real run does what the dry run said.
    let real = crm.resolve();
    assert_eq!(real.people, dry.people);
}

#[test]
fn new_rows_join_existing_entities_and_ids_do_not_move() {
    let crm = Crm::new();
    crm.person(P {
        email: Some("kim@z.io"),
        ..p(5, "Kim Park")
    });
    crm.person(P {
        email: Some("kim@z.io"),
        ..p(6, "Kim Park")
    });
    crm.resolve();
    assert_eq!(crm.person_entity(6), "person:5");
    // A row with a lower id joins: the entity keeps its id.
    crm.person(P {
        email: Some("Kim@Z.io"),
        ..p(2, "K. Park")
    });
    crm.person(P {
        email: Some("kim@z.io"),
        ..p(9, "Kim Park")
    });
    let s = crm.resolve();
    assert_eq!(s.people.entities_created, 0);
    assert_eq!(s.people.links_added, 2);
    for id in [2, 5, 6, 9] {
        assert_eq!(crm.person_entity(id), "person:5");
    }
    assert_eq!(
        crm.count("SELECT count(*) FROM entities WHERE kind = 'person'"),
        1
    );
}

#[test]
fn a_row_that_bridges_two_entities_merges_them_lowest_id_wins() {
    let crm = Crm::new();
    crm.person(P {
        email: Some("a@x.io"),
        ..p(1, "Ann Lee")
    });
    crm.person(P {
        linkedin: Some("linkedin.com/in/ann-lee"),
        ..p(4, "Ann Lee")
    });
    crm.resolve();
    assert_eq!(crm.person_entity(4), "person:4");
    crm.person(P {
        email: Some("a@x.io"),
        linkedin: Some("https://www.linkedin.com/in/ann-lee/"),
        ..p(7, "Ann Lee")
    });
    let s = crm.resolve();
    assert_eq!(s.people.merges_by_rule, 1);
    for id in [1, 4, 7] {
        assert_eq!(crm.person_entity(id), "person:1");
    }
    let (merged_into, deleted): (Option<String>, bool) = crm
        .conn()
        .query_row(
            "SELECT merged_into, deleted_at IS NOT NULL FROM entities WHERE entity_id = 'person:4'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(merged_into.as_deref(), Some("person:1"));
    assert!(deleted);
    let (decided_by, winner, loser): (String, String, String) = crm
        .conn()
        .query_row(
            "SELECT decided_by, winner, loser FROM entity_merges",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (decided_by.as_str(), winner.as_str(), loser.as_str()),
        ("rule", "person:1", "person:4")
    );
    assert_eq!(
        crm.count("SELECT count(*) FROM entity_merge_rows WHERE side = 'loser' AND source_id = 4"),
        1
    );
    // The merge is durable: deleting the bridge does not resurrect person:4.
    crm.conn()
        .execute(
            "UPDATE people SET deleted_at = '2026-02-01T00:00:00.000Z' WHERE id = 7",
            [],
        )
        .unwrap();
    let s = crm.resolve();
    assert_eq!(s.people.merges_respected, 1);
    assert_eq!(crm.person_entity(4), "person:1");
    let again = crm.resolve();
    assert_eq!(again.entity_writes, 0);
}

#[test]
fn an_edit_that_removes_the_evidence_splits_and_the_anchor_keeps_the_id() {
    let crm = Crm::new();
    crm.person(P {
        email: Some("ann@x.io"),
        ..p(1, "Ann Lee")
    });
    crm.person(P {
        email: Some("ann@x.io"),
        ..p(2, "Ann Lee")
    });
    crm.person(P {
        email: Some("ann@x.io"),
        ..p(3, "Ann Lee")
    });
    crm.resolve();
    crm.conn()
        .execute(
            "UPDATE people SET email = 'someone.else@y.io' WHERE id = 1",
            [],
        )
        .unwrap();
    let s = crm.resolve();
    assert_eq!(s.people.splits, 1);
    assert_eq!(crm.person_entity(1), "person:1");
    assert_eq!(crm.person_entity(2), "person:2");
    assert_eq!(crm.person_entity(3), "person:2");
    assert_eq!(s.people.links_moved, 2);
}

#[test]
fn deleted_rows_retire_their_entity_and_revive_it_when_they_return() {
    let crm = Crm::new();
    three_people(&crm);
    crm.resolve();
    crm.conn()
        .execute(
            "UPDATE people SET deleted_at = '2026-02-01 10:00:00' WHERE id = 3",
            [],
        )
        .unwrap();
    let s = crm.resolve();
    assert_eq!(s.people.links_removed, 1);
    assert_eq!(s.people.entities_retired, 1);
    assert!(crm.entity_of("people", 3).is_none());
    assert_eq!(crm.count("SELECT count(*) FROM entities WHERE entity_id = 'person:3' AND deleted_at IS NOT NULL AND merged_into IS NULL"), 1);
    crm.conn()
        .execute("UPDATE people SET deleted_at = NULL WHERE id = 3", [])
        .unwrap();
    let s = crm.resolve();
    assert_eq!(s.people.entities_revived, 1);
    assert_eq!(s.people.entities_created, 0);
    assert_eq!(crm.person_entity(3), "person:3");
    // A hard delete is the same as a soft one.
    crm.conn()
        .execute("DELETE FROM people WHERE id = 2", [])
        .unwrap();
    let s = crm.resolve();
    assert_eq!(s.people.links_removed, 1);
    assert_eq!(crm.person_entity(1), "person:1");
}

#[test]
fn rows_inserted_between_runs_into_a_real_file_keep_every_id() {
    let crm = Crm::new();
    for i in 1..=50 {
        crm.person(P {
            email: Some(&format!("p{}@x.io", i % 20)),
            ..p(i, "Pat Doe")
        });
    }
    crm.resolve();
    let ids_before: Vec<(i64, String)> = (1..=50).map(|i| (i, crm.person_entity(i))).collect();
    for i in 51..=80 {
        crm.person(P {
            email: Some(&format!("p{}@x.io", i % 25)),
            ..p(i, "Pat Doe")
        });
    }
    crm.resolve();
    for (i, e) in ids_before {
        assert_eq!(crm.person_entity(i), e, "people:{i} moved");
    }
    for i in 51..=80 {
        let e = crm.person_entity(i);
        let n: i64 = e.trim_start_matches("person:").parse().unwrap();
        assert!(n <= i);
    }
}

#[test]
fn a_second_run_waits_for_the_lease() {
    let crm = Crm::new();
    three_people(&crm);
    {
        let mut conn = crm.conn();
        let tx = conn.transaction().unwrap();
        phase0::acquire_lease(
            &tx,
            &LeaseRequest {
                name: "resolve".into(),
                holder: "someone-else".into(),
                pid: std::process::id(),
                hostname: "other-host".into(),
                ttl: std::time::Duration::from_secs(600),
            },
            Timestamp::now(),
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let mut conn = crm.conn();
    let options = RunOptions {
        dry_run: false,
        holder: "me".into(),
        hostname: "test-host".into(),
        full: false,
    };
    let err = resolve(&mut conn, &ResolveConfig::default(), &options, &NoProgress).unwrap_err();
    assert!(matches!(err, ResolveError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("someone-else"));
    // A dry run needs no lease.
    let dry = resolve(
        &mut conn,
        &ResolveConfig::default(),
        &RunOptions {
            dry_run: true,
            ..options
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(dry.people.entities_created, 2);
    drop(conn);
    assert_eq!(crm.count("SELECT count(*) FROM entities"), 0);
}

#[test]
fn bad_configuration_is_refused() {
    let crm = Crm::new();
    let mut conn = crm.conn();
    let options = RunOptions {
        dry_run: true,
        holder: "me".into(),
        hostname: "h".into(),
        full: false,
    };
    let config = ResolveConfig {
        write_batch: 0,
        ..ResolveConfig::default()
    };
    let err = resolve(&mut conn, &config, &options, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("write_batch"), "{err}");
    let parsed: Result<ResolveConfig, _> = serde_json::from_str(r#"{"default_region": "XX"}"#);
    assert!(parsed.is_err());
    let parsed: Result<ResolveConfig, _> = serde_json::from_str(r#"{"max_blok_size": 3}"#);
    assert!(parsed.is_err(), "unknown fields are refused");
    let parsed: ResolveConfig = serde_json::from_str(r#"{"default_region": "gb"}"#).unwrap();
    assert_eq!(parsed.default_region.code(), "GB");
}
