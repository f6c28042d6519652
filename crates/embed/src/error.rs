//! The crate's error type.

use std::path::PathBuf;

use crate::http::HttpError;

/// Everything that can go wrong turning documents into vectors.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A configuration value is out of range.
    #[error("invalid embedding configuration: {what}")]
    InvalidConfig {
        /// What is wrong, naming the setting.
        what: String,
    },
    /// Talking to the embedding server failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The server's answer does not fit the request.
    #[error("{endpoint} returned an unusable embeddings response: {problem}")]
    BadResponse {
        /// The embeddings URL.
        endpoint: String,
        /// What is wrong with it.
        problem: String,
    },
    /// One vector of the answer is unusable.
    #[error(
        "{endpoint} returned a bad vector for input #{input_index} ({preview:?}): {problem}; \
         refusing to index it"
    )]
    BadVector {
        /// The embeddings URL (or `local` for the in-process model).
        endpoint: String,
        /// Index of the input in the caller's slice.
        input_index: usize,
        /// The start of that input.
        preview: String,
        /// What is wrong (wrong dimension, not finite, empty).
        problem: String,
    },
    /// A model file is missing or unreadable.
    #[error(
        "cannot load the model from {path}: {problem}; run scripts/fetch-model.sh or point the model directory setting at a sentence-transformers BERT model"
    )]
    ModelFiles {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        problem: String,
    },
    /// The tokenizer failed on an input.
    #[error("tokenizer failed on input #{input_index} ({preview:?}): {problem}")]
    Tokenize {
        /// Index of the input in the caller's slice.
        input_index: usize,
        /// The start of that input.
        preview: String,
        /// The tokenizer's message.
        problem: String,
    },
    /// The in-process model failed.
    #[error("the local model failed on a batch of {batch} input(s): {problem}")]
    Inference {
        /// Inputs in the batch.
        batch: usize,
        /// What went wrong.
        problem: String,
    },
    /// A blocking worker did not finish.
    #[error("an embedding worker thread failed: {0}")]
    Worker(String),
}

/// The first characters of an input, for error messages.
pub(crate) fn preview(text: &str) -> String {
    const CHARS: usize = 60;
    let mut out: String = text.chars().take(CHARS).collect();
    if text.chars().nth(CHARS).is_some() {
        out.push('…');
    }
    out
}
