//! Phonetic codes (Double Metaphone, through `rphonetic`, a port of Apache
//! commons-codec) for blocking on names that sound alike (`Smith` / `Smyth`,
//! `Katherine` / `Catherine`).

use rphonetic::DoubleMetaphone;

/// Primary and alternate Double Metaphone codes of a folded name token. Only plain
/// ASCII letters are encoded (the algorithm is defined for Latin spellings); any other
/// token yields no code rather than a meaningless one.
///
/// ```
/// use entity_resolve::phonetic::double_metaphone;
/// assert_eq!(double_metaphone("smith"), double_metaphone("smyth"));
/// assert!(double_metaphone("王伟").is_none());
/// ```
pub fn double_metaphone(token: &str) -> Option<(String, String)> {
    if token.is_empty() || token.len() > 64 || !token.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let result = DoubleMetaphone::default().double_metaphone(token);
    let primary = result.primary();
    if primary.is_empty() {
        return None;
    }
    Some((primary, result.alternate()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sound_alikes_share_codes() {
        let code = |s| double_metaphone(s).unwrap().0;
        assert_eq!(code("smith"), code("smyth"));
        assert_eq!(code("katherine"), code("catherine"));
        assert_eq!(code("jon"), code("john"));
        assert_ne!(code("smith"), code("jones"));
    }

    #[test]
    fn hostile_tokens() {
        for t in ["", "müller", "王伟", "o'brien", "a b", "123", "😀", "\u{0}"] {
            assert!(double_metaphone(t).is_none(), "{t:?}");
        }
        assert!(double_metaphone(&"a".repeat(10_000)).is_none());
        // Every ASCII-letter token encodes without panicking.
        for t in [
            "x", "aeiou", "wh", "gh", "schw", "czech", "tz", "ccia", "mb",
        ] {
            let _ = double_metaphone(t);
        }
    }
}
