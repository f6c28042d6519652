//! The happy path of the OpenAI-compatible client against a real model server: llama.cpp
//! (through xllamacpp) serving the same MiniLM as the in-process model. Needs
//! `scripts/setup-python.sh`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use embed::dense::{LocalBertEmbedder, LocalModelConfig, SparkEmbedder, SparkEmbedderConfig};
use embed::http::{HttpClient, HttpClientConfig};

use crate::support::{
    cosine, gguf_path, minilm_reference, model_dir, python_venv, repo_root, wait_until,
};

/// The llama.cpp server; killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_llama() -> LlamaServer {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let child = Command::new(python_venv().join("bin/python"))
        .arg(repo_root().join("scripts/python/serve_llama.py"))
        .args(["--model", gguf_path().to_str().unwrap()])
        .args([
            "--port",
            &port.to_string(),
            "--embedding",
            "--alias",
            "all-MiniLM-L6-v2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let health = format!("{}/health", server.url);
    let http = reqwest::Client::new();
    let ready = wait_until(Duration::from_secs(120), || {
        let (http, health) = (http.clone(), health.clone());
        async move {
            http.get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    assert!(
        ready,
        "llama.cpp did not become healthy at {health} within 120 s"
    );
    server
}

#[tokio::test]
async fn llama_cpp_vectors_match_the_local_model() {
    let server = start_llama().await;
    let mut config = HttpClientConfig::new(&server.url);
    config.max_concurrency = 2;
    let http = HttpClient::new(config).unwrap();
    let mut spark_config = SparkEmbedderConfig::new("all-MiniLM-L6-v2");
    spark_config.max_batch_inputs = 4;
    // The reference set has a text beyond the model's 256 tokens; llama.cpp would refuse
    // it, so cut by characters as the client is meant to (the local model cuts by tokens:
    // compare that one text separately).
    spark_config.max_input_chars = 4000;
    let spark = SparkEmbedder::new(http, spark_config).unwrap();
    spark.verify_model().await.unwrap();
    let local = LocalBertEmbedder::load(LocalModelConfig::new(model_dir())).unwrap();

    // llama.cpp's WordPiece tokeniser does not decompose Hangul syllables the way
    // BERT's normaliser (NFD) does, so it tokenises Korean differently (checked below);
    // every other reference text is compared.
    let (hangul, texts): (Vec<String>, Vec<String>) = minilm_reference()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| t.len() < 1000)
        .partition(|t| t.chars().any(|c| ('\u{AC00}'..='\u{D7A3}').contains(&c)));
    assert_eq!((texts.len(), hangul.len()), (10, 1));
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/tokenize", server.url))
        .json(&serde_json::json!({"content": hangul[0], "add_special": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let llama_count = tokens["tokens"].as_array().unwrap().len();
    let ours = local
        .tokenizer()
        .encode(hangul[0].as_str(), true)
        .unwrap()
        .len();
    assert_ne!(
        llama_count, ours,
        "llama.cpp now tokenises Hangul like BERT: compare it too"
    );
    let remote = spark.embed_documents(&texts).await.unwrap();
    let mine = local.embed_documents(&texts).await.unwrap();
    assert_eq!(spark.known_dimension(), Some(384));
    for ((text, r), m) in texts.iter().zip(&remote).zip(&mine) {
        let c = cosine(r, m);
        assert!(c >= 0.9999, "cosine {c} for {text:?}");
    }
    let q = spark.embed_query("custody").await.unwrap();
    assert!(cosine(&q, &local.embed_query("custody").await.unwrap()) >= 0.9999);
}
