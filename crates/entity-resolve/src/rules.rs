//! The deterministic, precision-first linking rules.
//!
//! People, strongest first: a recorded merge; the same LinkedIn profile; the same
//! normalised email (a role inbox such as `info@` also needs compatible names); the same
//! phone with compatible names; the same full name within the same organisation
//! entity. Organisations: a recorded merge; the same LinkedIn company page; the same
//! corporate domain; the same legal name once suffixes are stripped. Every union goes
//! through [`Clusters`], which refuses one whose cluster would hold conflicting hard
//! evidence; each refusal is kept, to be flagged as a `conflict` candidate.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use crate::cluster::{Clusters, EvidenceKind};
use crate::ids::LinkRule;
use crate::nicknames::Nicknames;
use crate::normalize::PersonName;
use crate::records::{OrgRecord, PersonRecord};

/// Local parts of shared role inboxes: an address like `info@acme.com` names a desk,
/// not a person, so it links only together with a compatible name.
const ROLE_LOCAL_PARTS: &[&str] = &[
    "info",
    "contact",
    "hello",
    "hi",
    "sales",
    "admin",
    "office",
    "team",
    "support",
    "help",
    "hr",
    "jobs",
    "careers",
    "press",
    "media",
    "marketing",
    "billing",
    "accounts",
    "accounting",
    "finance",
    "enquiries",
    "inquiries",
    "enquiry",
    "inquiry",
    "noreply",
    "no-reply",
    "mail",
    "general",
    "reception",
    "invest",
    "investors",
    "ir",
    "legal",
    "founders",
    "partners",
    "deals",
    "dealflow",
    "bd",
    "ops",
    "operations",
    "webmaster",
    "postmaster",
    "events",
    "community",
    "feedback",
    "all",
    "staff",
    "management",
];

/// True for a role inbox local part (`info`, `sales`, ...).
pub(crate) fn is_role_local_part(local: &str) -> bool {
    ROLE_LOCAL_PARTS.contains(&local)
}

/// A union the evidence refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockedLink {
    /// Row index already in a cluster.
    pub(crate) a: u32,
    /// Row index that would have joined it.
    pub(crate) b: u32,
    /// The rule that fired.
    pub(crate) rule: LinkRule,
    /// The evidence that conflicted.
    pub(crate) evidence: EvidenceKind,
}

/// Applies rules to a [`Clusters`] and remembers what happened.
#[derive(Debug)]
pub(crate) struct Linker {
    pub(crate) clusters: Clusters,
    /// The rule of the first union each row took part in.
    pub(crate) rule_of: Vec<Option<LinkRule>>,
    /// Refused unions, at most one per rule and row.
    pub(crate) blocked: Vec<BlockedLink>,
    /// Successful unions per rule.
    pub(crate) unions: BTreeMap<LinkRule, u64>,
    /// Key groups larger than the cap, whose tail was compared with the head only.
    pub(crate) capped_groups: u64,
}

impl Linker {
    pub(crate) fn new(clusters: Clusters) -> Self {
        let n = clusters.len();
        Self {
            clusters,
            rule_of: vec![None; n],
            blocked: Vec::new(),
            unions: BTreeMap::new(),
            capped_groups: 0,
        }
    }

    fn note(&mut self, a: u32, b: u32, rule: LinkRule) {
        for i in [a, b] {
            self.rule_of[i as usize].get_or_insert(rule);
        }
        *self.unions.entry(rule).or_default() += 1;
    }

    /// A recorded merge: joins whatever the evidence says.
    pub(crate) fn force(&mut self, a: u32, b: u32) {
        if self.clusters.force_union(a, b) {
            self.note(a, b, LinkRule::Merge);
        }
    }

    /// Tries one union; `true` when `a` and `b` end up together.
    pub(crate) fn try_link(&mut self, a: u32, b: u32, rule: LinkRule) -> bool {
        match self.clusters.union(a, b) {
            Ok(true) => {
                self.note(a, b, rule);
                true
            }
            Ok(false) => true,
            Err(conflict) => {
                self.blocked.push(BlockedLink {
                    a,
                    b,
                    rule,
                    evidence: conflict.kind,
                });
                false
            }
        }
    }

