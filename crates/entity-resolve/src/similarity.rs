//! Scored comparisons for candidate pairs: how two names relate, and what else two
//! records share.

use strsim::osa_distance;

use crate::nicknames::Nicknames;
use crate::normalize::PersonName;

/// Why a pair was flagged; stored as strings in `entity_candidates.reasons`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Reason {
    /// The same given and family names.
    SameName,
    /// Given names related by the nickname table (Bob / Robert).
    Nickname,
    /// One given name is the other's initial (J. / John).
    Initials,
    /// One edit apart in the given name.
    TypoGivenName,
    /// One edit apart in the family name.
    TypoFamilyName,
    /// Given and family names swapped.
    SwappedNames,
    /// Given names share a prefix or a run of three letters (Alex / Alexander, Emeka /
    /// Chukwuemeka): a likely nickname the table does not know.
    NameFragment,
    /// Same family name, given names unrelated: flagged only with strong context.
    SameFamilyName,
    /// Same organisation entity.
    SameOrganization,
    /// Same job title.
    SameTitle,
    /// Same location.
    SameLocation,
    /// Same phone (with names too far apart for the phone rule).
    SamePhone,
    /// Same corporate email domain.
    SameEmailDomain,
    /// Organisations: the same name once legal suffixes and spacing are removed.
    SameCompactName,
    /// Organisations: the same name once descriptors (holdings, group, ...) are removed.
    SameCoreName,
    /// Organisations: one name is the other's acronym.
    Acronym,
    /// Organisations: people of one use the other's domain in their email.
    MemberEmailDomain,
    /// A deterministic rule fired but hard evidence conflicted (see the other reasons).
    Conflict,
    /// The conflict was on LinkedIn profiles.
    ConflictLinkedin,
    /// The conflict was on corporate domains.
    ConflictDomain,
    /// The conflict was on generational suffixes or middle initials.
    ConflictName,
    /// The rule that fired was the email rule.
    RuleEmail,
    /// The rule that fired was the phone + name rule.
    RulePhoneName,
    /// The rule that fired was the name-within-organisation rule.
    RuleNameOrg,
    /// The rule that fired was the legal-name rule.
    RuleLegalName,
    /// The rule that fired was the LinkedIn rule.
    RuleLinkedin,
    /// The rule that fired was the domain rule.
    RuleDomain,
}

impl Reason {
    /// Every reason, in bit order.
    pub const ALL: [Self; 27] = [
        Self::SameName,
        Self::Nickname,
        Self::Initials,
        Self::TypoGivenName,
        Self::TypoFamilyName,
        Self::SwappedNames,
        Self::NameFragment,
        Self::SameFamilyName,
        Self::SameOrganization,
        Self::SameTitle,
        Self::SameLocation,
        Self::SamePhone,
        Self::SameEmailDomain,
        Self::SameCompactName,
        Self::SameCoreName,
        Self::Acronym,
        Self::MemberEmailDomain,
        Self::Conflict,
        Self::ConflictLinkedin,
        Self::ConflictDomain,
        Self::ConflictName,
        Self::RuleEmail,
        Self::RulePhoneName,
        Self::RuleNameOrg,
        Self::RuleLegalName,
        Self::RuleLinkedin,
        Self::RuleDomain,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SameName => "same_name",
            Self::Nickname => "nickname",
            Self::Initials => "initials",
            Self::TypoGivenName => "typo_given_name",
            Self::TypoFamilyName => "typo_family_name",
            Self::SwappedNames => "swapped_names",
            Self::NameFragment => "name_fragment",
            Self::SameFamilyName => "same_family_name",
            Self::SameOrganization => "same_organization",
            Self::SameTitle => "same_title",
            Self::SameLocation => "same_location",
            Self::SamePhone => "same_phone",
            Self::SameEmailDomain => "same_email_domain",
            Self::SameCompactName => "same_compact_name",
            Self::SameCoreName => "same_core_name",
            Self::Acronym => "acronym",
            Self::MemberEmailDomain => "member_email_domain",
            Self::Conflict => "conflict",
            Self::ConflictLinkedin => "conflict_linkedin",
            Self::ConflictDomain => "conflict_domain",
            Self::ConflictName => "conflict_name",
            Self::RuleEmail => "rule_email",
            Self::RulePhoneName => "rule_phone_name",
            Self::RuleNameOrg => "rule_name_org",
            Self::RuleLegalName => "rule_legal_name",
            Self::RuleLinkedin => "rule_linkedin",
            Self::RuleDomain => "rule_domain",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u8)
    }
}

/// A set of [`Reason`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u32);

impl Reasons {
    /// Adds a reason.
    pub fn add(&mut self, r: Reason) {
        self.0 |= r.bit();
    }

    /// With a reason added.
    pub fn with(mut self, r: Reason) -> Self {
        self.add(r);
        self
    }

    /// Whether a reason is in the set.
    pub fn has(self, r: Reason) -> bool {
        self.0 & r.bit() != 0
    }

    /// The union of two sets.
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The reasons, in a fixed order.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        Reason::ALL.into_iter().filter(move |r| self.has(*r))
    }

    /// The stored form: a JSON array of reason names, in a fixed order.
    pub fn to_json(self) -> String {
        let names: Vec<&str> = self.iter().map(Reason::as_str).collect();
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// How two given names relate, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum GivenRelation {
    Exact,
    Nickname,
    Initial,
    Typo,
    Fragment,
    Unrelated,
}

