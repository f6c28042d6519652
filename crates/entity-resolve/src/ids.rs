//! Canonical entity ids and link rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ResolveError;

/// What an entity is: `crm-store`'s kind, re-exported so both crates name one type.
pub use crm_store::phase0::EntityKind;

/// Both kinds, organisations first (people rules use organisation entities).
pub const KINDS: [EntityKind; 2] = [EntityKind::Organization, EntityKind::Person];

/// A canonical entity id: `person:<n>` or `organization:<n>`, where `n` is the lowest
/// source row id of the entity when it was created. Ids never move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntityId {
    /// The kind.
    pub kind: EntityKind,
    /// The source row id the entity was named after.
    pub n: i64,
}

impl EntityId {
    /// `kind:n`.
    pub fn new(kind: EntityKind, n: i64) -> Self {
        Self { kind, n }
    }
}

impl PartialOrd for EntityId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for EntityId {
    /// By kind, then numerically: `person:9` sorts before `person:10`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.kind.as_str(), self.n).cmp(&(other.kind.as_str(), other.n))
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.n)
    }
}

impl FromStr for EntityId {
    type Err = ResolveError;

    /// Parses `person:17` / `organization:4`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ResolveError::BadEntityId(s.chars().take(80).collect());
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let kind: EntityKind = kind.parse().map_err(|_| bad())?;
        // Only canonical decimal: `person:007` or `person:+7` would alias `person:7`.
        let canonical = !n.is_empty()
            && (n == "0" || !n.starts_with('0'))
            && n.strip_prefix('-')
                .unwrap_or(n)
                .bytes()
                .all(|b| b.is_ascii_digit())
            && n != "-"
            && !n.starts_with("-0");
        if !canonical {
            return Err(bad());
        }
        let n = n.parse().map_err(|_| bad())?;
        Ok(Self { kind, n })
    }
}

impl Serialize for EntityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntityId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a source row belongs to its entity (`entity_links.rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRule {
    /// The row is alone in its entity.
    Singleton,
    /// A recorded merge (rule, fuzzy tier or person) put the row here.
    Merge,
    /// Same normalised email.
    Email,
    /// Same LinkedIn profile (or company page).
    Linkedin,
    /// Same phone and compatible names.
    PhoneName,
    /// Same normalised name within the same organisation entity.
    NameOrg,
    /// Same corporate domain.
    Domain,
    /// Same legal name once suffixes are stripped, domains not conflicting.
    LegalName,
    /// Returned to its entity by an undone merge (until the next run says why).
    Undo,
}

impl LinkRule {
    /// Every rule.
    pub const ALL: [Self; 9] = [
        Self::Singleton,
        Self::Merge,
        Self::Email,
        Self::Linkedin,
        Self::PhoneName,
        Self::NameOrg,
        Self::Domain,
        Self::LegalName,
        Self::Undo,
    ];

    /// The text stored in `entity_links.rule`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Singleton => "singleton",
            Self::Merge => "merge",
            Self::Email => "email",
            Self::Linkedin => "linkedin",
            Self::PhoneName => "phone_name",
            Self::NameOrg => "name_org",
            Self::Domain => "domain",
            Self::LegalName => "legal_name",
            Self::Undo => "undo",
        }
    }

    /// Parses stored text; `None` for text this build does not write.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for LinkRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for s in [
            "person:1",
            "organization:42",
            "person:0",
            "person:-3",
            "person:9223372036854775807",
        ] {
            let id: EntityId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn ids_reject_aliases_and_garbage() {
        for s in [
            "",
            "person",
            "person:",
            "person:01",
            "person:+1",
            "person:-",
            "person:-0",
            "person: 1",
            "people:1",
            "Person:1",
            "person:1x",
            "person:99999999999999999999",
            "person:1:2",
        ] {
            assert!(s.parse::<EntityId>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn ordering_is_numeric() {
        let a = EntityId::new(EntityKind::Person, 9);
        let b = EntityId::new(EntityKind::Person, 10);
        assert!(a < b);
    }

    #[test]
    fn rules_round_trip() {
        for r in LinkRule::ALL {
            assert_eq!(LinkRule::parse(r.as_str()), Some(r));
        }
        assert_eq!(LinkRule::parse("nope"), None);
    }
}
