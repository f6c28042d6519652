//! HTML to plain text, and whitespace normalisation, for rendering CRM bodies.
//!
//! CRM bodies are pasted emails and rich-text notes: mostly text, sometimes HTML, often
//! malformed. This is not an HTML parser; it is a single forward pass that is linear in
//! the input, never panics, and is deterministic:
//! - a `<` starts a tag only when followed by a letter, `/`, `!` or `?`; otherwise it is
//!   text (`a < b` survives);
//! - a tag runs to the next `>`; when there is none, the `<` is text;
//! - `<script>`/`<style>` content is dropped; comments are dropped;
//! - block-level tags (`p`, `div`, `br`, `li`, `tr`, headings, ...) become line breaks;
//! - entities are decoded: the common named ones and numeric `&#NN;`/`&#xHH;` (invalid
//!   code points become U+FFFD); unknown entities stay as written.

/// Converts HTML (or plain text) to normalised plain text.
pub fn html_to_text(input: &str) -> String {
    normalize_whitespace(&strip_tags(input))
}

/// Whether `text` looks like it contains HTML markup or entities worth stripping.
pub fn looks_like_html(text: &str) -> bool {
    let b = text.as_bytes();
    b.iter().enumerate().any(|(i, &c)| match c {
        b'<' => b
            .get(i + 1)
            .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, b'/' | b'!')),
        b'&' => b
            .get(i + 1)
            .is_some_and(|n| n.is_ascii_alphabetic() || *n == b'#'),
        _ => false,
    })
}

const BLOCK_TAGS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "pre",
    "hr",
    "section",
    "article",
    "header",
    "footer",
    "dd",
    "dt",
];

/// Removes tags and decodes entities, keeping line structure.
fn strip_tags(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    // Position from which we know there is no '>' left: avoids rescanning the tail for
    // every stray '<' (which would be quadratic).
    let mut no_gt_from = usize::MAX;
    while i < bytes.len() {
        match bytes[i] {
            b'<' if starts_tag(bytes, i) => {
                if i >= no_gt_from {
                    out.push('<');
                    i += 1;
                    continue;
                }
                if input[i..].starts_with("<!--") {
                    match input[i + 4..].find("-->") {
                        Some(end) => i = i + 4 + end + 3,
                        None => i = bytes.len(),
                    }
                    continue;
                }
                let Some(rel) = memchr(b'>', &bytes[i + 1..]) else {
                    no_gt_from = i;
                    out.push('<');
                    i += 1;
                    continue;
                };
                let end = i + 1 + rel;
                let name = tag_name(&input[i + 1..end]);
                i = end + 1;
                if name == "script" || name == "style" {
                    i = skip_raw_text(input, i, &name);
                    continue;
                }
                let plain = name.trim_start_matches('/');
                if BLOCK_TAGS.contains(&plain) {
                    out.push('\n');
                } else if plain == "td" || plain == "th" {
                    out.push(' ');
                }
            }
            b'&' => {
                let (decoded, used) = decode_entity(&input[i..]);
                match decoded {
                    Some(c) => {
                        out.push(c);
                        i += used;
                    }
                    None => {
                        out.push('&');
                        i += 1;
                    }
                }
            }
            _ => {
                // Copy the run of ordinary text up to the next '<' or '&' in one go.
                let run_end = bytes[i..]
                    .iter()
                    .position(|&c| c == b'<' || c == b'&')
                    .map_or(bytes.len(), |p| i + p);
                let run_end = if run_end == i { i + 1 } else { run_end };
                // '<' and '&' are ASCII, so run_end is always a char boundary.
                out.push_str(&input[i..run_end]);
                i = run_end;
            }
        }
    }
    out
}

fn starts_tag(bytes: &[u8], i: usize) -> bool {
    bytes
        .get(i + 1)
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'/' | b'!' | b'?'))
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == needle)
}

/// The lowercase tag name (with a leading `/` for closing tags).
fn tag_name(inside: &str) -> String {
    let mut name = String::new();
    for (k, c) in inside.chars().enumerate() {
        if c.is_ascii_alphanumeric() || (k == 0 && c == '/') {
            name.push(c.to_ascii_lowercase());
        } else {
            break;
        }
    }
    name
}

/// Skips the content of a raw-text element up to and including its closing tag;
/// everything to the end when it is never closed.
fn skip_raw_text(input: &str, from: usize, name: &str) -> usize {
    let closing = format!("</{name}");
    let hay = &input.as_bytes()[from..];
    let needle = closing.as_bytes();
    let found = hay
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle));
    match found {
        Some(p) => {
            let after = from + p + needle.len();
            match memchr(b'>', &input.as_bytes()[after..]) {
                Some(q) => after + q + 1,
                None => input.len(),
            }
        }
        None => input.len(),
    }
}

