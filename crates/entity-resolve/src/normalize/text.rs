//! Text folding shared by every name normaliser.
//!
//! Folding turns free text into lowercase tokens that compare well:
//! - NFKC first, so full-width letters, ligatures and compatibility forms become plain
//!   letters (`ﬁ` → `fi`, `Ｊｏｈｎ` → `john`);
//! - diacritics are removed from Latin and Greek letters only (`José` → `jose`,
//!   `Ελένη` → `ελενη`), where dropping them is the usual spelling variation; in other
//!   scripts combining marks carry meaning (Devanagari vowel signs, Hebrew points) and
//!   are kept, so non-Latin names stay intact instead of being erased;
//! - a handful of Latin letters that do not decompose are spelled out (`ß` → `ss`,
//!   `Ø` → `o`, `Ł` → `l`, `æ` → `ae`);
//! - apostrophes vanish without splitting (`O'Brien` → `obrien`); every other char that
//!   is not a letter or digit (punctuation, symbols, emoji, controls, whitespace)
//!   separates tokens.
//!
//! Input is capped at [`MAX_INPUT_BYTES`] so a 10 kB "name" costs no more than a
//! long real one.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Longest input folded; the rest is ignored (cut at a char boundary).
pub const MAX_INPUT_BYTES: usize = 1024;

/// Cuts `s` to at most `max` bytes at a char boundary.
pub(crate) fn truncate_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Folds `input` into space-separated lowercase tokens (see the module docs).
///
/// ```
/// use entity_resolve::normalize::fold;
/// assert_eq!(fold("  José  O'Brien-Smith "), "jose obrien smith");
/// assert_eq!(fold("ＭÜLLER, Straße"), "muller strasse");
/// assert_eq!(fold("王 伟"), "王 伟");
/// ```
pub fn fold(input: &str) -> String {
    let input = truncate_chars(input, MAX_INPUT_BYTES);
    let mut out = String::with_capacity(input.len());
    if input.is_ascii() {
        for b in input.bytes() {
            match b {
                b'a'..=b'z' | b'0'..=b'9' => out.push(b as char),
                b'A'..=b'Z' => out.push(b.to_ascii_lowercase() as char),
                b'\'' | b'`' => {}
                _ => push_separator(&mut out),
            }
        }
    } else {
        // Whether the last letter written was Latin/Greek, whose stray combining marks
        // (those NFKC could not compose) are dropped.
        let mut prev_foldable = false;
        let mut prev_letter = false;
        for c in input.nfkc() {
            if c.is_ascii() {
                match c {
                    'a'..='z' | '0'..='9' => out.push(c),
                    'A'..='Z' => out.push(c.to_ascii_lowercase()),
                    '\'' | '`' => {}
                    _ => push_separator(&mut out),
                }
                prev_foldable = c.is_ascii_alphabetic();
                prev_letter = c.is_ascii_alphanumeric();
                continue;
            }
            if is_combining_mark(c) {
                if prev_letter && !prev_foldable {
                    out.push(c);
                }
                continue;
            }
            if let Some(spelled) = spell_out(c) {
                out.push_str(spelled);
                prev_foldable = true;
                prev_letter = true;
                continue;
            }
            if is_latin_or_greek(c) {
                decompose_canonical(c, |d| {
                    if !is_combining_mark(d) {
                        out.extend(d.to_lowercase());
                    }
                });
                prev_foldable = true;
                prev_letter = true;
                continue;
            }
            if c.is_alphanumeric() {
                out.extend(c.to_lowercase());
                prev_foldable = false;
                prev_letter = true;
                continue;
            }
            prev_foldable = false;
            prev_letter = false;
            if is_joiner_or_apostrophe(c) {
                continue;
            }
            push_separator(&mut out);
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

fn push_separator(out: &mut String) {
    if !out.is_empty() && !out.ends_with(' ') {
        out.push(' ');
    }
}

/// Latin-1 Supplement through Latin Extended-B, Latin Extended Additional, Greek and
/// Greek Extended: the blocks whose diacritics are spelling variation.
fn is_latin_or_greek(c: char) -> bool {
    matches!(c as u32, 0x00C0..=0x024F | 0x1E00..=0x1EFF | 0x0370..=0x03FF | 0x1F00..=0x1FFF)
}

/// Latin letters that carry no decomposable diacritic but are usually spelled out.
fn spell_out(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' | 'ẞ' => "ss",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ø' | 'Ø' => "o",
        'đ' | 'Đ' | 'ð' | 'Ð' => "d",
        'þ' | 'Þ' => "th",
        'ł' | 'Ł' | 'ŀ' | 'Ŀ' => "l",
        'ı' => "i",
        'ħ' | 'Ħ' => "h",
        'ŧ' | 'Ŧ' => "t",
        'ŋ' | 'Ŋ' => "n",
        _ => return None,
    })
}

/// Zero-width joiners/spaces and apostrophe look-alikes: dropped without splitting a
/// token (`O’Neil` → `oneil`; a ZWNJ inside a Persian name does not cut it in two).
fn is_joiner_or_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'
            ..='\u{200D}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{02BC}'
                | '\u{00B4}'
    )
}

