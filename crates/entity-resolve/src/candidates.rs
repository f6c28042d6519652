//! Candidate pairs for the fuzzy tier: blocking keys, then scored comparisons inside
//! each block. There is no all-pairs loop: work grows with the sum of squared block
//! sizes, and a block larger than the cap is compared within a sliding window of `cap`
//! rows only (counted in [`CandidateStats::blocks_capped`], never silent).
//!
//! People are blocked by (organisation entity, family name), (organisation entity,
//! given name) and (organisation entity, both names in sorted order); organisations by
//! their compact name, their core name and their acronym or initials. The scoring
//! tiers are in [`score_people`] and [`score_organizations`].

use std::collections::HashMap;
use std::hash::Hash;

use rayon::prelude::*;

use crate::ids::EntityId;
use crate::nicknames::Nicknames;
use crate::records::{OrgRecord, PersonRecord, key_hash};
use crate::similarity::{
    FamilyRelation, GivenRelation, Reason, Reasons, family_relation, given_relation, swapped,
};

/// A pair of entities proposed for review.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Proposed {
    /// The pair, ordered as stored (`entity_a < entity_b` as text).
    pub(crate) a: EntityId,
    pub(crate) b: EntityId,
    /// In `[0, 1]`, rounded to three decimals.
    pub(crate) score: f64,
    pub(crate) reasons: Reasons,
}

/// Counters of the candidate search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CandidateStats {
    /// Blocks with more than one row.
    pub(crate) blocks: u64,
    /// Blocks larger than the cap, compared within a window.
    pub(crate) blocks_capped: u64,
    /// Row pairs skipped because of the cap.
    pub(crate) pairs_skipped: u64,
    /// Row pairs scored.
    pub(crate) pairs_compared: u64,
}

/// Orders a pair as `entity_candidates` stores it: by the id's text.
pub(crate) fn ordered(a: EntityId, b: EntityId) -> (EntityId, EntityId) {
    if a.to_string() <= b.to_string() {
        (a, b)
    } else {
        (b, a)
    }
}

/// Groups `(key hash, row)` entries into blocks and scores every pair of rows of
/// different entities inside each block (within the cap window).
fn scan_blocks<F>(
    mut keys: Vec<(u64, u32)>,
    entity: &[EntityId],
    cap: usize,
    score: F,
) -> (Vec<(u32, u32, f32, Reasons)>, CandidateStats)
where
    F: Fn(u32, u32) -> Option<(f32, Reasons)> + Sync,
{
    keys.par_sort_unstable();
    keys.dedup();
    let mut bounds: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    while start < keys.len() {
        let k = keys[start].0;
        let end = start + keys[start..].iter().take_while(|e| e.0 == k).count();
        if end - start > 1 {
            bounds.push((start, end));
        }
        start = end;
    }
    let cap = cap.max(2);
    let (found, stats) = bounds
        .par_iter()
        .fold(
            || (Vec::new(), CandidateStats::default()),
            |(mut found, mut stats), &(s, e)| {
                let block = &keys[s..e];
                let n = block.len();
                stats.blocks += 1;
                if n > cap {
                    stats.blocks_capped += 1;
                    let full = (n as u64) * (n as u64 - 1) / 2;
                    let window: u64 = (0..n).map(|i| (n - 1 - i).min(cap - 1) as u64).sum();
                    stats.pairs_skipped += full - window;
                }
                for i in 0..n {
                    let ri = block[i].1;
                    for &(_, rj) in block.iter().skip(i + 1).take(cap - 1) {
                        if entity[ri as usize] == entity[rj as usize] {
                            continue;
                        }
                        stats.pairs_compared += 1;
                        if let Some((s, r)) = score(ri, rj) {
                            found.push((ri.min(rj), ri.max(rj), s, r));
                        }
                    }
                }
                (found, stats)
            },
        )
        .reduce(
            || (Vec::new(), CandidateStats::default()),
            |(mut fa, sa), (fb, sb)| {
                fa.extend(fb);
                (
                    fa,
                    CandidateStats {
                        blocks: sa.blocks + sb.blocks,
                        blocks_capped: sa.blocks_capped + sb.blocks_capped,
                        pairs_skipped: sa.pairs_skipped + sb.pairs_skipped,
                        pairs_compared: sa.pairs_compared + sb.pairs_compared,
                    },
                )
            },
        );
    (found, stats)
}

/// Folds row pairs into entity pairs: the best score, every reason.
pub(crate) fn to_entity_pairs(
    found: impl IntoIterator<Item = (u32, u32, f32, Reasons)>,
    entity: &[EntityId],
) -> Vec<Proposed> {
    let mut best: HashMap<(EntityId, EntityId), (f32, Reasons)> = HashMap::new();
    for (i, j, s, r) in found {
        let (ea, eb) = (entity[i as usize], entity[j as usize]);
        if ea == eb {
            continue;
        }
        let pair = ordered(ea, eb);
        let slot = best.entry(pair).or_insert((s, r));
        slot.0 = slot.0.max(s);
        slot.1 = slot.1.union(r);
    }
    let mut out: Vec<Proposed> = best
        .into_iter()
        .map(|((a, b), (s, r))| Proposed {
            a,
            b,
            score: (f64::from(s.clamp(0.0, 1.0)) * 1000.0).round() / 1000.0,
            reasons: r,
        })
        .collect();
    out.sort_by_key(|x| (x.a, x.b));
    out
}

