//! From an experiment file to what a run needs: variants, datasets, loaded models and
//! strategies, and the request each sample becomes. Shared by `longctx run` and
//! `longctx prompt`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use longctx_backends::batch::{BatchLimits, BatchedBackend};
use longctx_backends::native::{render_prompt, NativeBackend, NativeOptions, RenderedPrompt};
use longctx_backends::openai::{Endpoint, EndpointConfig, OpenAiBackend, OpenAiChat, OpenAiEmbedder};
use longctx_bench::dataset::{self, DataSource, DatasetSpec, Suite};
use longctx_bench::prompt;
use longctx_bench::ruler::{self, data::DataPaths, data::RulerData, generate::Generated, generate::Generator, Task};
use longctx_context::embed::{CachedEmbedder, SentenceEmbedder};
use longctx_context::llmlingua2::{CompressOptions, LlmLingua2};
use longctx_context::rerank::{CrossEncoder, LlmReranker};
use longctx_context::strategy::{Applied, Compress, ContextStrategy, FullContext, Query, Rag, Truncate};
use longctx_core::{Backend, BackendError, ChatMessage, Embedder, GenerationRequest, PromptInput, Reranker, Sample};
use longctx_models::chat_template::ChatTemplate;
use longctx_models::load::load_tokenizer;
use longctx_models::tokenizer::HfTokenizer;

use crate::experiment::{
    BackendKind, EmbedderConfig, Experiment, ModelConfig, PricingConfig, RerankerConfig, Variant, VariantStrategy,
};
use crate::{Error, Result};

/// Texts the shared embedding cache holds before it is emptied.
const EMBEDDING_CACHE: usize = 200_000;

/// An experiment file resolved: variants and datasets, before any model is loaded.
pub struct Plan {
    /// The experiment file's text.
    pub text: String,
    /// Parsed.
    pub experiment: Experiment,
    /// Its models.
    pub models: Vec<ModelConfig>,
    /// Its variants.
    pub variants: Vec<Variant>,
    /// The suite.
    pub suite: Suite,
    /// Where the data comes from.
    pub source: DataSource,
    /// The datasets, in the order given (LongBench suites; empty for RULER).
    pub datasets: Vec<&'static DatasetSpec>,
    /// The RULER suite's tasks and lengths, when the suite is `ruler`.
    pub ruler: Option<RulerPlan>,
    /// LongBench-Chat's test cases and settings, when the suite is `longbench-chat`.
    pub chat: Option<ChatPlan>,
}

/// The name of LongBench-Chat's predictions file in a variant's directory (`longbench-chat.jsonl`).
pub const CHAT_DATASET: &str = "longbench-chat";

/// What a LongBench-Chat run generates.
pub struct ChatPlan {
    /// The test cases, in file order.
    pub cases: Vec<longctx_bench::chat::TestCase>,
    /// Prompts are cut in the middle above this many tokens (and above the model's budget).
    pub max_length: usize,
    /// Sampling temperature of the answers: 1.0 as the official script, 0 when greedy.
    pub temperature: f64,
}

impl ChatPlan {
    fn new(b: &crate::experiment::BenchmarkConfig) -> Result<Self> {
        let path = b.test_cases.as_ref().expect("validated").resolve()?;
        let mut cases = longctx_bench::chat::read_test_cases(&path)?;
        if let Some(n) = b.limit {
            cases.truncate(n);
        }
        Ok(Self {
            cases,
            max_length: b.max_length.unwrap_or(longctx_bench::chat::MAX_LENGTH),
            temperature: if b.greedy.unwrap_or(false) { 0.0 } else { 1.0 },
        })
    }

    /// The test cases as samples: the prompt is the context (no template around it), the query
    /// the input, the reference answer the only answer.
    pub fn samples(&self) -> Vec<Sample> {
        self.cases
            .iter()
            .map(|c| {
                let mut s = Sample::new(c.idx.to_string(), c.prompt.clone(), c.query.clone());
                s.answers = vec![c.answer.clone()];
                s.dataset = CHAT_DATASET.to_string();
                s
            })
            .collect()
    }
}