/// Relates two folded given names.
pub(crate) fn given_relation(a: &str, b: &str, nicknames: &Nicknames) -> GivenRelation {
    if a == b {
        return GivenRelation::Exact;
    }
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la == 1 || lb == 1 {
        let (short, long) = if la == 1 { (a, b) } else { (b, a) };
        return if long.starts_with(short) {
            GivenRelation::Initial
        } else {
            GivenRelation::Unrelated
        };
    }
    if nicknames.related(a, b) {
        return GivenRelation::Nickname;
    }
    if la.min(lb) >= 3 && osa_distance(a, b) <= 1 {
        return GivenRelation::Typo;
    }
    let (short, long) = if la <= lb { (a, b) } else { (b, a) };
    // A short form of three letters sharing the first two (`Ira` / `Irina`, `Anu` /
    // `Ananya`).
    let short_form = la.min(lb) <= 3 && common_prefix(a, b) >= 2;
    if long.starts_with(short) || short_form || longest_common_run(a, b) >= 3 {
        return GivenRelation::Fragment;
    }
    GivenRelation::Unrelated
}

/// How two family names relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum FamilyRelation {
    Exact,
    Typo,
    Unrelated,
}

/// Relates two parsed family names (keys and cores).
pub(crate) fn family_relation(a: &PersonName, b: &PersonName) -> FamilyRelation {
    let (ka, kb) = (a.family_key(), b.family_key());
    if ka.is_empty() || kb.is_empty() {
        return FamilyRelation::Unrelated;
    }
    if ka == kb || (a.family_core().is_some() && a.family_core() == b.family_core()) {
        return FamilyRelation::Exact;
    }
    // One edit, unless both names are two letters or less (`Li` / `Lu` are two names).
    if ka.chars().count().max(kb.chars().count()) >= 3 && osa_distance(&ka, &kb) <= 1 {
        return FamilyRelation::Typo;
    }
    FamilyRelation::Unrelated
}

/// Whether the names hold the same words in another order, with different family
/// names (`Smith John`, `van der Berg Anna` for `Anna van der Berg`).
pub(crate) fn swapped(a: &PersonName, b: &PersonName) -> bool {
    let (Some(ga), Some(gb)) = (a.given.as_deref(), b.given.as_deref()) else {
        return false;
    };
    a.family_key() != b.family_key()
        && b.family.iter().any(|t| t == ga)
        && a.family.iter().any(|t| t == gb)
        && a.token_bag() == b.token_bag()
}

/// Length of the common prefix, in chars.
fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// Length of the longest run of chars two strings share.
pub(crate) fn longest_common_run(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut best = 0;
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for ca in &a {
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = if ca == cb { prev[j] + 1 } else { 0 };
            best = best.max(cur[j + 1]);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: &str, b: &str) -> GivenRelation {
        given_relation(a, b, Nicknames::builtin())
    }

    #[test]
    fn given_relations() {
        assert_eq!(rel("robert", "robert"), GivenRelation::Exact);
        assert_eq!(rel("bob", "robert"), GivenRelation::Nickname);
        assert_eq!(rel("j", "john"), GivenRelation::Initial);
        assert_eq!(rel("k", "john"), GivenRelation::Unrelated);
        assert_eq!(rel("jhon", "john"), GivenRelation::Typo);
        assert_eq!(rel("jonn", "john"), GivenRelation::Typo);
        assert_eq!(rel("emeka", "chukwuemeka"), GivenRelation::Fragment);
        assert_eq!(rel("sveta", "svetlana"), GivenRelation::Fragment);
        assert_eq!(rel("mary", "john"), GivenRelation::Unrelated);
        assert_eq!(rel("ira", "irina"), GivenRelation::Fragment);
        assert_eq!(rel("anu", "ananya"), GivenRelation::Fragment);
        assert_eq!(rel("jane", "jack"), GivenRelation::Unrelated);
        assert_eq!(rel("", ""), GivenRelation::Exact);
    }

    #[test]
    fn family_relations() {
        let p = |s: &str| PersonName::parse(None, None, s);
        assert_eq!(
            family_relation(&p("A Smith"), &p("B Smith")),
            FamilyRelation::Exact
        );
        assert_eq!(
            family_relation(&p("A van Berg"), &p("B Berg")),
            FamilyRelation::Exact
        );
        assert_eq!(
            family_relation(&p("A Smith"), &p("B Smiht")),
            FamilyRelation::Typo
        );
        assert_eq!(
            family_relation(&p("A Smith"), &p("B Jones")),
            FamilyRelation::Unrelated
        );
        assert_eq!(family_relation(&p("A"), &p("B")), FamilyRelation::Unrelated);
    }

    #[test]
    fn swaps() {
        let p = |f: &str, l: &str| PersonName::parse(Some(f), Some(l), "");
        assert!(swapped(&p("John", "Smith"), &p("Smith", "John")));
        assert!(swapped(
            &p("Anna", "van der Berg"),
            &p("van der Berg", "Anna")
        ));
        assert!(swapped(&p("Layla", "Al-Rashid"), &p("Al-Rashid", "Layla")));
        assert!(!swapped(&p("John", "Smith"), &p("John", "Smith")));
        assert!(!swapped(&p("Lee", "Lee"), &p("Lee", "Lee")));
    }

    #[test]
    fn reasons_serialise_in_a_fixed_order() {
        let r = Reasons::default()
            .with(Reason::SameOrganization)
            .with(Reason::Nickname);
        assert_eq!(r.to_json(), r#"["nickname","same_organization"]"#);
        assert_eq!(Reasons::default().to_json(), "[]");
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i);
        }
    }

    #[test]
    fn common_runs() {
        assert_eq!(longest_common_run("natasha", "natalia"), 4);
        assert_eq!(longest_common_run("", "abc"), 0);
        assert_eq!(longest_common_run(&"a".repeat(1000), &"a".repeat(1000)), 64);
    }
}
