//! Chinese word segmentation exactly as `jieba.cut(text, cut_all=False)` of jieba 0.42.1
//! (HMM on, default dictionary) does it — a port of `jieba/__init__.py` (`cut`, `get_DAG`,
//! `calc`, `__cut_DAG`) and `jieba/finalseg/__init__.py` (`cut`, `viterbi`).
//!
//! Why not jieba-rs: the crate does not reproduce jieba 0.42.1 on LongBench's own records
//! (on the 1,200 inputs, contexts and answers of multifieldqa_zh and passage_retrieval_zh,
//! jieba-rs 0.7.4 segments 273 differently and 0.11.0 300): its HMM fallback uses
//! `(?:.\d+)` where jieba has `(?:\.\d+)` (so `2018-09` stays one word), and it widens the
//! CJK ranges. LongBench's zh scores depend on every token, so this module follows the Python
//! code line by line instead. The dictionary and HMM tables are jieba's own, exported by
//! `tools/oracles/export_jieba_data.py` into `data/jieba/` (gzip, 2 MB) and embedded.
//! Parity is checked on every Chinese record in `tests/jieba_parity.rs`.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::pytext;

/// The dictionary's distinct words, concatenated in byte order (from `data/jieba/dict.txt.gz`
/// by `build.rs`).
const WORDS: &str = include_str!(concat!(env!("OUT_DIR"), "/jieba_words.txt"));
/// Per word: its start in [`WORDS`] and its frequency, as little-endian `u32` pairs.
const INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/jieba_index.bin"));
/// The sum of all frequencies of jieba's `dict.txt` (duplicated words included).
const TOTAL: &str = include_str!(concat!(env!("OUT_DIR"), "/jieba_total.txt"));
/// `data/jieba/hmm.tsv.gz`, unpacked by `build.rs`.
const HMM: &str = include_str!(concat!(env!("OUT_DIR"), "/jieba_hmm.tsv"));

/// `finalseg.MIN_FLOAT`.
const MIN_FLOAT: f64 = -3.14e100;

/// HMM states in the order `viterbi` visits them (`'BMES'`).
const STATES: [u8; 4] = [b'B', b'M', b'E', b'S'];
const B: usize = 0;
const M: usize = 1;
const E: usize = 2;
const S: usize = 3;
/// `PrevStatus`: the states that may precede each state.
const PREV: [[usize; 2]; 4] = [[E, S], [M, B], [B, M], [S, E]];

struct Model {
    /// The range of words starting with each character (the first narrowing step).
    first: HashMap<char, PrefixRange>,
    /// `log(total)`.
    log_total: f64,
    start: [f64; 4],
    trans: [[f64; 4]; 4],
    emit: HashMap<char, [f64; 4]>,
}

fn state_index(s: &str) -> usize {
    STATES.iter().position(|b| s.as_bytes() == [*b]).expect("HMM state is one of B, M, E, S")
}

/// Number of dictionary words.
fn n_words() -> usize {
    INDEX.len() / 8
}

fn index_u32(at: usize) -> usize {
    u32::from_le_bytes(INDEX[at..at + 4].try_into().expect("four bytes")) as usize
}

/// The `i`-th word of the dictionary in byte order.
fn word(i: usize) -> &'static str {
    let start = index_u32(8 * i);
    let end = if i + 1 < n_words() { index_u32(8 * (i + 1)) } else { WORDS.len() };
    &WORDS[start..end]
}

fn word_freq(i: usize) -> u64 {
    index_u32(8 * i + 4) as u64
}

