//! Dense embeddings from an OpenAI-compatible `POST /v1/embeddings` (Spark Control, vLLM,
//! llama.cpp, TEI, OpenAI itself).
//!
//! Inputs are prefixed (query or document prefix), cut to `max_input_chars`, grouped into
//! requests of at most `max_batch_inputs` inputs and `max_batch_chars` characters, and
//! sent with as many requests in flight as the [`HttpClient`] allows, retried by its
//! policy. Answers are put back in input order by their `index` fields. The first vector
//! fixes the dimension (unless one is configured); every vector is checked — wrong size,
//! empty, `null`, not finite — and a bad one fails the call with the input's position and
//! start, so nothing broken reaches the index.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::EmbedError;
use crate::error::preview;
use crate::http::HttpClient;

/// How the server is asked to encode vectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON arrays of numbers (every server supports it; `encoding_format` is not sent).
    Float,
    /// Base64 of little-endian f32s: a quarter of the bytes, much less parsing (what
    /// OpenAI's own clients ask for). A server that refuses it with 400 or 422 is asked
    /// again for numbers, and only for numbers from then on; an answer in numbers is
    /// accepted either way.
    #[default]
    Base64,
}

/// Settings of the embeddings client (the connection itself is the [`HttpClient`]'s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparkEmbedderConfig {
    /// Model name as the server knows it (see `GET /v1/models`).
    pub model: String,
    /// Most inputs in one request.
    pub max_batch_inputs: usize,
    /// Most characters (all inputs together) in one request; a longer single input goes
    /// alone.
    pub max_batch_chars: usize,
    /// Inputs (prefix included) longer than this many characters are cut to it, at the
    /// last whitespace when one is within the final 64 characters, so that the server
    /// never rejects an input as too long. About 4 characters make a token in English;
    /// the default suits a 512-token model.
    pub max_input_chars: usize,
    /// Prepended to queries (e5: `"query: "`; Qwen3-Embedding: an instruction line).
    pub query_prefix: String,
    /// Prepended to documents (e5: `"passage: "`).
    pub document_prefix: String,
    /// The dimension the index expects; `None` takes it from the first answer.
    pub expected_dimension: Option<usize>,
    /// Vector encoding to ask for.
    pub encoding_format: EncodingFormat,
}

impl Default for SparkEmbedderConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            max_batch_inputs: 64,
            max_batch_chars: 200_000,
            max_input_chars: 2_000,
            query_prefix: String::new(),
            document_prefix: String::new(),
            expected_dimension: None,
            encoding_format: EncodingFormat::Base64,
        }
    }
}

impl SparkEmbedderConfig {
    /// Defaults, for `model`.
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), EmbedError> {
        let bad = |what: &str| {
            Err(EmbedError::InvalidConfig {
                what: what.to_owned(),
            })
        };
        if self.model.trim().is_empty() {
            return bad("the embedding model name is empty");
        }
        if self.max_batch_inputs == 0 {
            return bad("max_batch_inputs must be at least 1");
        }
        if self.max_batch_chars == 0 {
            return bad("max_batch_chars must be at least 1");
        }
        let prefix = self
            .query_prefix
            .chars()
            .count()
            .max(self.document_prefix.chars().count());
        if self.max_input_chars <= prefix {
            return bad("max_input_chars must be larger than the query and document prefixes");
        }
        if self.expected_dimension == Some(0) {
            return bad("expected_dimension must be at least 1");
        }
        Ok(())
    }
}

/// Which prefix an input gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Query,
    Document,
}

/// The client for one embedding model behind an OpenAI-compatible server.
pub struct SparkEmbedder {
    http: HttpClient,
    config: SparkEmbedderConfig,
    /// 0 until the first vector is seen.
    dimension: AtomicUsize,
    /// The server refused `encoding_format: base64`: ask for numbers.
    base64_refused: AtomicBool,
    endpoint: String,
}

/// A clone shares the connection pool and starts from what this client has learned (the
/// dimension, whether the server refuses base64); from then on each learns on its own.
impl Clone for SparkEmbedder {
    fn clone(&self) -> Self {
        Self {
            http: self.http.clone(),
            config: self.config.clone(),
            dimension: AtomicUsize::new(self.dimension.load(Ordering::Relaxed)),
            base64_refused: AtomicBool::new(self.base64_refused.load(Ordering::Relaxed)),
            endpoint: self.endpoint.clone(),
        }
    }
}

