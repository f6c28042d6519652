//! Strict reading of the model's answer.
//!
//! The answer must be one JSON object, exactly:
//! `{"entity_a": "...", "entity_b": "...", "reason": "...", "same_entity": true|false,
//! "confidence": 0..1}`, where the two ids are the candidate's own (in either order).
//! Before parsing, a leading `<think>…</think>` block (Qwen3 thinking mode) and one
//! Markdown code fence wrapping the whole answer are removed. Anything else — prose
//! around the JSON, a missing or extra field, a confidence out of range, an answer about
//! other ids — is a [`ReplyProblem`], never a "yes".

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Longest `reason` kept, in characters.
pub const MAX_REASON_CHARS: usize = 1_000;

/// A valid answer of the model about one candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the two records are the same real-world entity.
    pub same_entity: bool,
    /// The model's confidence in `same_entity`, in `[0, 1]`.
    pub confidence: f64,
    /// The model's one-sentence reason (trimmed, at most [`MAX_REASON_CHARS`]).
    pub reason: String,
}

/// Why an answer was not accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ReplyProblem {
    /// The server sent no message content at all.
    NoContent {
        /// The server's `finish_reason`, if any.
        finish_reason: Option<String>,
    },
    /// Nothing but whitespace (after removing a thinking block).
    Empty,
    /// A `<think>` block that never ends: the answer itself is missing.
    UnclosedThinking,
    /// The answer is not a JSON object (prose, malformed or truncated JSON).
    NotJson {
        /// The parser's complaint.
        detail: String,
    },
    /// A JSON object, but not with exactly the required fields and types.
    WrongShape {
        /// The parser's complaint.
        detail: String,
    },
    /// `confidence` outside `[0, 1]`.
    ConfidenceOutOfRange {
        /// The value given.
        confidence: f64,
    },
    /// The answer names other entities than the candidate's.
    OtherIds {
        /// The candidate's ids.
        expected: [String; 2],
        /// The ids in the answer.
        got: [String; 2],
    },
    /// `reason` is empty.
    EmptyReason,
}

impl fmt::Display for ReplyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoContent { finish_reason } => write!(
                f,
                "the reply has no message content (finish_reason {finish_reason:?})"
            ),
            Self::Empty => f.write_str("the reply is empty"),
            Self::UnclosedThinking => {
                f.write_str("the reply opens a <think> block and never closes it")
            }
            Self::NotJson { detail } => write!(f, "the reply is not a JSON object: {detail}"),
            Self::WrongShape { detail } => {
                write!(
                    f,
                    "the reply's JSON does not have the required fields: {detail}"
                )
            }
            Self::ConfidenceOutOfRange { confidence } => {
                write!(f, "confidence {confidence} is outside [0, 1]")
            }
            Self::OtherIds { expected, got } => write!(
                f,
                "the reply is about {} and {}, not the candidate's {} and {}",
                got[0], got[1], expected[0], expected[1]
            ),
            Self::EmptyReason => f.write_str("the reply gives no reason"),
        }
    }
}

/// The answer exactly as the schema asks for it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    entity_a: String,
    entity_b: String,
    same_entity: bool,
    confidence: f64,
    reason: String,
}

/// The JSON schema of the answer, for `response_format`.
///
/// The ids are plain strings, not an `enum` of the candidate's two ids: with a server
/// that enforces the schema, an `enum` would force the right ids and hide a model that
/// is answering about something else.
pub fn answer_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "entity_a": {"type": "string"},
            "entity_b": {"type": "string"},
            "reason": {"type": "string", "maxLength": 300},
            "same_entity": {"type": "boolean"},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1}
        },
        "required": ["entity_a", "entity_b", "reason", "same_entity", "confidence"],
        "additionalProperties": false
    })
}

/// `response_format` asking for [`answer_schema`].
pub fn response_format() -> Value {
    json!({
        "type": "json_schema",
        "json_schema": {
            "name": "entity_match",
            "strict": true,
            "schema": answer_schema()
        }
    })
}

