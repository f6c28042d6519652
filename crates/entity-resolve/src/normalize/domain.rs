//! Organisation domains: from a `domain` column, a `website` URL or a corporate email.
//!
//! A domain is reduced to its registrable part with the Public Suffix List
//! (`www.eu.acme.co.uk` → `acme.co.uk`), and free-mail or disposable domains never
//! identify an organisation (`data/free_email_domains.txt`,
//! `data/disposable_email_domains.txt`).

use std::collections::HashSet;
use std::sync::LazyLock;

use super::email::{Email, is_domain_name};
use super::text::truncate_chars;

/// Longest URL or domain looked at.
const MAX_URL_BYTES: usize = 512;

static FREE_MAIL: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| domain_list(include_str!("../../data/free_email_domains.txt")));
static DISPOSABLE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| domain_list(include_str!("../../data/disposable_email_domains.txt")));

fn domain_list(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect()
}

/// How a mail domain relates to organisations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailDomainKind {
    /// A consumer mail provider (gmail.com, outlook.com, ...).
    FreeMail,
    /// A throw-away mail service (mailinator.com, ...).
    Disposable,
    /// Anything else: assumed to belong to an organisation.
    Corporate,
}

/// Classifies a (registrable or full) mail domain.
pub fn mail_domain_kind(domain: &str) -> MailDomainKind {
    let registrable = registrable_domain(domain);
    let candidates = [Some(domain), registrable.as_deref()];
    if candidates.iter().flatten().any(|d| FREE_MAIL.contains(d)) {
        MailDomainKind::FreeMail
    } else if candidates.iter().flatten().any(|d| DISPOSABLE.contains(d)) {
        MailDomainKind::Disposable
    } else {
        MailDomainKind::Corporate
    }
}

/// The registrable domain (public suffix plus one label) of a host name, lowercase,
/// without a trailing dot. `None` for IP addresses, single labels, bare public
/// suffixes (`co.uk`) and malformed names.
///
/// ```
/// use entity_resolve::normalize::registrable_domain;
/// assert_eq!(registrable_domain("WWW.Eu.Acme.co.uk.").as_deref(), Some("acme.co.uk"));
/// assert_eq!(registrable_domain("co.uk"), None);
/// ```
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_lowercase();
    if !is_domain_name(&host) {
        return None;
    }
    let domain = psl::domain_str(&host)?;
    Some(domain.to_owned())
}

/// The host part of a URL-ish string (`https://user@www.acme.com:8080/x?y` →
/// `www.acme.com`); accepts a bare host (`acme.com`).
pub fn url_host(raw: &str) -> Option<String> {
    let s = truncate_chars(raw.trim(), MAX_URL_BYTES).to_lowercase();
    let rest = match s.split_once("://") {
        Some((scheme, rest))
            if scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            rest
        }
        Some(_) => return None,
        None => s.strip_prefix("//").unwrap_or(&s),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split_once(':').map_or(host, |(h, _)| h);
    let host = host.trim_end_matches('.');
    is_domain_name(host).then(|| host.to_owned())
}

/// The domain that identifies an organisation, from a `domain` column or a `website`
/// URL: registrable, and neither free-mail nor disposable. A `domain` column may hold
/// a URL too.
///
/// ```
/// use entity_resolve::normalize::org_domain_from_url;
/// assert_eq!(org_domain_from_url("https://www.acme.com/about").as_deref(), Some("acme.com"));
/// assert_eq!(org_domain_from_url("gmail.com"), None);
/// ```
pub fn org_domain_from_url(raw: &str) -> Option<String> {
    let host = url_host(raw)?;
    let domain = registrable_domain(&host)?;
    (mail_domain_kind(&domain) == MailDomainKind::Corporate).then_some(domain)
}

