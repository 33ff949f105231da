//! Context strategies as experiment axes: each takes a sample, its dataset's prompt template,
//! the target model's tokenizer and a token budget, and returns the prompt the model receives
//! with what was done to get it (tokens before and after, chunks kept, cost).
//!
//! Every strategy ends with LongBench's middle truncation of the whole prompt to the budget,
//! so a prompt never exceeds the window; `Applied::truncated` says when that cut was needed
//! (for full context it is the official baseline's own cut).

use std::sync::Arc;

use longctx_core::{Embedder, Reranker, Sample, Tokenizer, Usage};
use serde::{Deserialize, Serialize};

use crate::chunk::ChunkConfig;
use crate::llmlingua2::{CompressOptions, LlmLingua2};
use crate::rag::{Order, Retrieval};
use crate::truncate::{truncate, Side};
use crate::Error;

/// What a strategy produced for one sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The prompt text (before any chat template).
    pub prompt: String,
    /// Tokens of the sample's context (no special tokens).
    pub context_tokens_before: usize,
    /// Tokens of the context the prompt was built from (no special tokens).
    pub context_tokens_after: usize,
    /// Tokens of the prompt before the final middle cut (special tokens included).
    pub prompt_tokens_before: usize,
    /// Tokens of `prompt` (special tokens included).
    pub prompt_tokens: usize,
    /// Whether the final middle cut to the budget was needed.
    pub truncated: bool,
    /// Number of chunks of the context (RAG).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n_chunks: Option<usize>,
    /// Kept chunk ids, in prompt order (RAG).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_chunks: Option<Vec<usize>>,
    /// Embedding, reranking or other model calls this sample cost.
    pub usage: Usage,
}

/// A way of fitting a sample's context into the model's budget.
pub trait ContextStrategy: Send + Sync {
    /// A short name for reports (e.g. `rag-k20`).
    fn name(&self) -> String;
    /// The prompt for `sample` with `template` (LongBench's `{context}`/`{input}` format),
    /// fitted to `budget` tokens of `tokenizer`.
    fn apply(
        &self,
        sample: &Sample,
        template: &str,
        tokenizer: &dyn Tokenizer,
        budget: usize,
    ) -> Result<Applied, Error>;
}

fn fill(template: &str, sample: &Sample, context: &str) -> Result<String, Error> {
    let s = Sample { context: context.to_string(), ..sample.clone() };
    longctx_bench::prompt::fill(template, &s, &sample.dataset).map_err(|e| Error::Config(e.to_string()))
}

fn count(tokenizer: &dyn Tokenizer, text: &str, special: bool) -> Result<usize, Error> {
    Ok(tokenizer.encode(text, special)?.len())
}

/// Fills the template with `context` and applies the final middle cut; `context_tokens_before`
/// is the token count of the sample's own context (counted once per sample by the caller).
fn finish(
    sample: &Sample,
    template: &str,
    tokenizer: &dyn Tokenizer,
    budget: usize,
    context: &str,
    context_tokens_before: usize,
    usage: Usage,
) -> Result<Applied, Error> {
    let prompt = fill(template, sample, context)?;
    let t = truncate(&prompt, tokenizer, budget, Side::Middle)?;
    let context_tokens_after =
        if context == sample.context { context_tokens_before } else { count(tokenizer, context, false)? };
    Ok(Applied {
        prompt: t.text,
        context_tokens_before,
        context_tokens_after,
        prompt_tokens_before: t.tokens_before,
        prompt_tokens: t.tokens_after,
        truncated: t.truncated,
        n_chunks: None,
        kept_chunks: None,
        usage,
    })
}

/// The whole context; LongBench's official middle truncation of the prompt to the budget.
#[derive(Debug, Clone, Copy, Default)]
pub struct FullContext;

impl ContextStrategy for FullContext {
    fn name(&self) -> String {
        "full".into()
    }
    fn apply(
        &self,
        sample: &Sample,
        template: &str,
        tokenizer: &dyn Tokenizer,
        budget: usize,
    ) -> Result<Applied, Error> {
        let before = count(tokenizer, &sample.context, false)?;
        finish(sample, template, tokenizer, budget, &sample.context, before, Usage::default())
    }
}

