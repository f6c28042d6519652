//! Typed CRM rows and the lenient readers that build them.
//!
//! CRM data is messy: a TEXT column may hold an integer, a blob or invalid UTF-8, a
//! timestamp may be missing or not a date. Reading never fails on such values: text is
//! decoded lossily, numbers in text columns are rendered as text, unusable foreign keys read
//! as `None`, and timestamps follow the rule in [`crate::timestamp`].

use std::fmt;
use std::str::FromStr;

use rusqlite::Row;
use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::timestamp::{Timestamp, normalised_sql};

/// One of the four CRM tables that are indexed and resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceTable {
    /// `organizations`
    Organizations,
    /// `people`
    People,
    /// `interactions`
    Interactions,
    /// `deals`
    Deals,
}

impl SourceTable {
    /// Every source table, in dependency order (organisations first).
    pub const ALL: [Self; 4] = [
        Self::Organizations,
        Self::People,
        Self::Interactions,
        Self::Deals,
    ];

    /// The SQL table name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organizations => "organizations",
            Self::People => "people",
            Self::Interactions => "interactions",
            Self::Deals => "deals",
        }
    }
}

impl fmt::Display for SourceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceTable {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "organizations" => Ok(Self::Organizations),
            "people" => Ok(Self::People),
            "interactions" => Ok(Self::Interactions),
            "deals" => Ok(Self::Deals),
            other => Err(StoreError::UnknownTable(crate::error::excerpt(other))),
        }
    }
}

/// A row of `organizations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    /// Primary key.
    pub id: i64,
    /// Name as written in the CRM (may be empty in messy data).
    pub name: String,
    /// Free-text kind (startup, fund, lp, service_provider, law_firm, ...).
    pub kind: Option<String>,
    /// Web domain, as written (not normalised).
    pub domain: Option<String>,
    /// Website URL.
    pub website: Option<String>,
    /// Description (may contain HTML).
    pub description: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Creation time, normalised.
    pub created_at: Timestamp,
    /// Last update, normalised.
    pub updated_at: Timestamp,
    /// Soft-delete time, normalised; `Some` means the row is soft-deleted.
    pub deleted_at: Option<Timestamp>,
}

/// A row of `people`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Primary key.
    pub id: i64,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Full name as written in the CRM (may be empty in messy data).
    pub full_name: String,
    /// Email as written (not normalised: may have spaces or capitals).
    pub email: Option<String>,
    /// Phone as written (any format).
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// The person's organisation, if any.
    pub organization_id: Option<i64>,
    /// LinkedIn URL as written.
    pub linkedin_url: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Biography (may contain HTML).
    pub bio: Option<String>,
    /// Creation time, normalised.
    pub created_at: Timestamp,
    /// Last update, normalised.
    pub updated_at: Timestamp,
    /// Soft-delete time, normalised; `Some` means the row is soft-deleted.
    pub deleted_at: Option<Timestamp>,
}

/// A row of `interactions`, with its participants from `interaction_people`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Primary key.
    pub id: i64,
    /// `meeting`, `call`, `email` or `note` (free text in messy data).
    pub kind: String,
    /// When it happened, normalised.
    pub occurred_at: Timestamp,
    /// Subject line.
    pub subject: Option<String>,
    /// Body (may contain HTML, may be very large).
    pub body: Option<String>,
    /// The organisation it is about, if any.
    pub organization_id: Option<i64>,
    /// Who recorded it.
    pub created_by: Option<String>,
    /// Creation time, normalised.
    pub created_at: Timestamp,
    /// Last update, normalised.
    pub updated_at: Timestamp,
    /// Soft-delete time, normalised; `Some` means the row is soft-deleted.
    pub deleted_at: Option<Timestamp>,
    /// Ids of the participating people, ascending (may name deleted people).
    pub participant_ids: Vec<i64>,
}

