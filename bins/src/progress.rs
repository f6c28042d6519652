//! Progress bars for long work, drawn on stderr only when it is a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Terminal;

/// A bar for `len` items of work, labelled `what`.
pub fn bar(terminal: &Terminal, len: u64, what: &str) -> ProgressBar {
    let bar = terminal.multi().add(ProgressBar::new(len));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12.bold} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// A spinner for work of unknown length, labelled `what`.
pub fn spinner(terminal: &Terminal, what: &str) -> ProgressBar {
    ticking(
        terminal,
        what,
        "{prefix:>12.bold} {spinner} {human_pos} {per_sec} {msg}",
    )
}

/// A spinner for one step of unknown length, labelled `what`, showing `message` and the
/// time the step has taken.
pub fn timer(terminal: &Terminal, what: &str, message: &str) -> ProgressBar {
    let bar = ticking(
        terminal,
        what,
        "{prefix:>12.bold} {spinner} {elapsed} {msg}",
    );
    bar.set_message(message.to_owned());
    bar
}

/// A spinner drawn with `template`, labelled `what`, ticking on its own.
fn ticking(terminal: &Terminal, what: &str, template: &str) -> ProgressBar {
    let bar = terminal.multi().add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
