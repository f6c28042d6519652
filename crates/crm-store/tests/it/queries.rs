//! Related rows, dependents, the anti-join, and what documents contain.

use crm_store::phase0::{self, IndexedRow};
use crm_store::queries::{self, Deleted, RecentCursor, Vanished, VanishedRow};
use crm_store::render::{self, DocumentKind};
use crm_store::{Deal, Interaction, Organization, Person, SourceTable, Timestamp};

use crate::fixtures;
use crate::helpers::TempCrm;

const T: &str = "2026-01-01T00:00:00.000Z";

fn small_crm() -> (TempCrm, crm_store::Store) {
    let (t, store) = TempCrm::created();
    let c = t.raw();
    fixtures::org(&c, 1, "Acme Capital", T);
    fixtures::org(&c, 2, "Blue Rock Labs", T);
    fixtures::person(&c, 10, "Ada Lovelace", Some(1), T);
    fixtures::person(&c, 11, "Alan Turing", Some(1), T);
    fixtures::person(&c, 12, "Grace Hopper", Some(2), T);
    fixtures::person(&c, 13, "Nobody Known", None, T);
    c.execute(
        "UPDATE people SET deleted_at = '2026-02-01' WHERE id = 11",
        [],
    )
    .unwrap();
    fixtures::interaction(
        &c,
        100,
        "2026-03-01T10:00:00Z",
        Some(1),
        &[10, 11],
        "Discussed <b>bitcoin custody</b>.",
    );
    fixtures::interaction(&c, 101, "2026-03-02 09:00:00", Some(1), &[10], "Follow-up.");
    fixtures::interaction(
        &c,
        102,
        "2026-03-02T09:00:00.000Z",
        Some(2),
        &[12, 10],
        "Intro.",
    );
    fixtures::deal(&c, 200, "Acme Series A", Some(1), Some(5_000_000.0));
    fixtures::deal(&c, 201, "Blue Rock Seed", Some(2), None);
    (t, store)
}

#[test]
fn related_rows() {
    let (_t, store) = small_crm();
    let conn = store.reader().unwrap();
    let org = queries::organization_of_person(&conn, 10).unwrap().unwrap();
    assert_eq!(org.name, "Acme Capital");
    assert!(
        queries::organization_of_person(&conn, 13)
            .unwrap()
            .is_none()
    );
    assert!(
        queries::organization_of_person(&conn, 999)
            .unwrap()
            .is_none()
    );

    let live = queries::people_of_organization(&conn, 1, None, 10, Deleted::Exclude).unwrap();
    assert_eq!(live.iter().map(|p| p.id).collect::<Vec<_>>(), vec![10]);
    let all = queries::people_of_organization(&conn, 1, None, 10, Deleted::Include).unwrap();
    assert_eq!(all.iter().map(|p| p.id).collect::<Vec<_>>(), vec![10, 11]);
    let paged = queries::people_of_organization(&conn, 1, Some(10), 10, Deleted::Include).unwrap();
    assert_eq!(paged.iter().map(|p| p.id).collect::<Vec<_>>(), vec![11]);

    let deals: Vec<Deal> =
        queries::deals_of_organization(&conn, 1, None, 10, Deleted::Exclude).unwrap();
    assert_eq!(deals.len(), 1);

    // Most recent first, across both timestamp formats, with a cursor.
    let recent = queries::interactions_of_person(&conn, 10, None, 2, Deleted::Exclude).unwrap();
    assert_eq!(
        recent.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![102, 101]
    );
    let cursor = RecentCursor {
        occurred_at: recent[1].occurred_at,
        id: recent[1].id,
    };
    let rest =
        queries::interactions_of_person(&conn, 10, Some(cursor), 2, Deleted::Exclude).unwrap();
    assert_eq!(rest.iter().map(|i| i.id).collect::<Vec<_>>(), vec![100]);
    assert_eq!(rest[0].participant_ids, vec![10, 11]);
    let of_org =
        queries::interactions_of_organization(&conn, 1, None, 10, Deleted::Exclude).unwrap();
    assert_eq!(
        of_org.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![101, 100]
    );

    let participants = queries::participants(&conn, 102).unwrap();
    assert_eq!(
        participants.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![10, 12]
    );

    let counts = queries::row_counts(&conn).unwrap();
    assert_eq!(
        (
            counts.organizations,
            counts.people,
            counts.interactions,
            counts.interaction_people,
            counts.deals
        ),
        (2, 4, 3, 5, 2)
    );
    assert_eq!(
        queries::all_ids(&conn, SourceTable::People).unwrap(),
        vec![10, 11, 12, 13]
    );
    assert_eq!(
        queries::ids_after(&conn, SourceTable::People, Some(11), 1).unwrap(),
        vec![12]
    );
    let page: Vec<Organization> = queries::rows_after_id(&conn, Some(1), 10).unwrap();
    assert_eq!(page.len(), 1);
}

#[test]
fn dependents_of_changed_rows() {
    let (_t, store) = small_crm();
    let conn = store.reader().unwrap();
    let deps = queries::dependents(&conn, &[2], &[11]).unwrap();
    assert_eq!(deps.people, vec![12]);
    assert_eq!(deps.interactions, vec![100, 102]);
    assert_eq!(deps.deals, vec![201]);
    assert!(queries::dependents(&conn, &[], &[]).unwrap().is_empty());
}