/// Removes a leading thinking block and one code fence around the whole answer.
pub fn strip_wrapping(content: &str) -> Result<&str, ReplyProblem> {
    let mut text = content.trim();
    // Some servers drop the opening tag and only send the closing one (the template
    // opened it), so the last `</think>` ends the thinking either way.
    if let Some(end) = text.rfind("</think>") {
        let before = &text[..end];
        let opened = before.trim_start().starts_with("<think>") || !before.contains("<think>");
        if opened {
            text = text[end + "</think>".len()..].trim();
        }
    } else if text.starts_with("<think>") {
        return Err(ReplyProblem::UnclosedThinking);
    }
    if let Some(rest) = text.strip_prefix("```") {
        // The fence line may name a language (```json); the block must end the answer.
        let Some(newline) = rest.find('\n') else {
            return Err(ReplyProblem::NotJson {
                detail: "a code fence without content".to_owned(),
            });
        };
        let info = rest[..newline].trim();
        if !info
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ReplyProblem::NotJson {
                detail: "a code fence with an unexpected info string".to_owned(),
            });
        }
        let body = &rest[newline + 1..];
        let Some(inner) = body.trim_end().strip_suffix("```") else {
            return Err(ReplyProblem::NotJson {
                detail: "a code fence that is not closed at the end of the reply".to_owned(),
            });
        };
        text = inner.trim();
    }
    if text.is_empty() {
        return Err(ReplyProblem::Empty);
    }
    Ok(text)
}

