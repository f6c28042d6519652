//! Whole-table reads the incremental sync uses to reconcile its records with the CRM.
//!
//! A sync finds changed rows through the keyset watermark; these scans find what a
//! watermark cannot see: rows hard-deleted from the CRM, rows that never reached the
//! index (inserted with a missing or old `updated_at`), records left pending by an
//! interrupted run, and rows whose canonical entity changed (merges and undos do not
//! touch the CRM rows). They read indexes rather than row data wherever they can, so a
//! sync of an unchanged 1M-row CRM stays well under a second.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use crate::error::{StoreError, sql};
use crate::rows::{SourceTable, text};
use crate::timestamp::Timestamp;

/// Every id of a source table (soft-deleted rows included), ascending.
///
/// `SELECT id` without `ORDER BY` lets SQLite scan its smallest covering index (a few
/// bytes per row) instead of the table's pages (the whole rows, bios and bodies
/// included); the ids are sorted here. 8 bytes per row: 8 MB for 1M rows.
pub fn source_ids(conn: &Connection, table: SourceTable) -> Result<Vec<i64>, StoreError> {
    let query = format!("SELECT id FROM {}", table.as_str());
    let mut stmt = conn
        .prepare_cached(&query)
        .map_err(sql(format!("reading the ids of `{table}`")))?;
    let mut ids: Vec<i64> = stmt
        .query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(sql(format!("reading the ids of `{table}`")))?;
    ids.sort_unstable();
    Ok(ids)
}

/// The parts of an `ingest_indexed_rows` record a reconciliation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRowKey {
    /// The source row.
    pub source_id: i64,
    /// How many chunks the record says the row has (an upper bound while pending).
    pub chunk_count: u32,
    /// Whether the record carries the caller's pending marker as its content hash.
    pub pending: bool,
    /// The entity id the record says the row's points carry.
    pub entity_id: Option<String>,
}

/// The records of `collection` for `table`, ordered by source id, with `pending` set on
/// those whose `content_hash` equals `pending_marker`.
pub fn indexed_row_keys(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
    pending_marker: &str,
) -> Result<Vec<IndexedRowKey>, StoreError> {
    let context = || format!("scanning the indexed `{table}` rows of {collection}");
    let mut stmt = conn
        .prepare_cached(
            "SELECT source_id, chunk_count, content_hash = ?3, entity_id FROM ingest_indexed_rows \
             WHERE collection = ?1 AND source_table = ?2 ORDER BY source_id",
        )
        .map_err(sql(context()))?;
    stmt.query_map(params![collection, table.as_str(), pending_marker], |r| {
        Ok(IndexedRowKey {
            source_id: r.get(0)?,
            chunk_count: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
            pending: r.get::<_, Option<bool>>(2)?.unwrap_or(false),
            entity_id: text(r, 3)?,
        })
    })
    .and_then(Iterator::collect)
    .map_err(sql(context()))
}

/// The entity links of `table`'s rows, `(source_id, entity_id)` ordered by source id.
pub fn entity_links_of_table(
    conn: &Connection,
    table: SourceTable,
) -> Result<Vec<(i64, String)>, StoreError> {
    let context = || format!("reading the entity links of `{table}`");
    let mut stmt = conn
        .prepare_cached(
            "SELECT source_id, entity_id FROM entity_links WHERE source_table = ?1 \
             ORDER BY source_id",
        )
        .map_err(sql(context()))?;
    stmt.query_map([table.as_str()], |r| {
        Ok((r.get(0)?, text(r, 1)?.unwrap_or_default()))
    })
    .and_then(Iterator::collect)
    .map_err(sql(context()))
}

