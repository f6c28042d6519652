//! `crm-bench embed`: the embedding layer beside its peers, in one run.
//!
//! The texts are CRM documents rendered from a synthetic CRM (`crm_store::synthetic`).
//!
//! - **bm25**: Qdrant/bm25 document vectors, this crate vs Python fastembed 0.9.1
//!   `Bm25("Qdrant/bm25")` (through `scripts/python/bm25_reference.py`, timed inside
//!   Python around `embed` alone) on the same corpus: every document and query vector is
//!   compared (ids equal, values within 1e-6) and documents/s are put side by side.
//!   Target: 0 mismatches and at least 30× fastembed.
//! - **dense**: the in-process all-MiniLM-L6-v2 (candle) vs llama.cpp (xllamacpp's
//!   server, same model as f32 GGUF, as many threads as cores) on the same chunk texts, at
//!   batch sizes 1 and 32, with the largest cosine deviation between the two. llama.cpp is
//!   driven through this crate's OpenAI client, one request per batch. Target: at least
//!   1.0× llama.cpp.
//! - **spark**: the OpenAI-compatible client (batching, concurrency, parsing and checking
//!   every vector) against the instant embeddings server (`embed::testing`), beside the
//!   raw capacity of that server measured with a plain reqwest loop that sends the same
//!   request bodies with the same concurrency and only reads the answers. Target: at least
//!   95% of the raw capacity.
//! - **chunk**: chunking notes of 0.1, 1 and 4 MB with the model's tokenizer: time per MB
//!   stays flat when chunking is linear.
//!
//! The Python peers need `scripts/setup-python.sh` (venv, GGUF) and the model
//! `scripts/fetch-model.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use crm_store::render;
use crm_store::synthetic::{SyntheticConfig, generate};
use crm_store::{SourceTable, Store, StoreConfig};
use embed::dense::{
    DenseEmbedder, EncodingFormat, LocalBertEmbedder, LocalModelConfig, SparkEmbedder,
    SparkEmbedderConfig,
};
use embed::http::{HttpClient, HttpClientConfig};
use embed::testing::{INSTANT_MODEL, InstantEmbeddingServer, InstantServerConfig};
use embed::{Bm25Config, Bm25Encoder, ChunkerConfig, Embedder, SparseVector};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use super::{BenchContext, Report, per_sec};
use crate::settings::default_cache_dir;

/// Parts of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// BM25 vs fastembed.
    Bm25,
    /// Local model vs llama.cpp.
    Dense,
    /// OpenAI client vs raw server capacity.
    Spark,
    /// Chunking time per MB.
    Chunk,
}

/// Flags of `crm-bench embed`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// Documents in the corpus (rendered from a synthetic CRM).
    #[arg(long, default_value_t = 20_000)]
    pub docs: usize,
    /// Chunk texts for the dense comparison.
    #[arg(long, default_value_t = 256)]
    pub sentences: usize,
    /// Texts sent through the OpenAI client.
    #[arg(long, default_value_t = 20_000)]
    pub spark_texts: usize,
    /// Requests in flight for the client part.
    #[arg(long, default_value_t = 4)]
    pub spark_concurrency: usize,
    /// Parts to run, comma separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bm25,dense,spark,chunk"
    )]
    pub parts: Vec<Part>,
    /// Python of the venv made by scripts/setup-python.sh (default:
    /// $CRM_PYTHON_VENV/bin/python, else ~/.cache/crm-substrate/venv/bin/python).
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// The model as f32 GGUF for llama.cpp (default: all-MiniLM-L6-v2-f32.gguf beside the
    /// local model directory, where scripts/setup-python.sh writes it).
    #[arg(long, value_name = "PATH")]
    pub gguf: Option<PathBuf>,
    /// The project's scripts directory.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts"))]
    pub scripts: PathBuf,
    /// llama.cpp server slots, i.e. inputs it decodes together.
    #[arg(long, default_value_t = 1)]
    pub llama_parallel: usize,
}

