//! What `crm-resolve` and `crm-demo run` share: the resolver's settings, its progress
//! bars, its lease identity and the human summary.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use entity_resolve::{
    KindSummary, Phase, PhoneRegion, Progress, ResolveConfig, ResolveSummary, RunOptions,
};
use indicatif::ProgressBar;

use crate::cli::{Context, Terminal};
use crate::progress;

/// The resolver's configuration from the settings.
pub fn resolve_config(ctx: &Context) -> anyhow::Result<ResolveConfig> {
    let region: PhoneRegion = ctx
        .settings
        .resolve
        .default_region
        .parse()
        .context("resolve.default_region")?;
    Ok(ResolveConfig {
        default_region: region,
        ..ResolveConfig::default()
    })
}

/// Run options for the binary `name`: a unique lease holder and this host's name.
pub fn run_options(ctx: &Context, name: &str, dry_run: bool, full: bool) -> RunOptions {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RunOptions {
        dry_run,
        holder: format!("{name}-{}-{nanos}", std::process::id()),
        hostname: crate::indexing::hostname(&ctx.env),
        full,
    }
}

/// Draws one bar (or spinner) per phase of a resolution.
pub struct ResolveBars {
    terminal: Terminal,
    current: Mutex<Option<ProgressBar>>,
}

impl ResolveBars {
    /// Bars drawn on `terminal` (hidden when stderr is not a terminal).
    pub fn new(terminal: &Terminal) -> Self {
        Self {
            terminal: terminal.clone(),
            current: Mutex::new(None),
        }
    }
}

impl Progress for ResolveBars {
    fn start(&self, phase: Phase, total: Option<u64>) {
        let bar = match total {
            Some(n) => progress::bar(&self.terminal, n, phase.label()),
            None => progress::spinner(&self.terminal, phase.label()),
        };
        if let Ok(mut current) = self.current.lock()
            && let Some(old) = current.replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(current) = self.current.lock()
            && let Some(bar) = current.as_ref()
        {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Ok(mut current) = self.current.lock()
            && let Some(bar) = current.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The human summary of a resolution.
pub fn render_summary(s: &ResolveSummary) -> String {
    let n = thousands;
    let mut out = String::new();
    let title = if s.dry_run {
        "crm-resolve (dry run: nothing written)"
    } else {
        "crm-resolve"
    };
    let _ = writeln!(out, "{title}\n");
    let _ = writeln!(out, "| | organizations | people |\n| --- | ---: | ---: |");
    let (o, p) = (&s.organizations, &s.people);
    if s.unchanged {
        for (label, f) in [
            ("rows resolved", (|k| k.rows) as fn(&KindSummary) -> u64),
            ("entities", |k| k.entities),
        ] {
            let _ = writeln!(out, "| {label} | {} | {} |", n(f(o)), n(f(p)));
        }
        let since = s
            .unchanged_since_run
            .map_or_else(String::new, |id| format!(" (ingest_runs.id = {id})"));
        let _ = writeln!(
            out,
            "\nnothing changed since the last run{since}: the CRM rows, the entity \
             tables and the rules are as it left them, so nothing was computed or written \
             (--full computes anyway)"
        );
        let _ = writeln!(out, "time: {:.1} s", s.elapsed_ms as f64 / 1000.0);
        if let Some(id) = s.run_id {
            let _ = writeln!(out, "run logged as ingest_runs.id = {id}");
        }
        return out;
    }
    type Field = fn(&KindSummary) -> String;
    let rows: [(&str, Field); 17] = [
        ("rows resolved", |k| thousands(k.rows)),
        ("entities", |k| thousands(k.entities)),
        ("  created / revived", |k| {
            format!(
                "{} / {}",
                thousands(k.entities_created),
                thousands(k.entities_revived)
            )
        }),
        ("  retired / renamed", |k| {
            format!(
                "{} / {}",
                thousands(k.entities_retired),
                thousands(k.entities_renamed)
            )
        }),
        ("links added / moved", |k| {
            format!(
                "{} / {}",
                thousands(k.links_added),
                thousands(k.links_moved)
            )
        }),
        ("links re-ruled / removed", |k| {
            format!(
                "{} / {}",
                thousands(k.links_rule_changed),
                thousands(k.links_removed)
            )
        }),
        ("unions by rule", |k| {
            k.unions_by_rule
                .iter()
                .map(|(r, c)| format!("{r} {}", thousands(*c)))
                .collect::<Vec<_>>()
                .join(", ")
        }),
        ("merges by rule", |k| thousands(k.merges_by_rule)),
        ("merges kept / undone kept", |k| {
            format!(
                "{} / {}",
                thousands(k.merges_respected),
                thousands(k.undone_merges_respected)
            )
        }),
        ("conflicts (flagged)", |k| thousands(k.conflicts)),
        ("splits / deferred", |k| {
            format!("{} / {}", thousands(k.splits), thousands(k.splits_deferred))
        }),
        ("candidates proposed", |k| thousands(k.candidates_proposed)),
        ("  new / updated / kept", |k| {
            format!(
                "{} / {} / {}",
                thousands(k.candidates_new),
                thousands(k.candidates_updated),
                thousands(k.candidates_kept)
            )
        }),
        ("  removed / decided kept", |k| {
            format!(
                "{} / {}",
                thousands(k.candidates_removed),
                thousands(k.candidates_decided_respected)
            )
        }),
        ("pairs compared", |k| thousands(k.candidate_pairs_compared)),
        ("blocks capped (pairs skipped)", |k| {
            format!(
                "{} ({})",
                thousands(k.candidate_blocks_capped),
                thousands(k.candidate_pairs_skipped)
            )
        }),
        ("rule groups capped", |k| thousands(k.rule_groups_capped)),
    ];
    for (label, f) in rows {
        let _ = writeln!(out, "| {label} | {} | {} |", f(o), f(p));
    }
    let verb = if s.dry_run { "would write" } else { "wrote" };
    let _ = writeln!(
        out,
        "\n{verb} {} rows to the entity tables",
        n(s.entity_writes)
    );
    let phases: Vec<String> = s
        .phase_ms
        .iter()
        .map(|(k, v)| format!("{k} {:.1} s", *v as f64 / 1000.0))
        .collect();
    let _ = writeln!(
        out,
        "time: {:.1} s ({})",
        s.elapsed_ms as f64 / 1000.0,
        phases.join(", ")
    );
    if let Some(id) = s.run_id {
        let _ = writeln!(out, "run logged as ingest_runs.id = {id}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
