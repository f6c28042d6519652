//! Batches: what the reader reads, the encoder fills, and the writer applies.

use std::collections::HashMap;

use crm_store::phase0::{self, IndexedRow};
use crm_store::render;
use crm_store::rusqlite::Connection;
use crm_store::{Document, SourceTable, StoreError, Watermark};

use crate::plan::{self, Action, Observed};

/// Why a batch exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A page of the keyset scan: committing it advances the watermark.
    Keyset,
    /// Rows found by reconciliation (never indexed, pending, entity moved, hard-deleted).
    Repair,
    /// Rows whose documents embed data of a row that changed.
    Dependents,
    /// Rows whose record changed between planning and writing.
    Redo,
}

/// One rendered row and what to do with it.
#[derive(Debug, Clone)]
pub(crate) struct RowWork {
    pub(crate) doc: Document,
    pub(crate) content_hash: String,
    pub(crate) entity_id: Option<String>,
    pub(crate) observed: Option<Observed>,
    pub(crate) action: Action,
    /// Filled by the encoder for `Action::Index`; moved into the upsert.
    pub(crate) points: Vec<index_qdrant::ChunkPoint>,
    /// How many chunks the encoder made (the points' count, also once they are gone).
    pub(crate) chunk_count: u32,
}

impl RowWork {
    fn new(doc: Document, entity_id: Option<String>, observed: Option<Observed>) -> Self {
        let content_hash = doc.content_hash();
        let action = plan::decide(&doc, &content_hash, entity_id.as_deref(), observed.as_ref());
        Self {
            doc,
            content_hash,
            entity_id,
            observed,
            action,
            points: Vec::new(),
            chunk_count: 0,
        }
    }

    pub(crate) fn source_id(&self) -> i64 {
        self.doc.source_id
    }

    /// Whether the row's document differs from what its record describes.
    pub(crate) fn document_changed(&self) -> bool {
        self.observed
            .as_ref()
            .is_none_or(|o| o.content_hash != self.content_hash)
    }

    /// The chunk count the row ends with.
    pub(crate) fn final_chunk_count(&self) -> u32 {
        match self.action {
            Action::Index => self.chunk_count,
            Action::Skip | Action::EntityOnly => {
                self.observed.as_ref().map_or(0, |o| o.chunk_count)
            }
            Action::RecordOnly | Action::Remove => 0,
        }
    }
}

/// A row whose record exists but which is gone from the CRM.
#[derive(Debug, Clone)]
pub(crate) struct GoneRow {
    pub(crate) source_id: i64,
    pub(crate) observed: Observed,
}

/// A unit of work through the pipeline, all rows of one table.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) table: SourceTable,
    pub(crate) origin: Origin,
    pub(crate) rows: Vec<RowWork>,
    pub(crate) gone: Vec<GoneRow>,
    /// For keyset batches: the keyset position of the batch's last row.
    pub(crate) position: Option<Watermark>,
    /// How many dependents levels led to this batch (0 for keyset and repairs).
    pub(crate) depth: u8,
}

impl Batch {
    /// Whether applying the batch changes nothing but (maybe) the watermark.
    pub(crate) fn is_noop(&self) -> bool {
        self.gone.is_empty() && self.rows.iter().all(|r| r.action == Action::Skip)
    }

    /// Chunks the batch writes to the index.
    pub(crate) fn chunks(&self) -> u64 {
        self.rows
            .iter()
            .filter(|r| r.action == Action::Index)
            .map(|r| u64::from(r.chunk_count))
            .sum()
    }

    pub(crate) fn describe(&self) -> String {
        let first = self.rows.first().map(RowWork::source_id);
        let last = self.rows.last().map(RowWork::source_id);
        match (first, last) {
            (Some(a), Some(b)) => format!(
                "{} rows {a}..={b} of `{}` ({:?})",
                self.rows.len(),
                self.table,
                self.origin
            ),
            _ => format!(
                "{} gone rows of `{}` ({:?})",
                self.gone.len(),
                self.table,
                self.origin
            ),
        }
    }
}

/// The records of `ids`, as observed.
fn observed_of(
    conn: &Connection,
    collection: &str,
    table: SourceTable,
    ids: &[i64],
) -> Result<HashMap<i64, Observed>, StoreError> {
    Ok(phase0::indexed_rows(conn, collection, table, ids)?
        .iter()
        .map(|(id, row)| (*id, Observed::from(row)))
        .collect())
}

