//! What the index stores: point ids, vectors and the typed chunk payload.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace of every [`ChunkId`]: `3df18485-5ecd-56a2-b4a5-c735121af18d`, which is
/// `UUIDv5(NAMESPACE_URL, "https://github.com/ten31/crm-substrate/chunk-id")`.
///
/// Written out as a literal so the id of a chunk never depends on how it is computed;
/// a unit test re-derives it. Changing it changes every point id in every index.
pub const CHUNK_ID_NAMESPACE: Uuid = Uuid::from_u128(0x3df18485_5ecd_56a2_b4a5_c735121af18d);

/// The text under which [`CHUNK_ID_NAMESPACE`] is derived from the URL namespace.
pub const CHUNK_ID_NAMESPACE_NAME: &str = "https://github.com/ten31/crm-substrate/chunk-id";

/// The id of one chunk of one CRM row: `UUIDv5(CHUNK_ID_NAMESPACE, "{table}:{id}:{chunk}")`.
///
/// This is the point-id function of the whole project: the same row and chunk always
/// get the same id, so upserts are idempotent and a re-build overwrites in place.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkId(Uuid);

impl ChunkId {
    /// The id of chunk `chunk_index` of row `source_id` of table `source_table`.
    pub fn new(source_table: &str, source_id: i64, chunk_index: u32) -> Self {
        let name = format!("{source_table}:{source_id}:{chunk_index}");
        Self(Uuid::new_v5(&CHUNK_ID_NAMESPACE, name.as_bytes()))
    }

    /// Wraps a UUID read back from the index.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID this id is.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.0)
    }
}

/// A sparse vector: parallel lists of dimension ids and weights (BM25 term weights).
///
/// Indices must be unique; order does not matter on input. Vectors read back from the
/// index come sorted by index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseVector {
    /// Dimension ids (token ids).
    pub indices: Vec<u32>,
    /// One weight per index.
    pub values: Vec<f32>,
}

impl SparseVector {
    /// A sparse vector from parallel lists.
    pub fn new(indices: Vec<u32>, values: Vec<f32>) -> Self {
        Self { indices, values }
    }

    /// Whether the vector has no dimension at all (e.g. a text made only of stopwords).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Sorts the entries by index, keeping each weight with its index.
    pub(crate) fn sort_by_index(&mut self) {
        if self.indices.is_sorted() {
            return;
        }
        let mut pairs: Vec<(u32, f32)> = self
            .indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
            .collect();
        pairs.sort_unstable_by_key(|&(index, _)| index);
        (self.indices, self.values) = pairs.into_iter().unzip();
    }

    /// Why this vector cannot be stored or searched, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.indices.len() != self.values.len() {
            return Some(format!(
                "sparse vector has {} indices but {} values",
                self.indices.len(),
                self.values.len()
            ));
        }
        if let Some(position) = self.values.iter().position(|v| !v.is_finite()) {
            return Some(format!(
                "sparse vector weight {} (index {}) is not finite",
                self.values[position], self.indices[position]
            ));
        }
        // Fast path: BM25 vectors usually come sorted, and then unique is one pass.
        if self.indices.windows(2).all(|pair| pair[0] < pair[1]) {
            return None;
        }
        let mut sorted = self.indices.clone();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Some(format!(
                "sparse vector index {} appears more than once (indices must be unique)",
                pair[0]
            ));
        }
        None
    }
}

/// Why a dense vector cannot be stored or searched with dimension `dim`, if it cannot.
pub(crate) fn dense_problem(vector: &[f32], dim: usize) -> Option<String> {
    if vector.len() != dim {
        return Some(format!(
            "dense vector has {} dimensions, the collection has {dim}",
            vector.len()
        ));
    }
    if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
        return Some(format!(
            "dense vector component {position} is {} (not finite)",
            vector[position]
        ));
    }
    if vector.iter().all(|v| *v == 0.0) {
        return Some("dense vector is all zeros: cosine similarity is undefined".to_owned());
    }
    None
}