/// Decodes the entity at the start of `s` (which starts with `&`): the character and the
/// number of bytes consumed, or `None` when it is not a known entity.
fn decode_entity(s: &str) -> (Option<char>, usize) {
    // Entities are short; never look further than this (keeps the pass linear).
    const MAX_LEN: usize = 12;
    let limit = s.len().min(MAX_LEN);
    let Some(semi) = s.as_bytes()[..limit].iter().position(|&c| c == b';') else {
        return (None, 0);
    };
    let body = &s[1..semi];
    let used = semi + 1;
    if let Some(num) = body.strip_prefix('#') {
        let code = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()
        } else {
            num.parse::<u32>().ok()
        };
        return match code {
            Some(c) => (Some(char::from_u32(c).unwrap_or('\u{FFFD}')), used),
            None => (None, 0),
        };
    }
    let c = match body {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" | "#39" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "rsquo" => '’',
        "lsquo" => '‘',
        "rdquo" => '”',
        "ldquo" => '“',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "deg" => '°',
        "times" => '×',
        "eacute" => 'é',
        "egrave" => 'è',
        "aacute" => 'á',
        "oacute" => 'ó',
        "uuml" => 'ü',
        "ouml" => 'ö',
        "auml" => 'ä',
        "ntilde" => 'ñ',
        "ccedil" => 'ç',
        "szlig" => 'ß',
        _ => return (None, 0),
    };
    (Some(c), used)
}

/// Normalises whitespace deterministically: control and zero-width characters removed
/// (except newlines and tabs), runs of blanks within a line collapsed to one space, lines
/// trimmed, at most one empty line between paragraphs, no leading or trailing blank lines.
pub fn normalize_whitespace(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut pending_newlines = 0usize;
    let mut pending_space = false;
    let mut line_has_text = false;
    for c in input.chars() {
        match c {
            '\n' | '\u{2028}' | '\u{2029}' | '\u{85}' => {
                if line_has_text || pending_newlines > 0 {
                    pending_newlines += 1;
                }
                pending_space = false;
                line_has_text = false;
            }
            '\r' => {}
            c if c.is_whitespace() => {
                if line_has_text {
                    pending_space = true;
                }
            }
            // Zero-width space, word joiner, BOM, soft hyphen: invisible, and they split
            // words for the tokenizer. ZWJ/ZWNJ stay: they shape emoji and scripts.
            '\u{200B}' | '\u{2060}' | '\u{FEFF}' | '\u{AD}' => {}
            c if c.is_control() => {}
            c => {
                if pending_newlines > 0 {
                    if !out.is_empty() {
                        out.push_str(if pending_newlines > 1 { "\n\n" } else { "\n" });
                    }
                    pending_newlines = 0;
                } else if pending_space {
                    out.push(' ');
                }
                pending_space = false;
                line_has_text = true;
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_and_decodes_entities() {
        let html = "<html><head><style>p{color:red}</style><script>alert('x<y')</script></head>\
                    <body><p>Hello&nbsp;<b>Jos&eacute;</b> &amp; team,</p><p>Series&nbsp;A &#8211; \
                    &#x1F680; done<br/>next</p><!-- hidden --></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello José & team,\n\nSeries A – 🚀 done\nnext"
        );
    }

    #[test]
    fn keeps_text_that_only_looks_like_markup() {
        assert_eq!(html_to_text("a < b and c > d"), "a < b and c > d");
        assert_eq!(
            html_to_text("AT&T & co &unknown; &#xZZ;"),
            "AT&T & co &unknown; &#xZZ;"
        );
        assert_eq!(html_to_text("1<2"), "1<2");
    }

    #[test]
    fn malformed_markup_does_not_panic_or_lose_text() {
        assert_eq!(html_to_text("<b>bold"), "bold");
        assert_eq!(html_to_text("text <unclosed"), "text <unclosed");
        assert_eq!(html_to_text("<script>never closed"), "");
        assert_eq!(html_to_text("<!-- never closed"), "");
        assert_eq!(html_to_text("&#99999999999;x"), "&#99999999999;x");
        assert_eq!(html_to_text("&#xD800;"), "\u{FFFD}");
        assert_eq!(html_to_text("<"), "<");
        assert_eq!(html_to_text("&"), "&");
        assert_eq!(html_to_text("é<p>ü"), "é\nü");
    }

    #[test]
    fn many_stray_brackets_stay_linear() {
        let input = "<a".repeat(200_000);
        let out = html_to_text(&input);
        assert_eq!(out.len(), input.len());
    }

    #[test]
    fn whitespace_is_normalised() {
        assert_eq!(
            normalize_whitespace("  a \t b  \r\n\n\n\n c\u{200B}d \u{0}\n"),
            "a b\n\ncd"
        );
        assert_eq!(normalize_whitespace("\n\n  \n"), "");
        assert_eq!(normalize_whitespace("x\ny"), "x\ny");
    }

    #[test]
    fn detects_html() {
        assert!(looks_like_html("<p>x</p>"));
        assert!(looks_like_html("a &amp; b"));
        assert!(!looks_like_html("a < b & c"));
    }
}
