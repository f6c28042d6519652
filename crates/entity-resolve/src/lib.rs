//! Deterministic entity resolution for the CRM: every `people` and `organizations` row
//! gets a canonical entity with a stable id, rows that are certainly the same entity
//! are linked, and pairs that might be are flagged for the fuzzy tier.
//!
//! The pieces, in the order a run uses them:
//! - [`normalize`]: pure normalisers of names, emails, phones, LinkedIn URLs, domains
//!   and legal names, safe on hostile input;
//! - the precision-first rules and a union-find that refuses a union whose cluster
//!   would hold conflicting hard evidence (two LinkedIn profiles, two corporate
//!   domains, the two sides of an undone merge);
//! - stable ids (`person:<n>` / `organization:<n>`, named after the lowest row id at
//!   creation, never moved, never reused);
//! - candidates: blocking keys (family name, given name, swapped names, compact and
//!   core organisation names, acronyms), then scored comparisons with reasons;
//! - [`merges`]: accept, reject, merge, undo, each in the caller's transaction;
//! - [`resolve`]: one run that writes only the differences, in short transactions.
//!
//! The rules, the id policy and how to read the summary are in the crate README.
//!
//! ```no_run
//! use entity_resolve::{NoProgress, ResolveConfig, RunOptions, resolve};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = crm_store::Store::open(crm_store::StoreConfig::new("/data/crm.db"))?;
//! let mut conn = store.writer()?;
//! let options = RunOptions { dry_run: false, holder: "run-1".into(), hostname: "box".into(), full: false };
//! let summary = resolve(&mut conn, &ResolveConfig::default(), &options, &NoProgress)?;
//! println!("{} people entities, {} new candidates", summary.people.entities, summary.people.candidates_new);
//! # Ok(())
//! # }
//! ```

mod assign;
mod candidates;
mod cluster;
mod error;
mod fingerprint;
mod ids;
pub mod merges;
mod nicknames;
pub mod normalize;
pub mod phonetic;
mod plan;
pub mod quality;
mod records;
mod rules;
mod run;
mod similarity;
mod state;
mod write;

pub use error::ResolveError;
pub use ids::{EntityId, EntityKind, KINDS, LinkRule};
pub use nicknames::Nicknames;
pub use normalize::PhoneRegion;
pub use run::{
    KindSummary, NoProgress, Phase, Progress, ResolveConfig, ResolveSummary, RunOptions, STEP,
    resolve,
};
pub use similarity::{Reason, Reasons};
