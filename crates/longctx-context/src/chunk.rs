//! Splitting a context into retrieval chunks.
//!
//! The default is the study's: consecutive, non-overlapping windows of exactly 200 Unicode
//! characters (code points, as Python's `str` slicing counts them), the last one shorter, ids
//! from 0. Every chunk keeps its byte span in the context, so kept chunks can be put back in
//! document order with the original text between adjacent ones.

use longctx_core::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The unit a chunk's size is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Unicode code points.
    Chars,
    /// Tokens of a tokenizer (which must report offsets).
    Tokens,
    /// Whitespace-separated words.
    Words,
}

/// How to chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkConfig {
    /// Unit of `size` and `overlap`.
    pub unit: Unit,
    /// Units per chunk.
    pub size: usize,
    /// Units shared by consecutive chunks (less than `size`).
    pub overlap: usize,
    /// For character chunks: end a chunk after the last whitespace inside its window (when
    /// there is one), so that no word is split.
    pub respect_words: bool,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self { unit: Unit::Chars, size: 200, overlap: 0, respect_words: false }
    }
}

/// One chunk of a context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position in the document, from 0.
    pub id: usize,
    /// Byte range in the context.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

impl Chunk {
    /// The chunk's text.
    pub fn text<'a>(&self, context: &'a str) -> &'a str {
        &context[self.start..self.end]
    }
}

impl ChunkConfig {
    fn validate(&self) -> Result<(), Error> {
        if self.size == 0 {
            return Err(Error::Config("chunk size must be at least 1".into()));
        }
        if self.overlap >= self.size {
            return Err(Error::Config(format!(
                "chunk overlap ({}) must be smaller than the chunk size ({})",
                self.overlap, self.size
            )));
        }
        Ok(())
    }

    /// Splits `context`. Token chunks need `tokenizer`; the other units ignore it.
    pub fn chunk(&self, context: &str, tokenizer: Option<&dyn Tokenizer>) -> Result<Vec<Chunk>, Error> {
        self.validate()?;
        let bounds: Vec<(usize, usize)> = match self.unit {
            Unit::Chars => {
                let starts: Vec<usize> =
                    context.char_indices().map(|(i, _)| i).chain(std::iter::once(context.len())).collect();
                self.char_windows(&starts, context)
            }
            Unit::Words => {
                let words = word_spans(context);
                let starts: Vec<usize> = words.iter().map(|w| w.0).collect();
                let ends: Vec<usize> = words.iter().map(|w| w.1).collect();
                self.spans(starts.len(), |i| starts[i], |i| ends[i])
            }
            Unit::Tokens => {
                let tok = tokenizer.ok_or_else(|| Error::Config("chunking by tokens needs a tokenizer".into()))?;
                let offsets = tok.offsets(context)?;
                let floor = |mut i: usize| {
                    i = i.min(context.len());
                    while !context.is_char_boundary(i) {
                        i -= 1;
                    }
                    i
                };
                let starts: Vec<usize> = offsets.iter().map(|o| floor(o.0)).collect();
                let ends: Vec<usize> = offsets.iter().map(|o| floor(o.1)).collect();
                self.spans(starts.len(), |i| starts[i], |i| ends[i])
            }
        };
        Ok(bounds.into_iter().enumerate().map(|(id, (start, end))| Chunk { id, start, end }).collect())
    }

