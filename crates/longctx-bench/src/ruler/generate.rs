//! RULER's generators: each sample built with RULER's recipe (`niah.py`,
//! `variable_tracking.py`, `common_words_extraction.py`, `freq_words_extraction.py`,
//! `qa.py`) and fitted to the target length in the model's own tokenizer: the largest
//! haystack (sentences, words, documents) whose prompt — chat template, task template and
//! answer prefix as the model receives them — plus the task's `tokens_to_generate` fits.
//!
//! Randomness comes from a ChaCha8 generator seeded per sample from the run's seed, the
//! task, the length and the sample's index, so the same seed gives the same samples (RULER
//! draws from Python's global `random`; the samples are RULER's in kind, not bit for bit).
//! A sample is rebuilt from its seed for every haystack size tried, so its fitted size is
//! exact: one more unit would not fit.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::{QaData, RulerData};
use super::{format, sentences, Haystack, Kind, QaDataset, Task, TaskKind};
use super::{CWE_PREFIX, CWE_TEMPLATE, FWE_PREFIX, FWE_TEMPLATE, QA_PREFIX, QA_TEMPLATE, VT_PREFIX, VT_TEMPLATE};
use crate::error::{Error, Result};

/// niah's noise haystack.
pub const NOISE: &str = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
/// niah's needle.
pub const NEEDLE: &str = "One of the special magic {type_needle_v} for {key} is: {value}.";
/// variable tracking's in-context example is fitted to this many tokens, as RULER does.
const VT_EXAMPLE_TOKENS: usize = 500;

/// Counts the prompt tokens of a user turn and the answer prefix that starts the assistant's
/// turn, as the model will receive them (chat template included).
pub type Counter<'a> = dyn Fn(&str, &str) -> Result<usize> + Sync + 'a;

/// One generated sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// The task.
    pub task: String,
    /// Index of the sample (0-based).
    pub index: usize,
    /// The length it was fitted to.
    pub target_length: usize,
    /// The user turn (RULER's `input`).
    pub input: String,
    /// The answer prefix, which starts the assistant's turn (RULER's `answer_prefix`).
    pub answer_prefix: String,
    /// The references (RULER's `outputs`).
    pub outputs: Vec<String>,
    /// Prompt tokens (chat template, input and prefix).
    pub prompt_tokens: usize,
    /// RULER's `length`: prompt tokens + `tokens_to_generate`.
    pub length: usize,
    /// The needle's depth in percent, when it was placed at one.
    pub depth: Option<f64>,
    /// Haystack units (sentences, words or documents) in the context.
    pub haystack: usize,
    /// Byte range of the context (the haystack with what is hidden in it) in `input`.
    pub context: Range<usize>,
}

impl Generated {
    /// The text before the context, the context and the text after it.
    pub fn parts(&self) -> (&str, &str, &str) {
        (&self.input[..self.context.start], &self.input[self.context.clone()], &self.input[self.context.end..])
    }
}

/// A sample before it is counted.
struct Built {
    head: String,
    context: String,
    tail: String,
    prefix: String,
    outputs: Vec<String>,
}

impl Built {
    fn user(&self) -> String {
        [self.head.as_str(), &self.context, &self.tail].concat()
    }
}

/// Generates the samples of one task at one length.
pub struct Generator<'a> {
    task: &'static Task,
    data: &'a RulerData,
    count: &'a Counter<'a>,
    length: usize,
    seed: u64,
    /// niah keys/values of kind `words`: an adjective and a noun (sorted, distinct) drawn
    /// uniformly, which is a uniform draw from niah.py's sorted set of `adjective-noun`s.
    adjectives: Vec<String>,
    nouns: Vec<String>,
    /// cwe's words, shuffled once.
    cwe_words: Vec<String>,
    /// vt's in-context example (before randomization).
    vt_example: Option<String>,
    /// The haystack size of the last sample: where the next search starts.
    hint: AtomicUsize,
}

