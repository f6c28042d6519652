//! The embedder the settings select: Spark Control's `/v1/embeddings` when
//! `spark_control.url` is set, else the in-process model from the local model directory.

use std::collections::BTreeMap;

use anyhow::Context as _;
use embed::dense::{
    DenseEmbedder, LocalBertEmbedder, LocalModelConfig, SparkEmbedder, SparkEmbedderConfig,
};
use embed::http::HttpClient;
use embed::{Bm25Config, ChunkerConfig, Embedder};

use crate::settings::Settings;

/// The dense model the settings select. Loading the local model reads ~90 MB: call this
/// once per process, outside an async task.
pub fn dense_from_settings(
    settings: &Settings,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<DenseEmbedder> {
    let spark = &settings.spark_control;
    if let Some(http) = spark.http_config() {
        let config = SparkEmbedderConfig {
            model: spark.embedding_model.clone(),
            max_batch_inputs: usize::try_from(spark.embed_batch_size).unwrap_or(usize::MAX),
            max_batch_chars: usize::try_from(spark.embed_batch_max_chars).unwrap_or(usize::MAX),
            max_input_chars: usize::try_from(spark.embed_max_input_chars).unwrap_or(usize::MAX),
            query_prefix: spark.query_prefix.clone(),
            document_prefix: spark.document_prefix.clone(),
            encoding_format: spark.embed_encoding,
            ..SparkEmbedderConfig::default()
        };
        let client = HttpClient::new(http)?;
        return Ok(DenseEmbedder::Remote(SparkEmbedder::new(client, config)?));
    }
    let dir = settings.local_model_dir(env);
    let mut config = LocalModelConfig::new(&dir);
    config.max_batch = usize::try_from(settings.embedding.local_batch_size.max(1)).unwrap_or(32);
    let model = LocalBertEmbedder::load(config)
        .with_context(|| format!("loading the local embedding model from {}", dir.display()))?;
    Ok(DenseEmbedder::Local(model))
}

/// Chunker, BM25 and the selected dense model together.
pub fn embedder_from_settings(
    settings: &Settings,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Embedder> {
    embedder_over(dense_from_settings(settings, env)?)
}

/// The indexing embedder over an already loaded dense model (chunking and BM25 as
/// [`embedder_from_settings`] sets them).
pub fn embedder_over(dense: DenseEmbedder) -> anyhow::Result<Embedder> {
    Ok(Embedder::new(
        dense,
        ChunkerConfig::default(),
        Bm25Config::default(),
    )?)
}
