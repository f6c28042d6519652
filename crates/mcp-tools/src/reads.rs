//! The read tools: rows by id, structured finds, interactions, candidates, statistics.
//!
//! Each function runs on a blocking thread with a pooled read-only connection, reads in
//! one short implicit transaction per statement, and builds an answer that fits the
//! response budget.

use std::collections::HashMap;

use crm_store::lookups::{self, InteractionQuery, InteractionsOf, OrganizationQuery, PeopleQuery};
use crm_store::phase0::{self, CandidateStatus};
use crm_store::queries::{self, Deleted, RecentCursor};
use crm_store::rusqlite::Connection;
use crm_store::{Deal, Interaction, Organization, Person, SourceTable, Timestamp};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::args::{self, Lines, MAX_SHORT_ARG_CHARS, Position};
use crate::config::ToolsConfig;
use crate::error::ToolError;
use crate::text::{LongText, TextLimits, clip, fit, json_len, opt_clip, opt_long};
use crate::views::{
    EntityView, InteractionRef, OrgRef, PersonRef, entity_of_row, entity_view, org_ref, org_refs,
    person_refs, u32_len,
};

/// Recent interactions shown with a person or an organisation.
const RECENT_INTERACTIONS: usize = 5;
/// People and deals shown with an organisation.
const ORG_RELATED: usize = 10;
/// Participants shown with one interaction.
const PARTICIPANTS: usize = 50;
/// Participants shown per interaction in a list.
const LIST_PARTICIPANTS: usize = 10;
/// Rows shown per side of a merge candidate.
const CANDIDATE_ROWS: usize = 5;

/// Parameters of the `get_*` tools.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdParams {
    /// The row id, as returned by the find, list and search tools.
    pub id: i64,
}

fn single_limits(config: &ToolsConfig) -> TextLimits {
    TextLimits {
        long: config.max_text_chars as usize,
        field: config.max_field_chars as usize,
    }
}

fn list_limits(config: &ToolsConfig) -> TextLimits {
    TextLimits {
        long: config.list_text_chars as usize,
        field: config.max_field_chars as usize,
    }
}

fn budget(config: &ToolsConfig) -> usize {
    config.response_budget_bytes as usize
}

// ---------------------------------------------------------------------------------------
// get_person

/// A person row.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PersonView {
    /// Person id.
    pub id: i64,
    /// Full name as written in the CRM.
    pub full_name: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Email as written.
    pub email: Option<String>,
    /// Phone as written.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// The person's organisation.
    pub organization: Option<OrgRef>,
    /// LinkedIn URL.
    pub linkedin_url: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Biography.
    pub bio: Option<LongText>,
    /// When the row was created (UTC, ISO-8601).
    pub created_at: String,
    /// When the row was last updated.
    pub updated_at: String,
    /// When the row was soft-deleted; null for a live row.
    pub deleted_at: Option<String>,
}

pub(crate) fn person_view(
    conn: &Connection,
    p: &Person,
    limits: TextLimits,
) -> Result<PersonView, ToolError> {
    let f = limits.field;
    Ok(PersonView {
        id: p.id,
        full_name: clip(&p.full_name, f),
        first_name: opt_clip(p.first_name.as_deref(), f),
        last_name: opt_clip(p.last_name.as_deref(), f),
        email: opt_clip(p.email.as_deref(), f),
        phone: opt_clip(p.phone.as_deref(), f),
        title: opt_clip(p.title.as_deref(), f),
        organization: org_ref(conn, p.organization_id, limits)?,
        linkedin_url: opt_clip(p.linkedin_url.as_deref(), f),
        location: opt_clip(p.location.as_deref(), f),
        bio: opt_long(p.bio.as_deref(), limits.long),
        created_at: p.created_at.to_canonical(),
        updated_at: p.updated_at.to_canonical(),
        deleted_at: p.deleted_at.map(Timestamp::to_canonical),
    })
}

/// Answer of `get_person`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PersonDetail {
    /// The person row.
    pub person: PersonView,
    /// The canonical entity the row belongs to (null before entity resolution has run),
    /// with its other CRM rows (duplicates) and merge history.
    pub entity: Option<EntityView>,
    /// The person's most recent interactions (at most 5; use `list_interactions` for more).
    pub recent_interactions: Vec<InteractionRef>,
    /// How many live interactions the person took part in.
    pub interactions_total: u32,
}

