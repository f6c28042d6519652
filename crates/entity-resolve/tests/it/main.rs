//! Integration tests of `entity-resolve` on real SQLite CRM files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod e2e;
mod merges;
mod rules;
mod runs;
mod unchanged;
