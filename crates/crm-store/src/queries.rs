//! Reads over the CRM tables that the other steps need.
//!
//! Every function takes a `&Connection` (a `Transaction` derefs to one), so the caller
//! decides the transaction scope. Lists of ids are queried with one `IN (...)` statement
//! per chunk of [`IN_CHUNK`] ids, never one statement per row.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, sql};
use crate::rows::{
    Deal, IdentityRow, Interaction, Organization, Person, SourceRow, SourceTable, text,
};
use crate::timestamp::{NORMALISED_UPDATED_AT, Timestamp, Watermark, normalised_sql};

/// The most ids bound in one `IN (...)` list.
pub const IN_CHUNK: usize = 500;

/// One page of a keyset scan.
#[derive(Debug, Clone, PartialEq)]
pub struct KeysetPage<R> {
    /// The rows, ordered by `(normalised updated_at, id)`.
    pub rows: Vec<R>,
    /// The watermark of the last row, to pass as `after` for the next page; `None` when the
    /// page is empty (the scan is complete).
    pub next: Option<Watermark>,
}

/// Binds a watermark for the keyset predicate; `None` means "from the very start": the
/// empty string sorts before every normalised timestamp.
fn keyset_bounds(after: Option<Watermark>) -> (String, i64) {
    match after {
        Some(w) => (w.updated_at.to_canonical(), w.id),
        None => (String::new(), i64::MIN),
    }
}

/// The keyset predicate and order. `k >= ?1 AND (k > ?1 OR id > ?2)` rather than the
/// row value `(k, id) > (?1, ?2)`: SQLite only turns the former into a range search on an
/// expression index.
fn keyset_clause() -> String {
    format!(
        "WHERE {k} >= ?1 AND ({k} > ?1 OR id > ?2) ORDER BY {k}, id LIMIT ?3",
        k = NORMALISED_UPDATED_AT
    )
}

/// The next page of rows with `(updated_at, id)` strictly after `after` (all rows from
/// the start when `None`), soft-deleted rows included, in keyset order.
///
/// Apply the overlap window by passing `after.rewind(overlap)`.
pub fn keyset_page<R: SourceRow>(
    conn: &Connection,
    after: Option<Watermark>,
    limit: usize,
) -> Result<KeysetPage<R>, StoreError> {
    let table = R::TABLE.as_str();
    let query = keyset_page_sql::<R>();
    let context = || format!("reading a keyset page of `{table}`");
    let (key, id) = keyset_bounds(after);
    let mut stmt = conn.prepare_cached(&query).map_err(sql(context()))?;
    let mut rows: Vec<R> = stmt
        .query_map(rusqlite::params![key, id, limit_param(limit)], R::from_row)
        .and_then(Iterator::collect)
        .map_err(sql(context()))?;
    R::attach(conn, &mut rows)?;
    let next = rows.last().map(|r| Watermark::new(r.updated_at(), r.id()));
    Ok(KeysetPage { rows, next })
}

/// The keys (id and watermark) of the next `limit` rows after `after`, read from the
/// keyset index alone. Cheaper than [`keyset_page`] when only ids are needed.
pub fn keyset_keys(
    conn: &Connection,
    table: SourceTable,
    after: Option<Watermark>,
    limit: usize,
) -> Result<Vec<Watermark>, StoreError> {
    let query = keyset_keys_sql(table);
    let context = || format!("reading keyset keys of `{table}`");
    let (key, id) = keyset_bounds(after);
    let mut stmt = conn.prepare_cached(&query).map_err(sql(context()))?;
    stmt.query_map(rusqlite::params![key, id, limit_param(limit)], |row| {
        let id: i64 = row.get(0)?;
        let k = text(row, 1)?;
        let updated_at = Timestamp::from_crm(k.as_deref(), None, table.as_str(), id, "updated_at");
        Ok(Watermark::new(updated_at, id))
    })
    .and_then(Iterator::collect)
    .map_err(sql(context()))
}

