//! The experiment file (TOML) and its expansion into variants.
//!
//! ```toml
//! name = "quickstart"          # runs go to <output_dir>/<name>/
//! output_dir = "runs"          # default "runs"
//!
//! [model]                      # or [[model]] several times (each needs a `name`)
//! backend = "native"           # or "openai"
//! path = "assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
//! max_prompt_tokens = 2000     # the budget every strategy fits the prompt to
//! max_new_tokens = 64          # optional cap on LongBench's per-dataset generation lengths
//!
//! [benchmark]
//! suite = "longbench"          # or "longbench-e"
//! data_dir = "examples/data/longbench"   # default: THUDM/LongBench on the hub
//! datasets = ["qasper", "trec"]          # default: every dataset of the suite
//! limit = 3                    # samples per dataset (default: all)
//!
//! [[strategy]]
//! kind = "full"
//!
//! # RULER instead of LongBench (samples are generated in each model's tokenizer):
//! # [benchmark]
//! # suite = "ruler"
//! # lengths = [1024, 2048, 4096]  # target lengths (prompt + tokens to generate)
//! # samples = 20                  # per task and length
//! # tasks = ["niah_single_1", "vt"]   # default: RULER's 13 (those without data are skipped)
//! # depths = 11                   # single-needle samples spread over 0..100 % in 11 steps
//! # seed = 42
//! # threshold = 85.6              # effective length: longest length whose average reaches it
//! # words = "assets/wonderwords"  # essay = "…/PaulGrahamEssays.json", squad = …, hotpotqa = …
//!
//! [[strategy]]
//! kind = "truncate"
//! side = ["middle", "end"]     # list-valued parameters expand into variants
//!
//! [[strategy]]
//! kind = "rag"
//! k = [5, 20, 50]
//! embedder = { kind = "native", path = "assets/minilm" }
//!
//! [report]
//! baseline = "full"
//!
//! [pricing]
//! budget_usd = 5.0
//! [pricing.prices."gpt-4o-mini"]
//! input = 0.15                 # USD per 1M input tokens
//! output = 0.60                # USD per 1M output tokens
//! per_request = 0.0            # USD per request (e.g. a reranker call)
//! ```
//!
//! Unknown keys are errors. Relative paths are taken from the current directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use longctx_backends::native::{Dtype, KvCacheType, Quantize};
use longctx_backends::openai::{Endpoint, EndpointConfig};
use longctx_context::chunk::ChunkConfig;
use longctx_context::rag::Order;
use longctx_context::truncate::Side;
use longctx_models::encoder::Precision;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// One value or a list of values; lists expand into variants.
///
/// Deserialized by the shape of the value (a list or not) rather than by trying both, so that
/// an error inside it (an unknown key of `[model]`, a wrong dtype) keeps its own message
/// instead of serde's "did not match any variant of untagged enum".
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// Several values.
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        use serde::de::IntoDeserializer;

        struct Shape<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Shape<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
        }
        deserializer.deserialize_any(Shape(std::marker::PhantomData))
    }
}

impl<T: Clone> OneOrMany<T> {
    /// The values: one, or the list.
    pub fn values(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name of the run directory.
    pub name: String,
    /// Where run directories go.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// The model(s).
    pub model: OneOrMany<ModelConfig>,
    /// The data.
    pub benchmark: BenchmarkConfig,
    /// The strategies.
    #[serde(rename = "strategy")]
    pub strategies: Vec<StrategyConfig>,
    /// Report settings.
    #[serde(default)]
    pub report: ReportConfig,
    /// Prices and budget.
    #[serde(default)]
    pub pricing: PricingConfig,
    /// LLM judges of open answers (`[[judge]]`): LongBench-Chat, LongBench's open-ended tasks.
    #[serde(default, rename = "judge", skip_serializing_if = "Vec::is_empty")]
    pub judges: Vec<JudgeConfig>,
}

/// An LLM judge: any OpenAI-compatible chat endpoint (a hosted model, vLLM, `longctx serve`).
/// Its prices are `[pricing] prices.<name>` (or of its `model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    /// The judge's name (its judgements file and column in the report).
    pub name: String,
    /// Base URL of the endpoint.
    pub base_url: String,
    /// The model name sent with each request.
    pub model: String,
    /// Environment variable holding the API key (none: no `Authorization` header).
    pub api_key_env: Option<String>,
    /// Requests in flight (default 4).
    pub concurrency: Option<usize>,
    /// Seconds before a request times out (default 120).
    pub timeout_s: Option<f64>,
    /// Retries of a failed request (429, 5xx, timeouts, connection errors) within one try
    /// (default 4).
    pub max_retries: Option<u32>,
    /// Delay before the first retry, doubled after each (default 0.5 s).
    pub backoff_s: Option<f64>,
    /// The longest reply asked for, in tokens (default 1024).
    pub max_tokens: Option<usize>,
    /// Shuffle the three few-shot answers of each case in an order drawn from this seed and the
    /// judge's name (default: the official order).
    pub shuffle_seed: Option<u64>,
}

