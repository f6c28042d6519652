//! Documents to vectors: chunks, a sparse BM25 vector and a dense vector per chunk.
//!
//! - [`chunk`]: splits a rendered CRM document into chunks that fit the dense model's
//!   window, along paragraphs and sentences, with the title repeated as context.
//! - [`bm25`]: sparse vectors identical to fastembed's `Qdrant/bm25` (DESIGN §5), so
//!   indexes built by the Python pipeline and by this one agree; IDF is left to Qdrant.
//! - [`dense`]: dense vectors from an OpenAI-compatible `/v1/embeddings` server (Spark
//!   Control) or from an in-process sentence-transformers BERT model run with candle.
//! - [`Embedder`]: the three together, with the [`Fingerprint`] an index records so that a
//!   change of model or parameters forces a rebuild instead of mixing vectors.
//! - [`http`]: the one HTTP client and retry policy for OpenAI-compatible servers, shared
//!   with `fuzzy-llm`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), embed::EmbedError> {
//! use embed::dense::{DenseEmbedder, LocalBertEmbedder, LocalModelConfig};
//! use embed::{Bm25Config, ChunkerConfig, Embedder};
//!
//! let model = LocalBertEmbedder::load(LocalModelConfig::new("/data/models/all-MiniLM-L6-v2"))?;
//! let embedder = Embedder::new(
//!     DenseEmbedder::Local(model),
//!     ChunkerConfig::default(),
//!     Bm25Config::default(),
//! )?;
//! let chunks = embedder.chunk("Acme Custody", "Acme Custody\nMet the founders in Austin.");
//! let embedded = embedder.embed_chunks(chunks).await?;
//! let query = embedder.embed_query_vectors("custody founders").await?;
//! println!("{} chunks, fingerprint {}", embedded.len(), embedder.fingerprint().await?.hash());
//! # let _ = query;
//! # Ok(()) }
//! ```
//!
//! Nothing here reads environment variables or configuration files: callers pass typed
//! configs. Events go to `tracing`.

pub mod bm25;
pub mod chunk;
pub mod dense;
mod embedder;
mod error;
pub mod http;
#[cfg(feature = "testing")]
pub mod testing;

pub use bm25::{Bm25Config, Bm25Encoder, SparseVector};
pub use chunk::{Chunk, Chunker, ChunkerConfig, TokenCounter};
pub use embedder::{
    Bm25Fingerprint, ChunkerFingerprint, EmbeddedChunk, Embedder, Fingerprint, QueryVectors,
};
pub use error::EmbedError;