/// Runs the suite.
pub fn run(ctx: &BenchContext, args: &EmbedArgs) -> anyhow::Result<Vec<Report>> {
    ensure!(
        args.docs > 0 && args.sentences > 0 && args.spark_texts > 0,
        "sizes must be at least 1"
    );
    let corpus = corpus(ctx, args.docs)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut report = Report::new(
        "embed",
        &["measure", "crm-substrate", "peer", "ratio", "target"],
    );
    report.figure("corpus_docs", corpus.len());
    report.figure(
        "corpus_mean_chars",
        corpus.iter().map(|t| t.chars().count()).sum::<usize>() / corpus.len().max(1),
    );
    let needs_model = args
        .parts
        .iter()
        .any(|p| matches!(p, Part::Dense | Part::Chunk));
    let model = if needs_model {
        let dir = ctx.settings.local_model_dir(&ctx.env);
        Some(
            LocalBertEmbedder::load(LocalModelConfig::new(&dir)).with_context(|| {
                format!(
                    "loading the local model from {} (run scripts/fetch-model.sh)",
                    dir.display()
                )
            })?,
        )
    } else {
        None
    };
    for part in &args.parts {
        match part {
            Part::Bm25 => bm25(ctx, args, &corpus, &mut report)?,
            Part::Dense => {
                if let Some(model) = &model {
                    dense(ctx, args, &runtime, model, &corpus, &mut report)?;
                }
            }
            Part::Spark => spark(args, &runtime, &corpus, &mut report)?,
            Part::Chunk => {
                if let Some(model) = &model {
                    chunk(model, &mut report)?;
                }
            }
        }
    }
    Ok(vec![report])
}

/// Document texts of a synthetic CRM, all tables, `n` of them.
fn corpus(ctx: &BenchContext, n: usize) -> anyhow::Result<Vec<String>> {
    let db = ctx.work_dir.join("embed-bench.db");
    if !db.exists() {
        let n = n as u64;
        let config = SyntheticConfig {
            people: n * 4 / 10,
            organizations: (n / 20).max(10),
            interactions: n / 2,
            deals: (n / 20).max(10),
            ..SyntheticConfig::default()
        };
        generate(&db, &config, &mut |_| {}).context("generating the benchmark CRM")?;
    }
    let store = Store::open(StoreConfig::new(&db))?;
    let conn = store.reader()?;
    let mut tables = Vec::new();
    for table in [
        SourceTable::Interactions,
        SourceTable::People,
        SourceTable::Organizations,
        SourceTable::Deals,
    ] {
        let mut texts = Vec::new();
        let mut after = None;
        loop {
            let page = render::render_changed(&conn, table, after, 1000)?;
            texts.extend(page.documents.into_iter().map(|d| d.text));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tables.push(texts);
    }
    // Interleave the tables so that any prefix is a realistic mix.
    let mut mixed = Vec::with_capacity(n);
    let longest = tables.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for table in &mut tables {
            if let Some(text) = table.get_mut(i) {
                mixed.push(std::mem::take(text));
            }
        }
    }
    mixed.truncate(n);
    ensure!(
        mixed.len() == n,
        "the synthetic CRM rendered {} documents, {n} wanted",
        mixed.len()
    );
    Ok(mixed)
}

fn python(ctx: &BenchContext, args: &EmbedArgs) -> anyhow::Result<PathBuf> {
    let path = match &args.python {
        Some(p) => p.clone(),
        None => match ctx.env.get("CRM_PYTHON_VENV").filter(|v| !v.is_empty()) {
            Some(venv) => Path::new(venv).join("bin/python"),
            None => default_cache_dir(&ctx.env).join("venv/bin/python"),
        },
    };
    ensure!(
        path.is_file(),
        "{} not found: run scripts/setup-python.sh (or pass --python)",
        path.display()
    );
    Ok(path)
}

#[derive(Deserialize)]
struct PythonVectors {
    document: SparseVector,
    query: SparseVector,
}

#[derive(Deserialize)]
struct PythonTiming {
    docs: usize,
    seconds: f64,
}

fn same(a: &SparseVector, b: &SparseVector) -> bool {
    a.indices == b.indices
        && a.values.len() == b.values.len()
        && a.values
            .iter()
            .zip(&b.values)
            .all(|(x, y)| (x - y).abs() <= 1e-6)
}

