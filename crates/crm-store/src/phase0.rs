//! Reads and writes of the Phase-0 tables (DESIGN §3).
//!
//! Writers take a `&Transaction` so that a step's changes land together with the state
//! they depend on (e.g. `ingest_indexed_rows` and the watermark in one commit, an MCP write
//! and its log row in one commit). Readers take a `&Connection`. Times are passed in by the
//! caller (`now`), which keeps the functions deterministic and testable.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::{StoreError, excerpt, sql};
use crate::queries::{IN_CHUNK, placeholders};
use crate::rows::{SourceTable, text};
use crate::timestamp::{Timestamp, Watermark};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $table:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// The text stored in SQLite.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(StoreError::InvalidValue {
                        table: $table,
                        message: format!(
                            "unknown {} `{}`", stringify!($name), excerpt(other)
                        ),
                    }),
                }
            }
        }
    };
}

string_enum!(
    /// The kind of a canonical entity.
    EntityKind, "entities" {
        /// A person (rows of `people`).
        Person = "person",
        /// An organisation (rows of `organizations`).
        Organization = "organization",
    }
);

impl EntityKind {
    /// The source table whose rows link to entities of this kind.
    pub fn source_table(self) -> SourceTable {
        match self {
            Self::Person => SourceTable::People,
            Self::Organization => SourceTable::Organizations,
        }
    }

    /// The entity id for a source row: `person:<id>` or `organization:<id>`.
    pub fn entity_id(self, source_id: i64) -> String {
        format!("{}:{source_id}", self.as_str())
    }
}

string_enum!(
    /// The state of a flagged candidate pair.
    CandidateStatus, "entity_candidates" {
        /// Waiting for the fuzzy tier or a human.
        Pending = "pending",
        /// Judged the same entity and merged.
        Merged = "merged",
        /// Judged different entities.
        Rejected = "rejected",
        /// The judge failed or answered off-topic; inspect `raw_reply`.
        Error = "error",
    }
);

string_enum!(
    /// The state of a run in `ingest_runs`.
    RunStatus, "ingest_runs" {
        /// Started, not finished (or crashed).
        Running = "running",
        /// Finished successfully.
        Ok = "ok",
        /// Finished with an error.
        Failed = "failed",
    }
);

fn parse_col<T: FromStr<Err = StoreError>>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s = text(row, idx)?.unwrap_or_default();
    s.parse::<T>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Timestamp> {
    let s = text(row, idx)?.unwrap_or_default();
    Timestamp::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn opt_ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
    match text(row, idx)? {
        None => Ok(None),
        Some(s) => Timestamp::parse(&s).map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
        }),
    }
}

fn json_col<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let s = text(row, idx)?.unwrap_or_else(|| "null".into());
    serde_json::from_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn to_json(value: &impl Serialize, context: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Json {
        context: context.to_owned(),
        source,
    })
}

// ---------------------------------------------------------------------------------------
// entities

/// A canonical entity (`entities`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// `person:<lowest source id at creation>` or `organization:<...>`; stable for life.
    pub entity_id: String,
    /// Person or organisation.
    pub kind: EntityKind,
    /// The name shown for the entity.
    pub display_name: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// Set when merged into another entity (or otherwise retired).
    pub deleted_at: Option<Timestamp>,
    /// The winner's id when this entity lost a merge.
    pub merged_into: Option<String>,
}

const ENTITY_COLUMNS: &str =
    "entity_id, kind, display_name, created_at, updated_at, deleted_at, merged_into";

fn entity_from_row(row: &Row<'_>) -> rusqlite::Result<Entity> {
    Ok(Entity {
        entity_id: row.get(0)?,
        kind: parse_col(row, 1)?,
        display_name: text(row, 2)?,
        created_at: ts_col(row, 3)?,
        updated_at: ts_col(row, 4)?,
        deleted_at: opt_ts_col(row, 5)?,
        merged_into: text(row, 6)?,
    })
}

/// Inserts a new entity; fails if the id exists.
pub fn insert_entity(tx: &Transaction<'_>, entity: &Entity) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO entities ({ENTITY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            entity.entity_id,
            entity.kind.as_str(),
            entity.display_name,
            entity.created_at.to_canonical(),
            entity.updated_at.to_canonical(),
            entity.deleted_at.map(Timestamp::to_canonical),
            entity.merged_into,
        ])
    })
    .map_err(sql(format!("inserting entity {}", entity.entity_id)))?;
    Ok(())
}

/// Sets an entity's display name; returns whether it changed (`updated_at` only moves then).
pub fn set_entity_display_name(
    tx: &Transaction<'_>,
    entity_id: &str,
    display_name: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE entities SET display_name = ?2, updated_at = ?3 \
             WHERE entity_id = ?1 AND display_name IS NOT ?2",
        )
        .and_then(|mut s| s.execute(params![entity_id, display_name, now.to_canonical()]))
        .map_err(sql(format!("renaming entity {entity_id}")))?;
    Ok(n > 0)
}

/// Retires `loser` into `winner` (sets `deleted_at` and `merged_into`); returns whether the
/// entity existed and was live.
pub fn retire_entity(
    tx: &Transaction<'_>,
    loser: &str,
    winner: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE entities SET deleted_at = ?3, merged_into = ?2, updated_at = ?3 \
             WHERE entity_id = ?1 AND deleted_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![loser, winner, now.to_canonical()]))
        .map_err(sql(format!("retiring entity {loser} into {winner}")))?;
    Ok(n > 0)
}

