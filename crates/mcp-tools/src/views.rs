//! Output pieces shared by several tools: references to related rows, the canonical
//! entity of a row with its duplicates and merge history.
//!
//! Every string that came from the CRM is a data field of these structs, clipped or cut
//! (see [`crate::text`]); none is ever mixed into text the server writes itself.

use std::collections::HashMap;

use crm_store::phase0::{self, Merge};
use crm_store::rusqlite::Connection;
use crm_store::{Organization, Person, SourceTable, lookups, queries};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::ToolError;
use crate::text::{TextLimits, clip, opt_clip};

/// Linked rows shown per entity.
const ENTITY_ROWS: usize = 25;
/// Merges shown per entity.
const ENTITY_MERGES: usize = 10;

/// A reference to an organisation.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct OrgRef {
    /// Organisation id (`get_organization`).
    pub id: i64,
    /// Its name; null when no organisation row has this id.
    pub name: Option<String>,
}

/// A reference to a person.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PersonRef {
    /// Person id (`get_person`).
    pub id: i64,
    /// Full name; null when no person row has this id.
    pub name: Option<String>,
}

/// A reference to an interaction.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct InteractionRef {
    /// Interaction id (`get_interaction`).
    pub id: i64,
    /// `meeting`, `call`, `email` or `note`.
    pub kind: String,
    /// When it happened (UTC, ISO-8601).
    pub occurred_at: String,
    /// Subject line.
    pub subject: Option<String>,
}

/// A CRM row that belongs to a canonical entity.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LinkedRow {
    /// `people` or `organizations`.
    pub source_table: String,
    /// The row id.
    pub source_id: i64,
    /// The resolution rule that linked it (`email`, `linkedin`, `singleton`, `merge`, ...).
    pub rule: String,
    /// The row's name.
    pub name: Option<String>,
    /// A person row's email.
    pub email: Option<String>,
    /// A person row's title.
    pub title: Option<String>,
    /// A person row's organisation name.
    pub organization_name: Option<String>,
    /// An organisation row's domain.
    pub domain: Option<String>,
    /// True when the row is soft-deleted.
    pub deleted: bool,
}

/// A merge of two entities.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MergeView {
    /// Merge id (`undo_merge`).
    pub id: i64,
    /// The entity that kept its id.
    pub winner: String,
    /// The entity merged into the winner.
    pub loser: String,
    /// `rule`, `llm:<model>` or `human:<who>`.
    pub decided_by: String,
    /// The decider's confidence (0 to 1), when given.
    pub confidence: Option<f64>,
    /// Why, as the decider put it.
    pub rationale: Option<String>,
    /// When the merge was made.
    pub created_at: String,
    /// When it was undone; null while in force.
    pub undone_at: Option<String>,
    /// Who undid it.
    pub undone_by: Option<String>,
}

impl MergeView {
    pub(crate) fn new(m: &Merge, limits: TextLimits) -> Self {
        Self {
            id: m.id,
            winner: m.winner.clone(),
            loser: m.loser.clone(),
            decided_by: clip(&m.decided_by, limits.field),
            confidence: m.confidence,
            rationale: opt_clip(m.rationale.as_deref(), limits.long.min(1_000)),
            created_at: m.created_at.to_canonical(),
            undone_at: m.undone_at.map(|t| t.to_canonical()),
            undone_by: opt_clip(m.undone_by.as_deref(), limits.field),
        }
    }
}

/// The canonical entity a row resolves to.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct EntityView {
    /// `person:<id>` or `organization:<id>`; stable for life.
    pub entity_id: String,
    /// `person` or `organization`.
    pub kind: String,
    /// The entity's display name.
    pub display_name: Option<String>,
    /// Set when this entity was merged into another one.
    pub merged_into: Option<String>,
    /// The CRM rows that are this entity (duplicates of one another), at most 25.
    pub rows: Vec<LinkedRow>,
    /// How many rows the entity has in all.
    pub rows_total: u32,
    /// Merges this entity took part in, newest first, at most 10.
    pub merges: Vec<MergeView>,
}

pub(crate) fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// References to organisations by id, in the order given.
pub(crate) fn org_refs(
    conn: &Connection,
    ids: &[i64],
    limits: TextLimits,
) -> Result<HashMap<i64, OrgRef>, ToolError> {
    let names = queries::organization_names(conn, ids)?;
    Ok(ids
        .iter()
        .map(|&id| {
            (
                id,
                OrgRef {
                    id,
                    name: names.get(&id).map(|n| clip(n, limits.field)),
                },
            )
        })
        .collect())
}

