//! Rendering CRM rows into searchable documents, in one place.
//!
//! A document is what gets chunked, embedded and indexed: a title, a plain-text body and
//! the payload fields. It embeds data of related rows so that a search for a company finds
//! its people: a person's document names their organisation, an interaction's names its
//! participants and organisation, a deal's names its organisation. When those related rows
//! change, [`crate::queries::dependents`] says which documents to re-render.
//!
//! Rendering is deterministic (same rows, same bytes), strips HTML from bodies, normalises
//! whitespace, and never fails on messy text. Batch rendering reads related names with one
//! `IN (...)` query per page, not one query per row.

use std::collections::HashMap;
use std::fmt::Write as _;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::html::{html_to_text, looks_like_html, normalize_whitespace};
use crate::queries::{self, organization_names, person_names};
use crate::rows::{Deal, Interaction, Organization, Person, SourceRow, SourceTable};
use crate::timestamp::{Timestamp, Watermark};

/// What a document describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// A row of `people`.
    Person,
    /// A row of `organizations`.
    Organization,
    /// A row of `interactions`.
    Interaction,
    /// A row of `deals`.
    Deal,
}

impl DocumentKind {
    /// `person`, `organization`, `interaction` or `deal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Organization => "organization",
            Self::Interaction => "interaction",
            Self::Deal => "deal",
        }
    }

    /// The kind of document a source table's rows render to.
    pub fn of(table: SourceTable) -> Self {
        match table {
            SourceTable::People => Self::Person,
            SourceTable::Organizations => Self::Organization,
            SourceTable::Interactions => Self::Interaction,
            SourceTable::Deals => Self::Deal,
        }
    }
}

/// The payload fields of a document (everything but the text and the entity id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentFields {
    /// What the document describes.
    pub kind: DocumentKind,
    /// The organisation the row belongs to or is about (an organisation's own id for an
    /// organisation).
    pub organization_id: Option<i64>,
    /// That organisation's name, when it exists.
    pub organization_name: Option<String>,
    /// A sub-kind: the interaction kind (`meeting`, ...), the organisation kind, or the
    /// deal stage.
    pub category: Option<String>,
    /// When an interaction happened.
    pub occurred_at: Option<Timestamp>,
    /// When the row was created.
    pub created_at: Timestamp,
    /// When the row was last updated.
    pub updated_at: Timestamp,
    /// Whether the row is soft-deleted (its points must leave the index).
    pub deleted: bool,
    /// People involved: an interaction's participants; a person's own id.
    pub person_ids: Vec<i64>,
}

/// A CRM row rendered for the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The table the row comes from.
    pub source_table: SourceTable,
    /// The row's id.
    pub source_id: i64,
    /// A one-line title (never empty).
    pub title: String,
    /// The plain-text body, starting with the title line.
    pub text: String,
    /// Payload fields.
    pub fields: DocumentFields,
}

impl Document {
    /// SHA-256 (hex) over everything this document puts into the index: table, id, title,
    /// text and fields. The canonical entity id is deliberately not part of it: merges
    /// change entity ids, and those are patched into payloads without re-embedding.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        // serde_json of a struct is deterministic (field order is declaration order).
        match serde_json::to_vec(self) {
            Ok(bytes) => h.update(&bytes),
            // Serialising these plain types cannot fail; hash the debug form if it ever does
            // rather than returning a constant.
            Err(_) => h.update(format!("{self:?}").as_bytes()),
        }
        hex::encode(h.finalize())
    }

    /// SHA-256 (hex) over the title and text only: when it is unchanged but
    /// [`Document::content_hash`] changed, only the payload needs updating, not the vectors.
    pub fn text_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.title.as_bytes());
        h.update([0u8]);
        h.update(self.text.as_bytes());
        hex::encode(h.finalize())
    }
}

/// Renders a batch of rows of any source table.
pub fn render_rows<R: Renderable>(
    conn: &Connection,
    rows: &[R],
) -> Result<Vec<Document>, StoreError> {
    R::render_batch(conn, rows)
}

/// Source rows that can be rendered; implemented for the four typed rows.
pub trait Renderable: SourceRow {
    /// Renders a batch, reading related names with one query per batch.
    fn render_batch(conn: &Connection, rows: &[Self]) -> Result<Vec<Document>, StoreError>;
}

