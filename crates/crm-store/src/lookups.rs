//! Lookups for interactive readers (the MCP server): structured finds with keyset paging,
//! interactions in a date range, counts of related rows, the merge history of an entity,
//! and the figures behind a statistics report.
//!
//! Every filter value is a bound parameter; the SQL text only ever contains identifiers
//! chosen here. Text filters are case-insensitive substring matches (`LIKE` with `%`, `_`
//! and `\` in the input escaped, so they match literally); SQLite folds ASCII case only.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, sql};
use crate::queries::{Deleted, RecentCursor};
use crate::rows::{Interaction, Organization, Person, SourceRow, SourceTable};
use crate::timestamp::{NORMALISED_UPDATED_AT, Timestamp, Watermark, normalised_sql};

/// Escapes `%`, `_` and `\` so `LIKE ? ESCAPE '\'` matches the input literally, lowercases
/// it, and wraps it in `%` for a substring match.
pub fn like_contains(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 2);
    out.push('%');
    for c in input.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn deleted_clause(deleted: Deleted, alias: &str) -> String {
    match deleted {
        Deleted::Exclude => format!("NULLIF(TRIM({alias}deleted_at), '') IS NULL"),
        Deleted::Include => "1".to_owned(),
    }
}

fn limit_value(limit: usize) -> Value {
    Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// A web domain as the filters compare it: trimmed, lowercased, without a scheme, a
/// leading `www.`, a path or a trailing dot.
pub fn bare_domain(input: &str) -> String {
    let d = input.trim().to_lowercase();
    let d = d
        .strip_prefix("https://")
        .or_else(|| d.strip_prefix("http://"))
        .unwrap_or(&d);
    let d = d.split(['/', '?', '#']).next().unwrap_or("");
    let d = d.strip_prefix("www.").unwrap_or(d);
    d.trim_end_matches('.').to_owned()
}

/// What [`find_people`] filters on; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeopleQuery {
    /// Each token must appear in `full_name` or in `first_name last_name`.
    pub name_tokens: Vec<String>,
    /// Must appear in `email`.
    pub email: Option<String>,
    /// The email's domain, or the domain of the person's organisation (compared after
    /// [`bare_domain`]).
    pub domain: Option<String>,
    /// The person's organisation.
    pub organization_id: Option<i64>,
    /// Whether soft-deleted people are included.
    pub deleted: Option<Deleted>,
}

/// Up to `limit` people matching `query` with id greater than `after_id`, by id.
pub fn find_people(
    conn: &Connection,
    query: &PeopleQuery,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<Person>, StoreError> {
    let mut clauses = vec!["id > ?".to_owned()];
    let mut params = vec![Value::Integer(after_id.unwrap_or(i64::MIN))];
    for token in &query.name_tokens {
        clauses.push(
            "(lower(COALESCE(full_name, '')) LIKE ? ESCAPE '\\' \
              OR lower(COALESCE(first_name, '') || ' ' || COALESCE(last_name, '')) \
                 LIKE ? ESCAPE '\\')"
                .to_owned(),
        );
        let pattern = like_contains(token);
        params.push(Value::Text(pattern.clone()));
        params.push(Value::Text(pattern));
    }
    if let Some(email) = &query.email {
        clauses.push("lower(TRIM(COALESCE(email, ''))) LIKE ? ESCAPE '\\'".to_owned());
        params.push(Value::Text(like_contains(email.trim())));
    }
    if let Some(domain) = &query.domain {
        let domain = bare_domain(domain);
        clauses.push(
            "(lower(TRIM(COALESCE(email, ''))) LIKE ? ESCAPE '\\' \
              OR organization_id IN (SELECT id FROM organizations \
                 WHERE lower(TRIM(COALESCE(domain, ''))) IN (?, ?)))"
                .to_owned(),
        );
        // `%@domain` without the trailing `%`.
        let mut pattern = like_contains(&domain);
        pattern.pop();
        pattern.replace_range(0..1, "%@");
        params.push(Value::Text(pattern));
        params.push(Value::Text(domain.clone()));
        params.push(Value::Text(format!("www.{domain}")));
    }
    if let Some(org) = query.organization_id {
        clauses.push("organization_id = ?".to_owned());
        params.push(Value::Integer(org));
    }
    clauses.push(deleted_clause(
        query.deleted.unwrap_or(Deleted::Exclude),
        "",
    ));
    params.push(limit_value(limit));
    select_where::<Person>(conn, &clauses, params, "id", "finding people")
}

/// What [`find_organizations`] filters on; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationQuery {
    /// Each token must appear in `name`.
    pub name_tokens: Vec<String>,
    /// Equal to `domain` (compared after [`bare_domain`]) or contained in `website`.
    pub domain: Option<String>,
    /// Equal to `kind`, ignoring ASCII case.
    pub kind: Option<String>,
    /// Whether soft-deleted organisations are included.
    pub deleted: Option<Deleted>,
}

