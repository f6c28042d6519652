//! What the Phase-0 tables say now: entities, links, merges and candidates of one kind,
//! read in bulk with lean queries.

use std::collections::HashMap;

use rusqlite::{Connection, params};

use crate::ResolveError;
use crate::error::sqlite;
use crate::ids::{EntityId, EntityKind, LinkRule};

/// An entity's stored status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntityStatus {
    /// `deleted_at IS NULL`.
    Live,
    /// Soft-deleted without a winner (its rows went away).
    Retired,
    /// Lost a merge.
    MergedInto(EntityId),
}

/// A stored entity.
#[derive(Debug, Clone)]
pub(crate) struct StoredEntity {
    pub(crate) status: EntityStatus,
    pub(crate) display_name: Option<Box<str>>,
}

/// A stored link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredLink {
    pub(crate) entity: EntityId,
    /// `None` for a rule text this build does not write (it will be rewritten).
    pub(crate) rule: Option<LinkRule>,
}

/// A stored merge with the rows each side held.
#[derive(Debug, Clone)]
pub(crate) struct StoredMerge {
    pub(crate) id: i64,
    pub(crate) winner: EntityId,
    pub(crate) loser: EntityId,
    pub(crate) undone: bool,
    pub(crate) winner_rows: Vec<i64>,
    pub(crate) loser_rows: Vec<i64>,
}

/// Candidate status, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredStatus {
    Pending,
    Decided,
}

/// A stored candidate.
#[derive(Debug, Clone)]
pub(crate) struct StoredCandidate {
    pub(crate) id: i64,
    pub(crate) a: String,
    pub(crate) b: String,
    pub(crate) status: StoredStatus,
    pub(crate) score: f64,
    pub(crate) reasons: String,
}

/// Everything stored about one kind.
#[derive(Debug)]
pub(crate) struct StoredState {
    pub(crate) entities: HashMap<EntityId, StoredEntity>,
    /// By source id.
    pub(crate) links: HashMap<i64, StoredLink>,
    /// Oldest first.
    pub(crate) merges: Vec<StoredMerge>,
    pub(crate) candidates: Vec<StoredCandidate>,
    /// Rows of the tables whose ids this build cannot parse (left alone, counted).
    pub(crate) foreign_ids: u64,
}

impl StoredState {
    /// Reads the state of `kind`.
    pub(crate) fn load(conn: &Connection, kind: EntityKind) -> Result<Self, ResolveError> {
        let mut foreign_ids = 0u64;
        let mut entities = HashMap::new();
        {
            let ctx = "reading entities";
            let mut stmt = conn
                .prepare("SELECT entity_id, deleted_at IS NOT NULL, merged_into, display_name FROM entities WHERE kind = ?1")
                .map_err(sqlite(ctx))?;
            let mut rows = stmt.query([kind.as_str()]).map_err(sqlite(ctx))?;
            while let Some(row) = rows.next().map_err(sqlite(ctx))? {
                let id: String = row.get(0).map_err(sqlite(ctx))?;
                let Ok(id) = id.parse::<EntityId>() else {
                    foreign_ids += 1;
                    continue;
                };
                if id.kind != kind {
                    foreign_ids += 1;
                    continue;
                }
                let deleted: bool = row.get(1).map_err(sqlite(ctx))?;
                let merged_into: Option<String> = row.get(2).map_err(sqlite(ctx))?;
                let display_name: Option<String> = row.get(3).map_err(sqlite(ctx))?;
                let status = match (
                    deleted,
                    merged_into.and_then(|m| m.parse::<EntityId>().ok()),
                ) {
                    (false, _) => EntityStatus::Live,
                    (true, Some(w)) if w.kind == kind && w != id => EntityStatus::MergedInto(w),
                    (true, _) => EntityStatus::Retired,
                };
                entities.insert(
                    id,
                    StoredEntity {
                        status,
                        display_name: display_name.map(String::into_boxed_str),
                    },
                );
            }
        }
        let mut links = HashMap::new();
        {
            let ctx = "reading entity links";
            let mut stmt = conn
                .prepare(
                    "SELECT source_id, entity_id, rule FROM entity_links WHERE source_table = ?1",
                )
                .map_err(sqlite(ctx))?;
            let mut rows = stmt
                .query([kind.source_table().as_str()])
                .map_err(sqlite(ctx))?;
            while let Some(row) = rows.next().map_err(sqlite(ctx))? {
                let source_id: i64 = row.get(0).map_err(sqlite(ctx))?;
                let entity: String = row.get(1).map_err(sqlite(ctx))?;
                let rule: Option<String> = row.get(2).map_err(sqlite(ctx))?;
                match entity.parse::<EntityId>() {
                    Ok(entity) if entity.kind == kind => {
                        links.insert(
                            source_id,
                            StoredLink {
                                entity,
                                rule: rule.as_deref().and_then(LinkRule::parse),
                            },
                        );
                    }
                    _ => foreign_ids += 1,
                }
            }
        }
        let merges = load_merges(conn, kind, &mut foreign_ids)?;
        let mut candidates = Vec::new();
        {
            let ctx = "reading entity candidates";
            let mut stmt = conn
                .prepare("SELECT id, entity_a, entity_b, status, score, reasons FROM entity_candidates WHERE kind = ?1")
                .map_err(sqlite(ctx))?;
            let mut rows = stmt.query([kind.as_str()]).map_err(sqlite(ctx))?;
            while let Some(row) = rows.next().map_err(sqlite(ctx))? {
                let status: String = row.get(3).map_err(sqlite(ctx))?;
                candidates.push(StoredCandidate {
                    id: row.get(0).map_err(sqlite(ctx))?,
                    a: row.get(1).map_err(sqlite(ctx))?,
                    b: row.get(2).map_err(sqlite(ctx))?,
                    status: if status == "pending" {
                        StoredStatus::Pending
                    } else {
                        StoredStatus::Decided
                    },
                    score: row
                        .get::<_, Option<f64>>(4)
                        .map_err(sqlite(ctx))?
                        .unwrap_or(0.0),
                    reasons: row
                        .get::<_, Option<String>>(5)
                        .map_err(sqlite(ctx))?
                        .unwrap_or_default(),
                });
            }
        }
        Ok(Self {
            entities,
            links,
            merges,
            candidates,
            foreign_ids,
        })
    }

