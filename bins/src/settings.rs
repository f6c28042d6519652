//! The one typed `Settings` of every binary, and the one loader.
//!
//! Precedence, lowest to highest (DESIGN §6):
//! 1. built-in defaults ([`Settings::default`]);
//! 2. a TOML or JSON file: `--config`, else `$CRM_SUBSTRATE_CONFIG`, else
//!    `/data/config.json` when present (the file the StartOS "Configure" action writes);
//! 3. a `.env` file (`--env-file`, else `./.env` when present), whose values never
//!    override the real environment;
//! 4. environment variables (the table in [`env`]);
//! 5. command-line flags.
//!
//! Every layer is checked against the same schema: an unknown key in the file is an
//! error that names the key. Secrets are wrapped in [`Secret`], whose `Debug` and
//! `Display` print `***`, so they cannot leak into logs or error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Names of the environment variables the binaries read, and the setting each sets.
pub mod env {
    /// Path of the settings file (TOML or JSON).
    pub const CONFIG: &str = "CRM_SUBSTRATE_CONFIG";
    /// The CRM's SQLite file.
    pub const DB_PATH: &str = "CRM_DB_PATH";
    /// Base URL of Spark Control's OpenAI-compatible API (e.g. `https://spark.local:8443`).
    pub const SPARK_CONTROL_URL: &str = "SPARK_CONTROL_URL";
    /// Bearer key for Spark Control.
    pub const SPARK_CONTROL_API_KEY: &str = "SPARK_CONTROL_API_KEY";
    /// `false` accepts Spark Control's self-signed certificate.
    pub const SPARK_CONTROL_VERIFY_TLS: &str = "SPARK_CONTROL_VERIFY_TLS";
    /// Embedding model name on Spark Control.
    pub const SPARK_EMBEDDING_MODEL: &str = "SPARK_EMBEDDING_MODEL";
    /// Chat model name on Spark Control (the fuzzy tier).
    pub const SPARK_CHAT_MODEL: &str = "SPARK_CHAT_MODEL";
    /// Qdrant server gRPC URL; unset means the embedded engine.
    pub const QDRANT_URL: &str = "QDRANT_URL";
    /// Qdrant API key.
    pub const QDRANT_API_KEY: &str = "QDRANT_API_KEY";
    /// Collection name.
    pub const QDRANT_COLLECTION: &str = "QDRANT_COLLECTION";
    /// Directory of the embedded index.
    pub const INDEX_DIR: &str = "CRM_INDEX_DIR";
    /// Directory of the in-process embedding model.
    pub const MODEL_DIR: &str = "CRM_MODEL_DIR";
    /// Seconds between incremental syncs in `crm-sync --watch`.
    pub const SYNC_INTERVAL_SECS: &str = "CRM_SYNC_INTERVAL_SECS";
    /// Address `crm-mcp --http` binds when no address is given on the command line.
    pub const MCP_HTTP_ADDR: &str = "MCP_HTTP_ADDR";
    /// Bearer token required by the MCP HTTP endpoint.
    pub const MCP_HTTP_TOKEN: &str = "MCP_HTTP_TOKEN";
    /// `true` removes the MCP write tools.
    pub const MCP_READ_ONLY: &str = "MCP_READ_ONLY";
    /// `auto`, `text` or `json`.
    pub const LOG_FORMAT: &str = "CRM_LOG_FORMAT";
    /// A `tracing` filter, e.g. `info,sync_watermark=debug`.
    pub const LOG: &str = "RUST_LOG";

