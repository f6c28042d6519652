//! Keeping answers small: long texts cut with a marker and their full length, short
//! fields clipped, and the JSON size of a whole answer measured against a budget.

use schemars::JsonSchema;
use serde::Serialize;

/// A long text from the CRM (a bio, a note body, chunk text), possibly cut.
///
/// When `truncated` is true, `text` holds the first characters of the value followed by
/// `…`, and `full_length` is the length of the whole value in characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LongText {
    /// The text, or its beginning followed by `…` when `truncated`.
    pub text: String,
    /// True when `text` is only the beginning of the value.
    pub truncated: bool,
    /// Length of the whole value, in characters.
    pub full_length: u32,
}

/// Marker appended to a clipped short field.
pub const CLIP_MARKER: &str = "…[clipped]";

/// Cuts `value` to at most `max_chars` characters (plus the `…` marker).
pub(crate) fn long_text(value: &str, max_chars: usize) -> LongText {
    let full = value.chars().count();
    let full_length = u32::try_from(full).unwrap_or(u32::MAX);
    if full <= max_chars {
        return LongText {
            text: value.to_owned(),
            truncated: false,
            full_length,
        };
    }
    let mut text: String = value.chars().take(max_chars).collect();
    text.push('…');
    LongText {
        text,
        truncated: true,
        full_length,
    }
}

/// Cuts an optional long text.
pub(crate) fn opt_long(value: Option<&str>, max_chars: usize) -> Option<LongText> {
    value.map(|v| long_text(v, max_chars))
}

/// Clips a short field to `max_chars` characters, ending it with [`CLIP_MARKER`].
pub(crate) fn clip(value: &str, max_chars: usize) -> String {
    let mut chars = value.char_indices();
    match chars.nth(max_chars) {
        None => value.to_owned(),
        Some((cut, _)) => {
            let mut out = String::with_capacity(cut + CLIP_MARKER.len());
            out.push_str(&value[..cut]);
            out.push_str(CLIP_MARKER);
            out
        }
    }
}

/// Clips an optional short field.
pub(crate) fn opt_clip(value: Option<&str>, max_chars: usize) -> Option<String> {
    value.map(|v| clip(v, max_chars))
}

/// The text limits an answer is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextLimits {
    /// Characters of a long text.
    pub(crate) long: usize,
    /// Characters of a short field.
    pub(crate) field: usize,
}

impl TextLimits {
    /// Tighter limits for another attempt at fitting the budget; `None` when they cannot
    /// usefully shrink further.
    pub(crate) fn tighter(self) -> Option<Self> {
        if self.long > 200 {
            Some(Self {
                long: self.long / 2,
                ..self
            })
        } else if self.field > 60 {
            Some(Self {
                field: self.field / 2,
                ..self
            })
        } else {
            None
        }
    }
}

/// The size of `value` serialised as JSON, in bytes.
pub(crate) fn json_len<T: Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serialising plain data into a counter cannot fail; an error would only undercount,
    // and the answer is serialised again (checked) when it is sent.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Builds an answer with `limits`, tightening them until its JSON fits `budget` bytes
/// (or the limits cannot shrink further).
pub(crate) fn fit<T, E>(
    budget: usize,
    mut limits: TextLimits,
    mut build: impl FnMut(TextLimits) -> Result<T, E>,
) -> Result<T, E>
where
    T: Serialize,
{
    loop {
        let answer = build(limits)?;
        if json_len(&answer) <= budget {
            return Ok(answer);
        }
        match limits.tighter() {
            Some(next) => limits = next,
            None => return Ok(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_keeps_short_values_whole() {
        let t = long_text("héllo", 5);
        assert_eq!(t.text, "héllo");
        assert!(!t.truncated);
        assert_eq!(t.full_length, 5);
    }

    #[test]
    fn long_text_cuts_on_characters_and_reports_the_full_length() {
        let value = "é".repeat(1000);
        let t = long_text(&value, 10);
        assert!(t.truncated);
        assert_eq!(t.full_length, 1000);
        assert_eq!(t.text.chars().count(), 11);
        assert!(t.text.ends_with('…'));
    }

    #[test]
    fn clip_marks_cut_fields() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), format!("abc{CLIP_MARKER}"));
        assert_eq!(clip("ééé", 1), format!("é{CLIP_MARKER}"));
    }

    #[test]
    fn fit_tightens_until_the_budget_holds() {
        let big = "x".repeat(10_000);
        let limits = TextLimits {
            long: 8_000,
            field: 300,
        };
        let answer = fit::<_, ()>(2_000, limits, |l| Ok(long_text(&big, l.long))).unwrap();
        assert!(json_len(&answer) <= 2_000, "{}", json_len(&answer));
        assert!(answer.truncated);
        assert_eq!(answer.full_length, 10_000);
    }

    #[test]
    fn json_len_matches_serialisation() {
        let v = serde_json::json!({"a": "é\"\n", "b": [1, 2, 3]});
        assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
