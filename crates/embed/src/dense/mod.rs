//! Dense embedders behind one API: a remote OpenAI-compatible server ([`SparkEmbedder`])
//! or the in-process BERT model ([`LocalBertEmbedder`]).

mod bert;
pub mod local;
pub mod spark;

use serde::{Deserialize, Serialize};

use crate::EmbedError;
use crate::chunk::TokenCounter;

pub use local::{LocalBertEmbedder, LocalModelConfig};
pub use spark::{EncodingFormat, SparkEmbedder, SparkEmbedderConfig};

/// What decides the dense vectors; part of the index [`crate::Fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseFingerprint {
    /// `remote` (OpenAI-compatible server) or `local` (in-process model).
    pub source: String,
    /// The model id.
    pub model_id: String,
    /// Size of every vector.
    pub dimension: usize,
    /// Prepended to queries.
    pub query_prefix: String,
    /// Prepended to documents.
    pub document_prefix: String,
    /// How long inputs are cut: `chars:N` (remote) or `tokens:N` (local).
    pub input_limit: String,
    /// SHA-256 of the local model's weights; `None` for a remote model.
    pub weights_sha256: Option<String>,
}

/// One of the two dense embedders (cheap to clone: the model or the connection is shared).
#[derive(Clone, Debug)]
pub enum DenseEmbedder {
    /// An OpenAI-compatible `/v1/embeddings` server (Spark Control).
    Remote(SparkEmbedder),
    /// The in-process model.
    Local(LocalBertEmbedder),
}

impl DenseEmbedder {
    /// Vectors of documents (document prefix), in input order.
    pub async fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        match self {
            Self::Remote(e) => e.embed_documents(texts).await,
            Self::Local(e) => e.embed_documents(texts).await,
        }
    }

    /// The vector of a query (query prefix).
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        match self {
            Self::Remote(e) => e.embed_query(text).await,
            Self::Local(e) => e.embed_query(text).await,
        }
    }

    /// The model id.
    pub fn model_id(&self) -> &str {
        match self {
            Self::Remote(e) => e.model_id(),
            Self::Local(e) => e.model_id(),
        }
    }

    /// The vector size; a remote model may need one request to find out.
    pub async fn dimension(&self) -> Result<usize, EmbedError> {
        match self {
            Self::Remote(e) => e.dimension().await,
            Self::Local(e) => Ok(e.dimension()),
        }
    }

    /// How the chunker should count tokens for this model.
    pub fn token_counter(&self) -> TokenCounter {
        match self {
            Self::Remote(_) => TokenCounter::Approximate,
            Self::Local(e) => TokenCounter::from_tokenizer(e.tokenizer(), e.model_id()),
        }
    }

    /// The largest chunk, in tokens without special tokens, the model reads whole
    /// (`None` when unknown: a remote model).
    pub fn max_chunk_tokens(&self) -> Option<usize> {
        match self {
            Self::Remote(_) => None,
            // [CLS] and [SEP] take two positions.
            Self::Local(e) => Some(e.max_seq_len().saturating_sub(2)),
        }
    }

    /// What decides the vectors.
    pub async fn fingerprint(&self) -> Result<DenseFingerprint, EmbedError> {
        Ok(match self {
            Self::Remote(e) => DenseFingerprint {
                source: "remote".to_owned(),
                model_id: e.model_id().to_owned(),
                dimension: e.dimension().await?,
                query_prefix: e.config().query_prefix.clone(),
                document_prefix: e.config().document_prefix.clone(),
                input_limit: format!("chars:{}", e.config().max_input_chars),
                weights_sha256: None,
            },
            Self::Local(e) => DenseFingerprint {
                source: "local".to_owned(),
                model_id: e.model_id().to_owned(),
                dimension: e.dimension(),
                query_prefix: e.config().query_prefix.clone(),
                document_prefix: e.config().document_prefix.clone(),
                input_limit: format!("tokens:{}", e.max_seq_len()),
                weights_sha256: Some(e.weights_sha256().to_owned()),
            },
        })
    }
}
