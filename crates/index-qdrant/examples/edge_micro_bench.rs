//! A quick look at the embedded engine at scale: build speed, disk use, query latency
//! before and after the optimizer, reopen time. Not the project's benchmark (that is
//! `crm-bench index`); a measurement of qdrant-edge 0.7.2 through this crate's API.
//!
//! ```text
//! cargo run --profile bench -p index-qdrant --example edge_micro_bench -- \
//!     [POINTS] [DIM] [QUANTIZE_INT8 0|1] [PAYLOAD_M]
//! ```
//!
//! Synthetic data: unit dense vectors with a random direction, sparse vectors of ~30
//! Zipf-distributed tokens out of 50,000, ~600 bytes of text per chunk.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use index_qdrant::{
    ChunkPayload, ChunkPoint, CollectionSpec, Index, IndexConfig, SearchFilter, SearchRequest,
    SparseVector,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A small deterministic generator (SplitMix64), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn dense(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.unit() - 0.5).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    /// Roughly Zipfian token ids: small ids are common.
    fn token(&mut self) -> u32 {
        let u = self.unit().max(1e-6);
        ((50_000f32).powf(u) as u32).min(49_999)
    }

    fn sparse(&mut self, terms: usize) -> SparseVector {
        let mut pairs: Vec<(u32, f32)> = (0..terms)
            .map(|_| (self.token(), 0.2 + self.unit()))
            .collect();
        pairs.sort_by_key(|p| p.0);
        pairs.dedup_by_key(|p| p.0);
        SparseVector::new(
            pairs.iter().map(|p| p.0).collect(),
            pairs.iter().map(|p| p.1).collect(),
        )
    }
}