impl fmt::Debug for SparkEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SparkEmbedder")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [Cow<'a, str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'static str>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Components,
}

/// A vector as the server sent it. `null` components become NaN here and are rejected
/// by the check that follows, with the input they belong to.
struct Components(Vec<f32>);

impl<'de> Deserialize<'de> for Components {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ComponentsVisitor;
        impl<'de> Visitor<'de> for ComponentsVisitor {
            type Value = Components;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers or a base64 string of f32s")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Components, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1024));
                while let Some(value) = seq.next_element::<Option<f64>>()? {
                    // Out-of-range numbers become infinite, null becomes NaN: both fail
                    // the finiteness check with the input's position.
                    out.push(value.map_or(f32::NAN, |v| v as f32));
                }
                Ok(Components(out))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Components, E> {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| E::custom(format!("embedding is not valid base64: {e}")))?;
                if bytes.len() % 4 != 0 {
                    return Err(E::custom(format!(
                        "base64 embedding has {} bytes, not a whole number of f32s",
                        bytes.len()
                    )));
                }
                Ok(Components(
                    bytes
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                ))
            }
        }
        deserializer.deserialize_any(ComponentsVisitor)
    }
}

impl SparkEmbedder {
    /// A client for `config.model` through `http`.
    pub fn new(http: HttpClient, config: SparkEmbedderConfig) -> Result<Self, EmbedError> {
        config.validate()?;
        let endpoint = http.endpoint("v1/embeddings").to_string();
        Ok(Self {
            dimension: AtomicUsize::new(config.expected_dimension.unwrap_or(0)),
            base64_refused: AtomicBool::new(false),
            http,
            config,
            endpoint,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SparkEmbedderConfig {
        &self.config
    }

    /// The model name.
    pub fn model_id(&self) -> &str {
        &self.config.model
    }

    /// The dimension, once known (configured or seen in an answer).
    pub fn known_dimension(&self) -> Option<usize> {
        match self.dimension.load(Ordering::SeqCst) {
            0 => None,
            d => Some(d),
        }
    }

    /// Checks that the server lists the model; the error shows what it offers.
    pub async fn verify_model(&self) -> Result<(), EmbedError> {
        let offered = self.http.list_models().await?;
        self.http
            .ensure_model_offered(&self.config.model, &offered)?;
        Ok(())
    }

    /// The dimension: known, or found by embedding a short probe text.
    pub async fn dimension(&self) -> Result<usize, EmbedError> {
        if let Some(d) = self.known_dimension() {
            return Ok(d);
        }
        let probe = self
            .embed(&["dimension probe".to_owned()], Role::Query)
            .await?;
        Ok(probe.first().map_or(0, Vec::len))
    }

    /// Vectors of documents, in input order.
    pub async fn embed_documents(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed(texts, Role::Document).await
    }

    /// The vector of a query.
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed(&[text.to_owned()], Role::Query).await?;
        vectors.pop().ok_or_else(|| EmbedError::BadResponse {
            endpoint: self.endpoint.clone(),
            problem: "no vector for the query".to_owned(),
        })
    }

    /// The text sent for an input: prefix + text, cut to `max_input_chars`.
    pub(crate) fn prepare<'a>(&self, text: &'a str, role: Role) -> Cow<'a, str> {
        let prefix = match role {
            Role::Query => &self.config.query_prefix,
            Role::Document => &self.config.document_prefix,
        };
        let limit = self.config.max_input_chars;
        let text_limit = limit.saturating_sub(prefix.chars().count());
        let cut = truncate_chars(text, text_limit);
        if prefix.is_empty() {
            Cow::Borrowed(cut)
        } else {
            Cow::Owned(format!("{prefix}{cut}"))
        }
    }

