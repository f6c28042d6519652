//! Timestamp normalisation and keyset paging over mixed timestamp formats.

use std::collections::HashSet;
use std::time::Duration;

use crm_store::queries::{self, KeysetPage};
use crm_store::{EPOCH_TEXT, Person, SourceTable, Timestamp, Watermark};

use crate::fixtures;
use crate::helpers::TempCrm;

#[test]
fn sqlite_and_rust_normalise_timestamps_identically() {
    let (_t, store) = TempCrm::created();
    let conn = store.writer().unwrap();
    for input in [
        "2026-06-05T13:55:12.123Z",
        "2026-06-05 13:55:12",
        "2026-06-05T13:55:12Z",
        "2026-06-05T13:55:12",
        "2026-06-05T13:55",
        "2026-06-05",
        "2026-06-05 13:55:12.5",
        "2026-06-05T13:55:12.123456Z",
        "2026-06-05T13:55:12.9996Z",
        "2026-06-05T13:55:12.1236Z",
        "2026-06-05T13:55:12.00049Z",
        "2026-06-05T13:55:59.99999+05:45",
        "2026-06-05T13:55:12+02:00",
        "2026-06-05T23:30:00-01:30",
        "2026-06-05 13:55:12 ",
        "2024-02-29T23:59:59.999Z",
        "1999-12-31T23:59:59.999Z",
    ] {
        let sqlite: String = conn
            .query_row(
                &format!(
                    "SELECT {}",
                    crm_store::NORMALISED_UPDATED_AT.replace("updated_at", "?1")
                ),
                [input],
                |r| r.get(0),
            )
            .unwrap();
        let rust = Timestamp::parse(input).unwrap().to_canonical();
        assert_eq!(rust, sqlite, "{input:?}");
    }
    for bad in [
        "garbage",
        "",
        "2026/06/05",
        "06/05/2026 13:55",
        "2026-06-05t13:55:12z",
    ] {
        let sqlite: String = conn
            .query_row(
                &format!(
                    "SELECT {}",
                    crm_store::NORMALISED_UPDATED_AT.replace("updated_at", "?1")
                ),
                [bad],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            sqlite, EPOCH_TEXT,
            "{bad:?} should read as the epoch in SQL"
        );
        assert!(Timestamp::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn bad_timestamps_keep_the_row_and_read_as_the_epoch() {
    let (t, store) = TempCrm::created();
    {
        let c = t.raw();
        fixtures::person(&c, 1, "Ada Lovelace", None, "not a date");
        fixtures::person(&c, 2, "Alan Turing", None, "2026-06-05 13:55:12");
        c.execute(
            "UPDATE people SET updated_at = NULL, created_at = 17 WHERE id = 2",
            [],
        )
        .unwrap();
        fixtures::person(&c, 3, "Grace Hopper", None, "2026-06-05T13:55:12.000Z");
        c.execute("UPDATE people SET deleted_at = 'sometime' WHERE id = 3", [])
            .unwrap();
    }
    let conn = store.reader().unwrap();
    let people: Vec<Person> = queries::rows_by_ids(&conn, &[1, 2, 3]).unwrap();
    assert_eq!(people.len(), 3);
    assert_eq!(people[0].updated_at, Timestamp::EPOCH);
    assert_eq!(people[1].updated_at, Timestamp::EPOCH);
    assert_eq!(people[1].created_at, Timestamp::EPOCH);
    // An unparsable deleted_at still marks the row deleted.
    assert_eq!(people[2].deleted_at, Some(Timestamp::EPOCH));
    // They come first in keyset order, and are synced.
    let page: KeysetPage<Person> = queries::keyset_page(&conn, None, 10).unwrap();
    let ids: Vec<i64> = page.rows.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

/// Rows with the two CRM formats, ties, fractional seconds, an offset, and bad text.
fn mixed_crm() -> (TempCrm, crm_store::Store, Vec<(Timestamp, i64)>) {
    let (t, store) = TempCrm::created();
    let stamps = [
        "2026-06-05T13:55:12.123Z",
        "2026-06-05 13:55:12",
        "2026-06-05T13:55:12.000Z",
        "2026-06-05 13:55:13",
        "2026-06-05T13:55:12.999Z",
        "2026-06-04T23:59:59Z",
        "2026-06-05T15:55:12+02:00",
        "garbage",
        "2026-06-05 13:55:12",
        "2025-01-01",
        "2026-06-05T13:55:12.5",
        "2026-06-05 13:55:12",
    ];
    let mut expected = Vec::new();
    {
        let c = t.raw();
        for (i, s) in stamps.iter().enumerate() {
            let id = (i as i64 + 1) * 10 % 37; // ids not in insertion order
            fixtures::person(&c, id, &format!("Person {id}"), None, s);
            let ts = Timestamp::parse(s).unwrap_or(Timestamp::EPOCH);
            expected.push((ts, id));
        }
    }
    expected.sort();
    (t, store, expected)
}

#[test]
fn keyset_paging_over_mixed_formats_returns_every_row_once_in_order() {
    let (_t, store, expected) = mixed_crm();
    let conn = store.reader().unwrap();
    for limit in [1, 2, 3, 5, 100] {
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page: KeysetPage<Person> = queries::keyset_page(&conn, after, limit).unwrap();
            let Some(next) = page.next else { break };
            assert!(page.rows.len() <= limit);
            seen.extend(page.rows.iter().map(|p| (p.updated_at, p.id)));
            after = Some(next);
        }
        assert_eq!(seen, expected, "limit {limit}");
        // The key-only scan agrees.
        let mut after = None;
        let mut keys = Vec::new();
        loop {
            let page = queries::keyset_keys(&conn, SourceTable::People, after, limit).unwrap();
            let Some(last) = page.last().copied() else {
                break;
            };
            keys.extend(page.iter().map(|w| (w.updated_at, w.id)));
            after = Some(last);
        }
        assert_eq!(keys, expected, "keys, limit {limit}");
    }
}

#[test]
fn a_watermark_resumes_strictly_after_and_rewind_rereads_the_overlap() {
    let (_t, store, expected) = mixed_crm();
    let conn = store.reader().unwrap();
    let mid = expected[6];
    let wm = Watermark::new(mid.0, mid.1);
    let page: KeysetPage<Person> = queries::keyset_page(&conn, Some(wm), 100).unwrap();
    let got: Vec<(Timestamp, i64)> = page.rows.iter().map(|p| (p.updated_at, p.id)).collect();
    assert_eq!(got, expected[7..].to_vec());

    let rewound = wm.rewind(Duration::from_secs(1));
    let page: KeysetPage<Person> = queries::keyset_page(&conn, Some(rewound), 100).unwrap();
    let got: HashSet<i64> = page.rows.iter().map(|p| p.id).collect();
    for (ts, id) in &expected {
        let in_window = *ts >= rewound.updated_at;
        assert_eq!(got.contains(id), in_window, "row {id} at {ts}");
    }
}

#[test]
fn a_row_updated_within_the_same_second_is_caught_by_the_overlap() {
    // The CRM writes `CURRENT_TIMESTAMP` (whole seconds) after we saw a row at .500 in
    // the same second: strictly after the watermark it is not, but the overlap finds it.
    let (t, store) = TempCrm::created();
    fixtures::person(&t.raw(), 1, "Seen Before", None, "2026-06-05T13:55:12.500Z");
    let conn = store.reader().unwrap();
    let page: KeysetPage<Person> = queries::keyset_page(&conn, None, 10).unwrap();
    let wm = page.next.unwrap();
    fixtures::person(&t.raw(), 2, "Written Later", None, "2026-06-05 13:55:12");
    let strict: KeysetPage<Person> = queries::keyset_page(&conn, Some(wm), 10).unwrap();
    assert!(strict.rows.is_empty());
    let overlap: KeysetPage<Person> =
        queries::keyset_page(&conn, Some(wm.rewind(Duration::from_secs(2))), 10).unwrap();
    let ids: Vec<i64> = overlap.rows.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![2, 1]);
}

#[test]
fn keyset_queries_use_the_expression_index() {
    let (_t, store) = TempCrm::created();
    let conn = store.reader().unwrap();
    for table in SourceTable::ALL {
        for (what, plan) in [
            ("rows", queries::explain_keyset_page(&conn, table).unwrap()),
            ("keys", queries::explain_keyset_keys(&conn, table).unwrap()),
        ] {
            let text = plan.join("\n");
            let index = format!("substrate_{table}_keyset");
            assert!(
                text.contains(&format!("SEARCH {table} USING")) && text.contains(&index),
                "{what} of {table} does not search {index}:\n{text}"
            );
            assert!(
                !text.contains("TEMP B-TREE"),
                "{what} of {table} sorts:\n{text}"
            );
        }
    }
}
