//! Union-find clustering that refuses unions whose merged cluster would hold
//! conflicting hard evidence.
//!
//! Every row may carry *exclusive evidence*: values of which one entity can only have
//! one (a person's LinkedIn profile, generational suffix and middle initial, an
//! organisation's corporate domains), and the
//! sides of undone merges (a person undid "A is B": rows of A and rows of B must stay
//! apart). A union is allowed only if, for every kind of exclusive evidence, the two
//! clusters' value sets are not both non-empty and disjoint. The check runs on whole
//! clusters, so a conflict is caught even when the two conflicting rows are joined
//! through a third one (`A -email- B -phone- C` with A and C on two different LinkedIn
//! profiles: whichever union comes second is refused).
//!
//! Forced unions (recorded merges) skip the check: a decision by a person or the fuzzy
//! tier stands over the deterministic rules.

/// Kind of exclusive evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EvidenceKind {
    /// A person's LinkedIn profile slug.
    LinkedinProfile,
    /// An organisation's LinkedIn company slug.
    LinkedinCompany,
    /// An organisation's corporate (registrable) domain.
    Domain,
    /// A person's generational suffix (Jr. and Sr. are two people).
    Generation,
    /// A person's middle initial (John A. and John B. Smith are two people).
    MiddleInitial,
    /// Side of an undone merge: the value is `merge_id * 2 + side`; the key carries
    /// the merge id so the two sides of one merge conflict.
    UndoneMerge(i64),
}

/// One piece of exclusive evidence: a kind and a hashed value.
pub(crate) type Evidence = (EvidenceKind, u64);

/// What stopped a union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The kind of evidence that conflicted.
    pub(crate) kind: EvidenceKind,
}

/// Union-find over row indexes with per-cluster exclusive evidence.
#[derive(Debug)]
pub(crate) struct Clusters {
    parent: Vec<u32>,
    size: Vec<u32>,
    /// Exclusive evidence of each root, sorted; empty for most clusters.
    evidence: Vec<Vec<Evidence>>,
}

impl Clusters {
    /// `n` singleton clusters; `evidence[i]` is row `i`'s exclusive evidence.
    pub(crate) fn new(mut evidence: Vec<Vec<Evidence>>) -> Self {
        let n = evidence.len();
        for e in &mut evidence {
            e.sort_unstable();
            e.dedup();
        }
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            parent: (0..n32).collect(),
            size: vec![1; n],
            evidence,
        }
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.parent.len()
    }

    /// Root of `i`'s cluster (with path halving).
    pub(crate) fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = self.parent[i as usize];
        }
        i
    }

    /// Root of `i`'s cluster without compressing paths.
    #[cfg(test)]
    pub(crate) fn find_const(&self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            i = self.parent[i as usize];
        }
        i
    }

    /// Adds exclusive evidence to row `i`'s cluster.
    pub(crate) fn add_evidence(&mut self, i: u32, e: Evidence) {
        let r = self.find(i) as usize;
        let list = &mut self.evidence[r];
        if let Err(at) = list.binary_search(&e) {
            list.insert(at, e);
        }
    }

    /// Joins the clusters of `a` and `b` unless their evidence conflicts.
    /// `Ok(true)` when joined, `Ok(false)` when already together.
    pub(crate) fn union(&mut self, a: u32, b: u32) -> Result<bool, Conflict> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return Ok(false);
        }
        if let Some(kind) = conflict(&self.evidence[ra as usize], &self.evidence[rb as usize]) {
            return Err(Conflict { kind });
        }
        self.link(ra, rb);
        Ok(true)
    }

    /// Joins the clusters of `a` and `b` whatever their evidence (a recorded merge).
    pub(crate) fn force_union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        self.link(ra, rb);
        true
    }

    /// The conflict a union of `a` and `b` would meet, if any.
    #[cfg(test)]
    pub(crate) fn would_conflict(&mut self, a: u32, b: u32) -> Option<Conflict> {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return None;
        }
        conflict(&self.evidence[ra as usize], &self.evidence[rb as usize])
            .map(|kind| Conflict { kind })
    }

    fn link(&mut self, ra: u32, rb: u32) {
        let (big, small) = if self.size[ra as usize] >= self.size[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[small as usize] = big;
        self.size[big as usize] += self.size[small as usize];
        let moved = std::mem::take(&mut self.evidence[small as usize]);
        if !moved.is_empty() {
            let target = &mut self.evidence[big as usize];
            target.extend(moved);
            target.sort_unstable();
            target.dedup();
        }
    }

    /// Every cluster as a sorted list of row indexes; clusters ordered by their
    /// smallest index.
    pub(crate) fn groups(&mut self) -> Vec<Vec<u32>> {
        let n = self.len();
        let mut slot = vec![u32::MAX; n];
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for i in 0..n {
            let i32_ = i as u32;
            let r = self.find(i32_) as usize;
            if slot[r] == u32::MAX {
                slot[r] = groups.len() as u32;
                groups.push(Vec::new());
            }
            groups[slot[r] as usize].push(i32_);
        }
        groups
    }
}