/// Brings a retired entity back (after a merge is undone); returns whether it was retired.
pub fn restore_entity(
    tx: &Transaction<'_>,
    entity_id: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE entities SET deleted_at = NULL, merged_into = NULL, updated_at = ?2 \
             WHERE entity_id = ?1 AND deleted_at IS NOT NULL",
        )
        .and_then(|mut s| s.execute(params![entity_id, now.to_canonical()]))
        .map_err(sql(format!("restoring entity {entity_id}")))?;
    Ok(n > 0)
}

/// One entity by id.
pub fn get_entity(conn: &Connection, entity_id: &str) -> Result<Option<Entity>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ENTITY_COLUMNS} FROM entities WHERE entity_id = ?1"
    ))
    .and_then(|mut s| s.query_row([entity_id], entity_from_row).optional())
    .map_err(sql(format!("reading entity {entity_id}")))
}

/// Entities by id (missing ids absent).
pub fn get_entities(
    conn: &Connection,
    entity_ids: &[String],
) -> Result<HashMap<String, Entity>, StoreError> {
    let mut out = HashMap::with_capacity(entity_ids.len());
    for chunk in entity_ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT {ENTITY_COLUMNS} FROM entities WHERE entity_id IN ({})",
            placeholders(chunk.len())
        );
        let rows = conn
            .prepare_cached(&query)
            .and_then(|mut s| {
                s.query_map(params_from_iter(chunk), entity_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql("reading entities by id"))?;
        out.extend(rows.into_iter().map(|e| (e.entity_id.clone(), e)));
    }
    Ok(out)
}

/// Up to `limit` entities of a kind with id after `after` (text order), live or not.
pub fn entities_page(
    conn: &Connection,
    kind: EntityKind,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Entity>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {ENTITY_COLUMNS} FROM entities WHERE kind = ?1 AND entity_id > ?2 \
         ORDER BY entity_id LIMIT ?3"
    ))
    .and_then(|mut s| {
        s.query_map(
            params![kind.as_str(), after.unwrap_or(""), limit_i64(limit)],
            entity_from_row,
        )?
        .collect()
    })
    .map_err(sql(format!("paging {kind} entities")))
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------
// entity_links

/// The link of one source row to its entity (`entity_links`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityLink {
    /// `people` or `organizations`.
    pub source_table: SourceTable,
    /// The source row.
    pub source_id: i64,
    /// The entity it belongs to.
    pub entity_id: String,
    /// Why: the rule that linked it (`email`, `linkedin`, `singleton`, `merge`, ...).
    pub rule: String,
    /// When the link was made or last moved.
    pub linked_at: Timestamp,
}

/// What [`upsert_link`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// The row had no link.
    Inserted,
    /// The row moved from another entity.
    Moved {
        /// The entity it was linked to before.
        from: String,
    },
    /// The row already linked to that entity (the rule may have been refreshed).
    Unchanged,
}

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<EntityLink> {
    Ok(EntityLink {
        source_table: parse_col(row, 0)?,
        source_id: row.get(1)?,
        entity_id: row.get(2)?,
        rule: text(row, 3)?.unwrap_or_default(),
        linked_at: ts_col(row, 4)?,
    })
}

/// Links a source row to an entity, inserting or moving the link. `linked_at` only moves
/// when the entity changes.
pub fn upsert_link(tx: &Transaction<'_>, link: &EntityLink) -> Result<LinkChange, StoreError> {
    let context = || {
        format!(
            "linking {}:{} to {}",
            link.source_table, link.source_id, link.entity_id
        )
    };
    let previous: Option<String> = tx
        .prepare_cached(
            "SELECT entity_id FROM entity_links WHERE source_table = ?1 AND source_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![link.source_table.as_str(), link.source_id], |r| {
                r.get(0)
            })
            .optional()
        })
        .map_err(sql(context()))?;
    let change = match previous {
        None => LinkChange::Inserted,
        Some(p) if p == link.entity_id => LinkChange::Unchanged,
        Some(p) => LinkChange::Moved { from: p },
    };
    let result = match change {
        LinkChange::Unchanged => tx
            .prepare_cached(
                "UPDATE entity_links SET rule = ?4 WHERE source_table = ?1 AND source_id = ?2 \
                 AND entity_id = ?3 AND rule IS NOT ?4",
            )
            .and_then(|mut s| {
                s.execute(params![
                    link.source_table.as_str(),
                    link.source_id,
                    link.entity_id,
                    link.rule
                ])
            }),
        LinkChange::Inserted | LinkChange::Moved { .. } => tx
            .prepare_cached(
                "INSERT INTO entity_links (source_table, source_id, entity_id, rule, linked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (source_table, source_id) DO UPDATE SET \
                 entity_id = excluded.entity_id, rule = excluded.rule, \
                 linked_at = excluded.linked_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    link.source_table.as_str(),
                    link.source_id,
                    link.entity_id,
                    link.rule,
                    link.linked_at.to_canonical()
                ])
            }),
    };
    result.map_err(sql(context()))?;
    Ok(change)
}

/// Removes the link of a source row (the row was hard-deleted); returns whether it existed.
pub fn delete_link(
    tx: &Transaction<'_>,
    table: SourceTable,
    source_id: i64,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM entity_links WHERE source_table = ?1 AND source_id = ?2")
        .and_then(|mut s| s.execute(params![table.as_str(), source_id]))
        .map_err(sql(format!("unlinking {table}:{source_id}")))?;
    Ok(n > 0)
}

