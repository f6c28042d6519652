//! The CRM source contract (DESIGN §2): the tables and columns the substrate reads.
//!
//! Checked at open with `PRAGMA table_info`. Extra tables and columns are fine; a missing
//! one fails with an error that names it and the database file.

use std::path::Path;

use rusqlite::Connection;

use crate::error::{MissingItem, StoreError, sql};

/// The required CRM tables and, for each, its required columns.
pub const REQUIRED: &[(&str, &[&str])] = &[
    (
        "organizations",
        &[
            "id",
            "name",
            "kind",
            "domain",
            "website",
            "description",
            "location",
            "created_at",
            "updated_at",
            "deleted_at",
        ],
    ),
    (
        "people",
        &[
            "id",
            "first_name",
            "last_name",
            "full_name",
            "email",
            "phone",
            "title",
            "organization_id",
            "linkedin_url",
            "location",
            "bio",
            "created_at",
            "updated_at",
            "deleted_at",
        ],
    ),
    (
        "interactions",
        &[
            "id",
            "kind",
            "occurred_at",
            "subject",
            "body",
            "organization_id",
            "created_by",
            "created_at",
            "updated_at",
            "deleted_at",
        ],
    ),
    ("interaction_people", &["interaction_id", "person_id"]),
    (
        "deals",
        &[
            "id",
            "organization_id",
            "name",
            "stage",
            "amount_usd",
            "notes",
            "created_at",
            "updated_at",
            "deleted_at",
        ],
    ),
];

/// The SQL that creates the CRM tables from nothing (`schema/crm.sql`).
pub const CRM_SCHEMA_SQL: &str = include_str!("../schema/crm.sql");

/// Lists every required table and column the database lacks, in contract order.
pub fn missing_items(conn: &Connection) -> Result<Vec<MissingItem>, StoreError> {
    let mut missing = Vec::new();
    for (table, columns) in REQUIRED {
        let present = table_columns(conn, table)?;
        if present.is_empty() {
            missing.push(MissingItem::Table(table));
            continue;
        }
        for column in *columns {
            if !present.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                missing.push(MissingItem::Column { table, column });
            }
        }
    }
    Ok(missing)
}

/// Fails with [`StoreError::Contract`] naming `path` and every missing table or column.
pub fn check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let missing = missing_items(conn)?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Contract {
            path: path.to_path_buf(),
            missing,
        })
    }
}

/// Column names of `table` (empty when the table, or view, does not exist).
fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info(?1)")
        .map_err(sql(format!("reading the columns of `{table}`")))?;
    let names = stmt
        .query_map([table], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(sql(format!("reading the columns of `{table}`")))?;
    Ok(names)
}