impl JudgeConfig {
    /// The endpoint settings, with the judge's prices.
    pub fn endpoint_config(&self, pricing: &PricingConfig) -> EndpointConfig {
        let d = EndpointConfig::default();
        let price = pricing.prices.get(&self.name).copied().unwrap_or_else(|| pricing.price(&self.model));
        EndpointConfig {
            base_url: self.base_url.clone(),
            model: self.model.clone(),
            api_key_env: self.api_key_env.clone(),
            timeout_s: self.timeout_s.unwrap_or(120.0),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            backoff_s: self.backoff_s.unwrap_or(d.backoff_s),
            usd_per_m_input: price.input,
            usd_per_m_output: price.output,
            usd_per_request: price.per_request,
            ..d
        }
    }

    /// Checks one judge entry.
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        if n.is_empty() || n.contains(['/', '\\']) || n.starts_with('.') {
            invalid!("[[judge]] `name` must be a plain file name, not `{n}`");
        }
        if self.base_url.is_empty() || self.model.is_empty() {
            invalid!("judge `{n}` needs `base_url` and `model`");
        }
        if self.concurrency == Some(0) || self.max_tokens == Some(0) {
            invalid!("judge `{n}`: `concurrency` and `max_tokens` must be at least 1");
        }
        Ok(())
    }
}

/// Checks a list of judges: each entry, and distinct names.
pub fn validate_judges(judges: &[JudgeConfig]) -> Result<()> {
    for (i, j) in judges.iter().enumerate() {
        j.validate()?;
        if judges[..i].iter().any(|o| o.name == j.name) {
            invalid!("two judges are named `{}`", j.name);
        }
    }
    Ok(())
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// Which backend serves the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The candle runtime in this process.
    Native,
    /// An OpenAI-compatible server.
    Openai,
}

/// A model and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Name in variant names, reports and the price table (default: the file name or the
    /// served model).
    pub name: Option<String>,
    /// `native` or `openai`.
    pub backend: BackendKind,
    /// Native: GGUF file, model directory or hub id.
    pub path: Option<String>,
    /// OpenAI: the tokenizer used to fit prompts to the budget (GGUF file, model directory
    /// or hub id); it must be the served model's.
    pub tokenizer: Option<String>,
    /// OpenAI: base URL of the server.
    pub base_url: Option<String>,
    /// OpenAI: the served model's name.
    pub model: Option<String>,
    /// OpenAI: environment variable holding the API key (never written anywhere).
    pub api_key_env: Option<String>,
    /// OpenAI: `auto` (chat prompts to /v1/chat/completions, raw text to /v1/completions),
    /// `chat` or `completions`.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// OpenAI: requests in flight.
    pub concurrency: Option<usize>,
    /// OpenAI: seconds before a request times out.
    pub timeout_s: Option<f64>,
    /// OpenAI: retries after the first attempt.
    pub max_retries: Option<u32>,
    /// OpenAI: first retry delay in seconds (doubled after each).
    pub backoff_s: Option<f64>,
    /// Native: `f32`, `f16` or `bf16` (safetensors models).
    pub dtype: Option<Dtype>,
    /// Native: RoPE override `KIND:FACTOR`.
    pub rope_scaling: Option<String>,
    /// Native: a LoRA adapter directory (PEFT's format) applied on top of the model; its
    /// content is part of the variants' configuration hash.
    pub adapter: Option<PathBuf>,
    /// Native: the window (default: from the model's config).
    pub context_window: Option<usize>,
    /// Native: prompt tokens per prefill pass.
    pub prefill_chunk: Option<usize>,
    /// Native: the KV cache's element type, `f32` or `f16` (default: the model's dtype).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_cache: Option<KvCacheType>,
    /// Native: requests decoded together in one forward pass (continuous batching: the
    /// variants of a sample, and the next samples, run as one batch; default 1, one at a
    /// time). Predictions are the same token for token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Native: quantize a safetensors model's projections and LM head at load, `q8_0`,
    /// `q4_0` or `q4_1` (llama.cpp's block formats); part of the variants' hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantize: Option<Quantize>,
    /// Native, with `batch` > 1: GiB of KV cache the requests decoded together may hold
    /// (default 4; one request alone always runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv_budget_gib: Option<f64>,
    /// The prompt budget in tokens (LongBench's `model2maxlen`).
    pub max_prompt_tokens: usize,
    /// A cap on LongBench's generation length per dataset.
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature (0: greedy, the default).
    #[serde(default)]
    pub temperature: f64,
    /// Sampling seed.
    #[serde(default)]
    pub seed: u64,
    /// `false` never uses the chat template; by default LongBench's rule applies (the
    /// few-shot and code datasets go without it).
    pub chat_template: Option<bool>,
}

