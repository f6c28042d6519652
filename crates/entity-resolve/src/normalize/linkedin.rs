//! LinkedIn profile and company URLs.

use super::text::truncate_chars;

/// Longest URL looked at.
const MAX_URL_BYTES: usize = 512;

/// What a LinkedIn URL points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LinkedinId {
    /// A person's profile: the slug of `linkedin.com/in/<slug>`.
    Profile(String),
    /// An organisation's page: the slug of `linkedin.com/company/<slug>` (also
    /// `/school/` and `/showcase/`).
    Company(String),
}

impl LinkedinId {
    /// Parses a LinkedIn URL with or without scheme, `www.` or a country subdomain
    /// (`uk.linkedin.com`), trailing slash, query or fragment. Slugs are
    /// percent-decoded and lowercased. `None` for anything else.
    ///
    /// ```
    /// use entity_resolve::normalize::LinkedinId;
    /// assert_eq!(
    ///     LinkedinId::parse("HTTPS://uk.LinkedIn.com/in/Jane-Doe-42/?trk=x"),
    ///     Some(LinkedinId::Profile("jane-doe-42".into()))
    /// );
    /// assert_eq!(
    ///     LinkedinId::parse("linkedin.com/company/acme-inc"),
    ///     Some(LinkedinId::Company("acme-inc".into()))
    /// );
    /// ```
    pub fn parse(raw: &str) -> Option<Self> {
        let s = truncate_chars(raw.trim(), MAX_URL_BYTES);
        let lower = s.to_lowercase();
        let rest = strip_scheme(&lower);
        let (host, path) = rest.split_once('/')?;
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = host.split_once(':').map_or(host, |(h, _)| h);
        let host = host.trim_end_matches('.');
        if !is_linkedin_host(host) {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let mut segments = path.split('/').filter(|p| !p.is_empty());
        let kind = segments.next()?;
        let slug = percent_decode(segments.next()?)?;
        if slug.is_empty()
            || slug.len() > 200
            || slug
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return None;
        }
        match kind {
            "in" | "pub" => Some(Self::Profile(slug)),
            "company" | "school" | "showcase" => Some(Self::Company(slug)),
            _ => None,
        }
    }

    /// The slug.
    pub fn slug(&self) -> &str {
        match self {
            Self::Profile(s) | Self::Company(s) => s,
        }
    }
}

fn strip_scheme(s: &str) -> &str {
    for scheme in ["https://", "http://", "//"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            return rest;
        }
    }
    s
}

/// `linkedin.com`, `www.linkedin.com` and two-letter country subdomains
/// (`uk.linkedin.com`, `de.linkedin.com`, `mobile.linkedin.com`).
fn is_linkedin_host(host: &str) -> bool {
    match host.strip_suffix("linkedin.com") {
        Some("") => true,
        Some(prefix) => {
            let Some(sub) = prefix.strip_suffix('.') else {
                return false;
            };
            sub == "www"
                || sub == "mobile"
                || (sub.len() == 2 && sub.chars().all(|c| c.is_ascii_lowercase()))
        }
        None => false,
    }
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(|d| d.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(s: &str) -> Option<String> {
        match LinkedinId::parse(s)? {
            LinkedinId::Profile(p) => Some(p),
            LinkedinId::Company(_) => None,
        }
    }

    #[test]
    fn profile_variants_agree() {
        for s in [
            "https://www.linkedin.com/in/jane-doe",
            "http://linkedin.com/in/jane-doe/",
            "www.linkedin.com/in/Jane-Doe",
            "linkedin.com/in/jane-doe?originalSubdomain=uk",
            "https://uk.linkedin.com/in/jane-doe#about",
            "HTTPS://DE.LINKEDIN.COM/IN/JANE-DOE/details/experience/",
            "  https://www.linkedin.com:443/in/jane-doe  ",
            "//linkedin.com/in/jane-doe",
        ] {
            assert_eq!(profile(s), Some("jane-doe".into()), "{s:?}");
        }
    }

    #[test]
    fn percent_encoded_slugs() {
        assert_eq!(
            profile("linkedin.com/in/jos%C3%A9-p%C3%A9rez"),
            Some("josé-pérez".into())
        );
        assert_eq!(profile("linkedin.com/in/bad%zz"), None);
        assert_eq!(profile("linkedin.com/in/bad%"), None);
        assert_eq!(profile("linkedin.com/in/%FF%FE"), None);
    }

    #[test]
    fn companies() {
        assert_eq!(
            LinkedinId::parse("https://www.linkedin.com/company/acme/"),
            Some(LinkedinId::Company("acme".into()))
        );
        assert_eq!(
            LinkedinId::parse("linkedin.com/school/mit"),
            Some(LinkedinId::Company("mit".into()))
        );
    }

    #[test]
    fn rejects_other_urls() {
        for s in [
            "",
            "jane-doe",
            "linkedin.com",
            "linkedin.com/",
            "linkedin.com/in/",
            "linkedin.com/feed/",
            "https://notlinkedin.com/in/jane",
            "https://linkedin.com.evil.io/in/jane",
            "https://evil.io/linkedin.com/in/jane",
            "https://abc.linkedin.com/in/jane",
            "ftp://linkedin.com/in/jane",
            "😀",
            "\u{0}linkedin.com/in/x",
        ] {
            assert_eq!(LinkedinId::parse(s), None, "{s:?}");
        }
        let long = format!("linkedin.com/in/{}", "a".repeat(10_000));
        assert_eq!(LinkedinId::parse(&long), None);
    }
}