/// A digest of what a reconciliation reads from the CRM for one table: every id, and
/// every entity link, both in source-id order (as [`source_ids`] and
/// [`entity_links_of_table`] return them). Equal digests mean the same ids and links.
pub fn reconcile_digest(ids: &[i64], links: &[(i64, String)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ids\0");
    hasher.update((ids.len() as u64).to_le_bytes());
    for id in ids {
        hasher.update(id.to_le_bytes());
    }
    hasher.update(b"links\0");
    hasher.update((links.len() as u64).to_le_bytes());
    for (id, entity) in links {
        hasher.update(id.to_le_bytes());
        hasher.update((entity.len() as u64).to_le_bytes());
        hasher.update(entity.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The digest recorded by the last complete reconciliation of `table` in `collection`,
/// unless a record of that table was written since (triggers on `ingest_indexed_rows`
/// delete it on any insert, update or delete).
pub fn reconciled_digest(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached(
        "SELECT digest FROM ingest_reconciled WHERE collection = ?1 AND source_table = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![collection, table.as_str()], |r| r.get(0))
            .optional()
    })
    .map_err(sql(format!(
        "reading the reconciliation mark of {collection}/{table}"
    )))
}

/// Records that the records of `table` in `collection` agree with the CRM whose ids and
/// links have `digest` (see [`reconcile_digest`]).
pub fn set_reconciled_digest(
    tx: &Transaction<'_>,
    collection: &str,
    table: SourceTable,
    digest: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO ingest_reconciled (collection, source_table, digest, reconciled_at) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (collection, source_table) DO UPDATE SET \
         digest = excluded.digest, reconciled_at = excluded.reconciled_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            collection,
            table.as_str(),
            digest,
            Timestamp::now().to_canonical()
        ])
    })
    .map_err(sql(format!(
        "recording the reconciliation of {collection}/{table}"
    )))?;
    Ok(())
}

