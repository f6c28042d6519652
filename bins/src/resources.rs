//! What the process used: peak resident memory, read from `/proc/self/status`, and CPU
//! time, read from `/proc/self/stat`.
//!
//! `VmHWM` counts every resident page, including pages of memory-mapped files (the
//! embedded index maps its segments and write-ahead log), which the kernel can drop and
//! read again at will. The anonymous part (`RssAnon`: heap, stacks) is what the process
//! cannot give back; Linux keeps no peak of it, so [`AnonSampler`] samples it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Samples this process's anonymous resident memory (`RssAnon`) every 100 ms on a
/// thread of its own, keeping the largest value, until dropped.
pub struct AnonSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl AnonSampler {
    /// Starts sampling.
    pub fn start() -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_peak, thread_stop) = (Arc::clone(&peak), Arc::clone(&stop));
        let spawned = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    sample_into(&thread_peak);
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        if let Err(err) = spawned {
            tracing::debug!(error = %err, "could not start the memory sampler");
        }
        Self { peak, stop }
    }

    /// The largest anonymous resident size seen so far (one more sample taken now), in
    /// bytes; `None` where the platform does not report it.
    pub fn peak_bytes(&self) -> Option<u64> {
        sample_into(&self.peak);
        match self.peak.load(Ordering::Relaxed) {
            0 => None,
            bytes => Some(bytes),
        }
    }
}

impl Drop for AnonSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

static PROCESS_SAMPLER: std::sync::OnceLock<AnonSampler> = std::sync::OnceLock::new();

/// Starts sampling this process's anonymous memory for [`peak_anon_bytes`] (once; later
/// calls do nothing).
pub fn start_anon_sampling() {
    PROCESS_SAMPLER.get_or_init(AnonSampler::start);
}

/// Peak anonymous resident memory since [`start_anon_sampling`], in bytes; `None` when
/// sampling was not started or the platform does not report it.
pub fn peak_anon_bytes() -> Option<u64> {
    PROCESS_SAMPLER.get().and_then(AnonSampler::peak_bytes)
}

fn sample_into(peak: &AtomicU64) {
    if let Some(kib) = proc_status_kib("RssAnon:") {
        peak.fetch_max(kib * 1024, Ordering::Relaxed);
    }
}

/// Peak resident set size of this process in bytes (`VmHWM`), when the platform reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// Current resident set size of this process in bytes (`VmRSS`), when the platform reports it.
pub fn current_rss_bytes() -> Option<u64> {
    proc_status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// What this process has used so far: the figures a run summary reports.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ProcessUse {
    /// Peak resident memory, in bytes (`VmHWM`: includes pages of the index's
    /// memory-mapped files).
    pub peak_rss_bytes: Option<u64>,
    /// Peak anonymous resident memory (heap, stacks; sampled every 100 ms), in bytes.
    pub peak_anon_bytes: Option<u64>,
    /// CPU time, user and system, all threads, in seconds: over a run's duration, the
    /// cores it kept busy.
    pub cpu_seconds: Option<f64>,
}

impl ProcessUse {
    /// Reads the figures now.
    pub fn now() -> Self {
        Self {
            peak_rss_bytes: peak_rss_bytes(),
            peak_anon_bytes: peak_anon_bytes(),
            cpu_seconds: cpu_seconds(),
        }
    }
}

/// Clock ticks per second of the CPU times in `/proc/*/stat` (`USER_HZ`): Linux reports
/// them in 1/100 s on x86 and ARM whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// CPU time this process has used so far, user and system, of all its threads (ended
/// ones too), in seconds; `None` where the platform does not report it. Divided by the
/// wall time of a run, it says how many cores the run kept busy.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks as f64 / USER_HZ)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/*/stat` line. The command name (field
/// 2) is in parentheses and may itself hold spaces and parentheses, so the fields are
/// counted from the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // The first field after the name is field 3, the state.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_fields() {
        let status = "Name:\tx\nVmHWM:\t  123456 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(123_456));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1000));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn reads_this_process_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn parses_cpu_ticks_after_a_hostile_command_name() {
        let fields_3_to_17 = "S 1 2 3 4 5 6 7 8 9 10 1234 56 0 0";
        assert_eq!(
            parse_stat_cpu_ticks(&format!("42 (crm-backfill) {fields_3_to_17} 20 0")),
            Some(1290)
        );
        // A name with spaces and a closing parenthesis of its own.
        assert_eq!(
            parse_stat_cpu_ticks(&format!("42 (a) b ) c) {fields_3_to_17}")),
            Some(1290)
        );
        assert_eq!(parse_stat_cpu_ticks("42 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu_ticks("no name at all"), None);
        assert_eq!(
            parse_stat_cpu_ticks("42 (x) S 1 2 3 4 5 6 7 8 9 10 many 56"),
            None
        );
    }

    #[test]
    fn cpu_time_grows_with_work_on_linux() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let before = cpu_seconds().expect("/proc/self/stat is readable on Linux");
        // Spin until the kernel has charged this process at least two more ticks.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_seconds().is_some_and(|now| now < before + 0.02) {
            assert!(std::time::Instant::now() < deadline, "no CPU time charged");
            for i in 0..100_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        assert!(cpu_seconds().unwrap() >= before + 0.02, "{x}");
    }

    #[test]
    fn the_sampler_sees_a_large_allocation() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let sampler = AnonSampler::start();
        let before = sampler.peak_bytes().expect("RssAnon is reported on Linux");
        // 64 MiB written page by page, so it is resident, then freed before the read.
        let block = vec![1u8; 64 << 20];
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            block
                .iter()
                .step_by(4096)
                .map(|&b| u64::from(b))
                .sum::<u64>(),
            16384
        );
        drop(block);
        let peak = sampler.peak_bytes().expect("sampled");
        assert!(peak >= before + (60 << 20), "peak {peak} before {before}");
    }
}