pub(crate) fn get_person(
    conn: &Connection,
    config: &ToolsConfig,
    id: i64,
) -> Result<PersonDetail, ToolError> {
    let person: Person =
        queries::row_by_id(conn, id)?.ok_or_else(|| ToolError::not_found("person", id))?;
    let of = InteractionQuery::of(InteractionsOf::Person(id));
    let recent = lookups::interactions_page(conn, &of, None, RECENT_INTERACTIONS)?;
    let total = lookups::count_interactions(conn, &of)?;
    fit(budget(config), single_limits(config), |limits| {
        Ok(PersonDetail {
            person: person_view(conn, &person, limits)?,
            entity: entity_of_row(conn, SourceTable::People, id, limits)?,
            recent_interactions: recent.iter().map(|i| interaction_ref(i, limits)).collect(),
            interactions_total: u32::try_from(total).unwrap_or(u32::MAX),
        })
    })
}

fn interaction_ref(i: &Interaction, limits: TextLimits) -> InteractionRef {
    InteractionRef {
        id: i.id,
        kind: clip(&i.kind, limits.field),
        occurred_at: i.occurred_at.to_canonical(),
        subject: opt_clip(i.subject.as_deref(), limits.field),
    }
}

// ---------------------------------------------------------------------------------------
// get_organization

/// An organisation row.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrganizationView {
    /// Organisation id.
    pub id: i64,
    /// Name as written in the CRM.
    pub name: String,
    /// Kind (startup, fund, lp, service_provider, ...).
    pub kind: Option<String>,
    /// Web domain as written.
    pub domain: Option<String>,
    /// Website URL.
    pub website: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// Description.
    pub description: Option<LongText>,
    /// When the row was created (UTC, ISO-8601).
    pub created_at: String,
    /// When the row was last updated.
    pub updated_at: String,
    /// When the row was soft-deleted; null for a live row.
    pub deleted_at: Option<String>,
}

pub(crate) fn organization_view(o: &Organization, limits: TextLimits) -> OrganizationView {
    let f = limits.field;
    OrganizationView {
        id: o.id,
        name: clip(&o.name, f),
        kind: opt_clip(o.kind.as_deref(), f),
        domain: opt_clip(o.domain.as_deref(), f),
        website: opt_clip(o.website.as_deref(), f),
        location: opt_clip(o.location.as_deref(), f),
        description: opt_long(o.description.as_deref(), limits.long),
        created_at: o.created_at.to_canonical(),
        updated_at: o.updated_at.to_canonical(),
        deleted_at: o.deleted_at.map(Timestamp::to_canonical),
    }
}

/// A person in a short list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PersonBrief {
    /// Person id.
    pub id: i64,
    /// Full name.
    pub full_name: String,
    /// Job title.
    pub title: Option<String>,
}

/// A deal in a short list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DealBrief {
    /// Deal id (`get_deal`).
    pub id: i64,
    /// Deal name.
    pub name: String,
    /// Pipeline stage.
    pub stage: Option<String>,
    /// Amount in US dollars.
    pub amount_usd: Option<f64>,
}

/// Answer of `get_organization`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrganizationDetail {
    /// The organisation row.
    pub organization: OrganizationView,
    /// The canonical entity the row belongs to (null before entity resolution has run),
    /// with its other CRM rows (duplicates) and merge history.
    pub entity: Option<EntityView>,
    /// Its first live people by id (at most 10; use `find_people` with
    /// `organization_id` for all).
    pub people: Vec<PersonBrief>,
    /// How many live people it has.
    pub people_total: u32,
    /// Its first live deals by id (at most 10).
    pub deals: Vec<DealBrief>,
    /// How many live deals it has.
    pub deals_total: u32,
    /// Its most recent interactions (at most 5; use `list_interactions` for more).
    pub recent_interactions: Vec<InteractionRef>,
    /// How many live interactions are about it.
    pub interactions_total: u32,
}

pub(crate) fn get_organization(
    conn: &Connection,
    config: &ToolsConfig,
    id: i64,
) -> Result<OrganizationDetail, ToolError> {
    let org: Organization =
        queries::row_by_id(conn, id)?.ok_or_else(|| ToolError::not_found("organization", id))?;
    let people = queries::people_of_organization(conn, id, None, ORG_RELATED, Deleted::Exclude)?;
    let people_total = lookups::count_people_of_organization(conn, id, Deleted::Exclude)?;
    let deals = queries::deals_of_organization(conn, id, None, ORG_RELATED, Deleted::Exclude)?;
    let deals_total = lookups::count_deals_of_organization(conn, id, Deleted::Exclude)?;
    let of = InteractionQuery::of(InteractionsOf::Organization(id));
    let recent = lookups::interactions_page(conn, &of, None, RECENT_INTERACTIONS)?;
    let interactions_total = lookups::count_interactions(conn, &of)?;
    let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    fit(budget(config), single_limits(config), |limits| {
        let f = limits.field;
        Ok(OrganizationDetail {
            organization: organization_view(&org, limits),
            entity: entity_of_row(conn, SourceTable::Organizations, id, limits)?,
            people: people
                .iter()
                .map(|p| PersonBrief {
                    id: p.id,
                    full_name: clip(&p.full_name, f),
                    title: opt_clip(p.title.as_deref(), f),
                })
                .collect(),
            people_total: n(people_total),
            deals: deals
                .iter()
                .map(|d| DealBrief {
                    id: d.id,
                    name: clip(&d.name, f),
                    stage: opt_clip(d.stage.as_deref(), f),
                    amount_usd: d.amount_usd,
                })
                .collect(),
            deals_total: n(deals_total),
            recent_interactions: recent.iter().map(|i| interaction_ref(i, limits)).collect(),
            interactions_total: n(interactions_total),
        })
    })
}

