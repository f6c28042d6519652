//! One resolver run: read, cluster, assign ids, flag candidates, write the differences.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crm_store::phase0::{self, LeaseOutcome, LeaseRequest, RunStatus};
use crm_store::{OrganizationIdentity, PersonIdentity, Timestamp, queries};
use rayon::prelude::*;
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::assign::{Assignment, assign};
use crate::candidates::{self, CandidateStats, Proposed, to_entity_pairs};
use crate::cluster::{Clusters, Evidence, EvidenceKind};
use crate::error::{ResolveError, sqlite};
use crate::fingerprint::{self, HashRow, InputHasher};
use crate::ids::{EntityId, EntityKind, LinkRule};
use crate::nicknames::Nicknames;
use crate::normalize::PhoneRegion;
use crate::plan::{Computed, KindPlan, LinkChange, diff};
use crate::records::{OrgRecord, PersonRecord, key_hash, phone_key};
use crate::rules::{BlockedLink, Linker, link_organizations, link_people};
use crate::similarity::{Reason, Reasons};
use crate::state::StoredState;
use crate::write::write_plan;

/// The `ingest_runs.step` and lease name of a resolver run.
pub const STEP: &str = "resolve";

/// Tuning of a run. Deserialised with unknown fields refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolveConfig {
    /// Region for phone numbers written without a country code (ISO 3166-1 alpha-2).
    pub default_region: PhoneRegion,
    /// Largest candidate block compared in full; larger blocks are compared within a
    /// window of this many rows, and counted in the summary.
    pub max_block_size: usize,
    /// Rows written per transaction.
    pub write_batch: usize,
    /// Rows read per query.
    pub read_page: usize,
    /// Lifetime of the run's lease, renewed after every write batch.
    pub lease_ttl_secs: u64,
}

impl Default for ResolveConfig {
    fn default() -> Self {
        Self {
            default_region: PhoneRegion::default(),
            max_block_size: 1000,
            write_batch: 5000,
            read_page: 20_000,
            lease_ttl_secs: 600,
        }
    }
}

impl ResolveConfig {
    fn validate(&self) -> Result<(), ResolveError> {
        for (name, v, min) in [
            ("max_block_size", self.max_block_size, 2),
            ("write_batch", self.write_batch, 1),
            ("read_page", self.read_page, 1),
        ] {
            if v < min {
                return Err(ResolveError::InvalidConfig(format!(
                    "{name} = {v} must be at least {min}"
                )));
            }
        }
        if self.lease_ttl_secs < 10 {
            return Err(ResolveError::InvalidConfig(format!(
                "lease_ttl_secs = {} must be at least 10",
                self.lease_ttl_secs
            )));
        }
        Ok(())
    }
}

/// Who runs, for the lease and the run log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Compute and report, write nothing (no lease, no run row either).
    pub dry_run: bool,
    /// A unique id of this run (e.g. a UUID).
    pub holder: String,
    /// This host's name (a lease held by a dead process of this host is taken over).
    pub hostname: String,
    /// Compute in full even when nothing changed since the last run (see
    /// [`ResolveSummary::unchanged`]).
    pub full: bool,
}

/// A phase of the run, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading and normalising organisations.
    ReadOrganizations,
    /// Reading and normalising people.
    ReadPeople,
    /// Reading entities, links, merges and candidates.
    ReadState,
    /// Rules, clustering and ids.
    Cluster,
    /// Blocking and scoring candidates.
    Candidates,
    /// Writing the differences.
    Write,
}

impl Phase {
    /// A short label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ReadOrganizations => "organizations",
            Self::ReadPeople => "people",
            Self::ReadState => "state",
            Self::Cluster => "cluster",
            Self::Candidates => "candidates",
            Self::Write => "write",
        }
    }
}

/// Receives progress; every method has a no-op default.
pub trait Progress: Sync {
    /// A phase starts; `total` items when known.
    fn start(&self, _phase: Phase, _total: Option<u64>) {}
    /// `n` more items of the current phase are done.
    fn advance(&self, _n: u64) {}
    /// The current phase is over.
    fn finish(&self) {}
}