/// Every link of an entity, by source id.
pub fn links_of_entity(conn: &Connection, entity_id: &str) -> Result<Vec<EntityLink>, StoreError> {
    conn.prepare_cached(
        "SELECT source_table, source_id, entity_id, rule, linked_at FROM entity_links \
         WHERE entity_id = ?1 ORDER BY source_table, source_id",
    )
    .and_then(|mut s| s.query_map([entity_id], link_from_row)?.collect())
    .map_err(sql(format!("reading the links of {entity_id}")))
}

/// The entity ids of source rows (rows without a link are absent).
pub fn entity_ids_of_rows(
    conn: &Connection,
    table: SourceTable,
    source_ids: &[i64],
) -> Result<HashMap<i64, String>, StoreError> {
    let mut out = HashMap::with_capacity(source_ids.len());
    for chunk in source_ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT source_id, entity_id FROM entity_links \
             WHERE source_table = ? AND source_id IN ({})",
            placeholders(chunk.len())
        );
        let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() + 1);
        values.push(table.as_str().to_owned().into());
        values.extend(chunk.iter().map(|&id| rusqlite::types::Value::Integer(id)));
        let pairs = conn
            .prepare_cached(&query)
            .and_then(|mut s| {
                s.query_map(params_from_iter(values), |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql(format!("reading entity ids of {table} rows")))?;
        out.extend(pairs);
    }
    Ok(out)
}

/// Up to `limit` links of a table with source id after `after_id`, by source id.
pub fn links_page(
    conn: &Connection,
    table: SourceTable,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<EntityLink>, StoreError> {
    conn.prepare_cached(
        "SELECT source_table, source_id, entity_id, rule, linked_at FROM entity_links \
         WHERE source_table = ?1 AND source_id > ?2 ORDER BY source_id LIMIT ?3",
    )
    .and_then(|mut s| {
        s.query_map(
            params![
                table.as_str(),
                after_id.unwrap_or(i64::MIN),
                limit_i64(limit)
            ],
            link_from_row,
        )?
        .collect()
    })
    .map_err(sql(format!("paging links of {table}")))
}

// ---------------------------------------------------------------------------------------
// entity_candidates

/// A pair flagged for review, as proposed by the resolver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewCandidate {
    /// Person or organisation.
    pub kind: EntityKind,
    /// One entity (the pair is stored with the smaller id first).
    pub entity_a: String,
    /// The other entity.
    pub entity_b: String,
    /// Why the pair was flagged (`nickname`, `typo`, ...).
    pub reasons: Vec<String>,
    /// The resolver's similarity score.
    pub score: f64,
}

/// A row of `entity_candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Primary key.
    pub id: i64,
    /// Person or organisation.
    pub kind: EntityKind,
    /// The entity with the smaller id.
    pub entity_a: String,
    /// The entity with the larger id.
    pub entity_b: String,
    /// Why the pair was flagged.
    pub reasons: Vec<String>,
    /// The resolver's similarity score.
    pub score: f64,
    /// Pending, merged, rejected or error.
    pub status: CandidateStatus,
    /// `rule`, `llm:<model>` or `human:<who>` once decided.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<Timestamp>,
    /// The judge's raw reply, kept for inspecting errors.
    pub raw_reply: Option<String>,
    /// When it was first flagged.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

const CANDIDATE_COLUMNS: &str = "id, kind, entity_a, entity_b, reasons, score, status, \
                                 decided_by, decided_at, raw_reply, created_at, updated_at";

fn candidate_from_row(row: &Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        id: row.get(0)?,
        kind: parse_col(row, 1)?,
        entity_a: row.get(2)?,
        entity_b: row.get(3)?,
        reasons: json_col(row, 4)?,
        score: row.get(5)?,
        status: parse_col(row, 6)?,
        decided_by: text(row, 7)?,
        decided_at: opt_ts_col(row, 8)?,
        raw_reply: text(row, 9)?,
        created_at: ts_col(row, 10)?,
        updated_at: ts_col(row, 11)?,
    })
}

/// Flags a pair. A new pair is inserted as pending; a pending pair gets the new reasons and
/// score; a decided pair (merged, rejected, error) is left exactly as it is, so re-running
/// the resolver never reopens a decision. Returns the stored candidate.
pub fn upsert_candidate(
    tx: &Transaction<'_>,
    candidate: &NewCandidate,
    now: Timestamp,
) -> Result<Candidate, StoreError> {
    let (a, b) = if candidate.entity_a <= candidate.entity_b {
        (&candidate.entity_a, &candidate.entity_b)
    } else {
        (&candidate.entity_b, &candidate.entity_a)
    };
    let context = || format!("flagging candidate {a} / {b}");
    let reasons = to_json(&candidate.reasons, "entity_candidates.reasons")?;
    tx.prepare_cached(
        "INSERT INTO entity_candidates \
         (kind, entity_a, entity_b, reasons, score, status, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6) \
         ON CONFLICT (kind, entity_a, entity_b) DO UPDATE SET \
         reasons = excluded.reasons, score = excluded.score, updated_at = excluded.updated_at \
         WHERE entity_candidates.status = 'pending' \
           AND (entity_candidates.reasons IS NOT excluded.reasons \
                OR entity_candidates.score IS NOT excluded.score)",
    )
    .and_then(|mut s| {
        s.execute(params![
            candidate.kind.as_str(),
            a,
            b,
            reasons,
            candidate.score,
            now.to_canonical()
        ])
    })
    .map_err(sql(context()))?;
    tx.prepare_cached(&format!(
        "SELECT {CANDIDATE_COLUMNS} FROM entity_candidates \
         WHERE kind = ?1 AND entity_a = ?2 AND entity_b = ?3"
    ))
    .and_then(|mut s| s.query_row(params![candidate.kind.as_str(), a, b], candidate_from_row))
    .map_err(sql(context()))
}