impl Renderable for Organization {
    fn render_batch(_conn: &Connection, rows: &[Self]) -> Result<Vec<Document>, StoreError> {
        Ok(rows.iter().map(render_organization).collect())
    }
}

impl Renderable for Person {
    fn render_batch(conn: &Connection, rows: &[Self]) -> Result<Vec<Document>, StoreError> {
        let org_ids: Vec<i64> = rows.iter().filter_map(|p| p.organization_id).collect();
        let orgs = organization_names(conn, &org_ids)?;
        Ok(rows
            .iter()
            .map(|p| render_person(p, org_name(&orgs, p.organization_id)))
            .collect())
    }
}

impl Renderable for Interaction {
    fn render_batch(conn: &Connection, rows: &[Self]) -> Result<Vec<Document>, StoreError> {
        let org_ids: Vec<i64> = rows.iter().filter_map(|i| i.organization_id).collect();
        let orgs = organization_names(conn, &org_ids)?;
        let person_ids: Vec<i64> = rows
            .iter()
            .flat_map(|i| i.participant_ids.iter().copied())
            .collect();
        let people = person_names(conn, &person_ids)?;
        Ok(rows
            .iter()
            .map(|i| {
                let names: Vec<&str> = i
                    .participant_ids
                    .iter()
                    .filter_map(|id| people.get(id).map(String::as_str))
                    .collect();
                render_interaction(i, org_name(&orgs, i.organization_id), &names)
            })
            .collect())
    }
}

impl Renderable for Deal {
    fn render_batch(conn: &Connection, rows: &[Self]) -> Result<Vec<Document>, StoreError> {
        let org_ids: Vec<i64> = rows.iter().filter_map(|d| d.organization_id).collect();
        let orgs = organization_names(conn, &org_ids)?;
        Ok(rows
            .iter()
            .map(|d| render_deal(d, org_name(&orgs, d.organization_id)))
            .collect())
    }
}

fn org_name(names: &HashMap<i64, String>, id: Option<i64>) -> Option<&str> {
    id.and_then(|id| names.get(&id)).map(String::as_str)
}

/// A page of documents rendered from a keyset scan.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedPage {
    /// The documents, in keyset order.
    pub documents: Vec<Document>,
    /// The watermark after the page's last row; `None` when the page is empty.
    pub next: Option<Watermark>,
}

/// Reads the next keyset page of `table` after `after` and renders it. For callers that
/// pick the table at run time (the sync loop).
pub fn render_changed(
    conn: &Connection,
    table: SourceTable,
    after: Option<Watermark>,
    limit: usize,
) -> Result<RenderedPage, StoreError> {
    fn page<R: Renderable>(
        conn: &Connection,
        after: Option<Watermark>,
        limit: usize,
    ) -> Result<RenderedPage, StoreError> {
        let page = queries::keyset_page::<R>(conn, after, limit)?;
        Ok(RenderedPage {
            documents: R::render_batch(conn, &page.rows)?,
            next: page.next,
        })
    }
    match table {
        SourceTable::Organizations => page::<Organization>(conn, after, limit),
        SourceTable::People => page::<Person>(conn, after, limit),
        SourceTable::Interactions => page::<Interaction>(conn, after, limit),
        SourceTable::Deals => page::<Deal>(conn, after, limit),
    }
}

/// Reads the rows with the given ids and renders them (missing ids are absent), ordered by
/// id. For re-rendering dependents and single rows.
pub fn render_by_ids(
    conn: &Connection,
    table: SourceTable,
    ids: &[i64],
) -> Result<Vec<Document>, StoreError> {
    fn by_ids<R: Renderable>(conn: &Connection, ids: &[i64]) -> Result<Vec<Document>, StoreError> {
        let rows = queries::rows_by_ids::<R>(conn, ids)?;
        R::render_batch(conn, &rows)
    }
    match table {
        SourceTable::Organizations => by_ids::<Organization>(conn, ids),
        SourceTable::People => by_ids::<Person>(conn, ids),
        SourceTable::Interactions => by_ids::<Interaction>(conn, ids),
        SourceTable::Deals => by_ids::<Deal>(conn, ids),
    }
}