/// Progress that goes nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Counts of one kind (see the README, "How to read the summary").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindSummary {
    /// Live source rows resolved.
    pub rows: u64,
    /// Live entities after the run.
    pub entities: u64,
    /// Entities created.
    pub entities_created: u64,
    /// Retired entities brought back (their row returned).
    pub entities_revived: u64,
    /// Entities retired because none of their rows is left.
    pub entities_retired: u64,
    /// Entities whose display name changed.
    pub entities_renamed: u64,
    /// Links of rows that had none.
    pub links_added: u64,
    /// Links moved to another entity.
    pub links_moved: u64,
    /// Links whose rule changed, same entity.
    pub links_rule_changed: u64,
    /// Links of rows gone from the CRM (hard or soft deleted).
    pub links_removed: u64,
    /// Successful unions per rule (`merge` = recorded merges applied).
    pub unions_by_rule: BTreeMap<String, u64>,
    /// Merges recorded by this run (`decided_by = 'rule'`): a row joined two entities.
    pub merges_by_rule: u64,
    /// Recorded merges in force that the run kept.
    pub merges_respected: u64,
    /// Undone merges whose two sides the run kept apart.
    pub undone_merges_respected: u64,
    /// Unions refused because hard evidence conflicted (flagged as `conflict`).
    pub conflicts: u64,
    /// Clusters that split off an entity another cluster kept.
    pub splits: u64,
    /// Clusters that could not get a free id and stayed with their entity (expected 0).
    pub splits_deferred: u64,
    /// Rule key groups too large to compare in full (expected 0).
    pub rule_groups_capped: u64,
    /// Candidate blocks with more than one row.
    pub candidate_blocks: u64,
    /// Candidate blocks larger than `max_block_size`, compared within a window.
    pub candidate_blocks_capped: u64,
    /// Row pairs skipped because of the cap.
    pub candidate_pairs_skipped: u64,
    /// Row pairs scored.
    pub candidate_pairs_compared: u64,
    /// Candidate pairs proposed by this run.
    pub candidates_proposed: u64,
    /// Newly flagged.
    pub candidates_new: u64,
    /// Still pending with new score or reasons.
    pub candidates_updated: u64,
    /// Still pending, unchanged.
    pub candidates_kept: u64,
    /// Pending pairs no longer proposed, removed.
    pub candidates_removed: u64,
    /// Proposed again but already decided (merged, rejected, error): left alone.
    pub candidates_decided_respected: u64,
    /// Decided candidates moved onto a merge winner.
    pub candidates_repointed: u64,
    /// Proposed pairs that are the sides of an undone merge: not flagged.
    pub candidates_undone_skipped: u64,
    /// Rows of the entity tables this build cannot parse, left alone.
    pub foreign_rows: u64,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResolveSummary {
    /// Nothing was written.
    pub dry_run: bool,
    /// The `ingest_runs` row, when written.
    pub run_id: Option<i64>,
    /// The input (CRM rows, entity tables, rules, tuning) is exactly what the last
    /// successful run left: nothing was computed, nothing can change. The kind
    /// summaries then hold only `rows` and `entities`.
    pub unchanged: bool,
    /// With `unchanged`, the run whose output this is.
    pub unchanged_since_run: Option<i64>,
    /// The hash of this run's input as it stands after the run, recorded so the next
    /// run can tell whether anything changed; `None` when it cannot be known (a dry run,
    /// or someone else decided a merge or a candidate while this run wrote).
    pub input_fingerprint: Option<String>,
    /// Organisations.
    pub organizations: KindSummary,
    /// People.
    pub people: KindSummary,
    /// Rows written to the entity tables (`entities`, `entity_links`,
    /// `entity_candidates`, `entity_merges`, `entity_merge_rows`); 0 for a re-run with
    /// no change. The run log and the lease are not counted.
    pub entity_writes: u64,
    /// Wall-clock milliseconds per phase.
    pub phase_ms: BTreeMap<String, u64>,
    /// Wall-clock milliseconds in all.
    pub elapsed_ms: u64,
}

/// Everything computed for one kind before writing.
struct KindResult {
    plan: KindPlan,
    summary: KindSummary,
}

