//! The native backend: a Llama-family model on the candle runtime (`longctx-models`), from a
//! GGUF file, a Hugging Face model directory or a hub id.
//!
//! Chat prompts are rendered with the model's own chat template and tokenized without adding
//! special tokens (the template carries them), as transformers' `apply_chat_template` does;
//! raw text is tokenized with them. A prompt that does not fit the window together with the
//! requested new tokens is rejected, never cut.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use candle_core::{DType, Device};
use longctx_core::{
    Backend, BackendError, ChatMessage, Completion, FinishReason, GenerationRequest, PromptInput, Tokenizer, Usage,
};
use longctx_models::chat_template::ChatTemplate;
use longctx_models::generate::{generate_with, Decoding, Generation, GenerationParams, StopReason};
use longctx_models::gguf::load_gguf;
use longctx_models::llama::{CausalLm, Llama, Sequence, WeightFormat};
use longctx_models::load::{is_gguf, load_hf_dir, resolve_model};
use longctx_models::lora::Adapter;
use longctx_models::qmatmul::BlockKind;
use longctx_models::rope::RopeScaling;
use longctx_models::tokenizer::HfTokenizer;
use longctx_models::Loaded;

use crate::Error;

/// Weight precision of safetensors models (GGUF weights run quantized with f32
/// activations), as the command line and experiment files name it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats (exact comparisons with transformers).
    #[default]
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
}

impl Dtype {
    /// The candle dtype.
    pub fn candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

/// The element type of the KV cache, as the command line and experiment files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum KvCacheType {
    /// 32-bit floats (the parity default for f32 models).
    F32,
    /// 16-bit floats: half the memory; attention widens them to f32 as it reads them.
    F16,
}

impl KvCacheType {
    /// The candle dtype.
    pub fn candle(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
        }
    }
}

/// A block format safetensors weights are quantized to at load (llama.cpp's, byte for byte
/// as its reference quantizer), as the command line and experiment files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Quantize {
    /// 8-bit values, one f16 scale per 32.
    #[serde(rename = "q8_0")]
    #[cfg_attr(feature = "clap", value(name = "q8_0"))]
    Q8_0,
    /// 4-bit values, one f16 scale per 32.
    #[serde(rename = "q4_0")]
    #[cfg_attr(feature = "clap", value(name = "q4_0"))]
    Q4_0,
    /// 4-bit values, an f16 scale and minimum per 32.
    #[serde(rename = "q4_1")]
    #[cfg_attr(feature = "clap", value(name = "q4_1"))]
    Q4_1,
    /// bitsandbytes' NF4 (4-bit NormalFloat codes, a scale per 64, double-quantized): the
    /// projections only, dequantized for each product (slow; QLoRA's storage).
    #[serde(rename = "nf4")]
    #[cfg_attr(feature = "clap", value(name = "nf4"))]
    Nf4,
}

impl Quantize {
    /// How the weights are stored.
    pub fn format(self) -> WeightFormat {
        match self {
            Self::Q8_0 => BlockKind::Q8_0.into(),
            Self::Q4_0 => BlockKind::Q4_0.into(),
            Self::Q4_1 => BlockKind::Q4_1.into(),
            Self::Nf4 => WeightFormat::Nf4,
        }
    }
}

/// How to load and run a native model.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeOptions {
    /// Weight dtype of safetensors models (GGUF weights run quantized with f32 activations).
    pub dtype: DType,
    /// RoPE override `KIND:FACTOR` (e.g. `linear:4`, `dynamic:4`, `yarn:4`).
    pub rope_scaling: Option<String>,
    /// The window; default: the model's `max_position_embeddings`, times the override's
    /// factor when there is one.
    pub context_window: Option<usize>,
    /// Prompt tokens per prefill pass.
    pub prefill_chunk: usize,
    /// A LoRA adapter directory in PEFT's format, applied on top of the weights.
    pub adapter: Option<PathBuf>,
    /// The KV cache's element type (default: the model's activation dtype; f32 for GGUF).
    pub kv_cache: Option<KvCacheType>,
    /// Quantize a safetensors model's projections and LM head at load (f32 models only; a
    /// GGUF file is quantized already). An adapter then applies over the quantized base.
    pub quantize: Option<Quantize>,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            rope_scaling: None,
            context_window: None,
            prefill_chunk: 512,
            adapter: None,
            kv_cache: None,
            quantize: None,
        }
    }
}