/// The payload of one chunk: where it comes from and what it says.
///
/// Field names are the payload keys in Qdrant (the filters and the sync crate rely on
/// them). Unknown keys read back from the index land in [`ChunkPayload::extra`], so an
/// index written by a newer version can still be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    /// CRM table of the source row (`people`, `organizations`, `interactions`, `deals`).
    pub source_table: String,
    /// Primary key of the source row.
    pub source_id: i64,
    /// Position of this chunk in the row's document, from 0.
    pub chunk_index: u32,
    /// Canonical entity id of the row (`person:17`), when it has one.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// Kind of record (`person`, `organization`, `meeting`, `email`, `deal`, ...).
    pub kind: String,
    /// Short human title of the source row.
    #[serde(default)]
    pub title: String,
    /// The chunk's text.
    #[serde(default)]
    pub text: String,
    /// Organisation the row belongs to, when any.
    #[serde(default)]
    pub organization_id: Option<i64>,
    /// When the recorded event happened (ISO-8601 UTC), for interactions; the date-range
    /// filter applies to this field.
    #[serde(default)]
    pub occurred_at: Option<String>,
    /// The source row's `updated_at` (ISO-8601 UTC) when it was indexed.
    #[serde(default)]
    pub updated_at: String,
    /// Hash of the rendered document the chunk came from.
    #[serde(default)]
    pub content_hash: String,
    /// Any other payload keys.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Payload keys that [`ChunkPayload`] types; `set_payload_fields` refuses to touch them.
pub const CORE_PAYLOAD_FIELDS: &[&str] = &[
    field::SOURCE_TABLE,
    field::SOURCE_ID,
    field::CHUNK_INDEX,
    field::ENTITY_ID,
    field::KIND,
    field::TITLE,
    field::TEXT,
    field::ORGANIZATION_ID,
    field::OCCURRED_AT,
    field::UPDATED_AT,
    field::CONTENT_HASH,
];

/// Payload key names.
pub(crate) mod field {
    pub(crate) const SOURCE_TABLE: &str = "source_table";
    pub(crate) const SOURCE_ID: &str = "source_id";
    pub(crate) const CHUNK_INDEX: &str = "chunk_index";
    pub(crate) const ENTITY_ID: &str = "entity_id";
    pub(crate) const KIND: &str = "kind";
    pub(crate) const TITLE: &str = "title";
    pub(crate) const TEXT: &str = "text";
    pub(crate) const ORGANIZATION_ID: &str = "organization_id";
    pub(crate) const OCCURRED_AT: &str = "occurred_at";
    pub(crate) const UPDATED_AT: &str = "updated_at";
    pub(crate) const CONTENT_HASH: &str = "content_hash";
}

/// The type of a payload index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadIndexKind {
    /// Exact string match.
    Keyword,
    /// Integer match and range.
    Integer,
    /// RFC 3339 date-time range.
    Datetime,
}

/// The payload indexes every collection gets: one per field that a filter uses.
///
/// `occurred_at` is indexed as a `datetime`: both engines run the same Qdrant segment
/// code, parse the same RFC 3339 strings and compare them as UTC microseconds.
pub const PAYLOAD_INDEXES: &[(&str, PayloadIndexKind)] = &[
    (field::SOURCE_TABLE, PayloadIndexKind::Keyword),
    (field::KIND, PayloadIndexKind::Keyword),
    (field::ENTITY_ID, PayloadIndexKind::Keyword),
    (field::SOURCE_ID, PayloadIndexKind::Integer),
    (field::ORGANIZATION_ID, PayloadIndexKind::Integer),
    (field::CHUNK_INDEX, PayloadIndexKind::Integer),
    (field::OCCURRED_AT, PayloadIndexKind::Datetime),
];

/// One chunk ready to be written: id, both vectors and the payload.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkPoint {
    /// Point id: must be `ChunkId::new(&payload.source_table, payload.source_id,
    /// payload.chunk_index)` (checked on upsert), so that deletes by id and by row agree.
    pub id: ChunkId,
    /// Dense embedding; stored unit-normalised (cosine).
    pub dense: Vec<f32>,
    /// BM25 document vector; may be empty (a chunk of stopwords only).
    pub sparse: SparseVector,
    /// What the chunk is and where it comes from.
    pub payload: ChunkPayload,
}

impl ChunkPoint {
    /// A point whose id is derived from its payload's table, row id and chunk index.
    pub fn new(dense: Vec<f32>, sparse: SparseVector, payload: ChunkPayload) -> Self {
        let id = ChunkId::new(
            &payload.source_table,
            payload.source_id,
            payload.chunk_index,
        );
        Self {
            id,
            dense,
            sparse,
            payload,
        }
    }

