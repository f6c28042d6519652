//! Person names: honorifics, generational suffixes, "Last, First", particles.

use super::text::{fold, tokens, truncate_chars};

/// Titles dropped from the front of a name.
const HONORIFICS: &[&str] = &[
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "mister",
    "dr",
    "doctor",
    "prof",
    "professor",
    "sir",
    "dame",
    "rev",
    "reverend",
    "fr",
    "father",
    "hon",
    "honorable",
    "lord",
    "lady",
    "capt",
    "captain",
    "col",
    "gen",
    "lt",
    "maj",
    "sgt",
    "herr",
    "frau",
    "mme",
    "mlle",
    "mstr",
    "master",
    "madam",
    "madame",
    "sra",
    "srta",
    "dott",
    "ing",
    "judge",
    "rabbi",
    "sheikh",
];

/// Generational suffixes: kept apart, because `John Smith Jr` and `John Smith Sr` are
/// two people.
const GENERATIONS: &[(&str, Generation)] = &[
    ("jr", Generation::Junior),
    ("junior", Generation::Junior),
    ("sr", Generation::Senior),
    ("snr", Generation::Senior),
    ("senior", Generation::Senior),
    ("ii", Generation::Second),
    ("2nd", Generation::Second),
    ("iii", Generation::Third),
    ("3rd", Generation::Third),
    ("iv", Generation::Fourth),
    ("4th", Generation::Fourth),
];

/// Credentials dropped from the end of a name.
const CREDENTIALS: &[&str] = &[
    "phd", "md", "esq", "cpa", "mba", "dds", "jd", "cfa", "pe", "rn", "dphil", "msc", "bsc", "ma",
    "ba", "llm", "obe", "mbe", "cbe", "kbe", "frs", "qc", "kc",
];

/// Particles that belong to the family name (`van Beethoven`, `bin Salman`).
const PARTICLES: &[&str] = &[
    "van", "von", "de", "da", "das", "do", "dos", "del", "della", "dela", "der", "den", "di", "du",
    "la", "le", "lo", "ter", "ten", "bin", "binti", "bint", "ibn", "al", "el", "st", "mac", "zu",
    "vom", "af", "av",
];

/// A generational suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Generation {
    /// Jr., Junior.
    Junior,
    /// Sr., Senior.
    Senior,
    /// II, 2nd.
    Second,
    /// III, 3rd.
    Third,
    /// IV, 4th.
    Fourth,
}

/// A person's name, folded and split into parts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonName {
    /// First given-name token (`robert`), if any.
    pub given: Option<String>,
    /// Further given-name tokens or initials (`a` for `John A. Smith`).
    pub middle: Vec<String>,
    /// Family-name tokens including particles (`["van", "der", "berg"]`).
    pub family: Vec<String>,
    /// Generational suffix, if one was written.
    pub generation: Option<Generation>,
}

impl PersonName {
    /// Parses a person's name from the CRM's three name columns.
    ///
    /// When `last_name` is present the split columns are trusted; otherwise
    /// `full_name` is parsed, accepting "Last, First Middle" and dropping honorifics,
    /// credentials and generational suffixes (the latter kept in `generation`).
    ///
    /// ```
    /// use entity_resolve::normalize::PersonName;
    /// let n = PersonName::parse(None, None, "Dr. Ludwig van Beethoven Jr.");
    /// assert_eq!(n.given.as_deref(), Some("ludwig"));
    /// assert_eq!(n.family_key(), "vanbeethoven");
    /// let n = PersonName::parse(None, None, "Smith, John A.");
    /// assert_eq!(n.full_key(), "john smith");
    /// ```
    pub fn parse(first_name: Option<&str>, last_name: Option<&str>, full_name: &str) -> Self {
        let first = first_name.map(fold).unwrap_or_default();
        let last = last_name.map(fold).unwrap_or_default();
        if !last.is_empty() {
            let mut given: Vec<String> = tokens(&first).map(str::to_owned).collect();
            strip_front(&mut given, HONORIFICS);
            let mut family: Vec<String> = tokens(&last).map(str::to_owned).collect();
            let mut generation = strip_back(&mut family).or_else(|| strip_back(&mut given));
            let mut it = given.into_iter();
            let mut name = Self {
                given: it.next(),
                middle: it.collect(),
                family,
                generation: None,
            };
            // CRMs often keep the middle initial and the suffix only in `full_name`
            // ("John A. Smith Jr." with first "John", last "Smith"): take them from there
            // when it names the same person.
            let full = Self::parse_full(truncate_chars(full_name, super::text::MAX_INPUT_BYTES));
            if full.given == name.given && full.family_key() == name.family_key() {
                if name.middle.is_empty() {
                    name.middle = full.middle;
                }
                generation = generation.or(full.generation);
            }
            name.generation = generation;
            return name;
        }
        let full = truncate_chars(full_name, super::text::MAX_INPUT_BYTES);
        let full_folded_is_empty = fold(full).is_empty();
        if full_folded_is_empty {
            // Only a first name (or nothing) is known.
            let mut given: Vec<String> = tokens(&first).map(str::to_owned).collect();
            strip_front(&mut given, HONORIFICS);
            let generation = strip_back(&mut given);
            let mut it = given.into_iter();
            return Self {
                given: it.next(),
                middle: it.collect(),
                family: Vec::new(),
                generation,
            };
        }
        Self::parse_full(full)
    }