fn chunk(rng: &mut Rng, i: u64, dim: usize) -> ChunkPoint {
    let kinds = ["person", "organization", "meeting", "email", "deal"];
    let tables = [
        "people",
        "organizations",
        "interactions",
        "interactions",
        "deals",
    ];
    let k = (i % 5) as usize;
    let payload = ChunkPayload {
        source_table: tables[k].to_owned(),
        source_id: (i / 2) as i64,
        chunk_index: (i % 2) as u32,
        entity_id: Some(format!("person:{}", i / 7)),
        kind: kinds[k].to_owned(),
        title: format!("Row {i}"),
        text: "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(10),
        organization_id: Some((i % 1000) as i64),
        occurred_at: (k >= 2)
            .then(|| format!("2026-{:02}-{:02}T10:00:00Z", 1 + i % 12, 1 + i % 28)),
        updated_at: "2026-06-05T13:55:12Z".to_owned(),
        content_hash: format!("{i:064x}"),
        extra: Default::default(),
    };
    ChunkPoint::new(rng.dense(dim), rng.sparse(30), payload)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

async fn latencies(
    out: &mut impl Write,
    index: &Index,
    label: &str,
    dim: usize,
    grouped: bool,
    make: impl Fn(Vec<f32>, SparseVector) -> SearchRequest,
) -> Result<()> {
    let mut rng = Rng(7);
    for _ in 0..20 {
        index.search(&make(rng.dense(dim), rng.sparse(5))).await?;
    }
    let mut times = Vec::with_capacity(300);
    for _ in 0..300 {
        let request = make(rng.dense(dim), rng.sparse(5));
        let started = Instant::now();
        let hits = if grouped {
            index.search_grouped(&request).await?
        } else {
            index.search(&request).await?
        };
        times.push(started.elapsed());
        std::hint::black_box(hits);
    }
    times.sort();
    writeln!(
        out,
        "  {label:<34} p50 {:>8.3} ms   p99 {:>8.3} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    )?;
    Ok(())
}

async fn query_suite(out: &mut impl Write, index: &Index, dim: usize) -> Result<()> {
    latencies(out, index, "dense (limit 10)", dim, false, |d, _| {
        SearchRequest::dense(d, 10)
    })
    .await?;
    latencies(out, index, "sparse (limit 10)", dim, false, |_, s| {
        SearchRequest::sparse(s, 10)
    })
    .await?;
    latencies(
        out,
        index,
        "hybrid (limit 10, prefetch 100)",
        dim,
        false,
        |d, s| SearchRequest::hybrid(d, s, 10),
    )
    .await?;
    latencies(out, index, "hybrid grouped (10 rows)", dim, true, |d, s| {
        SearchRequest::hybrid(d, s, 10)
    })
    .await?;
    latencies(
        out,
        index,
        "hybrid, filter kind=email",
        dim,
        false,
        |d, s| {
            SearchRequest::hybrid(d, s, 10).with_filter(SearchFilter {
                kinds: vec!["email".into()],
                ..SearchFilter::default()
            })
        },
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let points: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dim: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(384);
    let quantize: u8 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(0);
    let payload_m: Option<usize> = args.next().map(|a| a.parse()).transpose()?;
    let spec = CollectionSpec {
        quantize_int8: quantize == 1,
        hnsw_payload_m: payload_m,
        ..CollectionSpec::new(dim)
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let dir = tempfile::tempdir()?;
    let config = IndexConfig::embedded(dir.path());
    writeln!(
        out,
        "qdrant-edge 0.7.2 through index-qdrant: {points} points, dim {dim}, int8 {}, payload_m {payload_m:?}",
        spec.quantize_int8
    )?;

    let index = Index::open(config.clone()).await?;
    index.ensure_collection(&spec, false).await?;
    let shard = index.embedded_path().ok_or("not embedded")?.to_path_buf();

    let mut rng = Rng(42);
    let call = 2_000u64;
    let started = Instant::now();
    let mut generating = Duration::ZERO;
    let mut i = 0;
    while i < points {
        let n = call.min(points - i);
        let t = Instant::now();
        let batch: Vec<ChunkPoint> = (i..i + n).map(|j| chunk(&mut rng, j, dim)).collect();
        generating += t.elapsed();
        index.upsert(batch).await?;
        i += n;
    }
    let build = started.elapsed() - generating;
    writeln!(
        out,
        "build: {:.1} s in upsert calls of {call} ({:.0} points/s; data generation excluded)",
        build.as_secs_f64(),
        points as f64 / build.as_secs_f64()
    )?;
    let info = index.info().await?;
    writeln!(
        out,
        "after build: {} points, {} segments, {} vectors in HNSW; wal {:.0} MiB, segments {:.0} MiB",
        info.points_count,
        info.segments_count,
        info.indexed_vectors_count,
        dir_size(&shard.join("wal")) as f64 / 1048576.0,
        dir_size(&shard.join("segments")) as f64 / 1048576.0
    )?;
    writeln!(out, "queries before optimize:")?;
    query_suite(&mut out, &index, dim).await?;

    let started = Instant::now();
    let outcome = index.optimize().await?;
    writeln!(
        out,
        "optimize: {:.1} s; segments {} -> {}, {} vectors in HNSW; wal {:.0} MiB, segments {:.0} MiB",
        started.elapsed().as_secs_f64(),
        outcome.segments_before,
        outcome.segments_after,
        outcome.indexed_vectors_count,
        dir_size(&shard.join("wal")) as f64 / 1048576.0,
        dir_size(&shard.join("segments")) as f64 / 1048576.0
    )?;
    writeln!(out, "queries after optimize:")?;
    query_suite(&mut out, &index, dim).await?;

    let started = Instant::now();
    let batch: Vec<ChunkPoint> = (0..1_000)
        .map(|j| chunk(&mut rng, j * points / 1_000, dim))
        .collect();
    index.upsert(batch).await?;
    writeln!(
        out,
        "re-upsert 1,000 existing points after optimize: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    )?;

    drop(index);
    let started = Instant::now();
    let index = Index::open(config).await?;
    let count = index.count(&SearchFilter::default()).await?;
    writeln!(
        out,
        "reopen + count: {:.0} ms ({count} points)",
        started.elapsed().as_secs_f64() * 1e3
    )?;
    Ok(())
}