/// Renders an organisation.
pub fn render_organization(org: &Organization) -> Document {
    let name = inline(&org.name);
    let title = non_empty_or(name, || format!("Organization {}", org.id));
    let mut text = title.clone();
    line(&mut text, "Kind", org.kind.as_deref());
    line(&mut text, "Domain", org.domain.as_deref());
    line(&mut text, "Website", org.website.as_deref());
    line(&mut text, "Location", org.location.as_deref());
    paragraph(&mut text, org.description.as_deref());
    Document {
        source_table: SourceTable::Organizations,
        source_id: org.id,
        title: title.clone(),
        text,
        fields: DocumentFields {
            kind: DocumentKind::Organization,
            organization_id: Some(org.id),
            organization_name: Some(title),
            category: org.kind.as_deref().map(inline).filter(|s| !s.is_empty()),
            occurred_at: None,
            created_at: org.created_at,
            updated_at: org.updated_at,
            deleted: org.deleted_at.is_some(),
            person_ids: Vec::new(),
        },
    }
}

/// Renders a person; `organization_name` is their organisation's name, when it exists.
pub fn render_person(person: &Person, organization_name: Option<&str>) -> Document {
    let title = non_empty_or(person_display_name(person), || {
        format!("Person {}", person.id)
    });
    let org = organization_name.map(inline).filter(|s| !s.is_empty());
    let mut text = title.clone();
    let role = match (person.title.as_deref().map(inline), org.as_deref()) {
        (Some(t), Some(o)) if !t.is_empty() => Some(format!("{t} at {o}")),
        (Some(t), _) if !t.is_empty() => Some(t),
        (_, Some(o)) => Some(format!("Works at {o}")),
        _ => None,
    };
    if let Some(role) = role {
        text.push('\n');
        text.push_str(&role);
    }
    line(&mut text, "Email", person.email.as_deref());
    line(&mut text, "Phone", person.phone.as_deref());
    line(&mut text, "LinkedIn", person.linkedin_url.as_deref());
    line(&mut text, "Location", person.location.as_deref());
    paragraph(&mut text, person.bio.as_deref());
    Document {
        source_table: SourceTable::People,
        source_id: person.id,
        title,
        text,
        fields: DocumentFields {
            kind: DocumentKind::Person,
            organization_id: person.organization_id,
            organization_name: org,
            category: None,
            occurred_at: None,
            created_at: person.created_at,
            updated_at: person.updated_at,
            deleted: person.deleted_at.is_some(),
            person_ids: vec![person.id],
        },
    }
}

/// A person's name as shown: `full_name`, else first and last name, normalised.
pub fn person_display_name(person: &Person) -> String {
    display_name(
        &person.full_name,
        person.first_name.as_deref(),
        person.last_name.as_deref(),
    )
}

fn display_name(full: &str, first: Option<&str>, last: Option<&str>) -> String {
    let full = inline(full);
    if !full.is_empty() {
        return full;
    }
    inline(&format!("{} {}", first.unwrap_or(""), last.unwrap_or("")))
}

/// The title of a person's document: the display name, else `Person <id>`. Interactions
/// name their participants the same way.
pub fn person_title(id: i64, full: &str, first: Option<&str>, last: Option<&str>) -> String {
    non_empty_or(display_name(full, first, last), || format!("Person {id}"))
}

/// Renders an interaction with its organisation's name and its participants' display
/// names as [`person_title`] gives them (in participant-id order; participants that no
/// longer exist are left out).
pub fn render_interaction(
    interaction: &Interaction,
    organization_name: Option<&str>,
    participant_names: &[&str],
) -> Document {
    let kind = inline(&interaction.kind);
    let kind_label = capitalise(if kind.is_empty() {
        "interaction"
    } else {
        &kind
    });
    let org = organization_name.map(inline).filter(|s| !s.is_empty());
    let date = interaction.occurred_at.date_text();
    let subject = interaction
        .subject
        .as_deref()
        .map(inline)
        .filter(|s| !s.is_empty());
    let title = match (&subject, &org) {
        (Some(s), _) => s.clone(),
        (None, Some(o)) => format!("{kind_label} with {o} on {date}"),
        (None, None) => format!("{kind_label} on {date}"),
    };
    // Already display names (`person_title`): cleaning them again is not idempotent
    // (an entity decoded by the first pass would be decoded again).
    let names: Vec<&str> = participant_names
        .iter()
        .copied()
        .filter(|n| !n.is_empty())
        .collect();
    let mut text = title.clone();
    let _ = write!(text, "\n{kind_label} on {date}");
    if let Some(o) = &org {
        let _ = write!(text, "\nOrganization: {o}");
    }
    if !names.is_empty() {
        let _ = write!(text, "\nParticipants: {}", names.join(", "));
    }
    line(&mut text, "Recorded by", interaction.created_by.as_deref());
    paragraph(&mut text, interaction.body.as_deref());
    Document {
        source_table: SourceTable::Interactions,
        source_id: interaction.id,
        title,
        text,
        fields: DocumentFields {
            kind: DocumentKind::Interaction,
            organization_id: interaction.organization_id,
            organization_name: org,
            category: Some(kind).filter(|k| !k.is_empty()),
            occurred_at: Some(interaction.occurred_at),
            created_at: interaction.created_at,
            updated_at: interaction.updated_at,
            deleted: interaction.deleted_at.is_some(),
            person_ids: interaction.participant_ids.clone(),
        },
    }
}

