//! Shared helpers: a CRM file in a temp dir, row inserts, runs, and reads of the
//! entity tables.

use std::path::PathBuf;

use crm_store::{Store, StoreConfig};
use entity_resolve::{NoProgress, ResolveConfig, ResolveSummary, RunOptions, resolve};
use rusqlite::{Connection, params};

/// A CRM file with the Phase-0 tables, removed with its directory.
pub(crate) struct Crm {
    /// Kept for its `Drop`: the directory goes when the test ends.
    _dir: tempfile::TempDir,
    pub(crate) store: Store,
}

impl Crm {
    /// An empty CRM.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let mut config = StoreConfig::new(&path);
        config.create_if_missing = true;
        let store = Store::open(config).unwrap();
        Self { _dir: dir, store }
    }

    /// Opens an existing CRM file (e.g. a generated one).
    pub(crate) fn open(dir: tempfile::TempDir, path: PathBuf) -> Self {
        let store = Store::open(StoreConfig::new(&path)).unwrap();
        Self { _dir: dir, store }
    }

    pub(crate) fn conn(&self) -> crm_store::PooledConn {
        self.store.writer().unwrap()
    }

    /// Runs the resolver with the default configuration.
    pub(crate) fn resolve(&self) -> ResolveSummary {
        self.resolve_with(false)
    }

    pub(crate) fn resolve_with(&self, dry_run: bool) -> ResolveSummary {
        let mut conn = self.conn();
        let options = RunOptions {
            dry_run,
            holder: format!("test-{}", std::process::id()),
            hostname: "test-host".into(),
            full: false,
        };
        resolve(&mut conn, &ResolveConfig::default(), &options, &NoProgress).unwrap()
    }

    pub(crate) fn org(&self, id: i64, name: &str, domain: Option<&str>) {
        self.conn()
            .execute(
                "INSERT INTO organizations (id, name, domain, created_at, updated_at) VALUES (?1, ?2, ?3, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                params![id, name, domain],
            )
            .unwrap();
    }

    pub(crate) fn person(&self, p: P<'_>) {
        self.conn()
            .execute(
                "INSERT INTO people (id, first_name, last_name, full_name, email, phone, organization_id, linkedin_url, title, location, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                params![p.id, p.first, p.last, p.full, p.email, p.phone, p.org, p.linkedin, p.title, p.location],
            )
            .unwrap();
    }

    /// The entity id linked to a source row.
    pub(crate) fn entity_of(&self, table: &str, id: i64) -> Option<String> {
        self.conn()
            .query_row(
                "SELECT entity_id FROM entity_links WHERE source_table = ?1 AND source_id = ?2",
                params![table, id],
                |r| r.get(0),
            )
            .ok()
    }

    pub(crate) fn person_entity(&self, id: i64) -> String {
        self.entity_of("people", id)
            .unwrap_or_else(|| panic!("people:{id} has no link"))
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A fingerprint of every entity table, to prove a run wrote nothing.
    pub(crate) fn snapshot(&self) -> String {
        snapshot(&self.conn())
    }
}

pub(crate) fn snapshot(conn: &Connection) -> String {
    let mut out = String::new();
    for (table, order) in [
        ("entities", "entity_id"),
        ("entity_links", "source_table, source_id"),
        ("entity_candidates", "id"),
        ("entity_merges", "id"),
        ("entity_merge_rows", "merge_id, side, source_id"),
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                let mut line = String::new();
                for i in 0..n {
                    let v: rusqlite::types::Value = r.get(i)?;
                    line.push_str(&format!("{v:?}|"));
                }
                Ok(line)
            })
            .unwrap();
        for row in rows {
            out.push_str(table);
            out.push(':');
            out.push_str(&row.unwrap());
            out.push('\n');
        }
    }
    out
}

/// A person row to insert.
#[derive(Default, Clone, Copy)]
pub(crate) struct P<'a> {
    pub(crate) id: i64,
    pub(crate) first: Option<&'a str>,
    pub(crate) last: Option<&'a str>,
    pub(crate) full: &'a str,
    pub(crate) email: Option<&'a str>,
    pub(crate) phone: Option<&'a str>,
    pub(crate) org: Option<i64>,
    pub(crate) linkedin: Option<&'a str>,
    pub(crate) title: Option<&'a str>,
    pub(crate) location: Option<&'a str>,
}

impl P<'_> {
    /// The same row with another id.
    pub(crate) fn with_id(self, id: i64) -> Self {
        Self { id, ..self }
    }
}

/// A person named `full` (first and last split at the last space).
pub(crate) fn p(id: i64, full: &str) -> P<'_> {
    let (first, last) = full
        .split_once(' ')
        .map_or((None, None), |(f, l)| (Some(f), Some(l)));
    P {
        id,
        first,
        last,
        full,
        ..P::default()
    }
}
