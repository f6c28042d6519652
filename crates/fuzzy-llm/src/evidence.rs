//! What the model is shown about an entity, read from the CRM.
//!
//! Evidence is bounded whatever the CRM holds: a few source rows per entity, a few
//! distinct values per field, each cut to a few hundred characters, and interaction
//! *subjects* only (never bodies, which may be megabytes of HTML).
//!
//! The hard evidence that vetoes a merge (two LinkedIn profiles, two corporate domains,
//! an undone merge) is `entity-resolve`'s check,
//! [`entity_resolve::merges::hard_evidence_conflict`]; the fuzzy tier adds one of its own
//! on top, [`generation_conflict`]: names written with different generational suffixes
//! (a Jr and a Sr are a son and a father, often at the same firm).

use crm_store::phase0::{self, EntityKind};
use crm_store::queries::{self, Deleted};
use crm_store::{Interaction, Organization, Person};
use entity_resolve::normalize::{Generation, PersonName};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::FuzzyError;
use crate::verdict::cut;

/// How much evidence is gathered per entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceLimits {
    /// Source rows read per entity.
    pub max_rows: usize,
    /// Distinct values kept per field (names, emails, ...).
    pub max_values: usize,
    /// Characters kept of one value.
    pub max_chars: usize,
    /// Recent interactions listed (date, kind, subject).
    pub max_interactions: usize,
    /// People listed for an organisation.
    pub max_people: usize,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        Self {
            max_rows: 20,
            max_values: 5,
            max_chars: 200,
            max_interactions: 5,
            max_people: 5,
        }
    }
}

/// One interaction, as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InteractionSummary {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `meeting`, `call`, `email`, `note`.
    pub kind: String,
    /// The subject line.
    pub subject: String,
}

/// Everything the model is shown about one entity. Serialised as the JSON record in
/// the prompt; empty lists are left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityEvidence {
    /// The canonical id (`person:17`).
    pub entity_id: String,
    /// Person or organisation.
    pub kind: EntityKind,
    /// How many live CRM rows of the entity were read (at most `max_rows`).
    pub record_count: usize,
    /// Names as written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Email addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Phone numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// Job titles.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub titles: Vec<String>,
    /// Names of the person's organisations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<String>,
    /// Organisation kinds (startup, fund, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organization_kinds: Vec<String>,
    /// Web domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Websites.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub websites: Vec<String>,
    /// Locations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    /// LinkedIn URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub linkedin: Vec<String>,
    /// People of an organisation, as `Name (Title)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub people: Vec<String>,
    /// Most recent interactions first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recent_interactions: Vec<InteractionSummary>,
    /// Normalised identifiers that veto a merge when they disagree (beyond the resolver's
    /// own check).
    #[serde(skip)]
    pub hard: HardEvidence,
}

/// Normalised identifiers of an entity, over all its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HardEvidence {
    /// Generational suffixes written in a person's names (Jr, Sr, III).
    pub generations: Vec<Generation>,
}

/// The generational suffixes on which two people disagree, as text, if any: both
/// entities have some and share none.
pub fn generation_conflict(a: &EntityEvidence, b: &EntityEvidence) -> Option<String> {
    let (ga, gb) = (&a.hard.generations, &b.hard.generations);
    if ga.is_empty() || gb.is_empty() || ga.iter().any(|g| gb.contains(g)) {
        return None;
    }
    let names = |gs: &[Generation]| {
        gs.iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "different generational suffixes: {} vs {}",
        names(ga),
        names(gb)
    ))
}

/// Why there is no evidence for an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotLive {
    /// No such row in `entities`.
    Missing,
    /// The entity was merged into another or deleted since the candidate was flagged.
    Retired,
    /// The entity's kind is not the candidate's.
    KindMismatch,
}

