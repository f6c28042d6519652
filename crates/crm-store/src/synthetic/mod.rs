//! A realistic synthetic venture-firm CRM with known duplicates, for the demo, tests and
//! benchmarks.
//!
//! People have names from many cultures, titles, corporate or free-mail addresses, phones
//! in many formats and LinkedIn URLs in several shapes; organisations are startups, funds,
//! LPs, law firms and service providers with legal-suffix variants; interactions are
//! meetings, calls, emails and notes with multi-paragraph text that mentions people,
//! companies and topics; deals have stages and amounts.
//!
//! Injected duplicates of known kinds ([`DupKind`]) and traps that must never be linked
//! ([`TrapKind`]) are recorded as ground truth beside the database
//! (`PATH.truth.jsonl`, see [`TruthRecord`]). Messy rows (NULL fields, noisy emails, HTML,
//! 1 MB notes, odd unicode, `CURRENT_TIMESTAMP`-style timestamps) appear at a configurable
//! rate; messiness never erases the evidence a truth record claims.
//!
//! Output is a pure function of the configuration: the same seed gives the same rows and
//! the same truth file, whatever the number of threads.
//!
//! ```no_run
//! use crm_store::synthetic::{SyntheticConfig, generate};
//!
//! # fn main() -> Result<(), crm_store::StoreError> {
//! let config = SyntheticConfig { people: 5_000, organizations: 500, ..SyntheticConfig::default() };
//! let report = generate(std::path::Path::new("/tmp/demo.db"), &config, &mut |_| {})?;
//! assert_eq!(report.rows.people, 5_000);
//! # Ok(())
//! # }
//! ```

mod data;
mod generator;
mod plan;
mod text;

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::contract::CRM_SCHEMA_SQL;
use crate::error::{StoreError, sql};
use crate::phase0::EntityKind;
use crate::queries::RowCounts;
use crate::rows::SourceTable;
use generator::{deal_row, interaction_row, large_note_ids, org_row, person_row};
use plan::{OrgRole, PersonRole, Plan};

/// Sizes and rates of a synthetic CRM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Seed: the same seed gives the same database content and truth file.
    pub seed: u64,
    /// Rows in `people` (duplicates and traps included).
    pub people: u64,
    /// Rows in `organizations` (duplicates included).
    pub organizations: u64,
    /// Rows in `interactions`.
    pub interactions: u64,
    /// Rows in `deals`.
    pub deals: u64,
    /// Fraction of people and organisation rows that duplicate an earlier row.
    pub duplicate_rate: f64,
    /// Fraction of people rows that are traps (look alike, must never be linked).
    pub trap_rate: f64,
    /// Fraction of rows of every table made messy.
    pub messy_rate: f64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            seed: 1031,
            people: 10_000,
            organizations: 1_000,
            interactions: 20_000,
            deals: 1_000,
            duplicate_rate: 0.05,
            trap_rate: 0.01,
            messy_rate: 0.03,
        }
    }
}

impl SyntheticConfig {
    /// Checks sizes and rates ([`generate`] does it too; callers that delete files first
    /// should check before).
    pub fn validate(&self) -> Result<(), StoreError> {
        let limits = [
            ("people", self.people, 50_000_000),
            ("organizations", self.organizations, 5_000_000),
            ("interactions", self.interactions, 50_000_000),
            ("deals", self.deals, 5_000_000),
        ];
        for (name, value, max) in limits {
            if value > max {
                return Err(StoreError::InvalidConfig(format!(
                    "synthetic {name} = {value} is above the supported {max}"
                )));
            }
        }
        for (name, rate) in [
            ("duplicate_rate", self.duplicate_rate),
            ("trap_rate", self.trap_rate),
            ("messy_rate", self.messy_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(StoreError::InvalidConfig(format!(
                    "synthetic {name} = {rate} must be between 0 and 1"
                )));
            }
        }
        if self.duplicate_rate + self.trap_rate > 0.9 {
            return Err(StoreError::InvalidConfig(format!(
                "duplicate_rate + trap_rate = {} leaves too few distinct people (max 0.9)",
                self.duplicate_rate + self.trap_rate
            )));
        }
        Ok(())
    }
}

