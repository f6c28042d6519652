//! The CRM keeps writing while syncs run: the writer is never refused, nothing is missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crm_store::Timestamp;
use crm_store::rusqlite::{Connection, params};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::behaviour::{assert_converged, base_time, seed};
use crate::support::*;

/// One CRM write, in its own short transaction, stamped with the wall clock.
fn write_once(conn: &mut Connection, rng: &mut ChaCha8Rng, n: u64) -> Result<(), String> {
    let at = Timestamp::now().to_canonical();
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    match rng.random_range(0..4) {
        0 => {
            let id = 10_000 + i64::try_from(n).unwrap_or(0);
            tx.execute(
                "INSERT INTO people (id, full_name, organization_id, bio, created_at, updated_at) \
                 VALUES (?1, ?2, 1, ?3, ?4, ?4)",
                params![id, format!("Writer {id}"), "Wrote this during a sync.", at],
            )
            .map_err(|e| e.to_string())?;
        }
        1 => {
            tx.execute(
                "UPDATE people SET bio = ?1, updated_at = ?2 WHERE id = ?3",
                params![format!("Edit {n} during a sync."), at, 10 + (n % 4) as i64],
            )
            .map_err(|e| e.to_string())?;
        }
        2 => {
            tx.execute(
                "UPDATE organizations SET name = ?1, updated_at = ?2 WHERE id = ?3",
                params![format!("Org renamed {n}"), at, 1 + (n % 2) as i64],
            )
            .map_err(|e| e.to_string())?;
        }
        _ => {
            tx.execute(
                "UPDATE interactions SET body = ?1, updated_at = ?2 WHERE id = ?3",
                params![
                    format!("Minutes, version {n}. Nothing decided."),
                    at,
                    20 + (n % 3) as i64
                ],
            )
            .map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_writer_is_never_refused_during_syncs_and_no_change_is_missed() {
    let h = Harness::new().await;
    seed(&h, base_time());
    let indexer = h
        .indexer(&h.index_dir("main"), "crm_chunks", sync_config())
        .await;
    indexer.sync(&no_stop()).await.expect("first sync");

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let stop = stop.clone();
        let writes = writes.clone();
        // The CRM's own connection: the usual 5 s busy timeout, foreign keys off.
        let mut conn = h.crm();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        std::thread::spawn(move || -> Vec<String> {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut errors = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = write_once(&mut conn, &mut rng, n) {
                    errors.push(e);
                }
                n += 1;
                writes.store(n, Ordering::SeqCst);
                // A busy CRM: a commit every couple of milliseconds.
                std::thread::sleep(Duration::from_millis(2));
            }
            errors
        })
    };

    // Syncs while the writer commits, until enough writes have landed during them.
    let mut syncs = 0;
    while writes.load(Ordering::SeqCst) < 300 || syncs < 3 {
        let report = indexer.sync(&no_stop()).await.expect("sync");
        assert!(report.error.is_none(), "{:?}", report.error);
        syncs += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let errors = writer.join().expect("writer thread");
    assert!(
        errors.is_empty(),
        "the CRM writer was refused: {:?}",
        &errors[..errors.len().min(5)]
    );

    indexer.sync(&no_stop()).await.expect("final sync");
    assert_converged(&h, &indexer, "after concurrent writes").await;
}
