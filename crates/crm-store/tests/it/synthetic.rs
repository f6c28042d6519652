//! The synthetic CRM generator: determinism, ground truth, messiness.

use std::collections::HashMap;
use std::path::Path;

use crm_store::phase0::EntityKind;
use crm_store::synthetic::{
    DupKind, SyntheticConfig, TrapKind, TruthRecord, generate, read_truth, truth_path,
};
use crm_store::{Store, StoreConfig, StoreError};
use sha2::{Digest, Sha256};

use crate::helpers::raw;

pub(crate) fn small_config(seed: u64) -> SyntheticConfig {
    SyntheticConfig {
        seed,
        people: 4_000,
        organizations: 400,
        interactions: 3_000,
        deals: 300,
        duplicate_rate: 0.12,
        trap_rate: 0.04,
        messy_rate: 0.15,
    }
}

/// A digest of every row of every CRM table, in id order.
fn content_digest(path: &Path) -> String {
    let conn = raw(path);
    let mut h = Sha256::new();
    for (table, order) in [
        ("organizations", "id"),
        ("people", "id"),
        ("interactions", "id"),
        ("interaction_people", "interaction_id, person_id"),
        ("deals", "id"),
    ] {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM {table} ORDER BY {order}"))
            .unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                let v: rusqlite::types::Value = row.get(i).unwrap();
                h.update(format!("{v:?}|").as_bytes());
            }
            h.update(b"\n");
        }
    }
    hex::encode(h.finalize())
}

#[test]
fn same_seed_same_content_and_truth_different_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    let c = dir.path().join("c.db");
    generate(&a, &small_config(7), &mut |_| {}).unwrap();
    generate(&b, &small_config(7), &mut |_| {}).unwrap();
    generate(&c, &small_config(8), &mut |_| {}).unwrap();
    assert_eq!(content_digest(&a), content_digest(&b));
    assert_eq!(
        std::fs::read(truth_path(&a)).unwrap(),
        std::fs::read(truth_path(&b)).unwrap()
    );
    assert_ne!(content_digest(&a), content_digest(&c));
    assert_ne!(
        std::fs::read(truth_path(&a)).unwrap(),
        std::fs::read(truth_path(&c)).unwrap()
    );
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    std::fs::write(&a, b"not a database").unwrap();
    let err = generate(&a, &small_config(1), &mut |_| {}).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(std::fs::read(&a).unwrap(), b"not a database");
}

#[test]
fn invalid_rates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for config in [
        SyntheticConfig {
            duplicate_rate: 1.5,
            ..small_config(1)
        },
        SyntheticConfig {
            messy_rate: -0.1,
            ..small_config(1)
        },
        SyntheticConfig {
            duplicate_rate: 0.6,
            trap_rate: 0.5,
            ..small_config(1)
        },
    ] {
        let err = generate(&dir.path().join("x.db"), &config, &mut |_| {}).unwrap_err();
        assert!(matches!(err, StoreError::InvalidConfig(_)), "{err}");
    }
}

#[derive(Debug, Clone)]
struct PersonRow {
    first: Option<String>,
    last: Option<String>,
    full: String,
    email: Option<String>,
    phone: Option<String>,
    org: Option<i64>,
    linkedin: Option<String>,
}

#[derive(Debug, Clone)]
struct OrgRow {
    name: String,
    domain: Option<String>,
}