/// The first index in `lo..hi` where `pred` turns false (`pred` is true, then false).
fn partition_point(mut lo: usize, mut hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The words that start with some prefix `p`: a range of the sorted dictionary.
#[derive(Debug, Clone, Copy)]
struct PrefixRange {
    lo: usize,
    hi: usize,
}

impl PrefixRange {
    /// Narrows the range of words starting with `p` to those starting with `q`, where `q`
    /// extends `p`. Empty when no word starts with `q`.
    fn narrow(self, q: &str) -> Self {
        let q = q.as_bytes();
        let lo = partition_point(self.lo, self.hi, |i| word(i).as_bytes() < q);
        let hi = partition_point(lo, self.hi, |i| word(i).as_bytes().starts_with(q));
        PrefixRange { lo, hi }
    }

    /// jieba's `FREQ.get(q)` for the `q` this range was narrowed to: the frequency of a word,
    /// `Some(0)` for a prefix of words that is not a word itself, `None` if no word starts
    /// with `q`.
    fn freq(self, q: &str) -> Option<u64> {
        if self.lo == self.hi {
            None
        } else if word(self.lo) == q {
            Some(word_freq(self.lo))
        } else {
            Some(0)
        }
    }
}

impl Model {
    fn load() -> Self {
        let total: u64 = TOTAL.trim().parse().expect("total frequency is an integer");
        let mut start = [MIN_FLOAT; 4];
        let mut trans = [[MIN_FLOAT; 4]; 4];
        let mut emit: HashMap<char, [f64; 4]> = HashMap::with_capacity(20_000);
        for line in HMM.lines() {
            let mut f = line.split('\t');
            let (Some(kind), Some(from), Some(to), Some(p)) = (f.next(), f.next(), f.next(), f.next()) else {
                panic!("HMM line has four fields: {line:?}");
            };
            let p: f64 = p.parse().expect("HMM probability is a float");
            let from = state_index(from);
            match kind {
                "start" => start[from] = p,
                "trans" => trans[from][state_index(to)] = p,
                "emit" => {
                    let c = to.chars().next().expect("emission key is one character");
                    emit.entry(c).or_insert([MIN_FLOAT; 4])[from] = p;
                }
                other => panic!("unknown HMM line kind {other:?}"),
            }
        }
        let mut first: HashMap<char, PrefixRange> = HashMap::with_capacity(8_000);
        for i in 0..n_words() {
            let c = word(i).chars().next().expect("dictionary words are not empty");
            first.entry(c).or_insert(PrefixRange { lo: i, hi: i }).hi = i + 1;
        }
        Model { first, log_total: (total as f64).ln(), start, trans, emit }
    }

    /// The range of words starting with `frag` (which is not empty).
    fn range(&self, frag: &str) -> PrefixRange {
        let c = frag.chars().next().expect("fragment is not empty");
        let Some(&start) = self.first.get(&c) else {
            return PrefixRange { lo: 0, hi: 0 };
        };
        if frag.len() == c.len_utf8() {
            start
        } else {
            start.narrow(frag)
        }
    }

    /// `FREQ.get(frag)` (see [`PrefixRange::freq`]).
    fn freq(&self, frag: &str) -> Option<u64> {
        self.range(frag).freq(frag)
    }
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(Model::load)
}

/// `re_han_default`'s class: `[\u4E00-\u9FD5a-zA-Z0-9+#&\._%\-]`.
fn is_han_default(c: char) -> bool {
    ('\u{4E00}'..='\u{9FD5}').contains(&c) || c.is_ascii_alphanumeric() || "+#&._%-".contains(c)
}

/// finalseg's `re_han`: `[\u4E00-\u9FD5]`.
fn is_han(c: char) -> bool {
    ('\u{4E00}'..='\u{9FD5}').contains(&c)
}

/// Splits `text` into maximal runs of characters that do / do not satisfy `class`.
fn runs(text: &str, class: fn(char) -> bool) -> impl Iterator<Item = (&str, bool)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let inside = class(first);
        let end = rest.find(|c: char| class(c) != inside).unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some((run, inside))
    })
}

/// Segments `text` into words, in order; concatenating them gives back `text`.
pub fn cut(text: &str) -> Vec<&str> {
    let m = model();
    let mut out = Vec::new();
    for (block, han) in runs(text, is_han_default) {
        if han {
            cut_dag(m, block, &mut out);
        } else {
            // `re_skip_default.split`: "\r\n" and each whitespace character are kept as
            // tokens, every other character becomes a token of its own.
            let mut chars = block.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                    chars.next();
                    out.push(&block[i..i + 2]);
                } else {
                    out.push(&block[i..i + c.len_utf8()]);
                }
            }
        }
    }
    out
}

/// `__cut_DAG`: dictionary segmentation by maximum route probability, with unknown runs of
/// single characters handed to the HMM.
fn cut_dag<'a>(m: &Model, block: &'a str, out: &mut Vec<&'a str>) {
    // Byte offset of every character, plus the end.
    let offs: Vec<usize> = block.char_indices().map(|(i, _)| i).chain(std::iter::once(block.len())).collect();
    let n = offs.len() - 1;
    let slice = |a: usize, b: usize| &block[offs[a]..offs[b]];
    // get_DAG, keeping each candidate word's frequency for `calc`.
    let dag: Vec<Vec<(usize, u64)>> = (0..n)
        .map(|k| {
            let mut ends = Vec::new();
            let mut range = m.range(slice(k, k + 1));
            let mut i = k;
            while i < n {
                let frag = slice(k, i + 1);
                if i > k {
                    range = range.narrow(frag);
                }
                match range.freq(frag) {
                    Some(f) => {
                        if f > 0 {
                            ends.push((i, f));
                        }
                    }
                    None => break,
                }
                i += 1;
            }
            if ends.is_empty() {
                // A lone character outside the dictionary: `FREQ.get(...) or 1`.
                ends.push((k, 1));
            }
            ends
        })
        .collect();
    // calc: route[idx] = max((log(FREQ.get(word) or 1) - logtotal + route[x+1][0], x)).
    let mut route = vec![(0.0f64, 0usize); n + 1];
    for idx in (0..n).rev() {
        let mut best: Option<(f64, usize)> = None;
        for &(x, f) in &dag[idx] {
            let v = (f as f64).ln() - m.log_total + route[x + 1].0;
            if best.is_none_or(|(bv, bx)| v > bv || (v == bv && x > bx)) {
                best = Some((v, x));
            }
        }
        route[idx] = best.expect("every DAG entry has an end");
    }
    let flush = |start: usize, end: usize, out: &mut Vec<&'a str>| {
        if start == end {
            return;
        }
        let buf = slice(start, end);
        if end - start == 1 {
            out.push(buf);
        } else if m.freq(buf).unwrap_or(0) == 0 {
            finalseg_cut(m, buf, out);
        } else {
            out.extend((start..end).map(|i| slice(i, i + 1)));
        }
    };
    let mut x = 0;
    let mut buf_start = 0;
    while x < n {
        let y = route[x].1 + 1;
        if y - x == 1 {
            // A single character joins the pending buffer.
        } else {
            flush(buf_start, x, out);
            out.push(slice(x, y));
            buf_start = y;
        }
        x = y;
    }
    flush(buf_start, n, out);
}

