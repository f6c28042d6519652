//! Typed configuration: which engine, where, and what the collection looks like.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::IndexError;

/// The collection name used when none is configured.
pub const DEFAULT_COLLECTION: &str = "crm_chunks";

/// The server request timeout used when none is configured.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the index lives and what the collection is called.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexConfig {
    /// The engine and its location.
    pub engine: EngineConfig,
    /// Collection name: 1 to 200 characters out of `A-Z a-z 0-9 _ -`.
    #[serde(default = "default_collection")]
    pub collection: String,
}

fn default_collection() -> String {
    DEFAULT_COLLECTION.to_owned()
}

impl IndexConfig {
    /// The embedded engine in `dir`, default collection.
    pub fn embedded(dir: impl Into<PathBuf>) -> Self {
        Self {
            engine: EngineConfig::Embedded { dir: dir.into() },
            collection: default_collection(),
        }
    }

    /// A Qdrant server at `url` (gRPC, usually port 6334), default collection and timeout.
    pub fn server(url: impl Into<String>, api_key: Option<ApiKey>) -> Self {
        Self {
            engine: EngineConfig::Server {
                url: url.into(),
                api_key,
                timeout: DEFAULT_SERVER_TIMEOUT,
            },
            collection: default_collection(),
        }
    }

    /// The same configuration with another collection name.
    pub fn with_collection(mut self, collection: impl Into<String>) -> Self {
        self.collection = collection.into();
        self
    }

    pub(crate) fn validate_collection(&self) -> Result<(), IndexError> {
        let name = &self.collection;
        let valid = !name.is_empty()
            && name.len() <= 200
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(IndexError::InvalidConfig {
                reason: format!(
                    "collection name {name:?} must be 1 to 200 characters out of A-Z a-z 0-9 _ - \
                     (it is also a directory name for the embedded engine)"
                ),
            })
        }
    }
}

/// The two engines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EngineConfig {
    /// Qdrant's in-process engine (`qdrant-edge`); each collection is a directory under `dir`.
    Embedded {
        /// Directory holding one sub-directory per collection (by default beside the database).
        dir: PathBuf,
    },
    /// A Qdrant server or cluster, over gRPC.
    Server {
        /// gRPC URL, e.g. `http://localhost:6334` (6333 is the REST port and is refused).
        url: String,
        /// API key (`QDRANT_API_KEY`), sent as the `api-key` header.
        #[serde(default)]
        api_key: Option<ApiKey>,
        /// Timeout of one request, in seconds when written in a file.
        #[serde(default = "default_timeout", with = "duration_secs")]
        timeout: Duration,
    },
}

fn default_timeout() -> Duration {
    DEFAULT_SERVER_TIMEOUT
}

impl EngineConfig {
    /// Which engine this configures.
    pub fn kind(&self) -> EngineKind {
        match self {
            Self::Embedded { .. } => EngineKind::Embedded,
            Self::Server { .. } => EngineKind::Server,
        }
    }
}

/// Which engine an index runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// `qdrant-edge` in a local directory.
    Embedded,
    /// A Qdrant server over gRPC.
    Server,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Embedded => "embedded",
            Self::Server => "server",
        })
    }
}

