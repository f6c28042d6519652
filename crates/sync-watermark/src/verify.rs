//! Comparing the index and the records with the CRM, without changing any of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;

use crm_store::phase0::{self, IndexedRow};
use crm_store::{SourceTable, Timestamp, Watermark, render, sync_queries};
use index_qdrant::{ChunkId, ScrollRequest};
use serde::Serialize;

use crate::error::SyncError;
use crate::indexer::Indexer;
use crate::lease::RunLease;
use crate::plan::PENDING;
use crate::report::ProgressEvent;

/// How many differences a report lists one by one (all are counted).
pub const MAX_LISTED_DIFFERENCES: usize = 1000;

/// Points read per scroll page.
const SCROLL_PAGE: usize = 1000;

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// The stored fingerprint is not the current settings' one.
    FingerprintMismatch,
    /// The collection does not exist.
    CollectionMissing,
    /// A chunk of a live row is not in the index.
    MissingPoint,
    /// A point carries another content hash than the row's document.
    WrongContentHash,
    /// A point carries another entity id than the row's current one.
    WrongEntity,
    /// A point that should not exist: beyond the row's chunk count, of a soft-deleted
    /// row, or of a row the CRM does not have.
    UnexpectedPoint,
    /// A point whose id is not the id of its payload's table, row and chunk, or whose
    /// payload names no known table.
    MalformedPoint,
    /// A CRM row without a record in `ingest_indexed_rows`.
    RecordMissing,
    /// A record left pending by an interrupted run.
    RecordPending,
    /// A record whose hash, chunk count or entity differs from the row's.
    RecordMismatch,
    /// A record of a row the CRM no longer has.
    RecordForMissingRow,
    /// A watermark later than the current time.
    WatermarkAhead,
}

/// One difference between the index (or the records) and the CRM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// What kind.
    pub kind: DifferenceKind,
    /// The source table, when the difference is about one.
    pub table: Option<SourceTable>,
    /// The source row, when the difference is about one.
    pub source_id: Option<i64>,
    /// The chunk, when the difference is about one.
    pub chunk_index: Option<u32>,
    /// Whether the row's keyset position is at or before its table's watermark: the
    /// sync believes it is done with that row, so the difference is not just "not synced
    /// yet" but a watermark ahead of what the index holds.
    pub behind_watermark: bool,
    /// What exactly differs.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The collection.
    pub collection: String,
    /// CRM rows compared.
    pub rows_checked: u64,
    /// Index points compared.
    pub points_checked: u64,
    /// Every difference, counted by kind.
    pub counts: BTreeMap<DifferenceKind, u64>,
    /// The first differences ([`MAX_LISTED_DIFFERENCES`] unless asked otherwise).
    pub differences: Vec<Difference>,
    /// Differences of rows at or before their table's watermark.
    pub behind_watermark: u64,
    /// The watermark of each table, as stored.
    pub watermarks: BTreeMap<SourceTable, Option<Watermark>>,
}

impl VerifyReport {
    /// Whether the index and the records agree with the CRM exactly.
    pub fn is_clean(&self) -> bool {
        self.counts.is_empty()
    }

