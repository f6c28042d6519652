//! Integration tests of sync-watermark: a real SQLite CRM file, the real embedded index
//! engine, and a real HTTP embeddings server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod behaviour;
mod concurrency;
mod failures;
mod model;
mod support;