    fn parse_full(full: &str) -> Self {
        let mut generation = None;
        let mut toks: Vec<String> = if let Some((left, right)) = full.split_once(',') {
            let left: Vec<String> = tokens(&fold(left)).map(str::to_owned).collect();
            let mut right: Vec<String> = tokens(&fold(right)).map(str::to_owned).collect();
            // "John Smith, Jr." and "Jane Doe, PhD": the part after the comma is a suffix.
            let right_is_suffix = right
                .iter()
                .all(|t| is_generation(t).is_some() || is_credential(t));
            if right_is_suffix {
                generation = right.iter().find_map(|t| is_generation(t));
                left
            } else {
                strip_front(&mut right, HONORIFICS);
                // "Smith Jr., John": a generation written with the family part.
                let mut left = left;
                if let Some(g) = strip_back(&mut left) {
                    generation = Some(g);
                }
                right.extend(left);
                right
            }
        } else {
            tokens(&fold(full)).map(str::to_owned).collect()
        };
        strip_front(&mut toks, HONORIFICS);
        if let Some(g) = strip_back(&mut toks) {
            generation = Some(g);
        }
        match toks.len() {
            0 => Self {
                generation,
                ..Self::default()
            },
            1 => Self {
                given: None,
                middle: Vec::new(),
                family: toks,
                generation,
            },
            n => {
                // The family name starts at the first particle that is followed by
                // another token, else it is the last token.
                let start = (1..n - 1).find(|&i| is_particle(&toks[i])).unwrap_or(n - 1);
                let family = toks.split_off(start);
                let mut it = toks.into_iter();
                Self {
                    given: it.next(),
                    middle: it.collect(),
                    family,
                    generation,
                }
            }
        }
    }

    /// True when no part of the name is known.
    pub fn is_empty(&self) -> bool {
        self.given.is_none() && self.family.is_empty()
    }

    /// Family-name tokens concatenated (`van der Berg` and `Vanderberg` → `vanderberg`).
    pub fn family_key(&self) -> String {
        self.family.concat()
    }

    /// The last family token that is not a particle (`berg` for `van der Berg`), used
    /// as a looser blocking key.
    pub fn family_core(&self) -> Option<&str> {
        self.family
            .iter()
            .rev()
            .find(|t| !is_particle(t))
            .or_else(|| self.family.last())
            .map(String::as_str)
    }

    /// Every word of the name but initials, sorted and joined: the same for `Anna B. van
    /// der Berg` and `van der Berg Anna` (swapped entries).
    pub fn token_bag(&self) -> String {
        let mut all: Vec<&str> = self
            .given
            .iter()
            .chain(self.middle.iter())
            .chain(self.family.iter())
            .map(String::as_str)
            .filter(|t| t.chars().nth(1).is_some())
            .collect();
        all.sort_unstable();
        all.join(" ")
    }

    /// `given familykey`, middle names left out; empty when the name is empty.
    pub fn full_key(&self) -> String {
        match (&self.given, self.family.is_empty()) {
            (Some(g), false) => format!("{g} {}", self.family_key()),
            (Some(g), true) => g.clone(),
            (None, false) => self.family_key(),
            (None, true) => String::new(),
        }
    }

    /// The first letter of the first middle name, if any.
    pub fn middle_initial(&self) -> Option<char> {
        self.middle.first().and_then(|m| m.chars().next())
    }

    /// Whether two names can belong to one person as far as their structure goes:
    /// generational suffixes do not differ, and middle initials do not contradict.
    pub fn parts_compatible(&self, other: &Self) -> bool {
        if let (Some(a), Some(b)) = (self.generation, other.generation)
            && a != b
        {
            return false;
        }
        match (self.middle.first(), other.middle.first()) {
            (Some(a), Some(b)) => a.chars().next() == b.chars().next(),
            _ => true,
        }
    }
}

fn is_particle(t: &str) -> bool {
    PARTICLES.contains(&t)
}

fn is_credential(t: &str) -> bool {
    CREDENTIALS.contains(&t)
}

fn is_generation(t: &str) -> Option<Generation> {
    GENERATIONS.iter().find(|(s, _)| *s == t).map(|(_, g)| *g)
}

/// Drops leading tokens found in `list`, keeping at least one token.
fn strip_front(toks: &mut Vec<String>, list: &[&str]) {
    let n = toks
        .iter()
        .take_while(|t| list.contains(&t.as_str()))
        .count();
    let n = n.min(toks.len().saturating_sub(1));
    toks.drain(..n);
}