fn keyset_page_sql<R: SourceRow>() -> String {
    format!(
        "SELECT {} FROM {} {}",
        R::select_list(),
        R::TABLE.as_str(),
        keyset_clause()
    )
}

fn keyset_keys_sql(table: SourceTable) -> String {
    format!(
        "SELECT id, {k} FROM {table} {clause}",
        k = NORMALISED_UPDATED_AT,
        table = table.as_str(),
        clause = keyset_clause()
    )
}

/// The plan SQLite chooses for [`keyset_page`] on `table`, one `EXPLAIN QUERY PLAN` step per
/// line: shows whether the keyset index is used (it is after the migrations).
pub fn explain_keyset_page(
    conn: &Connection,
    table: SourceTable,
) -> Result<Vec<String>, StoreError> {
    let query = match table {
        SourceTable::Organizations => keyset_page_sql::<Organization>(),
        SourceTable::People => keyset_page_sql::<Person>(),
        SourceTable::Interactions => keyset_page_sql::<Interaction>(),
        SourceTable::Deals => keyset_page_sql::<Deal>(),
    };
    explain(conn, &query)
}

/// The plan SQLite chooses for [`keyset_keys`] on `table` (see [`explain_keyset_page`]).
pub fn explain_keyset_keys(
    conn: &Connection,
    table: SourceTable,
) -> Result<Vec<String>, StoreError> {
    explain(conn, &keyset_keys_sql(table))
}

fn explain(conn: &Connection, query: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
        .map_err(sql("explaining a keyset query"))?;
    stmt.query_map(rusqlite::params!["", i64::MIN, 1], |r| {
        r.get::<_, String>(3)
    })
    .and_then(Iterator::collect)
    .map_err(sql("explaining a keyset query"))
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Rows with the given ids, ordered by id; ids that do not exist are absent.
pub fn rows_by_ids<R: SourceRow>(conn: &Connection, ids: &[i64]) -> Result<Vec<R>, StoreError> {
    let table = R::TABLE.as_str();
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT {} FROM {table} WHERE id IN ({}) ORDER BY id",
            R::select_list(),
            placeholders(chunk.len())
        );
        let mut stmt = conn
            .prepare_cached(&query)
            .map_err(sql(format!("reading `{table}` rows by id")))?;
        let rows = stmt
            .query_map(params_from_iter(chunk), R::from_row)
            .and_then(Iterator::collect::<rusqlite::Result<Vec<R>>>)
            .map_err(sql(format!("reading `{table}` rows by id")))?;
        out.extend(rows);
    }
    R::attach(conn, &mut out)?;
    Ok(out)
}

/// One row by id.
pub fn row_by_id<R: SourceRow>(conn: &Connection, id: i64) -> Result<Option<R>, StoreError> {
    Ok(rows_by_ids::<R>(conn, &[id])?.into_iter().next())
}

/// Up to `limit` rows with id greater than `after_id` (from the start when `None`),
/// ordered by id. Pages over a whole table: pass the last id as the next `after_id`.
pub fn rows_after_id<R: SourceRow>(
    conn: &Connection,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<R>, StoreError> {
    let table = R::TABLE.as_str();
    let query = format!(
        "SELECT {} FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2",
        R::select_list()
    );
    let mut stmt = conn
        .prepare_cached(&query)
        .map_err(sql(format!("paging `{table}` by id")))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![after_id.unwrap_or(i64::MIN), limit_param(limit)],
            R::from_row,
        )
        .and_then(Iterator::collect::<rusqlite::Result<Vec<R>>>)
        .map_err(sql(format!("paging `{table}` by id")))?;
    R::attach(conn, &mut rows)?;
    Ok(rows)
}

