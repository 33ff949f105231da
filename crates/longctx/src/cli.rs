//! Command-line arguments (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
pub(crate) use longctx_backends::native::{Dtype, KvCacheType, Quantize};
use longctx_models::encoder::Precision;

/// Evaluate long-context strategies (full context, truncation, RAG, compression, RoPE
/// scaling) on LongBench with scores identical to the official scorer.
#[derive(Debug, Parser)]
#[command(name = "longctx", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an experiment: every model × strategy × parameter on every dataset, written to
    /// `runs/<experiment>/<variant>/<dataset>.jsonl` as each sample finishes; a rerun resumes.
    ///
    /// Ends with each variant's result.json (eval.py's) and a report (Markdown and HTML).
    Run(RunArgs),
    /// Rate a run's open answers with LLM judges (LongBench-Chat's judge request; LongBench's
    /// QA and summarization tasks without few-shot examples), then the judges' means, totals
    /// and agreement in RUN_DIR/judgements.json and the report. Resumes: what a judge answered
    /// is never asked again.
    Judge(JudgeArgs),
    /// Print exactly what the model receives for one sample of an experiment (after the
    /// strategy and the chat template), with its token counts.
    Prompt(PromptArgs),
    /// Write the report of a run directory: scores per dataset × variant, normalized to the
    /// baseline, per length bucket, k sweep, tokens kept, cost per query; Markdown, HTML and
    /// plots (PNG and SVG) in RUN_DIR/report/.
    Report(ReportArgs),
    /// Serve a local model over an OpenAI-compatible HTTP API (/v1/models,
    /// /v1/chat/completions with streaming, /v1/completions, /v1/embeddings).
    Serve(longctx_serve::ServeArgs),
    /// Score LongBench prediction files exactly as LongBench's eval.py does.
    ///
    /// DIR holds `<dataset>.jsonl` files with one `{"pred", "answers", "all_classes",
    /// "length"}` object per line (the format of LongBench's pred.py). Writes DIR/result.json
    /// with the keys and values eval.py writes and prints a table.
    Score(ScoreArgs),
    /// List the LongBench datasets, or load one and summarise it.
    Datasets(DatasetsArgs),
    /// Perplexity of a text file with a fixed-length window (Hugging Face's procedure for
    /// fixed-length models): how far a model, or a RoPE variant, stretches.
    Perplexity(PerplexityArgs),
    /// Generate text from a prompt with a local model: text, token counts, timings.
    Generate(GenerateArgs),
    /// Embed texts with a sentence-transformers model (e.g. all-MiniLM-L6-v2).
    ///
    /// INPUT has one JSON object with a `text` field per line; writes one
    /// `{"embedding": [...]}` (L2-normalized) per line, in the same order.
    Embed(EmbedArgs),
    /// Naive RAG on one context: chunk it, embed the chunks and the query, and show the k
    /// chunks (ids in document order, with scores) the model would receive.
    Retrieve(RetrieveArgs),
    /// Compress a text with LLMLingua-2, exactly as the `llmlingua` package's
    /// `compress_prompt(text, rate=R, force_tokens=[...])` does.
    Compress(CompressArgs),
    /// Fine-tune a model on chat data (LoRA in PEFT's format, or every weight): packed or
    /// sorted batching, token-mean or LongAlign loss, AdamW with warm-up and cosine decay,
    /// checkpoints; a rerun with --resume continues exactly where a killed run stopped.
    Train(TrainArgs),
    /// The loss of a model (and adapter) on chat data, without training: one pass, the whole
    /// file taken as one optimizer step.
    Loss(LossArgs),
    /// Merge a LoRA adapter into its base model and write a model directory.
    Merge(MergeArgs),
    /// Benchmarks (throughput of the native runtime).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// RULER's synthetic tasks (run them with `[benchmark] suite = "ruler"` in an experiment).
    #[command(subcommand)]
    Ruler(RulerCommand),
    /// Plans before running: the peak memory of a fine-tuning run.
    #[command(subcommand)]
    Plan(PlanCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum PlanCommand {
    /// The peak memory per device of fine-tuning M, broken down (weights, gradients, optimizer
    /// states, activations, attention workspace, logits, temporary buffers), whether it fits,
    /// the longest sequence that fits, and the changes that would make it fit.
    Train(PlanTrainArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PlanTrainArgs {
    /// A config.json, a model directory, a GGUF file or a hub id (only its config.json is read).
    #[arg(long, value_name = "M")]
    pub(crate) model: String,
    /// Tokens per sequence.
    #[arg(long, value_name = "N")]
    pub(crate) seq_len: usize,
    /// Sequences per forward pass over all GPUs (default: one per GPU); each GPU takes B / G.
    #[arg(long, value_name = "B")]
    pub(crate) micro_batch: Option<usize>,
    /// Micro-batches per optimizer step (gradients are then kept across forward passes).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) grad_accum: usize,
    /// LoRA of rank R (the default, rank 16).
    #[arg(long, value_name = "R", conflicts_with = "full")]
    pub(crate) lora: Option<usize>,
    /// The projections LoRA adapts (default: all seven).
    #[arg(long, value_name = "LIST", value_delimiter = ',', conflicts_with = "full")]
    pub(crate) lora_targets: Option<Vec<String>>,
    /// Full fine-tuning (every weight).
    #[arg(long)]
    pub(crate) full: bool,
    /// `none` or `layer` (each layer recomputed in the backward pass).
    #[arg(long, value_name = "C", default_value = "none")]
    pub(crate) checkpointing: longctx_train::plan::Checkpointing,
    /// Weights and compute dtype: bf16 or f32 (the longctx trainer: f32).
    #[arg(long, value_name = "D")]
    pub(crate) dtype: Option<longctx_train::plan::Dtype>,
    /// `adamw` or `adamw-8bit`.
    #[arg(long, value_name = "O", default_value = "adamw")]
    pub(crate) optimizer: longctx_train::plan::Optimizer,
    /// GPUs.
    #[arg(long, value_name = "G", default_value_t = 1)]
    pub(crate) gpus: usize,
    /// DeepSpeed ZeRO stage (FSDP full sharding = 3).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub(crate) zero: u8,
    /// What goes to host memory: none, optimizer, params, activations (comma-separated).
    #[arg(long, value_name = "WHAT", value_delimiter = ',', default_value = "none")]
    pub(crate) offload: Vec<longctx_train::plan::Offload>,
    /// `eager` (scores materialized) or `flash`.
    #[arg(long, value_name = "A", default_value = "flash")]
    pub(crate) attention: longctx_train::plan::Attention,
    /// `full` (the whole logits upcast to f32, transformers' loss; the default of `hf`) or
    /// `chunked` (torchtune's chunked cross-entropy; its default, and longctx's).
    #[arg(long, value_name = "L")]
    pub(crate) logits: Option<longctx_train::plan::Logits>,
    /// The frozen base under LoRA: none, nf4, q4_0, q4_1, q8_0.
    #[arg(long, value_name = "Q", default_value = "none")]
    pub(crate) base_quant: longctx_train::plan::BaseQuant,
    /// Memory of one device in GiB (the longctx trainer: default this machine's available RAM).
    #[arg(long, value_name = "GIB", alias = "memory-gib")]
    pub(crate) gpu_memory_gib: Option<f64>,
    /// `hf` (transformers + PEFT: TRL, axolotl), `torchtune` (GPU trainers), or `longctx`
    /// (`longctx train` on this machine).
    #[arg(long, value_name = "T", default_value = "hf")]
    pub(crate) trainer: longctx_train::plan::Trainer,
    /// Print the plan as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RulerCommand {
    /// Generate samples of one RULER task at one length, fitted in a model's tokenizer and chat
    /// template as `longctx run` fits them, and write them as JSONL (prompt, answers, depth,
    /// token counts) to inspect.
    Generate(RulerGenerateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RulerGenerateArgs {
    /// A model directory, GGUF file or hub id: its tokenizer and chat template count tokens.
    #[arg(long, value_name = "M")]
    pub(crate) tokenizer: PathBuf,
    /// The task (niah_single_1 … niah_multiquery, vt, cwe, fwe, qa_1, qa_2).
    #[arg(long, value_name = "T")]
    pub(crate) task: String,
    /// Target length in tokens: prompt + the task's tokens to generate.
    #[arg(long, value_name = "N")]
    pub(crate) length: usize,
    /// Number of samples.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub(crate) samples: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Needle depth in percent (single-needle tasks); default: random, as RULER.
    #[arg(long, value_name = "D")]
    pub(crate) depth: Option<f64>,
    /// Where to write the JSONL.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// Directory with wonderwords' nounlist.txt, adjectivelist.txt, verblist.txt.
    #[arg(long, value_name = "DIR", default_value = "assets/wonderwords")]
    pub(crate) words: PathBuf,
    /// Paul Graham's essays as RULER's download script writes them (essay-haystack tasks).
    #[arg(long, value_name = "FILE")]
    pub(crate) essay: Option<PathBuf>,
    /// SQuAD v2 dev JSON (qa_1).
    #[arg(long, value_name = "FILE")]
    pub(crate) squad: Option<PathBuf>,
    /// HotpotQA dev JSON (qa_2).
    #[arg(long, value_name = "FILE")]
    pub(crate) hotpotqa: Option<PathBuf>,
    /// Count the prompt as raw text (RULER's `base` template), not through the chat template.
    #[arg(long)]
    pub(crate) no_chat_template: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// The training file (TOML): [model], [data], [lora] or `full = true`, [optim], [output].
    pub(crate) config: PathBuf,
    /// Stop after N optimizer steps (the learning-rate schedule spans N steps).
    #[arg(long, value_name = "N")]
    pub(crate) max_steps: Option<usize>,
    /// Continue the run in the output directory from its last checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Where run directories go (overrides the file's `output_dir`).
    #[arg(long, value_name = "DIR")]
    pub(crate) output_dir: Option<PathBuf>,
    /// Train even when the memory plan (`longctx plan train`) says the run will not fit in
    /// this machine's available memory.
    #[arg(long)]
    pub(crate) no_memory_check: bool,
    /// Do not train: write the run as a job for --engine into DIR (data packed by longctx with
    /// its loss weights, the engine's configuration, the loss hook, a launch script, a README).
    #[arg(long, value_name = "DIR", requires = "engine", conflicts_with = "resume")]
    pub(crate) export: Option<PathBuf>,
    /// The engine of --export: trl, axolotl or torchtune.
    #[arg(long, value_name = "ENGINE", requires = "export")]
    pub(crate) engine: Option<longctx_train::export::Engine>,
    /// GPUs of the exported job (overrides the file's `[distributed] gpus`).
    #[arg(long, value_name = "N", requires = "export")]
    pub(crate) gpus: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct LossArgs {
    /// The model: a Hugging Face directory, hub id or GGUF file.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// A LoRA adapter directory in PEFT's format.
    #[arg(long, value_name = "DIR")]
    pub(crate) adapter: Option<PathBuf>,
    /// Quantize a safetensors model at load (llama.cpp's blocks, or nf4: bitsandbytes' NF4 on
    /// the projections, as QLoRA's base), e.g. to evaluate a QLoRA adapter over its base.
    #[arg(long, value_enum)]
    pub(crate) quantize: Option<Quantize>,
    /// Chat JSONL (`{"messages": [{"role", "content"}, …]}` per line).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Longest sequence, in tokens; longer conversations are left out (or cut, --truncate).
    #[arg(long)]
    pub(crate) max_seq_len: usize,
    /// Cut over-long conversations to --max-seq-len instead of leaving them out.
    #[arg(long)]
    pub(crate) truncate: bool,
    /// naive, sorted or packed (the value does not depend on it).
    #[arg(long, default_value = "packed")]
    pub(crate) batching: longctx_train::batch::Batching,
    /// token-mean or longalign.
    #[arg(long, default_value = "longalign")]
    pub(crate) loss: longctx_train::loss::LossKind,
    /// Override the model's RoPE scaling (KIND:FACTOR).
    #[arg(long, value_name = "KIND:FACTOR")]
    pub(crate) rope_scaling: Option<String>,
    /// Print `{"loss", "sequences", "target_tokens", "tokens"}`.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The base model: a Hugging Face directory or hub id (safetensors).
    #[arg(long)]
    pub(crate) model: String,
    /// The LoRA adapter directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) adapter: PathBuf,
    /// The new model directory.
    #[arg(long, value_name = "DIR")]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The experiment file (TOML).
    pub(crate) experiment: PathBuf,
    /// Samples per dataset (the first ones; overrides the file's `limit`).
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// When the run directory holds a run of a different configuration, start a new run in
    /// `<name>-<config hash>` instead of refusing.
    #[arg(long)]
    pub(crate) force: bool,
    /// Where run directories go (overrides the file's `output_dir`).
    #[arg(long)]
    pub(crate) output_dir: Option<PathBuf>,
    /// Stop before the run's cost would exceed this many US dollars (overrides the file's
    /// `budget_usd`).
    #[arg(long)]
    pub(crate) budget_usd: Option<f64>,
    /// Do not write the report at the end.
    #[arg(long)]
    pub(crate) no_report: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JudgeArgs {
    /// The run directory (as `longctx run` writes it).
    pub(crate) run_dir: PathBuf,
    /// A TOML file of `[[judge]]` entries (and `[pricing]`) to use instead of the run's own.
    #[arg(long)]
    pub(crate) judges: Option<PathBuf>,
    /// Ask only this judge (repeatable); the others' judgements on disk stay in the summary
    /// and the report, and their endpoints are not set up (no API key needed).
    #[arg(long = "judge", value_name = "NAME")]
    pub(crate) only: Vec<String>,
    /// Do not write the report at the end.
    #[arg(long)]
    pub(crate) no_report: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PromptArgs {
    /// The experiment file (TOML).
    pub(crate) experiment: PathBuf,
    /// The variant (as `longctx run` names it, e.g. `rag-k20`).
    #[arg(long)]
    pub(crate) variant: String,
    /// The dataset.
    #[arg(long)]
    pub(crate) dataset: String,
    /// The sample's index in the dataset file (0-based).
    #[arg(long)]
    pub(crate) index: usize,
    /// Print a JSON object (`text`, `messages`, token counts, what the strategy did).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The run directory (`runs/<experiment>`).
    pub(crate) run_dir: PathBuf,
    /// Where to write (default RUN_DIR/report).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// The variant others are normalized to (default: the experiment's baseline).
    #[arg(long)]
    pub(crate) baseline: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CompressArgs {
    /// An LLMLingua-2 token classifier directory (config.json, model.safetensors and, unless
    /// --tokenizer is given, tokenizer.json), e.g. llmlingua-2-xlm-roberta-large-meetingbank.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Share of tokens to keep.
    #[arg(long)]
    pub(crate) rate: f64,
    /// A token always kept (repeatable); `\n` and `\t` stand for a newline and a tab.
    #[arg(long = "force-token")]
    pub(crate) force_token: Vec<String>,
    /// The text file to compress.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// The XLM-R tokenizer.json (default: the model directory's).
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Target number of cl100k tokens (overrides --rate).
    #[arg(long)]
    pub(crate) target_token: Option<f64>,
    /// Drop a force token repeated with nothing kept in between.
    #[arg(long)]
    pub(crate) drop_consecutive: bool,
    /// Keep every word with a digit.
    #[arg(long)]
    pub(crate) force_reserve_digit: bool,
    /// Print llmlingua's result object (`compressed_prompt`, `origin_tokens`,
    /// `compressed_tokens`, `rate`, …) as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct EmbedArgs {
    /// A sentence-transformers model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// JSONL file with a `text` field per line.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch_size: usize,
    /// Number format of the encoder's dense layers: f32 (exact, the default) or bf16 (products
    /// of bf16-rounded operands; several times faster on CPUs with AMX).
    #[arg(long, default_value = "f32")]
    pub(crate) precision: Precision,
    /// Output JSONL file (default: stdout).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RetrieveArgs {
    /// A sentence-transformers model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub(crate) embedder: PathBuf,
    /// The query (a LongBench sample's `input`).
    #[arg(long)]
    pub(crate) query: String,
    /// The context to chunk (a text file).
    #[arg(long)]
    pub(crate) context_file: PathBuf,
    /// Chunks to keep; k at or above the number of chunks keeps the whole context. A
    /// comma-separated list (`5,10,20`) sweeps k from one embedding pass (one result per k).
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) k: Vec<usize>,
    /// Characters (Unicode code points) per chunk.
    #[arg(long, default_value_t = 200)]
    pub(crate) chunk_chars: usize,
    /// Characters shared by consecutive chunks.
    #[arg(long, default_value_t = 0)]
    pub(crate) overlap: usize,
    /// End each chunk after the last whitespace in its window.
    #[arg(long)]
    pub(crate) respect_words: bool,
    /// Give the kept chunks best first instead of in document order.
    #[arg(long)]
    pub(crate) score_order: bool,
    /// Put between kept chunks that are not adjacent in the document.
    #[arg(long, default_value = "\n")]
    pub(crate) separator: String,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch_size: usize,
    /// Number format of the embedder's dense layers: f32 (the default) or bf16 (fast on CPUs
    /// with AMX).
    #[arg(long, default_value = "f32")]
    pub(crate) precision: Precision,
    /// Also print the context the model would receive.
    #[arg(long)]
    pub(crate) show_text: bool,
    /// Print `{"n_chunks", "k", "ids", "scores", "whole_context", "text"}` as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchEmbedArgs {
    /// A sentence-transformers model directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// JSONL file with a `text` field per line (e.g. 700 chunks of 200 characters).
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub(crate) batch_size: usize,
    /// Passes over the input; the median is reported.
    #[arg(long, default_value_t = 1)]
    pub(crate) repeat: usize,
    /// Number format of the encoder's dense layers: f32 (exact, the default) or bf16 (products
    /// of bf16-rounded operands; several times faster on CPUs with AMX).
    #[arg(long, default_value = "f32")]
    pub(crate) precision: Precision,
    /// Print `{"chunks", "seconds", "chunks_per_s", "threads", "batch_size", …}` as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Prefill and decode tokens/s per prompt length, and peak RSS.
    Generate(BenchGenerateArgs),
    /// Sentence-embedding throughput (chunks/s) of the native encoder.
    Embed(BenchEmbedArgs),
    /// Training throughput (tokens/s, peak RSS) on one long random sequence per step: LoRA
    /// on every projection, or full fine-tuning.
    Train(BenchTrainArgs),
    /// Load test of an OpenAI-compatible server (e.g. `longctx serve`): requests/s and
    /// p50/p99 latency at several numbers of concurrent clients.
    Serve(longctx_serve::LoadTestArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BenchTrainArgs {
    /// The model: a Hugging Face directory, hub id or GGUF file (dequantized to f32).
    #[arg(long)]
    pub(crate) model: String,
    /// Tokens per sequence (one sequence per optimizer step).
    #[arg(long, default_value_t = 2048)]
    pub(crate) seq_len: usize,
    /// LoRA rank on every projection (alpha = 2 × rank).
    #[arg(long, default_value_t = 16, conflicts_with = "full")]
    pub(crate) lora_r: usize,
    /// Full fine-tuning instead of LoRA.
    #[arg(long)]
    pub(crate) full: bool,
    /// Measured optimizer steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    pub(crate) steps: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Gradient checkpointing per decoder layer.
    #[arg(long)]
    pub(crate) checkpointing: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchGenerateArgs {
    /// The model: a Hugging Face directory.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Prompt lengths to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "512,2048,6000")]
    pub(crate) prompt_tokens: Vec<usize>,
    /// Tokens to decode after each prompt (end-of-sequence is ignored).
    #[arg(long, default_value_t = 128)]
    pub(crate) gen_tokens: usize,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// A JSON file with `token_ids` to take prompts from (e.g. shared/bench/prompt_6000_smollm2.json);
    /// ids beyond the model's vocabulary wrap around. Default: a fixed pseudo-random sequence.
    #[arg(long)]
    pub(crate) prompt_ids: Option<PathBuf>,
    /// Override the model's RoPE scaling (KIND:FACTOR).
    #[arg(long, value_name = "KIND:FACTOR")]
    pub(crate) rope_scaling: Option<String>,
    /// A LoRA adapter directory in PEFT's format (adapter_config.json,
    /// adapter_model.safetensors) to apply on top of the model.
    #[arg(long, value_name = "DIR")]
    pub(crate) adapter: Option<PathBuf>,
    /// Prompt tokens per prefill pass.
    #[arg(long, default_value_t = 512)]
    pub(crate) prefill_chunk: usize,
    /// Print one JSON object per prompt length.
    #[arg(long)]
    pub(crate) json: bool,
    /// Weight precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) dtype: Dtype,
    /// Quantize a safetensors model's projections and LM head at load, to llama.cpp's block
    /// format (byte for byte as its quantizer), run on the Q4/Q8 kernels.
    #[arg(long, value_enum)]
    pub(crate) quantize: Option<Quantize>,
    /// The KV cache's element type (default: the model's dtype, f32 for GGUF); f16 halves it.
    #[arg(long, value_enum)]
    pub(crate) kv_cache: Option<KvCacheType>,
}

/// fuzzywuzzy's backend for the code datasets (lcc, repobench-p).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Fuzz {
    /// difflib.SequenceMatcher: fuzzywuzzy's default without python-Levenshtein.
    Difflib,
    /// python-Levenshtein's ratio: what fuzzywuzzy uses when python-Levenshtein is installed.
    Levenshtein,
}

#[derive(Debug, Args)]
pub(crate) struct ScoreArgs {
    /// Directory of `<dataset>.jsonl` prediction files.
    pub(crate) dir: PathBuf,
    /// Score as LongBench-E: one score per length bucket (0-4k, 4-8k, 8k+) of each dataset.
    #[arg(long = "longbench-e", visible_alias = "e")]
    pub(crate) longbench_e: bool,
    /// Backend of fuzz.ratio for lcc and repobench-p.
    #[arg(long, value_enum, default_value = "difflib")]
    pub(crate) fuzz: Fuzz,
    /// Also write every sample's score (`{"dataset", "line", "score"}` per line) to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) per_sample: Option<PathBuf>,
    /// Where to write result.json (default: DIR/result.json).
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print result.json to stdout instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DatasetsArgs {
    /// A dataset to load and summarise (all datasets are listed when omitted).
    pub(crate) name: Option<String>,
    /// Where the data comes from: a directory of official `<name>.jsonl` files, LongBench's
    /// `data.zip`, or `hub` (THUDM/LongBench on the Hugging Face hub).
    #[arg(long, value_name = "DIR|ZIP|hub", default_value = "data/longbench-sample")]
    pub(crate) data: String,
    /// Load the LongBench-E file (`<name>_e.jsonl`).
    #[arg(long = "longbench-e", visible_alias = "e")]
    pub(crate) longbench_e: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PerplexityArgs {
    /// The model: a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a
    /// hub id (`org/name`, `org/name@revision`).
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// The text to score; it is tokenized without special tokens.
    #[arg(long)]
    pub(crate) file: PathBuf,
    /// Window length in tokens.
    #[arg(long, required_unless_present = "lengths", conflicts_with = "lengths")]
    pub(crate) context: Option<usize>,
    /// Distance between window starts (default: the window length).
    #[arg(long, conflicts_with = "lengths")]
    pub(crate) stride: Option<usize>,
    /// Perplexity against context length: the first N tokens of the file in one window, for each
    /// N (comma-separated), for every --rope-scaling given.
    #[arg(long, value_delimiter = ',', value_name = "N,N,…")]
    pub(crate) lengths: Option<Vec<usize>>,
    /// Override the model's RoPE scaling: KIND:FACTOR with KIND linear, dynamic, yarn or llama3,
    /// or `none` (the model's own). With --lengths it may be given several times (one variant
    /// each).
    #[arg(long, value_name = "KIND:FACTOR")]
    pub(crate) rope_scaling: Vec<String>,
    /// With --lengths: also draw perplexity against length (an .svg or .png file).
    #[arg(long, value_name = "FILE", requires = "lengths")]
    pub(crate) plot: Option<PathBuf>,
    /// A LoRA adapter directory in PEFT's format (adapter_config.json,
    /// adapter_model.safetensors) to apply on top of the model.
    #[arg(long, value_name = "DIR")]
    pub(crate) adapter: Option<PathBuf>,
    /// Also print (or put in the JSON) every scored token's negative log-likelihood.
    #[arg(long)]
    pub(crate) per_token: bool,
    /// Print `{"tokens", "nll_sum", "ppl", "per_token_nll"}` as JSON (with --lengths:
    /// `{"model", "file", "file_tokens", "variants": [{"rope_scaling", "points": [{"length",
    /// "tokens", "nll_sum", "ppl", "seconds"}]}]}`).
    #[arg(long)]
    pub(crate) json: bool,
    /// Weight precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) dtype: Dtype,
    /// Quantize a safetensors model's projections and LM head at load, to llama.cpp's block
    /// format (byte for byte as its quantizer), run on the Q4/Q8 kernels.
    #[arg(long, value_enum)]
    pub(crate) quantize: Option<Quantize>,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The model: a Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a
    /// hub id (`org/name`, `org/name@revision`).
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// The prompt text.
    #[arg(long, conflicts_with = "prompt_file", required_unless_present = "prompt_file")]
    pub(crate) prompt: Option<String>,
    /// A file holding the prompt text.
    #[arg(long)]
    pub(crate) prompt_file: Option<PathBuf>,
    /// Send the prompt as a user message through the model's chat template.
    #[arg(long)]
    pub(crate) chat: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub(crate) max_new_tokens: usize,
    /// Override the model's RoPE scaling: KIND:FACTOR with KIND linear, dynamic, yarn or llama3.
    #[arg(long, value_name = "KIND:FACTOR")]
    pub(crate) rope_scaling: Option<String>,
    /// A LoRA adapter directory in PEFT's format (adapter_config.json,
    /// adapter_model.safetensors) to apply on top of the model.
    #[arg(long, value_name = "DIR")]
    pub(crate) adapter: Option<PathBuf>,
    /// Sampling temperature; 0 (the default) decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) temperature: f64,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) top_p: f64,
    /// Keep only the K most likely tokens when sampling (0 = off).
    #[arg(long, default_value_t = 0)]
    pub(crate) top_k: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Stop when the text contains this string (repeatable); the text is cut before it.
    #[arg(long = "stop")]
    pub(crate) stop: Vec<String>,
    /// Prompt tokens per prefill pass.
    #[arg(long, default_value_t = 512)]
    pub(crate) prefill_chunk: usize,
    /// Refuse requests whose weights and KV cache would exceed this many GiB.
    #[arg(long, value_name = "GIB")]
    pub(crate) memory_limit_gib: Option<f64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Weight precision.
    #[arg(long, value_enum, default_value = "f32")]
    pub(crate) dtype: Dtype,
    /// Quantize a safetensors model's projections and LM head at load, to llama.cpp's block
    /// format (byte for byte as its quantizer), run on the Q4/Q8 kernels.
    #[arg(long, value_enum)]
    pub(crate) quantize: Option<Quantize>,
    /// The KV cache's element type (default: the model's dtype, f32 for GGUF); f16 halves it.
    #[arg(long, value_enum)]
    pub(crate) kv_cache: Option<KvCacheType>,
}
