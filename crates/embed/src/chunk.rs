//! Splitting a rendered document into chunks that fit the dense model's input window.
//!
//! The rules, in order:
//!
//! - the body is cut into paragraphs at blank lines, paragraphs into sentences (Unicode
//!   UAX #29 sentence boundaries), and a sentence longer than a chunk into word groups
//!   (UAX #29 word boundaries); a single "word" longer than a chunk is cut by characters;
//! - pieces are packed greedily into chunks of at most `max_tokens` tokens, title
//!   included; a paragraph that fits in one chunk is never split across two;
//! - when a chunk ends inside a paragraph, the next one starts with the last whole
//!   sentences of it, up to `overlap_tokens` (no overlap across a paragraph break);
//! - every chunk starts with the document's title line, cut to `max_title_tokens`, as
//!   context (a body that starts with the title does not repeat it);
//! - an empty or whitespace-only document gives no chunk; a document that is only a
//!   title gives one chunk, the title.
//!
//! Tokens are counted with the dense model's tokenizer when it has one
//! ([`TokenCounter::Tokenizer`]), else with [`TokenCounter::Approximate`], which
//! over-counts on purpose. Every step is a single pass over the text, so a 1 MB note costs
//! time proportional to its size; the output depends on nothing but the input and the
//! configuration.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::EmbedError;

/// One piece of a document, ready to embed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position in the document, from 0.
    pub index: u32,
    /// The text to embed: the title line, then the piece of the body.
    pub text: String,
}

/// Chunk sizes, in tokens of the dense model (its special tokens not included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChunkerConfig {
    /// Most tokens in one chunk, title included. all-MiniLM-L6-v2 reads 256 tokens
    /// including its two special tokens.
    pub max_tokens: usize,
    /// Tokens of trailing whole sentences repeated at the start of the next chunk.
    pub overlap_tokens: usize,
    /// Most tokens of the title repeated in each chunk; a longer title is cut.
    pub max_title_tokens: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        Self {
            max_tokens: 250,
            overlap_tokens: 32,
            max_title_tokens: 48,
        }
    }
}

impl ChunkerConfig {
    fn validate(&self) -> Result<(), EmbedError> {
        let bad = |what: String| Err(EmbedError::InvalidConfig { what });
        if self.max_tokens < 16 {
            return bad(format!(
                "chunk max_tokens must be at least 16, got {}",
                self.max_tokens
            ));
        }
        if self.overlap_tokens * 2 > self.max_tokens {
            return bad(format!(
                "chunk overlap_tokens ({}) must be at most half of max_tokens ({})",
                self.overlap_tokens, self.max_tokens
            ));
        }
        if self.max_title_tokens * 2 > self.max_tokens {
            return bad(format!(
                "chunk max_title_tokens ({}) must be at most half of max_tokens ({})",
                self.max_title_tokens, self.max_tokens
            ));
        }
        Ok(())
    }
}