/// Up to `limit` live rows (not soft-deleted) with id greater than `after_id`, ordered
/// by id, reading only the identifying columns: the lean scan entity resolution pages
/// over a whole table with. A row counts as live exactly when the full row types read
/// `deleted_at` as `None` (NULL, empty or blank).
pub fn live_identities_after_id<R: IdentityRow>(
    conn: &Connection,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<R>, StoreError> {
    let table = R::TABLE.as_str();
    let query = format!(
        "SELECT {} FROM {table} WHERE id > ?1 AND NULLIF(TRIM(deleted_at), '') IS NULL \
         ORDER BY id LIMIT ?2",
        R::COLUMNS
    );
    let mut stmt = conn
        .prepare_cached(&query)
        .map_err(sql(format!("paging live `{table}` rows by id")))?;
    stmt.query_map(
        rusqlite::params![after_id.unwrap_or(i64::MIN), limit_param(limit)],
        R::from_row,
    )
    .and_then(Iterator::collect::<rusqlite::Result<Vec<R>>>)
    .map_err(sql(format!("paging live `{table}` rows by id")))
}

/// Up to `limit` ids greater than `after_id`, ascending.
pub fn ids_after(
    conn: &Connection,
    table: SourceTable,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    let query = format!(
        "SELECT id FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
        table.as_str()
    );
    let mut stmt = conn
        .prepare_cached(&query)
        .map_err(sql(format!("paging ids of `{table}`")))?;
    stmt.query_map(
        rusqlite::params![after_id.unwrap_or(i64::MIN), limit_param(limit)],
        |r| r.get(0),
    )
    .and_then(Iterator::collect)
    .map_err(sql(format!("paging ids of `{table}`")))
}

/// Every id of a table, ascending (soft-deleted rows included). 8 bytes per row: for a
/// 1M-row table, 8 MB.
pub fn all_ids(conn: &Connection, table: SourceTable) -> Result<Vec<i64>, StoreError> {
    let query = format!("SELECT id FROM {} ORDER BY id", table.as_str());
    let mut stmt = conn
        .prepare_cached(&query)
        .map_err(sql(format!("reading all ids of `{table}`")))?;
    stmt.query_map([], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(sql(format!("reading all ids of `{table}`")))
}

/// `(interaction_id, person_id)` pairs of the given interactions, ordered.
pub(crate) fn participant_pairs(
    conn: &Connection,
    interaction_ids: &[i64],
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut out = Vec::new();
    for chunk in interaction_ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT interaction_id, person_id FROM interaction_people \
             WHERE interaction_id IN ({}) ORDER BY interaction_id, person_id",
            placeholders(chunk.len())
        );
        let mut stmt = conn
            .prepare_cached(&query)
            .map_err(sql("reading interaction participants"))?;
        let pairs = stmt
            .query_map(params_from_iter(chunk), |r| {
                Ok((r.get::<_, i64>(0)?, crate::rows::opt_id(r, 1)?))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<(i64, Option<i64>)>>>)
            .map_err(sql("reading interaction participants"))?;
        out.extend(pairs.into_iter().filter_map(|(i, p)| Some((i, p?))));
    }
    Ok(out)
}

/// The people taking part in an interaction (existing rows only, soft-deleted included),
/// ordered by id.
pub fn participants(conn: &Connection, interaction_id: i64) -> Result<Vec<Person>, StoreError> {
    let ids: Vec<i64> = participant_pairs(conn, &[interaction_id])?
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    rows_by_ids(conn, &ids)
}

/// The organisation a person belongs to, if the person and the organisation exist.
pub fn organization_of_person(
    conn: &Connection,
    person_id: i64,
) -> Result<Option<Organization>, StoreError> {
    let org_id: Option<Option<i64>> = conn
        .query_row(
            "SELECT organization_id FROM people WHERE id = ?1",
            [person_id],
            |r| crate::rows::opt_id(r, 0),
        )
        .optional()
        .map_err(sql(format!(
            "reading the organisation of person {person_id}"
        )))?;
    match org_id.flatten() {
        Some(id) => row_by_id(conn, id),
        None => Ok(None),
    }
}

/// Whether related-row lists include soft-deleted rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deleted {
    /// Only rows whose `deleted_at` is NULL or empty.
    Exclude,
    /// All rows.
    Include,
}