    /// Environment variable → settings key, for every variable that sets a value.
    pub const TABLE: &[(&str, &str)] = &[
        (DB_PATH, "db_path"),
        (SPARK_CONTROL_URL, "spark_control.url"),
        (SPARK_CONTROL_API_KEY, "spark_control.api_key"),
        (SPARK_CONTROL_VERIFY_TLS, "spark_control.verify_tls"),
        (SPARK_EMBEDDING_MODEL, "spark_control.embedding_model"),
        (SPARK_CHAT_MODEL, "spark_control.chat_model"),
        (QDRANT_URL, "qdrant.url"),
        (QDRANT_API_KEY, "qdrant.api_key"),
        (QDRANT_COLLECTION, "qdrant.collection"),
        (INDEX_DIR, "qdrant.embedded_dir"),
        (MODEL_DIR, "embedding.local_model_dir"),
        (SYNC_INTERVAL_SECS, "sync.interval_secs"),
        (MCP_HTTP_ADDR, "mcp.http_addr"),
        (MCP_HTTP_TOKEN, "mcp.token"),
        (MCP_READ_ONLY, "mcp.read_only"),
        (LOG_FORMAT, "log.format"),
    ];
}

/// The StartOS package writes its configuration here; used when no other file is named.
pub const STARTOS_CONFIG_PATH: &str = "/data/config.json";

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Every setting of every binary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The CRM's SQLite file.
    pub db_path: PathBuf,
    /// Spark Control: OpenAI-compatible embeddings and chat.
    pub spark_control: SparkControlSettings,
    /// Dense embeddings when Spark Control is not used.
    pub embedding: EmbeddingSettings,
    /// The search index.
    pub qdrant: QdrantSettings,
    /// Deterministic entity resolution.
    pub resolve: ResolveSettings,
    /// The LLM tier of entity resolution.
    pub fuzzy: FuzzySettings,
    /// Incremental indexing.
    pub sync: SyncSettings,
    /// The MCP server.
    pub mcp: McpSettings,
    /// Logging.
    pub log: LogSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            db_path: PathBuf::from("crm.db"),
            spark_control: SparkControlSettings::default(),
            embedding: EmbeddingSettings::default(),
            qdrant: QdrantSettings::default(),
            resolve: ResolveSettings::default(),
            fuzzy: FuzzySettings::default(),
            sync: SyncSettings::default(),
            mcp: McpSettings::default(),
            log: LogSettings::default(),
        }
    }
}

/// Spark Control's OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SparkControlSettings {
    /// Base URL; unset means "no Spark Control": local embeddings, no fuzzy tier.
    pub url: Option<String>,
    /// Bearer key.
    pub api_key: Option<Secret>,
    /// `false` accepts a self-signed certificate (and changes nothing else).
    pub verify_tls: bool,
    /// Embedding model name, as `GET /v1/models` lists it.
    pub embedding_model: String,
    /// Chat model name, as `GET /v1/models` lists it.
    pub chat_model: String,
    /// Prefix added to search queries before embedding (e.g. `query: ` for e5).
    pub query_prefix: String,
    /// Prefix added to documents before embedding (e.g. `passage: ` for e5).
    pub document_prefix: String,
    /// Seconds to wait for a TCP/TLS connection.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a whole request.
    pub request_timeout_secs: u64,
    /// Retries after a connect error, 429 or 5xx.
    pub max_retries: u32,
    /// Requests in flight at once.
    pub max_concurrency: u32,
    /// Texts per embeddings request.
    pub embed_batch_size: u32,
    /// Characters per embeddings request, summed over its texts.
    pub embed_batch_max_chars: u32,
    /// Characters kept of one input; longer inputs are truncated, never rejected.
    pub embed_max_input_chars: u32,
    /// How vectors are asked for: `base64` (a quarter of the bytes, little parsing; a
    /// server that refuses it is asked for numbers instead) or `float`.
    pub embed_encoding: embed::dense::EncodingFormat,
}

impl Default for SparkControlSettings {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            verify_tls: true,
            embedding_model: "Qwen/Qwen3-Embedding-0.6B".to_owned(),
            chat_model: "Qwen/Qwen3-8B".to_owned(),
            query_prefix: String::new(),
            document_prefix: String::new(),
            connect_timeout_secs: 10,
            request_timeout_secs: 120,
            max_retries: 5,
            max_concurrency: 4,
            embed_batch_size: 64,
            embed_batch_max_chars: 200_000,
            embed_max_input_chars: 8_000,
            embed_encoding: embed::dense::EncodingFormat::Base64,
        }
    }
}