/// Cut the context (not the instructions around it) from one side so that the prompt fits
/// the budget, or `max_context_tokens` when that is smaller.
#[derive(Debug, Clone, Copy)]
pub struct Truncate {
    /// Which part of the context goes.
    pub side: Side,
    /// A context budget of its own (e.g. to compare with RAG at equal tokens).
    pub max_context_tokens: Option<usize>,
}

impl ContextStrategy for Truncate {
    fn name(&self) -> String {
        let side = match self.side {
            Side::Middle => "middle",
            Side::End => "end",
            Side::Start => "start",
        };
        match self.max_context_tokens {
            Some(n) => format!("truncate-{side}-{n}"),
            None => format!("truncate-{side}"),
        }
    }

    fn apply(
        &self,
        sample: &Sample,
        template: &str,
        tokenizer: &dyn Tokenizer,
        budget: usize,
    ) -> Result<Applied, Error> {
        // Tokens the template and the input take with an empty context.
        let overhead = count(tokenizer, &fill(template, sample, "")?, true)?;
        let mut room = budget.saturating_sub(overhead);
        if let Some(n) = self.max_context_tokens {
            room = room.min(n);
        }
        // `truncate` counts special tokens; a context is counted without them here.
        let specials = count(tokenizer, "", true)?;
        let mut before = None;
        // Token boundaries can shift where the context meets the template: shrink until the
        // prompt fits (a few tokens at most).
        for _ in 0..4 {
            let cut = truncate(&sample.context, tokenizer, room + specials, self.side)?;
            let before = *before.get_or_insert(cut.tokens_before.saturating_sub(specials));
            let prompt = fill(template, sample, &cut.text)?;
            let prompt_tokens = count(tokenizer, &prompt, true)?;
            if prompt_tokens <= budget {
                // The prompt fits: the final middle cut has nothing to do, so the prompt is
                // not encoded again.
                return Ok(Applied {
                    prompt,
                    context_tokens_before: before,
                    context_tokens_after: cut.tokens_after.saturating_sub(specials),
                    prompt_tokens_before: prompt_tokens,
                    prompt_tokens,
                    truncated: false,
                    n_chunks: None,
                    kept_chunks: None,
                    usage: Usage::default(),
                });
            }
            if room == 0 {
                return finish(sample, template, tokenizer, budget, &cut.text, before, Usage::default());
            }
            room = room.saturating_sub(prompt_tokens - budget);
        }
        let before = before.expect("the loop ran");
        finish(sample, template, tokenizer, budget, "", before, Usage::default())
    }
}

/// Where the retrieval query comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// The sample's `input`.
    Input,
    /// A fixed text (for datasets whose input is empty, e.g. a summary instruction).
    Text(String),
    /// The sample's `input`, or the text when the input is empty.
    InputOr(String),
}

impl Query {
    /// The query text for `sample`.
    pub fn of<'a>(&'a self, sample: &'a Sample) -> &'a str {
        match self {
            Query::Text(t) => t,
            Query::InputOr(t) if sample.input.trim().is_empty() => t,
            Query::Input | Query::InputOr(_) => &sample.input,
        }
    }
}

/// Retrieval-augmented context: the best `k` chunks of the sample's own context.
pub struct Rag {
    /// The embedder of chunks and query.
    pub embedder: Arc<dyn Embedder>,
    /// An optional reranker and the number of embedding candidates it rescores.
    pub reranker: Option<(Arc<dyn Reranker>, usize)>,
    /// How the context is chunked.
    pub chunking: ChunkConfig,
    /// Chunks kept.
    pub k: usize,
    /// Order of the kept chunks.
    pub order: Order,
    /// Put between kept chunks that are not adjacent.
    pub separator: String,
    /// The query.
    pub query: Query,
}

impl Rag {
    /// Naive RAG: `k` chunks of 200 characters, document order, the sample's input as query.
    pub fn naive(embedder: Arc<dyn Embedder>, k: usize) -> Self {
        Self {
            embedder,
            reranker: None,
            chunking: ChunkConfig::default(),
            k,
            order: Order::Document,
            separator: "\n".into(),
            query: Query::Input,
        }
    }