fn bm25(
    ctx: &BenchContext,
    args: &EmbedArgs,
    corpus: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    let encoder = Bm25Encoder::new(Bm25Config::default())?;
    // Best of three passes over the corpus, one thread.
    let mut best = Duration::MAX;
    let mut documents = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        documents = corpus
            .iter()
            .map(|t| encoder.document(t))
            .collect::<Vec<_>>();
        best = best.min(started.elapsed());
    }
    let ours = per_sec(corpus.len() as u64, best);

    let input = ctx.work_dir.join("bm25-corpus.jsonl");
    let output = ctx.work_dir.join("bm25-fastembed.jsonl");
    let mut lines = String::new();
    for text in corpus {
        lines.push_str(&serde_json::to_string(&json!({ "text": text }))?);
        lines.push('\n');
    }
    std::fs::write(&input, lines)?;
    let script = args.scripts.join("python/bm25_reference.py");
    let out = Command::new(python(ctx, args)?)
        .arg(&script)
        .arg("embed")
        .arg(&input)
        .arg(&output)
        .env("HF_HUB_OFFLINE", "1")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} failed ({})",
        script.display(),
        out.status
    );
    let timing: PythonTiming = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .rfind(|l| !l.is_empty())
            .unwrap_or_default(),
    )
    .context("reading fastembed's timing line")?;
    ensure!(
        timing.docs == corpus.len(),
        "fastembed embedded {} of {} documents",
        timing.docs,
        corpus.len()
    );
    let theirs = timing.docs as f64 / timing.seconds.max(f64::MIN_POSITIVE);

    let reference = std::fs::read_to_string(&output)?;
    let mut doc_mismatches = 0usize;
    let mut query_mismatches = 0usize;
    let mut compared = 0usize;
    for ((line, text), ours_doc) in reference.lines().zip(corpus).zip(&documents) {
        let theirs: PythonVectors = serde_json::from_str(line)?;
        doc_mismatches += usize::from(!same(ours_doc, &theirs.document));
        query_mismatches += usize::from(!same(&encoder.query(text), &theirs.query));
        compared += 1;
    }
    ensure!(
        compared == corpus.len(),
        "fastembed wrote {compared} of {} vectors",
        corpus.len()
    );
    let ratio = ours / theirs;
    report.row([
        "BM25 documents/s (1 thread)".to_owned(),
        format!("{ours:.0}"),
        format!("{theirs:.0} (fastembed 0.9.1)"),
        format!("{ratio:.1}x"),
        ">= 30x".to_owned(),
    ]);
    report.row([
        "BM25 vectors differing from fastembed (document / query)".to_owned(),
        format!("{doc_mismatches} / {query_mismatches} of {compared}"),
        "-".to_owned(),
        "-".to_owned(),
        "0".to_owned(),
    ]);
    report.figure("bm25_docs_per_sec", ours);
    report.figure("fastembed_docs_per_sec", theirs);
    report.figure("bm25_speed_ratio", ratio);
    report.figure("bm25_document_mismatches", doc_mismatches);
    report.figure("bm25_query_mismatches", query_mismatches);
    report.figure(
        "bm25_target_met",
        ratio >= 30.0 && doc_mismatches == 0 && query_mismatches == 0,
    );
    Ok(())
}