impl SparkControlSettings {
    /// The shared HTTP client's configuration for Spark Control, or `None` when no URL
    /// is set.
    pub fn http_config(&self) -> Option<embed::http::HttpClientConfig> {
        let url = self.url.as_deref()?;
        let mut config = embed::http::HttpClientConfig::new(url);
        config.api_key = self
            .api_key
            .as_ref()
            .map(|key| embed::http::ApiKey::new(key.expose()));
        config.verify_tls = self.verify_tls;
        config.connect_timeout = std::time::Duration::from_secs(self.connect_timeout_secs);
        config.request_timeout = std::time::Duration::from_secs(self.request_timeout_secs);
        config.max_retries = self.max_retries;
        config.max_concurrency = usize::try_from(self.max_concurrency.max(1)).unwrap_or(1);
        Some(config)
    }
}

/// The in-process embedding model, used when Spark Control is not configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSettings {
    /// Directory holding `config.json`, `tokenizer.json` and `model.safetensors`.
    /// Unset means `$HOME/.cache/crm-substrate/models/all-MiniLM-L6-v2`, where
    /// `scripts/fetch-model.sh` puts it.
    pub local_model_dir: Option<PathBuf>,
    /// Texts per forward pass of the local model.
    pub local_batch_size: u32,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            local_model_dir: None,
            local_batch_size: 32,
        }
    }
}

/// Default `qdrant.hnsw_m`: Qdrant's.
pub const DEFAULT_HNSW_M: u32 = 16;

/// Default `qdrant.hnsw_ef_construct`: Qdrant's.
pub const DEFAULT_HNSW_EF_CONSTRUCT: u32 = 100;

/// The values of `qdrant.hnsw_m` accepted.
pub const HNSW_M_RANGE: std::ops::RangeInclusive<u32> = 4..=128;

/// The values of `qdrant.hnsw_ef_construct` accepted.
pub const HNSW_EF_CONSTRUCT_RANGE: std::ops::RangeInclusive<u32> = 4..=1000;

/// The search index: embedded by default, a Qdrant server when `url` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QdrantSettings {
    /// gRPC URL of a Qdrant server (port 6334); unset means the embedded engine.
    pub url: Option<String>,
    /// Qdrant API key.
    pub api_key: Option<Secret>,
    /// Collection name.
    pub collection: String,
    /// Directory of the embedded engine; unset means `<db_path>.index` beside the database.
    pub embedded_dir: Option<PathBuf>,
    /// The RRF constant `k` of hybrid retrieval, always sent explicitly.
    pub rrf_k: u32,
    /// Shards of an embedded collection when it is created (1 to 64, or 0 for automatic:
    /// from 500,000 CRM rows on two cores or more, one per 350,000 rows, two to three;
    /// else one). Each is written by a thread of its own, so a build of a large CRM on
    /// several cores goes faster; BM25 statistics are then per shard (see the README).
    pub embedded_shards: u32,
    /// Links per point of the dense HNSW graph (`m`, 4 to 128) of a collection when it
    /// is created: more links find true neighbours more often and cost build time,
    /// memory and query time.
    pub hnsw_m: u32,
    /// Candidates kept while linking a point into the HNSW graph (`ef_construct`, 4 to
    /// 1,000) of a collection when it is created: the graph's build time grows with it,
    /// its quality up to a point.
    pub hnsw_ef_construct: u32,
}

impl Default for QdrantSettings {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            collection: "crm_chunks".to_owned(),
            embedded_dir: None,
            rrf_k: 60,
            embedded_shards: 0,
            hnsw_m: DEFAULT_HNSW_M,
            hnsw_ef_construct: DEFAULT_HNSW_EF_CONSTRUCT,
        }
    }
}

/// Deterministic entity resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolveSettings {
    /// Region assumed for phone numbers written without a country code (ISO 3166 alpha-2).
    pub default_region: String,
}

impl Default for ResolveSettings {
    fn default() -> Self {
        Self {
            default_region: "US".to_owned(),
        }
    }
}

/// The LLM tier of entity resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FuzzySettings {
    /// A "same entity" answer merges only at or above this confidence.
    pub min_confidence: f64,
    /// At most this many merges per run, so one bad model cannot collapse the CRM.
    pub max_merges_per_run: u32,
}

