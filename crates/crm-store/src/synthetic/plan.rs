//! The generation plan: who is a duplicate of whom, who works where, which rows are traps.
//!
//! The plan is computed in one cheap sequential pass over the ids (a few bytes per row), so
//! that every row's content can then be generated independently and in parallel from
//! `(seed, plan, id)` alone. It is also the ground truth.

use std::collections::HashMap;

use super::data::{CULTURES, ORG_KIND_WORDS, ORG_NOUNS, ORG_ROOTS};
use super::{OrgDupKind, PersonDupKind, SyntheticConfig, TrapKind};

// Streams keep the hash sequences of different decisions independent.
pub(crate) const S_ORG_ROLE: u64 = 1;
pub(crate) const S_ORG_ROW: u64 = 2;
pub(crate) const S_PERSON_ROLE: u64 = 3;
pub(crate) const S_PERSON_ROW: u64 = 4;
pub(crate) const S_INTERACTION: u64 = 5;
pub(crate) const S_DEAL: u64 = 6;
pub(crate) const S_PERSON_FLAGS: u64 = 7;
pub(crate) const S_ORG_FLAGS: u64 = 8;
pub(crate) const S_NAMES: u64 = 9;

/// SplitMix64's finaliser: a fast, well-mixed 64-bit hash step.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A hash of `(seed, stream, id)`.
pub(crate) fn mix(seed: u64, stream: u64, id: u64) -> u64 {
    splitmix(seed ^ splitmix(stream.wrapping_mul(0x1000_0000_01B3) ^ splitmix(id)))
}

/// A uniform number in `[0, 1)` from a hash.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A uniform index in `0..n` from a hash (`n > 0`).
pub(crate) fn pick(h: u64, n: usize) -> usize {
    ((u128::from(h) * n as u128) >> 64) as usize
}

/// An index in `0..n` skewed towards 0: a few large organisations, a long tail of small ones.
pub(crate) fn skewed(h: u64, n: usize) -> usize {
    let r = unit(h);
    ((r * r * n as f64) as usize).min(n.saturating_sub(1))
}

/// The role of an organisation row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OrgRole {
    Base,
    Dup { of: u32, kind: OrgDupKind },
}

/// The role of a person row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PersonRole {
    Base,
    Dup { of: u32, kind: PersonDupKind },
    Trap { partner: u32, kind: TrapKind },
}

/// Where a person row sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PersonPlan {
    pub(crate) role: PersonRole,
    /// The true (base) organisation, 0 for none.
    pub(crate) true_org: u32,
    /// The organisation row the person row points at (the base or one of its duplicate
    /// rows), 0 for none.
    pub(crate) display_org: u32,
    /// The person's slot within the true organisation: decides the name, unique per org.
    pub(crate) slot: u32,
    /// The person's phone is the organisation's switchboard (shared-phone traps).
    pub(crate) switchboard: bool,
    /// Some duplicate row points at this base row.
    pub(crate) has_dups: bool,
    /// A trap uses this base row as its partner (no duplicate may target it).
    pub(crate) locked: bool,
}

/// Presence of a person's optional evidence, fixed per id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PersonFlags {
    pub(crate) has_email: bool,
    pub(crate) corporate_email: bool,
    pub(crate) has_phone: bool,
    pub(crate) has_linkedin: bool,
}

pub(crate) fn person_flags(seed: u64, id: u32) -> PersonFlags {
    let h = mix(seed, S_PERSON_FLAGS, u64::from(id));
    let b = |k: u32, p: f64| unit(splitmix(h ^ u64::from(k))) < p;
    PersonFlags {
        has_email: b(1, 0.92),
        corporate_email: b(2, 0.72),
        has_phone: b(3, 0.8),
        has_linkedin: b(4, 0.65),
    }
}

/// Presence of an organisation's optional fields, fixed per id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrgFlags {
    pub(crate) has_domain: bool,
}

pub(crate) fn org_flags(seed: u64, id: u32) -> OrgFlags {
    let h = mix(seed, S_ORG_FLAGS, u64::from(id));
    OrgFlags {
        has_domain: unit(h) < 0.9,
    }
}

/// The injective name spaces: every `(culture, first, last)` triple, and every organisation
/// `(root, noun, kind word)` triple.
pub(crate) struct NameSpace {
    /// `(culture, first index, last index)` for each person-name index.
    pub(crate) people: Vec<(u8, u8, u8)>,
    /// Multiplier coprime with `people.len()`: successive slots of one organisation get
    /// distinct names.
    pub(crate) person_stride: u64,
    /// Multiplier coprime with the organisation space size.
    pub(crate) org_stride: u64,
}