impl ModelConfig {
    /// The name used in variant names and the price table.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match self.backend {
            BackendKind::Native => {
                let p = self.path.clone().unwrap_or_default();
                let base = p.rsplit(['/', '\\']).next().unwrap_or(&p).to_string();
                base.strip_suffix(".gguf").map_or(base.clone(), str::to_string)
            }
            BackendKind::Openai => self.model.clone().unwrap_or_default(),
        }
    }

    /// The settings that change predictions (not where the server is, how many requests
    /// are in flight, timeouts or keys).
    fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a model config serializes");
        let m = v.as_object_mut().expect("an object");
        for key in [
            "base_url",
            "api_key_env",
            "concurrency",
            "timeout_s",
            "max_retries",
            "backoff_s",
            "prefill_chunk",
            "batch",
            "kv_budget_gib",
        ] {
            m.remove(key);
        }
        if let Some(dir) = &self.adapter {
            m.insert("adapter".into(), serde_json::json!({"path": dir, "sha256": adapter_hash(dir)}));
        }
        v
    }

    /// The HTTP endpoint settings (OpenAI backend).
    pub fn endpoint_config(&self) -> Result<EndpointConfig> {
        let d = EndpointConfig::default();
        Ok(EndpointConfig {
            base_url: self
                .base_url
                .clone()
                .ok_or_else(|| Error::Invalid("the openai backend needs `base_url`".into()))?,
            model: self
                .model
                .clone()
                .ok_or_else(|| Error::Invalid("the openai backend needs `model` (the served model's name)".into()))?,
            api_key_env: self.api_key_env.clone(),
            timeout_s: self.timeout_s.unwrap_or(d.timeout_s),
            max_retries: self.max_retries.unwrap_or(d.max_retries),
            backoff_s: self.backoff_s.unwrap_or(d.backoff_s),
            ..d
        })
    }

    fn validate(&self) -> Result<()> {
        let name = self.display_name();
        let misplaced = |keys: &[(&str, bool)], backend: &str| -> Result<()> {
            for (key, set) in keys {
                if *set {
                    invalid!("model `{name}`: `{key}` does not apply to the {backend} backend");
                }
            }
            Ok(())
        };
        match self.backend {
            BackendKind::Native => {
                if self.path.is_none() {
                    invalid!(
                        "model `{name}`: the native backend needs `path` (a GGUF file, model directory or hub id)"
                    );
                }
                misplaced(
                    &[
                        ("tokenizer", self.tokenizer.is_some()),
                        ("base_url", self.base_url.is_some()),
                        ("model", self.model.is_some()),
                        ("api_key_env", self.api_key_env.is_some()),
                        ("concurrency", self.concurrency.is_some()),
                    ],
                    "native",
                )?;
                if self.batch == Some(0) {
                    invalid!("model `{name}`: `batch` must be at least 1");
                }
                if self.kv_budget_gib.is_some_and(|g| !(g.is_finite() && g > 0.0)) {
                    invalid!("model `{name}`: `kv_budget_gib` must be a positive number of GiB");
                }
            }
            BackendKind::Openai => {
                for (key, set) in [
                    ("base_url", self.base_url.is_some()),
                    ("model", self.model.is_some()),
                    ("tokenizer", self.tokenizer.is_some()),
                ] {
                    if !set {
                        invalid!("model `{name}`: the openai backend needs `{key}`");
                    }
                }
                misplaced(
                    &[
                        ("path", self.path.is_some()),
                        ("dtype", self.dtype.is_some()),
                        ("rope_scaling", self.rope_scaling.is_some()),
                        ("context_window", self.context_window.is_some()),
                        ("adapter", self.adapter.is_some()),
                        ("kv_cache", self.kv_cache.is_some()),
                        ("quantize", self.quantize.is_some()),
                        ("batch", self.batch.is_some()),
                        ("kv_budget_gib", self.kv_budget_gib.is_some()),
                    ],
                    "openai",
                )?;
            }
        }
        if self.max_prompt_tokens == 0 {
            invalid!("model `{name}`: max_prompt_tokens must be positive");
        }
        Ok(())
    }
}

/// Where LongBench-Chat's test cases come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestCasesSource {
    /// A local `test_cases.json`.
    File(PathBuf),
    /// A file of a dataset repository on the Hugging Face hub.
    Hub {
        /// Repository id (`owner/name`), optionally `@revision`.
        hub: String,
        /// The file in the repository (e.g. `LongBench_Chat/test_cases.json`).
        file: String,
    },
}

impl TestCasesSource {
    /// The local path of the file, downloading a hub file into the hub cache.
    pub fn resolve(&self) -> std::result::Result<PathBuf, longctx_bench::Error> {
        match self {
            Self::File(p) => Ok(p.clone()),
            Self::Hub { hub, file } => longctx_bench::chat::hub_test_cases(hub, file),
        }
    }
}