// ---------------------------------------------------------------------------------------
// get_interaction

/// An interaction row.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct InteractionView {
    /// Interaction id.
    pub id: i64,
    /// `meeting`, `call`, `email` or `note`.
    pub kind: String,
    /// When it happened (UTC, ISO-8601).
    pub occurred_at: String,
    /// Subject line.
    pub subject: Option<String>,
    /// Body text (may contain HTML as written in the CRM).
    pub body: Option<LongText>,
    /// The organisation it is about.
    pub organization: Option<OrgRef>,
    /// Who recorded it.
    pub created_by: Option<String>,
    /// When the row was created.
    pub created_at: String,
    /// When the row was last updated.
    pub updated_at: String,
    /// When the row was soft-deleted; null for a live row.
    pub deleted_at: Option<String>,
}

pub(crate) fn interaction_view(
    i: &Interaction,
    org: Option<OrgRef>,
    limits: TextLimits,
) -> InteractionView {
    let f = limits.field;
    InteractionView {
        id: i.id,
        kind: clip(&i.kind, f),
        occurred_at: i.occurred_at.to_canonical(),
        subject: opt_clip(i.subject.as_deref(), f),
        body: opt_long(i.body.as_deref(), limits.long),
        organization: org,
        created_by: opt_clip(i.created_by.as_deref(), f),
        created_at: i.created_at.to_canonical(),
        updated_at: i.updated_at.to_canonical(),
        deleted_at: i.deleted_at.map(Timestamp::to_canonical),
    }
}

/// Answer of `get_interaction`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct InteractionDetail {
    /// The interaction row.
    pub interaction: InteractionView,
    /// The people who took part (at most 50).
    pub participants: Vec<PersonRef>,
    /// How many people took part.
    pub participants_total: u32,
}

pub(crate) fn get_interaction(
    conn: &Connection,
    config: &ToolsConfig,
    id: i64,
) -> Result<InteractionDetail, ToolError> {
    let interaction: Interaction =
        queries::row_by_id(conn, id)?.ok_or_else(|| ToolError::not_found("interaction", id))?;
    let ids = &interaction.participant_ids;
    fit(budget(config), single_limits(config), |limits| {
        Ok(InteractionDetail {
            interaction: interaction_view(
                &interaction,
                org_ref(conn, interaction.organization_id, limits)?,
                limits,
            ),
            participants: person_refs(conn, &ids[..ids.len().min(PARTICIPANTS)], limits)?,
            participants_total: u32_len(ids.len()),
        })
    })
}

// ---------------------------------------------------------------------------------------
// get_deal

/// A deal row.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DealView {
    /// Deal id.
    pub id: i64,
    /// Deal name.
    pub name: String,
    /// Pipeline stage.
    pub stage: Option<String>,
    /// Amount in US dollars.
    pub amount_usd: Option<f64>,
    /// Notes.
    pub notes: Option<LongText>,
    /// The organisation the deal is with.
    pub organization: Option<OrgRef>,
    /// When the row was created.
    pub created_at: String,
    /// When the row was last updated.
    pub updated_at: String,
    /// When the row was soft-deleted; null for a live row.
    pub deleted_at: Option<String>,
}

pub(crate) fn deal_view(d: &Deal, org: Option<OrgRef>, limits: TextLimits) -> DealView {
    let f = limits.field;
    DealView {
        id: d.id,
        name: clip(&d.name, f),
        stage: opt_clip(d.stage.as_deref(), f),
        amount_usd: d.amount_usd,
        notes: opt_long(d.notes.as_deref(), limits.long),
        organization: org,
        created_at: d.created_at.to_canonical(),
        updated_at: d.updated_at.to_canonical(),
        deleted_at: d.deleted_at.map(Timestamp::to_canonical),
    }
}

/// Answer of `get_deal`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DealDetail {
    /// The deal row.
    pub deal: DealView,
}