/// How the chunker counts tokens.
#[derive(Clone)]
pub enum TokenCounter {
    /// The dense model's own tokenizer (padding and truncation switched off), named by
    /// the model id for the fingerprint.
    Tokenizer {
        /// The tokenizer.
        tokenizer: Arc<tokenizers::Tokenizer>,
        /// The model it belongs to.
        model_id: String,
    },
    /// No tokenizer (a remote model): each run of ASCII letters and digits counts one
    /// token per started 4 characters, every other non-space character one token. This
    /// over-counts English by about a third, so chunks stay inside the model's window;
    /// the embedder's input-length limit catches what remains.
    Approximate,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TokenCounter {
    /// A counter from a tokenizer, with its padding and truncation turned off.
    pub fn from_tokenizer(tokenizer: &tokenizers::Tokenizer, model_id: impl Into<String>) -> Self {
        let mut tokenizer = tokenizer.clone();
        tokenizer.with_padding(None);
        // Switching truncation off cannot fail; keep the tokenizer as it is if it did.
        let _ = tokenizer.with_truncation(None);
        Self::Tokenizer {
            tokenizer: Arc::new(tokenizer),
            model_id: model_id.into(),
        }
    }

    /// Tokens in `text`, without the model's special tokens.
    pub fn count(&self, text: &str) -> usize {
        match self {
            Self::Tokenizer { tokenizer, .. } => match tokenizer.encode_fast(text, false) {
                Ok(encoding) => encoding.len(),
                Err(err) => {
                    tracing::debug!(error = %err, "tokenizer failed while chunking; approximating");
                    approximate_tokens(text)
                }
            },
            Self::Approximate => approximate_tokens(text),
        }
    }

    /// A stable description for the fingerprint.
    pub fn describe(&self) -> String {
        match self {
            Self::Tokenizer { model_id, .. } => format!("tokenizer:{model_id}"),
            Self::Approximate => "approximate-v1".to_owned(),
        }
    }
}

/// The [`TokenCounter::Approximate`] rule.
pub fn approximate_tokens(text: &str) -> usize {
    let mut tokens = 0;
    let mut ascii_run = 0usize;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            ascii_run += 1;
            continue;
        }
        tokens += ascii_run.div_ceil(4);
        ascii_run = 0;
        if !c.is_whitespace() {
            tokens += 1;
        }
    }
    tokens + ascii_run.div_ceil(4)
}

/// Splits documents into [`Chunk`]s.
#[derive(Clone, Debug)]
pub struct Chunker {
    config: ChunkerConfig,
    counter: TokenCounter,
}

/// A piece of the body: a byte range, its tokens, and whether a paragraph starts with it.
#[derive(Clone, Copy, Debug)]
struct Piece {
    start: usize,
    end: usize,
    tokens: usize,
    paragraph_start: bool,
    /// Only whole sentences are repeated as overlap.
    sentence: bool,
}

impl Chunker {
    /// A chunker with the given sizes and token counter.
    pub fn new(config: ChunkerConfig, counter: TokenCounter) -> Result<Self, EmbedError> {
        config.validate()?;
        Ok(Self { config, counter })
    }

    /// The sizes.
    pub fn config(&self) -> ChunkerConfig {
        self.config
    }

    /// The token counter.
    pub fn counter(&self) -> &TokenCounter {
        &self.counter
    }

    /// Splits a document with a one-line `title` and a `text` (which may start with the
    /// title line, as `crm-store` renders it).
    pub fn chunk(&self, title: &str, text: &str) -> Vec<Chunk> {
        let title = first_line(title.trim());
        let body = strip_title(text, title);
        let title = self.cut_title(title);
        let title_tokens = if title.is_empty() {
            0
        } else {
            self.counter.count(title)
        };
        let budget = self.config.max_tokens.saturating_sub(title_tokens).max(1);
        let pieces = self.pieces(body, budget);
        if pieces.is_empty() {
            return if title.is_empty() {
                Vec::new()
            } else {
                vec![Chunk {
                    index: 0,
                    text: title.to_owned(),
                }]
            };
        }
        let mut chunks = Vec::new();
        for range in pack(&pieces, budget, self.config.overlap_tokens) {
            let (Some(first), Some(last)) = (pieces.get(range.start), pieces.get(range.end - 1))
            else {
                continue;
            };
            let piece_text = body[first.start..last.end].trim();
            let text = if title.is_empty() {
                piece_text.to_owned()
            } else {
                format!("{title}\n{piece_text}")
            };
            chunks.push(Chunk {
                index: u32::try_from(chunks.len()).unwrap_or(u32::MAX),
                text,
            });
        }
        chunks
    }

