//! Opening the CRM database: pools, pragmas, the contract check and migrations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::contract;
use crate::error::{StoreError, sql};
use crate::migrations::{self, MigrationReport, MigrationStatus};

/// A pooled SQLite connection.
pub type PooledConn = PooledConnection<SqliteConnectionManager>;

/// How to open the CRM database. Built by the binaries from their settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The CRM's SQLite file.
    pub path: PathBuf,
    /// How long a statement waits for a lock held by another connection (the CRM, another
    /// step) before failing with `SQLITE_BUSY`.
    pub busy_timeout: Duration,
    /// Connections in the read-only pool (at least 1).
    pub read_pool_size: u32,
    /// Connections in the read-write pool (at least 1; SQLite has one writer at a time,
    /// so 1 is usually right).
    pub write_pool_size: u32,
    /// Create the file and the CRM tables (`schema/crm.sql`) when they are missing. For the
    /// demo and tests; a real deployment opens an existing CRM.
    pub create_if_missing: bool,
    /// Apply pending Phase-0 migrations at open. When false, open still refuses a database
    /// migrated by a newer build, but leaves pending migrations alone.
    pub migrate: bool,
    /// How long [`Store::writer`] and [`Store::reader`] wait for a free pooled connection.
    pub pool_timeout: Duration,
}

impl StoreConfig {
    /// A configuration for `path` with the defaults: 5 s busy timeout, 4 readers, 1 writer,
    /// no creation, migrations applied, 30 s pool timeout.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            busy_timeout: Duration::from_secs(5),
            read_pool_size: 4,
            write_pool_size: 1,
            create_if_missing: false,
            migrate: true,
            pool_timeout: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        if self.read_pool_size == 0 || self.write_pool_size == 0 {
            return Err(StoreError::InvalidConfig(format!(
                "pool sizes must be at least 1 (read_pool_size = {}, write_pool_size = {})",
                self.read_pool_size, self.write_pool_size
            )));
        }
        if self.pool_timeout.is_zero() {
            return Err(StoreError::InvalidConfig(
                "pool_timeout must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// An open CRM database: a read-write pool and a read-only pool over one file.
///
/// Every connection runs in WAL mode with the configured busy timeout, `foreign_keys=ON`
/// and `synchronous=NORMAL`, so the CRM's own writer is never blocked by our readers and
/// waits at most the busy timeout for our (short) write transactions.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
    write: Pool<SqliteConnectionManager>,
    read: Pool<SqliteConnectionManager>,
    migration: MigrationStatus,
    applied: Vec<i64>,
}

impl Store {
    /// Opens (and, if configured, creates) the database, checks the source contract and
    /// applies or verifies the Phase-0 migrations.
    #[tracing::instrument(skip_all, fields(path = %config.path.display()))]
    pub fn open(config: StoreConfig) -> Result<Self, StoreError> {
        config.validate()?;
        let path = config.path.clone();
        let exists = path.exists();
        if !exists && !config.create_if_missing {
            return Err(StoreError::DatabaseMissing { path });
        }

        // Setup runs on a plain connection so that errors surface directly instead of
        // as a pool timeout.
        let mut conn = open_connection(&path, OpenFlags::default(), config.busy_timeout)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql(format!("setting WAL mode on {}", path.display())))?;
        if config.create_if_missing && !contract::missing_items(&conn)?.is_empty() {
            conn.execute_batch(contract::CRM_SCHEMA_SQL)
                .map_err(sql(format!(
                    "creating the CRM tables in {}",
                    path.display()
                )))?;
            tracing::info!("created the crm tables");
        }
        contract::check(&conn, &path)?;

        let (migration, applied) = if config.migrate {
            let MigrationReport { applied, current } = migrations::migrate(&mut conn, &path)?;
            (
                MigrationStatus {
                    current,
                    pending: Vec::new(),
                },
                applied,
            )
        } else {
            (migrations::status(&conn, &path)?, Vec::new())
        };
        drop(conn);

        let write = build_pool(&config, OpenFlags::default(), config.write_pool_size);
        let read_flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let read = build_pool(&config, read_flags, config.read_pool_size);
        Ok(Self {
            path,
            write,
            read,
            migration,
            applied,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read-write connection. Keep write transactions short: the CRM shares the lock.
    pub fn writer(&self) -> Result<PooledConn, StoreError> {
        self.write.get().map_err(|source| StoreError::Pool {
            pool: "read-write",
            path: self.path.clone(),
            source,
        })
    }

    /// A read-only connection (opened with `SQLITE_OPEN_READ_ONLY`). Never hold its read
    /// transaction across network calls: it pins the WAL and stops checkpoints.
    pub fn reader(&self) -> Result<PooledConn, StoreError> {
        self.read.get().map_err(|source| StoreError::Pool {
            pool: "read-only",
            path: self.path.clone(),
            source,
        })
    }

    /// The migration state found at open (after migrating, when configured).
    pub fn migration_status(&self) -> &MigrationStatus {
        &self.migration
    }

    /// The migration versions applied by this open (empty for a no-op).
    pub fn applied_migrations(&self) -> &[i64] {
        &self.applied
    }
}

/// Opens one connection with the crate's pragmas. Used by the pools and by setup; also
/// useful to tools that need a connection outside a pool (e.g. the generator).
pub fn open_connection(
    path: &Path,
    flags: OpenFlags,
    busy_timeout: Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    apply_pragmas(&conn, flags, busy_timeout).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(conn)
}

fn apply_pragmas(
    conn: &Connection,
    flags: OpenFlags,
    busy_timeout: Duration,
) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        // journal_mode is persistent in the file; setting it needs write access, so a
        // read-only connection relies on the writer having set it at open.
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let cache_kib = if flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        READER_CACHE_KIB
    } else {
        WRITER_CACHE_KIB
    };
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(())
}

/// Page cache of a read-write connection. SQLite's default (2 MiB) is far smaller than
/// the index records of a large CRM (about 150 bytes and an entity-index entry per
/// row), so records written re-read their B-tree pages from the OS: at 200k rows a
/// build's two record writes per row took 10–14% less time with this cache.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// Page cache of a read-only connection (there are several; their reads are mostly
/// sequential keyset pages).
const READER_CACHE_KIB: i64 = 16 * 1024;

fn build_pool(config: &StoreConfig, flags: OpenFlags, size: u32) -> Pool<SqliteConnectionManager> {
    let busy_timeout = config.busy_timeout;
    let manager = SqliteConnectionManager::file(&config.path)
        .with_flags(flags)
        .with_init(move |conn| apply_pragmas(conn, flags, busy_timeout));
    // Connections are opened lazily; setup has already proven the file opens.
    Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(config.pool_timeout)
        .build_unchecked(manager)
}
