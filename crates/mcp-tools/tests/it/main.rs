//! `CrmTools` served in-process (an rmcp client over an in-memory duplex) against a real
//! CRM file and a real embedded index: how `search` shares the embedded index with other
//! processes. The binary's own tests (in `bins/tests/mcp_server`) cover the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod index_sharing;