    /// The title, cut at a word boundary to `max_title_tokens`.
    fn cut_title<'a>(&self, title: &'a str) -> &'a str {
        let limit = self.config.max_title_tokens;
        if title.is_empty()
            || approximate_tokens(title) <= limit && self.counter.count(title) <= limit
        {
            return title;
        }
        let mut end = 0;
        let mut tokens = 0;
        for (i, word) in title.split_word_bound_indices() {
            let t = self.counter.count(word);
            if tokens + t > limit {
                break;
            }
            tokens += t;
            end = i + word.len();
        }
        if end == 0 {
            // One giant word: keep as many characters as tokens allowed.
            end = title
                .char_indices()
                .nth(limit)
                .map_or(title.len(), |(i, _)| i);
        }
        title[..end].trim_end()
    }

    /// Paragraphs → sentences → word groups → character runs, each at most `budget`
    /// tokens, in text order. Whitespace-only pieces are dropped.
    fn pieces(&self, body: &str, budget: usize) -> Vec<Piece> {
        let mut pieces = Vec::new();
        for (p_start, p_end) in paragraphs(body) {
            let paragraph = &body[p_start..p_end];
            let mut first = true;
            for (s_off, sentence) in paragraph.split_sentence_bound_indices() {
                if sentence.trim().is_empty() {
                    continue;
                }
                let start = p_start + s_off;
                let tokens = self.counter.count(sentence);
                if tokens <= budget {
                    pieces.push(Piece {
                        start,
                        end: start + sentence.len(),
                        tokens,
                        paragraph_start: first,
                        sentence: true,
                    });
                } else {
                    self.split_long(
                        body,
                        start,
                        start + sentence.len(),
                        budget,
                        first,
                        &mut pieces,
                    );
                }
                first = false;
            }
        }
        pieces
    }

    /// Cuts a sentence that does not fit into word groups of at most `budget` tokens.
    fn split_long(
        &self,
        body: &str,
        start: usize,
        end: usize,
        budget: usize,
        paragraph_start: bool,
        out: &mut Vec<Piece>,
    ) {
        let sentence = &body[start..end];
        let mut group_start: Option<usize> = None;
        let mut group_end = start;
        let mut group_tokens = 0;
        let mut first = paragraph_start;
        let mut emit = |s: usize, e: usize, tokens: usize, out: &mut Vec<Piece>| {
            out.push(Piece {
                start: s,
                end: e,
                tokens,
                paragraph_start: first,
                sentence: false,
            });
            first = false;
        };
        for (w_off, word) in sentence.split_word_bound_indices() {
            let w_start = start + w_off;
            let w_end = w_start + word.len();
            if word.trim().is_empty() {
                group_end = w_end;
                continue;
            }
            let tokens = self.counter.count(word);
            if tokens > budget {
                if let Some(s) = group_start.take() {
                    emit(s, group_end, group_tokens, out);
                }
                group_tokens = 0;
                for (s, e, t) in self.split_chars(body, w_start, w_end, budget) {
                    emit(s, e, t, out);
                }
                group_end = w_end;
                continue;
            }
            if group_start.is_some() && group_tokens + tokens > budget {
                if let Some(s) = group_start.take() {
                    emit(s, group_end, group_tokens, out);
                }
                group_tokens = 0;
            }
            if group_start.is_none() {
                group_start = Some(w_start);
            }
            group_tokens += tokens;
            group_end = w_end;
        }
        if let Some(s) = group_start {
            emit(s, group_end, group_tokens, out);
        }
    }

    /// Cuts one giant word into character runs of at most `budget` tokens.
    fn split_chars(
        &self,
        body: &str,
        start: usize,
        end: usize,
        budget: usize,
    ) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        let mut s = start;
        while s < end {
            let rest = &body[s..end];
            // A word piece covers at least one character, so `budget` characters are
            // usually at most `budget` tokens; normalisation can expand a character
            // (Hangul decomposes), hence the check and the halving.
            let mut take = budget.max(1);
            loop {
                let e = rest.char_indices().nth(take).map_or(end, |(i, _)| s + i);
                let tokens = self.counter.count(&body[s..e]);
                if tokens <= budget || take == 1 {
                    out.push((s, e, tokens.min(budget)));
                    s = e;
                    break;
                }
                take /= 2;
            }
        }
        out
    }
}

