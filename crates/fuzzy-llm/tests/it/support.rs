//! A CRM on a real SQLite file with entities, links and candidates, and chat clients
//! with test-friendly timeouts.

use std::path::PathBuf;
use std::time::Duration;

use crm_store::phase0::{self, Candidate, Entity, EntityKind, EntityLink, NewCandidate};
use crm_store::{Store, StoreConfig, Timestamp};
use embed::http::{HttpClient, HttpClientConfig};
use fuzzy_llm::chat::{ChatClient, ChatConfig};
use fuzzy_llm::runner::RunOptions;
use rusqlite::params;
use tempfile::TempDir;

pub(crate) const MODEL: &str = "judge-1";

/// An HTTP config that retries quickly.
pub(crate) fn http_config(url: &str) -> HttpClientConfig {
    let mut config = HttpClientConfig::new(url);
    config.initial_backoff = Duration::from_millis(5);
    config.max_backoff = Duration::from_secs(2);
    config.max_retries = 3;
    config.request_timeout = Duration::from_secs(20);
    config.max_concurrency = 1;
    config
}

pub(crate) fn client_with(config: HttpClientConfig) -> ChatClient {
    ChatClient::new(HttpClient::new(config).unwrap(), ChatConfig::new(MODEL)).unwrap()
}

pub(crate) fn client(url: &str) -> ChatClient {
    client_with(http_config(url))
}

pub(crate) fn options() -> RunOptions {
    RunOptions::default()
}

/// A CRM in a temporary directory, with helpers to add rows, entities and candidates
/// the way the resolver would have left them.
pub(crate) struct Crm {
    _dir: TempDir,
    pub(crate) path: PathBuf,
    pub(crate) store: Store,
}

const T: &str = "2026-01-01T00:00:00.000Z";

impl Crm {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        let mut config = StoreConfig::new(&path);
        config.create_if_missing = true;
        let store = Store::open(config).unwrap();
        Self {
            _dir: dir,
            path,
            store,
        }
    }

    fn entity(&self, kind: EntityKind, source_id: i64, name: &str) -> String {
        let mut conn = self.store.writer().unwrap();
        let tx = conn.transaction().unwrap();
        let id = kind.entity_id(source_id);
        let now = Timestamp::parse(T).unwrap();
        phase0::insert_entity(
            &tx,
            &Entity {
                entity_id: id.clone(),
                kind,
                display_name: Some(name.to_owned()),
                created_at: now,
                updated_at: now,
                deleted_at: None,
                merged_into: None,
            },
        )
        .unwrap();
        phase0::upsert_link(
            &tx,
            &EntityLink {
                source_table: kind.source_table(),
                source_id,
                entity_id: id.clone(),
                rule: "singleton".to_owned(),
                linked_at: now,
            },
        )
        .unwrap();
        tx.commit().unwrap();
        id
    }

    /// A person row and its own entity; returns the entity id.
    pub(crate) fn person(
        &self,
        id: i64,
        name: &str,
        email: &str,
        linkedin: Option<&str>,
    ) -> String {
        self.sql(
            "INSERT INTO people (id, full_name, email, linkedin_url, title, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 'Partner', ?5, ?5)",
            params![id, name, email, linkedin, T],
        );
        self.entity(EntityKind::Person, id, name)
    }

    /// An organisation row and its own entity; returns the entity id.
    pub(crate) fn organization(&self, id: i64, name: &str, domain: Option<&str>) -> String {
        self.sql(
            "INSERT INTO organizations (id, name, domain, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![id, name, domain, T],
        );
        self.entity(EntityKind::Organization, id, name)
    }

    pub(crate) fn candidate(&self, a: &str, b: &str, score: f64) -> i64 {
        let kind = if a.starts_with("person:") {
            EntityKind::Person
        } else {
            EntityKind::Organization
        };
        let mut conn = self.store.writer().unwrap();
        let tx = conn.transaction().unwrap();
        let c = phase0::upsert_candidate(
            &tx,
            &NewCandidate {
                kind,
                entity_a: a.to_owned(),
                entity_b: b.to_owned(),
                reasons: vec!["nickname".to_owned()],
                score,
            },
            Timestamp::now(),
        )
        .unwrap();
        tx.commit().unwrap();
        c.id
    }

    /// `n` pairs of people, each pair flagged; returns the candidate ids (scores
    /// descending with the index).
    pub(crate) fn pairs(&self, n: i64) -> Vec<i64> {
        (0..n)
            .map(|i| {
                let a = self.person(
                    1000 + 2 * i,
                    &format!("Robert Smith{i}"),
                    &format!("bob{i}@acme.com"),
                    None,
                );
                let b = self.person(
                    1001 + 2 * i,
                    &format!("Bob Smith{i}"),
                    &format!("bob{i}@gmail.com"),
                    None,
                );
                self.candidate(&a, &b, 0.5 + (n - i) as f64 / (10.0 * n as f64))
            })
            .collect()
    }

    pub(crate) fn get(&self, candidate: i64) -> Candidate {
        let conn = self.store.reader().unwrap();
        phase0::get_candidate(&conn, candidate).unwrap().unwrap()
    }

    pub(crate) fn sql(&self, sql: &str, params: impl rusqlite::Params) {
        let conn = self.store.writer().unwrap();
        conn.execute(sql, params).unwrap();
    }

    pub(crate) fn count(&self, sql: &str) -> i64 {
        let conn = self.store.reader().unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Everything the fuzzy tier may write, as text, to compare before and after.
    pub(crate) fn snapshot(&self) -> String {
        let conn = self.store.reader().unwrap();
        let mut out = String::new();
        for table in [
            "entity_candidates",
            "entity_merges",
            "entities",
            "entity_links",
            "ingest_runs",
        ] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2"))
                .unwrap();
            let columns = stmt.column_count();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    let cells: Vec<String> = (0..columns)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect();
                    Ok(cells.join("|"))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            out.push_str(&format!("{table}: {rows:#?}\n"));
        }
        out
    }
}