    /// The prompts for several k from one embedding (and reranking) pass. Each result carries
    /// the whole retrieval's usage: what that variant costs when run on its own.
    pub fn apply_ks(
        &self,
        sample: &Sample,
        template: &str,
        tokenizer: &dyn Tokenizer,
        budget: usize,
        ks: &[usize],
    ) -> Result<Vec<Applied>, Error> {
        let query = self.query.of(sample);
        let mut r = Retrieval::new(&sample.context, query, &self.chunking, self.embedder.as_ref(), Some(tokenizer))?;
        if let Some((reranker, candidates)) = &self.reranker {
            r = r.rerank(&sample.context, query, reranker.as_ref(), *candidates)?;
        }
        let before = count(tokenizer, &sample.context, false)?;
        ks.iter()
            .map(|&k| {
                let sel = r.select(&sample.context, k, self.order, &self.separator);
                let mut a = finish(sample, template, tokenizer, budget, &sel.text, before, r.usage)?;
                a.n_chunks = Some(sel.n_chunks);
                a.kept_chunks = Some(sel.ids);
                Ok(a)
            })
            .collect()
    }
}

impl ContextStrategy for Rag {
    fn name(&self) -> String {
        let kind = if self.reranker.is_some() { "rag-rerank" } else { "rag" };
        format!("{kind}-k{}", self.k)
    }
    fn apply(
        &self,
        sample: &Sample,
        template: &str,
        tokenizer: &dyn Tokenizer,
        budget: usize,
    ) -> Result<Applied, Error> {
        let mut v = self.apply_ks(sample, template, tokenizer, budget, &[self.k])?;
        Ok(v.remove(0))
    }
}

/// LLMLingua-2 compression of the context at a target rate.
pub struct Compress {
    /// The compressor.
    pub compressor: Arc<LlmLingua2>,
    /// compress_prompt's arguments (rate, force tokens …).
    pub options: CompressOptions,
}