/// Kinds of injected duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DupKind {
    /// Person: the same email address (spaces and capitals aside).
    SameEmail,
    /// Person: a nickname of the first name (Bob / Robert), same organisation.
    Nickname,
    /// Person: the first name reduced to an initial, same organisation.
    Initials,
    /// Person: one typing error in the first or last name, same organisation.
    Typo,
    /// Person: first and last name swapped, same organisation.
    SwappedNames,
    /// Person: the same person at a new organisation with a new email; shares the LinkedIn
    /// profile or the personal phone.
    NewJobDifferentEmail,
    /// Organisation: another legal suffix or casing (Acme Inc / ACME Corporation).
    SuffixVariant,
    /// Organisation: another name form with the same domain.
    SameDomain,
    /// Organisation: the name's initials, no domain.
    Acronym,
}

impl DupKind {
    /// The snake_case name used in the truth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SameEmail => "same_email",
            Self::Nickname => "nickname",
            Self::Initials => "initials",
            Self::Typo => "typo",
            Self::SwappedNames => "swapped_names",
            Self::NewJobDifferentEmail => "new_job_different_email",
            Self::SuffixVariant => "suffix_variant",
            Self::SameDomain => "same_domain",
            Self::Acronym => "acronym",
        }
    }
}

/// Person duplicate kinds (internal: the plan only ever uses these for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersonDupKind {
    SameEmail,
    Nickname,
    Initials,
    Typo,
    SwappedNames,
    NewJobDifferentEmail,
}

impl From<PersonDupKind> for DupKind {
    fn from(k: PersonDupKind) -> Self {
        match k {
            PersonDupKind::SameEmail => Self::SameEmail,
            PersonDupKind::Nickname => Self::Nickname,
            PersonDupKind::Initials => Self::Initials,
            PersonDupKind::Typo => Self::Typo,
            PersonDupKind::SwappedNames => Self::SwappedNames,
            PersonDupKind::NewJobDifferentEmail => Self::NewJobDifferentEmail,
        }
    }
}

/// Organisation duplicate kinds (internal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrgDupKind {
    SuffixVariant,
    SameDomain,
    Acronym,
}

impl From<OrgDupKind> for DupKind {
    fn from(k: OrgDupKind) -> Self {
        match k {
            OrgDupKind::SuffixVariant => Self::SuffixVariant,
            OrgDupKind::SameDomain => Self::SameDomain,
            OrgDupKind::Acronym => Self::Acronym,
        }
    }
}

/// Pairs of different people that look alike and must never be linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// Two different people of one organisation with the office switchboard as phone.
    SharedOfficePhone,
    /// A common name at a different organisation, with no shared evidence.
    SameNameDifferentPerson,
}

impl TrapKind {
    /// The snake_case name used in the truth file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedOfficePhone => "shared_office_phone",
            Self::SameNameDifferentPerson => "same_name_different_person",
        }
    }
}

/// One line of the ground-truth file (DESIGN §2).
///
/// A cluster: `{"kind":"person","table":"people","ids":[17,20931],"dup_kinds":["nickname"]}`
/// (every row of one true entity with more than one row). A trap:
/// `{"kind":"person","table":"people","ids":[5,6],"trap":"shared_office_phone"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruthRecord {
    /// Person or organisation.
    pub kind: EntityKind,
    /// `people` or `organizations`.
    pub table: SourceTable,
    /// The row ids, ascending (the first is the original row).
    pub ids: Vec<i64>,
    /// For a cluster: the kinds of its duplicate rows, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dup_kinds: Vec<DupKind>,
    /// For a trap pair: its kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trap: Option<TrapKind>,
}

/// Where the ground truth of `db_path` is written: `PATH.truth.jsonl`.
pub fn truth_path(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push(".truth.jsonl");
    PathBuf::from(s)
}