fn tagged<K: Hash>(tag: u8, key: K) -> u64 {
    key_hash(&(tag, key))
}

/// Person candidate pairs (row indexes with scores), and the search counters.
///
/// `org_of[i]`: organisation entity number of row `i`'s organisation.
pub(crate) fn person_pairs(
    people: &[PersonRecord],
    entity: &[EntityId],
    org_of: &[Option<i64>],
    nicknames: &Nicknames,
    cap: usize,
) -> (Vec<(u32, u32, f32, Reasons)>, CandidateStats) {
    let keys: Vec<(u64, u32)> = people
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, p)| {
            let row = u32::try_from(i).unwrap_or(u32::MAX);
            let org = org_of[i];
            let family = p.name.family_key();
            let mut out = Vec::with_capacity(3);
            if !family.is_empty() {
                out.push((tagged(1, (org, family.as_str())), row));
                if let Some(g) = p.name.given.as_deref() {
                    if g.chars().count() >= 2 {
                        out.push((tagged(2, (org, g)), row));
                    }
                    out.push((tagged(3, (org, p.name.token_bag())), row));
                }
            }
            out.into_iter()
        })
        .collect();
    scan_blocks(keys, entity, cap, |i, j| {
        score_people(
            &people[i as usize],
            &people[j as usize],
            org_of[i as usize],
            org_of[j as usize],
            nicknames,
        )
    })
}

/// How strongly two person names relate (see [`score_people`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameTier {
    Strong,
    Weak,
    FamilyOnly,
}

/// Scores a pair of person rows; `None` when the pair is not worth a review.
///
/// Tiers:
/// - strong name relation (same name, nickname, initial, one-edit typo in either
///   name, swapped names): flagged within one organisation entity; for two people
///   without an organisation only when title and location agree; across
///   organisations only with the same phone;
/// - weak relation (given names share a prefix, the first two letters of a
///   three-letter short form, or a three-letter run): within one organisation entity,
///   or without organisation when title and location agree;
/// - same family name, unrelated given names: within one organisation entity, when
///   title and location agree.
///
/// "Agree" means equal, or missing on both sides.
///
/// Never flagged: different LinkedIn profiles, different generational suffixes or
/// middle initials.
pub(crate) fn score_people(
    a: &PersonRecord,
    b: &PersonRecord,
    org_a: Option<i64>,
    org_b: Option<i64>,
    nicknames: &Nicknames,
) -> Option<(f32, Reasons)> {
    if !a.name.parts_compatible(&b.name) {
        return None;
    }
    if let (Some(la), Some(lb)) = (&a.linkedin, &b.linkedin)
        && la != lb
    {
        return None;
    }
    let (tier, base, reason) = if swapped(&a.name, &b.name) {
        (NameTier::Strong, 0.85, Reason::SwappedNames)
    } else {
        let family = family_relation(&a.name, &b.name);
        let given = match (a.name.given.as_deref(), b.name.given.as_deref()) {
            (Some(ga), Some(gb)) => given_relation(ga, gb, nicknames),
            _ => GivenRelation::Unrelated,
        };
        match (family, given) {
            (FamilyRelation::Exact, GivenRelation::Exact) => {
                (NameTier::Strong, 0.95, Reason::SameName)
            }
            (FamilyRelation::Exact, GivenRelation::Nickname) => {
                (NameTier::Strong, 0.9, Reason::Nickname)
            }
            (FamilyRelation::Exact, GivenRelation::Initial) => {
                (NameTier::Strong, 0.8, Reason::Initials)
            }
            (FamilyRelation::Exact, GivenRelation::Typo) => {
                (NameTier::Strong, 0.85, Reason::TypoGivenName)
            }
            (FamilyRelation::Typo, GivenRelation::Exact | GivenRelation::Nickname) => {
                (NameTier::Strong, 0.85, Reason::TypoFamilyName)
            }
            (FamilyRelation::Exact, GivenRelation::Fragment) => {
                (NameTier::Weak, 0.7, Reason::NameFragment)
            }
            (FamilyRelation::Exact, GivenRelation::Unrelated) => {
                (NameTier::FamilyOnly, 0.5, Reason::SameFamilyName)
            }
            _ => return None,
        }
    };
    let mut reasons = Reasons::default().with(reason);
    let same_title = a.title.is_some() && a.title == b.title;
    let same_location = a.location.is_some() && a.location == b.location;
    // Agreement also counts two missing values (not as a reason, as no disagreement).
    let title_agrees = a.title == b.title;
    let location_agrees = a.location == b.location;
    let same_phone = a.phone.is_some() && a.phone == b.phone;
    let same_domain = a.email_domain.is_some() && a.email_domain == b.email_domain;
    for (on, r) in [
        (same_title, Reason::SameTitle),
        (same_location, Reason::SameLocation),
        (same_phone, Reason::SamePhone),
        (same_domain, Reason::SameEmailDomain),
    ] {
        if on {
            reasons.add(r);
        }
    }
    let same_org = org_a.is_some() && org_a == org_b;
    let no_org = org_a.is_none() && org_b.is_none();
    let accept = match tier {
        NameTier::Strong | NameTier::Weak if same_org => true,
        NameTier::Strong | NameTier::Weak if no_org => title_agrees && location_agrees,
        NameTier::Strong => same_phone,
        NameTier::Weak => false,
        NameTier::FamilyOnly => same_org && title_agrees && location_agrees,
    };
    if !accept {
        return None;
    }
    if same_org {
        reasons.add(Reason::SameOrganization);
    }
    let context = [same_title, same_location, same_phone, same_domain]
        .iter()
        .filter(|&&c| c)
        .count() as f32;
    let mut score = base + 0.02 * context;
    if !same_org {
        score *= 0.9;
    }
    Some((score.min(0.99), reasons))
}

