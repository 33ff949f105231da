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
//! `tools/oracles/export_jieba_data.py` into `data/jieba/` and embedded (gzip, 2 MB).
//! Parity is checked on every Chinese record in `tests/jieba_parity.rs`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

use super::pytext;

const DICT_GZ: &[u8] = include_bytes!("../../data/jieba/dict.txt.gz");
const HMM_GZ: &[u8] = include_bytes!("../../data/jieba/hmm.json.gz");

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
    /// `FREQ`: word frequencies, with every prefix of a word present (frequency 0 if it is
    /// not itself a word).
    freq: HashMap<Box<str>, u64>,
    /// `log(total)`.
    log_total: f64,
    start: [f64; 4],
    trans: [[f64; 4]; 4],
    emit: HashMap<char, [f64; 4]>,
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes).read_to_string(&mut out).expect("embedded jieba data is valid gzip UTF-8");
    out
}

impl Model {
    fn load() -> Self {
        // `gen_pfdict`.
        let dict = gunzip(DICT_GZ);
        let mut freq: HashMap<Box<str>, u64> = HashMap::with_capacity(600_000);
        let mut total: u64 = 0;
        for line in dict.lines() {
            let (word, f) = line.rsplit_once(' ').expect("dictionary line is `word freq`");
            let f: u64 = f.parse().expect("dictionary frequency is an integer");
            freq.insert(word.into(), f);
            total += f;
            for (i, _) in word.char_indices().skip(1) {
                freq.entry(word[..i].into()).or_insert(0);
            }
        }
        #[derive(serde::Deserialize)]
        struct Hmm {
            start: HashMap<String, f64>,
            trans: HashMap<String, HashMap<String, f64>>,
            emit: HashMap<String, HashMap<String, f64>>,
        }
        let hmm: Hmm = serde_json::from_str(&gunzip(HMM_GZ)).expect("embedded HMM is valid JSON");
        let key = |s: usize| (STATES[s] as char).to_string();
        let start = std::array::from_fn(|s| hmm.start[&key(s)]);
        let trans = std::array::from_fn(|from| {
            std::array::from_fn(|to| hmm.trans.get(&key(from)).and_then(|t| t.get(&key(to))).copied().unwrap_or(MIN_FLOAT))
        });
        let mut emit: HashMap<char, [f64; 4]> = HashMap::new();
        for s in 0..4 {
            for (ch, p) in &hmm.emit[&key(s)] {
                let c = ch.chars().next().expect("emission key is one character");
                emit.entry(c).or_insert([MIN_FLOAT; 4])[s] = *p;
            }
        }
        Model { freq, log_total: (total as f64).ln(), start, trans, emit }
    }

    fn freq(&self, word: &str) -> Option<u64> {
        self.freq.get(word).copied()
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
    // get_DAG
    let dag: Vec<Vec<usize>> = (0..n)
        .map(|k| {
            let mut ends = Vec::new();
            let mut i = k;
            while i < n {
                match m.freq(slice(k, i + 1)) {
                    Some(f) => {
                        if f > 0 {
                            ends.push(i);
                        }
                    }
                    None => break,
                }
                i += 1;
            }
            if ends.is_empty() {
                ends.push(k);
            }
            ends
        })
        .collect();
    // calc: route[idx] = max((log(FREQ.get(word) or 1) - logtotal + route[x+1][0], x)).
    let mut route = vec![(0.0f64, 0usize); n + 1];
    for idx in (0..n).rev() {
        let mut best: Option<(f64, usize)> = None;
        for &x in &dag[idx] {
            let f = m.freq(slice(idx, x + 1)).filter(|&f| f > 0).unwrap_or(1);
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