/// Reads a ground-truth file.
pub fn read_truth(path: &Path) -> Result<Vec<TruthRecord>, StoreError> {
    let file = std::fs::File::open(path).map_err(|source| StoreError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| StoreError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|source| StoreError::Json {
            context: format!("{} line {}", path.display(), n + 1),
            source,
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Progress of a generation, reported after each inserted chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationProgress {
    /// The table being filled.
    pub table: SourceTable,
    /// Rows of that table inserted so far.
    pub done: u64,
    /// Rows of that table to insert.
    pub total: u64,
}

/// What a generation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationReport {
    /// The database file.
    pub db_path: PathBuf,
    /// The ground-truth file.
    pub truth_path: PathBuf,
    /// Rows per table.
    pub rows: RowCounts,
    /// Duplicate rows injected, per kind.
    pub duplicates: BTreeMap<DupKind, u64>,
    /// Trap pairs injected, per kind.
    pub traps: BTreeMap<TrapKind, u64>,
    /// Clusters (true entities with more than one row) of people.
    pub person_clusters: u64,
    /// Clusters of organisations.
    pub organization_clusters: u64,
    /// Rows made messy, all tables.
    pub messy_rows: u64,
    /// Notes of 1 MB.
    pub large_notes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Rows generated per parallel task.
const CHUNK: u32 = 2_048;
/// Chunks generated per wave (in parallel) before they are inserted in order.
const WAVE: u32 = 16;

/// Creates a synthetic CRM at `path` (which must not exist) and its truth file beside it.
///
/// The load runs in one transaction with journaling and syncing off (a fresh file has
/// nothing to protect); the file is switched to WAL at the end, like any CRM opened by
/// [`crate::Store`].
pub fn generate(
    path: &Path,
    config: &SyntheticConfig,
    progress: &mut dyn FnMut(GenerationProgress),
) -> Result<GenerationReport, StoreError> {
    let started = Instant::now();
    config.validate()?;
    let truth = truth_path(path);
    for p in [path, truth.as_path()] {
        if p.exists() {
            return Err(StoreError::AlreadyExists {
                path: p.to_path_buf(),
            });
        }
    }
    let plan = Plan::new(config);
    tracing::debug!(
        people = plan.people.len(),
        organizations = plan.orgs.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "synthetic plan ready"
    );

    let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // Foreign keys are consistent by construction (a test runs `foreign_key_check`);
    // checking them per insert would only slow the load.
    conn.execute_batch(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE; \
         PRAGMA temp_store = MEMORY; PRAGMA cache_size = -262144; PRAGMA foreign_keys = OFF;",
    )
    .map_err(sql(format!("preparing {} for a bulk load", path.display())))?;
    conn.execute_batch(CRM_SCHEMA_SQL).map_err(sql(format!(
        "creating the CRM tables in {}",
        path.display()
    )))?;

    let mut messy_rows = 0u64;
    let large = large_note_ids(config);
    {
        let tx = conn
            .transaction()
            .map_err(sql("starting the bulk-load transaction"))?;
        messy_rows += load_organizations(&tx, &plan, config, progress)?;
        messy_rows += load_people(&tx, &plan, config, progress)?;
        messy_rows += load_interactions(&tx, &plan, config, &large, progress)?;
        messy_rows += load_deals(&tx, &plan, config, progress)?;
        tx.commit()
            .map_err(sql("committing the bulk-load transaction"))?;
    }
    drop(conn);
    let conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql(format!("switching {} to WAL", path.display())))?;
    let rows = crate::queries::row_counts(&conn)?;
    drop(conn);

    let records = truth_records(&plan);
    write_truth(&truth, &records)?;

    let mut duplicates: BTreeMap<DupKind, u64> = BTreeMap::new();
    let mut traps: BTreeMap<TrapKind, u64> = BTreeMap::new();
    for p in &plan.people {
        match p.role {
            PersonRole::Dup { kind, .. } => *duplicates.entry(kind.into()).or_default() += 1,
            PersonRole::Trap { kind, .. } => *traps.entry(kind).or_default() += 1,
            PersonRole::Base => {}
        }
    }
    for o in &plan.orgs {
        if let OrgRole::Dup { kind, .. } = o {
            *duplicates.entry((*kind).into()).or_default() += 1;
        }
    }
    let person_clusters = records
        .iter()
        .filter(|r| r.trap.is_none() && r.kind == EntityKind::Person)
        .count() as u64;
    let organization_clusters = records
        .iter()
        .filter(|r| r.trap.is_none() && r.kind == EntityKind::Organization)
        .count() as u64;
    Ok(GenerationReport {
        db_path: path.to_path_buf(),
        truth_path: truth,
        rows,
        duplicates,
        traps,
        person_clusters,
        organization_clusters,
        messy_rows,
        large_notes: large.len() as u64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Generates rows `1..=total` in parallel chunks (on a producer thread) and hands them to
/// `insert` in id order on the calling thread. Returns the number of messy rows.
fn pipeline<R, G, I>(
    table: SourceTable,
    total: u64,
    generate_row: G,
    mut insert: I,
    progress: &mut dyn FnMut(GenerationProgress),
) -> Result<(), StoreError>
where
    R: Send,
    G: Fn(u32) -> R + Sync,
    I: FnMut(&R) -> Result<(), StoreError>,
{
    let total_u32 = u32::try_from(total).unwrap_or(u32::MAX);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<R>>(WAVE as usize * 2);
        let generate_row = &generate_row;
        scope.spawn(move || {
            let mut start = 1u32;
            while start <= total_u32 {
                let wave_end = start.saturating_add(CHUNK * WAVE - 1).min(total_u32);
                let chunk_starts: Vec<u32> = (start..=wave_end).step_by(CHUNK as usize).collect();
                let chunks: Vec<Vec<R>> = chunk_starts
                    .par_iter()
                    .map(|&lo| {
                        let hi = lo.saturating_add(CHUNK - 1).min(wave_end);
                        (lo..=hi).map(generate_row).collect()
                    })
                    .collect();
                for chunk in chunks {
                    if tx.send(chunk).is_err() {
                        return;
                    }
                }
                match wave_end.checked_add(1) {
                    Some(next) => start = next,
                    None => break,
                }
            }
        });
        let mut done = 0u64;
        for chunk in rx {
            for row in &chunk {
                insert(row)?;
            }
            done += chunk.len() as u64;
            progress(GenerationProgress { table, done, total });
        }
        Ok(())
    })
}

fn load_organizations(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    config: &SyntheticConfig,
    progress: &mut dyn FnMut(GenerationProgress),
) -> Result<u64, StoreError> {
    let mut stmt = tx
        .prepare(
            "INSERT INTO organizations (id, name, kind, domain, website, description, location, \
             created_at, updated_at, deleted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(sql("preparing the organizations insert"))?;
    let mut messy = 0;
    pipeline(
        SourceTable::Organizations,
        config.organizations,
        |id| org_row(plan, config, id),
        |r| {
            messy += u64::from(r.messy);
            stmt.execute(params![
                r.id,
                r.name,
                r.kind,
                r.domain,
                r.website,
                r.description,
                r.location,
                r.created_at,
                r.updated_at,
                r.deleted_at
            ])
            .map_err(sql(format!("inserting organization {}", r.id)))?;
            Ok(())
        },
        progress,
    )?;
    Ok(messy)
}

fn load_people(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    config: &SyntheticConfig,
    progress: &mut dyn FnMut(GenerationProgress),
) -> Result<u64, StoreError> {
    let mut stmt = tx
        .prepare(
            "INSERT INTO people (id, first_name, last_name, full_name, email, phone, title, \
             organization_id, linkedin_url, location, bio, created_at, updated_at, deleted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .map_err(sql("preparing the people insert"))?;
    let mut messy = 0;
    pipeline(
        SourceTable::People,
        config.people,
        |id| person_row(plan, config, id),
        |r| {
            messy += u64::from(r.messy);
            stmt.execute(params![
                r.id,
                r.first_name,
                r.last_name,
                r.full_name,
                r.email,
                r.phone,
                r.title,
                r.organization_id,
                r.linkedin_url,
                r.location,
                r.bio,
                r.created_at,
                r.updated_at,
                r.deleted_at
            ])
            .map_err(sql(format!("inserting person {}", r.id)))?;
            Ok(())
        },
        progress,
    )?;
    Ok(messy)
}

fn load_interactions(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    config: &SyntheticConfig,
    large: &[u32],
    progress: &mut dyn FnMut(GenerationProgress),
) -> Result<u64, StoreError> {
    let mut stmt = tx
        .prepare(
            "INSERT INTO interactions (id, kind, occurred_at, subject, body, organization_id, \
             created_by, created_at, updated_at, deleted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(sql("preparing the interactions insert"))?;
    let mut link = tx
        .prepare("INSERT INTO interaction_people (interaction_id, person_id) VALUES (?1, ?2)")
        .map_err(sql("preparing the interaction_people insert"))?;
    let mut messy = 0;
    pipeline(
        SourceTable::Interactions,
        config.interactions,
        |id| interaction_row(plan, config, id, large.binary_search(&id).is_ok()),
        |r| {
            messy += u64::from(r.messy || r.large);
            stmt.execute(params![
                r.id,
                r.kind,
                r.occurred_at,
                r.subject,
                r.body,
                r.organization_id,
                r.created_by,
                r.created_at,
                r.updated_at,
                r.deleted_at
            ])
            .map_err(sql(format!("inserting interaction {}", r.id)))?;
            for p in &r.participants {
                link.execute(params![r.id, p]).map_err(sql(format!(
                    "inserting participant {p} of interaction {}",
                    r.id
                )))?;
            }
            Ok(())
        },
        progress,
    )?;
    Ok(messy)
}

fn load_deals(
    tx: &rusqlite::Transaction<'_>,
    plan: &Plan,
    config: &SyntheticConfig,
    progress: &mut dyn FnMut(GenerationProgress),
) -> Result<u64, StoreError> {
    let mut stmt = tx
        .prepare(
            "INSERT INTO deals (id, organization_id, name, stage, amount_usd, notes, created_at, \
             updated_at, deleted_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(sql("preparing the deals insert"))?;
    let mut messy = 0;
    pipeline(
        SourceTable::Deals,
        config.deals,
        |id| deal_row(plan, config, id),
        |r| {
            messy += u64::from(r.messy);
            stmt.execute(params![
                r.id,
                r.organization_id,
                r.name,
                r.stage,
                r.amount_usd,
                r.notes,
                r.created_at,
                r.updated_at,
                r.deleted_at
            ])
            .map_err(sql(format!("inserting deal {}", r.id)))?;
            Ok(())
        },
        progress,
    )?;
    Ok(messy)
}

/// The ground truth: person clusters, person traps, organisation clusters; each group
/// ordered by its first id.
fn truth_records(plan: &Plan) -> Vec<TruthRecord> {
    let mut person_clusters: BTreeMap<u32, (Vec<i64>, Vec<DupKind>)> = BTreeMap::new();
    let mut traps = Vec::new();
    for (i, p) in plan.people.iter().enumerate() {
        let id = i as i64 + 1;
        match p.role {
            PersonRole::Dup { of, kind } => {
                let entry = person_clusters
                    .entry(of)
                    .or_insert_with(|| (vec![i64::from(of)], Vec::new()));
                entry.0.push(id);
                entry.1.push(kind.into());
            }
            PersonRole::Trap { partner, kind } => traps.push(TruthRecord {
                kind: EntityKind::Person,
                table: SourceTable::People,
                ids: vec![i64::from(partner), id],
                dup_kinds: Vec::new(),
                trap: Some(kind),
            }),
            PersonRole::Base => {}
        }
    }
    let mut org_clusters: BTreeMap<u32, (Vec<i64>, Vec<DupKind>)> = BTreeMap::new();
    for (i, o) in plan.orgs.iter().enumerate() {
        if let OrgRole::Dup { of, kind } = o {
            let entry = org_clusters
                .entry(*of)
                .or_insert_with(|| (vec![i64::from(*of)], Vec::new()));
            entry.0.push(i as i64 + 1);
            entry.1.push((*kind).into());
        }
    }
    let cluster = |kind, table, (mut ids, mut kinds): (Vec<i64>, Vec<DupKind>)| {
        ids.sort_unstable();
        kinds.sort_unstable();
        kinds.dedup();
        TruthRecord {
            kind,
            table,
            ids,
            dup_kinds: kinds,
            trap: None,
        }
    };
    let mut out: Vec<TruthRecord> = person_clusters
        .into_values()
        .map(|c| cluster(EntityKind::Person, SourceTable::People, c))
        .collect();
    traps.sort_by(|a, b| a.ids.cmp(&b.ids));
    out.extend(traps);
    out.extend(
        org_clusters
            .into_values()
            .map(|c| cluster(EntityKind::Organization, SourceTable::Organizations, c)),
    );
    out
}

fn write_truth(path: &Path, records: &[TruthRecord]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = BufWriter::new(file);
    for r in records {
        serde_json::to_writer(&mut w, r).map_err(|source| StoreError::Json {
            context: format!("writing {}", path.display()),
            source,
        })?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(())
}
