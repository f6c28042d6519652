//! `crm-embed`: chunks and vectors of given texts, as JSON lines, for debugging and for
//! comparing implementations.

use std::io::BufRead as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use crm_substrate::cli::{self, CommonArgs, Context};
use crm_substrate::embedding::embedder_from_settings;
use embed::Embedder;
use serde_json::{Value, json};

/// Print the chunks of texts and, on request, their sparse (BM25) and dense vectors, one
/// JSON object per text, with the dense model's id and the index fingerprint.
///
/// Texts come from the arguments, or one per line on standard input when there are none.
/// The dense model is the one the settings select: Spark Control when
/// spark_control.url / SPARK_CONTROL_URL is set, else the local model
/// (embedding.local_model_dir / CRM_MODEL_DIR; fetch it with scripts/fetch-model.sh).
/// Each line looks like
/// {"input": 0, "model": "...", "fingerprint": "<sha256>", "chunks": [{"index": 0, "text": "...",
/// "sparse": {"indices": [...], "values": [...]}, "dense": [...]}], "sparse_query": {...},
/// "dense_query": [...]}, with the optional fields only when asked for.
#[derive(Debug, Parser)]
#[command(name = "crm-embed", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Texts to embed; none means one text per line of standard input.
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,

    /// Title repeated as context in each chunk (as the indexer does with a row's title).
    #[arg(long, default_value = "")]
    title: String,

    /// BM25 vectors: `document` for each chunk (what the index stores), `query` for the
    /// whole text (what a search sends).
    #[arg(long, value_enum, value_name = "KIND")]
    sparse: Option<SparseKind>,

    /// Dense vector of each chunk (document prefix).
    #[arg(long)]
    dense: bool,

    /// Dense vector of the whole text as a search query (query prefix).
    #[arg(long)]
    dense_query: bool,

    /// Print the full fingerprint (model, dimension, prefixes, BM25, chunking) as one
    /// JSON line and exit.
    #[arg(long, conflicts_with_all = ["texts", "sparse", "dense", "dense_query"])]
    fingerprint: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SparseKind {
    Document,
    Query,
}

fn main() -> ExitCode {
    cli::main(|| {
        let args = Args::parse();
        let ctx = Context::init(&args.common, Vec::new())?;
        let embedder = embedder_from_settings(&ctx.settings, &ctx.env)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run(&args, &embedder))?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn run(args: &Args, embedder: &Embedder) -> anyhow::Result<()> {
    let fingerprint = embedder
        .fingerprint()
        .await
        .context("computing the embedder's fingerprint")?;
    if args.fingerprint {
        let mut line = serde_json::to_value(&fingerprint)?;
        if let Value::Object(map) = &mut line {
            map.insert("hash".to_owned(), json!(fingerprint.hash()));
        }
        return cli::print_json_line(&line);
    }
    let hash = fingerprint.hash();
    let mut out = std::io::stdout().lock();
    if args.texts.is_empty() {
        let stdin = std::io::stdin().lock();
        for (i, line) in stdin.lines().enumerate() {
            let text = line.with_context(|| format!("reading line {} of standard input", i + 1))?;
            write_line(&mut out, &describe(args, embedder, &hash, i, &text).await?)?;
        }
    } else {
        for (i, text) in args.texts.iter().enumerate() {
            write_line(&mut out, &describe(args, embedder, &hash, i, text).await?)?;
        }
    }
    Ok(())
}

fn write_line(out: &mut impl std::io::Write, value: &Value) -> anyhow::Result<()> {
    // Serialise first: serde_json hides an io::Error from the error chain, and a broken
    // pipe must stay recognisable as one.
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// The JSON object of one text.
async fn describe(
    args: &Args,
    embedder: &Embedder,
    fingerprint: &str,
    input: usize,
    text: &str,
) -> anyhow::Result<Value> {
    let chunks = embedder.chunk(&args.title, text);
    let dense = if args.dense && !chunks.is_empty() {
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        embedder
            .embed_documents(&texts)
            .await
            .with_context(|| format!("embedding the chunks of input {input}"))?
    } else {
        Vec::new()
    };
    let chunk_values: Vec<Value> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut value = json!({"index": chunk.index, "text": chunk.text});
            if args.sparse == Some(SparseKind::Document) {
                value["sparse"] = json!(embedder.bm25().document(&chunk.text));
            }
            if let Some(vector) = dense.get(i) {
                value["dense"] = json!(vector);
            }
            value
        })
        .collect();
    let mut line = json!({
        "input": input,
        "model": embedder.model_id(),
        "fingerprint": fingerprint,
        "chunks": chunk_values,
    });
    if args.sparse == Some(SparseKind::Query) {
        line["sparse_query"] = json!(embedder.bm25().query(text));
    }
    if args.dense_query {
        if text.trim().is_empty() {
            line["dense_query"] = Value::Null;
        } else {
            let vector = embedder
                .embed_query(text)
                .await
                .with_context(|| format!("embedding input {input} as a query"))?;
            line["dense_query"] = json!(vector);
        }
    }
    Ok(line)
}
