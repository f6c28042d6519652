//! Integration tests of crm-store, on real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod helpers;
mod migrations;
mod synthetic;
