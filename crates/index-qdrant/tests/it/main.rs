//! Integration tests of `index-qdrant`: one conformance suite for both engines, plus
//! what only one engine has (persistence and locking of the embedded directory; URL,
//! handshake and credential checks of the server client).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod embedded_only;
mod server_only;
mod support;
