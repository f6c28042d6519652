//! Organisation names: legal-form suffixes, "The", `&`, acronyms.

use super::text::{MAX_INPUT_BYTES, fold, tokens, truncate_chars};

/// Legal-form suffixes as token sequences after folding (dots dropped, so `L.L.C.`
/// arrives as `llc` and `S.à r.l.` as `sa rl`). Longest first, so `pty ltd` wins over
/// `ltd`.
const LEGAL_SUFFIXES: &[&[&str]] = &[
    &["gmbh", "and", "co", "kg"],
    &["gmbh", "co", "kg"],
    &["public", "limited", "company"],
    &["limited", "liability", "company"],
    &["limited", "liability", "partnership"],
    &["limited", "partnership"],
    &["pty", "ltd"],
    &["pte", "ltd"],
    &["pty", "limited"],
    &["pvt", "ltd"],
    &["private", "limited"],
    &["co", "ltd"],
    &["co", "limited"],
    &["and", "co"],
    &["sa", "rl"],
    &["s", "a"],
    &["s", "a", "s"],
    &["b", "v"],
    &["n", "v"],
    &["l", "p"],
    &["incorporated"],
    &["inc"],
    &["llc"],
    &["pllc"],
    &["pc"],
    &["p", "c"],
    &["llp"],
    &["lllp"],
    &["ltd"],
    &["limited"],
    &["plc"],
    &["lp"],
    &["corp"],
    &["corporation"],
    &["co"],
    &["company"],
    &["gmbh"],
    &["ag"],
    &["kg"],
    &["ug"],
    &["se"],
    &["sa"],
    &["sas"],
    &["sarl"],
    &["srl"],
    &["spa"],
    &["bv"],
    &["nv"],
    &["oy"],
    &["oyj"],
    &["ab"],
    &["as"],
    &["asa"],
    &["aps"],
    &["kk"],
    &["pte"],
    &["pty"],
    &["pvt"],
    &["sl"],
    &["sro"],
    &["zoo"],
];

/// Descriptors dropped only by the loose key used for blocking (`Acme Holdings` and
/// `Acme Group` may be the same organisation, or parent and subsidiary: a candidate,
/// never a deterministic link).
const LOOSE_DESCRIPTORS: &[&str] = &[
    "holding",
    "holdings",
    "group",
    "international",
    "intl",
    "global",
    "worldwide",
    "partners",
    "ventures",
    "capital",
    "technologies",
    "technology",
    "tech",
    "labs",
    "systems",
    "solutions",
    "services",
    "industries",
    "enterprises",
];

/// Words left out of acronyms.
const ACRONYM_STOPWORDS: &[&str] = &[
    "of", "and", "the", "for", "de", "du", "la", "le", "et", "und", "a", "an", "in", "on",
];

/// An organisation name reduced for comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgName {
    /// Tokens after folding, `&` → `and`, leading "The" dropped, legal-form suffixes
    /// stripped (repeatedly: `Acme Holdings Co., Ltd.` → `acme holdings`).
    pub tokens: Vec<String>,
    /// The name starts with a short all-capitals word in an otherwise mixed-case name,
    /// or is one short all-capitals word (`IBM`, `BRC Inc.`, `BRC (Capital)`): it is
    /// probably an acronym, which names many organisations, so it never links
    /// deterministically by name.
    pub acronym_like: bool,
    /// The initials of the name before a trailing "Management" was dropped
    /// (`Falcon Well Asset Management` → `fwam`), when that differs from
    /// [`OrgName::initials`].
    initials_with_management: Option<String>,
}

impl OrgName {
    /// Reduces a raw organisation name.
    ///
    /// ```
    /// use entity_resolve::normalize::OrgName;
    /// assert_eq!(OrgName::parse("The Acme Company, Inc.").key(), "acme");
    /// assert_eq!(OrgName::parse("ACME Corporation").key(), "acme");
    /// assert_eq!(OrgName::parse("Müller & Söhne GmbH & Co. KG").key(), "muller and sohne");
    /// assert_eq!(OrgName::parse("International Business Machines Corp").initials(), vec!["ibm"]);
    /// assert_eq!(OrgName::parse("IBM Corp").acronym(), Some("ibm"));
    /// ```
    pub fn parse(raw: &str) -> Self {
        // Dots inside abbreviations vanish (`L.L.C.` → `LLC`, `S.A.` → `SA`); a dot
        // between words joins them too (`Booking.com` → `bookingcom`), the same way on
        // both sides of a comparison. `&` and `+` are the word "and".
        let raw = truncate_chars(raw, MAX_INPUT_BYTES);
        let prepared: String = raw.chars().filter(|&c| c != '.').collect();
        let folded = fold(&prepared.replace(['&', '+'], " and "));
        let mut toks: Vec<String> = tokens(&folded).map(str::to_owned).collect();
        if toks.len() > 1 && toks[0] == "the" {
            toks.remove(0);
        }
        strip_legal_suffixes(&mut toks);
        // Not a legal form, but how a fund's management company is told apart from
        // the fund: "Blue Rock Capital Management LLC" is Blue Rock Capital in a CRM.
        let mut initials_with_management = None;
        if toks.len() > 1 && toks.last().is_some_and(|t| t == "management") {
            initials_with_management = initials_of(&toks);
            toks.pop();
            strip_legal_suffixes(&mut toks);
        }
        // "Acme, Inc." leaves a trailing "and" only if the name was "Acme &": drop it.
        while toks.len() > 1 && toks.last().is_some_and(|t| t == "and") {
            toks.pop();
        }
        let acronym_like = looks_like_acronym(&prepared, toks.len());
        Self {
            tokens: toks,
            acronym_like,
            initials_with_management,
        }
    }

