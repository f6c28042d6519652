//! Typed configuration of a run, built by the binaries from their settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use index_qdrant::CollectionSpec;

use crate::error::SyncError;

/// How a backfill or sync runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// CRM rows read, rendered and embedded per batch (at least 1).
    pub batch_size: usize,
    /// How far the stored watermark is moved back before each read. CRM timestamps may
    /// have one-second resolution (`CURRENT_TIMESTAMP`) and writers may commit a row a
    /// little after stamping it; rows stamped more than `overlap` before the newest row
    /// already synced are not seen by an incremental sync (`verify` reports them, a
    /// backfill repairs them). Re-reading is cheap: unchanged rows are skipped by hash.
    pub overlap: Duration,
    /// Batches in flight between two pipeline stages (reader, encoder, writer): memory
    /// stays bounded by about `3 * pipeline_depth` batches whatever the CRM's size.
    pub pipeline_depth: usize,
    /// Chunks a fresh build writes to the index between two flushes, and so between
    /// two groups of commits (at least 1). A flush of the embedded engine writes every
    /// segment, so flushing once per batch would cost more than the batch on a large
    /// collection; a crash loses at most this many chunks' work (their rows stay
    /// pending and are redone). Later runs flush and commit batch by batch.
    pub flush_every_chunks: u64,
    /// Who this run is, for the one-run-at-a-time lease.
    pub lease: LeaseConfig,
    /// How the collection is created when it is missing (storage, HNSW); its
    /// `dense_dim` is replaced by the encoder's dimension.
    pub collection: CollectionSpec,
    /// Run the index's optimizer after a run that changed something. On the embedded
    /// engine this builds the HNSW graphs of new segments and merges small ones (until
    /// then new points are searched exhaustively); a server optimizes on its own.
    pub optimize: bool,
    /// Test hook: stop at a given point of a given batch. `None` in production.
    pub fault: Option<FaultPoint>,
}

impl SyncConfig {
    /// A configuration with the defaults: 1,024 rows per batch, 2 s overlap, 2 batches in
    /// flight per stage, a flush every 32,768 chunks of a fresh build, the index's
    /// default storage, optimize after changes, and `lease`.
    pub fn new(lease: LeaseConfig) -> Self {
        Self {
            batch_size: 1024,
            overlap: Duration::from_secs(2),
            pipeline_depth: 2,
            flush_every_chunks: 32_768,
            lease,
            collection: CollectionSpec::new(1),
            optimize: true,
            fault: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), SyncError> {
        if self.batch_size == 0 {
            return Err(SyncError::InvalidConfig(
                "batch_size must be at least 1".to_owned(),
            ));
        }
        if self.pipeline_depth == 0 {
            return Err(SyncError::InvalidConfig(
                "pipeline_depth must be at least 1".to_owned(),
            ));
        }
        if self.flush_every_chunks == 0 {
            return Err(SyncError::InvalidConfig(
                "flush_every_chunks must be at least 1".to_owned(),
            ));
        }
        if self.lease.ttl < Duration::from_secs(1) {
            return Err(SyncError::InvalidConfig(format!(
                "lease ttl must be at least 1 s (got {:?})",
                self.lease.ttl
            )));
        }
        Ok(())
    }
}

/// Who holds the run lease, and for how long it lasts without renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// A description of the run (e.g. `crm-sync`); a unique suffix is added per run.
    pub holder: String,
    /// This process's id (a holder whose process is gone from this host is stale).
    pub pid: u32,
    /// This host's name.
    pub hostname: String,
    /// Lifetime of the lease without renewal; it is renewed every third of it.
    pub ttl: Duration,
}

impl LeaseConfig {
    /// A lease for `holder` in this process on `hostname`, lasting 60 s between renewals.
    pub fn new(holder: impl Into<String>, hostname: impl Into<String>) -> Self {
        Self {
            holder: holder.into(),
            pid: std::process::id(),
            hostname: hostname.into(),
            ttl: Duration::from_secs(60),
        }
    }
}