/// Splits folded text into tokens.
pub(crate) fn tokens(folded: &str) -> impl Iterator<Item = &str> {
    folded.split(' ').filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_latin_diacritics_and_case() {
        assert_eq!(fold("José Ñúñez"), "jose nunez");
        assert_eq!(fold("ÅSA Öberg"), "asa oberg");
        assert_eq!(fold("Dvořák"), "dvorak");
        assert_eq!(fold("Nguyễn Văn Thắng"), "nguyen van thang");
    }

    #[test]
    fn spells_out_undecomposable_letters() {
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Søren Łukasz Æsir"), "soren lukasz aesir");
    }

    #[test]
    fn nfkc_folds_compatibility_forms() {
        assert_eq!(fold("Ｊｏｈｎ"), "john");
        assert_eq!(fold("ﬁona"), "fiona");
    }

    #[test]
    fn decomposed_input_folds_like_precomposed() {
        assert_eq!(fold("Jose\u{301}"), fold("José"));
        // A mark NFKC cannot compose onto a Latin letter is still dropped.
        assert_eq!(fold("a\u{301}\u{330}b"), "ab");
    }

    #[test]
    fn keeps_non_latin_scripts() {
        assert_eq!(fold("王伟"), "王伟");
        assert_eq!(fold("Дмитрий Иванов"), "дмитрий иванов");
        // Devanagari vowel signs are combining marks and must survive.
        assert_eq!(fold("अनिल कुमार"), "अनिल कुमार");
        assert_eq!(fold("محمد"), "محمد");
        assert_eq!(fold("김민준"), "김민준");
    }

    #[test]
    fn greek_loses_tonos_only() {
        assert_eq!(fold("Ελένη"), "ελενη");
    }

    #[test]
    fn apostrophes_join_and_punctuation_splits() {
        assert_eq!(fold("O'Brien"), "obrien");
        assert_eq!(fold("O’Neil"), "oneil");
        assert_eq!(fold("Jean-Pierre"), "jean pierre");
        assert_eq!(fold("  a..b,,c  "), "a b c");
    }

    #[test]
    fn hostile_input() {
        assert_eq!(fold(""), "");
        assert_eq!(fold("   \t\n "), "");
        assert_eq!(fold("\u{0}\u{1}\u{7f}John\u{0}Smith\u{9b}"), "john smith");
        assert_eq!(fold("John 🚀 Smith 👨‍👩‍👧"), "john smith");
        assert_eq!(fold("Zero\u{200B}Width"), "zerowidth");
        assert_eq!(fold("\u{301}\u{301}"), "");
        assert_eq!(fold("!!!???"), "");
        let long = "é".repeat(10_000);
        let folded = fold(&long);
        assert!(folded.len() <= MAX_INPUT_BYTES);
        assert!(folded.chars().all(|c| c == 'e'));
        let mixed = "Ab".repeat(6000);
        assert_eq!(fold(&mixed).len(), MAX_INPUT_BYTES);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "aé";
        assert_eq!(truncate_chars(s, 2), "a");
        assert_eq!(truncate_chars(s, 3), "aé");
        assert_eq!(truncate_chars("", 0), "");
    }
}
