//! Hostile data: arbitrary strings in every text column, wrong types, invalid UTF-8,
//! huge fields. Nothing may panic or fail a read; everything renders.

use crm_store::render::{self, Renderable};
use crm_store::{
    Deal, IdentityRow, Interaction, Organization, OrganizationIdentity, Person, PersonIdentity,
    SourceRow, SourceTable, Timestamp, queries,
};
use proptest::prelude::*;
use rusqlite::params;
use rusqlite::types::Value;

use crate::helpers::TempCrm;

fn check_documents(docs: &[crm_store::Document]) {
    for d in docs {
        assert!(!d.title.is_empty());
        assert!(
            !d.title.contains('\n'),
            "title has a newline: {:?}",
            d.title
        );
        assert!(d.text.starts_with(&d.title));
        let hash = d.content_hash();
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, d.content_hash(), "hash is deterministic");
    }
}

fn render_all<R: Renderable>(conn: &rusqlite::Connection, ids: &[i64]) -> Vec<crm_store::Document> {
    let rows: Vec<R> = queries::rows_by_ids(conn, ids).unwrap();
    assert_eq!(rows.len(), ids.len());
    let docs = render::render_rows(conn, &rows).unwrap();
    check_documents(&docs);
    docs
}

/// Any string, including control characters, combining marks, RTL text, emoji, markup.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[<>&;#a-z/!\\- ]{0,60}",
        Just(String::new()),
        Just("<script>alert(1)</script><p>x".to_owned()),
        Just("&#xD800;&#99999999;&amp".to_owned()),
        Just("\u{202E}evil\u{200B}\u{FEFF}".to_owned()),
        Just("2026-06-05 13:55:12".to_owned()),
    ]
}

fn maybe(s: impl Strategy<Value = String>) -> impl Strategy<Value = Option<String>> {
    prop_oneof![Just(None), s.prop_map(Some)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_in_every_column_reads_and_renders(
        org in proptest::collection::vec(hostile(), 9),
        person in proptest::collection::vec(maybe(hostile()), 13),
        full_name in hostile(),
        interaction in proptest::collection::vec(maybe(hostile()), 8),
        kind in hostile(),
        occurred in hostile(),
        deal in proptest::collection::vec(maybe(hostile()), 6),
        deal_name in hostile(),
    ) {
        let (t, store) = TempCrm::created();
        {
            let c = t.raw();
            c.execute(
                "INSERT INTO organizations (id, name, kind, domain, website, description, location, \
                 created_at, updated_at, deleted_at) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![org[0], org[1], org[2], org[3], org[4], org[5], org[6], org[7], org[8]],
            ).unwrap();
            c.execute(
                "INSERT INTO people (id, first_name, last_name, full_name, email, phone, title, \
                 organization_id, linkedin_url, location, bio, created_at, updated_at, deleted_at) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![person[0], person[1], full_name, person[2], person[3], person[4],
                        person[5], person[6], person[7], person[8], person[9], person[10]],
            ).unwrap();
            c.execute(
                "INSERT INTO interactions (id, kind, occurred_at, subject, body, organization_id, \
                 created_by, created_at, updated_at, deleted_at) \
                 VALUES (1, ?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8)",
                params![kind, occurred, interaction[0], interaction[1], interaction[2],
                        interaction[3], interaction[4], interaction[5]],
            ).unwrap();
            c.execute("INSERT INTO interaction_people VALUES (1, 1), (1, 999)", []).unwrap();
            c.execute(
                "INSERT INTO deals (id, organization_id, name, stage, amount_usd, notes, created_at, \
                 updated_at, deleted_at) VALUES (1, 1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![deal_name, deal[0], deal[1], deal[2], deal[3], deal[4], deal[5]],
            ).unwrap();
        }
        let conn = store.reader().unwrap();
        lean_read_agrees::<Organization, OrganizationIdentity>(&conn);
        lean_read_agrees::<Person, PersonIdentity>(&conn);
        render_all::<Organization>(&conn, &[1]);
        let people = render_all::<Person>(&conn, &[1]);
        let interactions = render_all::<Interaction>(&conn, &[1]);
        render_all::<Deal>(&conn, &[1]);
        // The participant that does not exist (999) is left out; the one that does is named.
        prop_assert_eq!(&interactions[0].fields.person_ids, &vec![1, 999]);
        prop_assert!(interactions[0].text.contains(&people[0].title) || people[0].title == "Person 1");
        for table in SourceTable::ALL {
            let page = render::render_changed(&conn, table, None, 10).unwrap();
            prop_assert_eq!(page.documents.len(), 1);
        }
    }
}

/// The lean identity scan reads exactly the live rows the full scan reads as live, with
/// the same values.
fn lean_read_agrees<R, I>(conn: &rusqlite::Connection)
where
    R: SourceRow,
    I: IdentityRow + for<'a> From<&'a R> + PartialEq + std::fmt::Debug,
{
    let full: Vec<R> = queries::rows_after_id(conn, None, 1000).unwrap();
    let expected: Vec<I> = full
        .iter()
        .filter(|r| r.deleted_at().is_none())
        .map(I::from)
        .collect();
    let lean: Vec<I> = queries::live_identities_after_id(conn, None, 1000).unwrap();
    assert_eq!(lean, expected);
    // Paging from the last id yields nothing more.
    if let Some(last) = lean.last() {
        let rest: Vec<I> = queries::live_identities_after_id(conn, Some(last.id()), 10).unwrap();
        assert!(rest.is_empty());
    }
}