/// A decision on a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateDecision {
    /// Merged, rejected or error (pending reopens the pair).
    pub status: CandidateStatus,
    /// `rule`, `llm:<model>` or `human:<who>`.
    pub decided_by: String,
    /// The judge's raw reply, if any.
    pub raw_reply: Option<String>,
}

/// Records a decision; returns whether the candidate exists.
pub fn decide_candidate(
    tx: &Transaction<'_>,
    id: i64,
    decision: &CandidateDecision,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let reopen = decision.status == CandidateStatus::Pending;
    let n = tx
        .prepare_cached(
            "UPDATE entity_candidates SET status = ?2, decided_by = ?3, decided_at = ?4, \
             raw_reply = ?5, updated_at = ?6 WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                decision.status.as_str(),
                (!reopen).then_some(&decision.decided_by),
                (!reopen).then(|| now.to_canonical()),
                decision.raw_reply,
                now.to_canonical()
            ])
        })
        .map_err(sql(format!("deciding candidate {id}")))?;
    Ok(n > 0)
}

/// One candidate by id.
pub fn get_candidate(conn: &Connection, id: i64) -> Result<Option<Candidate>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {CANDIDATE_COLUMNS} FROM entity_candidates WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], candidate_from_row).optional())
    .map_err(sql(format!("reading candidate {id}")))
}

/// Up to `limit` candidates with a status and id after `after_id`, by id.
pub fn candidates_by_status(
    conn: &Connection,
    status: CandidateStatus,
    after_id: Option<i64>,
    limit: usize,
) -> Result<Vec<Candidate>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {CANDIDATE_COLUMNS} FROM entity_candidates WHERE status = ?1 AND id > ?2 \
         ORDER BY id LIMIT ?3"
    ))
    .and_then(|mut s| {
        s.query_map(
            params![
                status.as_str(),
                after_id.unwrap_or(i64::MIN),
                limit_i64(limit)
            ],
            candidate_from_row,
        )?
        .collect()
    })
    .map_err(sql(format!("reading {status} candidates")))
}

/// How many candidates are in each status.
pub fn candidate_counts(conn: &Connection) -> Result<HashMap<CandidateStatus, u64>, StoreError> {
    conn.prepare_cached("SELECT status, count(*) FROM entity_candidates GROUP BY status")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((parse_col::<CandidateStatus>(r, 0)?, r.get::<_, i64>(1)?))
            })?
            .map(|r| r.map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))))
            .collect()
        })
        .map_err(sql("counting candidates"))
}

// ---------------------------------------------------------------------------------------
// entity_merges

/// A merge decision to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMerge {
    /// Person or organisation.
    pub kind: EntityKind,
    /// The entity that keeps its id.
    pub winner: String,
    /// The entity retired into the winner.
    pub loser: String,
    /// `rule`, `llm:<model>` or `human:<who>`.
    pub decided_by: String,
    /// The judge's confidence, when it gave one.
    pub confidence: Option<f64>,
    /// Why.
    pub rationale: Option<String>,
}

/// A row of `entity_merges`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merge {
    /// Primary key.
    pub id: i64,
    /// Person or organisation.
    pub kind: EntityKind,
    /// The entity that kept its id.
    pub winner: String,
    /// The entity retired into the winner.
    pub loser: String,
    /// `rule`, `llm:<model>` or `human:<who>`.
    pub decided_by: String,
    /// The judge's confidence.
    pub confidence: Option<f64>,
    /// Why.
    pub rationale: Option<String>,
    /// When it was decided.
    pub created_at: Timestamp,
    /// When it was undone (an undo is a new fact; the row stays).
    pub undone_at: Option<Timestamp>,
    /// Who undid it.
    pub undone_by: Option<String>,
}

const MERGE_COLUMNS: &str = "id, kind, winner, loser, decided_by, confidence, rationale, \
                             created_at, undone_at, undone_by";

fn merge_from_row(row: &Row<'_>) -> rusqlite::Result<Merge> {
    Ok(Merge {
        id: row.get(0)?,
        kind: parse_col(row, 1)?,
        winner: row.get(2)?,
        loser: row.get(3)?,
        decided_by: text(row, 4)?.unwrap_or_default(),
        confidence: row.get(5)?,
        rationale: text(row, 6)?,
        created_at: ts_col(row, 7)?,
        undone_at: opt_ts_col(row, 8)?,
        undone_by: text(row, 9)?,
    })
}

/// Records a merge; returns its id.
pub fn insert_merge(
    tx: &Transaction<'_>,
    merge: &NewMerge,
    now: Timestamp,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO entity_merges \
         (kind, winner, loser, decided_by, confidence, rationale, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            merge.kind.as_str(),
            merge.winner,
            merge.loser,
            merge.decided_by,
            merge.confidence,
            merge.rationale,
            now.to_canonical()
        ])
    })
    .map_err(sql(format!(
        "recording merge of {} into {}",
        merge.loser, merge.winner
    )))?;
    Ok(tx.last_insert_rowid())
}

/// Marks a merge undone; returns false when it does not exist or was already undone.
pub fn undo_merge(
    tx: &Transaction<'_>,
    id: i64,
    undone_by: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE entity_merges SET undone_at = ?2, undone_by = ?3 \
             WHERE id = ?1 AND undone_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![id, now.to_canonical(), undone_by]))
        .map_err(sql(format!("undoing merge {id}")))?;
    Ok(n > 0)
}