impl Default for FuzzySettings {
    fn default() -> Self {
        Self {
            min_confidence: 0.9,
            max_merges_per_run: 200,
        }
    }
}

/// Incremental indexing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    /// Seconds between runs of `crm-sync --watch` and of `crm-mcp --sync-every` (when
    /// given no SECS).
    pub interval_secs: u64,
    /// Rows read per batch.
    pub batch_size: u32,
    /// Seconds the watermark is moved back on each read, to catch same-second writes.
    pub overlap_secs: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            interval_secs: 300,
            batch_size: 1024,
            overlap_secs: 2,
        }
    }
}

/// The MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// Address of the Streamable HTTP endpoint when `--http` is given without one.
    pub http_addr: SocketAddr,
    /// Bearer token; required when bound to anything but loopback.
    pub token: Option<Secret>,
    /// Remove the write tools from the tool list.
    pub read_only: bool,
    /// Extra `Origin` values accepted by the HTTP endpoint (loopback origins always are).
    pub allowed_origins: Vec<String>,
    /// Extra `Host` values accepted by the HTTP endpoint (loopback hosts always are).
    pub allowed_hosts: Vec<String>,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8765)),
            token: None,
            read_only: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `auto` (text on a terminal, JSON lines otherwise), `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            filter: "info".to_owned(),
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON lines otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Where the settings come from; built by the binaries from their flags and process
/// environment, and by tests from whatever they like.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config`: a file that must exist.
    pub config_file: Option<PathBuf>,
    /// `--env-file`: a `.env` file that must exist; else `./.env` is read when present.
    pub env_file: Option<PathBuf>,
    /// The process environment (or a test's stand-in).
    pub env: BTreeMap<String, String>,
    /// Flag overrides as `(settings key, value)`, applied last.
    pub overrides: Vec<(String, String)>,
    /// Whether to fall back to [`STARTOS_CONFIG_PATH`] and `./.env` when present.
    pub use_default_files: bool,
}

impl Sources {
    /// The real process environment, with the default file locations enabled.
    pub fn from_process() -> Self {
        Self {
            env: std::env::vars().collect(),
            use_default_files: true,
            ..Self::default()
        }
    }
}

impl Settings {
    /// Loads settings from every layer, highest precedence last.
    pub fn load(sources: &Sources) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder().add_source(
            config::Config::try_from(&Settings::default()).context("encoding the defaults")?,
        );

        if let Some(path) = config_file_path(sources)? {
            let format = match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => config::FileFormat::Toml,
                Some("json") => config::FileFormat::Json,
                _ => bail!(
                    "settings file {} must end in .json or .toml",
                    path.display()
                ),
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading settings file {}", path.display()))?;
            // Each file is checked on its own first, so an unknown key is reported with
            // the file that holds it.
            config::Config::builder()
                .add_source(config::File::from_str(&text, format))
                .build()
                .and_then(|c| c.try_deserialize::<Settings>())
                .with_context(|| format!("in settings file {}", path.display()))?;
            builder = builder.add_source(config::File::from_str(&text, format));
        }

