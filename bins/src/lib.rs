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