fn mix(seed: u64, parts: &[u64]) -> u64 {
    // splitmix64 over the parts.
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for &p in parts {
        x = x.wrapping_add(p).wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x = z ^ (z >> 31);
    }
    x
}

fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `np.round(np.linspace(0, 100, num=40)).astype(int)`: niah's random depths.
fn depths40() -> Vec<u32> {
    (0..40).map(|i| (100.0 * f64::from(i) / 39.0).round_ties_even() as u32).collect()
}

/// `random.sample(range(n), k)`: `k` distinct indices in random order.
fn sample_indices(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<usize> {
    rand::seq::index::sample(rng, n, k).into_vec()
}

fn uuid4(rng: &mut ChaCha8Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = b.iter().fold(String::with_capacity(32), |mut h, x| {
        use std::fmt::Write;
        let _ = write!(h, "{x:02x}");
        h
    });
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

fn letters(rng: &mut ChaCha8Rng, alphabet: &[u8], k: usize) -> String {
    (0..k).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";

/// Riemann zeta for s > 1 (Euler–Maclaurin after 64 terms; scipy's `zeta` to ~1e-15).
fn zeta(s: f64) -> f64 {
    let n = 64.0f64;
    let mut sum: f64 = (1..64).map(|k| f64::from(k).powf(-s)).sum();
    sum += n.powf(1.0 - s) / (s - 1.0) + 0.5 * n.powf(-s);
    // Bernoulli terms B2/2!, B4/4!, B6/6!.
    let t1 = s * n.powf(-s - 1.0) / 12.0;
    let t2 = s * (s + 1.0) * (s + 2.0) * n.powf(-s - 3.0) / 720.0;
    let t3 = s * (s + 1.0) * (s + 2.0) * (s + 3.0) * (s + 4.0) * n.powf(-s - 5.0) / 30240.0;
    sum + t1 - t2 + t3
}

/// Splits `template` at `{context}` and fills each side with `fields`.
fn around_context(template: &str, fields: &[(&str, &str)]) -> Result<(String, String)> {
    let (head, tail) = template.split_once("{context}").expect("every RULER template has a {context}");
    Ok((format(head, fields)?, format(tail, fields)?))
}

impl<'a> Generator<'a> {
    /// A generator for `task` at `length` tokens. `data` must hold what the task needs
    /// ([`Task::needs`]); `count` counts prompt tokens in the model's tokenizer.
    pub fn new(
        task: &'static Task,
        data: &'a RulerData,
        length: usize,
        seed: u64,
        count: &'a Counter<'a>,
    ) -> Result<Self> {
        let missing = |what: &str| Error::RulerData {
            message: format!("task `{}` needs {what}, which was not loaded", task.name),
        };
        let mut g = Self {
            task,
            data,
            count,
            length,
            seed,
            adjectives: Vec::new(),
            nouns: Vec::new(),
            cwe_words: Vec::new(),
            vt_example: None,
            hint: AtomicUsize::new(0),
        };
        match task.kind {
            TaskKind::Niah { haystack, keys, values, .. } => {
                if keys == Kind::Words || values == Kind::Words {
                    let w = data.words.as_ref().ok_or_else(|| missing("the word lists"))?;
                    (g.adjectives, g.nouns) = (distinct(&w.adjectives), distinct(&w.nouns));
                    if g.adjectives.is_empty() || g.nouns.is_empty() {
                        return Err(missing("non-empty adjective and noun lists"));
                    }
                }
                if haystack == Haystack::Essay && data.essay.as_ref().is_none_or(Vec::is_empty) {
                    return Err(missing("the essays"));
                }
            }
            TaskKind::CommonWords { .. } => {
                let mut words = data.words.as_ref().ok_or_else(|| missing("the word lists"))?.all_words();
                words.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
                g.cwe_words = words;
            }
            TaskKind::Qa(QaDataset::Squad) if data.squad.is_none() => return Err(missing("SQuAD")),
            TaskKind::Qa(QaDataset::HotpotQa) if data.hotpotqa.is_none() => return Err(missing("HotpotQA")),
            TaskKind::VariableTracking { .. } => g.vt_example = Some(g.vt_example()?),
            _ => {}
        }
        Ok(g)
    }

    fn rng(&self, index: usize) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(mix(self.seed, &[name_hash(self.task.name), self.length as u64, index as u64]))
    }

    /// The smallest haystack a sample can have.
    fn min_units(&self) -> usize {
        match self.task.kind {
            TaskKind::Niah { haystack: Haystack::Essay, .. } | TaskKind::Qa(QaDataset::Squad) => 1,
            TaskKind::Niah { num_keys, num_values, num_queries, .. } => num_keys.max(num_queries) * num_values,
            TaskKind::VariableTracking { chains, hops } => chains * (hops + 1),
            TaskKind::CommonWords { num_common, .. } => num_common,
            TaskKind::FreqWords { alpha } => (4f64.powf(alpha) * zeta(alpha)).ceil() as usize,
            TaskKind::Qa(QaDataset::HotpotQa) => 10,
        }
    }

    /// Builds sample `index` with `n` haystack units, from the sample's own seed.
    fn build(&self, index: usize, n: usize, depth: Option<f64>) -> Result<Built> {
        let mut rng = self.rng(index);
        match self.task.kind {
            TaskKind::Niah { .. } => self.niah(&mut rng, n, depth),
            TaskKind::VariableTracking { chains, hops } => {
                let (head_example, built) =
                    (self.vt_example.as_deref().unwrap_or(""), Self::vt(&mut rng, n, chains, hops, false)?);
                let example = randomize_example(&mut rng, head_example, hops);
                Ok(Built { head: format!("{example}\n{}", built.head), ..built })
            }
            TaskKind::CommonWords { freq_common, freq_uncommon, num_common } => {
                self.cwe(&mut rng, n, freq_common, freq_uncommon, num_common)
            }
            TaskKind::FreqWords { alpha } => self.fwe(&mut rng, n, alpha),
            TaskKind::Qa(which) => {
                let data = match which {
                    QaDataset::Squad => self.data.squad.as_ref(),
                    QaDataset::HotpotQa => self.data.hotpotqa.as_ref(),
                }
                .expect("checked in new");
                qa(&mut rng, data, index, n)
            }
        }
    }

    fn counted(&self, b: &Built) -> Result<usize> {
        (self.count)(&b.user(), &b.prefix)
    }

    /// Sample `index`, with the needle at `depth` percent (single-needle tasks; other tasks
    /// ignore it), fitted to the length.
    pub fn sample(&self, index: usize, depth: Option<f64>) -> Result<Generated> {
        let depth = if self.task.single_needle() { depth } else { None };
        let ttg = self.task.tokens_to_generate();
        let budget = self.length.saturating_sub(ttg);
        let try_n = |n: usize| -> Result<(bool, Built, usize)> {
            let b = self.build(index, n, depth)?;
            let t = self.counted(&b)?;
            Ok((t <= budget, b, t))
        };
        let min = self.min_units();
        let (ok, b, t) = try_n(min)?;
        if !ok {
            return Err(Error::RulerTooShort { task: self.task.name.into(), length: self.length, needed: t + ttg });
        }
        let mut best = (min, b, t);
        // Bracket the answer: `lo` fits, `hi` does not; start from the last sample's size.
        let mut lo = min;
        let hint = self.hint.load(Ordering::Relaxed);
        let probe = if hint > min {
            hint
        } else {
            let far = min + 16;
            let (_, _, t2) = try_n(far)?;
            let per_unit = ((t2 as f64 - t as f64) / 16.0).max(1e-3);
            min + ((budget as f64 - t as f64) / per_unit).max(1.0) as usize
        };
        let mut step = (probe / 64).max(1);
        let mut hi;
        let (ok, b, t) = try_n(probe)?;
        if ok {
            (lo, best) = (probe, (probe, b, t));
            loop {
                let p = lo + step;
                let (ok, b, t) = try_n(p)?;
                if !ok {
                    hi = p;
                    break;
                }
                (lo, best) = (p, (p, b, t));
                step *= 2;
            }
        } else {
            hi = probe;
            loop {
                let p = hi.saturating_sub(step);
                if p <= lo {
                    break;
                }
                let (ok, b, t) = try_n(p)?;
                if ok {
                    (lo, best) = (p, (p, b, t));
                    break;
                }
                hi = p;
                step *= 2;
            }
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let (ok, b, t) = try_n(mid)?;
            if ok {
                lo = mid;
                best = (mid, b, t);
            } else {
                hi = mid;
            }
        }
        self.hint.store(lo, Ordering::Relaxed);
        let (n, b, t) = best;
        let start = b.head.len();
        let end = start + b.context.len();
        Ok(Generated {
            task: self.task.name.into(),
            index,
            target_length: self.length,
            input: b.user(),
            answer_prefix: b.prefix,
            outputs: b.outputs,
            prompt_tokens: t,
            length: t + ttg,
            depth,
            haystack: n,
            context: start..end,
        })
    }

    /// Sample `index` built with exactly `n` haystack units, counted (for tests of the fit).
    pub fn sample_with(&self, index: usize, n: usize, depth: Option<f64>) -> Result<(String, String, usize)> {
        let depth = if self.task.single_needle() { depth } else { None };
        let b = self.build(index, n, depth)?;
        let t = self.counted(&b)?;
        Ok((b.user(), b.prefix, t))
    }

    fn random_value(&self, rng: &mut ChaCha8Rng, kind: Kind) -> String {
        match kind {
            Kind::Numbers => rng.random_range(1_000_000..=9_999_999u32).to_string(),
            Kind::Words => {
                let a = &self.adjectives[rng.random_range(0..self.adjectives.len())];
                format!("{a}-{}", self.nouns[rng.random_range(0..self.nouns.len())])
            }
            Kind::Uuids => uuid4(rng),
        }
    }

    fn niah(&self, rng: &mut ChaCha8Rng, n: usize, depth: Option<f64>) -> Result<Built> {
        let TaskKind::Niah { haystack, keys: key_kind, values: value_kind, num_keys, num_values, num_queries } =
            self.task.kind
        else {
            unreachable!("niah tasks only")
        };
        // niah.py raises num_needle_k to num_needle_q.
        let num_keys = num_keys.max(num_queries);
        let kind_name = value_kind.name();
        let single = num_queries * num_values == 1;
        let type_v = if single { &kind_name[..kind_name.len() - 1] } else { kind_name };
        let (mut keys, mut values, mut needles) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..num_keys {
            let key = self.random_value(rng, key_kind);
            let mut vs = Vec::new();
            for _ in 0..num_values {
                let v = self.random_value(rng, value_kind);
                needles.push(format(NEEDLE, &[("type_needle_v", kind_name), ("key", &key), ("value", &v)])?);
                vs.push(v);
            }
            keys.push(key);
            values.push(vs);
        }
        needles.shuffle(rng);
        let context = match haystack {
            Haystack::Essay => {
                let essay = self.data.essay.as_deref().expect("checked in new");
                let words: Vec<&str> = essay.iter().cycle().take(n).map(String::as_str).collect();
                let sents = sentences::split(words.join(" ").trim());
                let len = sents.len();
                let mut positions: Vec<usize> = if let Some(d) = depth {
                    vec![(len as f64 * d / 100.0) as usize]
                } else {
                    let all = depths40();
                    sample_indices(rng, all.len(), needles.len())
                        .into_iter()
                        .map(|i| (len as f64 * (f64::from(all[i]) / 100.0)) as usize)
                        .collect()
                };
                positions.sort_unstable();
                let mut bounds = vec![0];
                bounds.extend(positions);
                bounds.push(len);
                let mut pieces = Vec::new();
                for i in 1..bounds.len() {
                    pieces.push(sents[bounds[i - 1]..bounds[i]].join(" "));
                    if i - 1 < needles.len() {
                        pieces.push(needles[i - 1].clone());
                    }
                }
                pieces.join(" ")
            }
            Haystack::Noise | Haystack::Needle => {
                let mut sentences: Vec<String> = if haystack == Haystack::Noise {
                    vec![NOISE.to_string(); n]
                } else {
                    (0..n)
                        .map(|_| {
                            let (k, v) = (self.random_value(rng, key_kind), self.random_value(rng, value_kind));
                            format(NEEDLE, &[("type_needle_v", kind_name), ("key", &k), ("value", &v)])
                        })
                        .collect::<Result<_>>()?
                };
                let mut indexes: Vec<usize> = match depth {
                    Some(d) => vec![((n as f64) * d / 100.0).round() as usize],
                    None => sample_indices(rng, n, needles.len()),
                };
                indexes.sort_unstable_by(|a, b| b.cmp(a));
                for (index, needle) in indexes.into_iter().zip(&needles) {
                    sentences.insert(index, needle.clone());
                }
                sentences.join("\n")
            }
        };
        let indices = sample_indices(rng, num_keys, num_queries);
        let queries: Vec<&str> = indices.iter().map(|&i| keys[i].as_str()).collect();
        let outputs: Vec<String> = indices.iter().flat_map(|&i| values[i].iter().cloned()).collect();
        let query = match queries.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{}, and {last}", rest.join(", ")),
            _ => queries[0].to_string(),
        };
        let (mut template, mut prefix) = (super::NIAH_TEMPLATE.to_string(), super::NIAH_PREFIX.to_string());
        if single {
            for t in [&mut template, &mut prefix] {
                *t = t.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer");
            }
        }
        let fields = [("type_needle_v", type_v), ("query", query.as_str())];
        let (head, tail) = around_context(&template, &fields)?;
        Ok(Built { head, context, tail, prefix: format(&prefix, &fields)?, outputs })
    }

    fn vt(rng: &mut ChaCha8Rng, n: usize, chains: usize, hops: usize, example: bool) -> Result<Built> {
        let k = if example { 3 } else { 5 };
        let mut names: Vec<String> = Vec::new();
        while names.len() < chains * (hops + 1) {
            let v = letters(rng, UPPER, k);
            if !names.contains(&v) {
                names.push(v);
            }
        }
        let mut all_chains = Vec::new();
        for vars in names.chunks(hops + 1) {
            let value = if example { "12345".to_string() } else { rng.random_range(10000..99999u32).to_string() };
            let mut chain = vec![format!("VAR {} = {value}", vars[0])];
            for j in 0..hops {
                chain.push(format!("VAR {} = VAR {} ", vars[j + 1], vars[j]));
            }
            all_chains.push(chain);
        }
        let value = all_chains[0][0].rsplit('=').next().unwrap_or("").trim().to_string();
        let mut sentences = vec![NOISE.to_string(); n];
        for chain in &all_chains {
            let mut positions = sample_indices(rng, sentences.len(), chain.len());
            positions.sort_unstable();
            for (j, (p, c)) in positions.into_iter().zip(chain).enumerate() {
                sentences.insert(p + j, c.clone());
            }
        }
        let context = sentences.join("\n").replace(". \n", ".\n");
        let num_v = (hops + 1).to_string();
        let fields = [("query", value.as_str()), ("num_v", num_v.as_str())];
        let (head, tail) = around_context(VT_TEMPLATE, &fields)?;
        Ok(Built { head, context, tail, prefix: format(VT_PREFIX, &fields)?, outputs: names[..=hops].to_vec() })
    }

    /// variable_tracking.py's in-context example: one chain with three-letter names and value
    /// 12345 in a noise haystack fitted to 500 tokens, with its prompt, prefix and answer.
    fn vt_example(&self) -> Result<String> {
        let TaskKind::VariableTracking { chains, hops } = self.task.kind else { unreachable!("vt only") };
        let rng = ChaCha8Rng::seed_from_u64(mix(self.seed, &[name_hash("vt-example")]));
        let text = |rng: &mut ChaCha8Rng, n: usize| -> Result<String> {
            let b = Self::vt(rng, n, chains, hops, true)?;
            Ok(format!("{}{} {}\n", b.user(), b.prefix, b.outputs.join(" ")))
        };
        let mut n = chains * (hops + 1);
        let mut best = text(&mut rng.clone(), n)?;
        loop {
            let candidate = text(&mut rng.clone(), n + 5)?;
            if (self.count)(&candidate, "")? > VT_EXAMPLE_TOKENS {
                break;
            }
            best = candidate;
            n += 5;
        }
        Ok(best)
    }

    fn cwe(
        &self,
        rng: &mut ChaCha8Rng,
        n: usize,
        freq_common: usize,
        freq_uncommon: usize,
        num_common: usize,
    ) -> Result<Built> {
        let words = &self.cwe_words;
        let example = |rng: &mut ChaCha8Rng, n: usize, cr: usize, ur: usize| -> Result<(String, Vec<String>)> {
            if n > words.len() {
                return Err(Error::RulerData {
                    message: format!(
                        "cwe at {} tokens needs {n} distinct words; wonderwords' lists have {} (RULER falls back to its english_words.json, which longctx does not ship)",
                        self.length,
                        words.len()
                    ),
                });
            }
            let chosen: Vec<&String> = sample_indices(rng, words.len(), n).into_iter().map(|i| &words[i]).collect();
            let (common, uncommon) = chosen.split_at(num_common.min(chosen.len()));
            let mut list: Vec<&String> = Vec::with_capacity(common.len() * cr + uncommon.len() * ur);
            for _ in 0..cr {
                list.extend(common.iter().copied());
            }
            for _ in 0..ur {
                list.extend(uncommon.iter().copied());
            }
            list.shuffle(rng);
            let context = list.iter().enumerate().map(|(i, w)| format!("{}. {w}", i + 1)).collect::<Vec<_>>().join(" ");
            Ok((context, common.iter().map(|w| (*w).clone()).collect()))
        };
        let short = self.length < 4096;
        let (shot, main) = if short { ((20, 3, 1), (6, 1)) } else { ((40, 10, 3), (freq_common, freq_uncommon)) };
        let (shot_context, shot_answer) = example(rng, shot.0, shot.1, shot.2)?;
        let (context, outputs) = example(rng, n, main.0, main.1)?;
        let num_cw = num_common.to_string();
        let fields = [("num_cw", num_cw.as_str()), ("query", "")];
        let full = format!("{CWE_TEMPLATE}{CWE_PREFIX}");
        let numbered =
            shot_answer.iter().enumerate().map(|(i, w)| format!("{}. {w}", i + 1)).collect::<Vec<_>>().join(" ");
        let shot_text = format!(
            "{} {numbered}",
            format(&full, &[("num_cw", num_cw.as_str()), ("context", shot_context.as_str()), ("query", "")])?
        );
        let (head, tail) = around_context(CWE_TEMPLATE, &fields)?;
        Ok(Built { head: format!("{shot_text}\n{head}"), context, tail, prefix: CWE_PREFIX.to_string(), outputs })
    }

    fn fwe(&self, rng: &mut ChaCha8Rng, n: usize, alpha: f64) -> Result<Built> {
        let vocab_size = (self.length.saturating_sub(self.task.tokens_to_generate()) / 50).max(4);
        let mut vocab: Vec<String> = Vec::with_capacity(vocab_size);
        let mut seen = std::collections::HashSet::new();
        while vocab.len() < vocab_size {
            let w = letters(rng, LOWER, 6);
            if seen.insert(w.clone()) {
                vocab.push(w);
            }
        }
        vocab.sort();
        vocab.shuffle(rng);
        vocab[0] = "...".into();
        let z = zeta(alpha);
        let mut words: Vec<&str> = Vec::new();
        for (k, w) in vocab.iter().enumerate() {
            let count = (n as f64 * ((k + 1) as f64).powf(-alpha) / z) as usize;
            words.extend(std::iter::repeat_n(w.as_str(), count));
        }
        words.shuffle(rng);
        let fields = [("query", "")];
        let (head, tail) = around_context(FWE_TEMPLATE, &fields)?;
        Ok(Built {
            head,
            context: words.join(" "),
            tail,
            prefix: FWE_PREFIX.to_string(),
            outputs: vocab[1..4].to_vec(),
        })
    }
}

fn distinct(words: &[String]) -> Vec<String> {
    let set: std::collections::BTreeSet<&String> = words.iter().collect();
    set.into_iter().cloned().collect()
}

/// variable_tracking.py's `randomize_icl`: the example's variable names (its last `hops + 1`
/// words) and its value 12345 replaced by fresh random ones.
fn randomize_example(rng: &mut ChaCha8Rng, example: &str, hops: usize) -> String {
    if example.is_empty() {
        return String::new();
    }
    let words: Vec<&str> = example.split_whitespace().collect();
    let targets: Vec<String> =
        words[words.len().saturating_sub(hops + 1)..].iter().map(std::string::ToString::to_string).collect();
    let mut out = example.to_string();
    for t in targets {
        let fresh = letters(rng, UPPER, t.chars().count());
        out = out.replace(&t, &fresh);
    }
    out.replace("12345", &rng.random_range(10000..99999u32).to_string())
}

fn qa(rng: &mut ChaCha8Rng, data: &QaData, index: usize, n: usize) -> Result<Built> {
    let q = &data.questions[index % data.questions.len()];
    let own = &q.context;
    let mut docs: Vec<usize> = if n < data.docs.len() {
        let need = n.saturating_sub(own.len());
        if need > q.more_context.len() {
            let taken: std::collections::HashSet<usize> = own.iter().chain(&q.more_context).copied().collect();
            let others: Vec<usize> = (0..data.docs.len()).filter(|i| !taken.contains(i)).collect();
            let extra = need - q.more_context.len();
            let mut v: Vec<usize> = own.iter().chain(&q.more_context).copied().collect();
            v.extend(sample_indices(rng, others.len(), extra.min(others.len())).into_iter().map(|i| others[i]));
            v
        } else {
            let mut v = own.clone();
            v.extend(sample_indices(rng, q.more_context.len(), need).into_iter().map(|i| q.more_context[i]));
            v
        }
    } else {
        (0..n).map(|i| i % data.docs.len()).collect()
    };
    docs.shuffle(rng);
    let context = docs
        .iter()
        .enumerate()
        .map(|(i, &d)| format!("Document {}:\n{}", i + 1, data.docs[d]))
        .collect::<Vec<_>>()
        .join("\n\n");
    let fields = [("query", q.query.as_str())];
    let (head, tail) = around_context(QA_TEMPLATE, &fields)?;
    Ok(Built { head, context, tail, prefix: QA_PREFIX.to_string(), outputs: q.outputs.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeta_two_is_pi_squared_over_six() {
        assert!((zeta(2.0) - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-13);
        assert!((zeta(3.0) - 1.202_056_903_159_594_2).abs() < 1e-13);
    }

    #[test]
    fn depths40_are_numpys() {
        let d = depths40();
        assert_eq!(&d[..5], [0, 3, 5, 8, 10]);
        assert_eq!(d[39], 100);
    }

    #[test]
    fn uuids_are_version_4() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let u = uuid4(&mut rng);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
    }
}