/// Up to `limit` organisations matching `query` with id greater than `after_id`, by id.
pub fn find_organizations(
    conn: &Connection,
    query: &OrganizationQuery,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<Organization>, StoreError> {
    let mut clauses = vec!["id > ?".to_owned()];
    let mut params = vec![Value::Integer(after_id.unwrap_or(i64::MIN))];
    for token in &query.name_tokens {
        clauses.push("lower(COALESCE(name, '')) LIKE ? ESCAPE '\\'".to_owned());
        params.push(Value::Text(like_contains(token)));
    }
    if let Some(domain) = &query.domain {
        let domain = bare_domain(domain);
        clauses.push(
            "(lower(TRIM(COALESCE(domain, ''))) IN (?, ?) \
              OR lower(COALESCE(website, '')) LIKE ? ESCAPE '\\')"
                .to_owned(),
        );
        params.push(Value::Text(domain.clone()));
        params.push(Value::Text(format!("www.{domain}")));
        params.push(Value::Text(like_contains(&domain)));
    }
    if let Some(kind) = &query.kind {
        clauses.push("lower(TRIM(COALESCE(kind, ''))) = ?".to_owned());
        params.push(Value::Text(kind.trim().to_lowercase()));
    }
    clauses.push(deleted_clause(
        query.deleted.unwrap_or(Deleted::Exclude),
        "",
    ));
    params.push(limit_value(limit));
    select_where::<Organization>(conn, &clauses, params, "id", "finding organisations")
}

fn select_where<R: SourceRow>(
    conn: &Connection,
    clauses: &[String],
    params: Vec<Value>,
    order: &str,
    what: &str,
) -> Result<Vec<R>, StoreError> {
    let query = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {order} LIMIT ?",
        R::select_list(),
        R::TABLE.as_str(),
        clauses.join(" AND ")
    );
    let mut stmt = conn.prepare_cached(&query).map_err(sql(what))?;
    let mut rows = stmt
        .query_map(params_from_iter(params), R::from_row)
        .and_then(Iterator::collect::<rusqlite::Result<Vec<R>>>)
        .map_err(sql(what))?;
    R::attach(conn, &mut rows)?;
    Ok(rows)
}

/// Whose interactions to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InteractionsOf {
    /// Interactions the person took part in (`interaction_people`).
    Person(i64),
    /// Interactions about the organisation (`interactions.organization_id`).
    Organization(i64),
}

/// What [`interactions_page`] filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionQuery {
    /// Whose interactions.
    pub of: InteractionsOf,
    /// Only interactions that happened at or after this instant.
    pub since: Option<Timestamp>,
    /// Only interactions that happened at or before this instant.
    pub until: Option<Timestamp>,
    /// Only this kind (`meeting`, `call`, `email`, `note`), ignoring ASCII case.
    pub kind: Option<String>,
    /// Whether soft-deleted interactions are included.
    pub deleted: Deleted,
}

impl InteractionQuery {
    /// Every live interaction of `of`.
    pub fn of(of: InteractionsOf) -> Self {
        Self {
            of,
            since: None,
            until: None,
            kind: None,
            deleted: Deleted::Exclude,
        }
    }
}