/// Loads a GGUF file, a model directory or a hub id on `device`, with the adapter of
/// `options` applied.
pub fn load_model(path: &Path, options: &NativeOptions, device: &Device) -> Result<Loaded, Error> {
    if options.quantize.is_some() {
        if is_gguf(path) {
            return Err(Error::Load(format!(
                "{}: a GGUF file is quantized already; --quantize applies to safetensors models",
                path.display()
            )));
        }
        if options.dtype != DType::F32 {
            return Err(Error::Load(format!(
                "{}: quantizing at load takes f32 weights (the products then run on f32 activations); drop the dtype",
                path.display()
            )));
        }
    }
    let mut loaded = load_base(path, options, device)?;
    if let Some(q) = options.quantize {
        loaded
            .model
            .quantize_weights(q.format())
            .map_err(|e| Error::Load(format!("quantizing {} to {q:?}: {e}", path.display())))?;
    }
    if let Some(dir) = &options.adapter {
        let adapter = Adapter::load(dir, loaded.model.config(), device)
            .map_err(|e| Error::Load(format!("adapter {}: {e}", dir.display())))?;
        adapter.apply(&mut loaded.model).map_err(|e| Error::Load(format!("adapter {}: {e}", dir.display())))?;
    }
    loaded.model.set_kv_cache_dtype(options.kv_cache.map(KvCacheType::candle));
    Ok(loaded)
}

fn load_base(path: &Path, options: &NativeOptions, device: &Device) -> Result<Loaded, Error> {
    let rope = options.rope_scaling.as_deref();
    let what = |e: longctx_models::ModelError| Error::Load(format!("loading {}: {e}", path.display()));
    if is_gguf(path) {
        if options.dtype != DType::F32 {
            return Err(Error::Load(format!(
                "{}: GGUF weights run quantized with f32 activations; dtype applies to safetensors models",
                path.display()
            )));
        }
        return load_gguf(path, device, rope).map_err(what);
    }
    let dir = resolve_model(&path.to_string_lossy()).map_err(what)?;
    if !dir.is_dir() {
        return Err(Error::Load(format!(
            "{}: not a model directory (expected config.json, *.safetensors and tokenizer.json)",
            dir.display()
        )));
    }
    load_hf_dir(&dir, options.dtype, device, rope).map_err(what)
}

fn scaling_factor(scaling: &RopeScaling) -> f64 {
    match scaling {
        RopeScaling::None => 1.0,
        RopeScaling::Linear { factor }
        | RopeScaling::DynamicNtk { factor }
        | RopeScaling::Yarn { factor, .. }
        | RopeScaling::Llama3 { factor, .. } => *factor,
    }
}

/// A prompt as the model receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// The text after the chat template (for raw prompts, the text itself).
    pub text: String,
    /// Its token ids (special tokens included).
    pub ids: Vec<u32>,
}

/// Renders `prompt` with `template` and tokenizes it as the native backend and `longctx
/// serve` do.
pub fn render_prompt(
    prompt: &PromptInput,
    tokenizer: &dyn Tokenizer,
    template: Option<&ChatTemplate>,
) -> Result<RenderedPrompt, BackendError> {
    let (text, add_special) = match prompt {
        PromptInput::Chat(messages) => {
            let template = template.ok_or_else(|| {
                BackendError::Rejected("the model has no chat template; send raw text instead".into())
            })?;
            let render =
                |m: &[ChatMessage]| template.render(m, true).map_err(|e| BackendError::Rejected(e.to_string()));
            let text = match messages.split_last() {
                // A final assistant message is a prefix the model continues (RULER's answer
                // prefix): the conversation before it with the generation prompt, then its text.
                Some((last, rest)) if last.role == "assistant" && !rest.is_empty() => render(rest)? + &last.content,
                _ => render(messages)?,
            };
            (text, false)
        }
        PromptInput::Text(text) => (text.clone(), true),
    };
    let ids = tokenizer.encode(&text, add_special).map_err(|e| BackendError::Failed(e.to_string()))?;
    if ids.is_empty() {
        return Err(BackendError::Rejected("the prompt has no tokens".into()));
    }
    Ok(RenderedPrompt { text, ids })
}

