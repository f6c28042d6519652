//! SQLite access for crm-substrate.
//!
//! This crate is the one place that knows the CRM's schema. It will hold:
//! - connection pools (a read-write pool and a read-only pool) configured for WAL,
//!   a busy timeout and foreign keys;
//! - the source-contract check run at open, naming any missing table or column;
//! - the versioned Phase-0 migrations recorded in `substrate_schema_migrations`;
//! - typed rows (`Person`, `Organization`, `Interaction`, `Deal`) and the queries the
//!   other steps need (keyset pages since a watermark, anti-joins, related rows);
//! - rendering of each row into a searchable document;
//! - helpers that write the Phase-0 tables inside a caller's transaction.