impl Deleted {
    fn clause(self) -> &'static str {
        match self {
            Self::Exclude => "AND NULLIF(TRIM(deleted_at), '') IS NULL",
            Self::Include => "",
        }
    }
}

/// A position in a most-recent-first list of interactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCursor {
    /// `occurred_at` of the last interaction returned.
    pub occurred_at: Timestamp,
    /// Id of the last interaction returned.
    pub id: i64,
}

/// Up to `limit` people of an organisation with id greater than `after_id`, by id.
pub fn people_of_organization(
    conn: &Connection,
    organization_id: i64,
    after_id: Option<i64>,
    limit: usize,
    deleted: Deleted,
) -> Result<Vec<Person>, StoreError> {
    related_by_id(
        conn,
        "organization_id",
        organization_id,
        after_id,
        limit,
        deleted,
    )
}

/// Up to `limit` deals of an organisation with id greater than `after_id`, by id.
pub fn deals_of_organization(
    conn: &Connection,
    organization_id: i64,
    after_id: Option<i64>,
    limit: usize,
    deleted: Deleted,
) -> Result<Vec<Deal>, StoreError> {
    related_by_id(
        conn,
        "organization_id",
        organization_id,
        after_id,
        limit,
        deleted,
    )
}

fn related_by_id<R: SourceRow>(
    conn: &Connection,
    column: &str,
    value: i64,
    after_id: Option<i64>,
    limit: usize,
    deleted: Deleted,
) -> Result<Vec<R>, StoreError> {
    let table = R::TABLE.as_str();
    let query = format!(
        "SELECT {} FROM {table} WHERE {column} = ?1 AND id > ?2 {} ORDER BY id LIMIT ?3",
        R::select_list(),
        deleted.clause()
    );
    let context = || format!("reading `{table}` rows with {column} = {value}");
    let mut stmt = conn.prepare_cached(&query).map_err(sql(context()))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![value, after_id.unwrap_or(i64::MIN), limit_param(limit)],
            R::from_row,
        )
        .and_then(Iterator::collect::<rusqlite::Result<Vec<R>>>)
        .map_err(sql(context()))?;
    R::attach(conn, &mut rows)?;
    Ok(rows)
}

/// Up to `limit` interactions about an organisation, most recent first, after `before`.
pub fn interactions_of_organization(
    conn: &Connection,
    organization_id: i64,
    before: Option<RecentCursor>,
    limit: usize,
    deleted: Deleted,
) -> Result<Vec<Interaction>, StoreError> {
    recent_interactions(
        conn,
        "organization_id = ?1",
        organization_id,
        before,
        limit,
        deleted,
    )
}

/// Up to `limit` interactions a person took part in, most recent first, after `before`.
pub fn interactions_of_person(
    conn: &Connection,
    person_id: i64,
    before: Option<RecentCursor>,
    limit: usize,
    deleted: Deleted,
) -> Result<Vec<Interaction>, StoreError> {
    recent_interactions(
        conn,
        "id IN (SELECT interaction_id FROM interaction_people WHERE person_id = ?1)",
        person_id,
        before,
        limit,
        deleted,
    )
}