/// Whether any row is recorded as indexed in `collection` (without counting them all).
pub fn has_indexed_rows(conn: &Connection, collection: &str) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM ingest_indexed_rows WHERE collection = ?1)")
        .and_then(|mut s| s.query_row([collection], |r| r.get(0)))
        .map_err(sql(format!("looking for indexed rows of {collection}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path().join("crm.db"));
        config.create_if_missing = true;
        let store = Store::open(config).unwrap();
        (dir, store)
    }

    #[test]
    fn ids_come_from_a_covering_index_not_the_rows() {
        let (_dir, store) = store();
        let conn = store.writer().unwrap();
        for table in SourceTable::ALL {
            let plan: Vec<String> = conn
                .prepare(&format!(
                    "EXPLAIN QUERY PLAN SELECT id FROM {}",
                    table.as_str()
                ))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter().any(|p| p.contains("COVERING INDEX")),
                "{table}: {plan:?}"
            );
        }
    }

    #[test]
    fn scans_return_sorted_rows_with_their_marks() {
        let (_dir, store) = store();
        let conn = store.writer().unwrap();
        conn.execute_batch(
            "INSERT INTO people (id, full_name, organization_id, created_at, updated_at) VALUES
                 (30, 'c', NULL, '2026-01-01', '2026-01-01'),
                 (10, 'a', NULL, '2026-01-01', '2026-01-01'),
                 (20, 'b', NULL, '2026-01-01', '2026-01-01');
             INSERT INTO entities (entity_id, kind, created_at, updated_at)
                 VALUES ('person:10', 'person', '2026-01-01', '2026-01-01');
             INSERT INTO entity_links VALUES ('people', 20, 'person:10', 'email', '2026-01-01'),
                                             ('people', 10, 'person:10', 'email', '2026-01-01');
             INSERT INTO ingest_indexed_rows VALUES
                 ('c', 'people', 20, NULL, 'pending', 3, '2026-01-01'),
                 ('c', 'people', 10, 'person:10', 'abc', 1, '2026-01-01'),
                 ('other', 'people', 5, NULL, 'abc', 1, '2026-01-01');",
        )
        .unwrap();
        assert_eq!(
            source_ids(&conn, SourceTable::People).unwrap(),
            vec![10, 20, 30]
        );
        let keys = indexed_row_keys(&conn, "c", SourceTable::People, "pending").unwrap();
        assert_eq!(
            keys,
            vec![
                IndexedRowKey {
                    source_id: 10,
                    chunk_count: 1,
                    pending: false,
                    entity_id: Some("person:10".into())
                },
                IndexedRowKey {
                    source_id: 20,
                    chunk_count: 3,
                    pending: true,
                    entity_id: None
                },
            ]
        );
        assert_eq!(
            entity_links_of_table(&conn, SourceTable::People).unwrap(),
            vec![(10, "person:10".to_owned()), (20, "person:10".to_owned())]
        );
        assert!(
            entity_links_of_table(&conn, SourceTable::Deals)
                .unwrap()
                .is_empty()
        );
        assert!(has_indexed_rows(&conn, "c").unwrap());
        assert!(!has_indexed_rows(&conn, "nope").unwrap());
    }

    #[test]
    fn any_record_write_forgets_the_reconciliation_of_its_table_only() {
        let (_dir, store) = store();
        let mut conn = store.writer().unwrap();
        let mark = |conn: &mut Connection, table: SourceTable| {
            let tx = conn.transaction().unwrap();
            set_reconciled_digest(&tx, "c", table, "d1").unwrap();
            tx.commit().unwrap();
        };
        let marked =
            |conn: &Connection, table: SourceTable| reconciled_digest(conn, "c", table).unwrap();
        for table in [SourceTable::People, SourceTable::Deals] {
            mark(&mut conn, table);
        }
        assert_eq!(marked(&conn, SourceTable::People).as_deref(), Some("d1"));

        let writes = [
            "INSERT INTO ingest_indexed_rows VALUES ('c', 'people', 1, NULL, 'h', 1, '2026-01-01')",
            "UPDATE ingest_indexed_rows SET content_hash = 'h2' WHERE source_id = 1",
            "DELETE FROM ingest_indexed_rows WHERE source_id = 1",
        ];
        for write in writes {
            mark(&mut conn, SourceTable::People);
            conn.execute(write, []).unwrap();
            assert_eq!(marked(&conn, SourceTable::People), None, "{write}");
            assert_eq!(
                marked(&conn, SourceTable::Deals).as_deref(),
                Some("d1"),
                "{write} touched another table's mark"
            );
        }
        // A record of another collection leaves this one's marks alone.
        mark(&mut conn, SourceTable::People);
        conn.execute(
            "INSERT INTO ingest_indexed_rows VALUES ('other', 'people', 1, NULL, 'h', 1, '2026-01-01')",
            [],
        )
        .unwrap();
        assert_eq!(marked(&conn, SourceTable::People).as_deref(), Some("d1"));

        let tx = conn.transaction().unwrap();
        crate::phase0::reset_collection(&tx, "c").unwrap();
        tx.commit().unwrap();
        assert_eq!(marked(&conn, SourceTable::Deals), None);
    }

    #[test]
    fn digests_tell_ids_and_links_apart() {
        let links = |pairs: &[(i64, &str)]| -> Vec<(i64, String)> {
            pairs.iter().map(|(i, e)| (*i, (*e).to_owned())).collect()
        };
        let base = reconcile_digest(&[1, 2, 3], &links(&[(1, "person:1")]));
        assert_eq!(
            base,
            reconcile_digest(&[1, 2, 3], &links(&[(1, "person:1")]))
        );
        for other in [
            reconcile_digest(&[1, 2], &links(&[(1, "person:1")])),
            reconcile_digest(&[1, 2, 4], &links(&[(1, "person:1")])),
            reconcile_digest(&[1, 2, 3], &links(&[(1, "person:2")])),
            reconcile_digest(&[1, 2, 3], &links(&[(2, "person:1")])),
            reconcile_digest(&[1, 2, 3], &[]),
            // Moving bytes between an entity id and the next id must not collide.
            reconcile_digest(&[1, 2, 3], &links(&[(1, "person:1"), (2, "")])),
        ] {
            assert_ne!(base, other);
        }
    }
}