        let mut env = dotenv_values(sources)?;
        // The real environment wins over the .env file.
        env.extend(sources.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (var, key) in env::TABLE {
            if let Some(value) = env.get(*var).filter(|v| !v.trim().is_empty()) {
                builder = builder
                    .set_override(*key, value.as_str())
                    .with_context(|| format!("setting {key} from ${var}"))?;
            }
        }

        for (key, value) in &sources.overrides {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .with_context(|| format!("setting {key} from the command line"))?;
        }

        let settings: Settings = builder
            .build()
            .context("combining settings")?
            .try_deserialize()
            .context("reading settings (defaults, file, .env, environment and flags)")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.db_path.as_os_str().is_empty() {
            bail!("db_path must not be empty (set {} or --db)", env::DB_PATH);
        }
        if let Some(url) = &self.spark_control.url {
            check_http_url(url).with_context(|| {
                format!(
                    "spark_control.url (${}) is not usable",
                    env::SPARK_CONTROL_URL
                )
            })?;
        }
        if let Some(url) = &self.qdrant.url {
            check_http_url(url)
                .with_context(|| format!("qdrant.url (${}) is not usable", env::QDRANT_URL))?;
        }
        if !(0.0..=1.0).contains(&self.fuzzy.min_confidence) {
            bail!(
                "fuzzy.min_confidence must be between 0 and 1, got {}",
                self.fuzzy.min_confidence
            );
        }
        if self.sync.batch_size == 0 {
            bail!("sync.batch_size must be at least 1");
        }
        if self.qdrant.embedded_shards > 64 {
            bail!(
                "qdrant.embedded_shards must be 0 (automatic) or between 1 and 64, got {}",
                self.qdrant.embedded_shards
            );
        }
        for (key, value, range) in [
            ("qdrant.hnsw_m", self.qdrant.hnsw_m, HNSW_M_RANGE),
            (
                "qdrant.hnsw_ef_construct",
                self.qdrant.hnsw_ef_construct,
                HNSW_EF_CONSTRUCT_RANGE,
            ),
        ] {
            if !range.contains(&value) {
                bail!(
                    "{key} must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                );
            }
        }
        if self.spark_control.max_concurrency == 0 {
            bail!("spark_control.max_concurrency must be at least 1");
        }
        if self.spark_control.embed_batch_size == 0 {
            bail!("spark_control.embed_batch_size must be at least 1");
        }
        if self.resolve.default_region.len() != 2
            || !self
                .resolve
                .default_region
                .chars()
                .all(|c| c.is_ascii_uppercase())
        {
            bail!(
                "resolve.default_region must be a two-letter ISO 3166 code such as US, got {:?}",
                self.resolve.default_region
            );
        }
        Ok(())
    }

    /// The embedded index directory: the setting, else `<db_path>.index`.
    pub fn embedded_index_dir(&self) -> PathBuf {
        match &self.qdrant.embedded_dir {
            Some(dir) => dir.clone(),
            None => {
                let mut name = self.db_path.as_os_str().to_owned();
                name.push(".index");
                PathBuf::from(name)
            }
        }
    }

    /// The local model directory: the setting, else the cache path the fetch script uses.
    pub fn local_model_dir(&self, env: &BTreeMap<String, String>) -> PathBuf {
        match &self.embedding.local_model_dir {
            Some(dir) => dir.clone(),
            None => default_cache_dir(env).join("models/all-MiniLM-L6-v2"),
        }
    }
}

/// `$XDG_CACHE_HOME/crm-substrate`, else `$HOME/.cache/crm-substrate`, else `.cache/crm-substrate`.
pub fn default_cache_dir(env: &BTreeMap<String, String>) -> PathBuf {
    if let Some(xdg) = env.get("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Path::new(xdg).join("crm-substrate");
    }
    match env.get("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Path::new(home).join(".cache/crm-substrate"),
        None => PathBuf::from(".cache/crm-substrate"),
    }
}

fn config_file_path(sources: &Sources) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = &sources.config_file {
        if !path.is_file() {
            bail!("settings file {} (--config) does not exist", path.display());
        }
        return Ok(Some(path.clone()));
    }
    if let Some(path) = sources.env.get(env::CONFIG).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "settings file {} (${}) does not exist",
                path.display(),
                env::CONFIG
            );
        }
        return Ok(Some(path));
    }
    let startos = Path::new(STARTOS_CONFIG_PATH);
    if sources.use_default_files && startos.is_file() {
        return Ok(Some(startos.to_path_buf()));
    }
    Ok(None)
}

fn dotenv_values(sources: &Sources) -> anyhow::Result<BTreeMap<String, String>> {
    let path = match &sources.env_file {
        Some(path) => {
            if !path.is_file() {
                bail!("env file {} (--env-file) does not exist", path.display());
            }
            path.clone()
        }
        None if sources.use_default_files && Path::new(".env").is_file() => PathBuf::from(".env"),
        None => return Ok(BTreeMap::new()),
    };
    let mut values = BTreeMap::new();
    let iter = dotenvy::from_path_iter(&path)
        .with_context(|| format!("reading env file {}", path.display()))?;
    for item in iter {
        let (key, value) = item.with_context(|| format!("parsing env file {}", path.display()))?;
        values.insert(key, value);
    }
    Ok(values)
}

