//! Versioned Phase-0 migrations (DESIGN §3).
//!
//! Each migration runs in its own `IMMEDIATE` transaction and is recorded in
//! `substrate_schema_migrations(version, name, applied_at)`; applied versions are skipped,
//! so running the list twice, or on a database that already has it, changes nothing.
//! `PRAGMA user_version` belongs to the CRM and is never touched. A database whose
//! recorded version is newer than this build is refused with [`StoreError::SchemaTooNew`].
//!
//! Released migrations are never edited: a change is a new version at the end of the list.
//! Indexes on the CRM's own tables are allowed (they do not alter rows) and are all named
//! `substrate_*`. Building them on a large CRM holds the write lock for a few seconds; run
//! the first migration when the CRM is quiet.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::error::{StoreError, sql};
use crate::timestamp::{NORMALISED_UPDATED_AT, Timestamp};

/// One versioned schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, strictly increasing from 1.
    pub version: i64,
    /// Short snake_case name, recorded next to the version.
    pub name: &'static str,
    /// The SQL, run with `execute_batch` inside the migration's transaction.
    pub sql: &'static str,
}

const BOOTSTRAP_SQL: &str = "CREATE TABLE IF NOT EXISTS substrate_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

const PHASE0_TABLES_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS entities (
    entity_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('person', 'organization')),
    display_name TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    deleted_at   TEXT,
    merged_into  TEXT
);
CREATE INDEX IF NOT EXISTS substrate_entities_kind ON entities(kind, entity_id);
CREATE INDEX IF NOT EXISTS substrate_entities_merged_into
    ON entities(merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE IF NOT EXISTS entity_links (
    source_table TEXT NOT NULL,
    source_id    INTEGER NOT NULL,
    entity_id    TEXT NOT NULL REFERENCES entities(entity_id),
    rule         TEXT NOT NULL,
    linked_at    TEXT NOT NULL,
    PRIMARY KEY (source_table, source_id)
);
CREATE INDEX IF NOT EXISTS substrate_entity_links_entity ON entity_links(entity_id);

CREATE TABLE IF NOT EXISTS entity_candidates (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('person', 'organization')),
    entity_a   TEXT NOT NULL,
    entity_b   TEXT NOT NULL,
    reasons    TEXT NOT NULL,
    score      REAL NOT NULL,
    status     TEXT NOT NULL DEFAULT 'pending'
               CHECK (status IN ('pending', 'merged', 'rejected', 'error')),
    decided_by TEXT,
    decided_at TEXT,
    raw_reply  TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (kind, entity_a, entity_b)
);
CREATE INDEX IF NOT EXISTS substrate_entity_candidates_status ON entity_candidates(status, id);
CREATE INDEX IF NOT EXISTS substrate_entity_candidates_b ON entity_candidates(entity_b);

CREATE TABLE IF NOT EXISTS entity_merges (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('person', 'organization')),
    winner     TEXT NOT NULL,
    loser      TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    confidence REAL,
    rationale  TEXT,
    created_at TEXT NOT NULL,
    undone_at  TEXT,
    undone_by  TEXT
);
CREATE INDEX IF NOT EXISTS substrate_entity_merges_winner ON entity_merges(winner);
CREATE INDEX IF NOT EXISTS substrate_entity_merges_loser ON entity_merges(loser);

CREATE TABLE IF NOT EXISTS ingest_sync_state (
    collection           TEXT NOT NULL,
    source_table         TEXT NOT NULL,
    watermark_updated_at TEXT,
    watermark_id         INTEGER,
    fingerprint          TEXT,
    last_run_at          TEXT,
    last_full_at         TEXT,
    PRIMARY KEY (collection, source_table)
);