fn build_rows(
    conn: &Connection,
    table: SourceTable,
    docs: Vec<Document>,
    mut observed: HashMap<i64, Observed>,
) -> Result<Vec<RowWork>, StoreError> {
    let ids: Vec<i64> = docs.iter().map(|d| d.source_id).collect();
    let mut entities = phase0::entity_ids_of_rows(conn, table, &ids)?;
    Ok(docs
        .into_iter()
        .map(|doc| {
            let id = doc.source_id;
            RowWork::new(doc, entities.remove(&id), observed.remove(&id))
        })
        .collect())
}

/// Reads and plans the keyset page of `table` after `after`, in one read transaction.
/// Rows past `until` are left out; `reached_end` says the pass is complete (the page was
/// short or crossed `until`).
pub(crate) fn read_keyset_page(
    conn: &mut Connection,
    collection: &str,
    table: SourceTable,
    after: Option<Watermark>,
    until: Watermark,
    limit: usize,
) -> Result<(Batch, bool), StoreError> {
    let tx = conn.transaction().map_err(|source| StoreError::Sqlite {
        context: format!("starting a read of `{table}`"),
        source,
    })?;
    let mut page = render::render_changed(&tx, table, after, limit)?;
    let full = page.documents.len() >= limit;
    let kept = page
        .documents
        .iter()
        .position(|d| Watermark::new(d.fields.updated_at, d.source_id) > until)
        .unwrap_or(page.documents.len());
    let crossed = kept < page.documents.len();
    page.documents.truncate(kept);
    let position = page
        .documents
        .last()
        .map(|d| Watermark::new(d.fields.updated_at, d.source_id));
    let ids: Vec<i64> = page.documents.iter().map(|d| d.source_id).collect();
    let observed = observed_of(&tx, collection, table, &ids)?;
    let rows = build_rows(&tx, table, page.documents, observed)?;
    // A read transaction has nothing to commit; ending it releases the snapshot.
    drop(tx);
    let batch = Batch {
        table,
        origin: Origin::Keyset,
        rows,
        gone: Vec::new(),
        position,
        depth: 0,
    };
    Ok((batch, crossed || !full))
}

/// Reads and plans the rows `ids` of `table` (sorted, unique), in one read transaction.
/// Ids with a record but no CRM row become gone rows. With `indexed_only`, ids without
/// a record are left out (dependents that never reached the index are indexed by their
/// own table's pass).
pub(crate) fn read_rows_by_ids(
    conn: &mut Connection,
    collection: &str,
    table: SourceTable,
    ids: &[i64],
    origin: Origin,
    indexed_only: bool,
    depth: u8,
) -> Result<Batch, StoreError> {
    let tx = conn.transaction().map_err(|source| StoreError::Sqlite {
        context: format!("starting a read of `{table}`"),
        source,
    })?;
    let mut observed = observed_of(&tx, collection, table, ids)?;
    let wanted: Vec<i64> = if indexed_only {
        ids.iter()
            .copied()
            .filter(|id| observed.contains_key(id))
            .collect()
    } else {
        ids.to_vec()
    };
    let docs = render::render_by_ids(&tx, table, &wanted)?;
    let present: std::collections::HashSet<i64> = docs.iter().map(|d| d.source_id).collect();
    let mut gone: Vec<GoneRow> = wanted
        .iter()
        .filter(|id| !present.contains(id))
        .filter_map(|id| {
            observed.remove(id).map(|observed| GoneRow {
                source_id: *id,
                observed,
            })
        })
        .collect();
    gone.sort_by_key(|g| g.source_id);
    let rows = build_rows(&tx, table, docs, observed)?;
    drop(tx);
    Ok(Batch {
        table,
        origin,
        rows,
        gone,
        position: None,
        depth,
    })
}

/// The final record of a row after its batch was applied.
pub(crate) fn final_record(
    collection: &str,
    row: &RowWork,
    now: crm_store::Timestamp,
) -> IndexedRow {
    let (content_hash, entity_id) = match row.action {
        // The document did not change; only the entity may have.
        Action::Skip | Action::EntityOnly => (
            row.observed
                .as_ref()
                .map_or_else(|| row.content_hash.clone(), |o| o.content_hash.clone()),
            row.entity_id.clone(),
        ),
        Action::RecordOnly | Action::Index | Action::Remove => {
            (row.content_hash.clone(), row.entity_id.clone())
        }
    };
    IndexedRow {
        collection: collection.to_owned(),
        source_table: row.doc.source_table,
        source_id: row.doc.source_id,
        entity_id,
        content_hash,
        chunk_count: row.final_chunk_count(),
        indexed_at: now,
    }
}
