//! What every binary shares: common flags, start-up, and the exit path.
//!
//! A binary looks like this:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use clap::Parser;
//! use crm_substrate::cli::{self, CommonArgs, Context};
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     common: CommonArgs,
//! }
//!
//! fn main() -> ExitCode {
//!     cli::main(|| {
//!         let args = Args::parse();
//!         let ctx = Context::init(&args.common, Vec::new())?;
//!         let _settings = &ctx.settings;
//!         Ok(ExitCode::SUCCESS)
//!     })
//! }
//! ```

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::settings::{LogFormat, Settings, Sources};

/// Flags every binary accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// Settings file (TOML or JSON). Default: $CRM_SUBSTRATE_CONFIG, else
    /// /data/config.json when it exists, else built-in defaults.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// A .env file whose values apply where the real environment sets nothing.
    /// Default: ./.env when it exists.
    #[arg(long, value_name = "FILE", global = true)]
    pub env_file: Option<PathBuf>,

    /// The CRM's SQLite file (overrides $CRM_DB_PATH and the settings file).
    #[arg(long, value_name = "PATH", global = true)]
    pub db: Option<PathBuf>,

    /// Log format on stderr: auto is text on a terminal and JSON lines otherwise.
    #[arg(long, value_enum, value_name = "FORMAT", global = true)]
    pub log_format: Option<LogFormat>,

    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl CommonArgs {
    /// The settings sources these flags describe, over the real process environment.
    pub fn sources(&self, mut overrides: Vec<(String, String)>) -> Sources {
        let mut sources = Sources::from_process();
        sources.config_file = self.config.clone();
        sources.env_file = self.env_file.clone();
        if let Some(db) = &self.db {
            overrides.insert(0, ("db_path".to_owned(), db.display().to_string()));
        }
        if let Some(format) = self.log_format {
            let name = match format {
                LogFormat::Auto => "auto",
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            };
            overrides.insert(0, ("log.format".to_owned(), name.to_owned()));
        }
        sources.overrides = overrides;
        sources
    }
}

/// Settings, the terminal, and the process environment, set up once per process.
#[derive(Debug)]
pub struct Context {
    /// The loaded settings.
    pub settings: Settings,
    /// The process environment as it was at start-up.
    pub env: std::collections::BTreeMap<String, String>,
    /// Progress bars and log lines share stderr through this.
    pub terminal: Terminal,
}

impl Context {
    /// Loads settings (with `overrides` from binary-specific flags, as `(key, value)`),
    /// installs the tracing subscriber, and prepares progress output.
    pub fn init(common: &CommonArgs, overrides: Vec<(String, String)>) -> anyhow::Result<Self> {
        let sources = common.sources(overrides);
        let settings = Settings::load(&sources)?;
        let terminal = Terminal::detect();
        install_tracing(common, &settings, &sources, &terminal)?;
        Ok(Self {
            settings,
            env: sources.env,
            terminal,
        })
    }
}

/// Stderr, shared by progress bars and log lines so neither garbles the other.
#[derive(Debug, Clone)]
pub struct Terminal {
    multi: MultiProgress,
    interactive: bool,
}

impl Terminal {
    /// Detects whether stderr is a terminal; progress bars are drawn only then.
    pub fn detect() -> Self {
        let interactive = io::stderr().is_terminal();
        let multi = if interactive {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        };
        Self { multi, interactive }
    }

    /// True when stderr is a terminal.
    pub fn is_interactive(&self) -> bool {
        self.interactive
    }

    /// The bar container; bars added here are hidden when stderr is not a terminal.
    pub fn multi(&self) -> &MultiProgress {
        &self.multi
    }
}

/// Writes log lines above any progress bars.
#[derive(Clone)]
struct SuspendingStderr {
    multi: MultiProgress,
}

struct SuspendingWriter {
    multi: MultiProgress,
    buffer: Vec<u8>,
}

