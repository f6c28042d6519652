//! One hybrid-search index API over two engines.
//!
//! Will hold the embedded engine (a `qdrant-edge` shard in a directory beside the
//! database) and the server engine (`qdrant-client` over gRPC) behind one API:
//! collection lifecycle, idempotent upserts, deletes, payload updates, and dense,
//! sparse and hybrid (RRF) retrieval with filters.
