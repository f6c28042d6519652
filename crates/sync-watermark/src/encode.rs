//! Documents to points: chunk texts, BM25 vectors, dense vectors and payloads.

use std::sync::Arc;

use crm_store::{Document, DocumentKind};
use index_qdrant::{ChunkPayload, ChunkPoint, SparseVector};
use serde_json::{Map, Value};

use crate::error::SyncError;

/// Bumped when the payload layout or the hashing of this crate changes, so an index
/// written by an older layout is rebuilt instead of mixed.
pub const PAYLOAD_VERSION: &str = "sync-payload-v1";

/// Turns rendered documents into the chunks, vectors and payloads of the index.
///
/// Chunking and BM25 run on the caller's thread (CPU work, a few microseconds per
/// chunk); dense vectors come from the embedder. [`Encoder::fingerprint`] names
/// everything that decides the vectors, and is stored with the index state.
pub struct Encoder {
    embedder: Arc<embed::Embedder>,
    fingerprint: String,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// One chunk of a document with its sparse vector, waiting for its dense vector.
#[derive(Debug, Clone)]
pub(crate) struct PreparedChunk {
    pub(crate) index: u32,
    pub(crate) text: String,
    pub(crate) sparse: SparseVector,
}

impl Encoder {
    /// An encoder over `embedder` (chunker, BM25 and dense model together). Asks a
    /// remote embedder for its dimension when it does not know it yet (the fingerprint
    /// includes it).
    pub async fn new(embedder: Arc<embed::Embedder>) -> Result<Self, SyncError> {
        let fingerprint = embedder
            .fingerprint()
            .await
            .map_err(|source| SyncError::Embed {
                what: "a probe text to learn the embedder's fingerprint".to_owned(),
                source,
            })?;
        Ok(Self {
            fingerprint: format!("{PAYLOAD_VERSION};{}", fingerprint.canonical()),
            embedder,
        })
    }

    /// Everything that decides the index's vectors and payloads: the embedder's
    /// fingerprint (model, dimension, prefixes, chunking, BM25) and this crate's payload
    /// version. Two indexes with the same fingerprint can be compared point for point.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<embed::Embedder> {
        &self.embedder
    }

    /// Size of the dense vectors (asks a remote embedder once if it is not known yet).
    pub async fn dense_dim(&self) -> Result<usize, SyncError> {
        self.embedder
            .dimension()
            .await
            .map_err(|source| SyncError::Embed {
                what: "a probe text to learn the dense dimension".to_owned(),
                source,
            })
    }

    /// The chunks of a document with their BM25 vectors (no chunk for an empty one).
    pub(crate) fn prepare(&self, doc: &Document) -> Vec<PreparedChunk> {
        self.embedder
            .chunk(&doc.title, &doc.text)
            .into_iter()
            .map(|chunk| {
                let sparse = self.embedder.bm25().document(&chunk.text);
                PreparedChunk {
                    index: chunk.index,
                    sparse: SparseVector::new(sparse.indices, sparse.values),
                    text: chunk.text,
                }
            })
            .collect()
    }

    /// How many chunks a document has.
    pub(crate) fn chunk_count(&self, doc: &Document) -> usize {
        self.embedder.chunk(&doc.title, &doc.text).len()
    }

    /// Dense vectors of `texts`, in order.
    pub(crate) async fn dense(
        &self,
        texts: Vec<String>,
        what: &str,
    ) -> Result<Vec<Vec<f32>>, SyncError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let expected = texts.len();
        let vectors = self
            .embedder
            .embed_documents(&texts)
            .await
            .map_err(|source| SyncError::Embed {
                what: what.to_owned(),
                source,
            })?;
        if vectors.len() != expected {
            return Err(SyncError::EmbedCount {
                what: what.to_owned(),
                expected,
                got: vectors.len(),
            });
        }
        Ok(vectors)
    }
}

/// The payload `kind` of a document: `person`, `organization`, `deal`, or an
/// interaction's own kind (`meeting`, `call`, `email`, `note`, ...; `interaction` when
/// the CRM left it empty).
pub(crate) fn payload_kind(doc: &Document) -> String {
    match doc.fields.kind {
        DocumentKind::Interaction => doc
            .fields
            .category
            .clone()
            .unwrap_or_else(|| DocumentKind::Interaction.as_str().to_owned()),
        other => other.as_str().to_owned(),
    }
}

/// The payload of one chunk. The typed fields are the index's contract; `category`
/// and `organization_name` ride along as extra fields for display.
pub(crate) fn payload(
    doc: &Document,
    content_hash: &str,
    entity_id: Option<&str>,
    chunk_index: u32,
    text: String,
) -> ChunkPayload {
    let mut extra = Map::new();
    if let Some(category) = &doc.fields.category {
        extra.insert("category".to_owned(), Value::String(category.clone()));
    }
    if let Some(name) = &doc.fields.organization_name {
        extra.insert("organization_name".to_owned(), Value::String(name.clone()));
    }
    ChunkPayload {
        source_table: doc.source_table.as_str().to_owned(),
        source_id: doc.source_id,
        chunk_index,
        entity_id: entity_id.map(str::to_owned),
        kind: payload_kind(doc),
        title: doc.title.clone(),
        text,
        organization_id: doc.fields.organization_id,
        occurred_at: doc.fields.occurred_at.map(|t| t.to_canonical()),
        updated_at: doc.fields.updated_at.to_canonical(),
        content_hash: content_hash.to_owned(),
        extra,
    }
}

/// A complete point.
pub(crate) fn point(
    doc: &Document,
    content_hash: &str,
    entity_id: Option<&str>,
    chunk: PreparedChunk,
    dense: Vec<f32>,
) -> ChunkPoint {
    let payload = payload(doc, content_hash, entity_id, chunk.index, chunk.text);
    ChunkPoint::new(dense, chunk.sparse, payload)
}