    /// Why this point cannot be stored in a collection of dimension `dim`, if it cannot.
    pub(crate) fn problem(&self, dim: usize) -> Option<String> {
        let payload = &self.payload;
        let expected = ChunkId::new(
            &payload.source_table,
            payload.source_id,
            payload.chunk_index,
        );
        if self.id != expected {
            return Some(format!(
                "id is not the chunk id of {}:{}:{} ({expected})",
                payload.source_table, payload.source_id, payload.chunk_index
            ));
        }
        if let Some(problem) = dense_problem(&self.dense, dim) {
            return Some(problem);
        }
        if let Some(problem) = self.sparse.problem() {
            return Some(problem);
        }
        if payload.source_table.is_empty() {
            return Some("payload source_table is empty".to_owned());
        }
        if let Some(occurred_at) = &payload.occurred_at
            && chrono::DateTime::parse_from_rfc3339(occurred_at).is_err()
        {
            return Some(format!(
                "payload occurred_at {occurred_at:?} is not an RFC 3339 date-time \
                 (e.g. 2026-06-05T13:55:12Z); the date filter could not see it"
            ));
        }
        if let Some(key) = payload
            .extra
            .keys()
            .find(|key| CORE_PAYLOAD_FIELDS.contains(&key.as_str()))
        {
            return Some(format!("payload extra field {key:?} shadows a typed field"));
        }
        None
    }

    /// The payload as a JSON object.
    pub(crate) fn payload_object(
        payload: &ChunkPayload,
    ) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
        match serde_json::to_value(payload)? {
            serde_json::Value::Object(map) => Ok(map),
            // A struct always serialises to an object; keep the type honest anyway.
            other => Err(serde::ser::Error::custom(format!(
                "payload serialised to {other}, not an object"
            ))),
        }
    }
}

/// A point read back from the index.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPoint {
    /// Point id.
    pub id: ChunkId,
    /// Its payload.
    pub payload: ChunkPayload,
    /// Its vectors, when they were asked for.
    pub vectors: Option<StoredVectors>,
}

/// The vectors of a stored point.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVectors {
    /// Dense vector as stored: unit-normalised by the cosine distance.
    pub dense: Vec<f32>,
    /// Sparse vector as stored, sorted by index.
    pub sparse: SparseVector,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_derived_from_its_documented_name() {
        let derived = Uuid::new_v5(&Uuid::NAMESPACE_URL, CHUNK_ID_NAMESPACE_NAME.as_bytes());
        assert_eq!(CHUNK_ID_NAMESPACE, derived, "{derived}");
    }

    #[test]
    fn chunk_id_is_uuid_v5_of_table_id_chunk() {
        let id = ChunkId::new("people", 17, 0);
        assert_eq!(id.as_uuid().get_version_num(), 5);
        assert_eq!(
            *id.as_uuid(),
            Uuid::new_v5(&CHUNK_ID_NAMESPACE, b"people:17:0")
        );
        assert_ne!(id, ChunkId::new("people", 17, 1));
        assert_ne!(id, ChunkId::new("organizations", 17, 0));
        assert_eq!(
            ChunkId::new("deals", -3, 2).as_uuid(),
            &Uuid::new_v5(&CHUNK_ID_NAMESPACE, b"deals:-3:2")
        );
    }

    #[test]
    fn sparse_problems_are_named() {
        assert!(SparseVector::new(vec![], vec![]).problem().is_none());
        let dup = SparseVector::new(vec![3, 1, 3], vec![1.0, 1.0, 1.0]);
        assert!(
            dup.problem()
                .unwrap()
                .contains("index 3 appears more than once")
        );
        let nan = SparseVector::new(vec![1], vec![f32::NAN]);
        assert!(nan.problem().unwrap().contains("not finite"));
        let ragged = SparseVector::new(vec![1, 2], vec![1.0]);
        assert!(ragged.problem().unwrap().contains("2 indices but 1 values"));
    }

    #[test]
    fn sort_keeps_weights_with_their_index() {
        let mut v = SparseVector::new(vec![9, 1, 5], vec![0.9, 0.1, 0.5]);
        v.sort_by_index();
        assert_eq!(v, SparseVector::new(vec![1, 5, 9], vec![0.1, 0.5, 0.9]));
    }

    #[test]
    fn dense_problems_are_named() {
        assert!(dense_problem(&[1.0, 0.0], 2).is_none());
        assert!(dense_problem(&[1.0], 2).unwrap().contains("1 dimensions"));
        assert!(
            dense_problem(&[f32::INFINITY, 0.0], 2)
                .unwrap()
                .contains("component 0")
        );
        assert!(dense_problem(&[0.0, 0.0], 2).unwrap().contains("all zeros"));
    }
}