/// The organisation domain of an email address, unless its provider is free-mail or
/// disposable.
pub fn org_domain_from_email(email: &Email) -> Option<String> {
    let domain = registrable_domain(email.domain())?;
    (mail_domain_kind(&domain) == MailDomainKind::Corporate).then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_parts() {
        assert_eq!(registrable_domain("acme.com").as_deref(), Some("acme.com"));
        assert_eq!(
            registrable_domain("www.acme.com").as_deref(),
            Some("acme.com")
        );
        assert_eq!(
            registrable_domain("mail.eu.acme.com").as_deref(),
            Some("acme.com")
        );
        assert_eq!(
            registrable_domain("acme.co.uk").as_deref(),
            Some("acme.co.uk")
        );
        assert_eq!(
            registrable_domain("shop.acme.com.au").as_deref(),
            Some("acme.com.au")
        );
        // Private suffixes keep tenants apart.
        assert_eq!(
            registrable_domain("acme.github.io").as_deref(),
            Some("acme.github.io")
        );
        assert_eq!(registrable_domain("com"), None);
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain("192.168.0.1"), None);
        assert_eq!(registrable_domain("localhost"), None);
        assert_eq!(registrable_domain(""), None);
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://www.acme.com/about?x=1").as_deref(),
            Some("www.acme.com")
        );
        assert_eq!(
            url_host("http://user:pw@acme.com:8080").as_deref(),
            Some("acme.com")
        );
        assert_eq!(url_host("acme.com/").as_deref(), Some("acme.com"));
        assert_eq!(url_host("ACME.COM").as_deref(), Some("acme.com"));
        assert_eq!(url_host("//acme.com").as_deref(), Some("acme.com"));
        assert_eq!(url_host("not a url"), None);
        assert_eq!(url_host("https://"), None);
        assert_eq!(url_host("javascript:alert(1)"), None);
        assert_eq!(url_host("ht tp://acme.com"), None);
    }

    #[test]
    fn org_domains_skip_free_mail_and_disposable() {
        assert_eq!(
            org_domain_from_url("www.acme.io").as_deref(),
            Some("acme.io")
        );
        assert_eq!(org_domain_from_url("https://gmail.com"), None);
        assert_eq!(org_domain_from_url("mail.yahoo.co.uk"), None);
        assert_eq!(org_domain_from_url("mailinator.com"), None);
        let e = Email::parse("jane@eu.acme.com").unwrap();
        assert_eq!(org_domain_from_email(&e).as_deref(), Some("acme.com"));
        let e = Email::parse("jane@googlemail.com").unwrap();
        assert_eq!(org_domain_from_email(&e), None);
        let e = Email::parse("jane@yopmail.com").unwrap();
        assert_eq!(org_domain_from_email(&e), None);
    }

    #[test]
    fn kinds() {
        assert_eq!(mail_domain_kind("gmail.com"), MailDomainKind::FreeMail);
        assert_eq!(
            mail_domain_kind("sub.hotmail.co.uk"),
            MailDomainKind::FreeMail
        );
        assert_eq!(
            mail_domain_kind("mailinator.com"),
            MailDomainKind::Disposable
        );
        assert_eq!(mail_domain_kind("acme.com"), MailDomainKind::Corporate);
    }

    #[test]
    fn lists_are_well_formed() {
        for d in FREE_MAIL.iter().chain(DISPOSABLE.iter()) {
            assert_eq!(
                registrable_domain(d).as_deref(),
                Some(*d),
                "{d} must be a registrable domain"
            );
        }
        assert!(FREE_MAIL.len() > 150);
        assert!(DISPOSABLE.len() > 60);
        assert!(FREE_MAIL.is_disjoint(&DISPOSABLE));
    }

    #[test]
    fn hostile_input() {
        assert_eq!(org_domain_from_url(""), None);
        assert_eq!(org_domain_from_url("😀.com"), None);
        assert_eq!(org_domain_from_url("\u{0}acme.com"), None);
        assert_eq!(org_domain_from_url(&"a.".repeat(10_000)), None);
        assert_eq!(
            org_domain_from_url(&format!("{}.com", "a".repeat(10_000))),
            None
        );
    }
}