/// Which data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchmarkConfig {
    /// `longbench` or `longbench-e`.
    #[serde(default = "default_suite")]
    pub suite: String,
    /// A directory of `<dataset>.jsonl` files or LongBench's `data.zip`; default: the hub.
    pub data_dir: Option<PathBuf>,
    /// Datasets (default: every dataset of the suite).
    pub datasets: Option<Vec<String>>,
    /// Samples per dataset (first ones in file order).
    pub limit: Option<usize>,
    /// RULER: target lengths in tokens (prompt + tokens to generate).
    pub lengths: Option<Vec<usize>>,
    /// RULER: samples per task and length (default 100).
    pub samples: Option<usize>,
    /// RULER: tasks (default: the 13 of RULER's `synthetic.yaml`).
    pub tasks: Option<Vec<String>>,
    /// RULER: the single-needle tasks' samples are spread over this many needle depths,
    /// 0 to 100 % (default 11); 0 places needles at random as RULER does.
    pub depths: Option<usize>,
    /// RULER: the seed of the generators (default 42).
    pub seed: Option<u64>,
    /// RULER: the effective length's threshold (default 85.6).
    pub threshold: Option<f64>,
    /// RULER: directory of wonderwords' word lists (default `assets/wonderwords`).
    pub words: Option<PathBuf>,
    /// RULER: Paul Graham's essays as RULER's download script writes them.
    pub essay: Option<PathBuf>,
    /// RULER: SQuAD v2 dev JSON (qa_1).
    pub squad: Option<PathBuf>,
    /// RULER: HotpotQA dev JSON (qa_2).
    pub hotpotqa: Option<PathBuf>,
    /// LongBench-Chat: the official `test_cases.json` (a JSON array of `{idx, prompt, query,
    /// answer}`): a local path, or `{ hub = "owner/name[@revision]", file }` in a dataset
    /// repository of the Hugging Face hub.
    pub test_cases: Option<TestCasesSource>,
    /// LongBench-Chat: prompts longer than this many tokens (no special tokens) lose their
    /// middle, as the official script cuts them (default 64,000; never more than the model's
    /// `max_prompt_tokens`).
    pub max_length: Option<usize>,
    /// LongBench-Chat: greedy decoding instead of the official sampling at temperature 1.0.
    pub greedy: Option<bool>,
}

impl BenchmarkConfig {
    /// Checks the settings against the suite.
    fn validate(&self) -> Result<()> {
        let b = self;
        let chat_keys = [
            ("test_cases", b.test_cases.is_some()),
            ("max_length", b.max_length.is_some()),
            ("greedy", b.greedy.is_some()),
        ];
        let ruler_keys = [
            ("lengths", b.lengths.is_some()),
            ("samples", b.samples.is_some()),
            ("tasks", b.tasks.is_some()),
            ("depths", b.depths.is_some()),
            ("seed", b.seed.is_some()),
            ("threshold", b.threshold.is_some()),
            ("words", b.words.is_some()),
            ("essay", b.essay.is_some()),
            ("squad", b.squad.is_some()),
            ("hotpotqa", b.hotpotqa.is_some()),
        ];
        if b.suite != "longbench-chat" {
            if let Some((k, _)) = chat_keys.iter().find(|k| k.1) {
                invalid!("`{k}` is a LongBench-Chat setting; this benchmark's suite is `{}`", b.suite);
            }
        }
        match b.suite.as_str() {
            "longbench-chat" => {
                if b.test_cases.is_none() {
                    invalid!(
                        "suite \"longbench-chat\" needs `test_cases`: the path of LongBench_Chat/test_cases.json from THUDM/LongAlign, or `{{ hub = \"owner/name\", file = \"…\" }}` (a dataset repository of the hub)"
                    );
                }
                let longbench_keys = [("data_dir", b.data_dir.is_some()), ("datasets", b.datasets.is_some())];
                if let Some((k, _)) = longbench_keys.iter().chain(&ruler_keys).find(|k| k.1) {
                    invalid!(
                        "suite \"longbench-chat\" takes `test_cases`, `max_length`, `greedy` and `limit`, not `{k}`"
                    );
                }
                if b.max_length == Some(0) {
                    invalid!("`max_length` must be a positive number of tokens");
                }
            }
            "longbench" | "longbench-e" => {
                if let Some((k, _)) = ruler_keys.iter().find(|k| k.1) {
                    invalid!("`{k}` is a RULER setting; this benchmark's suite is `{}`", b.suite);
                }
            }
            "ruler" => {
                if b.datasets.is_some() || b.data_dir.is_some() || b.limit.is_some() {
                    invalid!(
                        "suite \"ruler\" takes `tasks`, `lengths` and `samples`, not `datasets`, `data_dir` or `limit`"
                    );
                }
                match &b.lengths {
                    None => invalid!("suite \"ruler\" needs `lengths` (e.g. [4096, 8192])"),
                    Some(l) if l.is_empty() || l.contains(&0) => invalid!("`lengths` must be positive token counts"),
                    Some(_) => {}
                }
                if b.samples == Some(0) {
                    invalid!("`samples` must be at least 1");
                }
                if let Some(t) = b.threshold {
                    if !(0.0..=100.0).contains(&t) {
                        invalid!("`threshold` must be between 0 and 100");
                    }
                }
                for t in b.tasks.iter().flatten() {
                    longctx_bench::ruler::task(t)?;
                }
            }
            other => invalid!("suite `{other}` is not one of longbench, longbench-e, longbench-chat, ruler"),
        }
        Ok(())
    }
}