CREATE TABLE IF NOT EXISTS ingest_indexed_rows (
    collection   TEXT NOT NULL,
    source_table TEXT NOT NULL,
    source_id    INTEGER NOT NULL,
    entity_id    TEXT,
    content_hash TEXT NOT NULL,
    chunk_count  INTEGER NOT NULL,
    indexed_at   TEXT NOT NULL,
    PRIMARY KEY (collection, source_table, source_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS substrate_ingest_indexed_rows_entity
    ON ingest_indexed_rows(entity_id);

CREATE TABLE IF NOT EXISTS ingest_runs (
    id          INTEGER PRIMARY KEY,
    step        TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
    counts_json TEXT,
    error       TEXT
);
CREATE INDEX IF NOT EXISTS substrate_ingest_runs_step ON ingest_runs(step, id);

CREATE TABLE IF NOT EXISTS mcp_write_log (
    id             INTEGER PRIMARY KEY,
    at             TEXT NOT NULL,
    tool           TEXT NOT NULL,
    client         TEXT,
    arguments_json TEXT NOT NULL,
    target_table   TEXT,
    target_id      INTEGER,
    before_json    TEXT,
    after_json     TEXT,
    outcome        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS substrate_mcp_write_log_target
    ON mcp_write_log(target_table, target_id);

CREATE TABLE IF NOT EXISTS substrate_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    hostname    TEXT NOT NULL,
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
"#;

/// The source rows each side of a merge held when it was decided, so that a re-run can
/// keep merged rows together and an undo knows which rows go back to the loser
/// (written and read by `entity-resolve`'s merge machinery).
const ENTITY_MERGE_ROWS_SQL: &str = "
CREATE TABLE IF NOT EXISTS entity_merge_rows (
    merge_id     INTEGER NOT NULL REFERENCES entity_merges(id),
    side         TEXT NOT NULL CHECK (side IN ('winner', 'loser')),
    source_table TEXT NOT NULL,
    source_id    INTEGER NOT NULL,
    PRIMARY KEY (merge_id, side, source_table, source_id)
) WITHOUT ROWID;
";

/// What the last full reconciliation of each table saw (see
/// `sync_queries::reconcile_digest`), and triggers that forget it as soon as any record
/// of that table changes, whoever writes it: a sync that finds the same digest and no
/// record written since can skip reading the records. The covering index lets the digest
/// read the entity links of a table without touching their rows.
const RECONCILED_SQL: &str = "
CREATE TABLE IF NOT EXISTS ingest_reconciled (
    collection    TEXT NOT NULL,
    source_table  TEXT NOT NULL,
    digest        TEXT NOT NULL,
    reconciled_at TEXT NOT NULL,
    PRIMARY KEY (collection, source_table)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS substrate_ingest_indexed_rows_insert
    AFTER INSERT ON ingest_indexed_rows
BEGIN
    DELETE FROM ingest_reconciled
        WHERE collection = NEW.collection AND source_table = NEW.source_table;
END;
CREATE TRIGGER IF NOT EXISTS substrate_ingest_indexed_rows_update
    AFTER UPDATE ON ingest_indexed_rows
BEGIN
    DELETE FROM ingest_reconciled
        WHERE (collection = OLD.collection AND source_table = OLD.source_table)
           OR (collection = NEW.collection AND source_table = NEW.source_table);
END;
CREATE TRIGGER IF NOT EXISTS substrate_ingest_indexed_rows_delete
    AFTER DELETE ON ingest_indexed_rows
BEGIN
    DELETE FROM ingest_reconciled
        WHERE collection = OLD.collection AND source_table = OLD.source_table;
END;
CREATE INDEX IF NOT EXISTS substrate_entity_links_table
    ON entity_links(source_table, source_id, entity_id);
";

/// The keyset and relation indexes on the CRM's own tables. The keyset expression must
/// stay byte-identical to [`NORMALISED_UPDATED_AT`] (a test checks that the planner uses
/// these indexes for the keyset queries).
fn source_indexes_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let mut s = String::new();
        for table in ["organizations", "people", "interactions", "deals"] {
            s.push_str(&format!(
                "CREATE INDEX IF NOT EXISTS substrate_{table}_keyset \
                 ON {table}({NORMALISED_UPDATED_AT}, id);\n"
            ));
        }
        s.push_str(
            "CREATE INDEX IF NOT EXISTS substrate_interaction_people_person \
                 ON interaction_people(person_id, interaction_id);
             CREATE INDEX IF NOT EXISTS substrate_people_organization ON people(organization_id);
             CREATE INDEX IF NOT EXISTS substrate_interactions_organization \
                 ON interactions(organization_id);
             CREATE INDEX IF NOT EXISTS substrate_deals_organization ON deals(organization_id);\n",
        );
        s
    })
}

/// Drops the index on `ingest_indexed_rows(entity_id)` of version 1: no query reads the
/// records by entity (merges find rows through `entity_links`), and keeping it cost every
/// record write a second B-tree entry at a random place, so that a batch's commit
/// rewrote about one more page per row.
const DROP_RECORDS_ENTITY_INDEX_SQL: &str = "
DROP INDEX IF EXISTS substrate_ingest_indexed_rows_entity;
";

/// Every migration this build knows, in order.
pub fn migrations() -> [Migration; 5] {
    [
        Migration {
            version: 1,
            name: "phase0_tables",
            sql: PHASE0_TABLES_SQL,
        },
        Migration {
            version: 2,
            name: "source_indexes",
            sql: source_indexes_sql(),
        },
        Migration {
            version: 3,
            name: "entity_merge_rows",
            sql: ENTITY_MERGE_ROWS_SQL,
        },
        Migration {
            version: 4,
            name: "ingest_reconciled",
            sql: RECONCILED_SQL,
        },
        Migration {
            version: 5,
            name: "drop_records_entity_index",
            sql: DROP_RECORDS_ENTITY_INDEX_SQL,
        },
    ]
}

/// The highest migration version this build knows.
pub fn latest_version() -> i64 {
    migrations().iter().map(|m| m.version).max().unwrap_or(0)
}

/// Where a database stands relative to this build's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The highest recorded version (0 when none is recorded).
    pub current: i64,
    /// The versions this build would apply, in order.
    pub pending: Vec<i64>,
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The versions applied by this call, in order (empty for a no-op).
    pub applied: Vec<i64>,
    /// The highest recorded version afterwards.
    pub current: i64,
}

