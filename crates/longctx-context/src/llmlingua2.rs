//! LLMLingua-2 prompt compression: an XLM-RoBERTa token classifier scores every token's
//! probability of being kept, tokens are merged into words, and the words above a percentile
//! threshold are kept.
//!
//! This reproduces `llmlingua` 0.2.2's `PromptCompressor(..., use_llmlingua2=True)
//! .compress_prompt(context, rate=…)` exactly, quirks included (the porting notes, with line
//! numbers in llmlingua's source, are in `tools/oracles/llmlingua2_notes.md`):
//! - windows of at most 510 tokens cut after a chunk-end token, given to the model as
//!   `<unk> … <unk>` (llmlingua asks for BERT's `[CLS]`/`[SEP]`, which XLM-R does not know);
//! - force tokens that are not one XLM-R piece are replaced by added `[NEWi]` tokens first;
//! - a word's probability is the float32 mean of its pieces', forced words get a float64 1.0,
//!   and the percentile is NumPy's linear one, in float32 unless a float64 is in the list;
//! - the threshold is over words repeated once per cl100k_base token (tiktoken), and a word
//!   is kept when its probability is *above* it;
//! - kept words are joined by the Metaspace decoder (`▁` → space, none before the first word
//!   of a window) and the windows of a context with nothing between them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use candle_core::Device;
use longctx_models::encoder::{Encoder, EncoderInput};
use serde::{Deserialize, Serialize};
use tokenizers::{AddedToken, Tokenizer};

use crate::Error;

/// Model input length (llmlingua's `max_seq_len`).
const MAX_SEQ_LEN: usize = 512;
/// Id of `<unk>`, which stands in for `[CLS]`, `[SEP]` and `[PAD]` in the model input.
const UNK: u32 = 3;
/// Number of `[NEWi]` tokens llmlingua adds for force tokens.
const MAX_FORCE_TOKENS: usize = 100;
/// XLM-R's special tokens (skipped when merging tokens into words).
const SPECIAL: [&str; 5] = ["<s>", "</s>", "<unk>", "<pad>", "<mask>"];
/// Python's `string.punctuation`.
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Windows per model call.
const BATCH: usize = 50;

/// How a word's probability comes from its pieces'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenToWord {
    /// Mean of the pieces (llmlingua's default).
    #[default]
    Mean,
    /// The first piece.
    First,
}

/// The arguments of `compress_prompt` on the LLMLingua-2 path, with its defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompressOptions {
    /// Share of tokens to keep.
    pub rate: f64,
    /// Target number of cl100k tokens (overrides `rate` when positive).
    pub target_token: f64,
    /// With several contexts, first drop whole contexts of low mean probability.
    pub use_context_level_filter: bool,
    /// Drop words within the kept contexts.
    pub use_token_level_filter: bool,
    /// Number of contexts to keep (context filter).
    pub target_context: i64,
    /// Share of contexts to keep (context filter).
    pub context_level_rate: f64,
    /// Tokens of contexts to keep (context filter).
    pub context_level_target_token: f64,
    /// Contexts always kept by the context filter.
    pub force_context_ids: Option<Vec<usize>>,
    /// Also return every word with its 0/1 label.
    pub return_word_label: bool,
    /// Separator between labelled words.
    pub word_sep: String,
    /// Separator between a word and its label.
    pub label_sep: String,
    /// How piece probabilities become a word's.
    pub token_to_word: TokenToWord,
    /// Tokens always kept (at most 100).
    pub force_tokens: Vec<String>,
    /// Keep every word containing a digit.
    pub force_reserve_digit: bool,
    /// Drop a force token repeated with nothing kept in between.
    pub drop_consecutive: bool,
    /// Tokens after which a window may end.
    pub chunk_end_tokens: Vec<String>,
}

impl Default for CompressOptions {
    fn default() -> Self {
        Self {
            rate: 0.5,
            target_token: -1.0,
            use_context_level_filter: true,
            use_token_level_filter: true,
            target_context: -1,
            context_level_rate: 1.0,
            context_level_target_token: -1.0,
            force_context_ids: None,
            return_word_label: false,
            word_sep: "\t\t|\t\t".into(),
            label_sep: " ".into(),
            token_to_word: TokenToWord::Mean,
            force_tokens: Vec::new(),
            force_reserve_digit: false,
            drop_consecutive: false,
            chunk_end_tokens: vec![".".into(), "\n".into()],
        }
    }
}

