//! The `crm-bench` suites.
//!
//! Each suite measures one part of the project, side by side with a peer where there
//! is one, and returns [`Report`]s: a table for people and one JSON line of figures for
//! machines (`{"suite": .., "machine": {..}, "figures": {..}}`). Suites live in one
//! module each and are registered in [`Suite`]. Speed targets are checked here, never
//! by timed assertions in tests.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use crate::cli::Terminal;
use crate::settings::Settings;

pub mod embed;
pub mod fuzzy;
pub mod index;
pub mod mcp;
pub mod resolve;
pub mod store;

/// Every suite `crm-bench` can run.
#[derive(Debug, clap::Subcommand)]
pub enum Suite {
    /// Facts about this machine and build that every figure depends on.
    Machine,
    /// Synthetic CRM generation speed (rows/s; target: 1M people in under a minute).
    Generate(store::GenerateArgs),
    /// Keyset scan and rendering speed over a large CRM, beside raw-text and OFFSET paging.
    Scan(store::ScanArgs),
    /// Contract check, first migration and no-op re-run on a large CRM.
    Migrate(store::MigrateArgs),
    /// Entity resolution on a large synthetic CRM: quality against the ground truth, time,
    /// peak RSS, and the no-change re-run.
    Resolve(resolve::ResolveArgs),
    /// The fuzzy tier's client overhead and throughput against an instant chat server.
    Fuzzy(fuzzy::FuzzyArgs),
    /// MCP round trips over stdio: get_person, and search at 100k indexed chunks.
    Mcp(mcp::McpArgs),
    /// BM25 vs fastembed, the local dense model vs llama.cpp, the embeddings client vs raw
    /// server capacity, chunking time per MB.
    Embed(embed::EmbedArgs),
    /// Full build and incremental syncs of the index (crm-backfill, crm-sync) with an
    /// instant embedder, hybrid query latency, and the build with the in-process model.
    Index(index::IndexArgs),
}

impl Suite {
    /// Runs the suite.
    pub fn run(self, ctx: &BenchContext) -> anyhow::Result<Vec<Report>> {
        match self {
            Suite::Machine => Ok(vec![machine_report()]),
            Suite::Generate(args) => store::generate(ctx, &args),
            Suite::Scan(args) => store::scan(ctx, &args),
            Suite::Migrate(args) => store::migrate(ctx, &args),
            Suite::Resolve(args) => resolve::run(ctx, &args),
            Suite::Fuzzy(args) => fuzzy::run(ctx, &args),
            Suite::Embed(args) => embed::run(ctx, &args),
            Suite::Mcp(args) => mcp::run(ctx, &args),
            Suite::Index(args) => index::run(ctx, &args),
        }
    }
}

/// What every suite gets.
#[derive(Debug)]
pub struct BenchContext {
    /// Settings as the binaries would load them.
    pub settings: Settings,
    /// The process environment.
    pub env: std::collections::BTreeMap<String, String>,
    /// Progress output.
    pub terminal: Terminal,
    /// A scratch directory for databases, indexes and servers, kept until the run ends.
    pub work_dir: PathBuf,
}

/// One suite's result: a table and machine-readable figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// Suite name, as given on the command line.
    pub suite: String,
    /// Column headers of the table.
    pub headers: Vec<String>,
    /// Table rows, as text.
    pub rows: Vec<Vec<String>>,
    /// Figures for the JSON line; units belong in the key (`_per_sec`, `_ms`, `_bytes`).
    pub figures: Map<String, Value>,
}

impl Report {
    /// An empty report with these column headers.
    pub fn new(suite: &str, headers: &[&str]) -> Self {
        Self {
            suite: suite.to_owned(),
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            figures: Map::new(),
        }
    }

    /// Adds a table row.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Records a figure for the JSON line.
    pub fn figure(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    /// The table, aligned, as text.
    pub fn table(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |row: &[String], out: &mut String| {
            let cells: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = row.get(i).map(String::as_str).unwrap_or("");
                    format!("{cell:<width$}", width = widths[i])
                })
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | ").trim_end());
        };
        line(&self.headers, &mut out);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat((*w).max(3))).collect();
        let _ = writeln!(out, "| {} |", rule.join(" | "));
        for row in &self.rows {
            line(row, &mut out);
        }
        out
    }

    /// The JSON line: suite, machine facts, figures.
    pub fn json_line(&self) -> Value {
        json!({
            "suite": self.suite,
            "machine": machine_facts(),
            "figures": self.figures,
        })
    }
}

/// Facts about the machine and build.
pub fn machine_facts() -> Value {
    json!({
        "cpu": cpu_model(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_bytes": mem_total_bytes(),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "crate_version": env!("CARGO_PKG_VERSION"),
    })
}

fn machine_report() -> Report {
    let facts = machine_facts();
    let mut report = Report::new("machine", &["fact", "value"]);
    if let Value::Object(map) = &facts {
        for (key, value) in map {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            report.row([key.clone(), text]);
            report.figure(key, value.clone());
        }
    }
    report
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn mem_total_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Percentile `p` (0–100) of `samples`, by nearest rank; `None` when empty.
pub fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// `count / elapsed` per second, or 0 for an empty interval.
pub fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Milliseconds of a duration as a float, for figures.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The async runtime of a suite that drives the index or a server in-process: two
/// worker threads, as the machine the figures are reported for has two cores.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut r = Report::new("x", &["metric", "value"]);
        r.row(["rows/s", "12"]);
        r.row(["p50 ms", "1.5"]);
        let table = r.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines.iter().all(|l| l.starts_with("| ")));
        assert_eq!(lines[0].find("value"), lines[2].find("12"));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&mut s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&mut s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&mut s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&mut [], 50.0), None);
    }

    #[test]
    fn json_line_carries_suite_and_figures() {
        let mut r = Report::new("scan", &["metric"]);
        r.figure("rows_per_sec", 10.5);
        let line = r.json_line();
        assert_eq!(line["suite"], "scan");
        assert_eq!(line["figures"]["rows_per_sec"], 10.5);
        assert!(line["machine"]["cores"].as_u64().is_some());
    }
}
