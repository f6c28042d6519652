//! The logged write tools: `add_note`, `update_person`, `update_organization`.
//!
//! Each write runs in one short `IMMEDIATE` transaction that also appends its
//! `mcp_write_log` row (tool, client, arguments, the row before and after, outcome), so
//! the write and its record commit together or not at all. A write refused because of
//! the data (a missing or deleted row) is rolled back and logged on its own with the
//! outcome `rejected: <why>`. Every write sets `updated_at` to now, so the next
//! incremental sync re-indexes the row.

use crm_store::edits::{self, NewNote, OrganizationField, PersonField};
use crm_store::lookups::{self, RowState};
use crm_store::phase0::{self, McpWrite};
use crm_store::rusqlite::{Connection, Transaction, TransactionBehavior};
use crm_store::{Interaction, Organization, Person, SourceTable, Timestamp, queries};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::{self, Lines, MAX_LONG_ARG_CHARS, MAX_SHORT_ARG_CHARS};
use crate::config::ToolsConfig;
use crate::error::ToolError;
use crate::reads::{
    InteractionView, OrganizationView, PersonView, interaction_view, organization_view, person_view,
};
use crate::text::{TextLimits, fit};
use crate::views::{PersonRef, org_ref, person_refs};

/// Who is writing, for `mcp_write_log.client`, `created_by` and `decided_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The client's name from the MCP handshake (`clientInfo.name`), cleaned.
    pub name: String,
    /// How it connected: `stdio`, `http` or `http+token`.
    pub transport: &'static str,
}

impl ClientIdentity {
    /// The `mcp_write_log.client` value, e.g. `claude-code (http+token)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.transport)
    }

    /// The `decided_by` of a human decision made through this client.
    pub fn decided_by(&self) -> String {
        format!("human:{}", self.name)
    }
}

/// Turns a client-supplied name into something safe to store and show: printable, at
/// most 64 characters, `unknown` when empty.
pub(crate) fn clean_client_name(name: Option<&str>) -> String {
    let cleaned: String = name
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned.to_owned()
    }
}

pub(crate) fn to_value(value: &impl Serialize) -> Result<Value, ToolError> {
    serde_json::to_value(value).map_err(|e| ToolError::Internal(format!("serialising: {e}")))
}

fn begin(conn: &mut Connection) -> Result<Transaction<'_>, ToolError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|source| {
            ToolError::Store(crm_store::StoreError::Sqlite {
                context: "starting a write transaction".into(),
                source,
            })
        })
}

fn commit(tx: Transaction<'_>) -> Result<(), ToolError> {
    tx.commit().map_err(|source| {
        ToolError::Store(crm_store::StoreError::Sqlite {
            context: "committing a write".into(),
            source,
        })
    })
}

/// What a write tool did, before the answer is built.
struct Written {
    log_id: i64,
}

/// Logs a write refused because of the data, in its own transaction.
fn log_rejection(
    conn: &mut Connection,
    client: &ClientIdentity,
    tool: &str,
    arguments: &Value,
    target: Option<(SourceTable, i64)>,
    error: &ToolError,
) -> Result<(), ToolError> {
    let tx = begin(conn)?;
    phase0::insert_mcp_write(
        &tx,
        &McpWrite {
            at: Timestamp::now(),
            tool: tool.to_owned(),
            client: Some(client.label()),
            arguments: arguments.clone(),
            target_table: target.map(|(t, _)| t.as_str().to_owned()),
            target_id: target.map(|(_, id)| id),
            before: None,
            after: None,
            outcome: format!("rejected: {error}"),
        },
    )?;
    commit(tx)
}