fn interaction_filter(query: &InteractionQuery) -> (Vec<String>, Vec<Value>) {
    let occ = normalised_sql("occurred_at");
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    match query.of {
        InteractionsOf::Person(id) => {
            clauses.push(
                "id IN (SELECT interaction_id FROM interaction_people WHERE person_id = ?)"
                    .to_owned(),
            );
            params.push(Value::Integer(id));
        }
        InteractionsOf::Organization(id) => {
            clauses.push("organization_id = ?".to_owned());
            params.push(Value::Integer(id));
        }
    }
    if let Some(since) = query.since {
        clauses.push(format!("{occ} >= ?"));
        params.push(Value::Text(since.to_canonical()));
    }
    if let Some(until) = query.until {
        clauses.push(format!("{occ} <= ?"));
        params.push(Value::Text(until.to_canonical()));
    }
    if let Some(kind) = &query.kind {
        clauses.push("lower(TRIM(kind)) = ?".to_owned());
        params.push(Value::Text(kind.trim().to_lowercase()));
    }
    clauses.push(deleted_clause(query.deleted, ""));
    (clauses, params)
}

/// Up to `limit` interactions matching `query`, most recent first (`occurred_at`, then
/// id, descending), strictly after `before` in that order.
pub fn interactions_page(
    conn: &Connection,
    query: &InteractionQuery,
    before: Option<RecentCursor>,
    limit: usize,
) -> Result<Vec<Interaction>, StoreError> {
    let occ = normalised_sql("occurred_at");
    let (mut clauses, mut params) = interaction_filter(query);
    if let Some(c) = before {
        clauses.push(format!("({occ} < ? OR ({occ} = ? AND id < ?))"));
        let key = c.occurred_at.to_canonical();
        params.push(Value::Text(key.clone()));
        params.push(Value::Text(key));
        params.push(Value::Integer(c.id));
    }
    params.push(limit_value(limit));
    select_where::<Interaction>(
        conn,
        &clauses,
        params,
        &format!("{occ} DESC, id DESC"),
        "listing interactions",
    )
}

/// How many interactions match `query`.
pub fn count_interactions(conn: &Connection, query: &InteractionQuery) -> Result<u64, StoreError> {
    let (clauses, params) = interaction_filter(query);
    count_where(conn, "interactions", &clauses, params)
}

/// How many people belong to an organisation.
pub fn count_people_of_organization(
    conn: &Connection,
    organization_id: i64,
    deleted: Deleted,
) -> Result<u64, StoreError> {
    count_where(
        conn,
        "people",
        &[
            "organization_id = ?".to_owned(),
            deleted_clause(deleted, ""),
        ],
        vec![Value::Integer(organization_id)],
    )
}

/// How many deals an organisation has.
pub fn count_deals_of_organization(
    conn: &Connection,
    organization_id: i64,
    deleted: Deleted,
) -> Result<u64, StoreError> {
    count_where(
        conn,
        "deals",
        &[
            "organization_id = ?".to_owned(),
            deleted_clause(deleted, ""),
        ],
        vec![Value::Integer(organization_id)],
    )
}

fn count_where(
    conn: &Connection,
    table: &str,
    clauses: &[String],
    params: Vec<Value>,
) -> Result<u64, StoreError> {
    let query = format!(
        "SELECT count(*) FROM {table} WHERE {}",
        clauses.join(" AND ")
    );
    let what = || format!("counting `{table}` rows");
    let mut stmt = conn.prepare_cached(&query).map_err(sql(what()))?;
    let n: i64 = stmt
        .query_row(params_from_iter(params), |r| r.get(0))
        .map_err(sql(what()))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Whether a row exists and whether it is soft-deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// No row with that id.
    Missing,
    /// The row exists and `deleted_at` is empty.
    Live,
    /// The row exists and `deleted_at` is set.
    SoftDeleted,
}

/// The state of each id in `ids` (in the same order).
pub fn row_states(
    conn: &Connection,
    table: SourceTable,
    ids: &[i64],
) -> Result<Vec<RowState>, StoreError> {
    let query = format!(
        "SELECT NULLIF(TRIM(deleted_at), '') IS NULL FROM {} WHERE id = ?1",
        table.as_str()
    );
    let what = || format!("checking `{table}` ids");
    let mut stmt = conn.prepare_cached(&query).map_err(sql(what()))?;
    ids.iter()
        .map(|id| {
            let live: Option<bool> = stmt
                .query_row([id], |r| r.get(0))
                .optional()
                .map_err(sql(what()))?;
            Ok(match live {
                None => RowState::Missing,
                Some(true) => RowState::Live,
                Some(false) => RowState::SoftDeleted,
            })
        })
        .collect()
}