/// Renders a deal with its organisation's name.
pub fn render_deal(deal: &Deal, organization_name: Option<&str>) -> Document {
    let title = non_empty_or(inline(&deal.name), || format!("Deal {}", deal.id));
    let org = organization_name.map(inline).filter(|s| !s.is_empty());
    let mut text = title.clone();
    if let Some(o) = &org {
        let _ = write!(text, "\nDeal with {o}");
    }
    line(&mut text, "Stage", deal.stage.as_deref());
    if let Some(amount) = deal.amount_usd.filter(|a| a.is_finite()) {
        let _ = write!(text, "\nAmount: {}", format_usd(amount));
    }
    paragraph(&mut text, deal.notes.as_deref());
    Document {
        source_table: SourceTable::Deals,
        source_id: deal.id,
        title,
        text,
        fields: DocumentFields {
            kind: DocumentKind::Deal,
            organization_id: deal.organization_id,
            organization_name: org,
            category: deal.stage.as_deref().map(inline).filter(|s| !s.is_empty()),
            occurred_at: None,
            created_at: deal.created_at,
            updated_at: deal.updated_at,
            deleted: deal.deleted_at.is_some(),
            person_ids: Vec::new(),
        },
    }
}

/// A single line: HTML stripped if any, whitespace (including newlines) collapsed.
fn inline(s: &str) -> String {
    let text = if looks_like_html(s) {
        html_to_text(s)
    } else {
        normalize_whitespace(s)
    };
    if text.contains('\n') {
        text.split('\n')
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text
    }
}

fn non_empty_or(s: String, fallback: impl FnOnce() -> String) -> String {
    if s.is_empty() { fallback() } else { s }
}

/// Appends `\nLabel: value` when the value is non-empty after normalising.
fn line(text: &mut String, label: &str, value: Option<&str>) {
    if let Some(v) = value.map(inline).filter(|v| !v.is_empty()) {
        let _ = write!(text, "\n{label}: {v}");
    }
}

/// Appends a blank line and a body (HTML stripped, whitespace normalised) when non-empty.
fn paragraph(text: &mut String, body: Option<&str>) {
    let Some(body) = body else { return };
    let body = if looks_like_html(body) {
        html_to_text(body)
    } else {
        normalize_whitespace(body)
    };
    if !body.is_empty() {
        text.push_str("\n\n");
        text.push_str(&body);
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `$1,234,567` for whole amounts, `$1,234.50` otherwise; deterministic, no locale.
fn format_usd(amount: f64) -> String {
    let negative = amount < 0.0;
    let cents = (amount.abs() * 100.0).round();
    // Amounts beyond ~9e15 lose cents anyway; print them without grouping.
    if cents >= 9.0e17 {
        return format!("{}${:.0}", if negative { "-" } else { "" }, amount.abs());
    }
    let cents = cents as u64;
    let dollars = cents / 100;
    let rest = cents % 100;
    let digits = dollars.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if negative { "-" } else { "" };
    if rest == 0 {
        format!("{sign}${grouped}")
    } else {
        format!("{sign}${grouped}.{rest:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_formatting() {
        assert_eq!(format_usd(5_000_000.0), "$5,000,000");
        assert_eq!(format_usd(1234.5), "$1,234.50");
        assert_eq!(format_usd(0.0), "$0");
        assert_eq!(format_usd(-999.0), "-$999");
        assert_eq!(format_usd(1e20), "$100000000000000000000");
    }

    #[test]
    fn inline_collapses_lines() {
        assert_eq!(inline("  Jane \n\n Doe "), "Jane Doe");
        assert_eq!(inline("<b>Acme</b>&nbsp;Inc"), "Acme Inc");
    }
}