/// The first line of a title (a title is one line; anything after a newline is dropped).
fn first_line(title: &str) -> &str {
    title.lines().next().unwrap_or("").trim()
}

/// The body without a leading copy of the title line.
fn strip_title<'a>(text: &'a str, title: &str) -> &'a str {
    let trimmed = text.trim_start();
    if title.is_empty() {
        return text;
    }
    match trimmed.strip_prefix(title) {
        Some(rest) if rest.is_empty() || rest.starts_with(['\n', '\r']) => rest,
        _ => text,
    }
}

/// Byte ranges of paragraphs: runs of lines separated by blank lines.
fn paragraphs(body: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut end = 0;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        if line.trim().is_empty() {
            if let Some(s) = start.take() {
                out.push((s, end));
            }
        } else {
            if start.is_none() {
                start = Some(line_start);
            }
            end = offset;
        }
    }
    if let Some(s) = start {
        out.push((s, end));
    }
    out
}

/// Greedy packing of pieces into chunks (ranges of piece indices) of at most `budget`
/// tokens; see the module documentation for the rules.
fn pack(pieces: &[Piece], budget: usize, overlap: usize) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    let mut i = 0;
    while i < pieces.len() {
        let piece = pieces[i];
        if i > start {
            let paragraph_tokens = if piece.paragraph_start {
                pieces[i..]
                    .iter()
                    .enumerate()
                    .take_while(|(n, p)| *n == 0 || !p.paragraph_start)
                    .map(|(_, p)| p.tokens)
                    .try_fold(0usize, |acc, t| {
                        let acc = acc + t;
                        (acc <= budget).then_some(acc)
                    })
            } else {
                None
            };
            let break_here = match paragraph_tokens {
                // A paragraph that fits in a chunk of its own is not split.
                Some(pt) => tokens + pt > budget,
                None => tokens + piece.tokens > budget,
            };
            if break_here {
                chunks.push(start..i);
                let (next_start, carried) = if piece.paragraph_start {
                    (i, 0)
                } else {
                    overlap_start(pieces, start, i, overlap, budget - piece.tokens.min(budget))
                };
                start = next_start;
                tokens = carried;
            }
        }
        tokens += piece.tokens;
        i += 1;
    }
    if start < pieces.len() {
        chunks.push(start..pieces.len());
    }
    chunks
}

