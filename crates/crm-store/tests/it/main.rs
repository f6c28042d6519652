//! Integration tests of crm-store, on real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod concurrency;
mod contract;
mod fixtures;
mod helpers;
mod keyset;
mod messy;
mod migrations;
mod phase0;
mod queries;
mod synthetic;