pub(crate) fn get_deal(
    conn: &Connection,
    config: &ToolsConfig,
    id: i64,
) -> Result<DealDetail, ToolError> {
    let deal: Deal =
        queries::row_by_id(conn, id)?.ok_or_else(|| ToolError::not_found("deal", id))?;
    fit(budget(config), single_limits(config), |limits| {
        Ok(DealDetail {
            deal: deal_view(&deal, org_ref(conn, deal.organization_id, limits)?, limits),
        })
    })
}

// ---------------------------------------------------------------------------------------
// paging

/// Where a list stands.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PageInfo {
    /// Pass this as `cursor` (with the same filters) for the next page; null when this is
    /// the last page.
    pub next_cursor: Option<String>,
    /// The page size used (the requested `limit`, capped).
    pub limit: u32,
    /// True when the page holds fewer items than `limit` because the answer reached its
    /// size budget; the rest follows with `next_cursor`.
    pub shortened_to_fit: bool,
}

/// Builds a page from up to `limit + 1` fetched rows: items are added while the answer
/// stays within `budget` bytes (at least one is always added), and the cursor points
/// after the last item added.
pub(crate) fn page<R, V>(
    rows: &[R],
    limit: usize,
    budget: usize,
    overhead: usize,
    mut view: impl FnMut(&R) -> Result<V, ToolError>,
    position: impl Fn(&R) -> Position,
) -> Result<(Vec<V>, Option<Position>, bool), ToolError>
where
    V: Serialize,
{
    let mut items = Vec::with_capacity(rows.len().min(limit));
    let mut used = overhead;
    let mut shortened = false;
    for row in rows.iter().take(limit) {
        let item = view(row)?;
        let size = json_len(&item) + 1;
        if !items.is_empty() && used + size > budget {
            shortened = true;
            break;
        }
        used += size;
        items.push(item);
    }
    let more = shortened || rows.len() > limit;
    let next = if more {
        rows.get(items.len().saturating_sub(1)).map(position)
    } else {
        None
    };
    Ok((items, next, shortened))
}

fn page_info(
    tool: &str,
    query: &str,
    next: Option<Position>,
    limit: usize,
    short: bool,
) -> PageInfo {
    PageInfo {
        next_cursor: next.map(|p| args::encode_cursor(tool, query, p)),
        limit: u32_len(limit),
        shortened_to_fit: short,
    }
}

/// Room kept for the page wrapper (cursor, flags) in a list answer.
const PAGE_OVERHEAD: usize = 600;

fn after_id(position: Option<Position>) -> Result<Option<i64>, ToolError> {
    match position {
        None => Ok(None),
        Some(Position::AfterId { id }) => Ok(Some(id)),
        Some(_) => Err(ToolError::arg("cursor", "does not fit this list")),
    }
}

fn name_tokens(name: Option<&str>) -> Result<Vec<String>, ToolError> {
    let Some(name) = args::opt_text("name", name, MAX_SHORT_ARG_CHARS, Lines::Single)? else {
        return Ok(Vec::new());
    };
    let tokens: Vec<String> = name.split_whitespace().map(str::to_owned).collect();
    if tokens.len() > 8 {
        return Err(ToolError::arg(
            "name",
            format!("has {} words; at most 8 are matched", tokens.len()),
        ));
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------------------
// find_people

/// Parameters of `find_people`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindPeopleParams {
    /// Words that must all appear in the person's name (case-insensitive, any order),
    /// e.g. `ada love`.
    pub name: Option<String>,
    /// Text that must appear in the email address, e.g. `ada@` or `example.com`.
    pub email: Option<String>,
    /// A web domain, e.g. `acme.com`: matches people whose email is at that domain or
    /// whose organisation has that domain.
    pub domain: Option<String>,
    /// Only people of this organisation.
    pub organization_id: Option<i64>,
    /// Page size, default 20, capped at 100.
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// A person in a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PersonSummary {
    /// Person id (`get_person`).
    pub id: i64,
    /// Full name.
    pub full_name: String,
    /// Job title.
    pub title: Option<String>,
    /// Email as written.
    pub email: Option<String>,
    /// Phone as written.
    pub phone: Option<String>,
    /// The person's organisation.
    pub organization: Option<OrgRef>,
    /// Location.
    pub location: Option<String>,
    /// The canonical entity (null before entity resolution has run).
    pub entity_id: Option<String>,
}

/// Answer of `find_people`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FindPeopleResult {
    /// Live people matching every filter, by id.
    pub people: Vec<PersonSummary>,
    /// Paging.
    pub page: PageInfo,
}