/// What a RULER run generates: tasks × lengths, each a "dataset" of the run store
/// (`<task>-<length>.jsonl`).
pub struct RulerPlan {
    /// (task, length, file stem) in run order: lengths outermost, RULER's task order within.
    pub sets: Vec<(&'static Task, usize, String)>,
    /// Samples per task and length.
    pub samples: usize,
    /// Needle depths of the single-needle tasks' samples (empty: random, as RULER).
    pub depths: Vec<f64>,
    /// The generators' seed.
    pub seed: u64,
    /// The effective length's threshold.
    pub threshold: f64,
    /// The data the tasks draw on.
    pub data: RulerData,
    /// Tasks left out for want of data, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl RulerPlan {
    fn new(b: &crate::experiment::BenchmarkConfig) -> Result<Self> {
        let names: Vec<String> = match &b.tasks {
            Some(t) => t.clone(),
            None => ruler::TASKS.iter().map(|t| t.name.to_string()).collect(),
        };
        let paths = DataPaths {
            words: b.words.clone(),
            essay: b.essay.clone(),
            squad: b.squad.clone(),
            hotpotqa: b.hotpotqa.clone(),
        };
        let mut tasks = Vec::new();
        let mut skipped = Vec::new();
        let mut needs = Vec::new();
        for name in &names {
            let t = ruler::task(name)?;
            let missing: Vec<String> = t.needs().into_iter().filter_map(|n| paths.missing(n)).collect();
            if missing.is_empty() {
                needs.extend(t.needs());
                tasks.push(t);
            } else {
                skipped.push((name.clone(), missing.join("; ")));
            }
        }
        for (t, why) in &skipped {
            eprintln!("RULER task `{t}` skipped: {why}");
        }
        if tasks.is_empty() {
            invalid!("no RULER task can run: each lacks its data (see above)");
        }
        let data = RulerData::load(&paths, &needs)?;
        let mut lengths = b.lengths.clone().unwrap_or_default();
        lengths.sort_unstable();
        lengths.dedup();
        let sets =
            lengths.iter().flat_map(|&l| tasks.iter().map(move |t| (*t, l, format!("{}-{l}", t.name)))).collect();
        Ok(Self {
            sets,
            samples: b.samples.unwrap_or(100),
            depths: ruler::depths(b.depths.unwrap_or(11)),
            seed: b.seed.unwrap_or(42),
            threshold: b.threshold.unwrap_or(ruler::DEFAULT_THRESHOLD),
            data,
            skipped,
        })
    }

    /// The ids of a set's samples (known before any model is loaded).
    pub fn ids(&self) -> Vec<String> {
        (0..self.samples).map(|i| i.to_string()).collect()
    }

    /// The needle depth of sample `index` of `task`: depths in turn for single-needle tasks.
    pub fn depth(&self, task: &Task, index: usize) -> Option<f64> {
        (task.single_needle() && !self.depths.is_empty()).then(|| self.depths[index % self.depths.len()])
    }

    /// Generates a set's samples in `model`'s tokenizer and chat template.
    pub fn generate(&self, task: &'static Task, length: usize, model: &ModelRuntime) -> Result<Vec<Generated>> {
        let count = |user: &str, prefix: &str| -> longctx_bench::Result<usize> {
            let request = model.ruler_request(task, user.to_string(), prefix);
            model
                .render(&request)
                .map(|r| r.ids.len())
                .map_err(|e| longctx_bench::Error::Tokenizer(longctx_core::TokenizeError(e.to_string())))
        };
        let g = Generator::new(task, &self.data, length, self.seed, &count)?;
        (0..self.samples).map(|i| g.sample(i, self.depth(task, i)).map_err(Error::from)).collect()
    }
}

/// A generated RULER sample as the strategies see it: the haystack is the context, the text
/// after it the input; the template is the text before it, then `{context}{input}`.
pub fn ruler_sample(g: &Generated, dataset: &str) -> (Sample, String) {
    let (head, context, tail) = g.parts();
    let mut sample = Sample::new(g.index.to_string(), context, tail);
    sample.answers.clone_from(&g.outputs);
    sample.length = g.length as u64;
    sample.dataset = dataset.to_string();
    let template = format!("{}{{context}}{{input}}", head.replace('{', "{{").replace('}', "}}"));
    (sample, template)
}

impl Plan {
    /// Reads and resolves an experiment file; errors name it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path)?;
        Self::parse(text).map_err(|e| e.in_file(path))
    }