    /// Links rows sharing a key when `compatible(earlier, later)`.
    ///
    /// Groups are processed in the order their key first appears and rows in index
    /// order, so the outcome is the same on every run. Each group keeps a list of
    /// representatives, one per cluster met so far; a row is tried against every
    /// compatible representative and becomes one itself when none takes it. A group
    /// whose list would pass `cap` representatives is counted in `capped_groups` and
    /// its further rows are compared with the first `cap` only.
    pub(crate) fn link_by_key<K, I, F>(
        &mut self,
        keyed: I,
        rule: LinkRule,
        cap: usize,
        compatible: F,
    ) where
        K: Hash + Eq,
        I: IntoIterator<Item = (K, u32)>,
        F: Fn(u32, u32) -> bool,
    {
        let mut group_of: HashMap<K, u32> = HashMap::new();
        let mut members: Vec<(u32, u32)> = Vec::new();
        for (key, row) in keyed {
            let next = u32::try_from(group_of.len()).unwrap_or(u32::MAX);
            let g = *group_of.entry(key).or_insert(next);
            members.push((g, row));
        }
        drop(group_of);
        members.sort_unstable();
        let mut start = 0;
        while start < members.len() {
            let g = members[start].0;
            let end = start + members[start..].iter().take_while(|m| m.0 == g).count();
            if end - start > 1 {
                self.link_group(&members[start..end], rule, cap, &compatible);
            }
            start = end;
        }
    }

    fn link_group<F: Fn(u32, u32) -> bool>(
        &mut self,
        group: &[(u32, u32)],
        rule: LinkRule,
        cap: usize,
        compatible: &F,
    ) {
        let mut reps: Vec<u32> = Vec::new();
        let mut capped = false;
        for &(_, row) in group {
            let mut joined = false;
            for &rep in &reps {
                if compatible(rep, row) && self.try_link(rep, row, rule) {
                    joined = true;
                }
            }
            if !joined {
                if reps.len() < cap {
                    reps.push(row);
                } else {
                    capped = true;
                }
            }
        }
        if capped {
            self.capped_groups += 1;
        }
    }
}

/// Whether two person names are compatible enough for the phone and role-inbox rules:
/// the same family name, the same given name or a nickname of it, and no contradiction
/// in middle initials or generational suffixes. An initial alone is not enough.
pub(crate) fn names_compatible(a: &PersonName, b: &PersonName, nicknames: &Nicknames) -> bool {
    let (Some(ga), Some(gb)) = (a.given.as_deref(), b.given.as_deref()) else {
        return false;
    };
    if a.family.is_empty() || a.family_key() != b.family_key() || !a.parts_compatible(b) {
        return false;
    }
    if ga.chars().count() < 2 || gb.chars().count() < 2 {
        return false;
    }
    nicknames.related(ga, gb)
}

/// Cap on representatives per key group (see [`Linker::link_by_key`]).
pub(crate) const GROUP_CAP: usize = 1000;

/// Runs the people rules (after recorded merges were forced by the caller).
/// `org_entity[i]` is the organisation entity number of row `i`'s organisation.
pub(crate) fn link_people(
    linker: &mut Linker,
    people: &[PersonRecord],
    org_entity: &[Option<i64>],
    nicknames: &Nicknames,
) {
    let idx = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    // LinkedIn profile: exclusive evidence, so sharing one is enough.
    linker.link_by_key(
        people
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p.linkedin.as_deref()?, idx(i)))),
        LinkRule::Linkedin,
        GROUP_CAP,
        |_, _| true,
    );
    // Email: a personal address is enough; a role inbox needs compatible names.
    linker.link_by_key(
        people
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((p.email.as_ref()?.as_str(), idx(i)))),
        LinkRule::Email,
        GROUP_CAP,
        |a, b| {
            let (pa, pb) = (&people[a as usize], &people[b as usize]);
            let role = pa
                .email
                .as_ref()
                .is_some_and(|e| is_role_local_part(e.local()));
            !role || names_compatible(&pa.name, &pb.name, nicknames)
        },
    );
    // Phone + compatible name. Grouped by (phone, family name) so an office line shared
    // by a hundred people costs a hundred small groups, not ten thousand comparisons.
    let family_keys: Vec<String> = people.iter().map(|p| p.name.family_key()).collect();
    linker.link_by_key(
        people
            .iter()
            .enumerate()
            .filter(|(i, _)| !family_keys[*i].is_empty())
            .filter_map(|(i, p)| Some(((p.phone.as_deref()?, family_keys[i].as_str()), idx(i)))),
        LinkRule::PhoneName,
        GROUP_CAP,
        |a, b| {
            names_compatible(
                &people[a as usize].name,
                &people[b as usize].name,
                nicknames,
            )
        },
    );
    // Exact normalised name within one organisation entity.
    let full_keys: Vec<String> = people
        .iter()
        .map(|p| {
            if p.name.given.is_some() && !p.name.family.is_empty() {
                p.name.full_key()
            } else {
                String::new()
            }
        })
        .collect();
    linker.link_by_key(
        people
            .iter()
            .enumerate()
            .filter(|(i, _)| !full_keys[*i].is_empty())
            .filter_map(|(i, _)| Some(((org_entity[i]?, full_keys[i].as_str()), idx(i)))),
        LinkRule::NameOrg,
        GROUP_CAP,
        // Stricter than `parts_compatible`: "John Smith" and "John A. Smith" at one large
        // organisation are as likely two people as one, so the middle initials must agree;
        // and a name alone is not enough against two different emails or two different
        // phones (a namesake who joined the company).
        |a, b| {
            let (pa, pb) = (&people[a as usize], &people[b as usize]);
            let differ =
                |x: Option<&str>, y: Option<&str>| matches!((x, y), (Some(x), Some(y)) if x != y);
            pa.name.parts_compatible(&pb.name)
                && pa.name.middle_initial() == pb.name.middle_initial()
                && !differ(
                    pa.email.as_ref().map(|e| e.as_str()),
                    pb.email.as_ref().map(|e| e.as_str()),
                )
                && !differ(pa.phone.as_deref(), pb.phone.as_deref())
        },
    );
}