pub(crate) fn find_people(
    conn: &Connection,
    config: &ToolsConfig,
    p: &FindPeopleParams,
) -> Result<FindPeopleResult, ToolError> {
    const TOOL: &str = "find_people";
    let query = PeopleQuery {
        name_tokens: name_tokens(p.name.as_deref())?,
        email: args::opt_text(
            "email",
            p.email.as_deref(),
            MAX_SHORT_ARG_CHARS,
            Lines::Single,
        )?,
        domain: args::opt_text(
            "domain",
            p.domain.as_deref(),
            MAX_SHORT_ARG_CHARS,
            Lines::Single,
        )?,
        organization_id: p.organization_id,
        deleted: Some(Deleted::Exclude),
    };
    let limit = args::page_limit(p.limit, config)?;
    let hash = args::query_hash(&(
        &query.name_tokens,
        &query.email,
        &query.domain,
        query.organization_id,
    ));
    let after = after_id(args::decode_cursor(TOOL, &hash, p.cursor.as_deref())?)?;
    let rows = lookups::find_people(conn, &query, after, limit + 1)?;
    let limits = list_limits(config);
    let org_ids: Vec<i64> = rows.iter().filter_map(|r| r.organization_id).collect();
    let orgs = org_refs(conn, &org_ids, limits)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let entities = phase0::entity_ids_of_rows(conn, SourceTable::People, &ids)?;
    let f = limits.field;
    let (people, next, short) = page(
        &rows,
        limit,
        budget(config),
        PAGE_OVERHEAD,
        |r: &Person| {
            Ok(PersonSummary {
                id: r.id,
                full_name: clip(&r.full_name, f),
                title: opt_clip(r.title.as_deref(), f),
                email: opt_clip(r.email.as_deref(), f),
                phone: opt_clip(r.phone.as_deref(), f),
                organization: r.organization_id.and_then(|o| orgs.get(&o).cloned()),
                location: opt_clip(r.location.as_deref(), f),
                entity_id: entities.get(&r.id).cloned(),
            })
        },
        |r| Position::AfterId { id: r.id },
    )?;
    Ok(FindPeopleResult {
        people,
        page: page_info(TOOL, &hash, next, limit, short),
    })
}

// ---------------------------------------------------------------------------------------
// find_organizations

/// Parameters of `find_organizations`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindOrganizationsParams {
    /// Words that must all appear in the name (case-insensitive, any order).
    pub name: Option<String>,
    /// A web domain, e.g. `acme.com` (matches the domain, with or without `www.`, or the
    /// website).
    pub domain: Option<String>,
    /// Only this kind, e.g. `startup`, `fund`, `lp`.
    pub kind: Option<String>,
    /// Page size, default 20, capped at 100.
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// An organisation in a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrganizationSummary {
    /// Organisation id (`get_organization`).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: Option<String>,
    /// Web domain as written.
    pub domain: Option<String>,
    /// Website URL.
    pub website: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// The canonical entity (null before entity resolution has run).
    pub entity_id: Option<String>,
}

/// Answer of `find_organizations`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FindOrganizationsResult {
    /// Live organisations matching every filter, by id.
    pub organizations: Vec<OrganizationSummary>,
    /// Paging.
    pub page: PageInfo,
}

pub(crate) fn find_organizations(
    conn: &Connection,
    config: &ToolsConfig,
    p: &FindOrganizationsParams,
) -> Result<FindOrganizationsResult, ToolError> {
    const TOOL: &str = "find_organizations";
    let query = OrganizationQuery {
        name_tokens: name_tokens(p.name.as_deref())?,
        domain: args::opt_text(
            "domain",
            p.domain.as_deref(),
            MAX_SHORT_ARG_CHARS,
            Lines::Single,
        )?,
        kind: args::opt_text(
            "kind",
            p.kind.as_deref(),
            MAX_SHORT_ARG_CHARS,
            Lines::Single,
        )?,
        deleted: Some(Deleted::Exclude),
    };
    let limit = args::page_limit(p.limit, config)?;
    let hash = args::query_hash(&(&query.name_tokens, &query.domain, &query.kind));
    let after = after_id(args::decode_cursor(TOOL, &hash, p.cursor.as_deref())?)?;
    let rows = lookups::find_organizations(conn, &query, after, limit + 1)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let entities = phase0::entity_ids_of_rows(conn, SourceTable::Organizations, &ids)?;
    let f = list_limits(config).field;
    let (organizations, next, short) = page(
        &rows,
        limit,
        budget(config),
        PAGE_OVERHEAD,
        |r: &Organization| {
            Ok(OrganizationSummary {
                id: r.id,
                name: clip(&r.name, f),
                kind: opt_clip(r.kind.as_deref(), f),
                domain: opt_clip(r.domain.as_deref(), f),
                website: opt_clip(r.website.as_deref(), f),
                location: opt_clip(r.location.as_deref(), f),
                entity_id: entities.get(&r.id).cloned(),
            })
        },
        |r| Position::AfterId { id: r.id },
    )?;
    Ok(FindOrganizationsResult {
        organizations,
        page: page_info(TOOL, &hash, next, limit, short),
    })
}