/// What `compress_prompt` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compressed {
    /// The kept contexts, compressed, joined by a blank line.
    pub compressed_prompt: String,
    /// The kept contexts, compressed.
    pub compressed_prompt_list: Vec<String>,
    /// cl100k tokens of the input.
    pub origin_tokens: usize,
    /// cl100k tokens of the output.
    pub compressed_tokens: usize,
    /// `"{origin/compressed:.1}x"`.
    pub ratio: String,
    /// `"{compressed/origin·100:.1}%"`.
    pub rate: String,
    /// llmlingua's GPT-4 saving line.
    pub saving: String,
    /// Every word with its label, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fn_labeled_original_prompt: Option<String>,
}

/// A probability as NumPy would hold it: a float32 from the model, or a Python float (1.0 for
/// forced words, 0.0 from `drop_consecutive`), which decides the precision of sums and
/// percentiles.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Prob {
    F32(f32),
    F64(f64),
}

impl Prob {
    fn value(self) -> f64 {
        match self {
            Prob::F32(x) => f64::from(x),
            Prob::F64(x) => x,
        }
    }
}

/// `sum(values) / len(values)` with Python's `sum` (from int 0) under NumPy 2's promotion:
/// float32 as soon as one operand is float32.
fn mean(values: &[Prob]) -> Prob {
    let mut acc = values[0];
    for &v in &values[1..] {
        acc = match (acc, v) {
            (Prob::F64(a), Prob::F64(b)) => Prob::F64(a + b),
            (a, b) => Prob::F32(a.value() as f32 + b.value() as f32),
        };
    }
    match acc {
        Prob::F32(a) => Prob::F32(a / values.len() as f32),
        Prob::F64(a) => Prob::F64(a / values.len() as f64),
    }
}

/// `np.percentile(values, q)` (linear method): computed in float64 if any value is a Python
/// float, else in float32, with NumPy's operation order.
fn percentile(values: &[Prob], q: i64) -> Result<Prob, Error> {
    if values.is_empty() {
        return Err(Error::Config("a window has no words to rank (llmlingua fails here too)".into()));
    }
    // The same steps in the array's precision (NumPy's `_quantile` / `_lerp`).
    macro_rules! linear {
        ($t:ty, $wrap:path) => {{
            let mut x: Vec<$t> = values.iter().map(|v| v.value() as $t).collect();
            x.sort_by(<$t>::total_cmp);
            let last = (x.len() - 1) as $t;
            let vi = last * (q as $t / 100.0);
            if vi >= last {
                return Ok($wrap(x[x.len() - 1]));
            }
            let lo = vi.floor();
            let g = vi - lo;
            let (a, b) = (x[lo as usize], x[lo as usize + 1]);
            let d = b - a;
            Ok($wrap(if g >= 0.5 { b - d * (1.0 - g) } else { a + d * g }))
        }};
    }
    if values.iter().any(|v| matches!(v, Prob::F64(_))) {
        linear!(f64, Prob::F64)
    } else {
        linear!(f32, Prob::F32)
    }
}

/// cl100k_base (tiktoken), as llmlingua counts tokens.
fn cl100k() -> &'static tiktoken_rs::CoreBPE {
    static BPE: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::cl100k_base().expect("tiktoken-rs ships cl100k_base"))
}

/// Number of cl100k tokens of `text`; like tiktoken's `encode`, text containing a special
/// token's string is refused.
fn count_tokens(text: &str) -> Result<usize, Error> {
    const SPECIALS: [&str; 5] =
        ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|endofprompt|>"];
    if let Some(s) = SPECIALS.iter().find(|s| text.contains(*s)) {
        return Err(Error::Config(format!(
            "the text contains the special token {s}, which tiktoken refuses to encode"
        )));
    }
    Ok(cl100k().encode_ordinary(text).len())
}

/// Tokens and keep-probabilities of one model window.
type Window = (Vec<String>, Vec<f32>);