/// Where the next chunk starts when the current one (`start..end`) is cut inside a
/// paragraph: the last whole sentences worth at most `overlap` tokens (and at most
/// `room`), never the whole chunk, never across a paragraph start.
fn overlap_start(
    pieces: &[Piece],
    start: usize,
    end: usize,
    overlap: usize,
    room: usize,
) -> (usize, usize) {
    let limit = overlap.min(room);
    let mut first = end;
    let mut tokens = 0;
    while first > start + 1 {
        let p = pieces[first - 1];
        if !p.sentence || tokens + p.tokens > limit {
            break;
        }
        tokens += p.tokens;
        first -= 1;
        if p.paragraph_start {
            break;
        }
    }
    (first, tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunker(max: usize, overlap: usize) -> Chunker {
        Chunker::new(
            ChunkerConfig {
                max_tokens: max,
                overlap_tokens: overlap,
                max_title_tokens: max / 4,
            },
            TokenCounter::Approximate,
        )
        .unwrap()
    }

    #[test]
    fn approximate_counts() {
        assert_eq!(approximate_tokens(""), 0);
        assert_eq!(approximate_tokens("the quick fox"), 4);
        assert_eq!(approximate_tokens("a.b"), 3);
        assert_eq!(approximate_tokens("北京"), 2);
        assert_eq!(approximate_tokens("   \n\t"), 0);
    }

    #[test]
    fn empty_and_whitespace_documents_give_no_chunk() {
        let c = chunker(64, 8);
        assert!(c.chunk("", "").is_empty());
        assert!(c.chunk("  ", " \n\t \n ").is_empty());
    }

    #[test]
    fn a_title_only_document_gives_the_title() {
        let c = chunker(64, 8);
        let chunks = c.chunk("Ada Lovelace", "Ada Lovelace\n");
        assert_eq!(
            chunks,
            [Chunk {
                index: 0,
                text: "Ada Lovelace".into()
            }]
        );
    }

    #[test]
    fn short_document_is_one_chunk_with_the_title_once() {
        let c = chunker(64, 8);
        let chunks = c.chunk("Acme", "Acme\nMet the founders. They build custody.");
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].text,
            "Acme\nMet the founders. They build custody."
        );
    }

    #[test]
    fn long_document_repeats_title_and_overlaps_sentences() {
        let c = chunker(32, 8);
        let sentences: Vec<String> = (0..20)
            .map(|i| format!("Sentence number {i} is here."))
            .collect();
        let text = format!("Title\n{}", sentences.join(" "));
        let chunks = c.chunk("Title", &text);
        assert!(chunks.len() > 2);
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk.index as usize, i);
            assert!(chunk.text.starts_with("Title\n"), "{:?}", chunk.text);
            assert!(approximate_tokens(&chunk.text) <= 32, "{:?}", chunk.text);
        }
        // Consecutive chunks share their boundary sentence.
        let last_of_first = chunks[0]
            .text
            .rsplit(". ")
            .next()
            .unwrap()
            .trim_end_matches('.');
        assert!(chunks[1].text.contains(last_of_first), "{chunks:?}");
        // Every sentence appears somewhere.
        for s in &sentences {
            assert!(chunks.iter().any(|c| c.text.contains(s.as_str())), "{s}");
        }
    }

    #[test]
    fn paragraphs_that_fit_are_not_split() {
        let c = chunker(40, 8);
        let p1 = "First para one. First para two.";
        let p2 = "Second paragraph sentence. ".repeat(4);
        let p2 = p2.trim();
        assert!(approximate_tokens(p2) <= 40);
        assert!(approximate_tokens(p1) + approximate_tokens(p2) > 40);
        let text = format!("{p1}\n\n{p2}");
        let chunks = c.chunk("", &text);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert_eq!(chunks[0].text, p1);
        assert_eq!(chunks[1].text, p2);
    }

    #[test]
    fn giant_words_and_sentences_are_hard_split() {
        let c = chunker(32, 8);
        let giant = "x".repeat(10_000);
        let chunks = c.chunk("T", &giant);
        assert!(chunks.len() > 10);
        for chunk in &chunks {
            assert!(
                approximate_tokens(&chunk.text) <= 32,
                "{}",
                chunk.text.len()
            );
        }
        let joined: String = chunks
            .iter()
            .map(|c| c.text.trim_start_matches("T\n"))
            .collect();
        assert_eq!(joined, giant);
        let run_on = "word ".repeat(5_000);
        for chunk in c.chunk("", &run_on) {
            assert!(approximate_tokens(&chunk.text) <= 32);
        }
    }

    #[test]
    fn a_huge_title_is_cut() {
        let c = chunker(64, 8);
        let title = "Title ".repeat(1000);
        let chunks = c.chunk(&title, "Body text.");
        assert_eq!(chunks.len(), 1);
        assert!(approximate_tokens(&chunks[0].text) <= 64);
        assert!(chunks[0].text.ends_with("Body text."));
    }

    #[test]
    fn invalid_configs_are_rejected() {
        for (max, overlap, title) in [(8, 0, 0), (64, 40, 8), (64, 8, 40)] {
            let config = ChunkerConfig {
                max_tokens: max,
                overlap_tokens: overlap,
                max_title_tokens: title,
            };
            assert!(Chunker::new(config, TokenCounter::Approximate).is_err());
        }
    }
}