fn default_suite() -> String {
    "longbench".into()
}

// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)]
fn is_f32(p: &Option<Precision>) -> bool {
    p.is_none_or(|p| p == Precision::F32)
}

/// An embedder for RAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EmbedderConfig {
    /// A sentence-transformers directory run natively (e.g. all-MiniLM-L6-v2).
    Native {
        /// The directory.
        path: PathBuf,
        /// Texts per forward pass.
        batch_size: Option<usize>,
        /// Number format of the dense layers (`f32` when absent; `bf16` is fast on AMX CPUs).
        /// Only `bf16` enters the variant hash, so older runs resume.
        #[serde(default, skip_serializing_if = "is_f32")]
        precision: Option<Precision>,
    },
    /// `/v1/embeddings` of an OpenAI-compatible API.
    Openai {
        /// Base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// Environment variable with the API key.
        api_key_env: Option<String>,
        /// Texts per request.
        batch_size: Option<usize>,
    },
}

/// A reranker for advanced RAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RerankerConfig {
    /// An LLM judge over `/v1/chat/completions`.
    Llm {
        /// Base URL.
        base_url: String,
        /// Model name.
        model: String,
        /// Environment variable with the API key.
        api_key_env: Option<String>,
    },
    /// A cross-encoder directory (BERT sequence classifier) run natively.
    CrossEncoder {
        /// The directory.
        path: PathBuf,
    },
}

/// One `[[strategy]]` entry; list-valued parameters expand into variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyConfig {
    /// The whole context with LongBench's middle truncation of the prompt.
    Full {
        /// Variant name (default `full`).
        name: Option<String>,
    },
    /// Cut the context from one side.
    Truncate {
        /// Variant name prefix (default `truncate`).
        name: Option<String>,
        /// `middle`, `end` or `start`.
        side: OneOrMany<Side>,
        /// A context budget of its own.
        max_context_tokens: Option<OneOrMany<usize>>,
    },
    /// Retrieval of the best k chunks of the sample's context.
    Rag {
        /// Variant name prefix (default `rag`, or `rag-rerank` with a reranker).
        name: Option<String>,
        /// Chunks kept.
        k: OneOrMany<usize>,
        /// The embedder.
        embedder: EmbedderConfig,
        /// Chunking (default: 200 characters, no overlap).
        #[serde(default)]
        chunking: Option<ChunkConfig>,
        /// `document` (default) or `score` order of the kept chunks.
        #[serde(default)]
        order: Order,
        /// Query when a sample's input is empty (e.g. summarization).
        query_fallback: Option<String>,
        /// An optional reranker.
        reranker: Option<RerankerConfig>,
        /// Embedding candidates the reranker rescores (default 50).
        candidates: Option<usize>,
    },
    /// LLMLingua-2 compression of the context.
    Compress {
        /// Variant name prefix (default `compress`).
        name: Option<String>,
        /// The LLMLingua-2 model directory (XLM-R token classifier).
        model: PathBuf,
        /// Share of tokens kept.
        rate: OneOrMany<f64>,
        /// Tokens always kept.
        #[serde(default)]
        force_tokens: Vec<String>,
        /// Skip this strategy (with a warning) when the model directory is missing.
        #[serde(default)]
        optional: bool,
    },
}

/// Report settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The variant every other is normalized to (default: the first).
    pub baseline: Option<String>,
}

/// Prices of one model or endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input tokens.
    #[serde(default)]
    pub input: f64,
    /// USD per million output tokens.
    #[serde(default)]
    pub output: f64,
    /// USD per request.
    #[serde(default)]
    pub per_request: f64,
}

impl Price {
    /// The cost in US dollars of tokens and requests at these prices.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64, requests: u64) -> f64 {
        (prompt_tokens as f64 * self.input + completion_tokens as f64 * self.output) / 1e6
            + requests as f64 * self.per_request
    }
}