    /// Number of differences.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

/// A point as verification remembers it.
struct SeenPoint {
    chunk_index: u32,
    content_hash: String,
    entity_id: Option<String>,
}

struct Collector {
    max_listed: usize,
    report: VerifyReport,
}

impl Collector {
    fn push(&mut self, difference: Difference) {
        *self.report.counts.entry(difference.kind).or_default() += 1;
        if difference.behind_watermark {
            self.report.behind_watermark += 1;
        }
        if self.report.differences.len() < self.max_listed {
            self.report.differences.push(difference);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        kind: DifferenceKind,
        table: SourceTable,
        source_id: i64,
        chunk_index: Option<u32>,
        behind_watermark: bool,
        detail: String,
    ) {
        self.push(Difference {
            kind,
            table: Some(table),
            source_id: Some(source_id),
            chunk_index,
            behind_watermark,
            detail,
        });
    }
}

impl Indexer {
    /// Compares the index and `ingest_indexed_rows` with the CRM, changing nothing:
    /// every live row has all its chunks, with its document's content hash and its
    /// current entity id; no point exists for a soft-deleted, hard-deleted or unknown
    /// row, or beyond a row's chunk count; every row has a matching, settled record; no
    /// watermark is in the future. Holds the run lease meanwhile, so that no sync
    /// changes things under it.
    ///
    /// Reads the whole CRM and the whole index: it keeps one entry per point in memory
    /// (about 100 bytes each).
    pub async fn verify(&self) -> Result<VerifyReport, SyncError> {
        self.verify_listing(MAX_LISTED_DIFFERENCES).await
    }

    /// [`Indexer::verify`], listing up to `max_listed` differences one by one.
    pub async fn verify_listing(&self, max_listed: usize) -> Result<VerifyReport, SyncError> {
        let lease =
            RunLease::acquire(self.store(), self.collection(), &self.config().lease).await?;
        let result = self.verify_leased(max_listed).await;
        if let Err(err) = lease.release().await {
            tracing::warn!(error = %err, "could not release the lease after verifying");
        }
        result
    }