/// One window's words with their probabilities (`wp`) and, for the context filter, the
/// probabilities llmlingua computes without forcing (`wp_no_force`).
struct Merged {
    words: Vec<String>,
    wp: Vec<Vec<Prob>>,
    wp_no_force: Vec<Vec<Prob>>,
}

/// The LLMLingua-2 compressor: an XLM-R token classifier and its tokenizer.
pub struct LlmLingua2 {
    encoder: Encoder,
    tokenizer: Tokenizer,
    added: Vec<String>,
}

/// Settings derived from the options for one call.
struct Plan<'a> {
    opts: &'a CompressOptions,
    /// Force token → `[NEWi]`, in force-token order.
    token_map: Vec<(String, String)>,
    chunk_end: HashSet<String>,
}

impl Plan<'_> {
    fn is_mapped(&self, token: &str) -> bool {
        self.token_map.iter().any(|(_, new)| new == token)
    }

    fn is_forced(&self, token: &str) -> bool {
        self.opts.force_tokens.iter().any(|f| f == token)
    }

    fn restore(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (ori, new) in &self.token_map {
            t = t.replace(new.as_str(), ori);
        }
        t
    }
}

impl LlmLingua2 {
    /// Loads the token classifier from `model_dir` (`config.json`, `model.safetensors`) and
    /// the tokenizer from `tokenizer` (default: `model_dir/tokenizer.json`).
    pub fn load(model_dir: &Path, tokenizer: Option<&Path>) -> Result<Self, Error> {
        let encoder = Encoder::load(model_dir, &Device::Cpu)?;
        let tok_path = tokenizer.map_or_else(|| model_dir.join("tokenizer.json"), Path::to_path_buf);
        let mut tok =
            Tokenizer::from_file(&tok_path).map_err(|e| Error::Config(format!("{}: {e}", tok_path.display())))?;
        let added: Vec<String> = (0..MAX_FORCE_TOKENS).map(|i| format!("[NEW{i}]")).collect();
        let specials: Vec<AddedToken> = added.iter().map(|t| AddedToken::from(t.clone(), true)).collect();
        tok.add_special_tokens(specials).map_err(|e| Error::Config(format!("adding [NEWi] tokens: {e}")))?;
        let vocab = tok.get_vocab_size(true);
        if encoder.config().vocab_size < vocab {
            // llmlingua would resize the embeddings with random rows: not reproducible.
            return Err(Error::Config(format!(
                "{}: the model has {} token embeddings but the tokenizer with llmlingua's 100 added tokens has {vocab}",
                model_dir.display(),
                encoder.config().vocab_size
            )));
        }
        Ok(Self { encoder, tokenizer: tok, added })
    }

