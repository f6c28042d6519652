//! SQLite access for crm-substrate: the one place that knows the CRM's schema.
//!
//! What it holds:
//! - [`Store`]: a read-write pool and a read-only pool over the CRM file, every
//!   connection in WAL mode with a busy timeout, `foreign_keys=ON`, `synchronous=NORMAL`;
//! - the source-contract check run at open ([`contract`]), naming any missing table or
//!   column and the file;
//! - the versioned Phase-0 migrations ([`migrations`]) recorded in
//!   `substrate_schema_migrations` (never `PRAGMA user_version`, which is the CRM's);
//! - typed rows ([`Person`], [`Organization`], [`Interaction`], [`Deal`]), timestamps
//!   normalised on read ([`Timestamp`]) and the reads the other steps need ([`queries`]):
//!   keyset pages since a [`Watermark`], anti-joins against the index, related rows;
//! - rendering of each row into a searchable [`Document`] ([`render`]), with HTML stripped;
//! - helpers that read and write the Phase-0 tables inside a caller's transaction
//!   ([`phase0`]), including the one-run-at-a-time lease;
//! - [`synthetic`]: a deterministic, realistic synthetic CRM with known duplicates and a
//!   ground-truth file, for the demo, tests and benchmarks.
//!
//! Functions that touch SQLite take a `&Connection` or `&Transaction`; they never open
//! their own, so the caller controls transaction scope (and never holds a read transaction
//! across a network call).
//!
//! ```no_run
//! use crm_store::{Store, StoreConfig, Person, queries};
//!
//! # fn main() -> Result<(), crm_store::StoreError> {
//! let store = Store::open(StoreConfig::new("/data/crm.db"))?;
//! let conn = store.reader()?;
//! let mut after = None;
//! loop {
//!     let page = queries::keyset_page::<Person>(&conn, after, 1000)?;
//!     let Some(next) = page.next else { break };
//!     for person in &page.rows {
//!         // ...
//!         let _ = person.full_name.len();
//!     }
//!     after = Some(next);
//! }
//! # Ok(())
//! # }
//! ```

pub mod contract;
pub mod edits;
mod error;
pub mod html;
pub mod lookups;
pub mod migrations;
pub mod phase0;
pub mod queries;
pub mod render;
mod rows;
mod store;
pub mod sync_queries;
pub mod synthetic;
mod timestamp;

pub use error::{MissingItem, StoreError};
pub use render::{Document, DocumentFields, DocumentKind};
pub use rows::{
    Deal, IdentityRow, Interaction, Organization, OrganizationIdentity, Person, PersonIdentity,
    SourceRow, SourceTable,
};
pub use store::{PooledConn, Store, StoreConfig, open_connection};
pub use timestamp::{EPOCH_TEXT, NORMALISED_UPDATED_AT, Timestamp, Watermark};

/// Re-exported so callers name the same rusqlite version as this crate.
pub use rusqlite;
