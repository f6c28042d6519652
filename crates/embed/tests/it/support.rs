//! Shared helpers: real HTTP(S) servers on 127.0.0.1, and where the model and the Python
//! tools live.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// A server on 127.0.0.1 that lives as long as this value.
pub(crate) struct TestServer {
    pub(crate) url: String,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` over plain HTTP on a random port.
pub(crate) async fn serve(router: Router) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    TestServer {
        url: format!("http://{addr}"),
        task,
    }
}

/// Serves `router` over HTTPS with a freshly generated self-signed certificate.
pub(crate) async fn serve_tls(router: Router) -> TestServer {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = certified.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    // Both ring and aws-lc-rs are compiled into rustls here, so name the provider.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = TlsListener {
        tcp: listener,
        acceptor: TlsAcceptor::from(Arc::new(config)),
    };
    let task = tokio::spawn(async move {
        axum::serve(tls, router).await.unwrap();
    });
    TestServer {
        url: format!("https://{addr}"),
        task,
    }
}

struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            // A client that refuses our certificate fails here; keep serving others.
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub(crate) async fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `check` until it is true or `deadline` passes.
pub(crate) async fn wait_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
}

/// The all-MiniLM-L6-v2 directory: `$CRM_TEST_MODEL_DIR`, else the fetch script's
/// default. Panics with the command to run when it is missing.
pub(crate) fn model_dir() -> PathBuf {
    let dir = std::env::var_os("CRM_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/crm-substrate/models/all-MiniLM-L6-v2"));
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(
            dir.join(file).is_file(),
            "the test model is missing ({} not found): run `scripts/fetch-model.sh` first, or \
             point CRM_TEST_MODEL_DIR at a directory holding all-MiniLM-L6-v2",
            dir.join(file).display()
        );
    }
    dir
}

/// The Python venv made by `scripts/setup-python.sh`: `$CRM_PYTHON_VENV`, else its default.
/// Panics with the command to run when it is missing.
pub(crate) fn python_venv() -> PathBuf {
    let dir = std::env::var_os("CRM_PYTHON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/crm-substrate/venv"));
    assert!(
        dir.join("bin/python").is_file(),
        "the Python tools venv is missing ({} not found): run `scripts/setup-python.sh` first, \
         or point CRM_PYTHON_VENV at it",
        dir.join("bin/python").display()
    );
    dir
}

/// This crate's directory, as the test runner says at run time. Not `env!`: target
/// directories are shared between clones, and cargo reuses a test binary built in
/// another clone, with that clone's path compiled in, when the sources are the same.
pub(crate) fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The repository root (two levels above this crate).
pub(crate) fn repo_root() -> PathBuf {
    crate_dir().join("../..").canonicalize().unwrap()
}

/// The f32 GGUF of the test model that `scripts/setup-python.sh` writes next to it.
pub(crate) fn gguf_path() -> PathBuf {
    let path = std::env::var_os("CRM_TEST_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            model_dir()
                .parent()
                .unwrap()
                .join("all-MiniLM-L6-v2-f32.gguf")
        });
    assert!(
        path.is_file(),
        "the GGUF of the test model is missing ({} not found): run `scripts/setup-python.sh` \
         first, or point CRM_TEST_GGUF at it",
        path.display()
    );
    path
}

/// The reference sentences and their numpy embeddings.
pub(crate) fn minilm_reference() -> Vec<(String, Vec<f32>)> {
    let path = crate_dir().join("tests/fixtures/minilm_reference.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap().to_owned();
            let embedding = v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (text, embedding)
        })
        .collect()
}

/// Cosine similarity.
pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