// ---------------------------------------------------------------------------------------
// list_interactions

/// Parameters of `list_interactions`. Give exactly one of `person_id` and
/// `organization_id`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListInteractionsParams {
    /// Interactions this person took part in.
    pub person_id: Option<i64>,
    /// Interactions about this organisation.
    pub organization_id: Option<i64>,
    /// Only interactions at or after this date or date-time (ISO-8601, UTC), e.g.
    /// `2026-01-01`.
    pub since: Option<String>,
    /// Only interactions at or before this date (the whole day) or date-time.
    pub until: Option<String>,
    /// Only this kind: `meeting`, `call`, `email` or `note`.
    pub kind: Option<String>,
    /// Page size, default 20, capped at 100.
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// An interaction in a list.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct InteractionItem {
    /// Interaction id (`get_interaction` for the whole body).
    pub id: i64,
    /// `meeting`, `call`, `email` or `note`.
    pub kind: String,
    /// When it happened (UTC, ISO-8601).
    pub occurred_at: String,
    /// Subject line.
    pub subject: Option<String>,
    /// The beginning of the body.
    pub body: Option<LongText>,
    /// The organisation it is about.
    pub organization: Option<OrgRef>,
    /// The first people who took part (at most 10).
    pub participants: Vec<PersonRef>,
    /// How many people took part.
    pub participants_total: u32,
    /// Who recorded it.
    pub created_by: Option<String>,
}

/// Answer of `list_interactions`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ListInteractionsResult {
    /// Live interactions, most recent first.
    pub interactions: Vec<InteractionItem>,
    /// Paging.
    pub page: PageInfo,
}

pub(crate) fn list_interactions(
    conn: &Connection,
    config: &ToolsConfig,
    p: &ListInteractionsParams,
) -> Result<ListInteractionsResult, ToolError> {
    const TOOL: &str = "list_interactions";
    let of = match (p.person_id, p.organization_id) {
        (Some(id), None) => InteractionsOf::Person(id),
        (None, Some(id)) => InteractionsOf::Organization(id),
        (Some(_), Some(_)) => {
            return Err(ToolError::arg(
                "organization_id",
                "give either person_id or organization_id, not both",
            ));
        }
        (None, None) => {
            return Err(ToolError::arg(
                "person_id",
                "give person_id or organization_id (exactly one)",
            ));
        }
    };
    let query = InteractionQuery {
        of,
        since: args::date("since", p.since.as_deref(), false)?,
        until: args::date("until", p.until.as_deref(), true)?,
        kind: args::opt_text(
            "kind",
            p.kind.as_deref(),
            MAX_SHORT_ARG_CHARS,
            Lines::Single,
        )?,
        deleted: Deleted::Exclude,
    };
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since > until
    {
        return Err(ToolError::arg("since", "is after `until`"));
    }
    let limit = args::page_limit(p.limit, config)?;
    let hash = args::query_hash(&(
        query.of,
        query.since.map(|t| t.to_canonical()),
        query.until.map(|t| t.to_canonical()),
        &query.kind,
    ));
    let before = match args::decode_cursor(TOOL, &hash, p.cursor.as_deref())? {
        None => None,
        Some(Position::Before { at, id }) => Some(RecentCursor {
            occurred_at: Timestamp::parse(&at)
                .map_err(|_| ToolError::arg("cursor", "does not fit this list"))?,
            id,
        }),
        Some(_) => return Err(ToolError::arg("cursor", "does not fit this list")),
    };
    let rows = lookups::interactions_page(conn, &query, before, limit + 1)?;
    let limits = list_limits(config);
    let org_ids: Vec<i64> = rows.iter().filter_map(|r| r.organization_id).collect();
    let orgs = org_refs(conn, &org_ids, limits)?;
    let person_ids: Vec<i64> = rows
        .iter()
        .flat_map(|r| r.participant_ids.iter().take(LIST_PARTICIPANTS).copied())
        .collect();
    let people: HashMap<i64, PersonRef> = person_refs(conn, &person_ids, limits)?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    let f = limits.field;
    let (interactions, next, short) = page(
        &rows,
        limit,
        budget(config),
        PAGE_OVERHEAD,
        |r: &Interaction| {
            Ok(InteractionItem {
                id: r.id,
                kind: clip(&r.kind, f),
                occurred_at: r.occurred_at.to_canonical(),
                subject: opt_clip(r.subject.as_deref(), f),
                body: opt_long(r.body.as_deref(), limits.long),
                organization: r.organization_id.and_then(|o| orgs.get(&o).cloned()),
                participants: r
                    .participant_ids
                    .iter()
                    .take(LIST_PARTICIPANTS)
                    .filter_map(|id| people.get(id).cloned())
                    .collect(),
                participants_total: u32_len(r.participant_ids.len()),
                created_by: opt_clip(r.created_by.as_deref(), f),
            })
        },
        |r| Position::Before {
            at: r.occurred_at.to_canonical(),
            id: r.id,
        },
    )?;
    Ok(ListInteractionsResult {
        interactions,
        page: page_info(TOOL, &hash, next, limit, short),
    })
}