/// The native backend. Requests are served one at a time (the model's KV cache is one).
pub struct NativeBackend {
    model: Mutex<Llama>,
    tokenizer: HfTokenizer,
    chat_template: Option<ChatTemplate>,
    window: usize,
    device: Device,
    prefill_chunk: usize,
    name: String,
    /// Bytes of KV cache per token.
    kv_bytes_per_token: usize,
    /// Finished requests' KV caches, kept for the prompt prefixes later requests share.
    prefix_cache: Mutex<PrefixCache>,
}

/// The KV caches of finished batched requests ([`NativeBackend::finish`]) with the token ids
/// they hold, within a byte budget; a new request ([`NativeBackend::start`]) copies the longest
/// prefix it shares with one of them instead of prefilling it again (as llama.cpp's server and
/// vLLM's prefix caching do).
#[derive(Default)]
struct PrefixCache {
    /// Token ids of each cached sequence, the sequence and the bytes it holds; the most
    /// recently used last.
    entries: Vec<(Vec<u32>, Sequence, usize)>,
    budget_bytes: usize,
    bytes: usize,
    stats: PrefixCacheStats,
}

/// What the prefix cache saved so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Requests that started from a cached prefix.
    pub hits: u64,
    /// Prompt tokens taken from the cache instead of prefilled.
    pub reused_tokens: u64,
}

impl std::fmt::Debug for NativeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeBackend").field("name", &self.name).field("window", &self.window).finish_non_exhaustive()
    }
}