    /// Resolves the text of an experiment file.
    pub fn parse(text: String) -> Result<Self> {
        let experiment = Experiment::parse(&text)?;
        let variants = experiment.variants()?;
        // RULER generates its samples; LongBench-Chat reads its test file.
        let (ruler, chat) = match experiment.benchmark.suite.as_str() {
            "ruler" => (Some(RulerPlan::new(&experiment.benchmark)?), None),
            "longbench-chat" => (None, Some(ChatPlan::new(&experiment.benchmark)?)),
            _ => (None, None),
        };
        if ruler.is_some() || chat.is_some() {
            let models = experiment.models();
            return Ok(Self {
                text,
                experiment,
                models,
                variants,
                suite: Suite::LongBench,
                source: DataSource::official_hub(),
                datasets: Vec::new(),
                ruler,
                chat,
            });
        }
        let suite = if experiment.benchmark.suite == "longbench-e" { Suite::LongBenchE } else { Suite::LongBench };
        let source = experiment.benchmark.data_dir.as_ref().map_or_else(DataSource::official_hub, DataSource::local);
        let spec_of = |name: &str| match suite {
            Suite::LongBench => dataset::dataset(name),
            Suite::LongBenchE => dataset::dataset_e(name),
        };
        let datasets = if let Some(names) = &experiment.benchmark.datasets {
            names.iter().map(|n| spec_of(n)).collect::<Result<Vec<_>, _>>()?
        } else {
            let all = dataset::DATASETS.iter().filter(|d| suite == Suite::LongBench || d.in_longbench_e);
            if let DataSource::Dir(dir) = &source {
                // A local directory: the datasets it has.
                all.filter(|d| {
                    let f = dataset::file_name(d, suite);
                    dir.join(&f).is_file() || dir.join("data").join(&f).is_file()
                })
                .collect()
            } else {
                all.collect()
            }
        };
        if datasets.is_empty() {
            invalid!("no datasets to run (none given, and none found in the data directory)");
        }
        let models = experiment.models();
        Ok(Self { text, experiment, models, variants, suite, source, datasets, ruler: None, chat: None })
    }

    /// The samples of a dataset, the first `limit` of them.
    pub fn samples(&self, spec: &DatasetSpec, limit: Option<usize>) -> Result<Vec<Sample>> {
        let mut samples = dataset::load(&self.source, spec.name, self.suite)?;
        if let Some(n) = limit.or(self.experiment.benchmark.limit) {
            samples.truncate(n);
        }
        Ok(samples)
    }

    /// The baseline variant of the report.
    pub fn baseline(&self) -> String {
        self.experiment.report.baseline.clone().unwrap_or_else(|| self.variants[0].name.clone())
    }
}

/// A loaded model: the backend, and the tokenizer and chat template prompts are fitted with.
pub struct ModelRuntime {
    /// The model's settings.
    pub config: ModelConfig,
    /// What generates.
    pub backend: Arc<dyn Backend>,
    local: Local,
}

/// Where the tokenizer and chat template come from.
enum Local {
    /// The native model's own.
    Native(Arc<NativeBackend>),
    /// A copy of the served model's, loaded here (HTTP backends, or any other backend).
    Own(Box<(HfTokenizer, Option<ChatTemplate>)>),
}