/// `finalseg.cut`: HMM segmentation of runs of Han characters; other text is split into
/// `[a-zA-Z0-9]+(?:\.\d+)?%?` tokens and the pieces between them.
fn finalseg_cut<'a>(m: &Model, text: &'a str, out: &mut Vec<&'a str>) {
    for (block, han) in runs(text, is_han) {
        if han {
            viterbi_cut(m, block, out);
        } else {
            let mut gap_start = 0;
            let mut i = 0;
            while i < block.len() {
                let len = skip_match_len(&block[i..]);
                if len == 0 {
                    i += block[i..].chars().next().map_or(1, char::len_utf8);
                    continue;
                }
                if gap_start < i {
                    out.push(&block[gap_start..i]);
                }
                out.push(&block[i..i + len]);
                i += len;
                gap_start = i;
            }
            if gap_start < block.len() {
                out.push(&block[gap_start..]);
            }
        }
    }
}

/// Length in bytes of a match of `[a-zA-Z0-9]+(?:\.\d+)?%?` at the start of `s` (0 if none);
/// `\d` is any Unicode decimal digit, as in Python's `re`.
fn skip_match_len(s: &str) -> usize {
    let mut len = s.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(s.len());
    if len == 0 {
        return 0;
    }
    if let Some(after_dot) = s[len..].strip_prefix('.') {
        let digits = after_dot.find(|c: char| !pytext::is_decimal(c)).unwrap_or(after_dot.len());
        if digits > 0 {
            len += 1 + digits;
        }
    }
    if s[len..].starts_with('%') {
        len += 1;
    }
    len
}

/// `finalseg.__cut`: Viterbi over B/M/E/S, then words from the state sequence.
fn viterbi_cut<'a>(m: &Model, text: &'a str, out: &mut Vec<&'a str>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let emit = |c: char, s: usize| m.emit.get(&c).map_or(MIN_FLOAT, |e| e[s]);
    let mut v: [f64; 4] = std::array::from_fn(|s| m.start[s] + emit(chars[0].1, s));
    // back[t][y]: the state at t-1 on the best path to state y at t.
    let mut back: Vec<[usize; 4]> = Vec::with_capacity(chars.len());
    for &(_, c) in &chars[1..] {
        let mut nv = [0.0; 4];
        let mut nb = [0usize; 4];
        for y in 0..4 {
            let em = emit(c, y);
            // max((V[t-1][y0] + trans[y0][y] + em, y0)): ties go to the larger state letter.
            let mut best: Option<(f64, usize)> = None;
            for y0 in PREV[y] {
                let p = v[y0] + m.trans[y0][y] + em;
                if best.is_none_or(|(bp, bs)| p > bp || (p == bp && STATES[y0] > STATES[bs])) {
                    best = Some((p, y0));
                }
            }
            let (p, y0) = best.expect("two candidates");
            nv[y] = p;
            nb[y] = y0;
        }
        v = nv;
        back.push(nb);
    }
    // max((V[-1][y], y) for y in 'ES').
    let mut state = if v[S] >= v[E] { S } else { E };
    let mut states = vec![0usize; chars.len()];
    for t in (0..chars.len()).rev() {
        states[t] = state;
        if t > 0 {
            state = back[t - 1][state];
        }
    }
    let end_of = |i: usize| chars.get(i + 1).map_or(text.len(), |&(o, _)| o);
    let (mut begin, mut next) = (0usize, 0usize);
    for (i, &(off, _)) in chars.iter().enumerate() {
        match states[i] {
            B => begin = off,
            E => {
                out.push(&text[begin..end_of(i)]);
                next = end_of(i);
            }
            S => {
                out.push(&text[off..end_of(i)]);
                next = end_of(i);
            }
            _ => {}
        }
    }
    if next < text.len() {
        out.push(&text[next..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_covers_the_text() {
        let text = "我来到北京清华大学，2014-2016年 增长了3.5%\r\nGPT-4模型";
        let words = cut(text);
        assert_eq!(words.concat(), text);
        assert!(words.contains(&"清华大学"), "{words:?}");
        assert!(words.contains(&"\r\n"), "{words:?}");
    }

    #[test]
    fn skip_pattern() {
        assert_eq!(skip_match_len("3.5%x"), 4);
        assert_eq!(skip_match_len("2018-09"), 4);
        assert_eq!(skip_match_len("a.b"), 1);
        assert_eq!(skip_match_len("-1"), 0);
    }
}