    fn tokenize(&self, text: &str) -> Result<Vec<String>, Error> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| Error::Config(format!("tokenizer: {e}")))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// `convert_tokens_to_string`: the tokenizer's decoder over token strings.
    fn detokenize(&self, tokens: &[String]) -> Result<String, Error> {
        match self.tokenizer.get_decoder() {
            Some(d) => {
                use tokenizers::Decoder;
                d.decode(tokens.to_vec()).map_err(|e| Error::Config(format!("decoder: {e}")))
            }
            None => Ok(tokens.concat()),
        }
    }

    /// `__chunk_context`: windows of at most 511 tokens, cut after the last chunk-end token.
    fn chunk(&self, text: &str, plan: &Plan) -> Result<Vec<String>, Error> {
        let max_len = MAX_SEQ_LEN - 2;
        let toks = self.tokenize(text)?;
        let n = toks.len();
        let mut out = Vec::new();
        let mut st = 0;
        while st < n {
            if st + max_len > n - 1 {
                out.push(self.detokenize(&toks[st..n])?);
                break;
            }
            let mut ed = st + max_len;
            for j in 0..ed - st {
                if plan.chunk_end.contains(&toks[ed - j]) {
                    ed -= j;
                    break;
                }
            }
            out.push(self.detokenize(&toks[st..=ed])?);
            st = ed + 1;
        }
        Ok(out)
    }

    /// Model input ids of a window: `<unk>` + pieces + `<unk>`, at most 512.
    fn window_ids(&self, chunk: &str) -> Result<Vec<u32>, Error> {
        let enc = self.tokenizer.encode(chunk, false).map_err(|e| Error::Config(format!("tokenizer: {e}")))?;
        let mut ids = Vec::with_capacity(enc.len() + 2);
        ids.push(UNK);
        ids.extend_from_slice(enc.get_ids());
        ids.push(UNK);
        ids.truncate(MAX_SEQ_LEN);
        Ok(ids)
    }

    /// Token strings and keep-probabilities (label 1, float32 softmax) of each window.
    fn score_windows(&self, chunks: &[&str]) -> Result<Vec<Window>, Error> {
        let mut out = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(BATCH) {
            let inputs: Vec<EncoderInput> =
                batch.iter().map(|c| self.window_ids(c).map(EncoderInput::from)).collect::<Result<_, _>>()?;
            let logits = self.encoder.token_logits(&inputs)?;
            let logits: Vec<Vec<f32>> = logits.to_vec2().map_err(longctx_models::ModelError::from)?;
            let mut at = 0;
            for input in &inputs {
                let mut tokens = Vec::with_capacity(input.ids.len());
                let mut probs = Vec::with_capacity(input.ids.len());
                for &id in &input.ids {
                    tokens.push(self.tokenizer.id_to_token(id).unwrap_or_default());
                    let l = &logits[at];
                    let m = l[0].max(l[1]);
                    let (e0, e1) = ((l[0] - m).exp(), (l[1] - m).exp());
                    probs.push(e1 * (1.0 / (e0 + e1)));
                    at += 1;
                }
                out.push((tokens, probs));
            }
        }
        Ok(out)
    }

    /// `__merge_token_to_word`.
    fn merge(tokens: &[String], probs: &[f32], plan: &Plan) -> Result<Merged, Error> {
        let mut w = Merged { words: Vec::new(), wp: Vec::new(), wp_no_force: Vec::new() };
        let digit = |t: &str| plan.opts.force_reserve_digit && has_digit(t);
        for (token, &p) in tokens.iter().zip(probs) {
            if SPECIAL.contains(&token.as_str()) {
                continue;
            }
            let begins = (!token.is_empty() && PUNCTUATION.contains(token.as_str()))
                || plan.is_forced(token)
                || plan.is_mapped(token)
                || token.starts_with('▁');
            if begins {
                let pure = token.trim_start_matches('▁');
                let no_force = Prob::F32(p);
                let prob = if plan.is_forced(pure) || plan.is_mapped(pure) { Prob::F64(1.0) } else { Prob::F32(p) };
                let word = plan.restore(token);
                w.wp.push(vec![if digit(&word) { Prob::F64(1.0) } else { prob }]);
                w.wp_no_force.push(vec![no_force]);
                w.words.push(word);
            } else {
                let Some(last) = w.words.last_mut() else {
                    return Err(Error::Config(format!(
                        "a window starts with the continuation piece {token:?} (llmlingua fails here too)"
                    )));
                };
                last.push_str(token.trim_start_matches('▁'));
                let first = w.wp_no_force.last().and_then(|v| v.first()).copied().unwrap_or(Prob::F32(p));
                let wp = w.wp.last_mut().expect("a word has probabilities");
                wp.push(if digit(token) { Prob::F64(1.0) } else { Prob::F32(p) });
                // llmlingua appends the word's first probability again here, not this piece's.
                w.wp_no_force.last_mut().expect("a word has probabilities").push(first);
            }
        }
        Ok(w)
    }

    fn to_word(probs: &[Vec<Prob>], mode: TokenToWord) -> Vec<Prob> {
        probs
            .iter()
            .map(|p| match mode {
                TokenToWord::Mean => mean(p),
                TokenToWord::First => p[0],
            })
            .collect()
    }

    /// `__compress` of the given contexts' windows; returns the compressed contexts and, per
    /// context, its words (without `▁`) and labels.
    #[allow(clippy::type_complexity)]
    fn compress_windows(
        &self,
        contexts: &[Vec<String>],
        reduce_rate: f64,
        plan: &Plan,
        scored: &mut HashMap<String, Window>,
    ) -> Result<(Vec<String>, Vec<Vec<String>>, Vec<Vec<u8>>), Error> {
        let opts = plan.opts;
        let mut out = Vec::new();
        let (mut all_words, mut all_labels) = (Vec::new(), Vec::new());
        if reduce_rate <= 0.0 {
            let re = split_words_re();
            for chunks in contexts {
                let restored: Vec<String> = chunks.iter().map(|c| plan.restore(c)).collect();
                let words: Vec<String> =
                    restored.iter().flat_map(|c| re.find_iter(c).map(|m| m.as_str().to_string())).collect();
                all_labels.push(vec![1; words.len()]);
                all_words.push(words);
                out.push(restored.concat());
            }
            return Ok((out, all_words, all_labels));
        }
        self.ensure_scored(contexts.iter().flatten(), scored)?;
        for chunks in contexts {
            let mut text = String::new();
            let (mut cw, mut cl) = (Vec::new(), Vec::new());
            for chunk in chunks {
                let (tokens, probs) = &scored[chunk];
                let Merged { words, wp, .. } = Self::merge(tokens, probs, plan)?;
                let mut word_probs = Self::to_word(&wp, opts.token_to_word);
                if opts.drop_consecutive {
                    let t0 = percentile(&word_probs, (100.0 * reduce_rate) as i64)?;
                    let mut between = false;
                    let mut prev: Option<&str> = None;
                    for (i, word) in words.iter().enumerate() {
                        if plan.is_forced(word) {
                            if between {
                                between = false;
                            } else if prev == Some(word.as_str()) {
                                word_probs[i] = Prob::F64(0.0);
                            }
                            prev = Some(word);
                        } else {
                            between |= word_probs[i].value() > t0.value();
                        }
                    }
                }
                let mut expanded = Vec::new();
                for (word, &p) in words.iter().zip(&word_probs) {
                    expanded.extend(std::iter::repeat_n(p, count_tokens(word)?));
                }
                let threshold = percentile(&expanded, (100.0 * reduce_rate + 1.0) as i64)?.value();
                let mut keep: Vec<String> = Vec::new();
                for (word, p) in words.iter().zip(&word_probs) {
                    let p = p.value();
                    let mut label = 0;
                    let above = p > threshold || (threshold == 1.0 && p == threshold);
                    if above && !(opts.drop_consecutive && plan.is_forced(word) && keep.last() == Some(word)) {
                        keep.push(word.clone());
                        label = 1;
                    }
                    cl.push(label);
                }
                text.push_str(&self.detokenize(&keep)?);
                cw.extend(words.iter().map(|w| w.trim_start_matches('▁').to_string()));
            }
            out.push(text);
            all_words.push(cw);
            all_labels.push(cl);
        }
        Ok((out, all_words, all_labels))
    }

    /// Scores every window not scored yet, in batches.
    fn ensure_scored<'a>(
        &self,
        chunks: impl Iterator<Item = &'a String>,
        scored: &mut HashMap<String, Window>,
    ) -> Result<(), Error> {
        let mut todo: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        for c in chunks {
            if !scored.contains_key(c) && seen.insert(c.as_str()) {
                todo.push(c);
            }
        }
        for (c, r) in todo.iter().zip(self.score_windows(&todo)?) {
            scored.insert((*c).to_string(), r);
        }
        Ok(())
    }

    /// The context-level filter (several contexts): drops whole contexts whose mean
    /// probability is below the percentile threshold. Returns which contexts are kept, every
    /// context's words (for the labels of dropped ones) and the rate for the token filter.
    #[allow(clippy::manual_midpoint, clippy::type_complexity)] // llmlingua's formula, kept as written
    fn context_filter(
        &self,
        chunked: &[Vec<String>],
        n_original: usize,
        mut rate: f64,
        plan: &Plan,
        scored: &mut HashMap<String, Window>,
    ) -> Result<(Vec<bool>, Vec<Vec<String>>, f64), Error> {
        let opts = plan.opts;
        let mut context_level_rate = opts.context_level_rate;
        let mut context_level_target = opts.context_level_target_token;
        if opts.target_context <= 0 && context_level_rate >= 1.0 && context_level_target <= 0.0 {
            if opts.target_token < 0.0 && rate < 1.0 {
                context_level_rate = if opts.use_token_level_filter { (rate + 1.0) / 2.0 } else { rate };
            }
            if opts.target_token >= 0.0 {
                context_level_target =
                    if opts.use_token_level_filter { opts.target_token * 2.0 } else { opts.target_token };
            }
        }
        if opts.target_context >= 0 {
            context_level_rate = (opts.target_context as f64 / chunked.len() as f64).min(1.0);
        }
        if context_level_target >= 0.0 {
            context_level_rate = (context_level_target / n_original as f64).min(1.0);
        }
        self.ensure_scored(chunked.iter().flatten(), scored)?;
        let mut context_probs = Vec::with_capacity(chunked.len());
        let mut context_words = Vec::with_capacity(chunked.len());
        for (i, chunks) in chunked.iter().enumerate() {
            let mut probs = Vec::new();
            let mut words = Vec::new();
            for chunk in chunks {
                let (tokens, p) = &scored[chunk];
                let w = Self::merge(tokens, p, plan)?;
                probs.extend(Self::to_word(&w.wp_no_force, opts.token_to_word));
                words.extend(w.words.iter().map(|w| w.trim_start_matches('▁').to_string()));
            }
            if probs.is_empty() {
                return Err(Error::Config(format!("context {i} has no words (llmlingua divides by zero here)")));
            }
            context_probs.push(mean(&probs));
            context_words.push(words);
        }
        let threshold = percentile(&context_probs, (100.0 * (1.0 - context_level_rate)) as i64)?.value();
        let forced = |i: usize| opts.force_context_ids.as_ref().is_some_and(|ids| ids.contains(&i));
        let kept_mask: Vec<bool> =
            context_probs.iter().enumerate().map(|(i, p)| p.value() >= threshold || forced(i)).collect();
        let mut n_reserved = 0;
        for (chunks, _) in chunked.iter().zip(&kept_mask).filter(|(_, &k)| k) {
            for c in chunks {
                n_reserved += count_tokens(c)?;
            }
        }
        if opts.target_token >= 0.0 {
            rate = (opts.target_token / n_reserved as f64).min(1.0);
        }
        Ok((kept_mask, context_words, rate))
    }

    /// Compresses one context (`compress_prompt(context, **opts)` with a string).
    pub fn compress(&self, context: &str, opts: &CompressOptions) -> Result<Compressed, Error> {
        self.compress_list(&[context], opts)
    }

    /// Compresses a list of contexts (`compress_prompt([c1, c2, …], **opts)`), with the
    /// context-level filter when there are several.
    pub fn compress_list(&self, contexts: &[&str], opts: &CompressOptions) -> Result<Compressed, Error> {
        if opts.force_tokens.len() > MAX_FORCE_TOKENS {
            return Err(Error::Config(format!("at most {MAX_FORCE_TOKENS} force tokens")));
        }
        // A Python dict: a repeated force token keeps its first place and its last `[NEWi]`.
        let mut token_map: Vec<(String, String)> = Vec::new();
        for (i, t) in opts.force_tokens.iter().enumerate() {
            if self.tokenize(t)?.len() != 1 {
                match token_map.iter_mut().find(|(o, _)| o == t) {
                    Some(entry) => entry.1.clone_from(&self.added[i]),
                    None => token_map.push((t.clone(), self.added[i].clone())),
                }
            }
        }
        let mut chunk_end: HashSet<String> = opts.chunk_end_tokens.iter().cloned().collect();
        for c in &opts.chunk_end_tokens {
            if let Some((_, new)) = token_map.iter().find(|(o, _)| o == c) {
                chunk_end.insert(new.clone());
            }
        }
        let plan = Plan { opts, token_map, chunk_end };
        let mut rate = opts.rate;
        let use_context_filter = opts.use_context_level_filter && contexts.len() > 1;
        let mut n_original = 0;
        let mut chunked = Vec::with_capacity(contexts.len());
        for c in contexts {
            n_original += count_tokens(c)?;
            let mut text = (*c).to_string();
            for (ori, new) in &plan.token_map {
                text = text.replace(ori.as_str(), new);
            }
            chunked.push(self.chunk(&text, &plan)?);
        }
        let mut scored = HashMap::new();
        let mut labels_of_dropped: Vec<Option<Vec<String>>> = vec![None; contexts.len()];
        if use_context_filter {
            let (kept, dropped_words, new_rate) =
                self.context_filter(&chunked, n_original, rate, &plan, &mut scored)?;
            rate = new_rate;
            for (i, words) in dropped_words.into_iter().enumerate() {
                if !kept[i] {
                    labels_of_dropped[i] = Some(words);
                }
            }
            chunked = chunked.into_iter().zip(&kept).filter(|(_, &k)| k).map(|(c, _)| c).collect();
        } else if opts.target_token > 0.0 {
            if n_original == 0 {
                return Err(Error::Config("target_token with an empty text (llmlingua divides by zero here)".into()));
            }
            rate = (opts.target_token / n_original as f64).min(1.0);
        }
        let reduce_rate = if opts.use_token_level_filter { (1.0 - rate).max(0.0) } else { 0.0 };
        let (compressed, words, labels) = self.compress_windows(&chunked, reduce_rate, &plan, &mut scored)?;
        let mut n_compressed = 0;
        for c in &compressed {
            n_compressed += count_tokens(c)?;
        }
        let saving = (n_original as f64 - n_compressed as f64) * 0.06 / 1000.0;
        let ratio = if n_compressed == 0 { 1.0 } else { n_original as f64 / n_compressed as f64 };
        let fn_labeled_original_prompt = opts.return_word_label.then(|| {
            let mut pairs = Vec::new();
            let mut kept = words.iter().zip(&labels);
            for dropped in &labels_of_dropped {
                match dropped {
                    Some(ws) => pairs.extend(ws.iter().map(|w| format!("{w}{}0", opts.label_sep))),
                    None => {
                        if let Some((ws, ls)) = kept.next() {
                            pairs.extend(ws.iter().zip(ls).map(|(w, l)| format!("{w}{}{l}", opts.label_sep)));
                        }
                    }
                }
            }
            pairs.join(&opts.word_sep)
        });
        Ok(Compressed {
            compressed_prompt: compressed.join("\n\n"),
            compressed_prompt_list: compressed,
            origin_tokens: n_original,
            compressed_tokens: n_compressed,
            ratio: format!("{ratio:.1}x"),
            rate: format!("{:.1}%", 1.0 / ratio * 100.0),
            saving: format!(", Saving ${saving:.1} in GPT-4."),
            fn_labeled_original_prompt,
        })
    }
}