    async fn embed(&self, texts: &[String], role: Role) -> Result<Vec<Vec<f32>>, EmbedError> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EmbedError::BadVector {
                endpoint: self.endpoint.clone(),
                input_index: i,
                preview: preview(&texts[i]),
                problem: "the input is empty; there is nothing to embed".to_owned(),
            });
        }
        let inputs: Vec<Cow<'_, str>> = texts.iter().map(|t| self.prepare(t, role)).collect();
        let batches = self.batches(&inputs);
        let concurrency = self.http.config().max_concurrency.max(1);
        let results: Vec<Vec<Vec<f32>>> = futures::stream::iter(batches)
            .map(|range| self.send_batch(texts, &inputs, range))
            .buffered(concurrency)
            .try_collect()
            .await?;
        Ok(results.into_iter().flatten().collect())
    }

    /// Consecutive ranges of inputs within the batch limits.
    fn batches(&self, inputs: &[Cow<'_, str>]) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut chars = 0;
        for (i, input) in inputs.iter().enumerate() {
            let n = input.len();
            let full = i - start >= self.config.max_batch_inputs
                || (i > start && chars + n > self.config.max_batch_chars);
            if full {
                out.push(start..i);
                start = i;
                chars = 0;
            }
            chars += n;
        }
        if start < inputs.len() {
            out.push(start..inputs.len());
        }
        out
    }

    async fn send_batch(
        &self,
        texts: &[String],
        inputs: &[Cow<'_, str>],
        range: std::ops::Range<usize>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let batch = &inputs[range.clone()];
        let base64 = self.config.encoding_format == EncodingFormat::Base64
            && !self.base64_refused.load(Ordering::Relaxed);
        let answer = match self.post(batch, base64).await {
            // Some OpenAI-compatible servers refuse `encoding_format`: ask once more for
            // numbers, and keep asking for numbers when that works.
            Err(refusal) if base64 && matches!(refusal.status(), Some(400 | 422)) => {
                let retry = self.post(batch, false).await;
                if retry.is_ok() && !self.base64_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        %refusal,
                        "the embeddings server refuses encoding_format=base64; \
                         asking for plain numbers from now on \
                         (set spark_control.embed_encoding = \"float\" to skip the probe)"
                    );
                }
                retry
            }
            other => other,
        };
        let response = match answer {
            Ok(response) => response,
            Err(err) => {
                let err = self.http.explain_model_error(&self.config.model, err).await;
                return Err(err.into());
            }
        };
        self.place(texts, range, response)
    }

    async fn post(
        &self,
        batch: &[Cow<'_, str>],
        base64: bool,
    ) -> Result<EmbeddingsResponse, crate::http::HttpError> {
        let request = EmbeddingsRequest {
            model: &self.config.model,
            input: batch,
            encoding_format: base64.then_some("base64"),
        };
        self.http.post_json("v1/embeddings", &request).await
    }

    /// Puts the answer's vectors in input order and checks each.
    fn place(
        &self,
        texts: &[String],
        range: std::ops::Range<usize>,
        response: EmbeddingsResponse,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let n = range.len();
        let bad = |problem: String| EmbedError::BadResponse {
            endpoint: self.endpoint.clone(),
            problem,
        };
        if response.data.len() != n {
            return Err(bad(format!(
                "asked for {n} vectors (inputs #{}..#{}), got {}",
                range.start,
                range.end - 1,
                response.data.len()
            )));
        }
        let positional = response.data.iter().all(|item| item.index.is_none());
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; n];
        for (position, item) in response.data.into_iter().enumerate() {
            let at = match (positional, item.index) {
                (true, _) => position,
                (false, Some(index)) if index < n => index,
                (false, Some(index)) => {
                    return Err(bad(format!(
                        "answer index {index} is out of range for a batch of {n}"
                    )));
                }
                (false, None) => {
                    return Err(bad("some answers have an index and some do not".to_owned()));
                }
            };
            let slot = &mut slots[at];
            if slot.is_some() {
                return Err(bad(format!("answer index {at} appears twice")));
            }
            let input_index = range.start + at;
            self.check(input_index, &texts[input_index], &item.embedding.0)?;
            *slot = Some(item.embedding.0);
        }
        // Every slot is filled: n answers, distinct indices below n.
        Ok(slots.into_iter().flatten().collect())
    }

    fn check(&self, input_index: usize, text: &str, vector: &[f32]) -> Result<(), EmbedError> {
        let fail = |problem: String| EmbedError::BadVector {
            endpoint: self.endpoint.clone(),
            input_index,
            preview: preview(text),
            problem,
        };
        if vector.is_empty() {
            return Err(fail("the vector is empty".to_owned()));
        }
        if let Some(k) = vector.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!(
                "component {k} is null, NaN or infinite ({})",
                vector[k]
            )));
        }
        let dim = vector.len();
        match self
            .dimension
            .compare_exchange(0, dim, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                tracing::debug!(dimension = dim, model = %self.config.model, "embedding dimension discovered");
                Ok(())
            }
            Err(known) if known == dim => Ok(()),
            Err(known) => Err(fail(format!(
                "the vector has {dim} components, expected {known}"
            ))),
        }
    }
}