    /// Windows over units `0..n`: unit `i` starts at byte `start(i)` and ends at `end(i)`.
    /// Without overlap, a chunk runs to the next chunk's start (nothing of the text is lost
    /// between chunks; the first starts at 0 when `n > 0`).
    fn spans(&self, n: usize, start: impl Fn(usize) -> usize, end: impl Fn(usize) -> usize) -> Vec<(usize, usize)> {
        let step = self.size - self.overlap;
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let j = (i + self.size).min(n);
            let s = if i == 0 { 0 } else { start(i) };
            let e = if self.overlap == 0 && j < n { start(j) } else { end(j - 1) };
            out.push((s, e));
            if j == n {
                break;
            }
            i += step;
        }
        out
    }

    /// Character windows; `starts` holds the byte offset of every character plus the length.
    fn char_windows(&self, starts: &[usize], context: &str) -> Vec<(usize, usize)> {
        let n = starts.len() - 1;
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let mut j = (i + self.size).min(n);
            if self.respect_words && j < n {
                // The last whitespace inside the window ends the chunk (it stays in the chunk).
                if let Some(k) = (i + 1..j).rev().find(|&k| context[starts[k - 1]..starts[k]].trim().is_empty()) {
                    j = k;
                }
            }
            out.push((starts[i], starts[j]));
            if j == n {
                break;
            }
            let step = (j - i).saturating_sub(self.overlap).max(1);
            i += step;
        }
        out
    }
}

/// Byte spans of the whitespace-separated words of `text`.
fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// Joins the chunks with the given ids in document order: overlapping or touching chunks, and
/// chunks separated only by whitespace, are merged with the original text between them;
/// other gaps get `separator`.
pub fn join_in_order(context: &str, chunks: &[Chunk], ids: &[usize], separator: &str) -> String {
    let mut spans: Vec<(usize, usize)> = ids.iter().map(|&i| (chunks[i].start, chunks[i].end)).collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 || context[last.1..s].trim().is_empty() => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged.iter().map(|&(s, e)| &context[s..e]).collect::<Vec<_>>().join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(context: &str, chunks: &[Chunk]) -> Vec<String> {
        chunks.iter().map(|c| c.text(context).to_string()).collect()
    }

    #[test]
    fn default_is_200_characters_without_overlap() {
        let context: String = "日本語 and ascii é ".repeat(40);
        let chunks = ChunkConfig::default().chunk(&context, None).unwrap();
        let n = context.chars().count();
        assert_eq!(chunks.len(), n.div_ceil(200));
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c.id, i);
            let expect: String = context.chars().skip(200 * i).take(200).collect();
            assert_eq!(c.text(&context), expect);
        }
        assert_eq!(texts(&context, &chunks).concat(), context);
        assert!(ChunkConfig::default().chunk("", None).unwrap().is_empty());
    }

    #[test]
    fn overlap_and_word_boundaries() {
        let cfg = ChunkConfig { size: 10, overlap: 4, ..Default::default() };
        let chunks = cfg.chunk("abcdefghijklmnopqrstu", None).unwrap();
        assert_eq!(texts("abcdefghijklmnopqrstu", &chunks), ["abcdefghij", "ghijklmnop", "mnopqrstu"]);
        let cfg = ChunkConfig { size: 10, respect_words: true, ..Default::default() };
        let text = "one two three fourteen x";
        let chunks = cfg.chunk(text, None).unwrap();
        assert_eq!(texts(text, &chunks), ["one two ", "three ", "fourteen x"]);
        assert!(ChunkConfig { size: 4, overlap: 4, ..Default::default() }.chunk("x", None).is_err());
    }

    #[test]
    fn words_and_joining() {
        let text = "  a b  c d e\nf g ";
        let cfg = ChunkConfig { unit: Unit::Words, size: 2, ..Default::default() };
        let chunks = cfg.chunk(text, None).unwrap();
        assert_eq!(texts(text, &chunks), ["  a b  ", "c d ", "e\nf ", "g"]);
        assert_eq!(join_in_order(text, &chunks, &[3, 0], " … "), "  a b   … g");
        assert_eq!(join_in_order(text, &chunks, &[2, 1], " … "), "c d e\nf ");
        let cfg = ChunkConfig { unit: Unit::Words, size: 3, overlap: 1, ..Default::default() };
        let chunks = cfg.chunk(text, None).unwrap();
        assert_eq!(texts(text, &chunks), ["  a b  c", "c d e", "e\nf g"]);
        assert_eq!(join_in_order(text, &chunks, &[0, 1, 2], "|"), "  a b  c d e\nf g");
    }
}