fn people(conn: &rusqlite::Connection) -> HashMap<i64, PersonRow> {
    let mut stmt = conn
        .prepare(
            "SELECT id, first_name, last_name, full_name, email, phone, organization_id, \
             linkedin_url FROM people",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            PersonRow {
                first: r.get(1)?,
                last: r.get(2)?,
                full: r.get(3)?,
                email: r.get(4)?,
                phone: r.get(5)?,
                org: r.get(6)?,
                linkedin: r.get(7)?,
            },
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn orgs(conn: &rusqlite::Connection) -> HashMap<i64, OrgRow> {
    let mut stmt = conn
        .prepare("SELECT id, name, domain FROM organizations")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            OrgRow {
                name: r.get(1)?,
                domain: r.get(2)?,
            },
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn norm_email(e: &str) -> String {
    e.trim().to_lowercase()
}

/// The last nine digits: enough to compare numbers written in different formats.
fn norm_phone(p: &str) -> String {
    let digits: String = p.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(9)..].to_owned()
}

fn linkedin_slug(url: &str) -> String {
    let after = url.split("/in/").nth(1).unwrap_or("");
    after.split(['/', '?']).next().unwrap_or("").to_lowercase()
}

fn norm_domain(d: &str) -> String {
    let d = d.trim().to_lowercase();
    let d = d
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("www.");
    d.trim_end_matches('/').to_owned()
}

const LEGAL: &[&str] = &[
    "inc",
    "incorporated",
    "corporation",
    "corp",
    "llc",
    "l.l.c.",
    "ltd",
    "ltd.",
    "limited",
    "co.",
    "company",
    "gmbh",
    "lp",
    "l.p.",
    "llp",
    "pc",
    "p.c.",
    "pte.",
    "management",
    "inc.",
    "corp.",
];

fn core_tokens(name: &str) -> Vec<String> {
    name.to_lowercase()
        .replace(',', " ")
        .split_whitespace()
        .filter(|t| !LEGAL.contains(t))
        .map(str::to_owned)
        .collect()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn check_person_dup(kind: DupKind, base: &PersonRow, dup: &PersonRow) -> Result<(), String> {
    let same_org = || {
        (base.org == dup.org)
            .then_some(())
            .ok_or_else(|| format!("orgs differ: {:?} vs {:?}", base.org, dup.org))
    };
    match kind {
        DupKind::SameEmail => {
            let (Some(a), Some(b)) = (&base.email, &dup.email) else {
                return Err("an email is missing".into());
            };
            (norm_email(a) == norm_email(b))
                .then_some(())
                .ok_or_else(|| format!("emails differ: {a:?} vs {b:?}"))
        }
        DupKind::Nickname => {
            same_org()?;
            (dup.last == base.last && dup.first != base.first && dup.first.is_some())
                .then_some(())
                .ok_or_else(|| "not a first-name variant".into())
        }
        DupKind::Initials => {
            same_org()?;
            let f = dup.first.clone().unwrap_or_default();
            let bf = base.first.clone().unwrap_or_default();
            (f.trim_end_matches('.').chars().count() == 1
                && bf.starts_with(f.trim_end_matches('.'))
                && dup.last == base.last)
                .then_some(())
                .ok_or_else(|| format!("not an initial: {f:?} of {bf:?}"))
        }
        DupKind::Typo => {
            same_org()?;
            let a = format!(
                "{} {}",
                base.first.clone().unwrap_or_default(),
                base.last.clone().unwrap_or_default()
            );
            let b = format!(
                "{} {}",
                dup.first.clone().unwrap_or_default(),
                dup.last.clone().unwrap_or_default()
            );
            let d = levenshtein(&a, &b);
            (1..=2)
                .contains(&d)
                .then_some(())
                .ok_or_else(|| format!("edit distance {d} between {a:?} and {b:?}"))
        }
        DupKind::SwappedNames => {
            same_org()?;
            (dup.first == base.last && dup.last == base.first)
                .then_some(())
                .ok_or_else(|| "names not swapped".into())
        }
        DupKind::NewJobDifferentEmail => {
            if base.org == dup.org {
                return Err("same organisation".into());
            }
            if let (Some(a), Some(b)) = (&base.email, &dup.email)
                && norm_email(a) == norm_email(b)
            {
                return Err("same email".into());
            }
            let linkedin = matches!((&base.linkedin, &dup.linkedin), (Some(a), Some(b)) if linkedin_slug(a) == linkedin_slug(b));
            let phone = matches!((&base.phone, &dup.phone), (Some(a), Some(b)) if norm_phone(a) == norm_phone(b));
            (linkedin || phone)
                .then_some(())
                .ok_or_else(|| "no shared LinkedIn or phone".into())
        }
        other => Err(format!("{other:?} is not a person duplicate kind")),
    }
}

fn check_org_dup(kind: DupKind, base: &OrgRow, dup: &OrgRow) -> Result<(), String> {
    match kind {
        DupKind::SuffixVariant => (base.name != dup.name
            && core_tokens(&base.name) == core_tokens(&dup.name))
        .then_some(())
        .ok_or_else(|| format!("{:?} vs {:?}", base.name, dup.name)),
        DupKind::SameDomain => {
            let (Some(a), Some(b)) = (&base.domain, &dup.domain) else {
                return Err("a domain is missing".into());
            };
            (norm_domain(a) == norm_domain(b))
                .then_some(())
                .ok_or_else(|| format!("{a:?} vs {b:?}"))
        }
        DupKind::Acronym => {
            let initials: String = base
                .name
                .split_whitespace()
                .filter(|t| !LEGAL.contains(&t.to_lowercase().as_str()))
                .filter_map(|t| t.chars().next())
                .collect::<String>()
                .to_uppercase();
            let token: String = dup
                .name
                .chars()
                .take_while(char::is_ascii_uppercase)
                .collect();
            (token.len() >= 2 && initials.starts_with(&token))
                .then_some(())
                .ok_or_else(|| format!("{:?} is not an acronym of {:?}", dup.name, base.name))
        }
        other => Err(format!("{other:?} is not an organisation duplicate kind")),
    }
}

#[test]
fn ground_truth_matches_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    let report = generate(&path, &small_config(42), &mut |_| {}).unwrap();
    let truth = read_truth(&truth_path(&path)).unwrap();
    let conn = raw(&path);
    let people = people(&conn);
    let orgs = orgs(&conn);

    let mut seen_kinds = std::collections::BTreeSet::new();
    let mut seen_traps = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for record in &truth {
        let TruthRecord {
            kind,
            ids,
            dup_kinds,
            trap,
            ..
        } = record;
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids not ascending: {record:?}"
        );
        assert!(ids.len() >= 2);
        match (kind, trap) {
            (EntityKind::Person, Some(trap)) => {
                seen_traps.insert(*trap);
                let a = &people[&ids[0]];
                let b = &people[&ids[1]];
                let ok = match trap {
                    TrapKind::SharedOfficePhone => {
                        a.org == b.org
                            && a.full != b.full
                            && matches!((&a.phone, &b.phone), (Some(x), Some(y)) if norm_phone(x) == norm_phone(y))
                            && (a.email.is_none() || a.email != b.email)
                    }
                    TrapKind::SameNameDifferentPerson => {
                        a.full == b.full
                            && a.org != b.org
                            && (a.email.is_none()
                                || a.email.as_deref().map(norm_email)
                                    != b.email.as_deref().map(norm_email))
                            && (a.phone.is_none()
                                || a.phone.as_deref().map(norm_phone)
                                    != b.phone.as_deref().map(norm_phone))
                            && (a.linkedin.is_none()
                                || a.linkedin.as_deref().map(linkedin_slug)
                                    != b.linkedin.as_deref().map(linkedin_slug))
                    }
                };
                if !ok {
                    failures.push(format!("trap {trap:?}: {a:?} / {b:?}"));
                }
            }
            (EntityKind::Person, None) => {
                let base = &people[&ids[0]];
                // Every duplicate row must be explained by one of the claimed kinds.
                for id in &ids[1..] {
                    let dup = &people[id];
                    let explained = dup_kinds
                        .iter()
                        .any(|k| check_person_dup(*k, base, dup).is_ok());
                    if !explained {
                        let why: Vec<String> = dup_kinds
                            .iter()
                            .map(|k| format!("{k:?}: {:?}", check_person_dup(*k, base, dup)))
                            .collect();
                        failures.push(format!(
                            "person {} / {id}: {why:?}\n  {base:?}\n  {dup:?}",
                            ids[0]
                        ));
                    }
                }
                seen_kinds.extend(dup_kinds.iter().copied());
            }
            (EntityKind::Organization, None) => {
                let base = &orgs[&ids[0]];
                for id in &ids[1..] {
                    let dup = &orgs[id];
                    if !dup_kinds
                        .iter()
                        .any(|k| check_org_dup(*k, base, dup).is_ok())
                    {
                        failures.push(format!(
                            "org {} / {id}: {dup_kinds:?} {base:?} {dup:?}",
                            ids[0]
                        ));
                    }
                }
                seen_kinds.extend(dup_kinds.iter().copied());
            }
            (EntityKind::Organization, Some(_)) => failures.push(format!("org trap {record:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} wrong truth records:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for k in [
        DupKind::SameEmail,
        DupKind::Nickname,
        DupKind::Initials,
        DupKind::Typo,
        DupKind::SwappedNames,
        DupKind::NewJobDifferentEmail,
        DupKind::SuffixVariant,
        DupKind::SameDomain,
        DupKind::Acronym,
    ] {
        assert!(seen_kinds.contains(&k), "no {k:?} duplicate was injected");
    }
    assert_eq!(seen_traps.len(), 2, "both trap kinds injected");
    assert_eq!(
        report.duplicates.values().sum::<u64>(),
        truth
            .iter()
            .filter(|r| r.trap.is_none())
            .map(|r| r.ids.len() as u64 - 1)
            .sum::<u64>()
    );
}

#[test]
fn distinct_base_people_never_share_hard_evidence() {
    // Rows that are not in one truth cluster must not share an email, a LinkedIn profile or
    // (except shared-phone traps) a phone: otherwise the truth would call a correct link wrong.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    generate(&path, &small_config(5), &mut |_| {}).unwrap();
    let truth = read_truth(&truth_path(&path)).unwrap();
    let mut entity_of: HashMap<i64, i64> = HashMap::new();
    let mut switchboard_pairs = std::collections::HashSet::new();
    for r in &truth {
        if r.kind != EntityKind::Person {
            continue;
        }
        match r.trap {
            None => {
                for id in &r.ids {
                    entity_of.insert(*id, r.ids[0]);
                }
            }
            Some(TrapKind::SharedOfficePhone) => {
                switchboard_pairs.insert((r.ids[0], r.ids[1]));
            }
            Some(_) => {}
        }
    }
    let people = people(&raw(&path));
    let entity = |id: i64| *entity_of.get(&id).unwrap_or(&id);
    let mut by_email: HashMap<String, i64> = HashMap::new();
    let mut by_linkedin: HashMap<String, i64> = HashMap::new();
    let mut by_phone: HashMap<String, Vec<i64>> = HashMap::new();
    let mut ids: Vec<&i64> = people.keys().collect();
    ids.sort();
    for id in ids {
        let p = &people[id];
        if let Some(e) = &p.email {
            let prev = by_email.insert(norm_email(e), entity(*id));
            assert!(
                prev.is_none_or(|e2| e2 == entity(*id)),
                "email {e} shared by {id} and entity {prev:?}"
            );
        }
        if let Some(l) = &p.linkedin {
            let prev = by_linkedin.insert(linkedin_slug(l), entity(*id));
            assert!(
                prev.is_none_or(|e2| e2 == entity(*id)),
                "linkedin {l} shared by {id}"
            );
        }
        if let Some(ph) = &p.phone {
            by_phone.entry(norm_phone(ph)).or_default().push(*id);
        }
    }
    for (phone, ids) in by_phone {
        let entities: std::collections::BTreeSet<i64> = ids.iter().map(|i| entity(*i)).collect();
        if entities.len() > 1 {
            // Only the office switchboard is shared by different people.
            assert!(
                ids.windows(2)
                    .all(|w| switchboard_pairs.contains(&(w[0], w[1]))
                        || entity(w[0]) == entity(w[1])
                        || switchboard_pairs
                            .iter()
                            .any(|(a, b)| ids.contains(a) && ids.contains(b))),
                "phone {phone} shared by unrelated people {ids:?}"
            );
        }
    }
}

#[test]
fn messy_rows_are_there_and_everything_renders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    let config = SyntheticConfig {
        interactions: 3_000,
        messy_rate: 0.3,
        ..small_config(11)
    };
    let report = generate(&path, &config, &mut |_| {}).unwrap();
    assert!(report.messy_rows > 0);
    assert_eq!(report.large_notes, 1);
    let conn = raw(&path);
    let count = |q: &str| -> i64 { conn.query_row(q, [], |r| r.get(0)).unwrap() };
    assert!(count("SELECT count(*) FROM interactions WHERE length(body) >= 1000000") >= 1);
    assert!(count("SELECT count(*) FROM interactions WHERE body LIKE '%<p>%'") > 0);
    assert!(count("SELECT count(*) FROM people WHERE updated_at LIKE '____-__-__ __:__:__'") > 0);
    assert!(count("SELECT count(*) FROM people WHERE updated_at LIKE '%.___Z'") > 0);
    assert!(count("SELECT count(*) FROM people WHERE email <> trim(email)") > 0);
    assert!(count("SELECT count(*) FROM people WHERE first_name IS NULL") > 0);
    assert!(count("SELECT count(*) FROM people WHERE deleted_at IS NOT NULL") > 0);
    assert!(
        count(
            "SELECT count(*) FROM people WHERE full_name LIKE '%' || char(8203) || '%' OR full_name LIKE '%' || char(8207) || '%'"
        ) > 0
    );
    let (multibyte,): (i64,) = (count(
        "SELECT count(*) FROM people WHERE length(full_name) <> length(CAST(full_name AS BLOB))",
    ),);
    assert!(multibyte > 0, "some names have non-ASCII characters");

    // The store opens it (contract, migrations) and every row renders.
    let store = Store::open(StoreConfig::new(&path)).unwrap();
    let reader = store.reader().unwrap();
    for table in crm_store::SourceTable::ALL {
        let mut after = None;
        let mut n = 0u64;
        loop {
            let page = crm_store::render::render_changed(&reader, table, after, 500).unwrap();
            let Some(next) = page.next else { break };
            for doc in &page.documents {
                assert!(!doc.title.is_empty());
                assert!(
                    !doc.text.contains('<') || !doc.text.contains("</p>"),
                    "HTML left in {}",
                    doc.source_id
                );
                assert_eq!(doc.content_hash().len(), 64);
            }
            n += page.documents.len() as u64;
            after = Some(next);
        }
        assert_eq!(n, report.rows.get(table), "{table}");
    }
}

#[test]
fn organisation_clusters_and_people_point_at_existing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crm.db");
    generate(&path, &small_config(3), &mut |_| {}).unwrap();
    let conn = raw(&path);
    let dangling: i64 = conn
        .query_row(
            "SELECT count(*) FROM people p WHERE p.organization_id IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM organizations o WHERE o.id = p.organization_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dangling, 0);
    let dangling: i64 = conn
        .query_row(
            "SELECT count(*) FROM interaction_people ip \
             WHERE NOT EXISTS (SELECT 1 FROM people p WHERE p.id = ip.person_id) \
                OR NOT EXISTS (SELECT 1 FROM interactions i WHERE i.id = ip.interaction_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dangling, 0);
    let fk: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0);
}