/// Runs the resolver over the CRM behind `conn` (with the Phase-0 tables migrated).
///
/// Takes the `resolve` lease (refusing with [`ResolveError::Busy`] when another run
/// holds it), records an `ingest_runs` row, reads organisations and people in pages,
/// computes clusters, ids and candidates, and writes only the differences, in short
/// transactions. With `options.dry_run` nothing at all is written.
#[tracing::instrument(skip_all, fields(dry_run = options.dry_run))]
pub fn resolve(
    conn: &mut Connection,
    config: &ResolveConfig,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<ResolveSummary, ResolveError> {
    config.validate()?;
    let started = Instant::now();
    let ttl = Duration::from_secs(config.lease_ttl_secs);
    let mut run_id = None;
    if !options.dry_run {
        take_lease(conn, options, ttl)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("starting the run log"))?;
        run_id = Some(phase0::start_run(&tx, STEP, Timestamp::now())?);
        tx.commit().map_err(sqlite("starting the run log"))?;
    }
    let result = run_inner(conn, config, options, progress, started, ttl);
    if !options.dry_run {
        let now = Timestamp::now();
        let finish = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite("finishing the run log"))
            .and_then(|tx| {
                if let Some(id) = run_id {
                    match &result {
                        Ok(summary) => {
                            let counts =
                                serde_json::to_value(summary).unwrap_or(serde_json::Value::Null);
                            phase0::finish_run(&tx, id, RunStatus::Ok, &counts, None, now)?;
                        }
                        Err(e) => {
                            phase0::finish_run(
                                &tx,
                                id,
                                RunStatus::Failed,
                                &serde_json::Value::Null,
                                Some(&e.to_string()),
                                now,
                            )?;
                        }
                    }
                }
                phase0::release_lease(&tx, STEP, &options.holder)?;
                tx.commit().map_err(sqlite("finishing the run log"))
            });
        if let Err(e) = finish {
            tracing::warn!(error = %e, "could not record the end of the run");
            if result.is_ok() {
                return Err(e);
            }
        }
    }
    result.map(|mut s| {
        s.run_id = run_id;
        s
    })
}

fn take_lease(
    conn: &mut Connection,
    options: &RunOptions,
    ttl: Duration,
) -> Result<(), ResolveError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite("taking the resolve lease"))?;
    let outcome = phase0::acquire_lease(
        &tx,
        &LeaseRequest {
            name: STEP.to_owned(),
            holder: options.holder.clone(),
            pid: std::process::id(),
            hostname: options.hostname.clone(),
            ttl,
        },
        Timestamp::now(),
    )?;
    if let LeaseOutcome::Held(l) = outcome {
        return Err(ResolveError::Busy {
            holder: l.holder,
            pid: l.pid,
            hostname: l.hostname,
            expires_at: l.expires_at.to_canonical(),
        });
    }
    tx.commit().map_err(sqlite("taking the resolve lease"))
}