/// Runs a write; a refusal because of the data is logged, other errors are not (they
/// either never reached the database or are database failures the tool reports).
pub(crate) fn logged<T>(
    conn: &mut Connection,
    client: &ClientIdentity,
    tool: &str,
    arguments: &Value,
    target: Option<(SourceTable, i64)>,
    write: impl FnOnce(&Transaction<'_>) -> Result<T, ToolError>,
) -> Result<T, ToolError> {
    let tx = begin(conn)?;
    match write(&tx) {
        Ok(value) => {
            commit(tx)?;
            Ok(value)
        }
        Err(err) => {
            drop(tx);
            if matches!(err, ToolError::NotFound { .. } | ToolError::Refused(_)) {
                log_rejection(conn, client, tool, arguments, target, &err)?;
            }
            Err(err)
        }
    }
}

fn require_live(
    tx: &Transaction<'_>,
    table: SourceTable,
    what: &'static str,
    argument: &'static str,
    ids: &[i64],
) -> Result<(), ToolError> {
    for (id, state) in ids.iter().zip(lookups::row_states(tx, table, ids)?) {
        match state {
            RowState::Live => {}
            RowState::Missing => {
                return Err(ToolError::Refused(format!(
                    "{argument}: {what} {id} does not exist"
                )));
            }
            RowState::SoftDeleted => {
                return Err(ToolError::Refused(format!(
                    "{argument}: {what} {id} is deleted"
                )));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// add_note

/// Parameters of `add_note`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNoteParams {
    /// The note's text (plain text, at most 100000 characters).
    pub body: String,
    /// A subject line (at most 500 characters).
    pub subject: Option<String>,
    /// The people the note is about (at most 100). Give at least one person or an
    /// organisation.
    #[serde(default)]
    pub person_ids: Vec<i64>,
    /// The organisation the note is about.
    pub organization_id: Option<i64>,
    /// When the note is about (ISO-8601); default now.
    pub occurred_at: Option<String>,
}

/// Answer of `add_note`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AddNoteResult {
    /// The new interaction, of kind `note`.
    pub interaction: InteractionView,
    /// The people it is linked to.
    pub participants: Vec<PersonRef>,
    /// The `mcp_write_log` row that records the write.
    pub log_id: i64,
}

pub(crate) fn add_note(
    conn: &mut Connection,
    config: &ToolsConfig,
    client: &ClientIdentity,
    p: &AddNoteParams,
) -> Result<AddNoteResult, ToolError> {
    const TOOL: &str = "add_note";
    let body = args::required_text("body", &p.body, MAX_LONG_ARG_CHARS, Lines::Multi)?;
    let subject = args::opt_text(
        "subject",
        p.subject.as_deref(),
        MAX_SHORT_ARG_CHARS,
        Lines::Single,
    )?;
    let person_ids = args::ids("person_ids", &p.person_ids)?;
    let occurred_at = args::date("occurred_at", p.occurred_at.as_deref(), false)?;
    if person_ids.is_empty() && p.organization_id.is_none() {
        return Err(ToolError::arg(
            "person_ids",
            "give at least one person id, or an organization_id",
        ));
    }
    let arguments = to_value(p)?;
    let now = Timestamp::now();
    let created_by = format!("mcp:{}", client.name);
    let (id, written) = logged(conn, client, TOOL, &arguments, None, |tx| {
        require_live(tx, SourceTable::People, "person", "person_ids", &person_ids)?;
        if let Some(org) = p.organization_id {
            require_live(
                tx,
                SourceTable::Organizations,
                "organization",
                "organization_id",
                &[org],
            )?;
        }
        let id = edits::insert_note(
            tx,
            &NewNote {
                subject: subject.as_deref(),
                body: &body,
                occurred_at: occurred_at.unwrap_or(now),
                organization_id: p.organization_id,
                person_ids: &person_ids,
                created_by: &created_by,
                now,
            },
        )?;
        let after: Interaction = queries::row_by_id(tx, id)?
            .ok_or_else(|| ToolError::Internal(format!("note {id} vanished after insert")))?;
        let log_id = phase0::insert_mcp_write(
            tx,
            &McpWrite {
                at: now,
                tool: TOOL.to_owned(),
                client: Some(client.label()),
                arguments: arguments.clone(),
                target_table: Some(SourceTable::Interactions.as_str().to_owned()),
                target_id: Some(id),
                before: None,
                after: Some(to_value(&after)?),
                outcome: "ok".to_owned(),
            },
        )?;
        Ok((id, Written { log_id }))
    })?;
    let note: Interaction = queries::row_by_id(conn, id)?
        .ok_or_else(|| ToolError::Internal(format!("note {id} vanished after commit")))?;
    let limits = TextLimits {
        long: config.max_text_chars as usize,
        field: config.max_field_chars as usize,
    };
    fit(config.response_budget_bytes as usize, limits, |limits| {
        Ok(AddNoteResult {
            interaction: interaction_view(
                &note,
                org_ref(conn, note.organization_id, limits)?,
                limits,
            ),
            participants: person_refs(conn, &note.participant_ids, limits)?,
            log_id: written.log_id,
        })
    })
}

// ---------------------------------------------------------------------------------------
// field checks

fn check_email(value: &str) -> Result<(), ToolError> {
    let ok = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.contains('@')
    }) && !value.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ToolError::arg(
            "email",
            format!("{value:?} is not an email address"),
        ))
    }
}

