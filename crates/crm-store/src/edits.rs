//! The few writes the substrate makes to the CRM's own tables: notes and whitelisted
//! field updates requested through the MCP server.
//!
//! Every function takes a `&Transaction`: a write and its `mcp_write_log` row
//! ([`crate::phase0::insert_mcp_write`]) are meant to commit together, and the caller keeps
//! the transaction short (the CRM shares the write lock).
//! Column names come from the enums here, never from input; values are bound parameters.
//! Each write sets `updated_at` to the canonical now, so the next incremental sync picks it
//! up.

use rusqlite::Transaction;
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, sql};
use crate::rows::SourceTable;
use crate::timestamp::Timestamp;

/// A `people` column that may be updated through the MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonField {
    /// `title`
    Title,
    /// `email`
    Email,
    /// `phone`
    Phone,
    /// `location`
    Location,
    /// `bio`
    Bio,
}

impl PersonField {
    /// Every updatable person column.
    pub const ALL: [Self; 5] = [
        Self::Title,
        Self::Email,
        Self::Phone,
        Self::Location,
        Self::Bio,
    ];

    /// The column name.
    pub fn column(self) -> &'static str {
        match self {
            Self::Title => "title",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Location => "location",
            Self::Bio => "bio",
        }
    }
}

/// An `organizations` column that may be updated through the MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganizationField {
    /// `website`
    Website,
    /// `domain`
    Domain,
    /// `description`
    Description,
    /// `location`
    Location,
}

impl OrganizationField {
    /// Every updatable organisation column.
    pub const ALL: [Self; 4] = [
        Self::Website,
        Self::Domain,
        Self::Description,
        Self::Location,
    ];

    /// The column name.
    pub fn column(self) -> &'static str {
        match self {
            Self::Website => "website",
            Self::Domain => "domain",
            Self::Description => "description",
            Self::Location => "location",
        }
    }
}

/// Sets whitelisted columns of one person (`None` stores NULL) and `updated_at = now`.
/// Returns whether a row was updated (false: no person with that id).
pub fn update_person_fields(
    tx: &Transaction<'_>,
    id: i64,
    changes: &[(PersonField, Option<String>)],
    now: Timestamp,
) -> Result<bool, StoreError> {
    let columns: Vec<&'static str> = changes.iter().map(|(f, _)| f.column()).collect();
    let values: Vec<Option<&str>> = changes.iter().map(|(_, v)| v.as_deref()).collect();
    update_columns(tx, SourceTable::People, id, &columns, &values, now)
}

/// Sets whitelisted columns of one organisation (`None` stores NULL) and
/// `updated_at = now`. Returns whether a row was updated.
pub fn update_organization_fields(
    tx: &Transaction<'_>,
    id: i64,
    changes: &[(OrganizationField, Option<String>)],
    now: Timestamp,
) -> Result<bool, StoreError> {
    let columns: Vec<&'static str> = changes.iter().map(|(f, _)| f.column()).collect();
    let values: Vec<Option<&str>> = changes.iter().map(|(_, v)| v.as_deref()).collect();
    update_columns(tx, SourceTable::Organizations, id, &columns, &values, now)
}

fn update_columns(
    tx: &Transaction<'_>,
    table: SourceTable,
    id: i64,
    columns: &[&'static str],
    values: &[Option<&str>],
    now: Timestamp,
) -> Result<bool, StoreError> {
    if columns.is_empty() {
        return Err(StoreError::InvalidValue {
            table: table.as_str(),
            message: format!("an update of row {id} must change at least one column"),
        });
    }
    let mut set = String::new();
    for (i, column) in columns.iter().enumerate() {
        set.push_str(&format!("{column} = ?{}, ", i + 1));
    }
    let n = columns.len();
    let query = format!(
        "UPDATE {table} SET {set}updated_at = ?{} WHERE id = ?{}",
        n + 1,
        n + 2
    );
    let mut params: Vec<rusqlite::types::Value> = values
        .iter()
        .map(|v| match v {
            Some(s) => rusqlite::types::Value::Text((*s).to_owned()),
            None => rusqlite::types::Value::Null,
        })
        .collect();
    params.push(rusqlite::types::Value::Text(now.to_canonical()));
    params.push(rusqlite::types::Value::Integer(id));
    let changed = tx
        .execute(&query, rusqlite::params_from_iter(params))
        .map_err(sql(format!("updating {table} {id}")))?;
    Ok(changed > 0)
}

/// A note to add as an interaction of kind `note`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNote<'a> {
    /// Subject line.
    pub subject: Option<&'a str>,
    /// The note's text.
    pub body: &'a str,
    /// When the note is about (usually now).
    pub occurred_at: Timestamp,
    /// The organisation the note is about.
    pub organization_id: Option<i64>,
    /// The people the note is about (`interaction_people`).
    pub person_ids: &'a [i64],
    /// Who wrote it (stored in `created_by`).
    pub created_by: &'a str,
    /// `created_at` and `updated_at`.
    pub now: Timestamp,
}

/// Inserts a note and its participants; returns the new interaction id. The caller
/// checks that the people and organisation exist.
pub fn insert_note(tx: &Transaction<'_>, note: &NewNote<'_>) -> Result<i64, StoreError> {
    let now = note.now.to_canonical();
    tx.execute(
        "INSERT INTO interactions \
           (kind, occurred_at, subject, body, organization_id, created_by, created_at, updated_at) \
         VALUES ('note', ?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        rusqlite::params![
            note.occurred_at.to_canonical(),
            note.subject,
            note.body,
            note.organization_id,
            note.created_by,
            now
        ],
    )
    .map_err(sql("inserting a note into `interactions`"))?;
    let id = tx.last_insert_rowid();
    let mut people = note.person_ids.to_vec();
    people.sort_unstable();
    people.dedup();
    let mut stmt = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO interaction_people (interaction_id, person_id) VALUES (?1, ?2)",
        )
        .map_err(sql(format!("linking people to note {id}")))?;
    for person in people {
        stmt.execute(rusqlite::params![id, person])
            .map_err(sql(format!("linking person {person} to note {id}")))?;
    }
    Ok(id)
}