    /// The stripped legal name as one string (`acme`), empty if nothing is left.
    pub fn key(&self) -> String {
        self.tokens.join(" ")
    }

    /// The stripped name with spaces removed, so `Face Book` and `Facebook` agree.
    pub fn compact_key(&self) -> String {
        self.tokens.concat()
    }

    /// The key with blocking-only descriptors (holdings, group, ...) also removed;
    /// falls back to [`OrgName::compact_key`] when nothing else would be left.
    pub fn loose_key(&self) -> String {
        let kept: Vec<&str> = self
            .tokens
            .iter()
            .map(String::as_str)
            .filter(|t| !LOOSE_DESCRIPTORS.contains(t) && *t != "and")
            .collect();
        if kept.is_empty() {
            self.compact_key()
        } else {
            kept.concat()
        }
    }

    /// The initials of a name of two or more significant words
    /// (`international business machines` → `ibm`), at most eight letters; a name that
    /// ended in "Management" also gives the initials with it (`fwa`, `fwam`).
    pub fn initials(&self) -> Vec<String> {
        let mut out: Vec<String> = initials_of(&self.tokens).into_iter().collect();
        if let Some(m) = &self.initials_with_management
            && !out.contains(m)
        {
            out.push(m.clone());
        }
        out
    }

    /// The acronym this name is written as (`ibm` for `IBM Corp`), when
    /// [`OrgName::acronym_like`].
    pub fn acronym(&self) -> Option<&str> {
        if self.acronym_like {
            self.tokens.first().map(String::as_str)
        } else {
            None
        }
    }

    /// True when nothing is left of the name.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// Initials of the significant words, when there are two or more (at most eight).
fn initials_of(tokens: &[String]) -> Option<String> {
    let significant: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| !ACRONYM_STOPWORDS.contains(t))
        .collect();
    if significant.len() < 2 {
        return None;
    }
    let acr: String = significant
        .iter()
        .filter_map(|t| t.chars().next())
        .collect();
    (acr.chars().count() <= 8).then_some(acr)
}

/// Whether a raw name (dots removed) reads as an acronym: its first word is 2–6
/// capital letters, and either the name has other lower-case letters or it is that one
/// word once suffixes are stripped (an all-capitals long name is just shouting).
fn looks_like_acronym(raw: &str, stripped_tokens: usize) -> bool {
    // A bracketed qualifier does not count: "DFA (AI)" is the acronym DFA.
    let mut unbracketed = String::with_capacity(raw.len());
    let mut depth = 0usize;
    for c in raw.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => unbracketed.push(c),
            _ => {}
        }
    }
    let raw = unbracketed.as_str();
    let stripped_tokens = if raw.split_whitespace().count() == 1 {
        1
    } else {
        stripped_tokens
    };
    let mut words = raw
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty());
    let first = match words.next() {
        Some(w) if w.eq_ignore_ascii_case("the") => words.next(),
        other => other,
    };
    let Some(first) = first else {
        return false;
    };
    let n = first.chars().count();
    let first_caps =
        (2..=6).contains(&n) && first.chars().all(|c| c.is_alphabetic() && c.is_uppercase());
    let all_caps = !raw.chars().any(char::is_lowercase);
    first_caps && (!all_caps || stripped_tokens == 1)
}