fn check_phone(value: &str) -> Result<(), ToolError> {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().x/#*".contains(c) || c.is_ascii_alphabetic());
    if allowed && (3..=20).contains(&digits) {
        Ok(())
    } else {
        Err(ToolError::arg(
            "phone",
            format!("{value:?} is not a phone number (3 to 20 digits, with + - ( ) . spaces)"),
        ))
    }
}

fn check_domain(value: &str) -> Result<(), ToolError> {
    let ok = value.contains('.')
        && value
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        && !value.starts_with('.')
        && !value.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(ToolError::arg(
            "domain",
            format!("{value:?} is not a bare domain such as acme.com"),
        ))
    }
}

fn check_website(value: &str) -> Result<(), ToolError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.chars().any(char::is_whitespace) => Ok(()),
        _ => Err(ToolError::arg(
            "website",
            format!("{value:?} is not a web address starting with http:// or https://"),
        )),
    }
}

/// A format check of one field's new value.
type FieldCheck = fn(&str) -> Result<(), ToolError>;

/// One requested change: `Some(None)` clears the field.
fn change(
    name: &'static str,
    value: Option<&str>,
    max_chars: usize,
    lines: Lines,
    check: Option<FieldCheck>,
) -> Result<Option<Option<String>>, ToolError> {
    let Some(value) = value else { return Ok(None) };
    args::text(name, value, max_chars, lines)?;
    let value = value.trim();
    if value.is_empty() {
        return Ok(Some(None));
    }
    if let Some(check) = check {
        check(value)?;
    }
    Ok(Some(Some(value.to_owned())))
}

// ---------------------------------------------------------------------------------------
// update_person

/// Parameters of `update_person`. Only the fields given change; an empty string clears
/// a field. Names, ids and timestamps cannot be changed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePersonParams {
    /// The person to update.
    pub id: i64,
    /// New job title.
    pub title: Option<String>,
    /// New email address.
    pub email: Option<String>,
    /// New phone number.
    pub phone: Option<String>,
    /// New location.
    pub location: Option<String>,
    /// New biography (at most 100000 characters).
    pub bio: Option<String>,
}

/// Answer of `update_person` and `update_organization`: the fields that changed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UpdatePersonResult {
    /// The person after the update.
    pub person: PersonView,
    /// The fields whose value changed (empty when every value was already as asked, in
    /// which case nothing was written).
    pub changed_fields: Vec<String>,
    /// The `mcp_write_log` row that records the call.
    pub log_id: i64,
}

