//! Documents to vectors.
//!
//! The chunker, the sparse BM25 encoder compatible with fastembed's `Qdrant/bm25`, and
//! the dense embedders are being written; what is here today is [`http`], the one HTTP
//! client builder and retry policy for OpenAI-compatible servers, shared with
//! `fuzzy-llm`, and [`bm25`].

pub mod bm25;
mod error;
pub mod http;

pub use bm25::{Bm25Config, Bm25Encoder, SparseVector};
pub use error::EmbedError;
#[cfg(feature = "testing")]
pub mod testing;
