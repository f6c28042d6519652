//! Shared helpers: a CRM file in a temp dir, row inserts, runs, and reads of the
//! entity tables.

use std::path::PathBuf;

use crm_store::{Store, StoreConfig};
use entity_resolve::{NoProgress, ResolveConfig, ResolveSummary, RunOptions, resolve};
use rusqlite::{Connection, params};

/// A CRM file with the Phase-0 tables, removed with its directory.
pub struct Crm {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub store: Store,
}

impl Crm {
    /// An empty CRM.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let mut config = StoreConfig::new(&path);
        config.create_if_missing = true;
        let store = Store::open(config).unwrap();
        Self { dir, path, store }
    }

    /// Opens an existing CRM file (e.g. a generated one).
    pub fn open(dir: tempfile::TempDir, path: PathBuf) -> Self {
        let store = Store::open(StoreConfig::new(&path)).unwrap();
        Self { dir, path, store }
    }

    pub fn conn(&self) -> crm_store::PooledConn {
        self.store.writer().unwrap()
    }

    /// Runs the resolver with the default configuration.
    pub fn resolve(&self) -> ResolveSummary {
        self.resolve_with(false)
    }

    pub fn resolve_with(&self, dry_run: bool) -> ResolveSummary {
        let mut conn = self.conn();
        let options = RunOptions {
            dry_run,
            holder: format!("test-{}", std::process::id()),
            hostname: "test-host".into(),
        };
        resolve(&mut conn, &ResolveConfig::default(), &options, &NoProgress).unwrap()
    }

    pub fn org(&self, id: i64, name: &str, domain: Option<&str>) {
        self.conn()
            .execute(
                "INSERT INTO organizations (id, name, domain, created_at, updated_at) VALUES (?1, ?2, ?3, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                params![id, name, domain],
            )
            .unwrap();
    }

    pub fn person(&self, p: P<'_>) {
        self.conn()
            .execute(
                "INSERT INTO people (id, first_name, last_name, full_name, email, phone, organization_id, linkedin_url, title, location, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                params![p.id, p.first, p.last, p.full, p.email, p.phone, p.org, p.linkedin, p.title, p.location],
            )
            .unwrap();
    }

    /// The entity id linked to a source row.
    pub fn entity_of(&self, table: &str, id: i64) -> Option<String> {
        self.conn()
            .query_row(
                "SELECT entity_id FROM entity_links WHERE source_table = ?1 AND source_id = ?2",
                params![table, id],
                |r| r.get(0),
            )
            .ok()
    }

    pub fn person_entity(&self, id: i64) -> String {
        self.entity_of("people", id)
            .unwrap_or_else(|| panic!("people:{id} has no link"))
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// A fingerprint of every entity table, to prove a run wrote nothing.
    pub fn snapshot(&self) -> String {
        snapshot(&self.conn())
    }
}

pub fn snapshot(conn: &Connection) -> String {
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
pub struct P<'a> {
    pub id: i64,
    pub first: Option<&'a str>,
    pub last: Option<&'a str>,
    pub full: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub org: Option<i64>,
    pub linkedin: Option<&'a str>,
    pub title: Option<&'a str>,
    pub location: Option<&'a str>,
}

/// A person named `full` (first and last split at the first space).
pub fn p(id: i64, full: &str) -> P<'_> {
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