/// The llama.cpp server, stopped when dropped.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        // The child may have exited already; nothing else to do then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_llama(
    ctx: &BenchContext,
    args: &EmbedArgs,
    runtime: &tokio::runtime::Runtime,
    gguf: &Path,
) -> anyhow::Result<LlamaServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let script = args.scripts.join("python/serve_llama.py");
    let child = Command::new(python(ctx, args)?)
        .arg(&script)
        .args(["--model", &gguf.display().to_string()])
        .args([
            "--port",
            &port.to_string(),
            "--embedding",
            "--alias",
            "all-MiniLM-L6-v2",
        ])
        .args(["--threads", &threads.to_string()])
        .args(["--parallel", &args.llama_parallel.max(1).to_string()])
        .args(["--ctx", &(512 * args.llama_parallel.max(1)).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", script.display()))?;
    let mut server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let health = format!("{}/health", server.url);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = runtime.block_on(async {
            client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if ready {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "llama.cpp exited before becoming ready ({status}); try {} by hand",
                script.display()
            );
        }
        if Instant::now() > deadline {
            bail!("llama.cpp did not become ready at {health} within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(f64::MIN_POSITIVE)
}

fn dense(
    ctx: &BenchContext,
    args: &EmbedArgs,
    runtime: &tokio::runtime::Runtime,
    model: &LocalBertEmbedder,
    corpus: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    // Chunk texts as the indexer embeds them: the first chunk of each document.
    let embedder = Embedder::new(
        DenseEmbedder::Local(model.clone()),
        ChunkerConfig::default(),
        Bm25Config::default(),
    )?;
    let texts: Vec<String> = corpus
        .iter()
        .filter_map(|t| embedder.chunk("", t).into_iter().next().map(|c| c.text))
        .take(args.sentences)
        .collect();
    let tokens: usize = texts
        .iter()
        .map(|t| {
            model
                .tokenizer()
                .encode_fast(t.as_str(), true)
                .map_or(0, |e| e.len())
        })
        .sum();
    report.figure("dense_texts", texts.len());
    report.figure("dense_mean_tokens", tokens / texts.len().max(1));

    let gguf = match &args.gguf {
        Some(p) => p.clone(),
        None => ctx
            .settings
            .local_model_dir(&ctx.env)
            .parent()
            .map(|p| p.join("all-MiniLM-L6-v2-f32.gguf"))
            .unwrap_or_default(),
    };
    ensure!(
        gguf.is_file(),
        "{} not found: run scripts/setup-python.sh (or pass --gguf)",
        gguf.display()
    );

    let mut ours_vectors = Vec::new();
    let mut ours_rate = Vec::new();
    // Warm up, then time each batch size.
    model.embed_documents_blocking(&texts[..texts.len().min(8)])?;
    for batch in [1usize, 32] {
        let started = Instant::now();
        let mut vectors = Vec::with_capacity(texts.len());
        for group in texts.chunks(batch) {
            vectors.extend(model.embed_documents_blocking(group)?);
        }
        ours_rate.push(per_sec(texts.len() as u64, started.elapsed()));
        ours_vectors = vectors;
    }

    let server = start_llama(ctx, args, runtime, &gguf)?;
    let mut theirs_rate = Vec::new();
    let mut max_deviation: f64 = 0.0;
    for batch in [1usize, 32] {
        let mut http = HttpClientConfig::new(&server.url);
        http.max_concurrency = 1;
        http.request_timeout = Duration::from_secs(600);
        let mut config = SparkEmbedderConfig::new("all-MiniLM-L6-v2");
        config.max_batch_inputs = batch;
        config.max_input_chars = 100_000;
        let client = SparkEmbedder::new(HttpClient::new(http)?, config)?;
        runtime.block_on(client.embed_documents(&texts[..texts.len().min(8)]))?;
        let started = Instant::now();
        let vectors = runtime.block_on(client.embed_documents(&texts))?;
        theirs_rate.push(per_sec(texts.len() as u64, started.elapsed()));
        for (a, b) in vectors.iter().zip(&ours_vectors) {
            max_deviation = max_deviation.max(1.0 - cosine(a, b));
        }
    }
    drop(server);

    let mut met = true;
    for (i, batch) in [1usize, 32].into_iter().enumerate() {
        let ratio = ours_rate[i] / theirs_rate[i].max(f64::MIN_POSITIVE);
        met &= ratio >= 1.0;
        report.row([
            format!("dense sentences/s, batch {batch} (all-MiniLM-L6-v2, CPU)"),
            format!("{:.1} (candle)", ours_rate[i]),
            format!("{:.1} (llama.cpp)", theirs_rate[i]),
            format!("{ratio:.2}x"),
            ">= 1.0x".to_owned(),
        ]);
        report.figure(&format!("dense_per_sec_b{batch}"), ours_rate[i]);
        report.figure(&format!("llama_per_sec_b{batch}"), theirs_rate[i]);
        report.figure(&format!("dense_speed_ratio_b{batch}"), ratio);
    }
    report.row([
        "dense max cosine deviation vs llama.cpp".to_owned(),
        format!("{max_deviation:.2e}"),
        "-".to_owned(),
        "-".to_owned(),
        "<= 1e-4".to_owned(),
    ]);
    report.figure("dense_max_cosine_deviation", max_deviation);
    report.figure("dense_target_met", met && max_deviation <= 1e-4);
    Ok(())
}

fn spark(
    args: &EmbedArgs,
    runtime: &tokio::runtime::Runtime,
    corpus: &[String],
    report: &mut Report,
) -> anyhow::Result<()> {
    const DIM: usize = 384;
    let texts: Vec<String> = corpus
        .iter()
        .cycle()
        .take(args.spark_texts)
        .map(|t| t.chars().take(1000).collect())
        .collect();
    let concurrency = args.spark_concurrency.max(1);
    let config = SparkEmbedderConfig::new(INSTANT_MODEL);
    let batch = config.max_batch_inputs;

    // Raw capacity: the same request bodies, a plain reqwest loop, answers read not parsed.
    let server = InstantEmbeddingServer::start_background(InstantServerConfig::new(DIM))?;
    // The same bodies the client sends: its batches and its vector encoding.
    let encoding = match config.encoding_format {
        EncodingFormat::Base64 => Some("base64"),
        EncodingFormat::Float => None,
    };
    let bodies: Vec<Vec<u8>> = texts
        .chunks(batch)
        .map(|group| {
            let mut body = json!({"model": INSTANT_MODEL, "input": group});
            if let Some(e) = encoding {
                body["encoding_format"] = json!(e);
            }
            serde_json::to_vec(&body)
        })
        .collect::<Result<_, _>>()?;
    let url = format!("{}/v1/embeddings", server.url());
    let client = reqwest::Client::new();
    let raw_once = |bodies: &[Vec<u8>]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let bytes = runtime.block_on(async {
            futures::stream::iter(bodies.iter().cloned())
                .map(|body| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let response = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await?
                            .error_for_status()?;
                        Ok::<usize, reqwest::Error>(response.bytes().await?.len())
                    }
                })
                .buffer_unordered(concurrency)
                .fold(Ok::<usize, reqwest::Error>(0), |acc, r| async move {
                    Ok(acc? + r?)
                })
                .await
        })?;
        ensure!(bytes > 0, "the instant server answered nothing");
        Ok(started.elapsed())
    };
    raw_once(&bodies[..bodies.len().min(10)])?;
    let raw = raw_once(&bodies)?;
    let raw_rate = per_sec(texts.len() as u64, raw);

    let mut http = HttpClientConfig::new(server.url());
    http.max_concurrency = concurrency;
    let embedder = SparkEmbedder::new(HttpClient::new(http)?, config)?;
    runtime.block_on(embedder.embed_documents(&texts[..texts.len().min(batch * 10)]))?;
    let started = Instant::now();
    let vectors = runtime.block_on(embedder.embed_documents(&texts))?;
    let elapsed = started.elapsed();
    ensure!(
        vectors.len() == texts.len() && vectors.iter().all(|v| v.len() == DIM),
        "the client returned the wrong vectors"
    );
    let rate = per_sec(texts.len() as u64, elapsed);
    let ratio = rate / raw_rate.max(f64::MIN_POSITIVE);
    report.row([
        format!(
            "OpenAI client texts/s (batch {batch}, {concurrency} in flight, {} vectors, every one parsed and checked)",
            encoding.unwrap_or("float")
        ),
        format!("{rate:.0}"),
        format!("{raw_rate:.0} (raw reqwest loop, same bodies)"),
        format!("{:.1}%", ratio * 100.0),
        ">= 95%".to_owned(),
    ]);
    report.figure("spark_texts_per_sec", rate);
    report.figure("raw_texts_per_sec", raw_rate);
    report.figure("spark_capacity_ratio", ratio);
    report.figure("spark_target_met", ratio >= 0.95);
    Ok(())
}

fn chunk(model: &LocalBertEmbedder, report: &mut Report) -> anyhow::Result<()> {
    let embedder = Embedder::new(
        DenseEmbedder::Local(model.clone()),
        ChunkerConfig::default(),
        Bm25Config::default(),
    )?;
    let sentence = "Discussed the custody roadmap, multisig policies and Lightning liquidity with the founders of Acme. ";
    let mut per_mb = Vec::new();
    for megabytes in [0.1f64, 1.0, 4.0] {
        let size = (megabytes * 1_000_000.0) as usize;
        let mut note = String::with_capacity(size + sentence.len());
        let mut i = 0;
        while note.len() < size {
            note.push_str(sentence);
            i += 1;
            if i % 9 == 0 {
                note.push_str("\n\n");
            }
        }
        let started = Instant::now();
        let chunks = embedder.chunk("Board notes", &note);
        let elapsed = started.elapsed();
        ensure!(!chunks.is_empty(), "no chunks");
        let ms_per_mb = elapsed.as_secs_f64() * 1000.0 / megabytes;
        per_mb.push(ms_per_mb);
        report.row([
            format!("chunk a {megabytes} MB note (model tokenizer): ms per MB"),
            format!("{ms_per_mb:.0} ({} chunks)", chunks.len()),
            "-".to_owned(),
            "-".to_owned(),
            "flat (linear)".to_owned(),
        ]);
        report.figure(
            &format!("chunk_ms_per_mb_{}", (megabytes * 10.0) as u32),
            ms_per_mb,
        );
    }
    let growth = per_mb.last().copied().unwrap_or(0.0)
        / per_mb
            .first()
            .copied()
            .unwrap_or(1.0)
            .max(f64::MIN_POSITIVE);
    report.figure("chunk_ms_per_mb_growth_0_1_to_4", growth);
    Ok(())
}