/// Ids of the merges in which an entity was the winner or the loser, newest first, at
/// most `limit` (read each with [`crate::phase0::get_merge`]).
pub fn merge_ids_involving(
    conn: &Connection,
    entity_id: &str,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    conn.prepare_cached(
        "SELECT id FROM entity_merges WHERE winner = ?1 OR loser = ?1 ORDER BY id DESC LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(rusqlite::params![entity_id, limit_value(limit)], |r| {
            r.get(0)
        })?
        .collect()
    })
    .map_err(sql(format!("reading the merges of entity {entity_id}")))
}

/// Row counts of one CRM table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// The table.
    pub table: SourceTable,
    /// All rows, soft-deleted included.
    pub rows: u64,
    /// Soft-deleted rows.
    pub soft_deleted: u64,
}

/// Row and soft-delete counts of the four source tables.
pub fn table_stats(conn: &Connection) -> Result<Vec<TableStats>, StoreError> {
    SourceTable::ALL
        .iter()
        .map(|&table| {
            let query = format!(
                "SELECT count(*), COALESCE(sum(NULLIF(TRIM(deleted_at), '') IS NOT NULL), 0) \
                 FROM {}",
                table.as_str()
            );
            let (rows, deleted): (i64, i64) = conn
                .query_row(&query, [], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql(format!("counting `{table}`")))?;
            Ok(TableStats {
                table,
                rows: u64::try_from(rows).unwrap_or(0),
                soft_deleted: u64::try_from(deleted).unwrap_or(0),
            })
        })
        .collect()
}

/// Canonical entity counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityStats {
    /// Live person entities.
    pub people: u64,
    /// Live organisation entities.
    pub organizations: u64,
    /// Entities merged into another one.
    pub merged_away: u64,
    /// Source rows linked to an entity.
    pub linked_rows: u64,
}

/// Counts of canonical entities and links.
pub fn entity_stats(conn: &Connection) -> Result<EntityStats, StoreError> {
    let (people, orgs, merged): (i64, i64, i64) = conn
        .query_row(
            "SELECT \
               COALESCE(sum(kind = 'person' AND NULLIF(TRIM(deleted_at), '') IS NULL), 0), \
               COALESCE(sum(kind = 'organization' AND NULLIF(TRIM(deleted_at), '') IS NULL), 0), \
               COALESCE(sum(merged_into IS NOT NULL), 0) \
             FROM entities",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(sql("counting entities"))?;
    let links: i64 = conn
        .query_row("SELECT count(*) FROM entity_links", [], |r| r.get(0))
        .map_err(sql("counting entity links"))?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(EntityStats {
        people: n(people),
        organizations: n(orgs),
        merged_away: n(merged),
        linked_rows: n(links),
    })
}

/// How many rows of `table` sort after `watermark` in keyset order (all rows when
/// `None`): the rows an incremental sync has not seen yet.
pub fn rows_after_watermark(
    conn: &Connection,
    table: SourceTable,
    watermark: Option<Watermark>,
) -> Result<u64, StoreError> {
    let (key, id) = match watermark {
        Some(w) => (w.updated_at.to_canonical(), w.id),
        None => (String::new(), i64::MIN),
    };
    let query = format!(
        "SELECT count(*) FROM {} WHERE {k} >= ?1 AND ({k} > ?1 OR id > ?2)",
        table.as_str(),
        k = NORMALISED_UPDATED_AT
    );
    let n: i64 = conn
        .query_row(&query, rusqlite::params![key, id], |r| r.get(0))
        .map_err(sql(format!("counting `{table}` rows after the watermark")))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_contains("Ada"), "%ada%");
        assert_eq!(like_contains("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }

    #[test]
    fn bare_domains() {
        assert_eq!(bare_domain(" https://WWW.Acme.com/about "), "acme.com");
        assert_eq!(bare_domain("acme.com."), "acme.com");
        assert_eq!(bare_domain("http://x.io?q=1"), "x.io");
    }
}
