//! Versioned Phase-0 migrations.

use crm_store::migrations::{self, latest_version};
use crm_store::{Store, StoreConfig, StoreError, contract};

use crate::helpers::{TempCrm, raw};

const PHASE0_TABLES: &[&str] = &[
    "entities",
    "entity_links",
    "entity_candidates",
    "entity_merges",
    "ingest_sync_state",
    "ingest_indexed_rows",
    "ingest_runs",
    "mcp_write_log",
    "substrate_leases",
];

fn schema_snapshot(conn: &rusqlite::Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn recorded(conn: &rusqlite::Connection) -> Vec<(i64, String, String)> {
    let mut stmt = conn
        .prepare(
            "SELECT version, name, applied_at FROM substrate_schema_migrations ORDER BY version",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn first_open_applies_every_migration_and_creates_the_phase0_tables() {
    let (t, store) = TempCrm::created();
    let all: Vec<i64> = migrations::migrations().iter().map(|m| m.version).collect();
    assert_eq!(store.applied_migrations(), all.as_slice());
    assert_eq!(store.migration_status().current, latest_version());
    let conn = t.raw();
    for table in PHASE0_TABLES {
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{table} missing");
    }
    for table in ["organizations", "people", "interactions", "deals"] {
        let index = format!("substrate_{table}_keyset");
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = ?1",
                [&index],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1, "{index} missing");
    }
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user_version, 0, "user_version belongs to the CRM");
}

#[test]
fn running_twice_is_a_no_op() {
    let (t, store) = TempCrm::created();
    drop(store);
    let before_schema = schema_snapshot(&t.raw());
    let before_recorded = recorded(&t.raw());
    let store = Store::open(t.config()).unwrap();
    assert!(store.applied_migrations().is_empty());
    drop(store);
    let mut conn = t.raw();
    let report = migrations::migrate(&mut conn, &t.path).unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.current, latest_version());
    assert_eq!(schema_snapshot(&conn), before_schema);
    assert_eq!(
        recorded(&conn),
        before_recorded,
        "applied_at must not be rewritten"
    );
}

#[test]
fn a_crm_that_already_has_the_tables_and_indexes_is_migrated_without_error() {
    // A CRM where someone created the Phase-0 tables by hand (e.g. by the Python pipeline)
    // but nothing is recorded: every statement is IF NOT EXISTS, so the migrations record
    // themselves without failing.
    let t = TempCrm::new();
    {
        let c = raw(&t.path);
        c.execute_batch(contract::CRM_SCHEMA_SQL).unwrap();
        for m in migrations::migrations() {
            c.execute_batch(m.sql).unwrap();
        }
    }
    let store = Store::open(StoreConfig::new(&t.path)).unwrap();
    assert_eq!(
        store.applied_migrations().len(),
        migrations::migrations().len()
    );
}

#[test]
fn a_newer_database_is_refused() {
    let (t, store) = TempCrm::created();
    drop(store);
    let newer = latest_version() + 1;
    t.raw()
        .execute(
            "INSERT INTO substrate_schema_migrations VALUES (?1, 'from_the_future', '2030-01-01T00:00:00.000Z')",
            [newer],
        )
        .unwrap();
    for migrate in [true, false] {
        let mut config = StoreConfig::new(&t.path);
        config.migrate = migrate;
        let err = Store::open(config).unwrap_err();
        let StoreError::SchemaTooNew { found, known, .. } = &err else {
            panic!("expected SchemaTooNew, got {err}");
        };
        assert_eq!((*found, *known), (newer, latest_version()));
        let msg = err.to_string();
        assert!(msg.contains(&t.path.display().to_string()), "{msg}");
        assert!(msg.contains(&newer.to_string()), "{msg}");
    }
}

#[test]
fn a_diverging_migration_name_is_refused() {
    let (t, store) = TempCrm::created();
    drop(store);
    t.raw()
        .execute(
            "UPDATE substrate_schema_migrations SET name = 'other' WHERE version = 1",
            [],
        )
        .unwrap();
    let err = Store::open(StoreConfig::new(&t.path)).unwrap_err();
    assert!(
        matches!(err, StoreError::MigrationMismatch { version: 1, .. }),
        "{err}"
    );
}

#[test]
fn open_without_migrate_reports_pending_versions_and_changes_nothing() {
    let t = TempCrm::new();
    raw(&t.path)
        .execute_batch(contract::CRM_SCHEMA_SQL)
        .unwrap();
    let mut config = StoreConfig::new(&t.path);
    config.migrate = false;
    let store = Store::open(config).unwrap();
    let all: Vec<i64> = migrations::migrations().iter().map(|m| m.version).collect();
    assert_eq!(store.migration_status().pending, all);
    assert_eq!(store.migration_status().current, 0);
    let n: i64 = t
        .raw()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'substrate_schema_migrations'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_failing_migration_rolls_back_and_names_itself() {
    // A CRM table named like a Phase-0 table but with another shape makes migration 1's
    // index creation fail: nothing of migration 1 may remain.
    let t = TempCrm::new();
    {
        let c = raw(&t.path);
        c.execute_batch(contract::CRM_SCHEMA_SQL).unwrap();
        c.execute_batch("CREATE TABLE entities (something_else TEXT)")
            .unwrap();
    }
    let err = Store::open(StoreConfig::new(&t.path)).unwrap_err();
    let StoreError::Migration { version, name, .. } = &err else {
        panic!("expected a migration error, got {err}");
    };
    assert_eq!((*version, *name), (1, "phase0_tables"));
    let conn = t.raw();
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'entity_links'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 0, "a failed migration must leave nothing behind");
    let recorded: i64 = conn
        .query_row(
            "SELECT count(*) FROM substrate_schema_migrations",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(recorded, 0);
}

#[test]
fn an_upgrade_drops_the_unused_entity_index_of_the_records() {
    // A database migrated by an older build (up to version 4) has the index on
    // `ingest_indexed_rows(entity_id)`; version 5 drops it, and nothing else changes.
    let (t, store) = TempCrm::created();
    drop(store);
    let index_count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema \
             WHERE type = 'index' AND name = 'substrate_ingest_indexed_rows_entity'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let latest = schema_snapshot(&t.raw());
    {
        let c = t.raw();
        assert_eq!(index_count(&c), 0, "a new database has no entity index");
        c.execute_batch(
            "CREATE INDEX substrate_ingest_indexed_rows_entity \
                 ON ingest_indexed_rows(entity_id); \
             DELETE FROM substrate_schema_migrations WHERE version = 5;",
        )
        .unwrap();
    }
    let store = Store::open(t.config()).unwrap();
    assert_eq!(store.applied_migrations(), &[5]);
    drop(store);
    let c = t.raw();
    assert_eq!(index_count(&c), 0);
    assert_eq!(schema_snapshot(&c), latest);
}
