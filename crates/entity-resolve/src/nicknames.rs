//! Given-name nicknames: a many-to-many table (`Bob` ↔ `Robert`, `Al` ↔ `Albert`,
//! `Alfred`, `Alan`, ...).
//!
//! The data is `data/nicknames.csv`, copied unchanged from the `nicknamer` crate 0.1.0
//! (MIT OR Apache-2.0), which derives it from carltonnorthern/nicknames (Apache-2.0);
//! see `NOTICE` in this crate. Relations are made symmetric; they are not transitive
//! (`Bill` ↔ `William` and `Bill` ↔ `Fred` does not make `William` ↔ `Fred`).

use std::collections::HashMap;
use std::sync::LazyLock;

use crate::normalize::fold;

static TABLE: LazyLock<Nicknames> =
    LazyLock::new(|| Nicknames::from_csv(include_str!("../data/nicknames.csv")));

/// The nickname table.
#[derive(Debug)]
pub struct Nicknames {
    related: HashMap<String, Vec<String>>,
}

impl Nicknames {
    /// The built-in table.
    pub fn builtin() -> &'static Self {
        &TABLE
    }

    /// Builds a table from `name1,has_nickname,name2` lines (header and other
    /// relations skipped). Names are folded like given names are; an entry that does
    /// not fold to a single token (`k.c.`) cannot match a given name and is skipped.
    fn from_csv(csv: &str) -> Self {
        let mut related: HashMap<String, Vec<String>> = HashMap::new();
        for line in csv.lines() {
            let mut parts = line.splitn(3, ',');
            let (Some(a), Some(rel), Some(b)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if rel.trim() != "has_nickname" {
                continue;
            }
            let (a, b) = (fold(a), fold(b));
            if a.is_empty() || b.is_empty() || a == b || a.contains(' ') || b.contains(' ') {
                continue;
            }
            related.entry(a.clone()).or_default().push(b.clone());
            related.entry(b).or_default().push(a);
        }
        for v in related.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        Self { related }
    }

    /// Names directly related to `name` (folded, lowercase), sorted; empty if unknown.
    ///
    /// ```
    /// use entity_resolve::Nicknames;
    /// assert!(Nicknames::builtin().alternates("bob").iter().any(|n| n == "robert"));
    /// ```
    pub fn alternates(&self, name: &str) -> &[String] {
        self.related.get(name).map_or(&[], Vec::as_slice)
    }

    /// True when `a` and `b` are the same name or directly related.
    pub fn related(&self, a: &str, b: &str) -> bool {
        a == b
            || self
                .alternates(a)
                .binary_search_by(|x| x.as_str().cmp(b))
                .is_ok()
    }

    /// Blocking keys for a given name: the name itself and its direct alternates.
    /// Two directly related names always share a key.
    pub fn keys<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        std::iter::once(name).chain(self.alternates(name).iter().map(String::as_str))
    }

    /// Number of names in the table.
    pub fn len(&self) -> usize {
        self.related.len()
    }

    /// True for an empty table.
    pub fn is_empty(&self) -> bool {
        self.related.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_pairs() {
        let t = Nicknames::builtin();
        for (a, b) in [
            ("bob", "robert"),
            ("bill", "william"),
            ("liz", "elizabeth"),
            ("jim", "james"),
            ("mike", "michael"),
            ("kate", "katherine"),
            ("peggy", "margaret"),
        ] {
            assert!(t.related(a, b), "{a} ~ {b}");
            assert!(t.related(b, a), "{b} ~ {a}");
        }
    }

    #[test]
    fn many_to_many_not_transitive() {
        let t = Nicknames::builtin();
        assert!(t.alternates("al").len() >= 2);
        assert!(t.related("bill", "william"));
        assert!(
            !t.related("william", "fred") || t.alternates("william").iter().any(|n| n == "fred")
        );
        assert!(!t.related("robert", "elizabeth"));
    }

    #[test]
    fn keys_intersect_for_related_names() {
        let t = Nicknames::builtin();
        let a: Vec<_> = t.keys("bob").collect();
        assert!(t.keys("robert").any(|k| a.contains(&k)));
        assert_eq!(t.keys("zzzz").collect::<Vec<_>>(), vec!["zzzz"]);
    }

    #[test]
    fn table_is_big_and_clean() {
        let t = Nicknames::builtin();
        assert!(t.len() > 1000, "{}", t.len());
        assert!(!t.is_empty());
        assert!(t.alternates("").is_empty());
        for (k, v) in &t.related {
            assert!(!v.contains(k), "{k} lists itself");
            assert_eq!(&fold(k), k, "{k:?} is not folded");
            assert!(!k.contains(' '), "{k:?}");
        }
    }
}