    /// Follows `merged_into` from `id` to the entity that stands for it now; `None`
    /// when the chain leads to an entity that does not exist (or loops).
    pub(crate) fn resolve(&self, mut id: EntityId) -> Option<EntityId> {
        for _ in 0..64 {
            match self.entities.get(&id)?.status {
                EntityStatus::Live | EntityStatus::Retired => return Some(id),
                EntityStatus::MergedInto(next) => id = next,
            }
        }
        None
    }
}

fn load_merges(
    conn: &Connection,
    kind: EntityKind,
    foreign_ids: &mut u64,
) -> Result<Vec<StoredMerge>, ResolveError> {
    let ctx = "reading entity merges";
    let mut merges = Vec::new();
    let mut index: HashMap<i64, usize> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT id, winner, loser, undone_at IS NOT NULL FROM entity_merges WHERE kind = ?1 ORDER BY id")
        .map_err(sqlite(ctx))?;
    let mut rows = stmt.query([kind.as_str()]).map_err(sqlite(ctx))?;
    while let Some(row) = rows.next().map_err(sqlite(ctx))? {
        let id: i64 = row.get(0).map_err(sqlite(ctx))?;
        let winner: String = row.get(1).map_err(sqlite(ctx))?;
        let loser: String = row.get(2).map_err(sqlite(ctx))?;
        let (Ok(winner), Ok(loser)) = (winner.parse::<EntityId>(), loser.parse::<EntityId>())
        else {
            *foreign_ids += 1;
            continue;
        };
        if winner.kind != kind || loser.kind != kind {
            *foreign_ids += 1;
            continue;
        }
        index.insert(id, merges.len());
        merges.push(StoredMerge {
            id,
            winner,
            loser,
            undone: row.get(3).map_err(sqlite(ctx))?,
            winner_rows: Vec::new(),
            loser_rows: Vec::new(),
        });
    }
    let ctx = "reading entity merge rows";
    let mut stmt = conn
        .prepare(
            "SELECT r.merge_id, r.side, r.source_id FROM entity_merge_rows r \
             JOIN entity_merges m ON m.id = r.merge_id \
             WHERE m.kind = ?1 AND r.source_table = ?2 ORDER BY r.merge_id, r.source_id",
        )
        .map_err(sqlite(ctx))?;
    let mut rows = stmt
        .query(params![kind.as_str(), kind.source_table().as_str()])
        .map_err(sqlite(ctx))?;
    while let Some(row) = rows.next().map_err(sqlite(ctx))? {
        let merge_id: i64 = row.get(0).map_err(sqlite(ctx))?;
        let side: String = row.get(1).map_err(sqlite(ctx))?;
        let source_id: i64 = row.get(2).map_err(sqlite(ctx))?;
        if let Some(&i) = index.get(&merge_id) {
            match side.as_str() {
                "winner" => merges[i].winner_rows.push(source_id),
                _ => merges[i].loser_rows.push(source_id),
            }
        }
    }
    Ok(merges)
}
