//! Integration tests of the `embed` crate: one binary, modules per component.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bm25;
mod chunk;
mod http;
mod llama;
mod local;
mod spark;
mod support;
