//! Every deterministic rule, the traps, and conflict blocking, on real CRM files.

use crate::support::{Crm, P, p};

fn reasons_of(crm: &Crm, a: &str, b: &str) -> Option<String> {
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    crm.conn()
        .query_row(
            "SELECT reasons FROM entity_candidates WHERE entity_a = ?1 AND entity_b = ?2",
            [a, b],
            |r| r.get(0),
        )
        .ok()
}

#[test]
fn same_email_links_whatever_the_noise() {
    let crm = Crm::new();
    crm.person(P {
        email: Some("Jane.Doe@Acme.com"),
        ..p(1, "Jane Doe")
    });
    crm.person(P {
        email: Some("  jane.doe+crm@ACME.COM "),
        ..p(2, "J. Doe")
    });
    crm.person(P {
        email: Some("j.a.n.e@gmail.com"),
        ..p(3, "Jane Smith")
    });
    crm.person(P {
        email: Some("jane@googlemail.com"),
        ..p(4, "Jane S.")
    });
    let s = crm.resolve();
    assert_eq!(crm.person_entity(1), "person:1");
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(crm.person_entity(3), "person:3");
    assert_eq!(crm.person_entity(4), "person:3");
    assert_eq!(s.people.unions_by_rule.get("email"), Some(&2));
    let rule: String = crm
        .conn()
        .query_row(
            "SELECT rule FROM entity_links WHERE source_id = 2 AND source_table = 'people'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rule, "email");
}

#[test]
fn a_role_inbox_links_only_compatible_names() {
    let crm = Crm::new();
    crm.person(P {
        email: Some("info@acme.com"),
        ..p(1, "Jane Doe")
    });
    crm.person(P {
        email: Some("info@acme.com"),
        ..p(2, "Mark Twain")
    });
    crm.person(P {
        email: Some("info@acme.com"),
        ..p(3, "Jane Doe")
    });
    crm.resolve();
    assert_eq!(crm.person_entity(3), "person:1");
    assert_eq!(crm.person_entity(2), "person:2");
}

#[test]
fn linkedin_urls_in_any_shape_link() {
    let crm = Crm::new();
    crm.person(P {
        linkedin: Some("https://www.linkedin.com/in/jane-doe-42/"),
        ..p(1, "Jane Doe")
    });
    crm.person(P {
        linkedin: Some("uk.linkedin.com/in/Jane-Doe-42?trk=x"),
        ..p(2, "Janet Doe-Smith")
    });
    crm.person(P {
        linkedin: Some("https://www.linkedin.com/in/jane-doe-43"),
        ..p(3, "Jane Doe")
    });
    crm.resolve();
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(crm.person_entity(3), "person:3");
}

#[test]
fn two_linkedin_profiles_block_an_email_link_and_flag_a_conflict() {
    let crm = Crm::new();
    crm.person(P {
        email: Some("shared@family.org"),
        linkedin: Some("linkedin.com/in/john-smith-sr"),
        ..p(1, "John Smith")
    });
    crm.person(P {
        email: Some("shared@family.org"),
        linkedin: Some("linkedin.com/in/john-smith-jr"),
        ..p(2, "John Smith")
    });
    let s = crm.resolve();
    assert_eq!(crm.person_entity(1), "person:1");
    assert_eq!(crm.person_entity(2), "person:2");
    assert_eq!(s.people.conflicts, 1);
    let reasons = reasons_of(&crm, "person:1", "person:2").expect("a conflict candidate");
    for r in ["conflict", "conflict_linkedin", "rule_email"] {
        assert!(reasons.contains(r), "{reasons}");
    }
}

#[test]
fn a_conflict_through_a_third_row_is_caught() {
    // 1 -email- 2 -phone+name- 3, with 1 and 3 on different LinkedIn profiles.
    let crm = Crm::new();
    crm.person(P {
        email: Some("a@x.io"),
        linkedin: Some("linkedin.com/in/one"),
        ..p(1, "Ann Lee")
    });
    crm.person(P {
        email: Some("a@x.io"),
        phone: Some("+1 415 555 0134"),
        ..p(2, "Ann Lee")
    });
    crm.person(P {
        phone: Some("(415) 555-0134"),
        linkedin: Some("linkedin.com/in/two"),
        ..p(3, "Ann Lee")
    });
    let s = crm.resolve();
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(crm.person_entity(3), "person:3");
    assert_eq!(s.people.conflicts, 1);
    assert!(
        reasons_of(&crm, "person:1", "person:3")
            .unwrap()
            .contains("conflict")
    );
}

#[test]
fn phone_with_a_compatible_name_links() {
    let crm = Crm::new();
    crm.person(P {
        phone: Some("+1 (415) 555-0134"),
        ..p(1, "Robert Smith")
    });
    crm.person(P {
        phone: Some("415.555.0134 x12"),
        ..p(2, "Bob Smith")
    });
    crm.person(
        P {
            phone: Some("001 415 555 0134"),
            first: Some("Robert"),
            last: Some("Smith"),
            full: "Smith, Robert",
            ..P::default()
        }
        .with_id(3),
    );
    let s = crm.resolve();
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(crm.person_entity(3), "person:1");
    assert_eq!(s.people.unions_by_rule.get("phone_name"), Some(&2));
}

#[test]
fn a_shared_office_phone_never_links_different_people() {
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.org(2, "Globex", Some("globex.com"));
    let office = Some("+1 212 555 0100");
    crm.person(P {
        phone: office,
        org: Some(1),
        ..p(1, "Jane Doe")
    });
    crm.person(P {
        phone: office,
        org: Some(1),
        ..p(2, "Mary Major")
    });
    crm.person(P {
        phone: office,
        org: Some(1),
        ..p(3, "John Smith")
    });
    crm.person(P {
        phone: office,
        org: Some(1),
        ..p(4, "Jane Smith")
    });
    crm.person(P {
        phone: office,
        org: Some(1),
        ..p(5, "J. Smith")
    });
    crm.person(P {
        phone: office,
        org: Some(1),
        ..p(6, "John Smith Sr.")
    });
    crm.person(P {
        phone: office,
        org: Some(2),
        ..p(7, "John Smith Jr.")
    });
    crm.resolve();
    let entities: std::collections::BTreeSet<String> =
        (1..=7).map(|i| crm.person_entity(i)).collect();
    // 3 and 6 are the only pair a rule may join (same name at one organisation,
    // no contradicting suffix); 6 and 7 are Sr. and Jr.
    assert_eq!(crm.person_entity(6), "person:3");
    assert_eq!(entities.len(), 6, "{entities:?}");
    assert_ne!(crm.person_entity(7), crm.person_entity(6));
}

#[test]
fn same_name_links_only_within_one_organisation_entity() {
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.org(2, "ACME Corporation", Some("https://www.acme.com/"));
    crm.org(3, "Globex", Some("globex.com"));
    crm.person(P {
        org: Some(1),
        ..p(1, "John Smith")
    });
    crm.person(P {
        org: Some(2),
        ..p(2, "John Smith")
    });
    crm.person(P {
        org: Some(3),
        ..p(3, "John Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(4, "John A. Smith")
    });
    crm.person(P {
        org: None,
        ..p(5, "John Smith")
    });
    crm.resolve();
    assert_eq!(crm.entity_of("organizations", 2).unwrap(), "organization:1");
    assert_eq!(crm.person_entity(2), "person:1");
    assert_eq!(crm.person_entity(3), "person:3");
    assert_eq!(
        crm.person_entity(4),
        "person:4",
        "a middle initial the other lacks is not the same name"
    );
    assert_eq!(crm.person_entity(5), "person:5");
    let reasons = reasons_of(&crm, "person:1", "person:4").unwrap();
    assert!(reasons.contains("same_name"), "{reasons}");
}

#[test]
fn organisations_link_on_corporate_domain_never_free_mail() {
    let crm = Crm::new();
    crm.org(1, "Blue Rock Capital", Some("bluerock.vc"));
    crm.org(2, "Blue Rock", Some("WWW.BLUEROCK.VC"));
    crm.org(3, "Some Angel", Some("gmail.com"));
    crm.org(4, "Another Angel", Some("https://gmail.com"));
    crm.org(5, "Throwaway Ltd", Some("mailinator.com"));
    crm.org(6, "Throwaway Two", Some("mailinator.com"));
    crm.resolve();
    assert_eq!(crm.entity_of("organizations", 2).unwrap(), "organization:1");
    assert_eq!(crm.entity_of("organizations", 4).unwrap(), "organization:4");
    assert_eq!(crm.entity_of("organizations", 6).unwrap(), "organization:6");
}

#[test]
fn legal_names_link_unless_domains_conflict() {
    let crm = Crm::new();
    crm.org(1, "Acme Inc.", None);
    crm.org(2, "Acme Corporation", None);
    crm.org(3, "The Acme Company, L.L.C.", Some("acme.com"));
    crm.org(4, "Acme GmbH", Some("acme.de"));
    crm.org(5, "IBM", None);
    crm.org(6, "IBM Corp", None);
    // Short and all in capitals: an acronym or a shouted word, no way to tell.
    crm.org(7, "ACME CORP", None);
    crm.org(8, "IBM", None);
    // Acronym-like names are flagged only with context (here, the same location).
    crm.conn()
        .execute_batch(
            "UPDATE organizations SET location = 'Armonk, NY' WHERE id IN (5, 6);
             UPDATE organizations SET location = 'Springfield' WHERE id IN (1, 7);",
        )
        .unwrap();
    let s = crm.resolve();
    let e = |id| crm.entity_of("organizations", id).unwrap();
    assert_eq!(e(2), "organization:1");
    assert_eq!(e(3), "organization:1");
    assert_eq!(e(4), "organization:4", "acme.de conflicts with acme.com");
    assert_eq!(s.organizations.conflicts, 1);
    assert!(
        reasons_of(&crm, "organization:1", "organization:4")
            .unwrap()
            .contains("conflict_domain")
    );
    // An acronym names many organisations: a candidate, never a link.
    assert_eq!(e(6), "organization:6");
    assert!(reasons_of(&crm, "organization:5", "organization:6").is_some());
    assert_eq!(e(7), "organization:7");
    assert!(
        reasons_of(&crm, "organization:1", "organization:7")
            .unwrap()
            .contains("same_compact_name")
    );
    // Without context an acronym-like name is no candidate.
    assert!(reasons_of(&crm, "organization:5", "organization:8").is_none());
}

#[test]
fn acronyms_are_flagged_with_context() {
    let crm = Crm::new();
    crm.conn()
        .execute_batch(
            "INSERT INTO organizations (id, name, domain, location, created_at, updated_at) VALUES
             (1, 'International Business Machines', 'ibm.com', 'Armonk, NY', '2026-01-01', '2026-01-01'),
             (2, 'IBM', NULL, 'Armonk, NY', '2026-01-01', '2026-01-01'),
             (3, 'Iron Bridge Mining', 'ironbridge.io', 'Perth', '2026-01-01', '2026-01-01');",
        )
        .unwrap();
    crm.resolve();
    assert!(
        reasons_of(&crm, "organization:1", "organization:2")
            .unwrap()
            .contains("acronym")
    );
    assert!(
        reasons_of(&crm, "organization:2", "organization:3").is_none(),
        "no context, no candidate"
    );
}

#[test]
fn candidates_carry_reasons_and_scores() {
    let crm = Crm::new();
    crm.org(1, "Acme Inc", Some("acme.com"));
    crm.person(P {
        org: Some(1),
        title: Some("CFO"),
        ..p(1, "Robert Smith")
    });
    crm.person(P {
        org: Some(1),
        title: Some("CFO"),
        ..p(2, "Bob Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(3, "R. Smith")
    });
    crm.person(P {
        org: Some(1),
        ..p(4, "Robert Smtih")
    });
    crm.person(
        P {
            org: Some(1),
            first: Some("Smith"),
            last: Some("Robert"),
            full: "SMITH Robert",
            ..P::default()
        }
        .with_id(5),
    );
    crm.person(P {
        org: Some(1),
        ..p(6, "Alice Jones")
    });
    crm.resolve();
    let rows: Vec<(String, String, String, f64)> = {
        let conn = crm.conn();
        let mut stmt = conn.prepare("SELECT entity_a, entity_b, reasons, score FROM entity_candidates ORDER BY entity_a, entity_b").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let find = |a: &str, b: &str| {
        rows.iter()
            .find(|r| r.0 == a && r.1 == b)
            .unwrap_or_else(|| panic!("no candidate {a}/{b}: {rows:?}"))
    };
    assert!(find("person:1", "person:2").2.contains("nickname"));
    assert!(find("person:1", "person:2").2.contains("same_title"));
    assert!(find("person:1", "person:3").2.contains("initials"));
    assert!(find("person:1", "person:4").2.contains("typo_family_name"));
    assert!(find("person:1", "person:5").2.contains("swapped_names"));
    for r in &rows {
        assert!((0.0..=1.0).contains(&r.3), "{r:?}");
        assert!(
            r.2.starts_with('[') && r.2.contains("same_organization"),
            "{r:?}"
        );
        assert!(
            r.0 != "person:6" && r.1 != "person:6",
            "Alice Jones is nobody's duplicate: {r:?}"
        );
    }
}

#[test]
fn hostile_rows_do_not_break_a_run() {
    let crm = Crm::new();
    // Real CRMs hold dangling foreign keys (rows of deleted organisations).
    crm.conn()
        .execute_batch("PRAGMA foreign_keys = OFF")
        .unwrap();
    let huge = "Ω".repeat(5000);
    crm.conn()
        .execute_batch(
            "INSERT INTO organizations (id, name, domain, website, created_at, updated_at) VALUES
             (1, '', NULL, 'javascript:alert(1)', '2026-01-01', '2026-01-01'),
             (2, '🚀🚀🚀', '😀.com', 'http://', '2026-01-01', '2026-01-01'),
             (3, char(0) || 'Acme' || char(7), 'acme.com', NULL, '2026-01-01', '2026-01-01');",
        )
        .unwrap();
    crm.conn()
        .execute(
            "INSERT INTO people (id, first_name, last_name, full_name, email, phone, organization_id, linkedin_url, created_at, updated_at) VALUES
             (1, NULL, NULL, '', 'not an email', 'n/a', 99, 'linkedin.com/in/', '2026-01-01', '2026-01-01'),
             (2, NULL, NULL, '', 'not an email', 'n/a', NULL, 'linkedin.com/in/', '2026-01-01', '2026-01-01'),
             (3, ?1, ?1, ?1, '@@', '+', 1, ?1, '2026-01-01', '2026-01-01'),
             (4, 'Dr.', 'Jr.', ',,,', 'x@y', '000', 3, 'https://evil.io/in/x', 'garbage', 'garbage'),
             (5, '王', '伟', '王伟', '王伟@例子.中国', '+86 138 0013 8000', 3, NULL, '2026-01-01', '2026-01-01'),
             (6, 'Zero' || char(8203) || 'Width', 'Name' || char(0), 'x', NULL, NULL, NULL, NULL, '2026-01-01', '2026-01-01')",
            [huge.as_str()],
        )
        .unwrap();
    let s = crm.resolve();
    assert_eq!(s.people.rows, 6);
    // Garbage shared by rows 1 and 2 (email, phone, LinkedIn) is no evidence.
    assert_ne!(crm.person_entity(1), crm.person_entity(2));
    let again = crm.resolve();
    assert_eq!(again.entity_writes, 0);
}
