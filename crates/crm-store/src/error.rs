//! The one error type of this crate.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in `crm-store`.
///
/// Each variant names what failed and on which input: the database file, the table,
/// the column or the row.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The configuration cannot work (e.g. a pool size of zero).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),

    /// The database file does not exist and the configuration does not allow creating it.
    #[error("CRM database {path} does not exist (set create_if_missing to create an empty CRM)")]
    DatabaseMissing {
        /// The file that was looked for.
        path: PathBuf,
    },

    /// SQLite failed to open the file.
    #[error("cannot open CRM database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// A connection could not be taken from a pool in time.
    #[error("no {pool} connection to {path} became available: {source}")]
    Pool {
        /// Which pool (`read-write` or `read-only`).
        pool: &'static str,
        /// The database file.
        path: PathBuf,
        /// The pool's error.
        #[source]
        source: r2d2::Error,
    },

    /// The CRM does not have the tables and columns the substrate reads.
    #[error("CRM database {path} does not match the source contract: {}", MissingList(.missing))]
    Contract {
        /// The database file.
        path: PathBuf,
        /// Every missing table and column, in contract order.
        missing: Vec<MissingItem>,
    },

    /// The database was migrated by a newer version of the substrate.
    #[error(
        "database {path} has substrate schema version {found} but this build only knows up to \
         {known}; upgrade crm-substrate instead of running an older build against it"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The highest version recorded in `substrate_schema_migrations`.
        found: i64,
        /// The highest version this build knows.
        known: i64,
    },

    /// A migration recorded in the database has a different name than this build's.
    #[error(
        "database {path} records substrate migration {version} as `{found}` but this build calls \
         it `{expected}`; the database was migrated by a diverging build"
    )]
    MigrationMismatch {
        /// The database file.
        path: PathBuf,
        /// The migration version.
        version: i64,
        /// The name recorded in the database.
        found: String,
        /// The name this build has for that version.
        expected: String,
    },

    /// A migration failed; its transaction was rolled back.
    #[error("substrate migration {version} (`{name}`) failed on {path}: {source}")]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The migration version.
        version: i64,
        /// The migration name.
        name: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// A statement failed; `context` says which operation and on which table or row.
    #[error("{context}: {source}")]
    Sqlite {
        /// The operation, table and row concerned.
        context: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },

    /// Text that should be a timestamp is not one.
    #[error("cannot parse timestamp {text:?}: expected ISO-8601 such as 2026-06-05T13:55:12.123Z")]
    Timestamp {
        /// The offending text (truncated to 80 characters).
        text: String,
    },

    /// A name that should be a source table is not one.
    #[error("unknown source table `{0}` (expected organizations, people, interactions or deals)")]
    UnknownTable(String),

    /// A stored value could not be encoded or decoded as JSON.
    #[error("invalid JSON in {context}: {source}")]
    Json {
        /// Where the JSON was read or written.
        context: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// A value in a Phase-0 table breaks an invariant (e.g. an unknown status).
    #[error("invalid value in {table}: {message}")]
    InvalidValue {
        /// The table.
        table: &'static str,
        /// What is wrong, and on which row.
        message: String,
    },

    /// A file that must not exist yet (a database to generate, its truth file) exists.
    #[error("{path} already exists; remove it (or pass --force) to generate a new CRM")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A file next to the database (e.g. the ground truth) could not be written or read.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `remove`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A table or column that the CRM source contract requires but the database lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingItem {
    /// The whole table is missing.
    Table(&'static str),
    /// The table exists but this column is missing.
    Column {
        /// The table.
        table: &'static str,
        /// The missing column.
        column: &'static str,
    },
}

impl fmt::Display for MissingItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Table(table) => write!(f, "missing table `{table}`"),
            Self::Column { table, column } => write!(f, "missing column `{table}.{column}`"),
        }
    }
}

struct MissingList<'a>(&'a [MissingItem]);

impl fmt::Display for MissingList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// Wraps a rusqlite error with the operation it happened in.
pub(crate) fn sql(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Sqlite { context, source }
}

/// Shortens user text for an error message.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