/// Merges in force (not undone), oldest first; all kinds when `kind` is `None`.
pub fn active_merges(
    conn: &Connection,
    kind: Option<EntityKind>,
) -> Result<Vec<Merge>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {MERGE_COLUMNS} FROM entity_merges \
         WHERE undone_at IS NULL AND (?1 IS NULL OR kind = ?1) ORDER BY id"
    ))
    .and_then(|mut s| {
        s.query_map([kind.map(EntityKind::as_str)], merge_from_row)?
            .collect()
    })
    .map_err(sql("reading active merges"))
}

/// One merge by id.
pub fn get_merge(conn: &Connection, id: i64) -> Result<Option<Merge>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {MERGE_COLUMNS} FROM entity_merges WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], merge_from_row).optional())
    .map_err(sql(format!("reading merge {id}")))
}

// ---------------------------------------------------------------------------------------
// ingest_sync_state

/// Sync progress of one source table into one collection (`ingest_sync_state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The index collection.
    pub collection: String,
    /// The source table.
    pub source_table: SourceTable,
    /// Keyset position of the last row indexed; `None` before the first batch.
    pub watermark: Option<Watermark>,
    /// Embedding model, dimension, BM25 parameters and chunking of the index; a change
    /// forces a rebuild.
    pub fingerprint: Option<String>,
    /// When a sync last ran.
    pub last_run_at: Option<Timestamp>,
    /// When a full backfill last completed.
    pub last_full_at: Option<Timestamp>,
}

/// The sync state of a collection and table, if recorded.
pub fn get_sync_state(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
) -> Result<Option<SyncState>, StoreError> {
    conn.prepare_cached(
        "SELECT watermark_updated_at, watermark_id, fingerprint, last_run_at, last_full_at \
         FROM ingest_sync_state WHERE collection = ?1 AND source_table = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![collection, table.as_str()], |r| {
            let wm_at = opt_ts_col(r, 0)?;
            let wm_id: Option<i64> = r.get(1)?;
            Ok(SyncState {
                collection: collection.to_owned(),
                source_table: table,
                watermark: wm_at.zip(wm_id).map(|(at, id)| Watermark::new(at, id)),
                fingerprint: text(r, 2)?,
                last_run_at: opt_ts_col(r, 3)?,
                last_full_at: opt_ts_col(r, 4)?,
            })
        })
        .optional()
    })
    .map_err(sql(format!("reading sync state of {collection}/{table}")))
}

/// Writes the sync state of a collection and table (insert or replace).
pub fn set_sync_state(tx: &Transaction<'_>, state: &SyncState) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO ingest_sync_state (collection, source_table, watermark_updated_at, \
         watermark_id, fingerprint, last_run_at, last_full_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (collection, source_table) DO UPDATE SET \
         watermark_updated_at = excluded.watermark_updated_at, \
         watermark_id = excluded.watermark_id, fingerprint = excluded.fingerprint, \
         last_run_at = excluded.last_run_at, last_full_at = excluded.last_full_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            state.collection,
            state.source_table.as_str(),
            state.watermark.map(|w| w.updated_at.to_canonical()),
            state.watermark.map(|w| w.id),
            state.fingerprint,
            state.last_run_at.map(Timestamp::to_canonical),
            state.last_full_at.map(Timestamp::to_canonical),
        ])
    })
    .map_err(sql(format!(
        "writing sync state of {}/{}",
        state.collection, state.source_table
    )))?;
    Ok(())
}

/// Forgets every sync state and indexed row of a collection (it is being recreated);
/// returns the number of indexed rows removed.
pub fn reset_collection(tx: &Transaction<'_>, collection: &str) -> Result<usize, StoreError> {
    tx.execute(
        "DELETE FROM ingest_sync_state WHERE collection = ?1",
        [collection],
    )
    .map_err(sql(format!("resetting sync state of {collection}")))?;
    tx.execute(
        "DELETE FROM ingest_reconciled WHERE collection = ?1",
        [collection],
    )
    .map_err(sql(format!(
        "resetting reconciliation marks of {collection}"
    )))?;
    tx.execute(
        "DELETE FROM ingest_indexed_rows WHERE collection = ?1",
        [collection],
    )
    .map_err(sql(format!("resetting indexed rows of {collection}")))
}

// ---------------------------------------------------------------------------------------
// ingest_indexed_rows

/// What the index holds for one source row (`ingest_indexed_rows`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedRow {
    /// The index collection.
    pub collection: String,
    /// The source table.
    pub source_table: SourceTable,
    /// The source row.
    pub source_id: i64,
    /// The canonical entity id carried in the row's payloads.
    pub entity_id: Option<String>,
    /// [`crate::Document::content_hash`] of the indexed document.
    pub content_hash: String,
    /// How many chunks (points) the row has.
    pub chunk_count: u32,
    /// When it was indexed.
    pub indexed_at: Timestamp,
}

fn indexed_from_row(row: &Row<'_>) -> rusqlite::Result<IndexedRow> {
    Ok(IndexedRow {
        collection: row.get(0)?,
        source_table: parse_col(row, 1)?,
        source_id: row.get(2)?,
        entity_id: text(row, 3)?,
        content_hash: text(row, 4)?.unwrap_or_default(),
        chunk_count: u32::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        indexed_at: ts_col(row, 6)?,
    })
}

const INDEXED_COLUMNS: &str =
    "collection, source_table, source_id, entity_id, content_hash, chunk_count, indexed_at";