impl ContextStrategy for Compress {
    fn name(&self) -> String {
        format!("llmlingua2-{}", self.options.rate)
    }
    fn apply(
        &self,
        sample: &Sample,
        template: &str,
        tokenizer: &dyn Tokenizer,
        budget: usize,
    ) -> Result<Applied, Error> {
        let c = self.compressor.compress(&sample.context, &self.options)?;
        let before = count(tokenizer, &sample.context, false)?;
        finish(sample, template, tokenizer, budget, &c.compressed_prompt, before, Usage::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Chars;
    use longctx_core::{CallError, Embeddings};

    /// Embeds a text as (share of 'a', share of other characters), so chunks full of 'a'
    /// match a query of 'a's.
    struct Letters;
    impl Embedder for Letters {
        fn embed(&self, texts: &[&str]) -> Result<Embeddings, CallError> {
            let vectors = texts
                .iter()
                .map(|t| {
                    let a = t.chars().filter(|&c| c == 'a').count() as f32;
                    let n = t.chars().count().max(1) as f32;
                    let v = [a / n, 1.0 - a / n];
                    let norm = (v[0] * v[0] + v[1] * v[1]).sqrt().max(1e-12);
                    vec![v[0] / norm, v[1] / norm]
                })
                .collect();
            Ok(Embeddings { vectors, usage: Usage { prompt_tokens: 7, ..Usage::default() } })
        }
    }

    fn sample(context: &str, input: &str) -> Sample {
        Sample::new("x", context, input)
    }

    const TEMPLATE: &str = "C: {context}\nQ: {input}";

    #[test]
    fn full_context_cuts_the_middle_of_the_prompt() {
        let s = sample(&"x".repeat(100), "why?");
        let a = FullContext.apply(&s, TEMPLATE, &Chars, 40).unwrap();
        assert!(a.truncated);
        assert_eq!(a.prompt_tokens, 40);
        assert!(a.prompt.starts_with("C: x") && a.prompt.ends_with("Q: why?"));
        let a = FullContext.apply(&s, TEMPLATE, &Chars, 1000).unwrap();
        assert!(!a.truncated);
        assert_eq!(a.prompt, format!("C: {}\nQ: why?", "x".repeat(100)));
    }

    #[test]
    fn truncation_keeps_the_instructions() {
        let context: String = ('a'..='z').cycle().take(200).collect();
        let s = sample(&context, "q");
        for side in [Side::End, Side::Start, Side::Middle] {
            let a = Truncate { side, max_context_tokens: None }.apply(&s, TEMPLATE, &Chars, 50).unwrap();
            assert!(a.prompt_tokens <= 50, "{side:?}: {}", a.prompt_tokens);
            assert!(!a.truncated, "{side:?}: the context cut suffices");
            assert!(a.prompt.starts_with("C: ") && a.prompt.ends_with("\nQ: q"));
            let kept = &a.prompt[3..a.prompt.len() - 5];
            match side {
                Side::End => assert!(context.starts_with(kept)),
                Side::Start => assert!(context.ends_with(kept)),
                Side::Middle => {
                    assert!(context.starts_with(&kept[..10]) && context.ends_with(&kept[kept.len() - 10..]));
                }
            }
        }
        let a = Truncate { side: Side::End, max_context_tokens: Some(10) }.apply(&s, TEMPLATE, &Chars, 500).unwrap();
        assert_eq!(a.context_tokens_after, 10);
    }

    #[test]
    fn rag_sweep_shares_one_retrieval() {
        let context = format!("{}{}{}", "b".repeat(10), "a".repeat(10), "c".repeat(10));
        let s = sample(&context, "aaaa");
        let mut rag = Rag::naive(Arc::new(Letters), 1);
        rag.chunking.size = 10;
        let v = rag.apply_ks(&s, TEMPLATE, &Chars, 1000, &[1, 2, 3]).unwrap();
        assert_eq!(v[0].kept_chunks.as_deref(), Some(&[1][..]));
        assert_eq!(v[0].prompt, format!("C: {}\nQ: aaaa", "a".repeat(10)));
        assert_eq!(v[1].kept_chunks.as_ref().unwrap().len(), 2);
        assert_eq!(v[2].prompt, format!("C: {context}\nQ: aaaa"));
        assert!(v.iter().all(|a| a.n_chunks == Some(3) && a.usage.prompt_tokens == 7));
        assert_eq!(rag.name(), "rag-k1");
        // An empty input falls back to the configured query.
        rag.query = Query::InputOr("aaa".into());
        assert_eq!(rag.query.of(&sample("", "")), "aaa");
    }

    /// Scores a passage by its number of 'c's, at 5 prompt tokens per call.
    struct ByC;
    impl Reranker for ByC {
        fn rerank(&self, _query: &str, candidates: &[&str]) -> Result<longctx_core::Scores, CallError> {
            Ok(longctx_core::Scores {
                scores: candidates.iter().map(|c| c.chars().filter(|&x| x == 'c').count() as f32).collect(),
                usage: Usage { prompt_tokens: 5, ..Usage::default() },
            })
        }
    }

    #[test]
    fn a_reranker_reorders_the_candidates_it_sees() {
        let context = format!("{}{}{}", "b".repeat(10), "a".repeat(10), "c".repeat(10));
        let s = sample(&context, "aaaa");
        let mut rag = Rag::naive(Arc::new(Letters), 1);
        rag.chunking.size = 10;
        // Embedding order is 1 ('a'), then 0 and 2 tied (lower id first); the reranker puts 2 first.
        rag.reranker = Some((Arc::new(ByC), 3));
        let a = rag.apply(&s, TEMPLATE, &Chars, 1000).unwrap();
        assert_eq!(a.kept_chunks.as_deref(), Some(&[2][..]));
        assert_eq!(a.usage.prompt_tokens, 7 + 5);
        assert_eq!(rag.name(), "rag-rerank-k1");
        // Seeing only the best candidate, the reranker cannot bring chunk 2 forward.
        rag.reranker = Some((Arc::new(ByC), 1));
        assert_eq!(rag.apply(&s, TEMPLATE, &Chars, 1000).unwrap().kept_chunks.as_deref(), Some(&[1][..]));
    }
}
