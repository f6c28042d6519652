//! Chunker properties on arbitrary and hostile documents.

use embed::chunk::approximate_tokens;
use embed::{Chunker, ChunkerConfig, TokenCounter};
use proptest::prelude::*;

fn chunker(max_tokens: usize, overlap_tokens: usize) -> Chunker {
    Chunker::new(
        ChunkerConfig {
            max_tokens,
            overlap_tokens,
            max_title_tokens: max_tokens / 4,
        },
        TokenCounter::Approximate,
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chunks_fit_cover_the_text_and_are_deterministic(
        title in "[A-Za-z ]{0,30}",
        body in "([A-Za-zé北 ]{1,40}[.!?]? ?(\n\n)?){0,60}",
        max in 24usize..120,
    ) {
        let c = chunker(max, max / 4);
        let chunks = c.chunk(&title, &body);
        prop_assert_eq!(&chunks, &c.chunk(&title, &body), "deterministic");
        let title_line = title.trim();
        if body.trim().is_empty() && title_line.is_empty() {
            prop_assert!(chunks.is_empty());
        }
        for (i, chunk) in chunks.iter().enumerate() {
            prop_assert_eq!(chunk.index as usize, i);
            prop_assert!(!chunk.text.trim().is_empty());
            prop_assert!(approximate_tokens(&chunk.text) <= max, "{} > {}", approximate_tokens(&chunk.text), max);
            if !title_line.is_empty() {
                // The title, or its start when it is longer than max_title_tokens.
                let first_line = chunk.text.lines().next().unwrap_or_default();
                prop_assert!(!first_line.is_empty() && title_line.starts_with(first_line));
                if approximate_tokens(title_line) <= max / 4 {
                    prop_assert_eq!(first_line, title_line);
                }
            }
        }
        // Nothing of the body is lost: its non-space characters are, in order, a
        // subsequence of the chunks' bodies (overlaps only add repeats).
        let bodies: String = chunks
            .iter()
            .map(|c| if title_line.is_empty() { c.text.as_str() } else { c.text.split_once('\n').map_or("", |(_, b)| b) })
            .collect();
        let mut available = bodies.chars().filter(|c| !c.is_whitespace());
        let expected = body.trim_start().strip_prefix(title_line).filter(|_| !title_line.is_empty()).filter(|rest| rest.is_empty() || rest.starts_with('\n')).unwrap_or(&body);
        for wanted in expected.chars().filter(|c| !c.is_whitespace()) {
            prop_assert!(available.any(|c| c == wanted), "{:?} lost from {:?}", wanted, body);
        }
    }

    #[test]
    fn any_unicode_never_panics_and_fits(title in any::<String>(), body in any::<String>()) {
        let c = chunker(32, 8);
        for chunk in c.chunk(&title, &body) {
            prop_assert!(approximate_tokens(&chunk.text) <= 32);
        }
    }
}

#[test]
fn a_one_megabyte_note_is_chunked_completely() {
    let c = chunker(250, 32);
    let sentence =
        "Discussed the custody roadmap, hardware wallets and multisig policies with the founders. ";
    let mut body = String::new();
    let mut i = 0;
    while body.len() < 1_000_000 {
        body.push_str(sentence);
        i += 1;
        if i % 12 == 0 {
            body.push_str("\n\n");
        }
    }
    let chunks = c.chunk("Board meeting", &body);
    assert!(chunks.len() > 1000, "{} chunks", chunks.len());
    let total: usize = chunks.iter().map(|c| c.text.len()).sum();
    assert!(total >= body.len(), "every byte is in some chunk");
    assert!(chunks.iter().all(|c| approximate_tokens(&c.text) <= 250));
}

#[test]
fn hostile_texts_are_chunked() {
    let c = chunker(64, 16);
    let cases = [
        "\u{0}\u{1}\u{2}".repeat(1000),
        "🚀".repeat(5000),
        "a\u{301}".repeat(3000),
        "<script>alert(1)</script>".repeat(200),
        "\r\n\r\n\r\n".repeat(500) + "finally text",
        "x".repeat(100_000),
    ];
    for body in &cases {
        let chunks = c.chunk("Title", body);
        assert!(!chunks.is_empty());
        assert!(chunks.iter().all(|c| approximate_tokens(&c.text) <= 64));
    }
}
