//! [`Embedder`]: chunker + BM25 + dense model, and the [`Fingerprint`] of the three.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::EmbedError;
use crate::bm25::{Bm25Config, Bm25Encoder, SparseVector, tokenizer_version};
use crate::chunk::{Chunk, Chunker, ChunkerConfig};
use crate::dense::{DenseEmbedder, DenseFingerprint};

/// Everything that decides the vectors in an index. Two indexes with equal fingerprints
/// hold comparable vectors; a change of any field means the index must be rebuilt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// Format of this struct; bumped when fields change meaning.
    pub version: u32,
    /// The dense model.
    pub dense: DenseFingerprint,
    /// BM25 parameters and tokeniser.
    pub bm25: Bm25Fingerprint,
    /// Chunking parameters.
    pub chunker: ChunkerFingerprint,
}

/// The BM25 part of a [`Fingerprint`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bm25Fingerprint {
    /// Term-frequency saturation.
    pub k: f64,
    /// Length normalisation.
    pub b: f64,
    /// Assumed average document length.
    pub avg_len: f64,
    /// [`crate::bm25::tokenizer_version`].
    pub tokenizer: String,
}

/// The chunking part of a [`Fingerprint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerFingerprint {
    /// Most tokens per chunk.
    pub max_tokens: usize,
    /// Overlap in tokens.
    pub overlap_tokens: usize,
    /// Most title tokens per chunk.
    pub max_title_tokens: usize,
    /// How tokens are counted.
    pub counter: String,
}

impl Fingerprint {
    /// The current format version.
    pub const VERSION: u32 = 1;

    /// A stable one-line form: compact JSON with fields in declaration order.
    pub fn canonical(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 (hex) of [`Fingerprint::canonical`].
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

/// A chunk with both of its vectors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedChunk {
    /// The chunk.
    pub chunk: Chunk,
    /// Its dense vector.
    pub dense: Vec<f32>,
    /// Its BM25 document vector.
    pub sparse: SparseVector,
}

/// Both vectors of a search query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueryVectors {
    /// The dense query vector.
    pub dense: Vec<f32>,
    /// The BM25 query vector.
    pub sparse: SparseVector,
}

/// The one entry point the index and the MCP server use: documents to chunks to vectors,
/// and queries to vectors.
#[derive(Debug)]
pub struct Embedder {
    chunker: Chunker,
    bm25: Bm25Encoder,
    dense: DenseEmbedder,
}

impl Embedder {
    /// Bundles a dense model with a chunker that counts tokens the model's way, and BM25.
    /// `chunker.max_tokens` is lowered to what the model reads whole when it knows.
    pub fn new(
        dense: DenseEmbedder,
        chunker: ChunkerConfig,
        bm25: Bm25Config,
    ) -> Result<Self, EmbedError> {
        let mut chunker = chunker;
        if let Some(limit) = dense.max_chunk_tokens()
            && chunker.max_tokens > limit
        {
            tracing::info!(
                configured = chunker.max_tokens,
                limit,
                "chunk size lowered to the model's input window"
            );
            chunker.max_tokens = limit;
        }
        Ok(Self {
            chunker: Chunker::new(chunker, dense.token_counter())?,
            bm25: Bm25Encoder::new(bm25)?,
            dense,
        })
    }

    /// The chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The BM25 encoder.
    pub fn bm25(&self) -> &Bm25Encoder {
        &self.bm25
    }

    /// The dense model.
    pub fn dense(&self) -> &DenseEmbedder {
        &self.dense
    }

    /// The dense model's id.
    pub fn model_id(&self) -> &str {
        self.dense.model_id()
    }

    /// The dense vector size.
    pub async fn dimension(&self) -> Result<usize, EmbedError> {
        self.dense.dimension().await
    }

    /// Splits a document (see [`Chunker::chunk`]).
    pub fn chunk(&self, title: &str, text: &str) -> Vec<Chunk> {
        self.chunker.chunk(title, text)
    }

    /// Dense vectors of texts (document prefix), in order.
    pub async fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.dense.embed_documents(texts).await
    }

    /// The dense vector of a query (query prefix).
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.dense.embed_query(text).await
    }

    /// Both vectors of every chunk, in order.
    pub async fn embed_chunks(&self, chunks: Vec<Chunk>) -> Result<Vec<EmbeddedChunk>, EmbedError> {
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        let dense = self.dense.embed_documents(&texts).await?;
        Ok(chunks
            .into_iter()
            .zip(dense)
            .map(|(chunk, dense)| {
                let sparse = self.bm25.document(&chunk.text);
                EmbeddedChunk {
                    chunk,
                    dense,
                    sparse,
                }
            })
            .collect())
    }

    /// Both vectors of a search query.
    pub async fn embed_query_vectors(&self, text: &str) -> Result<QueryVectors, EmbedError> {
        Ok(QueryVectors {
            dense: self.dense.embed_query(text).await?,
            sparse: self.bm25.query(text),
        })
    }

    /// What decides the vectors (a remote model may need one request for its dimension).
    pub async fn fingerprint(&self) -> Result<Fingerprint, EmbedError> {
        let bm25 = self.bm25.config();
        let chunker = self.chunker.config();
        Ok(Fingerprint {
            version: Fingerprint::VERSION,
            dense: self.dense.fingerprint().await?,
            bm25: Bm25Fingerprint {
                k: bm25.k,
                b: bm25.b,
                avg_len: bm25.avg_len,
                tokenizer: tokenizer_version(),
            },
            chunker: ChunkerFingerprint {
                max_tokens: chunker.max_tokens,
                overlap_tokens: chunker.overlap_tokens,
                max_title_tokens: chunker.max_title_tokens,
                counter: self.chunker.counter().describe(),
            },
        })
    }
}