/// `text` cut to at most `limit` characters, at the last whitespace when one lies within
/// the final 64 characters of the cut.
pub(crate) fn truncate_chars(text: &str, limit: usize) -> &str {
    let Some((cut, _)) = text.char_indices().nth(limit) else {
        return text;
    };
    let head = &text[..cut];
    let window_start = head.char_indices().rev().nth(63).map_or(0, |(i, _)| i);
    match head[window_start..].rfind(char::is_whitespace) {
        Some(ws) if window_start + ws > 0 => head[..window_start + ws].trim_end(),
        _ => head,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HttpClientConfig;

    fn embedder(config: SparkEmbedderConfig) -> SparkEmbedder {
        let http = HttpClient::new(HttpClientConfig::new("http://127.0.0.1:9")).unwrap();
        SparkEmbedder::new(http, config).unwrap()
    }

    #[test]
    fn truncation_cuts_at_whitespace_near_the_limit() {
        assert_eq!(truncate_chars("short", 10), "short");
        assert_eq!(truncate_chars("hello world again", 13), "hello world");
        assert_eq!(truncate_chars(&"x".repeat(100), 10), "x".repeat(10));
        let long_word = format!("a {}", "b".repeat(200));
        assert_eq!(truncate_chars(&long_word, 100).chars().count(), 100);
        assert_eq!(truncate_chars("ééééé", 3), "ééé");
    }

    #[test]
    fn prefixes_and_the_limit_apply_together() {
        let mut config = SparkEmbedderConfig::new("m");
        config.query_prefix = "query: ".into();
        config.document_prefix = "passage: ".into();
        config.max_input_chars = 20;
        let e = embedder(config);
        assert_eq!(e.prepare("who", Role::Query), "query: who");
        let long = "word ".repeat(10);
        let doc = e.prepare(&long, Role::Document);
        assert!(doc.starts_with("passage: "));
        assert!(doc.chars().count() <= 20, "{doc:?}");
    }

    #[test]
    fn batches_respect_both_limits() {
        let mut config = SparkEmbedderConfig::new("m");
        config.max_batch_inputs = 3;
        config.max_batch_chars = 10;
        let e = embedder(config);
        let inputs: Vec<Cow<'_, str>> = ["aaaa", "bbbb", "cc", "d", "e", "ffffffffffffffff", "g"]
            .into_iter()
            .map(Cow::Borrowed)
            .collect();
        assert_eq!(e.batches(&inputs), [0..3, 3..5, 5..6, 6..7]);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let http = HttpClient::new(HttpClientConfig::new("http://127.0.0.1:9")).unwrap();
        for config in [
            SparkEmbedderConfig::default(),
            SparkEmbedderConfig {
                max_batch_inputs: 0,
                ..SparkEmbedderConfig::new("m")
            },
            SparkEmbedderConfig {
                max_input_chars: 3,
                query_prefix: "query: ".into(),
                ..SparkEmbedderConfig::new("m")
            },
            SparkEmbedderConfig {
                expected_dimension: Some(0),
                ..SparkEmbedderConfig::new("m")
            },
        ] {
            assert!(SparkEmbedder::new(http.clone(), config).is_err());
        }
    }

    #[test]
    fn components_accept_numbers_nulls_and_base64() {
        let c: Components = serde_json::from_str("[1, -2.5, null, 1e300]").unwrap();
        assert_eq!(c.0[..2], [1.0, -2.5]);
        assert!(c.0[2].is_nan());
        assert!(c.0[3].is_infinite());
        let c: Components = serde_json::from_str("\"AACAPwAAAEA=\"").unwrap();
        assert_eq!(c.0, [1.0, 2.0]);
        assert!(serde_json::from_str::<Components>("\"AACA\"").is_err());
        assert!(serde_json::from_str::<Components>("\"%%%\"").is_err());
        assert!(serde_json::from_str::<Components>("{}").is_err());
    }
}