/// Records what the index holds for a row (insert or replace).
pub fn upsert_indexed_row(tx: &Transaction<'_>, row: &IndexedRow) -> Result<(), StoreError> {
    tx.prepare_cached(&format!(
        "INSERT INTO ingest_indexed_rows ({INDEXED_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (collection, source_table, source_id) DO UPDATE SET \
         entity_id = excluded.entity_id, content_hash = excluded.content_hash, \
         chunk_count = excluded.chunk_count, indexed_at = excluded.indexed_at"
    ))
    .and_then(|mut s| {
        s.execute(params![
            row.collection,
            row.source_table.as_str(),
            row.source_id,
            row.entity_id,
            row.content_hash,
            row.chunk_count,
            row.indexed_at.to_canonical()
        ])
    })
    .map_err(sql(format!(
        "recording indexed row {}:{} in {}",
        row.source_table, row.source_id, row.collection
    )))?;
    Ok(())
}

/// Updates only the entity id recorded for an indexed row (after a payload patch);
/// returns whether the row exists.
pub fn set_indexed_entity(
    tx: &Transaction<'_>,
    collection: &str,
    table: SourceTable,
    source_id: i64,
    entity_id: Option<&str>,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE ingest_indexed_rows SET entity_id = ?4 \
             WHERE collection = ?1 AND source_table = ?2 AND source_id = ?3",
        )
        .and_then(|mut s| s.execute(params![collection, table.as_str(), source_id, entity_id]))
        .map_err(sql(format!(
            "updating the entity of indexed row {table}:{source_id}"
        )))?;
    Ok(n > 0)
}

/// Forgets an indexed row (its points were deleted); returns whether it existed.
pub fn delete_indexed_row(
    tx: &Transaction<'_>,
    collection: &str,
    table: SourceTable,
    source_id: i64,
) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached(
            "DELETE FROM ingest_indexed_rows \
             WHERE collection = ?1 AND source_table = ?2 AND source_id = ?3",
        )
        .and_then(|mut s| s.execute(params![collection, table.as_str(), source_id]))
        .map_err(sql(format!(
            "forgetting indexed row {table}:{source_id} in {collection}"
        )))?;
    Ok(n > 0)
}

/// The indexed-row records of the given source rows (rows never indexed are absent).
pub fn indexed_rows(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
    source_ids: &[i64],
) -> Result<HashMap<i64, IndexedRow>, StoreError> {
    let mut out = HashMap::with_capacity(source_ids.len());
    for chunk in source_ids.chunks(IN_CHUNK) {
        let query = format!(
            "SELECT {INDEXED_COLUMNS} FROM ingest_indexed_rows \
             WHERE collection = ? AND source_table = ? AND source_id IN ({})",
            placeholders(chunk.len())
        );
        let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(chunk.len() + 2);
        values.push(collection.to_owned().into());
        values.push(table.as_str().to_owned().into());
        values.extend(chunk.iter().map(|&id| rusqlite::types::Value::Integer(id)));
        let rows = conn
            .prepare_cached(&query)
            .and_then(|mut s| {
                s.query_map(params_from_iter(values), indexed_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(sql(format!("reading indexed {table} rows of {collection}")))?;
        out.extend(rows.into_iter().map(|r| (r.source_id, r)));
    }
    Ok(out)
}

/// An indexed row whose payload carries an entity id that is no longer the row's entity
/// (after a merge or an undo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleEntityRow {
    /// The source table.
    pub source_table: SourceTable,
    /// The source row.
    pub source_id: i64,
    /// The entity id in the index payload.
    pub indexed_entity_id: Option<String>,
    /// The row's entity id now (from `entity_links`).
    pub current_entity_id: Option<String>,
}

/// Up to `limit` indexed people and organisation rows of `collection` whose recorded entity
/// id differs from their current link, by table and id.
pub fn stale_entity_rows(
    conn: &Connection,
    collection: &str,
    limit: usize,
) -> Result<Vec<StaleEntityRow>, StoreError> {
    conn.prepare_cached(
        "SELECT r.source_table, r.source_id, r.entity_id, l.entity_id \
         FROM ingest_indexed_rows r \
         JOIN entity_links l ON l.source_table = r.source_table AND l.source_id = r.source_id \
         WHERE r.collection = ?1 AND r.entity_id IS NOT l.entity_id \
         ORDER BY r.source_table, r.source_id LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![collection, limit_i64(limit)], |r| {
            Ok(StaleEntityRow {
                source_table: parse_col(r, 0)?,
                source_id: r.get(1)?,
                indexed_entity_id: text(r, 2)?,
                current_entity_id: text(r, 3)?,
            })
        })?
        .collect()
    })
    .map_err(sql(format!("finding stale entity ids in {collection}")))
}

/// Number of indexed rows of a collection and table.
pub fn count_indexed_rows(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
) -> Result<u64, StoreError> {
    conn.prepare_cached(
        "SELECT count(*) FROM ingest_indexed_rows WHERE collection = ?1 AND source_table = ?2",
    )
    .and_then(|mut s| s.query_row(params![collection, table.as_str()], |r| r.get::<_, i64>(0)))
    .map(|n| u64::try_from(n).unwrap_or(0))
    .map_err(sql(format!(
        "counting indexed {table} rows of {collection}"
    )))
}

// ---------------------------------------------------------------------------------------
// ingest_runs

/// A row of `ingest_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Primary key.
    pub id: i64,
    /// The step (`resolve`, `fuzzy`, `backfill`, `sync`, ...).
    pub step: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished (`None` while running or after a crash).
    pub finished_at: Option<Timestamp>,
    /// Running, ok or failed.
    pub status: RunStatus,
    /// The step's counts.
    pub counts: serde_json::Value,
    /// The error, for a failed run.
    pub error: Option<String>,
}