/// Python's `re.search(r"\d", text)`: any Unicode decimal digit.
fn has_digit(text: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\d").expect("valid regex")).is_match(text)
}

/// llmlingua's `split_string_to_words` (words reported when nothing is dropped).
fn split_words_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r#"\b\w+\b|[<>=/!@#$%^&*()?":{}|\\`~;_+-]"#).expect("valid regex"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_numpy_linear() {
        let v: Vec<Prob> = [0.5f32, 0.1, 0.9, 0.3].iter().map(|&x| Prob::F32(x)).collect();
        // np.percentile(np.float32([...]), 51) = 0.40599999 (float32)
        // np.percentile(np.float32([0.5, 0.1, 0.9, 0.3]), 51) == np.float32(0.406)
        assert!((percentile(&v, 51).unwrap().value() - 0.406).abs() < 1e-6);
        assert_eq!(percentile(&v, 100).unwrap(), Prob::F32(0.9));
        assert_eq!(percentile(&v, 0).unwrap(), Prob::F32(0.1));
        let mixed = [Prob::F32(0.25), Prob::F64(1.0)];
        assert_eq!(percentile(&mixed, 50).unwrap(), Prob::F64(0.625));
        assert!(percentile(&[], 50).is_err());
    }

    #[test]
    fn mean_promotes_like_numpy() {
        assert_eq!(mean(&[Prob::F64(1.0), Prob::F64(0.5)]), Prob::F64(0.75));
        assert_eq!(mean(&[Prob::F64(1.0), Prob::F32(0.5)]), Prob::F32(0.75));
        let third = 1.0f32 / 3.0;
        assert_eq!(mean(&[Prob::F32(third); 3]), Prob::F32((third + third + third) / 3.0));
    }
}