fn check_http_url(url: &str) -> anyhow::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .with_context(|| format!("{url:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        bail!("{url:?} has no host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)]) -> Sources {
        Sources {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Sources::default()
        }
    }

    #[test]
    fn defaults_load_and_validate() {
        let settings = Settings::load(&Sources::default()).unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn environment_sets_documented_keys() {
        let settings = Settings::load(&sources(&[
            (env::DB_PATH, "/tmp/x.db"),
            (env::SPARK_CONTROL_URL, "https://spark.local:8443"),
            (env::SPARK_CONTROL_VERIFY_TLS, "false"),
            (env::SPARK_CONTROL_API_KEY, "sk-secret"),
            (env::MCP_READ_ONLY, "yes"),
            (env::SYNC_INTERVAL_SECS, "60"),
        ]))
        .unwrap();
        assert_eq!(settings.db_path, PathBuf::from("/tmp/x.db"));
        assert_eq!(
            settings.spark_control.url.as_deref(),
            Some("https://spark.local:8443")
        );
        assert!(!settings.spark_control.verify_tls);
        assert_eq!(
            settings.spark_control.api_key.as_ref().map(Secret::expose),
            Some("sk-secret")
        );
        assert!(settings.mcp.read_only);
        assert_eq!(settings.sync.interval_secs, 60);
    }

    #[test]
    fn empty_environment_values_are_unset() {
        let settings = Settings::load(&sources(&[(env::QDRANT_URL, "  ")])).unwrap();
        assert_eq!(settings.qdrant.url, None);
    }

    #[test]
    fn secrets_never_print() {
        let settings = Settings::load(&sources(&[
            (env::SPARK_CONTROL_API_KEY, "sk-very-secret"),
            (env::MCP_HTTP_TOKEN, "tok-very-secret"),
            (env::QDRANT_API_KEY, "qd-very-secret"),
        ]))
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err =
            Settings::load(&sources(&[(env::SPARK_CONTROL_VERIFY_TLS, "maybe")])).unwrap_err();
        assert!(format!("{err:#}").contains("maybe"), "{err:#}");

        let err = Settings::load(&sources(&[(env::SPARK_CONTROL_URL, "spark.local")])).unwrap_err();
        assert!(format!("{err:#}").contains("spark_control.url"), "{err:#}");
    }

    #[test]
    fn hnsw_settings_outside_the_engines_range_are_refused_by_name() {
        for (m, ef, named) in [
            (3, 100, "qdrant.hnsw_m"),
            (129, 100, "qdrant.hnsw_m"),
            (16, 3, "qdrant.hnsw_ef_construct"),
            (16, 1001, "qdrant.hnsw_ef_construct"),
        ] {
            let mut settings = Settings::default();
            settings.qdrant.hnsw_m = m;
            settings.qdrant.hnsw_ef_construct = ef;
            let err = settings.validate().unwrap_err();
            assert!(format!("{err:#}").contains(named), "{err:#}");
        }
        let mut settings = Settings::default();
        settings.qdrant.hnsw_m = 4;
        settings.qdrant.hnsw_ef_construct = 1000;
        settings.validate().unwrap();
    }

    #[test]
    fn flags_override_environment() {
        let mut s = sources(&[(env::DB_PATH, "/from/env.db")]);
        s.overrides
            .push(("db_path".to_owned(), "/from/flag.db".to_owned()));
        let settings = Settings::load(&s).unwrap();
        assert_eq!(settings.db_path, PathBuf::from("/from/flag.db"));
    }

    #[test]
    fn embedded_index_dir_defaults_beside_the_database() {
        let settings = Settings {
            db_path: PathBuf::from("/data/crm.db"),
            ..Settings::default()
        };
        assert_eq!(
            settings.embedded_index_dir(),
            PathBuf::from("/data/crm.db.index")
        );
    }
}