/// Drops trailing credentials and generational suffixes, keeping at least one token;
/// returns the generation found.
fn strip_back(toks: &mut Vec<String>) -> Option<Generation> {
    let mut generation = None;
    while toks.len() > 1 {
        let Some(last) = toks.last() else { break };
        if let Some(g) = is_generation(last) {
            generation.get_or_insert(g);
        } else if !is_credential(last) {
            break;
        }
        toks.pop();
    }
    generation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> PersonName {
        PersonName::parse(None, None, s)
    }

    #[test]
    fn middle_and_suffix_come_from_the_full_name() {
        let n = PersonName::parse(Some("John"), Some("Smith"), "John A. Smith Jr.");
        assert_eq!(n.middle, vec!["a"]);
        assert_eq!(n.generation, Some(Generation::Junior));
        // A full name about someone else is ignored.
        let n = PersonName::parse(Some("John"), Some("Smith"), "Jane B. Doe");
        assert!(n.middle.is_empty());
        assert!(n.parts_compatible(&PersonName::parse(None, None, "John B. Smith")));
    }

    #[test]
    fn split_columns_are_trusted() {
        let n = PersonName::parse(Some("Robert"), Some("Smith"), "whatever");
        assert_eq!(n.given.as_deref(), Some("robert"));
        assert_eq!(n.family, vec!["smith"]);
        assert_eq!(n.full_key(), "robert smith");
    }

    #[test]
    fn honorifics_and_credentials_go() {
        assert_eq!(full("Dr. Jane Doe").full_key(), "jane doe");
        assert_eq!(full("Prof Dr Hans Müller").full_key(), "hans muller");
        assert_eq!(full("Mrs. Jane Doe, PhD").full_key(), "jane doe");
        assert_eq!(full("Jane Doe MBA CFA").full_key(), "jane doe");
        assert_eq!(
            PersonName::parse(Some("Mr. John"), Some("Smith"), "").full_key(),
            "john smith"
        );
    }

    #[test]
    fn generations_are_kept_apart() {
        let jr = full("John Smith Jr.");
        let sr = full("John Smith, Sr");
        assert_eq!(jr.full_key(), "john smith");
        assert_eq!(jr.generation, Some(Generation::Junior));
        assert_eq!(sr.generation, Some(Generation::Senior));
        assert!(!jr.parts_compatible(&sr));
        assert!(jr.parts_compatible(&full("John Smith")));
        assert_eq!(full("Henry Ford III").generation, Some(Generation::Third));
        assert_eq!(full("Smith Jr., John").generation, Some(Generation::Junior));
        assert_eq!(full("Smith Jr., John").full_key(), "john smith");
    }

    #[test]
    fn last_comma_first() {
        let n = full("Smith, John Andrew");
        assert_eq!(n.given.as_deref(), Some("john"));
        assert_eq!(n.middle, vec!["andrew"]);
        assert_eq!(n.family, vec!["smith"]);
        assert_eq!(full("van der Berg, Anna").family_key(), "vanderberg");
        assert_eq!(full("Doe, Dr. Jane").full_key(), "jane doe");
    }

    #[test]
    fn particles_join_the_family_name() {
        let n = full("Ludwig van Beethoven");
        assert_eq!(n.family, vec!["van", "beethoven"]);
        assert_eq!(n.family_core(), Some("beethoven"));
        assert_eq!(
            full("Anna van der Berg").family_key(),
            full("Anna Vanderberg").family_key()
        );
        assert_eq!(full("Mohammed bin Salman").family_key(), "binsalman");
        // A particle-looking token at the end is the family name itself.
        assert_eq!(full("Sandra Dee").family, vec!["dee"]);
        assert_eq!(full("Chris De").family, vec!["de"]);
    }

    #[test]
    fn middle_initials() {
        let a = full("John A. Smith");
        assert_eq!(a.middle, vec!["a"]);
        assert!(a.parts_compatible(&full("John Andrew Smith")));
        assert!(!a.parts_compatible(&full("John B. Smith")));
    }

    #[test]
    fn hostile_names() {
        assert!(full("").is_empty());
        assert!(PersonName::parse(None, None, "   ").is_empty());
        assert!(PersonName::parse(Some(""), Some(""), "").is_empty());
        assert_eq!(full("Dr.").full_key(), "dr");
        assert_eq!(full(",,,").full_key(), "");
        assert_eq!(full("Jr.").full_key(), "jr");
        assert_eq!(full("王伟").family, vec!["王伟"]);
        assert_eq!(full("王伟").full_key(), "王伟");
        assert_eq!(full("😀 John 😀 Smith 😀").full_key(), "john smith");
        assert_eq!(full("John\u{0}Smith").full_key(), "john smith");
        let huge = "Aa ".repeat(4000);
        let n = full(&huge);
        assert!(n.full_key().len() <= 1024);
        let n = PersonName::parse(Some(&"x".repeat(10_000)), Some(&"y".repeat(10_000)), "");
        assert_eq!(n.given.as_ref().map(String::len), Some(1024));
        assert_eq!(PersonName::parse(Some("Cher"), None, "").full_key(), "cher");
        assert_eq!(PersonName::parse(None, Some("Dr"), "").full_key(), "dr");
    }
}