/// Records the start of a run; returns its id.
pub fn start_run(tx: &Transaction<'_>, step: &str, now: Timestamp) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO ingest_runs (step, started_at, status) VALUES (?1, ?2, 'running')",
    )
    .and_then(|mut s| s.execute(params![step, now.to_canonical()]))
    .map_err(sql(format!("starting a {step} run")))?;
    Ok(tx.last_insert_rowid())
}

/// Records the end of a run with its counts (and error, for a failed run); returns whether
/// the run exists.
pub fn finish_run(
    tx: &Transaction<'_>,
    id: i64,
    status: RunStatus,
    counts: &serde_json::Value,
    error: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let counts = to_json(counts, "ingest_runs.counts_json")?;
    let n = tx
        .prepare_cached(
            "UPDATE ingest_runs SET finished_at = ?2, status = ?3, counts_json = ?4, error = ?5 \
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                now.to_canonical(),
                status.as_str(),
                counts,
                error
            ])
        })
        .map_err(sql(format!("finishing run {id}")))?;
    Ok(n > 0)
}

/// The most recent runs of a step (all steps when `None`), newest first.
pub fn recent_runs(
    conn: &Connection,
    step: Option<&str>,
    limit: usize,
) -> Result<Vec<Run>, StoreError> {
    conn.prepare_cached(
        "SELECT id, step, started_at, finished_at, status, counts_json, error FROM ingest_runs \
         WHERE (?1 IS NULL OR step = ?1) ORDER BY id DESC LIMIT ?2",
    )
    .and_then(|mut s| {
        s.query_map(params![step, limit_i64(limit)], |r| {
            Ok(Run {
                id: r.get(0)?,
                step: text(r, 1)?.unwrap_or_default(),
                started_at: ts_col(r, 2)?,
                finished_at: opt_ts_col(r, 3)?,
                status: parse_col(r, 4)?,
                counts: json_col(r, 5)?,
                error: text(r, 6)?,
            })
        })?
        .collect()
    })
    .map_err(sql("reading recent runs"))
}

// ---------------------------------------------------------------------------------------
// mcp_write_log

/// One MCP write, logged in the same transaction as the write itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpWrite {
    /// When.
    pub at: Timestamp,
    /// The tool name.
    pub tool: String,
    /// The MCP client (name/version from the handshake, or the HTTP peer).
    pub client: Option<String>,
    /// The tool's arguments.
    pub arguments: serde_json::Value,
    /// The CRM table written.
    pub target_table: Option<String>,
    /// The CRM row written.
    pub target_id: Option<i64>,
    /// The row before the write.
    pub before: Option<serde_json::Value>,
    /// The row after the write.
    pub after: Option<serde_json::Value>,
    /// `ok`, or what went wrong.
    pub outcome: String,
}

/// Appends to `mcp_write_log`; returns the log row id.
pub fn insert_mcp_write(tx: &Transaction<'_>, entry: &McpWrite) -> Result<i64, StoreError> {
    let arguments = to_json(&entry.arguments, "mcp_write_log.arguments_json")?;
    let before = entry
        .before
        .as_ref()
        .map(|v| to_json(v, "mcp_write_log.before_json"))
        .transpose()?;
    let after = entry
        .after
        .as_ref()
        .map(|v| to_json(v, "mcp_write_log.after_json"))
        .transpose()?;
    tx.prepare_cached(
        "INSERT INTO mcp_write_log (at, tool, client, arguments_json, target_table, target_id, \
         before_json, after_json, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            entry.at.to_canonical(),
            entry.tool,
            entry.client,
            arguments,
            entry.target_table,
            entry.target_id,
            before,
            after,
            entry.outcome
        ])
    })
    .map_err(sql(format!("logging MCP write by tool {}", entry.tool)))?;
    Ok(tx.last_insert_rowid())
}

/// The most recent MCP writes, newest first.
pub fn recent_mcp_writes(conn: &Connection, limit: usize) -> Result<Vec<McpWrite>, StoreError> {
    conn.prepare_cached(
        "SELECT at, tool, client, arguments_json, target_table, target_id, before_json, \
         after_json, outcome FROM mcp_write_log ORDER BY id DESC LIMIT ?1",
    )
    .and_then(|mut s| {
        s.query_map([limit_i64(limit)], |r| {
            let opt_json = |idx| -> rusqlite::Result<Option<serde_json::Value>> {
                match text(r, idx)? {
                    None => Ok(None),
                    Some(_) => json_col(r, idx).map(Some),
                }
            };
            Ok(McpWrite {
                at: ts_col(r, 0)?,
                tool: text(r, 1)?.unwrap_or_default(),
                client: text(r, 2)?,
                arguments: json_col(r, 3)?,
                target_table: text(r, 4)?,
                target_id: r.get(5)?,
                before: opt_json(6)?,
                after: opt_json(7)?,
                outcome: text(r, 8)?.unwrap_or_default(),
            })
        })?
        .collect()
    })
    .map_err(sql("reading the MCP write log"))
}

// ---------------------------------------------------------------------------------------
// substrate_leases

/// A named lease that lets one run at a time do a step (`substrate_leases`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease name (e.g. `sync:crm_chunks`).
    pub name: String,
    /// A unique id of the holding run.
    pub holder: String,
    /// The holder's process id.
    pub pid: u32,
    /// The holder's host name.
    pub hostname: String,
    /// When it was acquired.
    pub acquired_at: Timestamp,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// Who asks for a lease, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The lease name.
    pub name: String,
    /// A unique id of this run (e.g. a UUID).
    pub holder: String,
    /// This process's id.
    pub pid: u32,
    /// This host's name.
    pub hostname: String,
    /// How long the lease lasts without renewal.
    pub ttl: Duration,
}

