//! Checking tool arguments: lengths, control characters, dates, page sizes and cursors.
//!
//! Every check names the argument it rejects, so an agent can correct its call. Cursors
//! are opaque to the agent: base64url of `<tag>:<json>`, where the JSON holds a version,
//! the tool, a hash of the query's filters and the keyset position, and the tag is a
//! checksum over the JSON. A cursor that was altered, belongs to another tool, or to the
//! same tool with other filters is rejected.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crm_store::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ToolsConfig;
use crate::error::ToolError;

/// Longest accepted single-line argument (names, emails, filters), in characters.
pub const MAX_SHORT_ARG_CHARS: usize = 500;
/// Longest accepted search query, in characters.
pub const MAX_QUERY_CHARS: usize = 2_000;
/// Longest accepted long text argument (a note body, a bio, a description), in characters.
pub const MAX_LONG_ARG_CHARS: usize = 100_000;
/// Longest accepted cursor, in characters.
pub const MAX_CURSOR_CHARS: usize = 1_000;
/// Most ids accepted in one list argument.
pub const MAX_IDS: usize = 100;

/// Whether a text argument may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lines {
    /// No control characters at all.
    Single,
    /// Newlines, carriage returns and tabs allowed; other control characters are not.
    Multi,
}

/// Checks a text argument's length and characters.
pub(crate) fn text(
    name: &'static str,
    value: &str,
    max_chars: usize,
    lines: Lines,
) -> Result<(), ToolError> {
    // Count only as far as needed: a 1 MB argument is rejected without a full scan twice.
    let count = value.chars().take(max_chars + 1).count();
    if count > max_chars {
        return Err(ToolError::arg(
            name,
            format!(
                "is {} characters long; the limit is {max_chars}",
                value.chars().count()
            ),
        ));
    }
    let bad = value.chars().enumerate().find(|(_, c)| {
        c.is_control() && !(lines == Lines::Multi && matches!(c, '\n' | '\r' | '\t'))
    });
    if let Some((pos, c)) = bad {
        return Err(ToolError::arg(
            name,
            format!(
                "contains the control character U+{:04X} at position {pos}; {}",
                u32::from(c),
                match lines {
                    Lines::Single => "it must be a single line of text",
                    Lines::Multi => "only newlines and tabs are allowed",
                }
            ),
        ));
    }
    Ok(())
}

/// Checks an optional text argument and returns it trimmed, `None` when absent or blank.
pub(crate) fn opt_text(
    name: &'static str,
    value: Option<&str>,
    max_chars: usize,
    lines: Lines,
) -> Result<Option<String>, ToolError> {
    match value {
        None => Ok(None),
        Some(v) => {
            text(name, v, max_chars, lines)?;
            let t = v.trim();
            Ok((!t.is_empty()).then(|| t.to_owned()))
        }
    }
}

/// Checks a required text argument and returns it trimmed; blank is an error.
pub(crate) fn required_text(
    name: &'static str,
    value: &str,
    max_chars: usize,
    lines: Lines,
) -> Result<String, ToolError> {
    opt_text(name, Some(value), max_chars, lines)?
        .ok_or_else(|| ToolError::arg(name, "must not be empty"))
}

/// Parses a date or date-time argument. A bare date at the end of a range (`until`)
/// means the end of that day.
pub(crate) fn date(
    name: &'static str,
    value: Option<&str>,
    end_of_day: bool,
) -> Result<Option<Timestamp>, ToolError> {
    let Some(value) = value else { return Ok(None) };
    text(name, value, 64, Lines::Single)?;
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let ts = Timestamp::parse(value).map_err(|_| {
        ToolError::arg(
            name,
            format!(
                "{value:?} is not a date; use ISO-8601 such as 2026-06-05 or \
                 2026-06-05T13:55:12Z"
            ),
        )
    })?;
    let date_only = value.len() == 10;
    Ok(Some(if end_of_day && date_only {
        ts.saturating_add(std::time::Duration::from_millis(86_400_000 - 1))
    } else {
        ts
    }))
}

/// The page size to use: `limit` capped at the configured maximum, the default when
/// absent; zero is an error.
pub(crate) fn page_limit(limit: Option<u32>, config: &ToolsConfig) -> Result<usize, ToolError> {
    match limit {
        None => Ok(config.default_page_size as usize),
        Some(0) => Err(ToolError::arg(
            "limit",
            format!("must be between 1 and {}", config.max_page_size),
        )),
        Some(n) => Ok(n.min(config.max_page_size) as usize),
    }
}