/// Runs the organisation rules (after recorded merges were forced by the caller).
pub(crate) fn link_organizations(linker: &mut Linker, orgs: &[OrgRecord]) {
    let idx = |i: usize| u32::try_from(i).unwrap_or(u32::MAX);
    linker.link_by_key(
        orgs.iter()
            .enumerate()
            .filter_map(|(i, o)| Some((o.linkedin.as_deref()?, idx(i)))),
        LinkRule::Linkedin,
        GROUP_CAP,
        |_, _| true,
    );
    linker.link_by_key(
        orgs.iter()
            .enumerate()
            .flat_map(|(i, o)| o.domains.iter().map(move |d| (d.as_str(), idx(i)))),
        LinkRule::Domain,
        GROUP_CAP,
        |_, _| true,
    );
    // An acronym-like name ("BRC", "IBM Corp") names many organisations: it becomes a
    // candidate, never a link.
    let keys: Vec<String> = orgs.iter().map(|o| o.name.key()).collect();
    linker.link_by_key(
        orgs.iter()
            .enumerate()
            .filter(|(i, o)| !o.name.acronym_like && keys[*i].chars().count() >= 2)
            .map(|(i, _)| (keys[i].as_str(), idx(i))),
        LinkRule::LegalName,
        GROUP_CAP,
        |_, _| true,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Clusters;

    fn name(s: &str) -> PersonName {
        PersonName::parse(None, None, s)
    }

    #[test]
    fn compatible_names() {
        let t = Nicknames::builtin();
        assert!(names_compatible(
            &name("Bob Smith"),
            &name("Robert Smith"),
            t
        ));
        assert!(names_compatible(
            &name("Robert Smith"),
            &name("Smith, Robert"),
            t
        ));
        assert!(!names_compatible(
            &name("Jane Smith"),
            &name("John Smith"),
            t
        ));
        assert!(!names_compatible(&name("J. Smith"), &name("John Smith"), t));
        assert!(!names_compatible(
            &name("John Smith Jr"),
            &name("John Smith Sr"),
            t
        ));
        assert!(!names_compatible(&name("Smith"), &name("Smith"), t));
        assert!(!names_compatible(
            &name("John Smith"),
            &name("John Smyth"),
            t
        ));
    }

    #[test]
    fn groups_link_in_order_and_respect_compatibility() {
        let mut l = Linker::new(Clusters::new(vec![vec![]; 5]));
        // Rows 0..4 share a key; 0/2/4 are "even", 1/3 "odd", compatible only by parity.
        l.link_by_key((0..5u32).map(|i| ("k", i)), LinkRule::Email, 10, |a, b| {
            a % 2 == b % 2
        });
        assert_eq!(l.clusters.groups(), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(l.rule_of[0], Some(LinkRule::Email));
        assert_eq!(l.unions[&LinkRule::Email], 3);
    }

    #[test]
    fn capped_groups_are_counted() {
        let mut l = Linker::new(Clusters::new(vec![vec![]; 6]));
        l.link_by_key((0..6u32).map(|i| ("k", i)), LinkRule::Email, 2, |_, _| {
            false
        });
        assert_eq!(l.capped_groups, 1);
        assert_eq!(l.clusters.groups().len(), 6);
    }

    #[test]
    fn role_inboxes() {
        assert!(is_role_local_part("info"));
        assert!(!is_role_local_part("jane"));
    }
}