/// A row of `deals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    /// Primary key.
    pub id: i64,
    /// The organisation the deal is with, if any.
    pub organization_id: Option<i64>,
    /// Deal name.
    pub name: String,
    /// Pipeline stage (free text).
    pub stage: Option<String>,
    /// Amount in US dollars.
    pub amount_usd: Option<f64>,
    /// Notes (may contain HTML).
    pub notes: Option<String>,
    /// Creation time, normalised.
    pub created_at: Timestamp,
    /// Last update, normalised.
    pub updated_at: Timestamp,
    /// Soft-delete time, normalised; `Some` means the row is soft-deleted.
    pub deleted_at: Option<Timestamp>,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Organization {}
    impl Sealed for super::Person {}
    impl Sealed for super::Interaction {}
    impl Sealed for super::Deal {}
}

/// What the four typed rows have in common; implemented by this crate only.
///
/// The generic queries in [`crate::queries`] (keyset pages, fetch by ids, paging by id)
/// work over any `SourceRow`.
pub trait SourceRow: sealed::Sealed + Sized + Send {
    /// The table the row comes from.
    const TABLE: SourceTable;
    /// The primary key.
    fn id(&self) -> i64;
    /// The normalised `updated_at`.
    fn updated_at(&self) -> Timestamp;
    /// The normalised `deleted_at`, `Some` for a soft-deleted row.
    fn deleted_at(&self) -> Option<Timestamp>;
    /// The organisation the row belongs to or is about.
    fn organization_id(&self) -> Option<i64>;

    /// The SELECT list (without `SELECT`) that [`SourceRow::from_row`] reads.
    #[doc(hidden)]
    fn select_list() -> &'static str;
    /// Builds the row from a result row of [`SourceRow::select_list`].
    #[doc(hidden)]
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self>;
    /// Fills data from other tables (an interaction's participants), one query per page.
    #[doc(hidden)]
    fn attach(_conn: &rusqlite::Connection, _rows: &mut [Self]) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The SELECT list shared by all tables: id, then normalised and raw timestamps.
/// Column positions 0..=6 are fixed: id, created, created raw, updated, updated raw,
/// deleted (normalised, NULL when not deleted), deleted raw.
fn common_select() -> String {
    format!(
        "id, {created}, created_at, {updated}, updated_at, \
         CASE WHEN NULLIF(TRIM(deleted_at), '') IS NULL THEN NULL ELSE {deleted} END, deleted_at",
        created = normalised_sql("created_at"),
        updated = normalised_sql("updated_at"),
        deleted = normalised_sql("deleted_at"),
    )
}

struct Common {
    id: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    deleted_at: Option<Timestamp>,
}

fn read_common(row: &Row<'_>, table: SourceTable) -> rusqlite::Result<Common> {
    let id: i64 = row.get(0)?;
    let t = table.as_str();
    let created_at = Timestamp::from_crm(
        text(row, 1)?.as_deref(),
        text(row, 2)?.as_deref(),
        t,
        id,
        "created_at",
    );
    let updated_at = Timestamp::from_crm(
        text(row, 3)?.as_deref(),
        text(row, 4)?.as_deref(),
        t,
        id,
        "updated_at",
    );
    let deleted_norm = text(row, 5)?;
    let deleted_at = match deleted_norm {
        None => None,
        Some(n) => Some(Timestamp::from_crm(
            Some(&n),
            text(row, 6)?.as_deref(),
            t,
            id,
            "deleted_at",
        )),
    };
    Ok(Common {
        id,
        created_at,
        updated_at,
        deleted_at,
    })
}

/// Reads any column as optional text, never failing on type: invalid UTF-8 is replaced,
/// numbers are formatted, blobs are decoded lossily.
pub(crate) fn text(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<String>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    })
}

/// Optional text with empty strings read as `None`.
fn opt_text(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<String>> {
    Ok(text(row, idx)?.filter(|s| !s.is_empty()))
}

/// Reads a foreign key leniently: integers as is, integer-looking text parsed, anything
/// else `None`.
pub(crate) fn opt_id(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<i64>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse().ok()),
        _ => None,
    })
}

/// Reads a number leniently: reals and integers as is, numeric text parsed, else `None`.
fn opt_f64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<f64>> {
    Ok(match row.get_ref(idx)? {
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(f) => Some(f),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|f| f.is_finite()),
        _ => None,
    })
}

