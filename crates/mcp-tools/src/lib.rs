//! The MCP tool router.
//!
//! Will hold the typed tools that agents call: reads, `search` in dense, sparse and
//! hybrid modes, and logged writes, with paging, truncation and a read-only switch.