// ---------------------------------------------------------------------------------------
// list_merge_candidates

/// Which candidates to list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateStatusFilter {
    /// Waiting for a decision (the default).
    #[default]
    Pending,
    /// Judged the same entity and merged.
    Merged,
    /// Judged different entities.
    Rejected,
    /// The automatic judge failed on them.
    Error,
}

impl From<CandidateStatusFilter> for CandidateStatus {
    fn from(s: CandidateStatusFilter) -> Self {
        match s {
            CandidateStatusFilter::Pending => Self::Pending,
            CandidateStatusFilter::Merged => Self::Merged,
            CandidateStatusFilter::Rejected => Self::Rejected,
            CandidateStatusFilter::Error => Self::Error,
        }
    }
}

/// Parameters of `list_merge_candidates`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCandidatesParams {
    /// Which candidates: `pending` (default), `merged`, `rejected` or `error`.
    pub status: Option<CandidateStatusFilter>,
    /// Page size, default 20, capped at 100.
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page; omit for the first page.
    pub cursor: Option<String>,
}

/// A pair of entities flagged as possibly the same.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CandidateView {
    /// Candidate id (`review_merge_candidate`).
    pub id: i64,
    /// `person` or `organization`.
    pub kind: String,
    /// `pending`, `merged`, `rejected` or `error`.
    pub status: String,
    /// The resolver's similarity score (0 to 1).
    pub score: f64,
    /// Why the pair was flagged (`nickname`, `typo`, `initials`, ...).
    pub reasons: Vec<String>,
    /// One entity, with up to 5 of its CRM rows.
    pub entity_a: EntityView,
    /// The other entity, with up to 5 of its CRM rows.
    pub entity_b: EntityView,
    /// Who decided (`llm:<model>`, `human:<who>`), once decided.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<String>,
}

/// Answer of `list_merge_candidates`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ListCandidatesResult {
    /// Candidates by id.
    pub candidates: Vec<CandidateView>,
    /// Paging.
    pub page: PageInfo,
}

pub(crate) fn candidate_view(
    conn: &Connection,
    c: &phase0::Candidate,
    limits: TextLimits,
) -> Result<CandidateView, ToolError> {
    Ok(CandidateView {
        id: c.id,
        kind: c.kind.as_str().to_owned(),
        status: c.status.as_str().to_owned(),
        score: c.score,
        reasons: c
            .reasons
            .iter()
            .take(20)
            .map(|r| clip(r, limits.field))
            .collect(),
        entity_a: entity_view(conn, &c.entity_a, limits, CANDIDATE_ROWS)?,
        entity_b: entity_view(conn, &c.entity_b, limits, CANDIDATE_ROWS)?,
        decided_by: opt_clip(c.decided_by.as_deref(), limits.field),
        decided_at: c.decided_at.map(Timestamp::to_canonical),
    })
}

pub(crate) fn list_merge_candidates(
    conn: &Connection,
    config: &ToolsConfig,
    p: &ListCandidatesParams,
) -> Result<ListCandidatesResult, ToolError> {
    const TOOL: &str = "list_merge_candidates";
    let status: CandidateStatus = p.status.unwrap_or_default().into();
    let limit = args::page_limit(p.limit, config)?;
    let hash = args::query_hash(&status.as_str());
    let after = after_id(args::decode_cursor(TOOL, &hash, p.cursor.as_deref())?)?;
    let rows = phase0::candidates_by_status(conn, status, after, limit + 1)?;
    let limits = list_limits(config);
    let (candidates, next, short) = page(
        &rows,
        limit,
        budget(config),
        PAGE_OVERHEAD,
        |c| candidate_view(conn, c, limits),
        |c| Position::AfterId { id: c.id },
    )?;
    Ok(ListCandidatesResult {
        candidates,
        page: page_info(TOOL, &hash, next, limit, short),
    })
}

// ---------------------------------------------------------------------------------------
// crm_stats

/// Row counts of one CRM table.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableCounts {
    /// The table.
    pub table: String,
    /// Live rows.
    pub live: u64,
    /// Soft-deleted rows.
    pub soft_deleted: u64,
}