/// Organisation candidate pairs (row indexes with scores), and the search counters.
///
/// `member_domains[i]`: corporate email domains of the people of row `i`'s entity.
pub(crate) fn organization_pairs(
    orgs: &[OrgRecord],
    entity: &[EntityId],
    member_domains: &[&[String]],
    cap: usize,
) -> (Vec<(u32, u32, f32, Reasons)>, CandidateStats) {
    let keys: Vec<(u64, u32)> = orgs
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, o)| {
            let row = u32::try_from(i).unwrap_or(u32::MAX);
            let mut out = Vec::with_capacity(4);
            let compact = o.name.compact_key();
            if compact.chars().count() >= 2 {
                out.push((tagged(1, compact.as_str()), row));
                out.push((tagged(2, o.name.loose_key().as_str()), row));
            }
            if let Some(acr) = o.name.acronym() {
                out.push((tagged(3, acr), row));
            }
            for ini in o.name.initials() {
                out.push((tagged(3, ini.as_str()), row));
            }
            out.into_iter()
        })
        .collect();
    scan_blocks(keys, entity, cap, |i, j| {
        let (i, j) = (i as usize, j as usize);
        score_organizations(&orgs[i], &orgs[j], member_domains[i], member_domains[j])
    })
}

/// Scores a pair of organisation rows; `None` when not worth a review.
///
/// - the same compact name (legal suffixes, spacing and punctuation ignored): flagged,
///   unless the name reads as an acronym (`SWE (Energy)` names many organisations);
/// - an acronym-like compact name, the same core name (descriptors such as holdings,
///   labs, partners also ignored) or one name the acronym of the other: flagged with
///   context only (the people of one use the other's domain, or the same location),
///   and never when both have a kind (`startup`, `fund`, ...) and the kinds differ.
///
/// Never flagged: two different corporate domains.
pub(crate) fn score_organizations(
    a: &OrgRecord,
    b: &OrgRecord,
    members_a: &[String],
    members_b: &[String],
) -> Option<(f32, Reasons)> {
    if !a.domains.is_empty()
        && !b.domains.is_empty()
        && !a.domains.iter().any(|d| b.domains.contains(d))
    {
        return None;
    }
    let member_domain = b.domains.iter().any(|d| members_a.contains(d))
        || a.domains.iter().any(|d| members_b.contains(d));
    let same_location = a.location.is_some() && a.location == b.location;
    let kinds_differ = a.kind.is_some() && b.kind.is_some() && a.kind != b.kind;
    let context = (member_domain || same_location) && !kinds_differ;
    let compact = a.name.compact_key();
    let acronymish = a.name.acronym_like || b.name.acronym_like;
    let mut reasons = Reasons::default();
    let base = if !compact.is_empty() && compact == b.name.compact_key() && (!acronymish || context)
    {
        reasons.add(Reason::SameCompactName);
        if acronymish { 0.6 } else { 0.85 }
    } else if context && !a.name.is_empty() && a.name.loose_key() == b.name.loose_key() {
        reasons.add(Reason::SameCoreName);
        0.7
    } else {
        let acr = |x: &OrgRecord, y: &OrgRecord| {
            x.name
                .acronym()
                .is_some_and(|t| y.name.initials().iter().any(|i| i == t))
        };
        if context && (acr(a, b) || acr(b, a)) {
            reasons.add(Reason::Acronym);
            0.6
        } else {
            return None;
        }
    };
    let mut score: f32 = base;
    if member_domain {
        reasons.add(Reason::MemberEmailDomain);
        score += 0.3;
    }
    if same_location {
        reasons.add(Reason::SameLocation);
        score += 0.05;
    }
    Some((score.min(0.99), reasons))
}
