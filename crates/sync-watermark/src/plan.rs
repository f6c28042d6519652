//! What to do with one row: the decision table of the sync, free of I/O.
//!
//! Every CRM row the sync has seen has one record in `ingest_indexed_rows`: its
//! document's content hash, its chunk count and its entity id. A soft-deleted row (or one
//! whose document has no chunk) is recorded with zero chunks, so that "every CRM id has a
//! record" holds after a sync and rows that never reached the index can be found by a
//! cheap id comparison. A record whose hash is [`PENDING`] was being changed by a run
//! that did not finish; its chunk count is then an upper bound of the chunk indexes that
//! may be in the index.

use crm_store::Document;
use crm_store::phase0::IndexedRow;

/// The content hash of a record whose row is being changed in the index. Never a real
/// hash (those are 64 hex digits), so a pending row always differs from its document.
pub(crate) const PENDING: &str = "pending";

/// What a record says, as the sync compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) content_hash: String,
    pub(crate) entity_id: Option<String>,
    pub(crate) chunk_count: u32,
}

impl Observed {
    pub(crate) fn is_pending(&self) -> bool {
        self.content_hash == PENDING
    }
}

impl From<&IndexedRow> for Observed {
    fn from(row: &IndexedRow) -> Self {
        Self {
            content_hash: row.content_hash.clone(),
            entity_id: row.entity_id.clone(),
            chunk_count: row.chunk_count,
        }
    }
}

/// The decision for one rendered row, before and after chunking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The record matches the document and the entity: nothing to do.
    Skip,
    /// Only the record changes (nothing of this row is or was in the index).
    RecordOnly,
    /// The document is unchanged but the entity moved: patch payloads, no re-embedding.
    EntityOnly,
    /// The document changed: chunk, embed, upsert, delete stale chunks.
    Index,
    /// The row must have no point any more (soft-deleted, or its document has no chunk).
    Remove,
}

impl Action {
    /// Whether the action writes to the index (and so must mark the record pending first).
    pub(crate) fn touches_index(self) -> bool {
        matches!(self, Self::EntityOnly | Self::Index | Self::Remove)
    }
}

/// Decides what to do with a rendered row, before chunking. `Index` means "chunk it";
/// [`after_chunking`] refines it once the chunk count is known.
pub(crate) fn decide(
    doc: &Document,
    content_hash: &str,
    entity_id: Option<&str>,
    observed: Option<&Observed>,
) -> Action {
    match observed {
        Some(obs) if !obs.is_pending() && obs.content_hash == content_hash => {
            if obs.entity_id.as_deref() == entity_id {
                Action::Skip
            } else if obs.chunk_count > 0 {
                Action::EntityOnly
            } else {
                Action::RecordOnly
            }
        }
        _ if doc.fields.deleted => empty_outcome(observed),
        _ => Action::Index,
    }
}

/// The action for a row whose document turned out to have `chunks` chunks.
pub(crate) fn after_chunking(chunks: usize, observed: Option<&Observed>) -> Action {
    if chunks == 0 {
        empty_outcome(observed)
    } else {
        Action::Index
    }
}

/// A row that must end with no point: remove what may be there, or just record it.
fn empty_outcome(observed: Option<&Observed>) -> Action {
    match observed {
        Some(obs) if obs.is_pending() || obs.chunk_count > 0 => Action::Remove,
        _ => Action::RecordOnly,
    }
}

/// The chunk indexes `[from, to)` that may hold stale points of a row: everything at or
/// after the new chunk count, up to the recorded bound.
pub(crate) fn stale_range(new_chunks: u32, observed: Option<&Observed>) -> std::ops::Range<u32> {
    let bound = observed.map_or(0, |o| o.chunk_count);
    new_chunks..bound.max(new_chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::{DocumentFields, DocumentKind, SourceTable, Timestamp};

    fn doc(deleted: bool) -> Document {
        Document {
            source_table: SourceTable::People,
            source_id: 1,
            title: "Ada".into(),
            text: "Ada".into(),
            fields: DocumentFields {
                kind: DocumentKind::Person,
                organization_id: None,
                organization_name: None,
                category: None,
                occurred_at: None,
                created_at: Timestamp::EPOCH,
                updated_at: Timestamp::EPOCH,
                deleted,
                person_ids: vec![1],
            },
        }
    }

    fn obs(hash: &str, entity: Option<&str>, chunks: u32) -> Observed {
        Observed {
            content_hash: hash.into(),
            entity_id: entity.map(Into::into),
            chunk_count: chunks,
        }
    }

    #[test]
    fn decision_table() {
        let live = doc(false);
        let gone = doc(true);
        let e = Some("person:1");
        // Unchanged.
        assert_eq!(decide(&live, "h", e, Some(&obs("h", e, 2))), Action::Skip);
        // Entity moved.
        assert_eq!(
            decide(&live, "h", Some("person:9"), Some(&obs("h", e, 2))),
            Action::EntityOnly
        );
        // Entity moved on a row without points.
        assert_eq!(
            decide(&gone, "h", None, Some(&obs("h", e, 0))),
            Action::RecordOnly
        );
        // Changed, new, pending.
        assert_eq!(decide(&live, "h2", e, Some(&obs("h", e, 2))), Action::Index);
        assert_eq!(decide(&live, "h", e, None), Action::Index);
        assert_eq!(
            decide(&live, "h", e, Some(&obs(PENDING, e, 2))),
            Action::Index
        );
        // Soft-deleted: remove what may be there.
        assert_eq!(
            decide(&gone, "h2", e, Some(&obs("h", e, 2))),
            Action::Remove
        );
        assert_eq!(
            decide(&gone, "h2", e, Some(&obs(PENDING, e, 0))),
            Action::Remove
        );
        assert_eq!(
            decide(&gone, "h2", e, Some(&obs("h", e, 0))),
            Action::RecordOnly
        );
        assert_eq!(decide(&gone, "h2", e, None), Action::RecordOnly);
        // A pending record never matches, even with the same entity.
        assert_eq!(
            decide(&gone, PENDING, e, Some(&obs(PENDING, e, 3))),
            Action::Remove
        );
    }

    #[test]
    fn chunking_refines_index_into_remove() {
        assert_eq!(after_chunking(3, None), Action::Index);
        assert_eq!(after_chunking(0, None), Action::RecordOnly);
        assert_eq!(after_chunking(0, Some(&obs("h", None, 1))), Action::Remove);
    }

    #[test]
    fn stale_ranges_cover_the_recorded_bound() {
        assert_eq!(stale_range(2, Some(&obs("h", None, 5))), 2..5);
        assert_eq!(stale_range(5, Some(&obs("h", None, 2))), 5..5);
        assert_eq!(stale_range(0, Some(&obs(PENDING, None, 7))), 0..7);
        assert!(stale_range(3, None).is_empty());
    }

    #[test]
    fn actions_say_what_they_touch() {
        assert!(!Action::Skip.touches_index());
        assert!(!Action::RecordOnly.touches_index());
        assert!(Action::EntityOnly.touches_index());
        assert!(Action::Remove.touches_index());
    }
}