/// Parses and validates an answer about the candidate `(entity_a, entity_b)`.
pub fn parse_verdict(
    content: &str,
    entity_a: &str,
    entity_b: &str,
) -> Result<Verdict, ReplyProblem> {
    let text = strip_wrapping(content)?;
    let value: Value = serde_json::from_str(text).map_err(|e| ReplyProblem::NotJson {
        detail: e.to_string(),
    })?;
    if !value.is_object() {
        return Err(ReplyProblem::NotJson {
            detail: format!("a JSON {} rather than an object", json_type(&value)),
        });
    }
    let answer: Answer = serde_json::from_value(value).map_err(|e| ReplyProblem::WrongShape {
        detail: e.to_string(),
    })?;
    let got = [answer.entity_a.trim(), answer.entity_b.trim()];
    let same_pair =
        (got[0] == entity_a && got[1] == entity_b) || (got[0] == entity_b && got[1] == entity_a);
    if !same_pair {
        return Err(ReplyProblem::OtherIds {
            expected: [entity_a.to_owned(), entity_b.to_owned()],
            got: [cut(got[0], 100), cut(got[1], 100)],
        });
    }
    if !(0.0..=1.0).contains(&answer.confidence) {
        return Err(ReplyProblem::ConfidenceOutOfRange {
            confidence: answer.confidence,
        });
    }
    let reason = answer.reason.trim();
    if reason.is_empty() {
        return Err(ReplyProblem::EmptyReason);
    }
    Ok(Verdict {
        same_entity: answer.same_entity,
        confidence: answer.confidence,
        reason: cut(reason, MAX_REASON_CHARS),
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            let mut s = text[..at].to_owned();
            s.push('…');
            s
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "person:17";
    const B: &str = "person:20931";

    fn answer(same: bool, confidence: f64) -> String {
        json!({"entity_a": A, "entity_b": B, "reason": "same email domain and nickname",
               "same_entity": same, "confidence": confidence})
        .to_string()
    }

    #[test]
    fn a_plain_answer_parses() {
        let v = parse_verdict(&answer(true, 0.97), A, B).unwrap();
        assert!(v.same_entity);
        assert_eq!(v.confidence, 0.97);
        assert_eq!(v.reason, "same email domain and nickname");
        let v = parse_verdict(&answer(false, 0.1), A, B).unwrap();
        assert!(!v.same_entity);
    }

    #[test]
    fn ids_may_come_back_swapped_but_not_different() {
        let swapped = json!({"entity_a": B, "entity_b": A, "reason": "r",
                             "same_entity": true, "confidence": 1})
        .to_string();
        assert!(parse_verdict(&swapped, A, B).is_ok());
        let other = json!({"entity_a": A, "entity_b": "person:5", "reason": "r",
                           "same_entity": true, "confidence": 1})
        .to_string();
        assert!(matches!(
            parse_verdict(&other, A, B),
            Err(ReplyProblem::OtherIds { .. })
        ));
        let same_twice = json!({"entity_a": A, "entity_b": A, "reason": "r",
                                "same_entity": true, "confidence": 1})
        .to_string();
        assert!(matches!(
            parse_verdict(&same_twice, A, B),
            Err(ReplyProblem::OtherIds { .. })
        ));
    }

    #[test]
    fn thinking_and_fences_are_stripped() {
        let body = answer(true, 0.95);
        for wrapped in [
            format!("<think>\nThey share an email. {{\"not\": \"this\"}}\n</think>\n\n{body}"),
            format!("```json\n{body}\n```"),
            format!("<think>hmm</think>\n```json\n{body}\n```\n"),
            format!("```\n{body}\n```"),
            // The template opened the block; only the closing tag arrives.
            format!("Okay, let me compare them.\n</think>\n{body}"),
            format!("  \n{body}\n  "),
        ] {
            let v = parse_verdict(&wrapped, A, B);
            assert!(v.is_ok(), "{wrapped:?}: {v:?}");
        }
    }

    #[test]
    fn prose_and_broken_json_are_not_answers() {
        let body = answer(true, 0.95);
        let cases = [
            "Yes, these are the same person.".to_owned(),
            format!("Here is my answer: {body}"),
            format!("{body}\nI hope this helps!"),
            format!("Sure!\n```json\n{body}\n```"),
            format!("```json\n{body}"),
            "{\"entity_a\": \"person:17\", \"same_entity\": tru".to_owned(),
            "[true, 0.9]".to_owned(),
            "\"yes\"".to_owned(),
            "true".to_owned(),
        ];
        for case in cases {
            let r = parse_verdict(&case, A, B);
            assert!(
                matches!(r, Err(ReplyProblem::NotJson { .. })),
                "{case:?}: {r:?}"
            );
        }
    }

    #[test]
    fn empty_and_unclosed_thinking_are_problems() {
        assert_eq!(parse_verdict("", A, B), Err(ReplyProblem::Empty));
        assert_eq!(
            parse_verdict("<think>x</think>  ", A, B),
            Err(ReplyProblem::Empty)
        );
        assert_eq!(
            parse_verdict("<think>I wonder whether", A, B),
            Err(ReplyProblem::UnclosedThinking)
        );
    }

    #[test]
    fn missing_extra_and_mistyped_fields_are_problems() {
        let cases = [
            json!({"entity_a": A, "entity_b": B, "same_entity": true, "confidence": 0.9}),
            json!({"entity_a": A, "entity_b": B, "reason": "r", "confidence": 0.9}),
            json!({"entity_a": A, "entity_b": B, "reason": "r", "same_entity": true}),
            json!({"entity_a": A, "entity_b": B, "reason": "r", "same_entity": "yes",
                   "confidence": 0.9}),
            json!({"entity_a": A, "entity_b": B, "reason": "r", "same_entity": true,
                   "confidence": "0.9"}),
            json!({"entity_a": A, "entity_b": B, "reason": "r", "same_entity": true,
                   "confidence": 0.9, "merge_everything": true}),
            json!({"entity_a": 17, "entity_b": B, "reason": "r", "same_entity": true,
                   "confidence": 0.9}),
        ];
        for case in cases {
            let r = parse_verdict(&case.to_string(), A, B);
            assert!(
                matches!(r, Err(ReplyProblem::WrongShape { .. })),
                "{case}: {r:?}"
            );
        }
    }

    #[test]
    fn confidence_must_be_within_0_and_1() {
        for c in [-0.01, 1.01, 97.0, -1e300] {
            assert!(
                matches!(
                    parse_verdict(&answer(true, c), A, B),
                    Err(ReplyProblem::ConfidenceOutOfRange { .. })
                ),
                "{c}"
            );
        }
        assert!(parse_verdict(&answer(true, 0.0), A, B).is_ok());
        assert!(parse_verdict(&answer(true, 1.0), A, B).is_ok());
    }

    #[test]
    fn empty_reason_is_a_problem_and_long_reasons_are_cut() {
        let blank = json!({"entity_a": A, "entity_b": B, "reason": "  ", "same_entity": false,
                           "confidence": 0.9})
        .to_string();
        assert_eq!(parse_verdict(&blank, A, B), Err(ReplyProblem::EmptyReason));
        let long = json!({"entity_a": A, "entity_b": B, "reason": "é".repeat(5000),
                          "same_entity": false, "confidence": 0.9})
        .to_string();
        let v = parse_verdict(&long, A, B).unwrap();
        assert_eq!(v.reason.chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn hostile_replies_never_panic() {
        let huge = "{".repeat(200_000);
        assert!(parse_verdict(&huge, A, B).is_err());
        let nul = "\u{0}\u{feff}{}";
        assert!(parse_verdict(nul, A, B).is_err());
        assert!(parse_verdict("```", A, B).is_err());
        assert!(parse_verdict("```json", A, B).is_err());
        assert!(parse_verdict("</think>", A, B).is_err());
        assert!(parse_verdict("``` json {}\n```", A, B).is_err());
    }

    #[test]
    fn problems_read_well() {
        let p = ReplyProblem::OtherIds {
            expected: [A.to_owned(), B.to_owned()],
            got: ["person:1".to_owned(), "person:2".to_owned()],
        };
        assert_eq!(
            p.to_string(),
            "the reply is about person:1 and person:2, not the candidate's person:17 and person:20931"
        );
    }
}