/// Canonical entity counts.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EntityCounts {
    /// Live person entities.
    pub people: u64,
    /// Live organisation entities.
    pub organizations: u64,
    /// Entities merged into another one.
    pub merged_away: u64,
    /// CRM rows linked to an entity.
    pub linked_rows: u64,
}

/// Merge candidate counts by status.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct CandidateCounts {
    /// Waiting for a decision.
    pub pending: u64,
    /// Merged.
    pub merged: u64,
    /// Rejected.
    pub rejected: u64,
    /// The automatic judge failed.
    pub error: u64,
}

/// Index sync progress of one CRM table.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TableSync {
    /// The table.
    pub table: String,
    /// `updated_at` of the last row synced (null before the first sync).
    pub watermark_updated_at: Option<String>,
    /// Rows updated after the watermark: what the next sync will read. This is the
    /// watermark lag in rows.
    pub rows_behind: u64,
    /// Rows of this table recorded as indexed.
    pub indexed_rows: u64,
    /// When a sync last ran for this table.
    pub last_run_at: Option<String>,
    /// When a full rebuild last completed.
    pub last_full_at: Option<String>,
}

/// The latest run of a pipeline step.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StepRun {
    /// The step (`resolve`, `fuzzy`, `backfill`, `sync`, ...).
    pub step: String,
    /// `running`, `ok` or `failed`.
    pub status: String,
    /// When it started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// The error of a failed run.
    pub error: Option<String>,
}

/// Answer of `crm_stats`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CrmStats {
    /// Row counts per CRM table.
    pub tables: Vec<TableCounts>,
    /// Canonical entities.
    pub entities: EntityCounts,
    /// Merge candidates by status.
    pub candidates: CandidateCounts,
    /// The index collection the sync figures are for.
    pub collection: String,
    /// Sync progress per table.
    pub sync: Vec<TableSync>,
    /// The latest run of each pipeline step.
    pub last_runs: Vec<StepRun>,
    /// The search index, as this server sees it.
    pub index: crate::search::IndexStatus,
}

pub(crate) fn crm_stats(
    conn: &Connection,
    config: &ToolsConfig,
    index: crate::search::IndexStatus,
) -> Result<CrmStats, ToolError> {
    let f = config.max_field_chars as usize;
    let tables = lookups::table_stats(conn)?
        .into_iter()
        .map(|t| TableCounts {
            table: t.table.as_str().to_owned(),
            live: t.rows.saturating_sub(t.soft_deleted),
            soft_deleted: t.soft_deleted,
        })
        .collect();
    let e = lookups::entity_stats(conn)?;
    let mut candidates = CandidateCounts::default();
    for (status, n) in phase0::candidate_counts(conn)? {
        match status {
            CandidateStatus::Pending => candidates.pending = n,
            CandidateStatus::Merged => candidates.merged = n,
            CandidateStatus::Rejected => candidates.rejected = n,
            CandidateStatus::Error => candidates.error = n,
        }
    }
    let mut sync = Vec::new();
    for table in SourceTable::ALL {
        let state = phase0::get_sync_state(conn, &config.collection, table)?;
        let watermark = state.as_ref().and_then(|s| s.watermark);
        sync.push(TableSync {
            table: table.as_str().to_owned(),
            watermark_updated_at: watermark.map(|w| w.updated_at.to_canonical()),
            rows_behind: lookups::rows_after_watermark(conn, table, watermark)?,
            indexed_rows: phase0::count_indexed_rows(conn, &config.collection, table)?,
            last_run_at: state
                .as_ref()
                .and_then(|s| s.last_run_at)
                .map(Timestamp::to_canonical),
            last_full_at: state
                .as_ref()
                .and_then(|s| s.last_full_at)
                .map(Timestamp::to_canonical),
        });
    }
    let mut last_runs: Vec<StepRun> = Vec::new();
    for run in phase0::recent_runs(conn, None, 200)? {
        if last_runs.iter().any(|r| r.step == run.step) {
            continue;
        }
        last_runs.push(StepRun {
            step: clip(&run.step, f),
            status: run.status.as_str().to_owned(),
            started_at: run.started_at.to_canonical(),
            finished_at: run.finished_at.map(Timestamp::to_canonical),
            error: opt_clip(run.error.as_deref(), 1_000),
        });
    }
    last_runs.sort_by(|a, b| a.step.cmp(&b.step));
    Ok(CrmStats {
        tables,
        entities: EntityCounts {
            people: e.people,
            organizations: e.organizations,
            merged_away: e.merged_away,
            linked_rows: e.linked_rows,
        },
        candidates,
        collection: config.collection.clone(),
        sync,
        last_runs,
        index,
    })
}