impl Write for SuspendingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        self.multi.suspend(|| {
            let mut stderr = io::stderr().lock();
            stderr.write_all(&buffer)?;
            stderr.flush()
        })
    }
}

impl Drop for SuspendingWriter {
    fn drop(&mut self) {
        // A log line that cannot reach stderr has nowhere else to go.
        let _ = self.flush();
    }
}

impl<'a> MakeWriter<'a> for SuspendingStderr {
    type Writer = SuspendingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        SuspendingWriter {
            multi: self.multi.clone(),
            buffer: Vec::with_capacity(256),
        }
    }
}

/// Filter directives added to every log filter that does not name `qdrant_edge`.
///
/// qdrant-edge 0.7.2 logs, each time a shard is opened, that two process-wide settings
/// were never initialised (`Feature flags not initialized!`, as a warning per segment,
/// and `MULTI_MMAP_SUPPORT_CHECK_RESULT should be initialized…`) and that its
/// write-ahead log was opened (at `info`). Qdrant's own server sets both at start-up;
/// the embedded engine offers no way to, and falls back to the defaults the server would
/// use, so the warnings say nothing an operator can act on: opening a three-shard index
/// printed six of them. Those modules log nothing else, except two `mmap` warnings that
/// need a setting no one here makes (a failed start-up check, or `QDRANT_NO_MULTI_MMAP`
/// set by hand). The WAL keeps its warnings and errors.
const QUIET_ENGINE_DIRECTIVES: [&str; 3] = [
    "qdrant_edge::common::flags=error",
    "qdrant_edge::common::mmap::ops=error",
    "qdrant_edge::wal=warn",
];

/// `text` as a log filter, with [`QUIET_ENGINE_DIRECTIVES`] unless it names
/// `qdrant_edge` itself (whoever does wants that engine's lines as written).
fn log_filter(text: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut filter = EnvFilter::try_new(text)?;
    if !text.contains("qdrant_edge") {
        for directive in QUIET_ENGINE_DIRECTIVES {
            filter = filter.add_directive(directive.parse()?);
        }
    }
    Ok(filter)
}

fn install_tracing(
    common: &CommonArgs,
    settings: &Settings,
    sources: &Sources,
    terminal: &Terminal,
) -> anyhow::Result<()> {
    let filter = if common.quiet {
        log_filter("warn")?
    } else if common.verbose > 0 {
        log_filter(if common.verbose == 1 {
            "debug"
        } else {
            "trace"
        })?
    } else if let Some(rust_log) = sources.env.get(crate::settings::env::LOG) {
        log_filter(rust_log)
            .with_context(|| format!("${} is not a valid filter", crate::settings::env::LOG))?
    } else {
        log_filter(&settings.log.filter)
            .with_context(|| format!("log.filter {:?} is not valid", settings.log.filter))?
    };
    let json = match settings.log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !terminal.is_interactive(),
    };
    let writer = SuspendingStderr {
        multi: terminal.multi.clone(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(terminal.is_interactive())
            .with_target(false)
            .try_init()
    };
    // A second init in one process (tests) keeps the first subscriber.
    drop(installed);
    Ok(())
}

/// Runs a binary's body and turns its outcome into an exit code. Errors are printed
/// with their whole chain; a broken pipe on stdout (`crm-x | head`) is not an error.
pub fn main(body: impl FnOnce() -> anyhow::Result<ExitCode>) -> ExitCode {
    match body() {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let mut stderr = io::stderr().lock();
            // Nothing more can be done if stderr itself is gone.
            let _ = writeln!(stderr, "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Writes `value` as one JSON line to stdout.
pub fn print_json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, value).context("writing JSON to stdout")?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Writes text to stdout, as is.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_anywhere_in_the_chain_is_recognised() {
        let err =
            anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing a row");
        assert!(is_broken_pipe(&err));
        let other = anyhow::anyhow!("disk full");
        assert!(!is_broken_pipe(&other));
    }
}