impl ModelRuntime {
    /// Loads a native model, or connects an HTTP backend and loads its tokenizer.
    pub fn load(config: &ModelConfig) -> Result<Self> {
        let in_model = |source: Error| Error::Model { name: config.display_name(), source: Box::new(source) };
        match config.backend {
            BackendKind::Native => {
                let path = config.path.as_deref().expect("validated");
                let options = NativeOptions {
                    dtype: config.dtype.unwrap_or_default().candle(),
                    rope_scaling: config.rope_scaling.clone(),
                    context_window: config.context_window,
                    prefill_chunk: config.prefill_chunk.unwrap_or(512),
                    adapter: config.adapter.clone(),
                    kv_cache: config.kv_cache,
                    quantize: config.quantize,
                };
                let native = Arc::new(NativeBackend::load(Path::new(path), &options).map_err(|e| in_model(e.into()))?);
                let backend: Arc<dyn Backend> = match config.batch {
                    Some(max_batch) if max_batch > 1 => {
                        let defaults = BatchLimits::default();
                        let limits = BatchLimits {
                            max_batch,
                            kv_budget_bytes: config
                                .kv_budget_gib
                                .map_or(defaults.kv_budget_bytes, |gib| (gib * f64::from(1u32 << 30)) as usize),
                        };
                        Arc::new(BatchedBackend::new(Arc::clone(&native), limits).map_err(|e| in_model(e.into()))?)
                    }
                    _ => native.clone(),
                };
                Ok(Self { config: config.clone(), backend, local: Local::Native(native) })
            }
            BackendKind::Openai => {
                let tok_path = config.tokenizer.as_deref().expect("validated");
                let (tokenizer, chat_template) =
                    load_tokenizer(Path::new(tok_path)).map_err(|e| in_model(Error::from(e).in_file(tok_path)))?;
                let backend =
                    OpenAiBackend::new(config.endpoint_config()?, config.endpoint, config.concurrency.unwrap_or(8))
                        .map_err(|e| in_model(e.into()))?;
                Ok(Self::with_backend(config, Arc::new(backend), tokenizer, chat_template))
            }
        }
    }

    /// A runtime over any backend, with the tokenizer and chat template that prompts are
    /// fitted and counted with (they must be the served model's).
    pub fn with_backend(
        config: &ModelConfig,
        backend: Arc<dyn Backend>,
        tokenizer: HfTokenizer,
        chat_template: Option<ChatTemplate>,
    ) -> Self {
        Self { config: config.clone(), backend, local: Local::Own(Box::new((tokenizer, chat_template))) }
    }

    /// The request for a fitted prompt of a dataset: wrapped in the chat template unless
    /// LongBench skips it for the dataset (or the model config turns it off), with the
    /// dataset's generation length (capped) and stop strings.
    pub fn request(&self, spec: &DatasetSpec, prompt_text: String) -> GenerationRequest {
        let use_chat = !spec.skip_chat_template && self.config.chat_template != Some(false);
        let official = prompt::max_new_tokens(spec);
        GenerationRequest {
            prompt: if use_chat {
                PromptInput::Chat(vec![ChatMessage::new("user", prompt_text)])
            } else {
                PromptInput::Text(prompt_text)
            },
            max_new_tokens: self.config.max_new_tokens.map_or(official, |cap| cap.min(official)),
            stop: if spec.stop_at_newline { vec!["\n".into()] } else { Vec::new() },
            temperature: self.config.temperature,
            seed: self.config.seed,
        }
    }

    /// The request for a RULER prompt: the user turn, then the answer prefix starting the
    /// assistant's turn (raw text, prompt then prefix, when the chat template is off), the
    /// task's `tokens_to_generate` (capped by `max_new_tokens`).
    pub fn ruler_request(&self, task: &Task, prompt_text: String, prefix: &str) -> GenerationRequest {
        let budget = task.tokens_to_generate();
        GenerationRequest {
            prompt: if self.config.chat_template == Some(false) {
                PromptInput::Text(prompt_text + prefix)
            } else {
                PromptInput::Chat(vec![ChatMessage::new("user", prompt_text), ChatMessage::new("assistant", prefix)])
            },
            max_new_tokens: self.config.max_new_tokens.map_or(budget, |cap| cap.min(budget)),
            stop: Vec::new(),
            temperature: self.config.temperature,
            seed: self.config.seed,
        }
    }

    /// The request for a LongBench-Chat prompt: one user turn (in the chat template unless
    /// the model config turns it off), the official 1024 new tokens (capped by
    /// `max_new_tokens`), at `temperature`.
    pub fn chat_request(&self, prompt_text: String, temperature: f64) -> GenerationRequest {
        let budget = longctx_bench::chat::MAX_NEW_TOKENS;
        GenerationRequest {
            prompt: if self.config.chat_template == Some(false) {
                PromptInput::Text(prompt_text)
            } else {
                PromptInput::Chat(vec![ChatMessage::new("user", prompt_text)])
            },
            max_new_tokens: self.config.max_new_tokens.map_or(budget, |cap| cap.min(budget)),
            stop: Vec::new(),
            temperature,
            seed: self.config.seed,
        }
    }