fn recent_interactions(
    conn: &Connection,
    filter: &str,
    value: i64,
    before: Option<RecentCursor>,
    limit: usize,
    deleted: Deleted,
) -> Result<Vec<Interaction>, StoreError> {
    let occ = normalised_sql("occurred_at");
    let query = format!(
        "SELECT {list} FROM interactions WHERE {filter} {del} \
         AND ({occ} < ?2 OR ({occ} = ?2 AND id < ?3)) \
         ORDER BY {occ} DESC, id DESC LIMIT ?4",
        list = Interaction::select_list(),
        del = deleted.clause(),
    );
    // "\u{10FFFF}" sorts after every normalised timestamp: no cursor means "from the top".
    let (key, id) = match before {
        Some(c) => (c.occurred_at.to_canonical(), c.id),
        None => ("\u{10FFFF}".to_owned(), i64::MAX),
    };
    let context = || format!("reading interactions where {filter} (?1 = {value})");
    let mut stmt = conn.prepare_cached(&query).map_err(sql(context()))?;
    let mut rows = stmt
        .query_map(
            rusqlite::params![value, key, id, limit_param(limit)],
            Interaction::from_row,
        )
        .and_then(Iterator::collect::<rusqlite::Result<Vec<Interaction>>>)
        .map_err(sql(context()))?;
    Interaction::attach(conn, &mut rows)?;
    Ok(rows)
}

/// Source rows whose rendered document depends on other rows that changed, so a sync can
/// re-render them: people, interactions and deals of changed organisations, and
/// interactions of changed people (participant names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependents {
    /// People whose organisation changed.
    pub people: Vec<i64>,
    /// Interactions whose organisation or a participant changed.
    pub interactions: Vec<i64>,
    /// Deals whose organisation changed.
    pub deals: Vec<i64>,
}

impl Dependents {
    /// Whether nothing depends on the changed rows.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty() && self.interactions.is_empty() && self.deals.is_empty()
    }
}

/// The rows whose documents embed data of the given organisations or people.
pub fn dependents(
    conn: &Connection,
    organization_ids: &[i64],
    person_ids: &[i64],
) -> Result<Dependents, StoreError> {
    let mut deps = Dependents {
        people: ids_where_in(conn, "people", "organization_id", organization_ids)?,
        interactions: ids_where_in(conn, "interactions", "organization_id", organization_ids)?,
        deals: ids_where_in(conn, "deals", "organization_id", organization_ids)?,
    };
    let mut via_people = ids_where_in(conn, "interaction_people", "person_id", person_ids)?;
    deps.interactions.append(&mut via_people);
    deps.interactions.sort_unstable();
    deps.interactions.dedup();
    Ok(deps)
}

fn ids_where_in(
    conn: &Connection,
    table: &str,
    column: &str,
    values: &[i64],
) -> Result<Vec<i64>, StoreError> {
    let id_col = if table == "interaction_people" {
        "interaction_id"
    } else {
        "id"
    };
    let mut out = Vec::new();
    for chunk in values.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT {id_col} FROM {table} WHERE {column} IN ({})",
            placeholders(chunk.len())
        );
        let mut stmt = conn
            .prepare_cached(&query)
            .map_err(sql(format!("reading `{table}` ids by {column}")))?;
        let ids = stmt
            .query_map(params_from_iter(chunk), |r| r.get::<_, i64>(0))
            .and_then(Iterator::collect::<rusqlite::Result<Vec<i64>>>)
            .map_err(sql(format!("reading `{table}` ids by {column}")))?;
        out.extend(ids);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Why an indexed row needs removing from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vanished {
    /// The row no longer exists in the CRM.
    HardDeleted,
    /// The row exists but `deleted_at` is set.
    SoftDeleted,
}

/// A row recorded in `ingest_indexed_rows` that is no longer live in the CRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VanishedRow {
    /// The source row id.
    pub source_id: i64,
    /// Hard or soft delete.
    pub reason: Vanished,
}