/// Where in a batch the test hook fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultStage {
    /// After the batch was read and planned, before its chunks are embedded.
    BeforeEmbed,
    /// After the batch's rows were marked pending, before anything is written to the index.
    AfterPrewrite,
    /// After the batch's points were upserted, before stale points are deleted.
    AfterUpsert,
    /// After every index write of the batch, before its rows and watermark are committed.
    AfterIndexWrites,
    /// After the batch's rows and watermark were committed.
    AfterCommit,
}

impl FaultStage {
    /// Every stage, in the order a batch passes them.
    pub const ALL: [Self; 5] = [
        Self::BeforeEmbed,
        Self::AfterPrewrite,
        Self::AfterUpsert,
        Self::AfterIndexWrites,
        Self::AfterCommit,
    ];

    /// The name used in [`FaultPoint`]'s text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeEmbed => "before_embed",
            Self::AfterPrewrite => "after_prewrite",
            Self::AfterUpsert => "after_upsert",
            Self::AfterIndexWrites => "after_index_writes",
            Self::AfterCommit => "after_commit",
        }
    }
}

impl fmt::Display for FaultStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the test hook does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultAction {
    /// Abort the whole process on the spot (`std::process::abort`), like a crash: no
    /// destructor runs, nothing is flushed or released.
    Abort,
    /// Stop the run with [`SyncError::InjectedFault`], leaving the index and the Phase-0
    /// tables exactly as a crash at that point would (the lease and the run record are
    /// still closed).
    Error,
}

/// A test hook: fire `action` when batch number `batch` (1-based, counted per stage over
/// the whole run, dependents and repairs included) reaches `stage`.
///
/// Text form (what `CRM_SYNC_FAULT` holds for the binaries): `STAGE:N`, e.g.
/// `after_upsert:3`, with the stages of [`FaultStage::as_str`]; parsed with the
/// [`FaultAction::Abort`] action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultPoint {
    /// Where.
    pub stage: FaultStage,
    /// Which batch reaching that stage (1-based).
    pub batch: u64,
    /// What to do.
    pub action: FaultAction,
}

impl fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.stage, self.batch)
    }
}

impl FromStr for FaultPoint {
    type Err = SyncError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            SyncError::InvalidConfig(format!(
                "fault point {s:?} is not STAGE:N with STAGE one of {} and N a batch number \
                 from 1",
                FaultStage::ALL.map(FaultStage::as_str).join(", ")
            ))
        };
        let (stage, batch) = s.trim().split_once(':').ok_or_else(bad)?;
        let stage = FaultStage::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == stage)
            .ok_or_else(bad)?;
        let batch: u64 = batch.parse().map_err(|_| bad())?;
        if batch == 0 {
            return Err(bad());
        }
        Ok(Self {
            stage,
            batch,
            action: FaultAction::Abort,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_points_parse_and_print() {
        let point: FaultPoint = "after_upsert:3".parse().unwrap();
        assert_eq!(point.stage, FaultStage::AfterUpsert);
        assert_eq!(point.batch, 3);
        assert_eq!(point.action, FaultAction::Abort);
        assert_eq!(point.to_string(), "after_upsert:3");
        for stage in FaultStage::ALL {
            let text = format!("{stage}:1");
            assert_eq!(text.parse::<FaultPoint>().unwrap().stage, stage);
        }
        for bad in [
            "",
            "after_upsert",
            "after_upsert:0",
            "after_upsert:x",
            "nope:1",
        ] {
            let err = bad.parse::<FaultPoint>().unwrap_err().to_string();
            assert!(err.contains("STAGE:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn config_is_validated() {
        let lease = LeaseConfig::new("t", "h");
        let mut config = SyncConfig::new(lease);
        config.validate().unwrap();
        config.batch_size = 0;
        assert!(config.validate().is_err());
        config.batch_size = 1;
        config.pipeline_depth = 0;
        assert!(config.validate().is_err());
        config.pipeline_depth = 1;
        config.flush_every_chunks = 0;
        assert!(config.validate().is_err());
    }
}