    /// The native model, if this is one.
    pub fn native(&self) -> Option<&NativeBackend> {
        match &self.local {
            Local::Native(n) => Some(n),
            Local::Own(..) => None,
        }
    }

    /// The tokenizer prompts are fitted with: the model's own.
    pub fn tokenizer(&self) -> &HfTokenizer {
        match &self.local {
            Local::Native(n) => n.tokenizer(),
            Local::Own(h) => &h.0,
        }
    }

    fn chat_template(&self) -> Option<&ChatTemplate> {
        match &self.local {
            Local::Native(n) => n.chat_template(),
            Local::Own(h) => h.1.as_ref(),
        }
    }

    /// What the model is given for `request`: with `endpoint = "chat"` an HTTP backend sends
    /// raw text as one user message, which the server wraps in the chat template.
    pub fn model_input<'a>(&self, request: &'a GenerationRequest) -> Cow<'a, PromptInput> {
        match &request.prompt {
            PromptInput::Text(text) if self.native().is_none() && self.config.endpoint == Endpoint::Chat => {
                Cow::Owned(PromptInput::Chat(vec![ChatMessage::new("user", text.clone())]))
            }
            prompt => Cow::Borrowed(prompt),
        }
    }

    /// The prompt as the model receives it (after the chat template), with its tokens. For
    /// an HTTP backend it is rendered locally with the tokenizer's template, as the server
    /// is expected to.
    pub fn render(&self, request: &GenerationRequest) -> Result<RenderedPrompt, BackendError> {
        render_prompt(&self.model_input(request), self.tokenizer(), self.chat_template())
    }
}

/// Builds strategies, sharing one cached embedder per embedder configuration.
#[derive(Default)]
pub struct StrategyFactory {
    embedders: HashMap<String, Arc<dyn Embedder>>,
    compressors: HashMap<PathBuf, Arc<LlmLingua2>>,
}

fn endpoint(base_url: &str, model: &str, api_key_env: Option<&String>, pricing: &PricingConfig) -> EndpointConfig {
    let price = pricing.price(model);
    EndpointConfig {
        base_url: base_url.to_string(),
        model: model.to_string(),
        api_key_env: api_key_env.cloned(),
        usd_per_m_input: price.input,
        usd_per_m_output: price.output,
        usd_per_request: price.per_request,
        ..EndpointConfig::default()
    }
}

impl StrategyFactory {
    fn embedder(&mut self, config: &EmbedderConfig, pricing: &PricingConfig) -> Result<Arc<dyn Embedder>> {
        let key = serde_json::to_string(config)?;
        if let Some(e) = self.embedders.get(&key) {
            return Ok(e.clone());
        }
        let inner: Arc<dyn Embedder> = match config {
            EmbedderConfig::Native { path, batch_size, precision } => {
                let mut e = SentenceEmbedder::load(path)
                    .and_then(|e| e.with_precision(precision.unwrap_or_default()))
                    .map_err(|e| Error::from(e).in_file(path))?;
                if let Some(b) = batch_size {
                    e = e.with_batch_size(*b);
                }
                Arc::new(e)
            }
            EmbedderConfig::Openai { base_url, model, api_key_env, batch_size } => {
                let mut c = endpoint(base_url, model, api_key_env.as_ref(), pricing);
                if let Some(b) = batch_size {
                    c.batch_size = *b;
                }
                Arc::new(OpenAiEmbedder::new(c)?)
            }
        };
        let cached: Arc<dyn Embedder> = Arc::new(CachedEmbedder::new(inner, EMBEDDING_CACHE));
        self.embedders.insert(key, cached.clone());
        Ok(cached)
    }

