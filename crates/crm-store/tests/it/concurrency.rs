//! WAL concurrency: the CRM keeps writing while the substrate reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crm_store::phase0::{self, RunStatus};
use crm_store::queries::{self, KeysetPage};
use crm_store::{Person, Timestamp};

use crate::fixtures;
use crate::helpers::{TempCrm, raw};

/// The CRM's own connection: a plain rusqlite connection with its own busy timeout.
fn crm_connection(path: &std::path::Path, busy: Duration) -> rusqlite::Connection {
    let c = raw(path);
    c.busy_timeout(busy).unwrap();
    c
}

#[test]
fn a_writer_commits_while_a_long_read_transaction_is_open() {
    let (t, store) = TempCrm::created();
    for id in 1..=100 {
        fixtures::person(
            &t.raw(),
            id,
            &format!("Person {id}"),
            None,
            "2026-01-01T00:00:00.000Z",
        );
    }
    let reader = store.reader().unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let before: i64 = reader
        .query_row("SELECT count(*) FROM people", [], |r| r.get(0))
        .unwrap();
    assert_eq!(before, 100);

    // The CRM writes with no busy timeout at all: it must never need one because of us.
    let crm = crm_connection(&t.path, Duration::ZERO);
    for id in 101..=150 {
        fixtures::person(
            &crm,
            id,
            &format!("Person {id}"),
            None,
            "2026-01-02T00:00:00.000Z",
        );
    }
    crm.execute("UPDATE people SET title = 'Partner' WHERE id = 1", [])
        .unwrap();

    // The read transaction still sees its snapshot ...
    let during: i64 = reader
        .query_row("SELECT count(*) FROM people", [], |r| r.get(0))
        .unwrap();
    assert_eq!(during, 100);
    reader.execute_batch("COMMIT").unwrap();
    // ... and the next one sees the writes.
    let after: i64 = reader
        .query_row("SELECT count(*) FROM people", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, 150);
}

#[test]
fn the_read_only_pool_cannot_write() {
    let (_t, store) = TempCrm::created();
    let reader = store.reader().unwrap();
    let err = reader
        .execute(
            "INSERT INTO organizations (name, created_at, updated_at) VALUES ('x', 'a', 'b')",
            [],
        )
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
}

#[test]
fn sync_style_readers_and_writers_never_make_the_crm_writer_fail() {
    let (t, store) = TempCrm::created();
    {
        let c = t.raw();
        for id in 1..=2_000 {
            fixtures::person(
                &c,
                id,
                &format!("Person {id}"),
                None,
                "2026-01-01T00:00:00.000Z",
            );
        }
    }
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let scans = Arc::new(AtomicU64::new(0));

    // Two sync-style readers: keyset scans in short read transactions, in a loop.
    let mut handles = Vec::new();
    for _ in 0..2 {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        let scans = Arc::clone(&scans);
        handles.push(std::thread::spawn(move || {
            let conn = store.reader().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let mut after = None;
                loop {
                    let page: KeysetPage<Person> = queries::keyset_page(&conn, after, 250).unwrap();
                    let Some(next) = page.next else { break };
                    after = Some(next);
                }
                scans.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // A sync-style writer: short Phase-0 write transactions through the store's writer.
    {
        let store = Arc::clone(&store);
        let stop = Arc::clone(&stop);
        handles.push(std::thread::spawn(move || {
            let mut conn = store.writer().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let tx = conn.transaction().unwrap();
                let run = phase0::start_run(&tx, "sync", Timestamp::now()).unwrap();
                phase0::finish_run(
                    &tx,
                    run,
                    RunStatus::Ok,
                    &serde_json::json!({"rows": 1}),
                    None,
                    Timestamp::now(),
                )
                .unwrap();
                tx.commit().unwrap();
            }
        }));
    }

    // The CRM: many small write transactions with its usual busy timeout. Every one must
    // succeed; a failure here would be SQLITE_BUSY beyond the timeout.
    let mut crm = crm_connection(&t.path, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut commits = 0;
    let mut failures = Vec::new();
    while commits < 300 && Instant::now() < deadline {
        let result = (|| -> rusqlite::Result<()> {
            let tx = crm.transaction()?;
            tx.execute(
                "UPDATE people SET title = ?1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE id = ?2",
                rusqlite::params![format!("Title {commits}"), commits % 2_000 + 1],
            )?;
            tx.execute(
                "INSERT INTO organizations (name, created_at, updated_at) \
                 VALUES (?1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                [format!("Org {commits}")],
            )?;
            tx.commit()
        })();
        if let Err(e) = result {
            failures.push(e.to_string());
        }
        commits += 1;
    }
    // Make sure the readers really overlapped the writes before stopping them.
    let wait = Instant::now() + Duration::from_secs(30);
    while scans.load(Ordering::Relaxed) < 2 && Instant::now() < wait {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    assert!(failures.is_empty(), "CRM writes failed: {failures:?}");
    assert_eq!(commits, 300);
    assert!(scans.load(Ordering::Relaxed) >= 2, "readers did not run");
    let orgs: i64 = t
        .raw()
        .query_row("SELECT count(*) FROM organizations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orgs, 300);
}