fn run_inner(
    conn: &mut Connection,
    config: &ResolveConfig,
    options: &RunOptions,
    progress: &dyn Progress,
    started: Instant,
    ttl: Duration,
) -> Result<ResolveSummary, ResolveError> {
    let mut phase_ms = BTreeMap::new();
    let mut timer = Instant::now();
    let mut lap = |name: &str, timer: &mut Instant| {
        phase_ms.insert(name.to_owned(), timer.elapsed().as_millis() as u64);
        *timer = Instant::now();
    };
    // One read transaction: a consistent snapshot of rows and state.
    let (org_rows, person_rows, org_hash, person_hash, input, decisions_before);
    let (org_state, person_state) = {
        let tx = conn
            .transaction()
            .map_err(sqlite("starting the read snapshot"))?;
        let counts = queries::row_counts(&tx)?;
        progress.start(Phase::ReadOrganizations, Some(counts.organizations));
        (org_rows, org_hash) =
            read_identities::<OrganizationIdentity>(&tx, config.read_page, progress)?;
        progress.finish();
        progress.start(Phase::ReadPeople, Some(counts.people));
        (person_rows, person_hash) =
            read_identities::<PersonIdentity>(&tx, config.read_page, progress)?;
        progress.finish();
        progress.start(Phase::ReadState, None);
        decisions_before = fingerprint::foreign_decisions(&tx)?;
        input = fingerprint::combine(
            config,
            &org_hash,
            &person_hash,
            &fingerprint::state_hash(&tx)?,
        );
        let unchanged =
            fingerprint::last_recorded(&tx)?.filter(|p| p.fingerprint == input && !options.full);
        if let Some(previous) = unchanged {
            progress.finish();
            tx.finish().map_err(sqlite("ending the read snapshot"))?;
            lap("read", &mut timer);
            return Ok(unchanged_summary(
                options,
                previous,
                org_rows.len() as u64,
                person_rows.len() as u64,
                phase_ms,
                started,
            ));
        }
        let states = (
            StoredState::load(&tx, EntityKind::Organization)?,
            StoredState::load(&tx, EntityKind::Person)?,
        );
        progress.finish();
        tx.finish().map_err(sqlite("ending the read snapshot"))?;
        states
    };
    lap("read", &mut timer);
    let orgs: Vec<OrgRecord> = org_rows.par_iter().map(OrgRecord::from_row).collect();
    drop(org_rows);
    let people = normalize_people(&person_rows, config.default_region);
    drop(person_rows);
    lap("normalize", &mut timer);
    tracing::debug!(
        organizations = orgs.len(),
        people = people.len(),
        "rows read"
    );

    progress.start(Phase::Cluster, None);
    let nicknames = Nicknames::builtin();
    // Organisations first: the people rules need organisation entities.
    let org_ids: Vec<i64> = orgs.iter().map(|o| o.id).collect();
    let org_evidence: Vec<Vec<Evidence>> = orgs
        .iter()
        .map(|o| {
            let mut ev: Vec<Evidence> = o
                .domains
                .iter()
                .map(|d| (EvidenceKind::Domain, key_hash(d)))
                .collect();
            if let Some(l) = &o.linkedin {
                ev.push((EvidenceKind::LinkedinCompany, key_hash(l)));
            }
            ev
        })
        .collect();
    let mut org_linker = Linker::new(Clusters::new(org_evidence));
    let org_merge_counts = apply_recorded_merges(&mut org_linker, &org_ids, &org_state);
    link_organizations(&mut org_linker, &orgs);
    let org_groups = org_linker.clusters.groups();
    let org_assignment = assign(EntityKind::Organization, &org_ids, &org_groups, &org_state);
    let org_entity = entity_per_row(orgs.len(), &org_groups, &org_assignment);

    let person_ids: Vec<i64> = people.iter().map(|p| p.id).collect();
    let org_of: Vec<Option<i64>> = people
        .iter()
        .map(|p| {
            let o = p.org_id?;
            let i = org_ids.binary_search(&o).ok()?;
            Some(org_entity[i].n)
        })
        .collect();
    let person_evidence: Vec<Vec<Evidence>> = people.iter().map(person_evidence).collect();
    let mut person_linker = Linker::new(Clusters::new(person_evidence));
    let person_merge_counts = apply_recorded_merges(&mut person_linker, &person_ids, &person_state);
    link_people(&mut person_linker, &people, &org_of, nicknames);
    let person_groups = person_linker.clusters.groups();
    let person_assignment = assign(
        EntityKind::Person,
        &person_ids,
        &person_groups,
        &person_state,
    );
    let person_entity = entity_per_row(people.len(), &person_groups, &person_assignment);
    progress.finish();
    lap("cluster", &mut timer);

    progress.start(Phase::Candidates, None);
    // Corporate email domains of each organisation entity's people.
    let mut member_domains: HashMap<EntityId, Vec<String>> = HashMap::new();
    for (i, p) in people.iter().enumerate() {
        if let (Some(d), Some(o)) = (&p.email_domain, org_of[i]) {
            let list = member_domains
                .entry(EntityId::new(EntityKind::Organization, o))
                .or_default();
            if list.len() < 16 && !list.contains(d) {
                list.push(d.clone());
            }
        }
    }
    let empty: Vec<String> = Vec::new();
    let org_members: Vec<&[String]> = org_entity
        .iter()
        .map(|e| member_domains.get(e).unwrap_or(&empty).as_slice())
        .collect();
    let (org_pairs, org_cstats) =
        candidates::organization_pairs(&orgs, &org_entity, &org_members, config.max_block_size);
    let org_proposed = with_conflicts(
        to_entity_pairs(org_pairs, &org_entity),
        &org_linker.blocked,
        &org_entity,
    );
    let (person_pairs, person_cstats) = candidates::person_pairs(
        &people,
        &person_entity,
        &org_of,
        nicknames,
        config.max_block_size,
    );
    let person_proposed = with_conflicts(
        to_entity_pairs(person_pairs, &person_entity),
        &person_linker.blocked,
        &person_entity,
    );
    progress.finish();
    lap("candidates", &mut timer);

    let org_display: Vec<&str> = orgs.iter().map(|o| o.display.as_str()).collect();
    let org_result = finish_kind(
        &Computed {
            ids: &org_ids,
            display: &org_display,
            groups: &org_groups,
            rule_of: &org_linker.rule_of,
            assignment: &org_assignment,
            proposed: &org_proposed,
        },
        &org_state,
        &org_linker,
        org_merge_counts,
        org_cstats,
    );
    let person_display: Vec<&str> = people.iter().map(|p| p.display.as_str()).collect();
    let person_result = finish_kind(
        &Computed {
            ids: &person_ids,
            display: &person_display,
            groups: &person_groups,
            rule_of: &person_linker.rule_of,
            assignment: &person_assignment,
            proposed: &person_proposed,
        },
        &person_state,
        &person_linker,
        person_merge_counts,
        person_cstats,
    );
    // The big inputs are no longer needed: free them before writing.
    drop((orgs, people, org_state, person_state));
    lap("plan", &mut timer);

    let entity_writes = org_result.plan.write_count() + person_result.plan.write_count();
    if !options.dry_run && entity_writes > 0 {
        progress.start(Phase::Write, Some(entity_writes));
        let now = Timestamp::now();
        let holder = options.holder.clone();
        let mut after_batch = |c: &Connection, n: u64| -> Result<(), ResolveError> {
            progress.advance(n);
            renew(c, &holder, ttl)
        };
        write_plan(
            conn,
            EntityKind::Organization,
            &org_result.plan,
            config.write_batch,
            now,
            &mut after_batch,
        )?;
        write_plan(
            conn,
            EntityKind::Person,
            &person_result.plan,
            config.write_batch,
            now,
            &mut after_batch,
        )?;
        progress.finish();
    }
    lap("write", &mut timer);
    let input_fingerprint = if options.dry_run {
        None
    } else if entity_writes == 0 {
        Some(input)
    } else {
        // What this run left, unless someone else decided something meanwhile.
        let tx = conn
            .transaction()
            .map_err(sqlite("reading the entity tables back"))?;
        let decisions_after = fingerprint::foreign_decisions(&tx)?;
        let fp = if decisions_after == decisions_before {
            let state_after = fingerprint::state_hash(&tx)?;
            Some(fingerprint::combine(
                config,
                &org_hash,
                &person_hash,
                &state_after,
            ))
        } else {
            tracing::info!(
                "merges or candidates were decided during the run: the next run computes in full"
            );
            None
        };
        tx.finish()
            .map_err(sqlite("reading the entity tables back"))?;
        lap("fingerprint", &mut timer);
        fp
    };
    let summary = ResolveSummary {
        dry_run: options.dry_run,
        run_id: None,
        unchanged: false,
        unchanged_since_run: None,
        input_fingerprint,
        organizations: org_result.summary,
        people: person_result.summary,
        entity_writes,
        phase_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        entity_writes,
        people_entities = summary.people.entities,
        organization_entities = summary.organizations.entities,
        elapsed_ms = summary.elapsed_ms,
        "resolve run done"
    );
    Ok(summary)
}