#[test]
fn documents_embed_related_names() {
    let (t, store) = small_crm();
    let conn = store.reader().unwrap();
    let people = render::render_by_ids(&conn, SourceTable::People, &[10, 11, 13]).unwrap();
    assert_eq!(people[0].title, "Ada Lovelace");
    assert!(
        people[0].text.contains("Works at Acme Capital"),
        "{}",
        people[0].text
    );
    assert_eq!(
        people[0].fields.organization_name.as_deref(),
        Some("Acme Capital")
    );
    assert_eq!(people[0].fields.kind, DocumentKind::Person);
    assert!(people[1].fields.deleted);
    assert!(!people[2].text.contains("Works at"));

    let interactions = render::render_by_ids(&conn, SourceTable::Interactions, &[100]).unwrap();
    let doc = &interactions[0];
    assert!(
        doc.text.contains("Participants: Ada Lovelace, Alan Turing"),
        "{}",
        doc.text
    );
    assert!(doc.text.contains("Organization: Acme Capital"));
    assert!(
        doc.text.contains("Discussed bitcoin custody."),
        "{}",
        doc.text
    );
    assert_eq!(doc.title, "Meeting with Acme Capital on 2026-03-01");
    assert_eq!(
        doc.fields.occurred_at,
        Some(Timestamp::parse("2026-03-01T10:00:00Z").unwrap())
    );
    assert_eq!(doc.fields.person_ids, vec![10, 11]);

    let deals = render::render_by_ids(&conn, SourceTable::Deals, &[200]).unwrap();
    assert!(deals[0].text.contains("Deal with Acme Capital"));
    assert!(deals[0].text.contains("Amount: $5,000,000"));

    // Renaming the organisation changes the dependent documents' hashes; the same rows
    // rendered twice hash the same.
    let before = doc.content_hash();
    assert_eq!(
        before,
        render::render_by_ids(&conn, SourceTable::Interactions, &[100]).unwrap()[0].content_hash()
    );
    t.raw()
        .execute(
            "UPDATE organizations SET name = 'Acme Ventures' WHERE id = 1",
            [],
        )
        .unwrap();
    let after = render::render_by_ids(&conn, SourceTable::Interactions, &[100]).unwrap();
    assert_ne!(after[0].content_hash(), before);
    assert_ne!(after[0].text_hash(), doc.text_hash());
}

#[test]
fn only_the_updated_at_change_leaves_the_text_hash() {
    let (t, store) = small_crm();
    let conn = store.reader().unwrap();
    let before = render::render_by_ids(&conn, SourceTable::People, &[12])
        .unwrap()
        .remove(0);
    t.raw()
        .execute(
            "UPDATE people SET updated_at = '2026-05-05 10:00:00' WHERE id = 12",
            [],
        )
        .unwrap();
    let after = render::render_by_ids(&conn, SourceTable::People, &[12])
        .unwrap()
        .remove(0);
    assert_eq!(before.text_hash(), after.text_hash());
    assert_ne!(before.content_hash(), after.content_hash());
}

#[test]
fn the_anti_join_finds_hard_and_soft_deletes() {
    let (t, store) = small_crm();
    {
        let mut conn = store.writer().unwrap();
        let tx = conn.transaction().unwrap();
        for id in [10, 11, 12, 13, 99] {
            phase0::upsert_indexed_row(
                &tx,
                &IndexedRow {
                    collection: "crm_chunks".into(),
                    source_table: SourceTable::People,
                    source_id: id,
                    entity_id: None,
                    content_hash: "h".into(),
                    chunk_count: 1,
                    indexed_at: Timestamp::now(),
                },
            )
            .unwrap();
        }
        // Another collection's rows are not reported.
        phase0::upsert_indexed_row(
            &tx,
            &IndexedRow {
                collection: "other".into(),
                source_table: SourceTable::People,
                source_id: 98,
                entity_id: None,
                content_hash: "h".into(),
                chunk_count: 1,
                indexed_at: Timestamp::now(),
            },
        )
        .unwrap();
        tx.commit().unwrap();
    }
    t.raw()
        .execute("DELETE FROM people WHERE id = 13", [])
        .unwrap();
    let conn = store.reader().unwrap();
    let vanished =
        queries::vanished_indexed_rows(&conn, "crm_chunks", SourceTable::People).unwrap();
    assert_eq!(
        vanished,
        vec![
            VanishedRow {
                source_id: 11,
                reason: Vanished::SoftDeleted
            },
            VanishedRow {
                source_id: 13,
                reason: Vanished::HardDeleted
            },
            VanishedRow {
                source_id: 99,
                reason: Vanished::HardDeleted
            },
        ]
    );
    assert!(
        queries::vanished_indexed_rows(&conn, "crm_chunks", SourceTable::Deals)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn rows_by_ids_handles_many_ids_and_duplicates() {
    let (t, store) = TempCrm::created();
    {
        let c = t.raw();
        c.execute_batch("BEGIN").unwrap();
        for id in 1..=1_200 {
            fixtures::person(&c, id, &format!("P {id}"), None, T);
        }
        for id in 1..=1_200 {
            fixtures::interaction(&c, id, T, None, &[id, 1_201 - id], "x");
        }
        c.execute_batch("COMMIT").unwrap();
    }
    let conn = store.reader().unwrap();
    let mut ids: Vec<i64> = (1..=1_300).rev().collect();
    ids.extend([5, 5, 5]);
    let people: Vec<Person> = queries::rows_by_ids(&conn, &ids).unwrap();
    assert_eq!(people.len(), 1_200);
    assert!(people.windows(2).all(|w| w[0].id < w[1].id));
    let interactions: Vec<Interaction> = queries::rows_by_ids(&conn, &ids).unwrap();
    assert!(interactions.iter().all(|i| {
        let mut want = vec![i.id, 1_201 - i.id];
        want.sort_unstable();
        want.dedup();
        i.participant_ids == want
    }));
    let docs = render::render_rows(&conn, &interactions).unwrap();
    assert!(
        docs[0].text.contains("Participants: P 1, P 1200"),
        "{}",
        docs[0].text
    );
}
