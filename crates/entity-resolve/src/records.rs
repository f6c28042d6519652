//! CRM rows reduced to the normalised evidence the resolver compares.

use std::hash::{BuildHasher, Hash};

use crm_store::{OrganizationIdentity, PersonIdentity};

use crate::normalize::{
    Email, LinkedinId, OrgName, PersonName, Phone, PhoneRegion, fold, org_domain_from_email,
    org_domain_from_url,
};

/// Longest display name kept (chars).
const MAX_DISPLAY_CHARS: usize = 200;

/// A stable 64-bit hash of a normalised key (fixed keys, so the same on every run and
/// every machine; used for grouping and evidence, never persisted).
pub(crate) fn key_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    // FixedState-like behaviour from std's default SipHash with zero keys.
    std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(value)
}

/// An organisation row's evidence.
#[derive(Debug, Clone)]
pub(crate) struct OrgRecord {
    /// `organizations.id`.
    pub(crate) id: i64,
    /// Name reduced for comparison.
    pub(crate) name: OrgName,
    /// Corporate registrable domains from `domain` and `website`, sorted, deduplicated.
    pub(crate) domains: Vec<String>,
    /// LinkedIn company slug, when the website is a LinkedIn page.
    pub(crate) linkedin: Option<String>,
    /// Folded location, for scoring.
    pub(crate) location: Option<u64>,
    /// Folded kind (`startup`, `fund`, ...), for scoring.
    pub(crate) kind: Option<u64>,
    /// Name as written, trimmed and capped, for `entities.display_name`.
    pub(crate) display: String,
}

impl OrgRecord {
    pub(crate) fn from_row(row: &OrganizationIdentity) -> Self {
        let mut domains = Vec::new();
        let mut linkedin = None;
        for raw in [row.domain.as_deref(), row.website.as_deref()]
            .into_iter()
            .flatten()
        {
            if let Some(LinkedinId::Company(slug)) = LinkedinId::parse(raw) {
                linkedin = Some(slug);
            } else if let Some(d) = org_domain_from_url(raw) {
                domains.push(d);
            }
        }
        domains.sort_unstable();
        domains.dedup();
        Self {
            id: row.id,
            name: OrgName::parse(&row.name),
            domains,
            linkedin,
            location: text_key(row.location.as_deref()),
            kind: text_key(row.kind.as_deref()),
            display: display(&row.name),
        }
    }
}

/// A person row's evidence.
#[derive(Debug, Clone)]
pub(crate) struct PersonRecord {
    /// `people.id`.
    pub(crate) id: i64,
    /// Parsed name.
    pub(crate) name: PersonName,
    /// Normalised email.
    pub(crate) email: Option<Email>,
    /// Corporate registrable domain of the email (none for free-mail).
    pub(crate) email_domain: Option<String>,
    /// E.164 phone (extension dropped: an extension tells desks apart, not people).
    pub(crate) phone: Option<String>,
    /// LinkedIn profile slug.
    pub(crate) linkedin: Option<String>,
    /// `people.organization_id`.
    pub(crate) org_id: Option<i64>,
    /// Folded location, for scoring.
    pub(crate) location: Option<u64>,
    /// Folded title, for scoring.
    pub(crate) title: Option<u64>,
    /// Name as written, for `entities.display_name`.
    pub(crate) display: String,
}

impl PersonRecord {
    /// Normalises a row, all but its phone: `phone` is left `None` for the caller to
    /// fill in from [`phone_key`], which runs apart.
    pub(crate) fn without_phone(row: &PersonIdentity) -> Self {
        let name = PersonName::parse(
            row.first_name.as_deref(),
            row.last_name.as_deref(),
            &row.full_name,
        );
        let email = row.email.as_deref().and_then(Email::parse);
        let email_domain = email.as_ref().and_then(org_domain_from_email);
        let linkedin = match row.linkedin_url.as_deref().and_then(LinkedinId::parse) {
            Some(LinkedinId::Profile(slug)) => Some(slug),
            _ => None,
        };
        let display_source = if row.full_name.trim().is_empty() {
            [row.first_name.as_deref(), row.last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            row.full_name.clone()
        };
        Self {
            id: row.id,
            name,
            email,
            email_domain,
            phone: None,
            linkedin,
            org_id: row.organization_id,
            location: text_key(row.location.as_deref()),
            title: row
                .title
                .as_deref()
                .map(fold)
                .filter(|t| !t.is_empty())
                .map(|t| key_hash(&t)),
            display: display(&display_source),
        }
    }
}

/// A person row's phone key: E.164 without the extension. Kept apart from the rest of
/// the normalisation because libphonenumber's metadata serialises every parse behind
/// one lock: a run parses phones on one thread while the other normalises the rest.
pub(crate) fn phone_key(row: &PersonIdentity, region: PhoneRegion) -> Option<String> {
    row.phone
        .as_deref()
        .and_then(|p| Phone::parse(p, region))
        .map(|p| p.e164)
}

/// The hash of a folded free-text field (location, kind, title), `None` when empty.
fn text_key(raw: Option<&str>) -> Option<u64> {
    let folded = fold(raw?);
    (!folded.is_empty()).then(|| key_hash(&folded))
}

/// Trimmed, whitespace-collapsed, control chars removed, capped at
/// [`MAX_DISPLAY_CHARS`].
pub(crate) fn display(raw: &str) -> String {
    let mut out = String::new();
    for word in raw
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() >= MAX_DISPLAY_CHARS {
            break;
        }
    }
    out.chars().take(MAX_DISPLAY_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_tidy() {
        assert_eq!(display("  Jane\t\u{0}Doe \n"), "Jane Doe");
        assert_eq!(display(""), "");
        assert_eq!(
            display(&"x".repeat(10_000)).chars().count(),
            MAX_DISPLAY_CHARS
        );
        assert_eq!(
            display(&"ab ".repeat(10_000)).chars().count(),
            MAX_DISPLAY_CHARS
        );
    }

    #[test]
    fn key_hash_is_stable() {
        assert_eq!(key_hash("acme.com"), key_hash(&"acme.com".to_owned()));
        assert_ne!(key_hash("acme.com"), key_hash("acme.io"));
    }
}