/// Extends the lease after a write batch; the batch is already committed, so a lost
/// lease stops the run between two consistent states.
fn renew(conn: &Connection, holder: &str, ttl: Duration) -> Result<(), ResolveError> {
    let n = conn
        .prepare_cached(
            "UPDATE substrate_leases SET expires_at = ?3 WHERE name = ?1 AND holder = ?2",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                STEP,
                holder,
                Timestamp::now().saturating_add(ttl).to_canonical()
            ])
        })
        .map_err(sqlite("renewing the resolve lease"))?;
    if n == 0 {
        return Err(ResolveError::LeaseLost);
    }
    Ok(())
}

/// Reads the live rows of one table in pages of `page`, hashing them as they come.
fn read_identities<R: HashRow>(
    conn: &Connection,
    page: usize,
    progress: &dyn Progress,
) -> Result<(Vec<R>, String), ResolveError> {
    let mut out = Vec::new();
    let mut hash = InputHasher::new(R::TABLE.as_str());
    let mut after = None;
    loop {
        let rows: Vec<R> = queries::live_identities_after_id(conn, after, page)?;
        let Some(last) = rows.last() else { break };
        after = Some(last.id());
        progress.advance(rows.len() as u64);
        for r in &rows {
            r.hash_into(&mut hash);
        }
        out.extend(rows);
    }
    Ok((out, hash.finish()))
}

