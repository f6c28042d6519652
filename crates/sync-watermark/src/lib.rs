//! Full and incremental indexing of the CRM.
//!
//! Will hold the backfill and the incremental sync: `(updated_at, id)` watermarks with
//! an overlap window, content-hash skips, soft and hard deletes, re-rendering after an
//! organisation changes, payload updates after merges, fingerprints that refuse to mix
//! vectors, a run lease, and `--verify`.
