//! The fuzzy tier of entity resolution: an LLM adjudicates the candidate pairs that
//! the deterministic resolver flagged, and its confident "same entity" answers become
//! durable merges.
//!
//! The pieces:
//! - [`chat`]: a `/v1/chat/completions` client on `embed`'s shared HTTP layer (retries,
//!   backoff, TLS switch, concurrency limit, key redaction all come from there);
//! - [`evidence`]: what the model is shown about each entity, bounded; conflicting hard
//!   evidence (LinkedIn pages, corporate domains, an undone merge — `entity-resolve`'s
//!   check — and Jr/Sr) rejects a pair without asking;
//! - [`prompt`]: both records as fenced, escaped JSON data, with the instruction that
//!   they are untrusted;
//! - [`verdict`]: the answer's JSON schema and its strict validation (thinking blocks
//!   and code fences stripped; anything else malformed is an `error`, never a yes);
//! - [`runner`]: a run over the pending candidates, highest score first, each decision
//!   committed on its own as it arrives, with a confidence threshold and a merge cap;
//! - [`merges`]: the merge machinery (`entity-resolve`'s), for people and agents too.
//!
//! Small local models over-merge, so the defaults are cautious: merge only at or above
//! confidence 0.9, never against conflicting hard evidence, at most 200 merges a run.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fuzzy_llm::FuzzyError> {
//! use crm_store::{Store, StoreConfig};
//! use embed::http::{HttpClient, HttpClientConfig};
//! use fuzzy_llm::chat::{ChatClient, ChatConfig};
//! use fuzzy_llm::runner::{RunOptions, adjudicate};
//!
//! let store = Store::open(StoreConfig::new("/data/crm.db"))?;
//! let mut http = HttpClientConfig::new("https://spark.local:8443");
//! http.verify_tls = false; // Spark Control's self-signed certificate
//! let client = ChatClient::new(HttpClient::new(http)?, ChatConfig::new("Qwen/Qwen3-8B"))?;
//! let options = RunOptions { limit: Some(100), ..RunOptions::default() };
//! let summary = adjudicate(&store, &client, &options, &()).await?;
//! assert!(summary.merged <= u64::from(options.policy.max_merges_per_run));
//! # Ok(()) }
//! ```

pub mod chat;
mod decide;
mod error;
pub mod evidence;
pub mod prompt;
pub mod runner;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verdict;

pub use error::FuzzyError;

/// Decisions by people and agents go through the same machinery as the model's: accept
/// a candidate ([`merges::accept_candidate`]), reject it ([`merges::reject_candidate`]),
/// undo a merge ([`merges::undo_merge`]), each inside the caller's transaction, with
/// `decided_by` = `human:<who>` ([`merges::Decider::Human`]). Re-exported from
/// `entity-resolve`, which owns it, so that every decision is written one way.
pub use entity_resolve::merges;