/// Reads the recorded versions and checks them against this build, without changing
/// anything. Fails when the database is newer than this build or diverges from it.
pub fn status(conn: &Connection, path: &Path) -> Result<MigrationStatus, StoreError> {
    let recorded = recorded(conn)?;
    verify(&recorded, path)?;
    let current = recorded.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let pending = migrations()
        .iter()
        .map(|m| m.version)
        .filter(|v| !recorded.iter().any(|(r, _)| r == v))
        .collect();
    Ok(MigrationStatus { current, pending })
}

/// Applies every pending migration, each in its own transaction.
///
/// Safe to run concurrently from two processes: each migration re-checks, under the write
/// lock, whether it was applied meanwhile.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<MigrationReport, StoreError> {
    conn.execute_batch(BOOTSTRAP_SQL)
        .map_err(sql("creating substrate_schema_migrations"))?;
    let before = status(conn, path)?;
    let mut applied = Vec::new();
    for m in migrations() {
        if !before.pending.contains(&m.version) {
            continue;
        }
        let migration_err = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version: m.version,
            name: m.name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(migration_err)?;
        let already: Option<i64> = tx
            .query_row(
                "SELECT version FROM substrate_schema_migrations WHERE version = ?1",
                [m.version],
                |r| r.get(0),
            )
            .optional()
            .map_err(migration_err)?;
        if already.is_some() {
            continue;
        }
        tx.execute_batch(m.sql).map_err(migration_err)?;
        tx.execute(
            "INSERT INTO substrate_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, Timestamp::now().to_canonical()],
        )
        .map_err(migration_err)?;
        tx.commit().map_err(migration_err)?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied substrate migration"
        );
        applied.push(m.version);
    }
    let after = status(conn, path)?;
    Ok(MigrationReport {
        applied,
        current: after.current,
    })
}

fn recorded(conn: &Connection) -> Result<Vec<(i64, String)>, StoreError> {
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema \
             WHERE type = 'table' AND name = 'substrate_schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(sql("looking for substrate_schema_migrations"))?;
    if !exists {
        return Ok(Vec::new());
    }
    let mut stmt = conn
        .prepare("SELECT version, name FROM substrate_schema_migrations ORDER BY version")
        .map_err(sql("reading substrate_schema_migrations"))?;
    stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            crate::rows::text(r, 1)?.unwrap_or_default(),
        ))
    })
    .and_then(Iterator::collect)
    .map_err(sql("reading substrate_schema_migrations"))
}

fn verify(recorded: &[(i64, String)], path: &Path) -> Result<(), StoreError> {
    let known = latest_version();
    if let Some(found) = recorded.iter().map(|(v, _)| *v).max()
        && found > known
    {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (version, name) in recorded {
        if let Some(m) = migrations().iter().find(|m| m.version == *version)
            && m.name != name
        {
            return Err(StoreError::MigrationMismatch {
                path: path.to_path_buf(),
                version: *version,
                found: name.clone(),
                expected: m.name.to_owned(),
            });
        }
    }
    Ok(())
}
