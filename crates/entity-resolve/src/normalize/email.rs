//! Email addresses.

/// A normalised email address: `local@domain`, lowercase, `+tag` removed, Gmail dots
/// removed and `googlemail.com` folded into `gmail.com`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email {
    address: String,
    at: usize,
}

/// Longest address accepted (RFC 5321 path limit).
const MAX_EMAIL_BYTES: usize = 254;

impl Email {
    /// Normalises a raw email field; `None` when it is not a plausible address.
    ///
    /// Accepts surrounding whitespace, `mailto:`, angle brackets and a display name
    /// (`"Jane" <Jane.Doe+crm@Example.COM>`). Rejects anything without exactly one `@`,
    /// with whitespace or quotes inside, an empty local part, or a domain that is not
    /// dot-separated labels of letters, digits and hyphens ending in an alphabetic TLD.
    ///
    /// ```
    /// use entity_resolve::normalize::Email;
    /// let e = Email::parse(" <J.Doe+crm@GoogleMail.com> ").unwrap();
    /// assert_eq!(e.as_str(), "jdoe@gmail.com");
    /// assert!(Email::parse("not an email").is_none());
    /// ```
    pub fn parse(raw: &str) -> Option<Self> {
        let mut s = raw.trim();
        if let Some(open) = s.rfind('<') {
            let inner = &s[open + 1..];
            s = inner.strip_suffix('>')?.trim();
        }
        if s.len() > MAX_EMAIL_BYTES {
            return None;
        }
        if s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
        {
            s = s[7..].trim_start();
        }
        let (local, domain) = s.split_once('@')?;
        if domain.contains('@') {
            return None;
        }
        if local.is_empty()
            || local.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(
                        c,
                        '"' | '<' | '>' | ',' | ';' | '(' | ')' | '[' | ']' | '\\'
                    )
            })
        {
            return None;
        }
        let domain = domain.trim_end_matches('.').to_lowercase();
        if !is_domain_name(&domain) {
            return None;
        }
        let mut local = local.to_lowercase();
        if let Some(plus) = local.find('+') {
            local.truncate(plus);
        }
        let domain = if domain == "googlemail.com" {
            "gmail.com".to_owned()
        } else {
            domain
        };
        if domain == "gmail.com" {
            local.retain(|c| c != '.');
        }
        let local = local.trim_matches('.');
        if local.is_empty() {
            return None;
        }
        let address = format!("{local}@{domain}");
        Some(Self {
            at: local.len(),
            address,
        })
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The local part (before `@`).
    pub fn local(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain (after `@`), lowercase.
    pub fn domain(&self) -> &str {
        &self.address[self.at + 1..]
    }
}

/// Dot-separated labels of letters (any script), digits and inner hyphens; at least two
/// labels; an alphabetic top-level label of two or more chars.
pub(crate) fn is_domain_name(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    let Some(tld) = labels.last() else {
        return false;
    };
    labels.iter().all(|l| label_ok(l))
        && tld.chars().count() >= 2
        && (tld.chars().all(char::is_alphabetic) || tld.starts_with("xn--"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        Email::parse(s).map(|e| e.as_str().to_owned())
    }

    #[test]
    fn trims_and_lowercases() {
        assert_eq!(
            norm("  Jane.Doe@Example.COM "),
            Some("jane.doe@example.com".into())
        );
        assert_eq!(
            norm("mailto:JANE@example.com"),
            Some("jane@example.com".into())
        );
        assert_eq!(
            norm("\"Jane Doe\" <jane@example.com>"),
            Some("jane@example.com".into())
        );
        assert_eq!(norm("jane@example.com."), Some("jane@example.com".into()));
    }

    #[test]
    fn strips_plus_tags() {
        assert_eq!(
            norm("jane+crm@example.com"),
            Some("jane@example.com".into())
        );
        assert_eq!(
            norm("jane+a+b@example.com"),
            Some("jane@example.com".into())
        );
        assert_eq!(norm("+tag@example.com"), None);
    }

    #[test]
    fn gmail_dots_and_googlemail() {
        assert_eq!(norm("J.A.N.E@gmail.com"), Some("jane@gmail.com".into()));
        assert_eq!(
            norm("jane.doe+x@googlemail.com"),
            Some("janedoe@gmail.com".into())
        );
        // Dots matter elsewhere.
        assert_eq!(
            norm("jane.doe@outlook.com"),
            Some("jane.doe@outlook.com".into())
        );
    }

    #[test]
    fn parts() {
        let e = Email::parse("Jane@Acme.io").unwrap();
        assert_eq!(e.local(), "jane");
        assert_eq!(e.domain(), "acme.io");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "   ",
            "jane",
            "@example.com",
            "jane@",
            "jane@@example.com",
            "jane@exa mple.com",
            "ja ne@example.com",
            "jane@example",
            "jane@example.c",
            "jane@example.123",
            "jane@-example.com",
            "jane@example..com",
            "a@b@c.com",
            "jane\u{0}@example.com",
            "\"jane\"@example.com",
            "<jane@example.com",
            "😀@😀.com",
            "...@gmail.com",
        ] {
            assert_eq!(norm(bad), None, "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(10_000));
        assert_eq!(norm(&long), None);
    }

    #[test]
    fn unicode_domains_and_locals() {
        assert_eq!(norm("José@Exämple.de"), Some("josé@exämple.de".into()));
        assert_eq!(
            norm("x@xn--bcher-kva.com"),
            Some("x@xn--bcher-kva.com".into())
        );
    }
}
