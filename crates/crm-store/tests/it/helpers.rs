//! Shared test helpers: temporary CRM files.

use std::path::{Path, PathBuf};

use crm_store::{Store, StoreConfig};
use tempfile::TempDir;

/// A temporary directory holding a CRM file that is removed at drop.
pub(crate) struct TempCrm {
    _dir: TempDir,
    pub(crate) path: PathBuf,
}

impl TempCrm {
    /// An empty directory; the CRM file does not exist yet.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crm.db");
        Self { _dir: dir, path }
    }

    /// Creates the CRM tables (from `schema/crm.sql`) and migrates.
    pub(crate) fn created() -> (Self, Store) {
        let t = Self::new();
        let store = Store::open(t.config()).unwrap();
        (t, store)
    }

    /// A configuration that creates the file and migrates.
    pub(crate) fn config(&self) -> StoreConfig {
        let mut c = StoreConfig::new(&self.path);
        c.create_if_missing = true;
        c
    }

    /// A plain connection, outside the store's pools.
    pub(crate) fn raw(&self) -> rusqlite::Connection {
        raw(&self.path)
    }
}

/// A plain connection to a file.
pub(crate) fn raw(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c
}