impl SourceRow for Organization {
    const TABLE: SourceTable = SourceTable::Organizations;
    fn id(&self) -> i64 {
        self.id
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn deleted_at(&self) -> Option<Timestamp> {
        self.deleted_at
    }
    fn organization_id(&self) -> Option<i64> {
        Some(self.id)
    }
    fn select_list() -> &'static str {
        static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        LIST.get_or_init(|| {
            format!(
                "{}, name, kind, domain, website, description, location",
                common_select()
            )
        })
    }
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let c = read_common(row, Self::TABLE)?;
        Ok(Self {
            id: c.id,
            name: text(row, 7)?.unwrap_or_default(),
            kind: opt_text(row, 8)?,
            domain: opt_text(row, 9)?,
            website: opt_text(row, 10)?,
            description: opt_text(row, 11)?,
            location: opt_text(row, 12)?,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        })
    }
}

impl SourceRow for Person {
    const TABLE: SourceTable = SourceTable::People;
    fn id(&self) -> i64 {
        self.id
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn deleted_at(&self) -> Option<Timestamp> {
        self.deleted_at
    }
    fn organization_id(&self) -> Option<i64> {
        self.organization_id
    }
    fn select_list() -> &'static str {
        static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        LIST.get_or_init(|| {
            format!(
                "{}, first_name, last_name, full_name, email, phone, title, organization_id, \
                 linkedin_url, location, bio",
                common_select()
            )
        })
    }
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let c = read_common(row, Self::TABLE)?;
        Ok(Self {
            id: c.id,
            first_name: opt_text(row, 7)?,
            last_name: opt_text(row, 8)?,
            full_name: text(row, 9)?.unwrap_or_default(),
            email: opt_text(row, 10)?,
            phone: opt_text(row, 11)?,
            title: opt_text(row, 12)?,
            organization_id: opt_id(row, 13)?,
            linkedin_url: opt_text(row, 14)?,
            location: opt_text(row, 15)?,
            bio: opt_text(row, 16)?,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        })
    }
}

impl SourceRow for Interaction {
    const TABLE: SourceTable = SourceTable::Interactions;
    fn id(&self) -> i64 {
        self.id
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn deleted_at(&self) -> Option<Timestamp> {
        self.deleted_at
    }
    fn organization_id(&self) -> Option<i64> {
        self.organization_id
    }
    fn select_list() -> &'static str {
        static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        LIST.get_or_init(|| {
            format!(
                "{}, kind, {occurred}, occurred_at, subject, body, organization_id, created_by",
                common_select(),
                occurred = normalised_sql("occurred_at"),
            )
        })
    }
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let c = read_common(row, Self::TABLE)?;
        let occurred_at = Timestamp::from_crm(
            text(row, 8)?.as_deref(),
            text(row, 9)?.as_deref(),
            Self::TABLE.as_str(),
            c.id,
            "occurred_at",
        );
        Ok(Self {
            id: c.id,
            kind: text(row, 7)?.unwrap_or_default(),
            occurred_at,
            subject: opt_text(row, 10)?,
            body: opt_text(row, 11)?,
            organization_id: opt_id(row, 12)?,
            created_by: opt_text(row, 13)?,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
            participant_ids: Vec::new(),
        })
    }
    fn attach(conn: &rusqlite::Connection, rows: &mut [Self]) -> Result<(), StoreError> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let pairs = crate::queries::participant_pairs(conn, &ids)?;
        let mut by_interaction: std::collections::HashMap<i64, Vec<i64>> =
            std::collections::HashMap::with_capacity(rows.len());
        for (interaction_id, person_id) in pairs {
            by_interaction
                .entry(interaction_id)
                .or_default()
                .push(person_id);
        }
        for row in rows {
            if let Some(mut people) = by_interaction.remove(&row.id) {
                people.sort_unstable();
                people.dedup();
                row.participant_ids = people;
            }
        }
        Ok(())
    }
}