/// Strips legal-form suffixes from the end, repeatedly, keeping at least one token.
fn strip_legal_suffixes(toks: &mut Vec<String>) {
    loop {
        let mut stripped = false;
        for suffix in LEGAL_SUFFIXES {
            let n = suffix.len();
            if toks.len() > n
                && toks[toks.len() - n..]
                    .iter()
                    .zip(suffix.iter())
                    .all(|(a, b)| a == b)
            {
                toks.truncate(toks.len() - n);
                stripped = true;
                break;
            }
        }
        if !stripped {
            return;
        }
        while toks.len() > 1 && toks.last().is_some_and(|t| t == "and") {
            toks.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        OrgName::parse(s).key()
    }

    #[test]
    fn legal_suffix_spellings_agree() {
        for s in [
            "Acme",
            "Acme Inc",
            "Acme, Inc.",
            "ACME INCORPORATED",
            "Acme LLC",
            "Acme L.L.C.",
            "Acme Ltd.",
            "Acme Limited",
            "Acme GmbH",
            "Acme AG",
            "Acme S.A.",
            "Acme SA",
            "Acme SAS",
            "Acme S.à r.l.",
            "Acme SARL",
            "Acme B.V.",
            "Acme BV",
            "Acme N.V.",
            "Acme Pty Ltd",
            "Acme Pty. Limited",
            "Acme PLC",
            "Acme LP",
            "Acme L.P.",
            "Acme LLP",
            "Acme Corp.",
            "Acme Corporation",
            "Acme Co.",
            "Acme Company",
            "Acme & Co.",
            "Acme Co., Ltd.",
            "The Acme Company",
            "the acme corp",
            "Acme GmbH & Co. KG",
            "Acme PC",
            "Acme P.C.",
            "Acme PLLC",
            "Acme Pte. Ltd.",
            "Acme Management LLC",
            "Acme Management",
            "  ACME,  Inc ",
        ] {
            assert_eq!(key(s), "acme", "{s:?}");
        }
    }

    #[test]
    fn ampersand_is_and() {
        assert_eq!(key("Johnson & Johnson"), "johnson and johnson");
        assert_eq!(key("Johnson and Johnson Inc"), "johnson and johnson");
        assert_eq!(key("AT&T Inc."), "at and t");
        assert_eq!(key("Procter & Gamble Co."), "procter and gamble");
    }

    #[test]
    fn keeps_a_name_made_only_of_suffixes() {
        assert_eq!(key("The Company"), "company");
        assert_eq!(key("Inc."), "inc");
        assert_eq!(key("The"), "the");
    }

    #[test]
    fn holdings_are_not_a_legal_form() {
        assert_eq!(key("Acme Holdings Inc"), "acme holdings");
        assert_eq!(OrgName::parse("Acme Holdings Inc").loose_key(), "acme");
        assert_eq!(OrgName::parse("Acme Group").loose_key(), "acme");
        assert_eq!(
            OrgName::parse("Global Partners").loose_key(),
            "globalpartners"
        );
    }

    #[test]
    fn compact_key_joins_words() {
        assert_eq!(
            OrgName::parse("Face Book Inc").compact_key(),
            OrgName::parse("Facebook").compact_key()
        );
        assert_eq!(OrgName::parse("Booking.com").compact_key(), "bookingcom");
    }

    #[test]
    fn acronyms() {
        assert_eq!(
            OrgName::parse("International Business Machines").initials(),
            vec!["ibm"]
        );
        assert_eq!(OrgName::parse("Bank of America").initials(), vec!["ba"]);
        assert!(OrgName::parse("Microsoft").initials().is_empty());
        assert!(OrgName::parse("").initials().is_empty());
        let fund = OrgName::parse("Falcon Well Asset Management LP");
        assert_eq!(fund.key(), "falcon well asset");
        assert_eq!(fund.initials(), vec!["fwa", "fwam"]);
        for s in [
            "IBM",
            "IBM Corp",
            "BRC Inc.",
            "BRC (Capital)",
            "DFA (AI)",
            "AT&T",
            "The BRC Group",
            "SAP SE",
            "B.R.C.",
        ] {
            let n = OrgName::parse(s);
            assert!(n.acronym_like, "{s:?}");
            assert!(n.acronym().is_some(), "{s:?}");
        }
        for s in [
            "Blue Rock Capital",
            "BLUE ROCK CAPITAL INC",
            "Acme Inc",
            "Microsoft",
            "ABCDEFGH Ltd",
            "",
        ] {
            assert!(!OrgName::parse(s).acronym_like, "{s:?}");
        }
        assert_eq!(OrgName::parse("BRC (Capital)").acronym(), Some("brc"));
    }

    #[test]
    fn hostile_input() {
        assert!(OrgName::parse("").is_empty());
        assert!(OrgName::parse("...").is_empty());
        assert!(OrgName::parse("&&&").tokens.len() <= 1);
        assert_eq!(key("🚀 Rocket 🚀 Inc"), "rocket");
        assert_eq!(key("株式会社トヨタ"), "株式会社トヨタ");
        assert_eq!(key("Acme\u{0}Corp\u{7}"), "acme");
        let huge = "Acme ".repeat(3000);
        assert!(key(&huge).len() <= 1024);
        let n = OrgName::parse(&"x".repeat(10_000));
        assert_eq!(n.tokens.len(), 1);
        assert!(n.acronym().is_none());
        assert!(n.initials().is_empty());
    }
}