/// Rows indexed in `collection` for `table` that are gone from the CRM (anti-join) or
/// soft-deleted, ordered by id.
pub fn vanished_indexed_rows(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
) -> Result<Vec<VanishedRow>, StoreError> {
    let query = format!(
        "SELECT r.source_id, \
                CASE WHEN s.id IS NULL THEN 0 ELSE 1 END \
         FROM ingest_indexed_rows r LEFT JOIN {t} s ON s.id = r.source_id \
         WHERE r.collection = ?1 AND r.source_table = ?2 \
           AND (s.id IS NULL OR NULLIF(TRIM(s.deleted_at), '') IS NOT NULL) \
         ORDER BY r.source_id",
        t = table.as_str()
    );
    let context = || format!("finding vanished `{table}` rows indexed in `{collection}`");
    let mut stmt = conn.prepare_cached(&query).map_err(sql(context()))?;
    stmt.query_map(rusqlite::params![collection, table.as_str()], |r| {
        Ok(VanishedRow {
            source_id: r.get(0)?,
            reason: if r.get::<_, i64>(1)? == 0 {
                Vanished::HardDeleted
            } else {
                Vanished::SoftDeleted
            },
        })
    })
    .and_then(Iterator::collect)
    .map_err(sql(context()))
}

/// Row counts of the CRM tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Rows in `organizations`.
    pub organizations: u64,
    /// Rows in `people`.
    pub people: u64,
    /// Rows in `interactions`.
    pub interactions: u64,
    /// Rows in `interaction_people`.
    pub interaction_people: u64,
    /// Rows in `deals`.
    pub deals: u64,
}

impl RowCounts {
    /// The count for a source table.
    pub fn get(&self, table: SourceTable) -> u64 {
        match table {
            SourceTable::Organizations => self.organizations,
            SourceTable::People => self.people,
            SourceTable::Interactions => self.interactions,
            SourceTable::Deals => self.deals,
        }
    }
}

/// Counts the rows of every CRM table (soft-deleted rows included).
pub fn row_counts(conn: &Connection) -> Result<RowCounts, StoreError> {
    let count = |table: &str| -> Result<u64, StoreError> {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| u64::try_from(n).unwrap_or(0))
        .map_err(sql(format!("counting `{table}`")))
    };
    Ok(RowCounts {
        organizations: count("organizations")?,
        people: count("people")?,
        interactions: count("interactions")?,
        interaction_people: count("interaction_people")?,
        deals: count("deals")?,
    })
}

/// Display names of organisations by id (missing ids absent; empty names kept).
pub fn organization_names(
    conn: &Connection,
    ids: &[i64],
) -> Result<HashMap<i64, String>, StoreError> {
    names_by_id(conn, "organizations", "name", ids)
}

/// Display names of people by id, exactly as their own documents title them
/// ([`crate::render::person_title`]).
pub fn person_names(conn: &Connection, ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT id, full_name, first_name, last_name FROM people WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut stmt = conn
            .prepare_cached(&query)
            .map_err(sql("reading names from `people`"))?;
        let names = stmt
            .query_map(params_from_iter(chunk), |r| {
                let id: i64 = r.get(0)?;
                let full = text(r, 1)?.unwrap_or_default();
                let first = text(r, 2)?;
                let last = text(r, 3)?;
                Ok((
                    id,
                    crate::render::person_title(id, &full, first.as_deref(), last.as_deref()),
                ))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<(i64, String)>>>)
            .map_err(sql("reading names from `people`"))?;
        out.extend(names);
    }
    Ok(out)
}

fn names_by_id(
    conn: &Connection,
    table: &str,
    expr: &str,
    ids: &[i64],
) -> Result<HashMap<i64, String>, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT id, {expr} FROM {table} WHERE id IN ({})",
            placeholders(chunk.len())
        );
        let mut stmt = conn
            .prepare_cached(&query)
            .map_err(sql(format!("reading names from `{table}`")))?;
        let pairs = stmt
            .query_map(params_from_iter(chunk), |r| {
                Ok((r.get::<_, i64>(0)?, text(r, 1)?.unwrap_or_default()))
            })
            .and_then(Iterator::collect::<rusqlite::Result<Vec<(i64, String)>>>)
            .map_err(sql(format!("reading names from `{table}`")))?;
        out.extend(pairs);
    }
    Ok(out)
}

/// `?,?,?` with `n` placeholders.
pub(crate) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 2);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push('?');
    }
    s
}
