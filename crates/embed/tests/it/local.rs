//! The in-process model against an independent numpy forward pass, and the `Embedder`
//! built on it. Needs the model: `scripts/fetch-model.sh`.

use embed::dense::{DenseEmbedder, LocalBertEmbedder, LocalModelConfig};
use embed::{Bm25Config, ChunkerConfig, EmbedError, Embedder, TokenCounter};

use crate::support::{cosine, minilm_reference, model_dir};

fn model() -> LocalBertEmbedder {
    LocalBertEmbedder::load(LocalModelConfig::new(model_dir())).unwrap()
}

#[tokio::test]
async fn matches_the_numpy_reference_in_one_padded_batch() {
    let model = model();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.max_seq_len(), 256);
    assert_eq!(model.model_id(), "all-MiniLM-L6-v2");
    let reference = minilm_reference();
    assert_eq!(reference.len(), 12);
    let texts: Vec<String> = reference.iter().map(|(t, _)| t.clone()).collect();
    // One call: the short and the 256-token inputs share batches, so padding and the
    // attention mask are exercised.
    let vectors = model.embed_documents(&texts).await.unwrap();
    for ((text, expected), got) in reference.iter().zip(&vectors) {
        let c = cosine(expected, got);
        assert!(c >= 0.9999, "cosine {c} for {text:?}");
        let norm: f32 = got.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

#[tokio::test]
async fn a_text_alone_and_in_a_batch_gets_the_same_vector() {
    let model = model();
    let reference = minilm_reference();
    for (text, _) in reference.iter().take(4) {
        let alone = model.embed_query(text).await.unwrap();
        let batch = model
            .embed_documents(&[text.clone(), reference[11].0.clone(), "x".to_owned()])
            .await
            .unwrap();
        let c = cosine(&alone, &batch[0]);
        assert!(c >= 0.99999, "cosine {c} for {text:?}");
    }
}

#[tokio::test]
async fn prefixes_change_the_input() {
    let mut config = LocalModelConfig::new(model_dir());
    config.query_prefix = "query: ".into();
    let prefixed = LocalBertEmbedder::load(config).unwrap();
    let plain = model();
    let a = prefixed.embed_query("custody").await.unwrap();
    let b = plain.embed_query("custody").await.unwrap();
    let c = plain.embed_query("query: custody").await.unwrap();
    assert!(cosine(&a, &b) < 0.999);
    assert!(cosine(&a, &c) > 0.99999);
    // Documents get no query prefix.
    let d = prefixed
        .embed_documents(&["custody".to_owned()])
        .await
        .unwrap();
    assert!(cosine(&d[0], &b) > 0.99999);
}

#[test]
fn missing_or_broken_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = LocalBertEmbedder::load(LocalModelConfig::new(dir.path())).unwrap_err();
    assert!(matches!(err, EmbedError::ModelFiles { .. }), "{err:?}");
    assert!(err.to_string().contains("fetch-model.sh"), "{err}");

    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": \"big\"}").unwrap();
    let err = LocalBertEmbedder::load(LocalModelConfig::new(dir.path())).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    std::fs::copy(
        model_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = LocalBertEmbedder::load(LocalModelConfig::new(dir.path())).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[tokio::test]
async fn the_embedder_chunks_embeds_and_fingerprints() {
    let chunker = ChunkerConfig {
        max_tokens: 1000,
        ..ChunkerConfig::default()
    };
    let embedder = Embedder::new(
        DenseEmbedder::Local(model()),
        chunker,
        Bm25Config::default(),
    )
    .unwrap();
    // Lowered to the model's window (256 minus [CLS] and [SEP]).
    assert_eq!(embedder.chunker().config().max_tokens, 254);
    let TokenCounter::Tokenizer { tokenizer, .. } = embedder.chunker().counter().clone() else {
        panic!("the local model's tokenizer counts tokens");
    };

    let body: String = (0..300)
        .map(|i| {
            format!("Meeting note {i}: discussed custody, mining and payments with the team. ")
        })
        .collect();
    let text = format!("Acme Custody\n{body}\n\nSecond paragraph about Lightning.");
    let chunks = embedder.chunk("Acme Custody", &text);
    assert!(chunks.len() > 10);
    for chunk in &chunks {
        let tokens = tokenizer.encode(chunk.text.as_str(), false).unwrap().len();
        assert!(tokens <= 254, "chunk {} has {tokens} tokens", chunk.index);
        assert!(chunk.text.starts_with("Acme Custody\n"));
    }
    let embedded = embedder.embed_chunks(chunks.clone()).await.unwrap();
    assert_eq!(embedded.len(), chunks.len());
    for e in &embedded {
        assert_eq!(e.dense.len(), 384);
        assert!(!e.sparse.is_empty());
    }
    let query = embedder
        .embed_query_vectors("custody payments")
        .await
        .unwrap();
    assert_eq!(query.dense.len(), 384);
    assert_eq!(query.sparse.values, vec![1.0; query.sparse.len()]);

    let fp = embedder.fingerprint().await.unwrap();
    assert_eq!(fp.dense.dimension, 384);
    assert_eq!(fp.dense.source, "local");
    assert_eq!(
        fp.dense.weights_sha256.as_deref(),
        Some("53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db")
    );
    assert_eq!(fp.chunker.counter, "tokenizer:all-MiniLM-L6-v2");
    assert_eq!(fp.bm25.k, 1.2);
    // Stable across loads; changed by any parameter.
    let again = Embedder::new(
        DenseEmbedder::Local(model()),
        chunker,
        Bm25Config::default(),
    )
    .unwrap()
    .fingerprint()
    .await
    .unwrap();
    assert_eq!(fp.hash(), again.hash());
    let round_trip: embed::Fingerprint = serde_json::from_str(&fp.canonical()).unwrap();
    assert_eq!(round_trip, fp);
    let other = Embedder::new(
        DenseEmbedder::Local(model()),
        chunker,
        Bm25Config {
            b: 0.5,
            ..Bm25Config::default()
        },
    )
    .unwrap()
    .fingerprint()
    .await
    .unwrap();
    assert_ne!(fp.hash(), other.hash());
}

/// candle-transformers' BERT on one padded, masked batch: an independent forward pass
/// (padding, attention mask, its own ops) to hold the packed encoder against.
fn padded_reference(texts: &[String]) -> Vec<Vec<f32>> {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};

    let dir = model_dir();
    let config: Config =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let vb = var_builder(&dir.join("model.safetensors"));
    let bert = BertModel::load(vb, &config).unwrap();
    let tokenizer = model().tokenizer().clone();
    let encoded: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            tokenizer
                .encode_fast(t.as_str(), true)
                .unwrap()
                .get_ids()
                .to_vec()
        })
        .collect();
    let width = encoded.iter().map(Vec::len).max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for seq in &encoded {
        ids.extend(
            seq.iter()
                .copied()
                .chain(std::iter::repeat_n(0, width - seq.len())),
        );
        mask.extend((0..width).map(|i| u32::from(i < seq.len())));
    }
    let ids = Tensor::from_vec(ids, (texts.len(), width), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (texts.len(), width), &Device::Cpu).unwrap();
    let hidden = bert
        .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    let mask = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let mean = hidden
        .broadcast_mul(&mask)
        .unwrap()
        .sum(1)
        .unwrap()
        .broadcast_div(&mask.sum(1).unwrap())
        .unwrap();
    mean.to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn var_builder(path: &std::path::Path) -> candle_nn::VarBuilder<'static> {
    candle_nn::VarBuilder::from_buffered_safetensors(
        std::fs::read(path).unwrap(),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

#[tokio::test]
async fn packed_batches_match_a_padded_masked_forward_pass() {
    // Lengths from one word to past the 256-token limit (truncated), in an order that
    // puts short and long inputs in the same packed batch, across batch boundaries.
    let words = [
        "custody",
        "lightning",
        "mining",
        "payments",
        "the",
        "fund",
        "met",
        "Acme",
        "über",
        "東京",
        "series",
        "A",
        "🚀",
        "board",
        "seat",
    ];
    let texts: Vec<String> = [1usize, 40, 3, 200, 9, 0, 17, 120, 2, 5, 260, 33, 70, 11]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            (0..n.max(1))
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let reference = padded_reference(&texts);

    let mut config = LocalModelConfig::new(model_dir());
    config.max_batch = 5;
    let packed = LocalBertEmbedder::load(config).unwrap();
    let got = packed.embed_documents(&texts).await.unwrap();
    assert_eq!(got.len(), texts.len());
    for ((text, expected), got) in texts.iter().zip(&reference).zip(&got) {
        let c = cosine(expected, got);
        assert!(c >= 0.99999, "cosine {c} for {text:?}");
        let worst = expected
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "largest component difference {worst} for {text:?}"
        );
    }
    // Every batch size gives the same vectors.
    for max_batch in [1, 14] {
        let mut config = LocalModelConfig::new(model_dir());
        config.max_batch = max_batch;
        let other = LocalBertEmbedder::load(config).unwrap();
        let again = other.embed_documents(&texts).await.unwrap();
        for (a, b) in again.iter().zip(&got) {
            assert!(cosine(a, b) >= 0.999_999, "batch {max_batch}");
        }
    }
}

#[test]
fn unsupported_architectures_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(model_dir().join(file), dir.path().join(file)).unwrap();
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model_dir().join("config.json")).unwrap()).unwrap();
    for (key, value, expected, file) in [
        (
            "hidden_act",
            serde_json::json!("swish"),
            "hidden_act \"swish\"",
            "config.json",
        ),
        (
            "num_attention_heads",
            serde_json::json!(5),
            "not a multiple",
            "config.json",
        ),
        (
            "position_embedding_type",
            serde_json::json!("relative_key"),
            "relative_key",
            "config.json",
        ),
        // The config and the weights disagree: the tensor is named.
        (
            "intermediate_size",
            serde_json::json!(1000),
            "intermediate.dense.weight",
            "model.safetensors",
        ),
    ] {
        let mut changed = config.clone();
        changed[key] = value;
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&changed).unwrap(),
        )
        .unwrap();
        let err = LocalBertEmbedder::load(LocalModelConfig::new(dir.path())).unwrap_err();
        assert!(matches!(err, EmbedError::ModelFiles { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(expected), "{key}: {message}");
        assert!(message.contains(file), "{key}: {message}");
    }
}