    /// The strategy of a variant.
    pub fn build(&mut self, variant: &Variant, pricing: &PricingConfig) -> Result<Box<dyn ContextStrategy>> {
        let in_variant = |source: Error| Error::Variant { name: variant.name.clone(), source: Box::new(source) };
        Ok(match &variant.strategy {
            VariantStrategy::Full => Box::new(FullContext),
            VariantStrategy::Truncate { side, max_context_tokens } => {
                Box::new(Truncate { side: *side, max_context_tokens: *max_context_tokens })
            }
            VariantStrategy::Rag { k, embedder, chunking, order, query_fallback, reranker, candidates } => {
                let embedder = self.embedder(embedder, pricing).map_err(in_variant)?;
                let reranker: Option<(Arc<dyn Reranker>, usize)> = match reranker {
                    None => None,
                    Some(RerankerConfig::Llm { base_url, model, api_key_env }) => {
                        let chat = OpenAiChat::new(endpoint(base_url, model, api_key_env.as_ref(), pricing))
                            .map_err(|e| in_variant(e.into()))?;
                        Some((Arc::new(LlmReranker::new(Arc::new(chat))), *candidates))
                    }
                    Some(RerankerConfig::CrossEncoder { path }) => {
                        let ce = CrossEncoder::load(path).map_err(|e| in_variant(Error::from(e).in_file(path)))?;
                        Some((Arc::new(ce), *candidates))
                    }
                };
                Box::new(Rag {
                    embedder,
                    reranker,
                    chunking: chunking.clone(),
                    k: *k,
                    order: *order,
                    separator: "\n".into(),
                    query: query_fallback.clone().map_or(Query::Input, Query::InputOr),
                })
            }
            VariantStrategy::Compress { model, rate, force_tokens } => {
                let compressor = if let Some(c) = self.compressors.get(model) {
                    c.clone()
                } else {
                    let c =
                        Arc::new(LlmLingua2::load(model, None).map_err(|e| in_variant(Error::from(e).in_file(model)))?);
                    self.compressors.insert(model.clone(), c.clone());
                    c
                };
                let options = CompressOptions { rate: *rate, force_tokens: force_tokens.clone(), ..Default::default() };
                Box::new(Compress { compressor, options })
            }
        })
    }
}

/// The strategy's prompt for a generated RULER sample.
pub fn apply_ruler(
    strategy: &dyn ContextStrategy,
    sample: &Sample,
    template: &str,
    model: &ModelRuntime,
) -> Result<Applied> {
    strategy.apply(sample, template, model.tokenizer(), model.config.max_prompt_tokens).map_err(Error::from)
}

/// The prompt of a LongBench-Chat case: with full context, the official middle cut to
/// `max_length` tokens (no special tokens; the model's `max_prompt_tokens` if smaller);
/// another strategy fits the prompt (as its context, with no template around it) to that
/// budget.
pub fn apply_chat(
    strategy: &dyn ContextStrategy,
    full: bool,
    sample: &Sample,
    max_length: usize,
    model: &ModelRuntime,
) -> Result<Applied> {
    let budget = max_length.min(model.config.max_prompt_tokens);
    if !full {
        return strategy.apply(sample, "{context}", model.tokenizer(), budget).map_err(Error::from);
    }
    let t = longctx_bench::chat::truncate_prompt(&sample.context, model.tokenizer(), budget)?;
    let after = if t.truncated {
        longctx_core::Tokenizer::encode(model.tokenizer(), &t.text, false).map_err(longctx_bench::Error::from)?.len()
    } else {
        t.original_tokens
    };
    Ok(Applied {
        prompt: t.text,
        context_tokens_before: t.original_tokens,
        // As full context elsewhere: the prompt is built from the whole context, then cut.
        context_tokens_after: t.original_tokens,
        prompt_tokens_before: t.original_tokens,
        prompt_tokens: after,
        truncated: t.truncated,
        n_chunks: None,
        kept_chunks: None,
        usage: longctx_core::Usage::default(),
    })
}

/// The strategy's prompt for a sample, with the dataset's official template.
pub fn apply(
    strategy: &dyn ContextStrategy,
    spec: &DatasetSpec,
    sample: &Sample,
    model: &ModelRuntime,
) -> Result<Applied> {
    strategy
        .apply(sample, prompt::template(spec), model.tokenizer(), model.config.max_prompt_tokens)
        .map_err(Error::from)
}