pub(crate) fn update_person(
    conn: &mut Connection,
    config: &ToolsConfig,
    client: &ClientIdentity,
    p: &UpdatePersonParams,
) -> Result<UpdatePersonResult, ToolError> {
    const TOOL: &str = "update_person";
    let s = MAX_SHORT_ARG_CHARS;
    let requested: Vec<(PersonField, Option<String>)> = [
        (
            PersonField::Title,
            change("title", p.title.as_deref(), s, Lines::Single, None)?,
        ),
        (
            PersonField::Email,
            change(
                "email",
                p.email.as_deref(),
                s,
                Lines::Single,
                Some(check_email),
            )?,
        ),
        (
            PersonField::Phone,
            change(
                "phone",
                p.phone.as_deref(),
                s,
                Lines::Single,
                Some(check_phone),
            )?,
        ),
        (
            PersonField::Location,
            change("location", p.location.as_deref(), s, Lines::Single, None)?,
        ),
        (
            PersonField::Bio,
            change(
                "bio",
                p.bio.as_deref(),
                MAX_LONG_ARG_CHARS,
                Lines::Multi,
                None,
            )?,
        ),
    ]
    .into_iter()
    .filter_map(|(f, c)| c.map(|c| (f, c)))
    .collect();
    if requested.is_empty() {
        return Err(ToolError::arg(
            "id",
            "give at least one field to change: title, email, phone, location, bio",
        ));
    }
    let arguments = to_value(p)?;
    let id = p.id;
    let (changed, written) = logged(
        conn,
        client,
        TOOL,
        &arguments,
        Some((SourceTable::People, id)),
        |tx| {
            let before: Person =
                queries::row_by_id(tx, id)?.ok_or_else(|| ToolError::not_found("person", id))?;
            if before.deleted_at.is_some() {
                return Err(ToolError::Refused(format!(
                    "person {id} is deleted and cannot be updated"
                )));
            }
            let current = |f: PersonField| match f {
                PersonField::Title => before.title.clone(),
                PersonField::Email => before.email.clone(),
                PersonField::Phone => before.phone.clone(),
                PersonField::Location => before.location.clone(),
                PersonField::Bio => before.bio.clone(),
            };
            let changes: Vec<(PersonField, Option<String>)> = requested
                .iter()
                .filter(|(f, v)| current(*f) != *v)
                .cloned()
                .collect();
            let now = Timestamp::now();
            if !changes.is_empty() {
                edits::update_person_fields(tx, id, &changes, now)?;
            }
            let after: Person = queries::row_by_id(tx, id)?.ok_or_else(|| {
                ToolError::Internal(format!("person {id} vanished during update"))
            })?;
            let names: Vec<String> = changes.iter().map(|(f, _)| f.column().to_owned()).collect();
            let log_id = phase0::insert_mcp_write(
                tx,
                &McpWrite {
                    at: now,
                    tool: TOOL.to_owned(),
                    client: Some(client.label()),
                    arguments: arguments.clone(),
                    target_table: Some(SourceTable::People.as_str().to_owned()),
                    target_id: Some(id),
                    before: Some(to_value(&before)?),
                    after: Some(to_value(&after)?),
                    outcome: if names.is_empty() { "unchanged" } else { "ok" }.to_owned(),
                },
            )?;
            Ok((names, Written { log_id }))
        },
    )?;
    let after: Person =
        queries::row_by_id(conn, id)?.ok_or_else(|| ToolError::not_found("person", id))?;
    let limits = TextLimits {
        long: config.max_text_chars as usize,
        field: config.max_field_chars as usize,
    };
    fit(config.response_budget_bytes as usize, limits, |limits| {
        Ok(UpdatePersonResult {
            person: person_view(conn, &after, limits)?,
            changed_fields: changed.clone(),
            log_id: written.log_id,
        })
    })
}

// ---------------------------------------------------------------------------------------
// update_organization

/// Parameters of `update_organization`. Only the fields given change; an empty string
/// clears a field. Names, ids and timestamps cannot be changed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganizationParams {
    /// The organisation to update.
    pub id: i64,
    /// New website, starting with http:// or https://.
    pub website: Option<String>,
    /// New web domain, e.g. acme.com.
    pub domain: Option<String>,
    /// New description (at most 100000 characters).
    pub description: Option<String>,
    /// New location.
    pub location: Option<String>,
}

/// Answer of `update_organization`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UpdateOrganizationResult {
    /// The organisation after the update.
    pub organization: OrganizationView,
    /// The fields whose value changed (empty when every value was already as asked, in
    /// which case nothing was written).
    pub changed_fields: Vec<String>,
    /// The `mcp_write_log` row that records the call.
    pub log_id: i64,
}