/// Why a held lease was taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleReason {
    /// It expired without renewal.
    Expired,
    /// Its holder ran on this host and that process no longer exists.
    DeadProcess,
}

/// What [`acquire_lease`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The lease was free (or already ours) and is now ours.
    Acquired(Lease),
    /// The lease was held by a stale holder and is now ours.
    TookOver {
        /// Our lease.
        lease: Lease,
        /// The stale lease we replaced.
        previous: Lease,
        /// Why it was stale.
        reason: StaleReason,
    },
    /// Someone else holds the lease; try later.
    Held(Lease),
}

fn lease_from_row(row: &Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        name: row.get(0)?,
        holder: text(row, 1)?.unwrap_or_default(),
        pid: u32::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
        hostname: text(row, 3)?.unwrap_or_default(),
        acquired_at: ts_col(row, 4)?,
        expires_at: ts_col(row, 5)?,
    })
}

/// The current holder of a lease, if any (expired or not).
pub fn get_lease(conn: &Connection, name: &str) -> Result<Option<Lease>, StoreError> {
    conn.prepare_cached(
        "SELECT name, holder, pid, hostname, acquired_at, expires_at FROM substrate_leases \
         WHERE name = ?1",
    )
    .and_then(|mut s| s.query_row([name], lease_from_row).optional())
    .map_err(sql(format!("reading lease {name}")))
}

/// Tries to take a lease. It is granted when free, already ours, expired, or held by a
/// process of this host that no longer exists.
///
/// Run it in an `IMMEDIATE` transaction (`Connection::transaction_with_behavior`) so that
/// two contenders cannot both read "free" and both write.
pub fn acquire_lease(
    tx: &Transaction<'_>,
    request: &LeaseRequest,
    now: Timestamp,
) -> Result<LeaseOutcome, StoreError> {
    let current = get_lease(tx, &request.name)?;
    let lease = Lease {
        name: request.name.clone(),
        holder: request.holder.clone(),
        pid: request.pid,
        hostname: request.hostname.clone(),
        acquired_at: now,
        expires_at: now.saturating_add(request.ttl),
    };
    let stale = match &current {
        None => None,
        Some(c) if c.holder == request.holder => None,
        Some(c) if c.expires_at <= now => Some(StaleReason::Expired),
        Some(c) if c.hostname == request.hostname && process_is_alive(c.pid) == Some(false) => {
            Some(StaleReason::DeadProcess)
        }
        Some(c) => return Ok(LeaseOutcome::Held(c.clone())),
    };
    let acquired_at = match &current {
        Some(c) if c.holder == request.holder => c.acquired_at,
        _ => now,
    };
    let lease = Lease {
        acquired_at,
        ..lease
    };
    tx.prepare_cached(
        "INSERT INTO substrate_leases (name, holder, pid, hostname, acquired_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, \
         hostname = excluded.hostname, acquired_at = excluded.acquired_at, \
         expires_at = excluded.expires_at",
    )
    .and_then(|mut s| {
        s.execute(params![
            lease.name,
            lease.holder,
            lease.pid,
            lease.hostname,
            lease.acquired_at.to_canonical(),
            lease.expires_at.to_canonical()
        ])
    })
    .map_err(sql(format!("acquiring lease {}", request.name)))?;
    Ok(match (stale, current) {
        (Some(reason), Some(previous)) => {
            tracing::warn!(
                lease = %request.name,
                previous_holder = %previous.holder,
                previous_pid = previous.pid,
                reason = ?reason,
                "took over a stale lease"
            );
            LeaseOutcome::TookOver {
                lease,
                previous,
                reason,
            }
        }
        _ => LeaseOutcome::Acquired(lease),
    })
}

/// Extends a lease we hold by `ttl` from `now`; returns the renewed lease, or `None` when we
/// no longer hold it (it was taken over: stop working).
pub fn renew_lease(
    tx: &Transaction<'_>,
    name: &str,
    holder: &str,
    ttl: Duration,
    now: Timestamp,
) -> Result<Option<Lease>, StoreError> {
    let n = tx
        .prepare_cached(
            "UPDATE substrate_leases SET expires_at = ?3 WHERE name = ?1 AND holder = ?2",
        )
        .and_then(|mut s| {
            s.execute(params![
                name,
                holder,
                now.saturating_add(ttl).to_canonical()
            ])
        })
        .map_err(sql(format!("renewing lease {name}")))?;
    if n == 0 {
        return Ok(None);
    }
    get_lease(tx, name)
}

/// Gives a lease up; returns whether we held it.
pub fn release_lease(tx: &Transaction<'_>, name: &str, holder: &str) -> Result<bool, StoreError> {
    let n = tx
        .prepare_cached("DELETE FROM substrate_leases WHERE name = ?1 AND holder = ?2")
        .and_then(|mut s| s.execute(params![name, holder]))
        .map_err(sql(format!("releasing lease {name}")))?;
    Ok(n > 0)
}

/// Whether a process of this host exists: `Some` on Linux (via `/proc`), `None` where it
/// cannot be told (then only expiry frees a lease).
pub fn process_is_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") {
        let proc = std::path::Path::new("/proc");
        if proc.join("self").exists() {
            return Some(pid != 0 && proc.join(pid.to_string()).exists());
        }
    }
    None
}