/// Reads the evidence of a live entity of `kind`.
pub fn load_evidence(
    conn: &Connection,
    entity_id: &str,
    kind: EntityKind,
    limits: &EvidenceLimits,
) -> Result<Result<EntityEvidence, NotLive>, FuzzyError> {
    let Some(entity) = phase0::get_entity(conn, entity_id)? else {
        return Ok(Err(NotLive::Missing));
    };
    if entity.deleted_at.is_some() || entity.merged_into.is_some() {
        return Ok(Err(NotLive::Retired));
    }
    if entity.kind != kind {
        return Ok(Err(NotLive::KindMismatch));
    }
    let table = kind.source_table();
    let ids: Vec<i64> = phase0::links_of_entity(conn, entity_id)?
        .into_iter()
        .filter(|link| link.source_table == table)
        .map(|link| link.source_id)
        .take(limits.max_rows)
        .collect();
    let mut evidence = EntityEvidence {
        entity_id: entity_id.to_owned(),
        kind,
        record_count: 0,
        names: Vec::new(),
        emails: Vec::new(),
        phones: Vec::new(),
        titles: Vec::new(),
        organizations: Vec::new(),
        organization_kinds: Vec::new(),
        domains: Vec::new(),
        websites: Vec::new(),
        locations: Vec::new(),
        linkedin: Vec::new(),
        people: Vec::new(),
        recent_interactions: Vec::new(),
        hard: HardEvidence::default(),
    };
    match kind {
        EntityKind::Person => person_evidence(conn, &ids, limits, &mut evidence)?,
        EntityKind::Organization => organization_evidence(conn, &ids, limits, &mut evidence)?,
    }
    Ok(Ok(evidence))
}

/// Live rows, or every row when all of them are soft-deleted.
fn live_first<R>(rows: Vec<R>, deleted: impl Fn(&R) -> bool) -> Vec<R> {
    if rows.iter().all(&deleted) {
        rows
    } else {
        rows.into_iter().filter(|r| !deleted(r)).collect()
    }
}

fn person_evidence(
    conn: &Connection,
    ids: &[i64],
    limits: &EvidenceLimits,
    ev: &mut EntityEvidence,
) -> Result<(), FuzzyError> {
    let people = live_first(queries::rows_by_ids::<Person>(conn, ids)?, |p| {
        p.deleted_at.is_some()
    });
    ev.record_count = people.len();
    let org_ids: Vec<i64> = people.iter().filter_map(|p| p.organization_id).collect();
    let org_names = queries::organization_names(conn, &org_ids)?;
    let mut interactions = Vec::new();
    for person in &people {
        let name = if person.full_name.trim().is_empty() {
            let first = person.first_name.as_deref().unwrap_or("");
            let last = person.last_name.as_deref().unwrap_or("");
            format!("{first} {last}")
        } else {
            person.full_name.clone()
        };
        push(&mut ev.names, &name, limits);
        push_opt(&mut ev.emails, person.email.as_deref(), limits);
        push_opt(&mut ev.phones, person.phone.as_deref(), limits);
        push_opt(&mut ev.titles, person.title.as_deref(), limits);
        if let Some(org) = person.organization_id.and_then(|id| org_names.get(&id)) {
            push(&mut ev.organizations, org, limits);
        }
        push_opt(&mut ev.locations, person.location.as_deref(), limits);
        push_opt(&mut ev.linkedin, person.linkedin_url.as_deref(), limits);

        let parsed = PersonName::parse(
            person.first_name.as_deref(),
            person.last_name.as_deref(),
            &person.full_name,
        );
        if let Some(g) = parsed.generation
            && !ev.hard.generations.contains(&g)
        {
            ev.hard.generations.push(g);
        }
        interactions.extend(queries::interactions_of_person(
            conn,
            person.id,
            None,
            limits.max_interactions,
            Deleted::Exclude,
        )?);
    }
    ev.recent_interactions = recent(interactions, limits);
    Ok(())
}