/// A Qdrant API key. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// What a collection must look like.
///
/// Only `dense_dim` is checked against an existing collection (with the fixed names,
/// the cosine distance and the IDF modifier); the storage choices only apply when the
/// collection is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    /// Size of the dense vectors (from the embedder).
    pub dense_dim: usize,
    /// Keep dense vectors in memory-mapped files, paged in by the OS, rather than
    /// reading them into the process's memory. On by default.
    #[serde(default = "yes")]
    pub dense_on_disk: bool,
    /// Keep payloads in memory-mapped files rather than in RAM.
    #[serde(default = "yes")]
    pub payload_on_disk: bool,
    /// HNSW graph degree (`m`); `None` keeps Qdrant's default (16).
    #[serde(default)]
    pub hnsw_m: Option<usize>,
    /// HNSW build beam width (`ef_construct`); `None` keeps Qdrant's default (100).
    #[serde(default)]
    pub hnsw_ef_construct: Option<usize>,
    /// Degree of the extra HNSW links built per payload value (`payload_m`) so filtered
    /// searches stay fast; `None` keeps Qdrant's default (same as `m`), `Some(0)` skips
    /// them, which makes the optimizer much cheaper (filters on small sets are answered
    /// exactly from the payload indexes anyway). The default is `Some(0)`: the integer
    /// and date fields are indexed too, and the extra links for their value ranges
    /// cost more than the main graph (a 200,000-chunk build spent 348 s optimizing with
    /// them, 26 s without).
    #[serde(default = "no_payload_links")]
    pub hnsw_payload_m: Option<usize>,
    /// Keep an int8 scalar-quantised copy of the dense vectors (a quarter of the size)
    /// for HNSW search, re-scoring the best candidates with the originals; in RAM unless
    /// `index_on_disk`. On by default: the
    /// optimizer builds its graphs on the quantised copy, several times faster.
    #[serde(default = "yes")]
    pub quantize_int8: bool,
    /// Keep the search structures — the HNSW graph, the BM25 inverted index and the
    /// int8 copy — in memory-mapped files, paged in by the OS, rather than reading them
    /// into the process's memory when the collection opens. On by default: a process
    /// that opens a 1M-chunk collection to sync a few rows or answer a query starts in
    /// under a second instead of several, and its memory stays small, while a warm page
    /// cache answers searches as fast as private copies do (`crm-bench index`, query
    /// part, measured both ways at 1M chunks).
    #[serde(default = "yes")]
    pub index_on_disk: bool,
    /// Largest segment, in KB of vectors, that the optimizer makes by merging smaller
    /// ones; `None` keeps Qdrant's default (256 MB per indexing thread). On the embedded
    /// engine a build from empty ends as one segment whatever this cap (each segment
    /// adds a search per query); the cap applies to every later optimizer pass.
    #[serde(default)]
    pub max_segment_kb: Option<usize>,
    /// Embedded engine only: size of one write-ahead-log segment file; `None` keeps
    /// qdrant-edge's default (32 MiB). The engine never reads its WAL back, and closed
    /// segments are removed each time the collection is opened, so this bounds the log's
    /// disk use between opens to about this size times the number of segments written.
    #[serde(default)]
    pub wal_segment_bytes: Option<usize>,
    /// Embedded engine only: how many shards the collection is split into (1 to 64; 1
    /// by default). Each shard is a `qdrant-edge` shard of its own, in its own
    /// directory, holding the points whose ids route to it; a write is split by shard
    /// and the parts are written side by side (one shard is written by one thread), and
    /// a search asks every shard and merges. Sparse (BM25) scores use each shard's own
    /// IDF statistics, as on a Qdrant cluster: exact with one shard, within the sampling
    /// error of a random split with more, so more than one shard is for large
    /// collections on machines with cores to spare. Fixed when the collection is created.
    #[serde(default = "one")]
    pub shards: usize,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

fn no_payload_links() -> Option<usize> {
    Some(0)
}

impl CollectionSpec {
    /// A spec with `dense_dim` and the default storage choices: vectors, payloads and
    /// search structures in memory-mapped files, an int8 copy of the dense vectors,
    /// Qdrant's HNSW defaults without payload links.
    pub fn new(dense_dim: usize) -> Self {
        Self {
            dense_dim,
            dense_on_disk: true,
            payload_on_disk: true,
            index_on_disk: true,
            max_segment_kb: None,
            hnsw_m: None,
            hnsw_ef_construct: None,
            hnsw_payload_m: no_payload_links(),
            quantize_int8: true,
            wal_segment_bytes: None,
            shards: 1,
        }
    }

    pub(crate) fn describe(dense_dim: usize) -> String {
        format!(
            "dense vector \"dense\" of {dense_dim} dimensions (cosine) and sparse vector \"bm25\" (IDF)"
        )
    }
}

/// Serialises a `Duration` as (fractional) seconds.
mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(|err| {
            serde::de::Error::custom(format!(
                "timeout {secs} is not a valid number of seconds: {err}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted_in_debug() {
        let config = IndexConfig::server("http://localhost:6334", Some(ApiKey::new("s3cret")));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn config_reads_from_json_and_refuses_unknown_fields() {
        let config: IndexConfig = serde_json::from_str(
            r#"{"engine": {"kind": "server", "url": "http://q:6334", "timeout": 2.5}}"#,
        )
        .unwrap();
        assert_eq!(config.collection, DEFAULT_COLLECTION);
        assert_eq!(
            config.engine,
            EngineConfig::Server {
                url: "http://q:6334".into(),
                api_key: None,
                timeout: Duration::from_millis(2500)
            }
        );
        let err = serde_json::from_str::<IndexConfig>(
            r#"{"engine": {"kind": "embedded", "dir": "/x", "port": 1}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let err = serde_json::from_str::<IndexConfig>(
            r#"{"engine": {"kind": "server", "url": "http://q:6334", "timeout": -1}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("not a valid number of seconds"),
            "{err}"
        );
    }

    #[test]
    fn collection_names_are_checked() {
        for bad in ["", "../etc", "a/b", "crm chunks", &"x".repeat(201)] {
            let config = IndexConfig::embedded("/tmp").with_collection(bad);
            assert!(config.validate_collection().is_err(), "{bad:?}");
        }
        let config = IndexConfig::embedded("/tmp").with_collection("crm_chunks-2");
        assert!(config.validate_collection().is_ok());
    }
}