#[test]
fn lean_identity_reads_skip_deleted_rows_and_page() {
    let (t, store) = TempCrm::created();
    {
        let c = t.raw();
        for (id, deleted) in [
            (1, "NULL"),
            (2, "''"),
            (3, "'   '"),
            (4, "'2026-01-01'"),
            (5, "'garbage'"),
            (6, "0"),
            (7, "NULL"),
        ] {
            c.execute(
                &format!(
                    "INSERT INTO organizations (id, name, created_at, updated_at, deleted_at) \
                     VALUES ({id}, 'Org {id}', '2026-01-01', '2026-01-01', {deleted})"
                ),
                [],
            )
            .unwrap();
        }
    }
    let conn = store.reader().unwrap();
    lean_read_agrees::<Organization, OrganizationIdentity>(&conn);
    let first: Vec<OrganizationIdentity> =
        queries::live_identities_after_id(&conn, None, 2).unwrap();
    assert_eq!(first.iter().map(|o| o.id).collect::<Vec<_>>(), vec![1, 2]);
    let next: Vec<OrganizationIdentity> =
        queries::live_identities_after_id(&conn, Some(2), 2).unwrap();
    assert_eq!(next.iter().map(|o| o.id).collect::<Vec<_>>(), vec![3, 7]);
}

#[test]
fn wrong_types_and_invalid_utf8_read_leniently() {
    let (t, store) = TempCrm::created();
    {
        let c = t.raw();
        // A real CRM may not enforce its foreign keys: dangling and non-integer ids happen.
        c.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        c.execute(
            "INSERT INTO organizations (id, name, created_at, updated_at) VALUES (1, 42, 1, 2.5)",
            [],
        )
        .unwrap();
        let bad_utf8 = Value::Blob(vec![0x4A, 0x6F, 0xFF, 0xFE, 0x65]);
        c.execute(
            "INSERT INTO people (id, full_name, email, phone, organization_id, created_at, updated_at) \
             VALUES (2, CAST(?1 AS TEXT), 12345, X'00FF', 'not a number', NULL, NULL)",
            [bad_utf8.clone()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO deals (id, organization_id, name, amount_usd, created_at, updated_at) \
             VALUES (3, ' 1 ', ?1, 'lots', '', '')",
            [bad_utf8],
        )
        .unwrap();
        c.execute(
            "INSERT INTO deals (id, organization_id, name, amount_usd, created_at, updated_at) \
             VALUES (4, 1.0, 'Seed', '2500000.5', 'x', 'y')",
            [],
        )
        .unwrap();
    }
    let conn = store.reader().unwrap();
    let orgs: Vec<Organization> = queries::rows_by_ids(&conn, &[1]).unwrap();
    assert_eq!(orgs[0].name, "42");
    lean_read_agrees::<Organization, OrganizationIdentity>(&conn);
    lean_read_agrees::<Person, PersonIdentity>(&conn);
    let people: Vec<Person> = queries::rows_by_ids(&conn, &[2]).unwrap();
    assert_eq!(people[0].full_name, "Jo\u{FFFD}\u{FFFD}e");
    assert_eq!(people[0].email.as_deref(), Some("12345"));
    assert_eq!(people[0].organization_id, None);
    assert_eq!(people[0].updated_at, Timestamp::EPOCH);
    let deals: Vec<Deal> = queries::rows_by_ids(&conn, &[3, 4]).unwrap();
    assert_eq!(deals[0].organization_id, Some(1));
    assert_eq!(deals[0].amount_usd, None);
    assert_eq!(deals[1].organization_id, Some(1));
    assert_eq!(deals[1].amount_usd, Some(2_500_000.5));
    check_documents(&render::render_rows(&conn, &people).unwrap());
    let docs = render::render_rows(&conn, &deals).unwrap();
    check_documents(&docs);
    assert!(
        docs[1].text.contains("Amount: $2,500,000.50"),
        "{}",
        docs[1].text
    );
    assert!(docs[1].text.contains("Deal with 42"), "{}", docs[1].text);
}

#[test]
fn a_one_megabyte_html_note_renders() {
    let (t, store) = TempCrm::created();
    let mut body = String::from("<html><body>");
    while body.len() < 1 << 20 {
        body.push_str("<p>Series A &amp; <b>bitcoin custody</b> with <i>Acme</i>.</p>\n<br>");
    }
    body.push_str("<p>unterminated <div");
    crate::fixtures::interaction(&t.raw(), 1, "2026-01-01", None, &[], &body);
    let conn = store.reader().unwrap();
    let docs = render_all::<Interaction>(&conn, &[1]);
    let text = &docs[0].text;
    assert!(!text.contains("<p>") && !text.contains("&amp;"));
    assert!(text.contains("Series A & bitcoin custody with Acme."));
    assert!(
        text.ends_with("unterminated <div"),
        "{}",
        &text[text.len() - 40..]
    );
}