/// The first evidence kind on which `a` and `b` (sorted) are both non-empty and
/// disjoint.
fn conflict(a: &[Evidence], b: &[Evidence]) -> Option<EvidenceKind> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut kinds: Vec<EvidenceKind> = a
        .iter()
        .map(|e| e.0)
        .filter(|k| b.iter().any(|e| e.0 == *k))
        .collect();
    kinds.dedup();
    kinds.into_iter().find(|&kind| {
        let va = a.iter().filter(|e| e.0 == kind).map(|e| e.1);
        let overlap = va
            .into_iter()
            .any(|v| b.iter().any(|e| e.0 == kind && e.1 == v));
        !overlap
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LI: EvidenceKind = EvidenceKind::LinkedinProfile;

    #[test]
    fn plain_unions() {
        let mut c = Clusters::new(vec![vec![]; 4]);
        assert_eq!(c.union(0, 1), Ok(true));
        assert_eq!(c.union(1, 0), Ok(false));
        assert_eq!(c.union(2, 3), Ok(true));
        assert_eq!(c.groups(), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn conflict_through_a_third_row_is_caught() {
        // 0 and 2 hold different profiles; 1 holds none.
        let mut c = Clusters::new(vec![vec![(LI, 7)], vec![], vec![(LI, 9)]]);
        assert_eq!(c.union(0, 1), Ok(true));
        assert_eq!(c.union(1, 2), Err(Conflict { kind: LI }));
        assert_eq!(c.groups(), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn shared_value_is_compatible() {
        let d = EvidenceKind::Domain;
        let mut c = Clusters::new(vec![vec![(d, 1), (d, 2)], vec![(d, 2)], vec![(d, 3)]]);
        assert_eq!(c.union(0, 1), Ok(true));
        assert!(c.would_conflict(0, 2).is_some());
        assert_eq!(c.union(1, 2), Err(Conflict { kind: d }));
    }

    #[test]
    fn kinds_do_not_mix() {
        let mut c = Clusters::new(vec![vec![(LI, 1)], vec![(EvidenceKind::Domain, 2)]]);
        assert_eq!(c.union(0, 1), Ok(true));
    }

    #[test]
    fn undone_merge_sides_conflict() {
        let u = EvidenceKind::UndoneMerge(4);
        let mut c = Clusters::new(vec![vec![(u, 8)], vec![(u, 9)], vec![]]);
        assert!(c.union(0, 1).is_err());
        assert_eq!(c.union(0, 2), Ok(true));
        assert!(c.union(2, 1).is_err());
    }

    #[test]
    fn forced_union_overrides() {
        let mut c = Clusters::new(vec![vec![(LI, 1)], vec![(LI, 2)], vec![(LI, 3)]]);
        assert!(c.force_union(0, 1));
        // The merged cluster holds profiles {1, 2}; row 2 holds 3, in neither.
        assert!(c.would_conflict(0, 2).is_some());
        assert_eq!(c.find_const(1), c.find_const(0));
    }
}
