//! Documents to vectors.
//!
//! Will hold the chunker, the sparse BM25 encoder that is byte-for-byte compatible with
//! fastembed's `Qdrant/bm25`, the dense embedders (an OpenAI-compatible `/v1/embeddings`
//! client and an in-process BERT model through candle), and the shared HTTP client
//! builder and retry policy.