impl NativeBackend {
    /// Loads the model at `path` (GGUF file, model directory or hub id) on the CPU.
    pub fn load(path: &Path, options: &NativeOptions) -> Result<Self, Error> {
        let device = Device::Cpu;
        let loaded = load_model(path, options, &device)?;
        let rope = &loaded.model.config().rope;
        let factor = if options.rope_scaling.is_some() { scaling_factor(&rope.scaling) } else { 1.0 };
        let window = options.context_window.unwrap_or((rope.max_position_embeddings as f64 * factor).round() as usize);
        let base_name =
            |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
        let mut name = base_name(path);
        if let Some(adapter) = &options.adapter {
            name = format!("{name}+{}", base_name(adapter));
        }
        let kv_bytes_per_token = loaded.model.config().kv_cache_bytes(1, loaded.model.kv_cache_dtype().size_in_bytes());
        Ok(Self {
            kv_bytes_per_token,
            prefix_cache: Mutex::new(PrefixCache::default()),
            model: Mutex::new(loaded.model),
            tokenizer: loaded.tokenizer,
            chat_template: loaded.chat_template,
            window,
            device,
            prefill_chunk: options.prefill_chunk.max(1),
            name,
        })
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &HfTokenizer {
        &self.tokenizer
    }

    /// The model's chat template, if it has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Tokens the model can attend to (prompt plus generated).
    pub fn window(&self) -> usize {
        self.window
    }

    /// The model's name (its file or directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prompt as the model receives it.
    pub fn render(&self, prompt: &PromptInput) -> Result<RenderedPrompt, BackendError> {
        render_prompt(prompt, &self.tokenizer, self.chat_template.as_ref())
    }

    /// Checks that `prompt_tokens` plus `max_new_tokens` fit the window.
    pub fn check_fits(&self, prompt_tokens: usize, max_new_tokens: usize) -> Result<(), BackendError> {
        if prompt_tokens + max_new_tokens > self.window {
            return Err(BackendError::PromptTooLong { prompt_tokens, max_new_tokens, window: self.window });
        }
        Ok(())
    }

    /// Generates for already rendered prompt ids, calling `on_text` with each new piece of
    /// text as it is produced (pieces that end inside a UTF-8 character or could start a stop
    /// string are held back until they are settled).
    pub fn generate_ids(
        &self,
        ids: &[u32],
        request: &GenerationRequest,
        on_text: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Completion, BackendError> {
        self.generate_ids_until(ids, request, on_text, &|| false)
    }

    /// [`generate_ids`](Self::generate_ids) that stops early, with
    /// [`BackendError::Cancelled`], as soon as `cancelled` returns true (checked after each
    /// token): a server stops working for a client that has gone away.
    pub fn generate_ids_until(
        &self,
        ids: &[u32],
        request: &GenerationRequest,
        mut on_text: Option<&mut dyn FnMut(&str)>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Completion, BackendError> {
        self.check_fits(ids.len(), request.max_new_tokens)?;
        let start = Instant::now();
        let params = self.params(request);
        let decode = |t: &[u32]| self.decode(t);
        let mut text = TextStream::new(request);
        let mut stream = |tokens: &[u32]| {
            if cancelled() {
                return false;
            }
            if let Some(on_text) = on_text.as_mut() {
                if let Some(piece) = text.settled(&decode(tokens)) {
                    on_text(&piece);
                }
            }
            true
        };
        let g = {
            let mut model = self.lock();
            generate_with(&mut *model, ids, &params, &self.device, &decode, &mut stream).map_err(failed)?
        };
        if let (Some(on_text), Some(piece)) = (on_text, text.rest(&g.text)) {
            on_text(&piece);
        }
        completion(g, start)
    }

    fn params(&self, request: &GenerationRequest) -> GenerationParams {
        GenerationParams {
            max_new_tokens: request.max_new_tokens,
            temperature: request.temperature,
            seed: request.seed,
            stop_strings: request.stop.clone(),
            prefill_chunk: self.prefill_chunk,
            ..GenerationParams::default()
        }
    }

    fn decode(&self, tokens: &[u32]) -> String {
        self.tokenizer.decode(tokens, true).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Llama> {
        self.model.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps up to `bytes` of finished batched requests' KV caches for the prompt prefixes later
    /// requests share with them (0, the default, keeps none).
    pub fn set_prefix_cache_bytes(&self, bytes: usize) {
        let mut cache = self.prefix_cache();
        cache.budget_bytes = bytes;
        cache.evict();
    }

    /// Hits and reused tokens of the prefix cache so far.
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.prefix_cache().stats
    }

    fn prefix_cache(&self) -> std::sync::MutexGuard<'_, PrefixCache> {
        self.prefix_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A sequence for `ids` (room for `tokens`) holding the longest prefix of `ids` (at most
    /// `max_shared` tokens) that a cached sequence shares, and that prefix's length; `None`
    /// when no cached prefix applies.
    fn reuse(
        &self,
        model: &Llama,
        ids: &[u32],
        tokens: usize,
        max_shared: usize,
    ) -> candle_core::Result<Option<(Sequence, usize)>> {
        let mut cache = self.prefix_cache();
        let rope = &model.config().rope;
        // Dynamic NTK rescales every position once a sequence outgrows the original window, so
        // keys cached under one length are reused only while both stay within it.
        let within = |n: usize| n <= rope.max_position_embeddings;
        let dynamic = matches!(rope.scaling, RopeScaling::DynamicNtk { .. });
        let best = cache
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (toks, _, _))| !dynamic || (within(toks.len()) && within(tokens)))
            .map(|(i, (toks, seq, _))| {
                let shared = toks.iter().zip(ids).take_while(|(a, b)| a == b).count();
                (i, shared.min(max_shared).min(seq.len()))
            })
            .max_by_key(|&(i, n)| (n, i));
        let Some((i, n)) = best.filter(|&(_, n)| n > 0) else { return Ok(None) };
        let seq = model.fork_sequence(&cache.entries[i].1, n, tokens)?;
        let entry = cache.entries.remove(i);
        cache.entries.push(entry);
        cache.stats.hits += 1;
        cache.stats.reused_tokens += n as u64;
        Ok(Some((seq, n)))
    }

    /// Bytes of KV cache a request of `tokens` tokens in all (prompt and new) holds while it
    /// is decoded.
    pub fn kv_cache_bytes(&self, tokens: usize) -> usize {
        tokens * self.kv_bytes_per_token
    }

    /// Starts a request for batched decoding ([`NativeBackend::step`]): checks that it fits
    /// the window and gives it a sequence of its own, holding the longest prefix of its prompt
    /// found in the prefix cache (at most all but its last token). The rest of the prompt is
    /// fed by the following steps, in chunks, beside the other requests' decode rows.
    pub fn start(&self, ids: &[u32], request: &GenerationRequest) -> Result<Active, BackendError> {
        self.check_fits(ids.len(), request.max_new_tokens)?;
        if ids.is_empty() {
            return Err(BackendError::Rejected("the prompt has no tokens".into()));
        }
        let started = Instant::now();
        let params = self.params(request);
        let (decoding, seq, start) = {
            let model = self.lock();
            let tokens = ids.len() + request.max_new_tokens;
            let (seq, start) = match self.reuse(&model, ids, tokens, ids.len() - 1).map_err(failed)? {
                Some(found) => found,
                None => (model.new_sequence(tokens), 0),
            };
            (Decoding::new(&params, &model.config().eos_token_ids, ids.len()), seq, start)
        };
        Ok(Active {
            seq,
            prompt: ids.to_vec(),
            prompt_fed: start,
            chunk: params.prefill_chunk.max(1),
            done: false,
            decoding,
            next: None,
            text: TextStream::new(request),
            started,
            prefill_s: 0.0,
            decode_started: started,
            cancelled: false,
        })
    }

    /// One forward pass for every unfinished, uncancelled request of `batch`: a decode row for
    /// each request past its prompt, and the next chunk of the prompt (`prefill_chunk` tokens,
    /// up to that many prompt rows in all per step, at least one chunk) for requests still
    /// being prefilled. Each request chooses its next token exactly as it would alone.
    pub fn step(&self, batch: &mut [Active]) -> Result<(), BackendError> {
        let mut budget = self.prefill_chunk;
        let mut running: Vec<(&mut Active, Vec<u32>)> = Vec::new();
        for a in batch.iter_mut().filter(|a| !a.cancelled) {
            let rows = match a.next {
                Some(t) => vec![t],
                None if a.prompt_fed < a.prompt.len() => {
                    // A whole chunk or nothing, so that chunks line up as in a prefill alone.
                    let n = a.chunk.min(a.prompt.len() - a.prompt_fed);
                    if n > budget && budget < self.prefill_chunk {
                        continue;
                    }
                    budget = budget.saturating_sub(n);
                    a.prompt[a.prompt_fed..a.prompt_fed + n].to_vec()
                }
                None => continue,
            };
            running.push((a, rows));
        }
        if running.is_empty() {
            return Ok(());
        }
        let (mut actives, rows): (Vec<&mut Active>, Vec<Vec<u32>>) = running.into_iter().unzip();
        let logits = {
            let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
            let mut seqs: Vec<&mut Sequence> = actives.iter_mut().map(|a| &mut a.seq).collect();
            self.lock().forward_batch(&mut seqs, &refs).map_err(failed)?
        };
        for (row, (a, fed)) in actives.into_iter().zip(&rows).enumerate() {
            if a.next.is_none() {
                a.prompt_fed += fed.len();
                if a.prompt_fed < a.prompt.len() {
                    continue;
                }
                a.prefill_s = a.started.elapsed().as_secs_f64();
                a.decode_started = Instant::now();
            }
            let l = logits.get(row).map_err(failed)?;
            a.next = a.decoding.step(&l, &|t| self.decode(t), &mut |_| true).map_err(failed)?;
            a.done = a.next.is_none();
        }
        Ok(())
    }

    /// The settled text `active` has produced since the last call (nothing after a final stop
    /// token; pieces that end inside a UTF-8 character or could start a stop string wait).
    pub fn new_text(&self, active: &mut Active) -> Option<String> {
        if active.decoding.stop_reason() == Some(StopReason::StopToken) || active.decoding.tokens().is_empty() {
            return None;
        }
        active.text.settled(&self.decode(active.decoding.tokens()))
    }

    /// The completion of a finished (or cancelled) request, and the text not yet returned by
    /// [`NativeBackend::new_text`].
    pub fn finish(&self, active: Active) -> (Result<Completion, BackendError>, Option<String>) {
        let Active { seq, prompt, decoding, mut text, started, prefill_s, decode_started, cancelled, .. } = active;
        // The cache holds the tokens fed so far: the prompt (perhaps but its last token, when
        // no step ran) and the generated tokens fed back (not the last chosen).
        let tokens: Vec<u32> = prompt.iter().chain(decoding.tokens()).copied().take(seq.len()).collect();
        self.prefix_cache().insert(tokens, seq, self.kv_bytes_per_token);
        let g = decoding.finish(&|t| self.decode(t), prefill_s, decode_started.elapsed().as_secs_f64());
        if cancelled || g.stop_reason == StopReason::Cancelled {
            return (Err(BackendError::Cancelled { completion_tokens: g.completion_tokens }), None);
        }
        let rest = text.rest(&g.text);
        (completion(g, started), rest)
    }
}

impl PrefixCache {
    /// Keeps `seq` (holding `tokens`) as the most recent entry, then evicts the oldest entries
    /// over the budget.
    fn insert(&mut self, tokens: Vec<u32>, seq: Sequence, bytes_per_token: usize) {
        if self.budget_bytes == 0 || tokens.is_empty() || tokens.len() != seq.len() {
            return;
        }
        // Entries whose tokens start the new one's are superseded: whatever shares a prefix
        // with them shares at least as much with it.
        let bytes_before: usize = self.entries.iter().map(|e| e.2).sum();
        self.entries.retain(|(t, _, _)| !tokens.starts_with(t));
        self.bytes -= bytes_before - self.entries.iter().map(|e| e.2).sum::<usize>();
        let bytes = seq.capacity() * bytes_per_token;
        self.bytes += bytes;
        self.entries.push((tokens, seq, bytes));
        self.evict();
    }

    /// Drops the least recently used entries until the rest fit the budget.
    fn evict(&mut self) {
        while self.bytes > self.budget_bytes && !self.entries.is_empty() {
            let (_, _, bytes) = self.entries.remove(0);
            self.bytes -= bytes;
        }
    }
}

/// A request decoded together with others ([`NativeBackend::start`], [`NativeBackend::step`]).
pub struct Active {
    seq: Sequence,
    /// The prompt's token ids.
    prompt: Vec<u32>,
    /// Prompt tokens already in the sequence's cache (the rest is fed by the next steps).
    prompt_fed: usize,
    /// Prompt tokens per step.
    chunk: usize,
    /// Whether decoding has ended.
    done: bool,
    decoding: Decoding,
    /// The token to feed next; `None` once decoding has ended.
    next: Option<u32>,
    text: TextStream,
    started: Instant,
    prefill_s: f64,
    decode_started: Instant,
    cancelled: bool,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("tokens", &self.decoding.tokens().len())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl Active {
    /// Whether decoding has ended (or the request was cancelled).
    pub fn is_finished(&self) -> bool {
        self.done || self.cancelled
    }

    /// Stops decoding this request (its client went away); it finishes as cancelled.
    pub fn cancel(&mut self) {
        self.cancelled = true;
    }

    /// Tokens in its KV cache.
    pub fn cached_tokens(&self) -> usize {
        self.seq.len()
    }
}

/// Text streamed as it settles: a piece that ends inside a UTF-8 character, or that a stop
/// string could begin with, is held back until it is settled.
#[derive(Debug)]
struct TextStream {
    hold: usize,
    sent: usize,
}

impl TextStream {
    fn new(request: &GenerationRequest) -> Self {
        Self { hold: request.stop.iter().map(String::len).max().unwrap_or(0), sent: 0 }
    }

    /// The new settled part of `text` (all the text so far).
    fn settled(&mut self, text: &str) -> Option<String> {
        let mut end = text.trim_end_matches('\u{fffd}').len().saturating_sub(self.hold);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (end > self.sent).then(|| {
            let piece = text[self.sent..end].to_string();
            self.sent = end;
            piece
        })
    }

    /// What remains of the final text after what was sent.
    fn rest(&mut self, text: &str) -> Option<String> {
        (text.len() > self.sent && text.is_char_boundary(self.sent)).then(|| {
            let piece = text[self.sent..].to_string();
            self.sent = text.len();
            piece
        })
    }
}

/// A runtime error during generation.
fn failed(e: candle_core::Error) -> BackendError {
    BackendError::Failed(format!("generation failed: {e}"))
}

fn completion(g: Generation, started: Instant) -> Result<Completion, BackendError> {
    if g.stop_reason == StopReason::Cancelled {
        return Err(BackendError::Cancelled { completion_tokens: g.completion_tokens });
    }
    Ok(Completion {
        text: g.text,
        prompt_tokens: g.prompt_tokens as u64,
        completion_tokens: g.completion_tokens as u64,
        latency_s: started.elapsed().as_secs_f64(),
        finish_reason: if g.stop_reason == StopReason::Length { FinishReason::Length } else { FinishReason::Stop },
        usage: Usage {
            prompt_tokens: g.prompt_tokens as u64,
            completion_tokens: g.completion_tokens as u64,
            requests: 1,
            cost_usd: 0.0,
        },
    })
}

impl Backend for NativeBackend {
    fn describe(&self) -> String {
        format!("native:{}", self.name)
    }

    fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError> {
        let rendered = self.render(&request.prompt)?;
        self.generate_ids(&rendered.ids, request, None)
    }
}