/// Normalises people rows. libphonenumber's metadata serialises every parse behind one
/// lock, and phones are most of the work: one thread parses them while the others
/// normalise everything else.
fn normalize_people(rows: &[PersonIdentity], region: PhoneRegion) -> Vec<PersonRecord> {
    let (phones, mut records) = rayon::join(
        || {
            rows.iter()
                .map(|r| phone_key(r, region))
                .collect::<Vec<_>>()
        },
        || {
            rows.par_iter()
                .map(PersonRecord::without_phone)
                .collect::<Vec<_>>()
        },
    );
    for (record, phone) in records.iter_mut().zip(phones) {
        record.phone = phone;
    }
    records
}

/// The summary of a run that found its input unchanged.
fn unchanged_summary(
    options: &RunOptions,
    previous: fingerprint::Recorded,
    organizations: u64,
    people: u64,
    phase_ms: BTreeMap<String, u64>,
    started: Instant,
) -> ResolveSummary {
    let entities = |kind: &str| {
        previous
            .summary
            .get(kind)
            .and_then(|k| k.get("entities"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    let summary = ResolveSummary {
        dry_run: options.dry_run,
        run_id: None,
        unchanged: true,
        unchanged_since_run: Some(previous.run_id),
        input_fingerprint: (!options.dry_run).then_some(previous.fingerprint),
        organizations: KindSummary {
            rows: organizations,
            entities: entities("organizations"),
            ..KindSummary::default()
        },
        people: KindSummary {
            rows: people,
            entities: entities("people"),
            ..KindSummary::default()
        },
        entity_writes: 0,
        phase_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    tracing::info!(
        since_run = previous.run_id,
        elapsed_ms = summary.elapsed_ms,
        "resolve input unchanged since the last run: nothing to do"
    );
    summary
}

/// Counts of recorded merges applied.
#[derive(Debug, Clone, Copy, Default)]
struct MergeCounts {
    respected: u64,
    undone: u64,
}

/// Forces the rows of every merge in force together (and marks them `merge`), and
/// tags the two sides of every undone merge so no rule joins them again.
fn apply_recorded_merges(linker: &mut Linker, ids: &[i64], state: &StoredState) -> MergeCounts {
    let index = |sid: i64| ids.binary_search(&sid).ok().map(|i| i as u32);
    let mut counts = MergeCounts::default();
    let mut merged_rows: Vec<u32> = Vec::new();
    for m in &state.merges {
        let (mut w, mut l) = (m.winner_rows.clone(), m.loser_rows.clone());
        if w.is_empty() && l.is_empty() {
            // A merge recorded without its rows: fall back to the rows the two
            // entities are named after.
            w.push(m.winner.n);
            l.push(m.loser.n);
        }
        let w: Vec<u32> = w.into_iter().filter_map(index).collect();
        let l: Vec<u32> = l.into_iter().filter_map(index).collect();
        if m.undone {
            counts.undone += 1;
            for (rows, side) in [(&w, 0u64), (&l, 1u64)] {
                for &r in rows {
                    linker
                        .clusters
                        .add_evidence(r, (EvidenceKind::UndoneMerge(m.id), side));
                }
            }
        } else {
            counts.respected += 1;
            let mut all = w.into_iter().chain(l);
            if let Some(first) = all.next() {
                merged_rows.push(first);
                for r in all {
                    linker.force(first, r);
                    merged_rows.push(r);
                }
            }
        }
    }
    for r in merged_rows {
        linker.rule_of[r as usize] = Some(LinkRule::Merge);
    }
    counts
}

/// A person row's exclusive evidence: LinkedIn profile, generational suffix, middle
/// initial. Compatibility is checked on whole clusters, so "John Smith" can join "John
/// Smith Sr." or "John Smith Jr." but never both.
fn person_evidence(p: &PersonRecord) -> Vec<Evidence> {
    let mut ev: Vec<Evidence> = Vec::new();
    if let Some(l) = &p.linkedin {
        ev.push((EvidenceKind::LinkedinProfile, key_hash(l)));
    }
    if let Some(g) = p.name.generation {
        ev.push((EvidenceKind::Generation, g as u64));
    }
    if let Some(m) = p.name.middle_initial() {
        ev.push((EvidenceKind::MiddleInitial, u64::from(m)));
    }
    ev
}

/// The entity of every row.
fn entity_per_row(n: usize, groups: &[Vec<u32>], a: &Assignment) -> Vec<EntityId> {
    let mut out = vec![EntityId::new(EntityKind::Person, 0); n];
    for (g, rows) in groups.iter().enumerate() {
        for &r in rows {
            out[r as usize] = a.entity_of_group[g];
        }
    }
    out
}

/// Adds a `conflict` candidate for every refused union between two entities.
fn with_conflicts(
    mut proposed: Vec<Proposed>,
    blocked: &[BlockedLink],
    entity: &[EntityId],
) -> Vec<Proposed> {
    let mut extra: Vec<(u32, u32, f32, Reasons)> = Vec::new();
    for b in blocked {
        if matches!(b.evidence, EvidenceKind::UndoneMerge(_)) {
            continue;
        }
        let mut r = Reasons::default().with(Reason::Conflict);
        r.add(match b.evidence {
            EvidenceKind::LinkedinProfile | EvidenceKind::LinkedinCompany => {
                Reason::ConflictLinkedin
            }
            EvidenceKind::Generation | EvidenceKind::MiddleInitial => Reason::ConflictName,
            _ => Reason::ConflictDomain,
        });
        r.add(match b.rule {
            LinkRule::Email => Reason::RuleEmail,
            LinkRule::PhoneName => Reason::RulePhoneName,
            LinkRule::NameOrg => Reason::RuleNameOrg,
            LinkRule::LegalName => Reason::RuleLegalName,
            LinkRule::Linkedin => Reason::RuleLinkedin,
            _ => Reason::RuleDomain,
        });
        extra.push((b.a, b.b, 0.5, r));
    }
    if extra.is_empty() {
        return proposed;
    }
    let conflicts = to_entity_pairs(extra, entity);
    let mut index: HashMap<(EntityId, EntityId), usize> = proposed
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.a, p.b), i))
        .collect();
    for c in conflicts {
        match index.get(&(c.a, c.b)) {
            Some(&i) => proposed[i].reasons = proposed[i].reasons.union(c.reasons),
            None => {
                index.insert((c.a, c.b), proposed.len());
                proposed.push(c);
            }
        }
    }
    proposed.sort_by_key(|x| (x.a, x.b));
    proposed
}

fn finish_kind(
    computed: &Computed<'_>,
    stored: &StoredState,
    linker: &Linker,
    merges: MergeCounts,
    cstats: CandidateStats,
) -> KindResult {
    let plan = diff(computed, stored);
    let a = computed.assignment;
    let count = |c: LinkChange| plan.links.iter().filter(|l| l.change == c).count() as u64;
    let mut entities: Vec<EntityId> = a.entity_of_group.clone();
    entities.sort_unstable();
    entities.dedup();
    let summary = KindSummary {
        rows: computed.ids.len() as u64,
        entities: entities.len() as u64,
        entities_created: plan.creates.len() as u64,
        entities_revived: plan.revives.len() as u64,
        entities_retired: plan.retires.len() as u64,
        entities_renamed: plan.renames.len() as u64,
        links_added: count(LinkChange::Added),
        links_moved: count(LinkChange::Moved),
        links_rule_changed: count(LinkChange::RuleChanged),
        links_removed: plan.unlinks.len() as u64,
        unions_by_rule: linker
            .unions
            .iter()
            .map(|(r, n)| (r.as_str().to_owned(), *n))
            .collect(),
        merges_by_rule: plan.merges.len() as u64,
        merges_respected: merges.respected,
        undone_merges_respected: merges.undone,
        conflicts: linker
            .blocked
            .iter()
            .filter(|b| !matches!(b.evidence, EvidenceKind::UndoneMerge(_)))
            .count() as u64,
        splits: a.splits,
        splits_deferred: a.splits_deferred,
        rule_groups_capped: linker.capped_groups,
        candidate_blocks: cstats.blocks,
        candidate_blocks_capped: cstats.blocks_capped,
        candidate_pairs_skipped: cstats.pairs_skipped,
        candidate_pairs_compared: cstats.pairs_compared,
        candidates_proposed: computed.proposed.len() as u64,
        candidates_new: plan.candidate_inserts.len() as u64,
        candidates_updated: plan.candidate_updates.len() as u64,
        candidates_kept: plan.candidates_kept,
        candidates_removed: plan.candidate_deletes.len() as u64,
        candidates_decided_respected: plan.candidates_decided,
        candidates_repointed: plan.candidate_repoints.len() as u64,
        candidates_undone_skipped: plan.candidates_undone,
        foreign_rows: stored.foreign_ids,
    };
    KindResult { plan, summary }
}