impl NameSpace {
    pub(crate) fn new() -> Self {
        let mut people = Vec::new();
        for (c, culture) in CULTURES.iter().enumerate() {
            for f in 0..culture.first.len() {
                for l in 0..culture.last.len() {
                    people.push((c as u8, f as u8, l as u8));
                }
            }
        }
        let person_stride = coprime_near(people.len() as u64, 7919);
        let org_stride = coprime_near(org_space(), 104_729);
        Self {
            people,
            person_stride,
            org_stride,
        }
    }

    /// The name of slot `slot` of organisation `org`: `(culture, first, last, middle
    /// initial)`. Distinct for distinct slots of one organisation.
    pub(crate) fn person_name(
        &self,
        seed: u64,
        org: u32,
        slot: u32,
    ) -> (usize, usize, usize, Option<char>) {
        let n = self.people.len() as u64;
        let base = mix(seed, S_NAMES, u64::from(org)) % n;
        let idx = (base + (u64::from(slot) % n) * self.person_stride) % n;
        let (c, f, l) = self.people[idx as usize];
        let round = u64::from(slot) / n;
        let middle = (round > 0).then(|| char::from(b'A' + ((round - 1) % 26) as u8));
        (usize::from(c), usize::from(f), usize::from(l), middle)
    }

    /// The name parts of organisation `id`: `(root, noun, kind word, generation)`.
    /// Distinct ids get distinct `(root, noun, kind word)` until the space is exhausted,
    /// after which a generation number tells them apart.
    pub(crate) fn org_name(&self, seed: u64, id: u32) -> (usize, usize, usize, u64) {
        let space = org_space();
        let idx = u64::from(id) - 1;
        let offset = mix(seed, S_NAMES, u64::MAX) % space;
        let p = (offset + (idx % space) * self.org_stride) % space;
        let roots = ORG_ROOTS.len() as u64;
        let nouns = ORG_NOUNS.len() as u64;
        (
            (p % roots) as usize,
            ((p / roots) % nouns) as usize,
            (p / (roots * nouns)) as usize,
            idx / space,
        )
    }

    /// The kind of organisation `id` (`startup`, `fund`, ...).
    pub(crate) fn org_kind(&self, seed: u64, id: u32) -> &'static str {
        ORG_KIND_WORDS[self.org_name(seed, id).2].0
    }
}