/// A reference to one organisation, `None` when `id` is `None`.
pub(crate) fn org_ref(
    conn: &Connection,
    id: Option<i64>,
    limits: TextLimits,
) -> Result<Option<OrgRef>, ToolError> {
    let Some(id) = id else { return Ok(None) };
    Ok(org_refs(conn, &[id], limits)?.remove(&id))
}

/// References to people by id, in the order given.
pub(crate) fn person_refs(
    conn: &Connection,
    ids: &[i64],
    limits: TextLimits,
) -> Result<Vec<PersonRef>, ToolError> {
    let names = queries::person_names(conn, ids)?;
    Ok(ids
        .iter()
        .map(|&id| PersonRef {
            id,
            name: names.get(&id).map(|n| clip(n, limits.field)),
        })
        .collect())
}

/// The canonical entity of a people or organisations row, if resolution has linked it.
pub(crate) fn entity_of_row(
    conn: &Connection,
    table: SourceTable,
    id: i64,
    limits: TextLimits,
) -> Result<Option<EntityView>, ToolError> {
    let Some(entity_id) = phase0::entity_ids_of_rows(conn, table, &[id])?.remove(&id) else {
        return Ok(None);
    };
    entity_view(conn, &entity_id, limits, ENTITY_ROWS).map(Some)
}

/// An entity with up to `max_rows` of its rows and its latest merges.
pub(crate) fn entity_view(
    conn: &Connection,
    entity_id: &str,
    limits: TextLimits,
    max_rows: usize,
) -> Result<EntityView, ToolError> {
    let entity = phase0::get_entity(conn, entity_id)?;
    let links = phase0::links_of_entity(conn, entity_id)?;
    let rows_total = u32_len(links.len());
    let shown = &links[..links.len().min(max_rows)];
    let rows = linked_rows(conn, shown, limits)?;
    let merges = lookups::merge_ids_involving(conn, entity_id, ENTITY_MERGES)?
        .into_iter()
        .map(|id| phase0::get_merge(conn, id))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .map(|m| MergeView::new(&m, limits))
        .collect();
    let kind = entity
        .as_ref()
        .map(|e| e.kind.as_str().to_owned())
        .unwrap_or_else(|| {
            entity_id
                .split_once(':')
                .map(|(k, _)| k.to_owned())
                .unwrap_or_default()
        });
    Ok(EntityView {
        entity_id: entity_id.to_owned(),
        kind,
        display_name: entity
            .as_ref()
            .and_then(|e| opt_clip(e.display_name.as_deref(), limits.field)),
        merged_into: entity.and_then(|e| e.merged_into),
        rows,
        rows_total,
        merges,
    })
}

fn linked_rows(
    conn: &Connection,
    links: &[phase0::EntityLink],
    limits: TextLimits,
) -> Result<Vec<LinkedRow>, ToolError> {
    let person_ids: Vec<i64> = links
        .iter()
        .filter(|l| l.source_table == SourceTable::People)
        .map(|l| l.source_id)
        .collect();
    let org_ids: Vec<i64> = links
        .iter()
        .filter(|l| l.source_table == SourceTable::Organizations)
        .map(|l| l.source_id)
        .collect();
    let people: HashMap<i64, Person> = queries::rows_by_ids::<Person>(conn, &person_ids)?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let orgs: HashMap<i64, Organization> = queries::rows_by_ids::<Organization>(conn, &org_ids)?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let person_org_ids: Vec<i64> = people.values().filter_map(|p| p.organization_id).collect();
    let person_org_names = queries::organization_names(conn, &person_org_ids)?;
    let f = |v: Option<&str>| opt_clip(v, limits.field);
    Ok(links
        .iter()
        .map(|l| {
            let mut row = LinkedRow {
                source_table: l.source_table.as_str().to_owned(),
                source_id: l.source_id,
                rule: clip(&l.rule, limits.field),
                name: None,
                email: None,
                title: None,
                organization_name: None,
                domain: None,
                deleted: false,
            };
            match l.source_table {
                SourceTable::People => {
                    if let Some(p) = people.get(&l.source_id) {
                        row.name = f(Some(&p.full_name));
                        row.email = f(p.email.as_deref());
                        row.title = f(p.title.as_deref());
                        row.organization_name = f(p
                            .organization_id
                            .and_then(|o| person_org_names.get(&o))
                            .map(String::as_str));
                        row.deleted = p.deleted_at.is_some();
                    }
                }
                SourceTable::Organizations => {
                    if let Some(o) = orgs.get(&l.source_id) {
                        row.name = f(Some(&o.name));
                        row.domain = f(o.domain.as_deref());
                        row.deleted = o.deleted_at.is_some();
                    }
                }
                SourceTable::Interactions | SourceTable::Deals => {}
            }
            row
        })
        .collect())
}