/// Prices per model or endpoint name, and the budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    /// Stop (resumably) before the run's cost would exceed this many US dollars.
    pub budget_usd: Option<f64>,
    /// Prices by model name (generation) or endpoint model name (embeddings, reranker).
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

impl PricingConfig {
    /// The prices of a model or endpoint (zero when not listed).
    pub fn price(&self, name: &str) -> Price {
        self.prices.get(name).copied().unwrap_or_default()
    }
}

/// One strategy with every parameter fixed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VariantStrategy {
    /// Full context.
    Full,
    /// Truncation.
    Truncate {
        /// Side.
        side: Side,
        /// Context budget.
        max_context_tokens: Option<usize>,
    },
    /// RAG.
    Rag {
        /// k.
        k: usize,
        /// Embedder.
        embedder: EmbedderConfig,
        /// Chunking.
        chunking: ChunkConfig,
        /// Order.
        order: Order,
        /// Query fallback.
        query_fallback: Option<String>,
        /// Reranker and candidates.
        reranker: Option<RerankerConfig>,
        /// Candidates.
        candidates: usize,
    },
    /// Compression.
    Compress {
        /// Model dir.
        model: PathBuf,
        /// Rate.
        rate: f64,
        /// Force tokens.
        force_tokens: Vec<String>,
    },
}

/// A model × strategy with every parameter fixed: one directory of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    /// Directory name.
    pub name: String,
    /// Index into the experiment's models.
    #[serde(skip)]
    pub model_index: usize,
    /// Model name.
    pub model: String,
    /// The strategy.
    pub strategy: VariantStrategy,
    /// The variant name without the swept parameters (variants of one group differ only by
    /// `params`).
    pub group: String,
    /// Swept numeric parameters (`k`, `rate`, `max_context_tokens`).
    pub params: BTreeMap<String, f64>,
    /// Hash of everything that changes this variant's predictions.
    pub hash: String,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Middle => "middle",
        Side::End => "end",
        Side::Start => "start",
    }
}

/// SHA-256 of an adapter directory's `adapter_config.json` and `adapter_model.safetensors`
/// (`missing` when they cannot be read: loading the model then says why).
fn adapter_hash(dir: &std::path::Path) -> String {
    let mut h = Sha256::new();
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        match fs_err::read(dir.join(file)) {
            Ok(bytes) => h.update(&bytes),
            Err(_) => return "missing".into(),
        }
    }
    h.finalize().iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A short hex SHA-256 of a JSON value.
pub fn hash_json(v: &serde_json::Value) -> String {
    let digest = Sha256::digest(v.to_string().as_bytes());
    digest.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

impl Experiment {
    /// Parses and validates an experiment file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let e: Experiment = toml::from_str(text)?;
        e.validate()?;
        Ok(e)
    }

    /// The models, in file order.
    pub fn models(&self) -> Vec<ModelConfig> {
        self.model.values()
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            invalid!("`name` must be a plain directory name, not `{}`", self.name);
        }
        let models = self.models();
        if models.is_empty() {
            invalid!("no model");
        }
        for m in &models {
            m.validate()?;
        }
        if models.len() > 1 {
            let mut names: Vec<String> = models.iter().map(ModelConfig::display_name).collect();
            if models.iter().any(|m| m.name.is_none()) {
                invalid!("with several models, give each a `name`");
            }
            names.sort();
            names.dedup();
            if names.len() != models.len() {
                invalid!("two models have the same name");
            }
        }
        if self.strategies.is_empty() {
            invalid!("no [[strategy]]");
        }
        self.benchmark.validate()?;
        validate_judges(&self.judges)?;
        if let Some(b) = self.pricing.budget_usd {
            if b.is_nan() || b < 0.0 {
                invalid!("budget_usd must be a non-negative number");
            }
        }
        Ok(())
    }

    /// The variants, in file order (models outermost), with unique names.
    pub fn variants(&self) -> Result<Vec<Variant>> {
        let models = self.models();
        let mut out: Vec<Variant> = Vec::new();
        for (mi, model) in models.iter().enumerate() {
            let prefix = if models.len() > 1 { format!("{}-", model.display_name()) } else { String::new() };
            for s in &self.strategies {
                for (name, group, params, strategy) in expand(s)? {
                    let mut identity = serde_json::json!({"model": model.identity(), "strategy": strategy});
                    if self.benchmark.suite == "ruler" {
                        // Samples are generated: the same ids hold other samples under another seed.
                        identity["ruler_seed"] = serde_json::json!(self.benchmark.seed.unwrap_or(42));
                    }
                    if self.benchmark.suite == "longbench-chat" {
                        identity["longbench_chat"] = serde_json::json!({
                            "max_length": self.benchmark.max_length.unwrap_or(longctx_bench::chat::MAX_LENGTH),
                            "greedy": self.benchmark.greedy.unwrap_or(false),
                        });
                    }
                    out.push(Variant {
                        name: format!("{prefix}{name}"),
                        model_index: mi,
                        model: model.display_name(),
                        hash: hash_json(&identity),
                        strategy,
                        group: format!("{prefix}{group}"),
                        params,
                    });
                }
            }
        }
        let mut names: Vec<&str> = out.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        for w in names.windows(2) {
            if w[0] == w[1] {
                invalid!("two variants are named `{}`; give the strategies distinct `name`s", w[0]);
            }
        }
        Ok(out)
    }
}