fn organization_evidence(
    conn: &Connection,
    ids: &[i64],
    limits: &EvidenceLimits,
    ev: &mut EntityEvidence,
) -> Result<(), FuzzyError> {
    let orgs = live_first(queries::rows_by_ids::<Organization>(conn, ids)?, |o| {
        o.deleted_at.is_some()
    });
    ev.record_count = orgs.len();
    let mut interactions = Vec::new();
    for org in &orgs {
        push(&mut ev.names, &org.name, limits);
        push_opt(&mut ev.organization_kinds, org.kind.as_deref(), limits);
        push_opt(&mut ev.domains, org.domain.as_deref(), limits);
        push_opt(&mut ev.websites, org.website.as_deref(), limits);
        push_opt(&mut ev.locations, org.location.as_deref(), limits);
        if ev.people.len() < limits.max_people {
            let people = queries::people_of_organization(
                conn,
                org.id,
                None,
                limits.max_people,
                Deleted::Exclude,
            )?;
            for p in people {
                let label = match p.title.as_deref().map(str::trim) {
                    Some(t) if !t.is_empty() => format!("{} ({t})", p.full_name.trim()),
                    _ => p.full_name.trim().to_owned(),
                };
                if ev.people.len() < limits.max_people {
                    push(&mut ev.people, &label, limits);
                }
            }
        }
        interactions.extend(queries::interactions_of_organization(
            conn,
            org.id,
            None,
            limits.max_interactions,
            Deleted::Exclude,
        )?);
    }
    ev.recent_interactions = recent(interactions, limits);
    Ok(())
}

/// The most recent distinct interactions, newest first.
fn recent(mut all: Vec<Interaction>, limits: &EvidenceLimits) -> Vec<InteractionSummary> {
    all.sort_by(|x, y| y.occurred_at.cmp(&x.occurred_at).then(y.id.cmp(&x.id)));
    all.dedup_by_key(|i| i.id);
    all.into_iter()
        .take(limits.max_interactions)
        .map(|i| InteractionSummary {
            date: i.occurred_at.date_text(),
            kind: cut(i.kind.trim(), 20),
            subject: cut(&clean(i.subject.as_deref().unwrap_or("")), limits.max_chars),
        })
        .collect()
}

/// Whitespace (newlines, tabs, runs of spaces) collapsed to single spaces; control
/// characters dropped.
fn clean(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(1024));
    for word in value.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn push_opt(list: &mut Vec<String>, value: Option<&str>, limits: &EvidenceLimits) {
    if let Some(v) = value {
        push(list, v, limits);
    }
}

/// Adds a cleaned, cut, non-empty value not yet in the list, up to the list cap.
fn push(list: &mut Vec<String>, value: &str, limits: &EvidenceLimits) {
    if list.len() >= limits.max_values {
        return;
    }
    // Cleaning a megabyte only to keep 200 characters wastes time: cut generously first.
    let head = cut(value, limits.max_chars.saturating_mul(4).max(64));
    let value = cut(&clean(&head), limits.max_chars);
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(kind: EntityKind) -> EntityEvidence {
        EntityEvidence {
            entity_id: "x".to_owned(),
            kind,
            record_count: 1,
            names: Vec::new(),
            emails: Vec::new(),
            phones: Vec::new(),
            titles: Vec::new(),
            organizations: Vec::new(),
            organization_kinds: Vec::new(),
            domains: Vec::new(),
            websites: Vec::new(),
            locations: Vec::new(),
            linkedin: Vec::new(),
            people: Vec::new(),
            recent_interactions: Vec::new(),
            hard: HardEvidence::default(),
        }
    }

    #[test]
    fn different_generations_conflict_and_a_shared_or_missing_one_does_not() {
        let mut a = evidence(EntityKind::Person);
        let mut b = evidence(EntityKind::Person);
        assert_eq!(generation_conflict(&a, &b), None);
        a.hard.generations = vec![Generation::Junior];
        assert_eq!(generation_conflict(&a, &b), None, "one side only");
        b.hard.generations = vec![Generation::Senior];
        assert_eq!(
            generation_conflict(&a, &b).as_deref(),
            Some("different generational suffixes: Junior vs Senior")
        );
        b.hard.generations = vec![Generation::Senior, Generation::Junior];
        assert_eq!(generation_conflict(&a, &b), None, "one shared suffix");
    }

    #[test]
    fn values_are_cleaned_cut_deduplicated_and_capped() {
        let limits = EvidenceLimits {
            max_values: 2,
            max_chars: 10,
            ..EvidenceLimits::default()
        };
        let mut list = Vec::new();
        push(&mut list, "  Jane\n\tDoe  ", &limits);
        push(&mut list, "Jane Doe", &limits);
        push(&mut list, "   ", &limits);
        push(&mut list, &"x".repeat(1_000_000), &limits);
        push(&mut list, "third", &limits);
        assert_eq!(
            list,
            vec!["Jane Doe".to_owned(), format!("{}…", "x".repeat(10))]
        );
    }
}