/// Checks a list of ids: at most [`MAX_IDS`], returned sorted without duplicates.
pub(crate) fn ids(name: &'static str, ids: &[i64]) -> Result<Vec<i64>, ToolError> {
    if ids.len() > MAX_IDS {
        return Err(ToolError::arg(
            name,
            format!("has {} ids; the limit is {MAX_IDS}", ids.len()),
        ));
    }
    let mut out = ids.to_vec();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A position in a paged list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Position {
    /// Lists ordered by id: continue after this id.
    AfterId {
        /// The last id returned.
        id: i64,
    },
    /// Lists ordered most recent first: continue before this `(occurred_at, id)`.
    Before {
        /// Canonical `occurred_at` of the last item returned.
        at: String,
        /// Its id.
        id: i64,
    },
    /// Ranked lists: skip this many results.
    Offset {
        /// Results already returned.
        n: u32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBody {
    v: u8,
    t: String,
    q: String,
    p: Position,
}

const CURSOR_VERSION: u8 = 1;

/// A short hash of a query's filters, which binds a cursor to them.
pub(crate) fn query_hash(filters: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(filters).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn tag(json: &[u8]) -> String {
    hex::encode(&Sha256::digest(json)[..6])
}

/// Encodes a cursor for `tool` and the query with hash `query`.
pub(crate) fn encode_cursor(tool: &str, query: &str, position: Position) -> String {
    let body = CursorBody {
        v: CURSOR_VERSION,
        t: tool.to_owned(),
        q: query.to_owned(),
        p: position,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut raw = tag(&json).into_bytes();
    raw.push(b':');
    raw.extend_from_slice(&json);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a cursor given to `tool` with the query hash `query`.
pub(crate) fn decode_cursor(
    tool: &str,
    query: &str,
    cursor: Option<&str>,
) -> Result<Option<Position>, ToolError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let cursor = cursor.trim();
    if cursor.is_empty() {
        return Ok(None);
    }
    text("cursor", cursor, MAX_CURSOR_CHARS, Lines::Single)?;
    let invalid = || {
        ToolError::arg(
            "cursor",
            "is not a cursor this tool returned; pass `next_cursor` from the previous answer \
             unchanged, or omit it to start from the beginning",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let split = raw.iter().position(|&b| b == b':').ok_or_else(invalid)?;
    let (given_tag, json) = (&raw[..split], &raw[split + 1..]);
    if given_tag != tag(json).as_bytes() {
        return Err(invalid());
    }
    let body: CursorBody = serde_json::from_slice(json).map_err(|_| invalid())?;
    if body.v != CURSOR_VERSION || body.t != tool {
        return Err(invalid());
    }
    if body.q != query {
        return Err(ToolError::arg(
            "cursor",
            "belongs to the same tool called with other filters; repeat the filters of the \
             call that returned it, or omit the cursor to start over",
        ));
    }
    Ok(Some(body.p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let q = query_hash(&("ada", 3));
        let c = encode_cursor("find_people", &q, Position::AfterId { id: 42 });
        assert_eq!(
            decode_cursor("find_people", &q, Some(&c)).unwrap(),
            Some(Position::AfterId { id: 42 })
        );
        assert_eq!(decode_cursor("find_people", &q, None).unwrap(), None);
    }

    #[test]
    fn altered_cursors_are_rejected_naming_the_argument() {
        let q = query_hash(&"x");
        let c = encode_cursor("find_people", &q, Position::AfterId { id: 42 });
        let mut bytes = URL_SAFE_NO_PAD.decode(&c).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        let altered = URL_SAFE_NO_PAD.encode(bytes);
        for bad in [altered.as_str(), "garbage!", "AAAA", "' OR 1=1 --"] {
            let err = decode_cursor("find_people", &q, Some(bad)).unwrap_err();
            assert!(err.to_string().contains("`cursor`"), "{err}");
        }
        let other_tool = decode_cursor("find_organizations", &q, Some(&c)).unwrap_err();
        assert!(other_tool.to_string().contains("`cursor`"));
        let other_query = decode_cursor("find_people", "0000", Some(&c)).unwrap_err();
        assert!(other_query.to_string().contains("other filters"));
    }

    #[test]
    fn text_checks_name_the_argument_and_limit() {
        let big = "a".repeat(1_048_576);
        let err = text("name", &big, MAX_SHORT_ARG_CHARS, Lines::Single).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`name`") && msg.contains("1048576") && msg.contains("500"));
        assert!(text("body", "a\nb\tc", 10, Lines::Multi).is_ok());
        assert!(text("name", "a\nb", 10, Lines::Single).is_err());
        assert!(text("body", "a\u{0}b", 10, Lines::Multi).is_err());
        assert!(text("name", "Robert'); DROP TABLE people;--", 100, Lines::Single).is_ok());
    }

    #[test]
    fn dates_parse_and_bare_end_dates_cover_the_day() {
        let since = date("since", Some("2026-06-05"), false).unwrap().unwrap();
        assert_eq!(since.to_string(), "2026-06-05T00:00:00.000Z");
        let until = date("until", Some("2026-06-05"), true).unwrap().unwrap();
        assert_eq!(until.to_string(), "2026-06-05T23:59:59.999Z");
        let err = date("until", Some("yesterday"), true).unwrap_err();
        assert!(err.to_string().contains("`until`"));
    }

    #[test]
    fn limits_are_capped() {
        let c = ToolsConfig::default();
        assert_eq!(page_limit(None, &c).unwrap(), 20);
        assert_eq!(page_limit(Some(5000), &c).unwrap(), 100);
        assert!(page_limit(Some(0), &c).is_err());
    }
}