type Expanded = (String, String, BTreeMap<String, f64>, VariantStrategy);

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The variants of one strategy entry: (name, group, swept params, strategy).
fn expand(s: &StrategyConfig) -> Result<Vec<Expanded>> {
    let mut out = Vec::new();
    match s {
        StrategyConfig::Full { name } => {
            let n = name.clone().unwrap_or_else(|| "full".into());
            out.push((n.clone(), n, BTreeMap::new(), VariantStrategy::Full));
        }
        StrategyConfig::Truncate { name, side, max_context_tokens } => {
            let sides = side.values();
            let limits: Vec<Option<usize>> =
                max_context_tokens.as_ref().map_or(vec![None], |m| m.values().into_iter().map(Some).collect());
            for &side in &sides {
                for &limit in &limits {
                    let base = name.clone().unwrap_or_else(|| "truncate".into());
                    let group = format!("{base}-{}", side_name(side));
                    let mut params = BTreeMap::new();
                    let n = match limit {
                        Some(l) => {
                            params.insert("max_context_tokens".into(), l as f64);
                            format!("{group}-{l}")
                        }
                        None => group.clone(),
                    };
                    out.push((n, group, params, VariantStrategy::Truncate { side, max_context_tokens: limit }));
                }
            }
        }
        StrategyConfig::Rag { name, k, embedder, chunking, order, query_fallback, reranker, candidates } => {
            let base = name.clone().unwrap_or_else(|| if reranker.is_some() { "rag-rerank" } else { "rag" }.into());
            for k in k.values() {
                if k == 0 {
                    invalid!("rag: k must be positive");
                }
                out.push((
                    format!("{base}-k{k}"),
                    base.clone(),
                    BTreeMap::from([("k".to_string(), k as f64)]),
                    VariantStrategy::Rag {
                        k,
                        embedder: embedder.clone(),
                        chunking: chunking.clone().unwrap_or_default(),
                        order: *order,
                        query_fallback: query_fallback.clone(),
                        reranker: reranker.clone(),
                        candidates: candidates.unwrap_or(50),
                    },
                ));
            }
        }
        StrategyConfig::Compress { name, model, rate, force_tokens, optional } => {
            if *optional && !model.is_dir() {
                tracing::warn!("skipping compression: {} is not there (optional = true)", model.display());
                return Ok(out);
            }
            let base = name.clone().unwrap_or_else(|| "compress".into());
            for rate in rate.values() {
                if rate.is_nan() || rate <= 0.0 || rate > 1.0 {
                    invalid!("compress: rate {rate} is not in (0, 1]");
                }
                out.push((
                    format!("{base}-r{}", fmt_num(rate)),
                    base.clone(),
                    BTreeMap::from([("rate".to_string(), rate)]),
                    VariantStrategy::Compress { model: model.clone(), rate, force_tokens: force_tokens.clone() },
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
[model]
backend = "native"
path = "m.gguf"
max_prompt_tokens = 100
[benchmark]
datasets = ["qasper"]
"#;

    #[test]
    fn lists_expand_into_named_variants() {
        let text = format!(
            "{BASE}\n[[strategy]]\nkind = \"full\"\n[[strategy]]\nkind = \"truncate\"\nside = [\"middle\", \"end\"]\n[[strategy]]\nkind = \"rag\"\nk = [5, 20]\nembedder = {{ kind = \"native\", path = \"e\" }}\n"
        );
        let e = Experiment::parse(&text).unwrap();
        let v = e.variants().unwrap();
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["full", "truncate-middle", "truncate-end", "rag-k5", "rag-k20"]);
        assert_eq!(v[3].group, "rag");
        assert_eq!(v[4].params["k"], 20.0);
        assert_ne!(v[3].hash, v[4].hash);
        // The hash ignores where the model is served from, not what it is.
        let again = Experiment::parse(&text.replace("max_prompt_tokens = 100", "max_prompt_tokens = 101")).unwrap();
        assert_ne!(again.variants().unwrap()[0].hash, v[0].hash);
        // An embedder's precision is part of a RAG variant's hash only when it is set.
        let f32 = text.replace("path = \"e\" }", "path = \"e\", precision = \"f32\" }");
        let bf16 = text.replace("path = \"e\" }", "path = \"e\", precision = \"bf16\" }");
        let (f32, bf16) = (Experiment::parse(&f32).unwrap(), Experiment::parse(&bf16).unwrap());
        assert_eq!(f32.variants().unwrap()[3].hash, v[3].hash);
        assert_ne!(bf16.variants().unwrap()[3].hash, f32.variants().unwrap()[3].hash);
        assert_eq!(bf16.variants().unwrap()[0].hash, v[0].hash);
        let bad = text.replace("path = \"e\" }", "path = \"e\", precision = \"f16\" }");
        assert!(Experiment::parse(&bad).unwrap_err().to_string().contains("unknown variant `f16`"));
    }

    #[test]
    fn unknown_keys_and_misplaced_settings_are_errors() {
        let bad = format!("{BASE}\n[[strategy]]\nkind = \"full\"\ntypo = 1\n");
        assert!(Experiment::parse(&bad).unwrap_err().to_string().contains("typo"));
        let bad = BASE.replace("path = \"m.gguf\"", "path = \"m.gguf\"\nbase_url = \"http://x\"")
            + "\n[[strategy]]\nkind = \"full\"\n";
        assert!(Experiment::parse(&bad).unwrap_err().to_string().contains("base_url"));
        let bad = BASE.replace("path = \"m.gguf\"", "path = \"m.gguf\"\ndtype = \"f64\"")
            + "\n[[strategy]]\nkind = \"full\"\n";
        assert!(Experiment::parse(&bad).unwrap_err().to_string().contains("unknown variant `f64`"));
        let bad =
            BASE.replace("path = \"m.gguf\"", "path = \"m.gguf\"\ntypo_key = 1") + "\n[[strategy]]\nkind = \"full\"\n";
        assert!(Experiment::parse(&bad).unwrap_err().to_string().contains("unknown field `typo_key`"));
        let dup = format!("{BASE}\n[[strategy]]\nkind = \"full\"\n[[strategy]]\nkind = \"full\"\n");
        assert!(Experiment::parse(&dup).unwrap().variants().unwrap_err().to_string().contains("full"));
    }

    #[test]
    fn the_shipped_examples_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = fs_err::read_to_string(&path).unwrap();
            // Training files (`longctx train`) have a [data] table; their test is in longctx-train.
            if !text.lines().any(|l| l.trim() == "[data]") {
                let e = Experiment::parse(&text).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                assert!(!e.variants().unwrap().is_empty(), "{}", path.display());
                n += 1;
            }
        }
        assert_eq!(n, 15);
    }

    #[test]
    fn an_adapters_content_is_part_of_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("adapter_config.json"), "{}").unwrap();
        fs_err::write(dir.path().join("adapter_model.safetensors"), "weights 1").unwrap();
        let text = BASE.replace("path = \"m.gguf\"", &format!("path = \"m.gguf\"\nadapter = {:?}", dir.path()))
            + "\n[[strategy]]\nkind = \"full\"\n";
        let plain = Experiment::parse(&format!("{BASE}\n[[strategy]]\nkind = \"full\"\n")).unwrap().variants().unwrap();
        let first = Experiment::parse(&text).unwrap().variants().unwrap();
        assert_ne!(first[0].hash, plain[0].hash);
        fs_err::write(dir.path().join("adapter_model.safetensors"), "weights 2").unwrap();
        let second = Experiment::parse(&text).unwrap().variants().unwrap();
        assert_ne!(first[0].hash, second[0].hash);
        let openai = "name = \"t\"\n[model]\nbackend = \"openai\"\nbase_url = \"http://x\"\nmodel = \"m\"\ntokenizer = \"t\"\nmax_prompt_tokens = 10\nadapter = \"a\"\n[benchmark]\n[[strategy]]\nkind = \"full\"\n";
        assert!(Experiment::parse(openai).unwrap_err().to_string().contains("`adapter` does not apply"));
    }

    #[test]
    fn optional_compression_without_its_model_is_skipped() {
        let text = format!("{BASE}\n[[strategy]]\nkind = \"compress\"\nmodel = \"/nonexistent\"\nrate = [0.5]\noptional = true\n[[strategy]]\nkind = \"full\"\n");
        let v = Experiment::parse(&text).unwrap().variants().unwrap();
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn several_models_prefix_their_variants() {
        let text = r#"
name = "t"
[[model]]
name = "a"
backend = "native"
path = "m.gguf"
max_prompt_tokens = 100
rope_scaling = "linear:4"
[[model]]
name = "b"
backend = "openai"
base_url = "http://127.0.0.1:1"
model = "m"
tokenizer = "m.gguf"
max_prompt_tokens = 100
[benchmark]
[[strategy]]
kind = "full"
"#;
        let v = Experiment::parse(text).unwrap().variants().unwrap();
        assert_eq!(v.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["a-full", "b-full"]);
        assert_eq!(v[1].model_index, 1);
    }
}