fn org_space() -> u64 {
    (ORG_ROOTS.len() * ORG_NOUNS.len() * ORG_KIND_WORDS.len()) as u64
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn coprime_near(n: u64, start: u64) -> u64 {
    let mut s = start % n.max(2);
    if s == 0 {
        s = 1;
    }
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

/// The whole plan.
pub(crate) struct Plan {
    pub(crate) seed: u64,
    pub(crate) names: NameSpace,
    /// Indexed by organisation id - 1.
    pub(crate) orgs: Vec<OrgRole>,
    /// Base organisation ids, ascending.
    pub(crate) base_orgs: Vec<u32>,
    /// Base organisations of kind `startup`, ascending.
    pub(crate) startups: Vec<u32>,
    /// Duplicate rows of each base organisation.
    pub(crate) org_dups: HashMap<u32, Vec<u32>>,
    /// Indexed by person id - 1.
    pub(crate) people: Vec<PersonPlan>,
    /// People rows by display organisation: `member_ids[member_offsets[o]..member_offsets[o+1]]`.
    pub(crate) member_offsets: Vec<u32>,
    pub(crate) member_ids: Vec<u32>,
}

impl Plan {
    pub(crate) fn new(config: &SyntheticConfig) -> Self {
        let seed = config.seed;
        let names = NameSpace::new();
        let n_orgs = u32::try_from(config.organizations).unwrap_or(u32::MAX);
        let n_people = u32::try_from(config.people).unwrap_or(u32::MAX);

        // Organisations.
        let mut orgs = Vec::with_capacity(n_orgs as usize);
        let mut base_orgs = Vec::new();
        let mut org_dups: HashMap<u32, Vec<u32>> = HashMap::new();
        for id in 1..=n_orgs {
            let h = mix(seed, S_ORG_ROLE, u64::from(id));
            let role = if !base_orgs.is_empty() && unit(h) < config.duplicate_rate {
                let of = base_orgs[pick(splitmix(h ^ 1), base_orgs.len())];
                let r = unit(splitmix(h ^ 2));
                let mut kind = if r < 0.45 {
                    OrgDupKind::SuffixVariant
                } else if r < 0.8 {
                    OrgDupKind::SameDomain
                } else {
                    OrgDupKind::Acronym
                };
                if kind == OrgDupKind::SameDomain && !org_flags(seed, of).has_domain {
                    kind = OrgDupKind::SuffixVariant;
                }
                org_dups.entry(of).or_default().push(id);
                OrgRole::Dup { of, kind }
            } else {
                base_orgs.push(id);
                OrgRole::Base
            };
            orgs.push(role);
        }
        let startups: Vec<u32> = base_orgs
            .iter()
            .copied()
            .filter(|&o| names.org_kind(seed, o) == "startup")
            .collect();

        // People.
        let mut people: Vec<PersonPlan> = Vec::with_capacity(n_people as usize);
        let mut bases: Vec<u32> = Vec::new();
        // Next free slot per true organisation (index 0: people without one).
        let mut slots: Vec<u32> = vec![0; n_orgs as usize + 1];
        let mut take_slot = |org: u32| {
            let s = &mut slots[org as usize];
            let v = *s;
            *s += 1;
            v
        };
        for id in 1..=n_people {
            let h = mix(seed, S_PERSON_ROLE, u64::from(id));
            let u = unit(h);
            let mut plan = None;
            if u < config.duplicate_rate {
                if let Some(of) = pick_base(&bases, &people, h, false) {
                    let kind = person_dup_kind(seed, &names, &people, of, unit(splitmix(h ^ 2)));
                    let target = people[of as usize - 1];
                    let (true_org, display_org) = match kind {
                        PersonDupKind::NewJobDifferentEmail => {
                            match other_org(&base_orgs, target.true_org, splitmix(h ^ 3)) {
                                Some(o) => (o, display_for(&org_dups, o, splitmix(h ^ 4))),
                                None => (target.true_org, target.display_org),
                            }
                        }
                        _ => (target.true_org, target.display_org),
                    };
                    // A new job at no other organisation degrades to a typo duplicate.
                    let kind = if kind == PersonDupKind::NewJobDifferentEmail
                        && true_org == target.true_org
                    {
                        PersonDupKind::Typo
                    } else {
                        kind
                    };
                    people[of as usize - 1].has_dups = true;
                    plan = Some(PersonPlan {
                        role: PersonRole::Dup { of, kind },
                        true_org,
                        display_org,
                        slot: target.slot,
                        switchboard: false,
                        has_dups: false,
                        locked: false,
                    });
                }
            } else if u < config.duplicate_rate + config.trap_rate
                && let Some(partner) = pick_base(&bases, &people, h, true)
                && people[partner as usize - 1].true_org != 0
            {
                let p = people[partner as usize - 1];
                let kind = if unit(splitmix(h ^ 5)) < 0.5 {
                    TrapKind::SharedOfficePhone
                } else {
                    TrapKind::SameNameDifferentPerson
                };
                match kind {
                    TrapKind::SharedOfficePhone => {
                        let slot = take_slot(p.true_org);
                        people[partner as usize - 1].switchboard = true;
                        people[partner as usize - 1].locked = true;
                        plan = Some(PersonPlan {
                            role: PersonRole::Trap { partner, kind },
                            true_org: p.true_org,
                            display_org: p.display_org,
                            slot,
                            switchboard: true,
                            has_dups: false,
                            locked: false,
                        });
                    }
                    TrapKind::SameNameDifferentPerson => {
                        if let Some(o) = other_org(&base_orgs, p.true_org, splitmix(h ^ 6)) {
                            people[partner as usize - 1].locked = true;
                            plan = Some(PersonPlan {
                                role: PersonRole::Trap { partner, kind },
                                true_org: o,
                                display_org: o,
                                slot: take_slot(o),
                                switchboard: false,
                                has_dups: false,
                                locked: false,
                            });
                        }
                    }
                }
            }
            let plan = match plan {
                Some(p) => p,
                None => {
                    let true_org = if base_orgs.is_empty() || unit(splitmix(h ^ 7)) < 0.05 {
                        0
                    } else {
                        base_orgs[skewed(splitmix(h ^ 8), base_orgs.len())]
                    };
                    let display_org = display_for(&org_dups, true_org, splitmix(h ^ 9));
                    bases.push(id);
                    PersonPlan {
                        role: PersonRole::Base,
                        true_org,
                        display_org,
                        slot: take_slot(true_org),
                        switchboard: false,
                        has_dups: false,
                        locked: false,
                    }
                }
            };
            people.push(plan);
        }

        // Members by display organisation (compressed rows).
        let mut member_offsets = vec![0u32; n_orgs as usize + 2];
        for p in &people {
            member_offsets[p.display_org as usize + 1] += 1;
        }
        for i in 1..member_offsets.len() {
            member_offsets[i] += member_offsets[i - 1];
        }
        let mut fill = member_offsets.clone();
        let mut member_ids = vec![0u32; people.len()];
        for (i, p) in people.iter().enumerate() {
            let at = &mut fill[p.display_org as usize];
            member_ids[*at as usize] = i as u32 + 1;
            *at += 1;
        }

        Self {
            seed,
            names,
            orgs,
            base_orgs,
            startups,
            org_dups,
            people,
            member_offsets,
            member_ids,
        }
    }

    pub(crate) fn person(&self, id: u32) -> &PersonPlan {
        &self.people[id as usize - 1]
    }

    pub(crate) fn org(&self, id: u32) -> OrgRole {
        self.orgs[id as usize - 1]
    }

    /// The base organisation of an organisation row.
    pub(crate) fn true_org_of(&self, id: u32) -> u32 {
        match self.org(id) {
            OrgRole::Base => id,
            OrgRole::Dup { of, .. } => of,
        }
    }

    /// People rows pointing at organisation row `org`.
    pub(crate) fn members(&self, org: u32) -> &[u32] {
        let start = self.member_offsets[org as usize] as usize;
        let end = self.member_offsets[org as usize + 1] as usize;
        &self.member_ids[start..end]
    }

    /// Whether a person row belongs to a ground-truth cluster or trap (messiness that would
    /// blur the evidence is not applied to such rows).
    pub(crate) fn in_truth(&self, id: u32) -> bool {
        let p = self.person(id);
        !matches!(p.role, PersonRole::Base) || p.has_dups || p.locked
    }
}

/// A base person picked uniformly (a few tries) that is free for the purpose: duplicates
/// never target a trap partner, and traps never use a base that has duplicates, so clusters
/// and traps never share a base row.
fn pick_base(bases: &[u32], people: &[PersonPlan], h: u64, for_trap: bool) -> Option<u32> {
    if bases.is_empty() {
        return None;
    }
    for k in 0..8u64 {
        let cand = bases[pick(splitmix(h ^ (0x100 + k)), bases.len())];
        let p = &people[cand as usize - 1];
        if !(p.locked || (for_trap && p.has_dups)) {
            return Some(cand);
        }
    }
    None
}

/// Picks a duplicate kind for a base person, falling back when the base lacks the
/// evidence the kind needs.
fn person_dup_kind(
    seed: u64,
    names: &NameSpace,
    people: &[PersonPlan],
    of: u32,
    r: f64,
) -> PersonDupKind {
    let kind = if r < 0.22 {
        PersonDupKind::SameEmail
    } else if r < 0.39 {
        PersonDupKind::Nickname
    } else if r < 0.52 {
        PersonDupKind::Initials
    } else if r < 0.69 {
        PersonDupKind::Typo
    } else if r < 0.80 {
        PersonDupKind::SwappedNames
    } else {
        PersonDupKind::NewJobDifferentEmail
    };
    let base = &people[of as usize - 1];
    let flags = person_flags(seed, of);
    let (c, f, _, _) = names.person_name(seed, base.true_org, base.slot);
    let culture = &CULTURES[c];
    match kind {
        PersonDupKind::SameEmail if !flags.has_email => PersonDupKind::Initials,
        // Where the family name customarily comes first, a swapped entry is the usual slip.
        PersonDupKind::Initials if culture.family_first => PersonDupKind::SwappedNames,
        PersonDupKind::Nickname => {
            if culture.first[f].1.is_empty() {
                PersonDupKind::Initials
            } else {
                kind
            }
        }
        PersonDupKind::NewJobDifferentEmail if !flags.has_linkedin && !flags.has_phone => {
            PersonDupKind::Typo
        }
        _ => kind,
    }
}

/// A base organisation other than `not`, if there is one.
fn other_org(base_orgs: &[u32], not: u32, h: u64) -> Option<u32> {
    if base_orgs.len() < 2 && base_orgs.first().is_none_or(|&o| o == not) {
        return None;
    }
    for k in 0..16u64 {
        let o = base_orgs[skewed(splitmix(h ^ k), base_orgs.len())];
        if o != not {
            return Some(o);
        }
    }
    base_orgs.iter().copied().find(|&o| o != not)
}

/// The organisation row a person of `true_org` points at: usually the base row, sometimes
/// one of its duplicate rows (as happens when a CRM has the same company twice).
fn display_for(org_dups: &HashMap<u32, Vec<u32>>, true_org: u32, h: u64) -> u32 {
    if true_org == 0 {
        return 0;
    }
    match org_dups.get(&true_org) {
        Some(dups) if unit(h) < 0.15 => dups[pick(splitmix(h), dups.len())],
        _ => true_org,
    }
}