impl SourceRow for Deal {
    const TABLE: SourceTable = SourceTable::Deals;
    fn id(&self) -> i64 {
        self.id
    }
    fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    fn deleted_at(&self) -> Option<Timestamp> {
        self.deleted_at
    }
    fn organization_id(&self) -> Option<i64> {
        self.organization_id
    }
    fn select_list() -> &'static str {
        static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        LIST.get_or_init(|| {
            format!(
                "{}, organization_id, name, stage, amount_usd, notes",
                common_select()
            )
        })
    }
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let c = read_common(row, Self::TABLE)?;
        Ok(Self {
            id: c.id,
            organization_id: opt_id(row, 7)?,
            name: text(row, 8)?.unwrap_or_default(),
            stage: opt_text(row, 9)?,
            amount_usd: opt_f64(row, 10)?,
            notes: opt_text(row, 11)?,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        })
    }
}

/// The fields of a live person row that identify who it is: what entity resolution
/// reads, without the biography and timestamps (a lean read of a million rows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersonIdentity {
    /// Primary key.
    pub id: i64,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Full name as written (may be empty in messy data).
    pub full_name: String,
    /// Email, as written.
    pub email: Option<String>,
    /// Phone, as written.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// Employer, when the key is usable.
    pub organization_id: Option<i64>,
    /// LinkedIn URL.
    pub linkedin_url: Option<String>,
    /// Location.
    pub location: Option<String>,
}

/// The fields of a live organisation row that identify it (see [`PersonIdentity`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrganizationIdentity {
    /// Primary key.
    pub id: i64,
    /// Name as written (may be empty in messy data).
    pub name: String,
    /// Free-text kind.
    pub kind: Option<String>,
    /// Web domain, as written.
    pub domain: Option<String>,
    /// Website URL.
    pub website: Option<String>,
    /// Location.
    pub location: Option<String>,
}

/// A lean row type read by [`crate::queries::live_identities_after_id`].
pub trait IdentityRow: Sized {
    /// The table.
    const TABLE: SourceTable;
    /// The columns, in `from_row` order (`id` first).
    const COLUMNS: &'static str;
    /// The row's id.
    fn id(&self) -> i64;
    /// Decodes a row leniently, like the full row types.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self>;
}

impl IdentityRow for PersonIdentity {
    const TABLE: SourceTable = SourceTable::People;
    const COLUMNS: &'static str = "id, first_name, last_name, full_name, email, phone, title, \
                                   organization_id, linkedin_url, location";
    fn id(&self) -> i64 {
        self.id
    }
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            first_name: opt_text(row, 1)?,
            last_name: opt_text(row, 2)?,
            full_name: text(row, 3)?.unwrap_or_default(),
            email: opt_text(row, 4)?,
            phone: opt_text(row, 5)?,
            title: opt_text(row, 6)?,
            organization_id: opt_id(row, 7)?,
            linkedin_url: opt_text(row, 8)?,
            location: opt_text(row, 9)?,
        })
    }
}

impl IdentityRow for OrganizationIdentity {
    const TABLE: SourceTable = SourceTable::Organizations;
    const COLUMNS: &'static str = "id, name, kind, domain, website, location";
    fn id(&self) -> i64 {
        self.id
    }
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: text(row, 1)?.unwrap_or_default(),
            kind: opt_text(row, 2)?,
            domain: opt_text(row, 3)?,
            website: opt_text(row, 4)?,
            location: opt_text(row, 5)?,
        })
    }
}

impl From<&Person> for PersonIdentity {
    fn from(p: &Person) -> Self {
        Self {
            id: p.id,
            first_name: p.first_name.clone(),
            last_name: p.last_name.clone(),
            full_name: p.full_name.clone(),
            email: p.email.clone(),
            phone: p.phone.clone(),
            title: p.title.clone(),
            organization_id: p.organization_id,
            linkedin_url: p.linkedin_url.clone(),
            location: p.location.clone(),
        }
    }
}

impl From<&Organization> for OrganizationIdentity {
    fn from(o: &Organization) -> Self {
        Self {
            id: o.id,
            name: o.name.clone(),
            kind: o.kind.clone(),
            domain: o.domain.clone(),
            website: o.website.clone(),
            location: o.location.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_table_round_trips() {
        for t in SourceTable::ALL {
            assert_eq!(t.as_str().parse::<SourceTable>().unwrap(), t);
        }
        let err = "persons".parse::<SourceTable>().unwrap_err();
        assert!(err.to_string().contains("persons"));
    }
}