pub(crate) fn update_organization(
    conn: &mut Connection,
    config: &ToolsConfig,
    client: &ClientIdentity,
    p: &UpdateOrganizationParams,
) -> Result<UpdateOrganizationResult, ToolError> {
    const TOOL: &str = "update_organization";
    let s = MAX_SHORT_ARG_CHARS;
    let requested: Vec<(OrganizationField, Option<String>)> = [
        (
            OrganizationField::Website,
            change(
                "website",
                p.website.as_deref(),
                s,
                Lines::Single,
                Some(check_website),
            )?,
        ),
        (
            OrganizationField::Domain,
            change(
                "domain",
                p.domain.as_deref(),
                s,
                Lines::Single,
                Some(check_domain),
            )?,
        ),
        (
            OrganizationField::Description,
            change(
                "description",
                p.description.as_deref(),
                MAX_LONG_ARG_CHARS,
                Lines::Multi,
                None,
            )?,
        ),
        (
            OrganizationField::Location,
            change("location", p.location.as_deref(), s, Lines::Single, None)?,
        ),
    ]
    .into_iter()
    .filter_map(|(f, c)| c.map(|c| (f, c)))
    .collect();
    if requested.is_empty() {
        return Err(ToolError::arg(
            "id",
            "give at least one field to change: website, domain, description, location",
        ));
    }
    let arguments = to_value(p)?;
    let id = p.id;
    let target = Some((SourceTable::Organizations, id));
    let (changed, written) = logged(conn, client, TOOL, &arguments, target, |tx| {
        let before: Organization =
            queries::row_by_id(tx, id)?.ok_or_else(|| ToolError::not_found("organization", id))?;
        if before.deleted_at.is_some() {
            return Err(ToolError::Refused(format!(
                "organization {id} is deleted and cannot be updated"
            )));
        }
        let current = |f: OrganizationField| match f {
            OrganizationField::Website => before.website.clone(),
            OrganizationField::Domain => before.domain.clone(),
            OrganizationField::Description => before.description.clone(),
            OrganizationField::Location => before.location.clone(),
        };
        let changes: Vec<(OrganizationField, Option<String>)> = requested
            .iter()
            .filter(|(f, v)| current(*f) != *v)
            .cloned()
            .collect();
        let now = Timestamp::now();
        if !changes.is_empty() {
            edits::update_organization_fields(tx, id, &changes, now)?;
        }
        let after: Organization = queries::row_by_id(tx, id)?.ok_or_else(|| {
            ToolError::Internal(format!("organization {id} vanished during update"))
        })?;
        let names: Vec<String> = changes.iter().map(|(f, _)| f.column().to_owned()).collect();
        let log_id = phase0::insert_mcp_write(
            tx,
            &McpWrite {
                at: now,
                tool: TOOL.to_owned(),
                client: Some(client.label()),
                arguments: arguments.clone(),
                target_table: Some(SourceTable::Organizations.as_str().to_owned()),
                target_id: Some(id),
                before: Some(to_value(&before)?),
                after: Some(to_value(&after)?),
                outcome: if names.is_empty() { "unchanged" } else { "ok" }.to_owned(),
            },
        )?;
        Ok((names, Written { log_id }))
    })?;
    let after: Organization =
        queries::row_by_id(conn, id)?.ok_or_else(|| ToolError::not_found("organization", id))?;
    let limits = TextLimits {
        long: config.max_text_chars as usize,
        field: config.max_field_chars as usize,
    };
    fit(config.response_budget_bytes as usize, limits, |limits| {
        Ok(UpdateOrganizationResult {
            organization: organization_view(&after, limits),
            changed_fields: changed.clone(),
            log_id: written.log_id,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_cleaned() {
        assert_eq!(clean_client_name(None), "unknown");
        assert_eq!(
            clean_client_name(Some("  \u{7}claude\ncode ")),
            "claudecode"
        );
        assert_eq!(clean_client_name(Some(&"x".repeat(500))).len(), 64);
    }

    #[test]
    fn field_checks() {
        assert!(check_email("ada@example.com").is_ok());
        assert!(check_email("ada example.com").is_err());
        assert!(check_email("ada@localhost").is_err());
        assert!(check_phone("+1 (415) 555-0100 x12").is_ok());
        assert!(check_phone("call me").is_err());
        assert!(check_domain("acme.com").is_ok());
        assert!(check_domain("https://acme.com").is_err());
        assert!(check_website("https://acme.com/about").is_ok());
        assert!(check_website("acme.com").is_err());
    }
}
