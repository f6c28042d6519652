//! Glue shared by the crm-substrate binaries.
//!
//! The binaries in `src/bin/` are thin: they parse flags, load [`settings::Settings`],
//! build the library crates' typed configs, call the libraries, and print a summary.
//! What they share lives here:
//! - [`settings`]: the one typed settings struct and its layered loader;
//! - [`cli`]: common flags, start-up (settings, tracing), and the exit path;
//! - [`progress`]: progress bars that stay out of the way when stderr is not a terminal;
//! - [`embedding`]: the embedder the settings select (Spark Control or the local model);
//! - [`indexing`]: the index and indexer the settings describe, for crm-backfill and crm-sync;
//! - [`resolving`]: the resolver's settings, progress and summary, for crm-resolve and crm-demo;
//! - [`resources`]: peak memory and CPU time, for summaries and benchmarks;
//! - [`bench`]: the `crm-bench` suites.

pub mod bench;
pub mod cli;
pub mod embedding;
pub mod indexing;
pub mod progress;
pub mod resolving;
pub mod resources;
pub mod settings;

/// Every binary allocates through jemalloc, as Qdrant's own server does. Under glibc's
/// allocator a 1M-row build into the embedded engine spent about a fifth of its CPU in
/// `malloc`, `free` and the kernel zeroing the pages they mapped, and kept 1.7 GB of
/// anonymous memory (freed blocks stayed in per-thread arenas, and each of the
/// optimizer's merges added to them); under jemalloc it ingests 1.4× as fast with a
/// peak under 1 GB (README, development notes).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