    async fn verify_leased(&self, max_listed: usize) -> Result<VerifyReport, SyncError> {
        let collection = self.collection().to_owned();
        let mut out = Collector {
            max_listed,
            report: VerifyReport {
                collection: collection.clone(),
                rows_checked: 0,
                points_checked: 0,
                counts: BTreeMap::new(),
                differences: Vec::new(),
                behind_watermark: 0,
                watermarks: BTreeMap::new(),
            },
        };

        // Watermarks and fingerprints.
        let fingerprint = self.encoder().fingerprint();
        let states = {
            let collection = collection.clone();
            self.blocking_read(move |conn| {
                let mut states = BTreeMap::new();
                for table in SourceTable::ALL {
                    states.insert(table, phase0::get_sync_state(conn, &collection, table)?);
                }
                Ok(states)
            })
            .await?
        };
        let now = Timestamp::now();
        let mut watermarks: HashMap<SourceTable, Watermark> = HashMap::new();
        for (table, state) in &states {
            let watermark = state.as_ref().and_then(|s| s.watermark);
            out.report.watermarks.insert(*table, watermark);
            if let Some(w) = watermark {
                watermarks.insert(*table, w);
                if w.updated_at > now.saturating_add(self.config().overlap) {
                    out.push(Difference {
                        kind: DifferenceKind::WatermarkAhead,
                        table: Some(*table),
                        source_id: None,
                        chunk_index: None,
                        behind_watermark: false,
                        detail: format!(
                            "watermark {} is later than the current time {now}",
                            w.updated_at
                        ),
                    });
                }
            }
            if let Some(stored) = state.as_ref().and_then(|s| s.fingerprint.as_ref())
                && *stored != fingerprint
            {
                out.push(Difference {
                    kind: DifferenceKind::FingerprintMismatch,
                    table: Some(*table),
                    source_id: None,
                    chunk_index: None,
                    behind_watermark: false,
                    detail: format!(
                        "stored fingerprint {stored:?}, current settings give {fingerprint:?}"
                    ),
                });
            }
        }

        // Every point of the index, by row.
        let mut points: HashMap<(SourceTable, i64), Vec<SeenPoint>> = HashMap::new();
        if self.index().exists().await? {
            let mut offset = None;
            loop {
                let page = self
                    .index()
                    .scroll(&ScrollRequest {
                        limit: SCROLL_PAGE,
                        offset,
                        ..ScrollRequest::default()
                    })
                    .await?;
                for point in page.points {
                    out.report.points_checked += 1;
                    let payload = point.payload;
                    let Ok(table) = SourceTable::from_str(&payload.source_table) else {
                        out.push(Difference {
                            kind: DifferenceKind::MalformedPoint,
                            table: None,
                            source_id: Some(payload.source_id),
                            chunk_index: Some(payload.chunk_index),
                            behind_watermark: false,
                            detail: format!(
                                "point {} names unknown table {:?}",
                                point.id, payload.source_table
                            ),
                        });
                        continue;
                    };
                    let want = ChunkId::new(
                        &payload.source_table,
                        payload.source_id,
                        payload.chunk_index,
                    );
                    if want != point.id {
                        out.row(
                            DifferenceKind::MalformedPoint,
                            table,
                            payload.source_id,
                            Some(payload.chunk_index),
                            false,
                            format!("point id {} should be {want} for its payload", point.id),
                        );
                    }
                    points
                        .entry((table, payload.source_id))
                        .or_default()
                        .push(SeenPoint {
                            chunk_index: payload.chunk_index,
                            content_hash: payload.content_hash,
                            entity_id: payload.entity_id,
                        });
                }
                self.progress().event(ProgressEvent::Verified {
                    what: "points",
                    count: out.report.points_checked,
                });
                match page.next_offset {
                    Some(next) => offset = Some(next),
                    None => break,
                }
            }
        } else {
            out.push(Difference {
                kind: DifferenceKind::CollectionMissing,
                table: None,
                source_id: None,
                chunk_index: None,
                behind_watermark: false,
                detail: format!("collection {collection:?} does not exist"),
            });
        }

        // Every CRM row, with its record and its points.
        let batch_size = self.config().batch_size.max(1);
        for table in SourceTable::ALL {
            let ids = self
                .blocking_read(move |conn| Ok(sync_queries::source_ids(conn, table)?))
                .await?;
            let mut seen_ids: HashSet<i64> = HashSet::with_capacity(ids.len());
            let watermark = watermarks.get(&table).copied();
            for chunk in ids.chunks(batch_size) {
                let chunk = chunk.to_vec();
                let collection = collection.clone();
                let (docs, records, entities) = self
                    .blocking_read(move |conn| {
                        let docs = render::render_by_ids(conn, table, &chunk)?;
                        let records = phase0::indexed_rows(conn, &collection, table, &chunk)?;
                        let entities = phase0::entity_ids_of_rows(conn, table, &chunk)?;
                        Ok((docs, records, entities))
                    })
                    .await?;
                let encoder = self.encoder().clone();
                let expected: Vec<(crm_store::Document, String, u32)> =
                    tokio::task::spawn_blocking(move || {
                        docs.into_iter()
                            .map(|doc| {
                                let hash = doc.content_hash();
                                let chunks = if doc.fields.deleted {
                                    0
                                } else {
                                    u32::try_from(encoder.chunk_count(&doc)).unwrap_or(u32::MAX)
                                };
                                (doc, hash, chunks)
                            })
                            .collect()
                    })
                    .await
                    .map_err(SyncError::worker)?;
                for (doc, hash, chunks) in expected {
                    out.report.rows_checked += 1;
                    let id = doc.source_id;
                    seen_ids.insert(id);
                    let behind =
                        watermark.is_some_and(|w| Watermark::new(doc.fields.updated_at, id) <= w);
                    let entity = entities.get(&id).cloned();
                    check_record(
                        &mut out,
                        table,
                        id,
                        behind,
                        records.get(&id),
                        &hash,
                        chunks,
                        entity.as_deref(),
                    );
                    let row_points = points.remove(&(table, id)).unwrap_or_default();
                    check_points(
                        &mut out,
                        table,
                        id,
                        behind,
                        &row_points,
                        &hash,
                        chunks,
                        entity.as_deref(),
                        doc.fields.deleted,
                    );
                }
                self.progress().event(ProgressEvent::Verified {
                    what: "rows",
                    count: out.report.rows_checked,
                });
            }
            // Records of rows the CRM does not have.
            let keys = {
                let collection = collection.clone();
                self.blocking_read(move |conn| {
                    Ok(sync_queries::indexed_row_keys(
                        conn,
                        &collection,
                        table,
                        PENDING,
                    )?)
                })
                .await?
            };
            for key in keys.iter().filter(|k| !seen_ids.contains(&k.source_id)) {
                out.row(
                    DifferenceKind::RecordForMissingRow,
                    table,
                    key.source_id,
                    None,
                    false,
                    format!(
                        "recorded with {} chunk(s) but the row is gone from the CRM",
                        key.chunk_count
                    ),
                );
            }
        }

        // Points of rows the CRM does not have.
        let mut leftovers: Vec<((SourceTable, i64), Vec<SeenPoint>)> = points.into_iter().collect();
        leftovers.sort_by_key(|(key, _)| *key);
        for ((table, id), row_points) in leftovers {
            for point in row_points {
                out.row(
                    DifferenceKind::UnexpectedPoint,
                    table,
                    id,
                    Some(point.chunk_index),
                    false,
                    "point of a row the CRM does not have".to_owned(),
                );
            }
        }
        Ok(out.report)
    }
}

#[allow(clippy::too_many_arguments)]
fn check_record(
    out: &mut Collector,
    table: SourceTable,
    id: i64,
    behind: bool,
    record: Option<&IndexedRow>,
    hash: &str,
    chunks: u32,
    entity: Option<&str>,
) {
    match record {
        None => out.row(
            DifferenceKind::RecordMissing,
            table,
            id,
            None,
            behind,
            "no record in ingest_indexed_rows".to_owned(),
        ),
        Some(r) if r.content_hash == PENDING => out.row(
            DifferenceKind::RecordPending,
            table,
            id,
            None,
            behind,
            "left pending by an interrupted run".to_owned(),
        ),
        Some(r) => {
            let mut problems = Vec::new();
            if r.content_hash != hash {
                problems.push(format!("content hash {} (row: {hash})", r.content_hash));
            }
            if r.chunk_count != chunks {
                problems.push(format!("{} chunk(s) (row: {chunks})", r.chunk_count));
            }
            if r.entity_id.as_deref() != entity {
                problems.push(format!("entity {:?} (row: {entity:?})", r.entity_id));
            }
            if !problems.is_empty() {
                out.row(
                    DifferenceKind::RecordMismatch,
                    table,
                    id,
                    None,
                    behind,
                    format!("record has {}", problems.join(", ")),
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_points(
    out: &mut Collector,
    table: SourceTable,
    id: i64,
    behind: bool,
    points: &[SeenPoint],
    hash: &str,
    chunks: u32,
    entity: Option<&str>,
    deleted: bool,
) {
    let mut present: HashSet<u32> = HashSet::with_capacity(points.len());
    for point in points {
        let k = point.chunk_index;
        if k >= chunks {
            let why = if deleted {
                "the row is soft-deleted".to_owned()
            } else {
                format!("the row has {chunks} chunk(s)")
            };
            out.row(
                DifferenceKind::UnexpectedPoint,
                table,
                id,
                Some(k),
                behind,
                why,
            );
            continue;
        }
        present.insert(k);
        if point.content_hash != hash {
            out.row(
                DifferenceKind::WrongContentHash,
                table,
                id,
                Some(k),
                behind,
                format!(
                    "point has content hash {} (row: {hash})",
                    point.content_hash
                ),
            );
        }
        if point.entity_id.as_deref() != entity {
            out.row(
                DifferenceKind::WrongEntity,
                table,
                id,
                Some(k),
                behind,
                format!("point has entity {:?} (row: {entity:?})", point.entity_id),
            );
        }
    }
    for k in (0..chunks).filter(|k| !present.contains(k)) {
        out.row(
            DifferenceKind::MissingPoint,
            table,
            id,
            Some(k),
            behind,
            "chunk missing from the index".to_owned(),
        );
    }
}
