//! Command-line arguments of `longctx serve` and of its load test, `longctx bench serve` (clap
//! derive; the doc comments are the help).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use longctx_backends::native::NativeOptions;
use longctx_backends::native::Quantize;
pub use longctx_backends::native::{Dtype, KvCacheType};

use crate::faults::Faults;
use crate::server::ServerConfig;
use crate::worker::BatchLimits;
use crate::Error;

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a rate between 0 and 1")),
    }
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a number of seconds")),
    }
}

/// Serve a model over an OpenAI-compatible HTTP API (`/v1/chat/completions`,
/// `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/health`) until SIGINT or SIGTERM.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// The model: a GGUF file, a Hugging Face model directory or a hub id.
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model's name in answers and `/v1/models` (default: the file or directory name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// A sentence-transformers directory to serve `/v1/embeddings` with (e.g. all-MiniLM-L6-v2).
    #[arg(long, value_name = "DIR")]
    pub embedder: Option<PathBuf>,
    /// Override the model's RoPE scaling (e.g. linear:4, dynamic:4, yarn:4).
    #[arg(long, value_name = "KIND:FACTOR")]
    pub rope_scaling: Option<String>,
    /// A LoRA adapter directory in PEFT's format to apply on top of the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// The context window in tokens (default: the model's, times the RoPE override's factor).
    #[arg(long, value_name = "N")]
    pub context_window: Option<usize>,
    /// Weight precision of safetensors models.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Dtype,
    /// Quantize a safetensors model's projections and LM head at load (llama.cpp's block
    /// formats).
    #[arg(long, value_enum)]
    pub quantize: Option<Quantize>,
    /// Prompt tokens per prefill pass.
    #[arg(long, default_value_t = 512)]
    pub prefill_chunk: usize,
    /// The KV cache's element type (default: the model's dtype, f32 for GGUF); f16 halves it.
    #[arg(long, value_enum)]
    pub kv_cache: Option<KvCacheType>,
    /// Generation requests that may wait while others run; more are answered 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub queue: usize,
    /// Requests decoded together in one forward pass per token (continuous batching; 1: one
    /// at a time).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub max_batch: usize,
    /// KV cache the requests decoded together may hold, in GiB (each holds its prompt plus its
    /// max_tokens); a request that would go over waits for others to finish.
    #[arg(long, value_name = "GIB", default_value_t = 4.0)]
    pub kv_budget_gib: f64,
    /// KV caches of finished requests kept for the prompt prefixes later requests share with
    /// them (a chat's earlier turns, a common system prompt), in GiB; 0 turns the cache off.
    #[arg(long, value_name = "GIB", default_value_t = 1.0)]
    pub prefix_cache_gib: f64,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,
    /// max_tokens of requests that give none (lowered to what the window leaves).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_tokens_default: usize,
    /// Testing: share of API requests answered 500.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_500: f64,
    /// Testing: share of API requests whose connection is closed without a response.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_drop: f64,
    /// Testing: share of API requests delayed by --fault-slow-s.
    #[arg(long, value_name = "RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub fault_slow: f64,
    /// Testing: the delay of slowed requests, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0, value_parser = parse_seconds)]
    pub fault_slow_s: f64,
    /// Testing: seed of the fault draws (the same seed gives the same faults in the same order).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fault_seed: u64,
}

impl ServeArgs {
    /// Bytes of `--prefix-cache-gib`.
    pub fn prefix_cache_bytes(&self) -> usize {
        (self.prefix_cache_gib.max(0.0) * f64::from(1u32 << 30)) as usize
    }

    /// How to load the model.
    pub fn native_options(&self) -> NativeOptions {
        NativeOptions {
            dtype: self.dtype.candle(),
            rope_scaling: self.rope_scaling.clone(),
            context_window: self.context_window,
            prefill_chunk: self.prefill_chunk,
            adapter: self.adapter.clone(),
            kv_cache: self.kv_cache,
            quantize: self.quantize,
        }
    }

    /// The server settings (resolves `--host`).
    pub fn server_config(&self) -> Result<ServerConfig, Error> {
        let addr: SocketAddr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|source| Error::Io { what: format!("resolving --host {}", self.host), source })?
            .next()
            .ok_or_else(|| Error::Config(format!("--host {} has no address", self.host)))?;
        Ok(ServerConfig {
            addr,
            served_model_name: self.served_model_name.clone(),
            queue: self.queue,
            max_body_bytes: self.max_body_bytes,
            max_tokens_default: self.max_tokens_default.max(1),
            batch: BatchLimits {
                max_batch: self.max_batch.max(1),
                kv_budget_bytes: (self.kv_budget_gib.max(0.0) * f64::from(1u32 << 30)) as usize,
            },
            faults: Faults {
                error_500: self.fault_500,
                drop: self.fault_drop,
                slow: self.fault_slow,
                slow_s: self.fault_slow_s,
                seed: self.fault_seed,
            },
        })
    }
}

/// Measure a server's throughput and latency: for each level of concurrent clients, send a
/// fixed number of identical short chat requests (greedy) and report requests per second and
/// latency percentiles.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadTestArgs {
    /// Base URL of the server (a trailing /v1 is accepted).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Concurrent clients of each level, comma-separated (each at most 256).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// Requests per level (at most 10000).
    #[arg(long, default_value_t = 48)]
    pub requests: usize,
    /// max_tokens of each request.
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    /// The user message of each request.
    #[arg(long, default_value = "Write one short sentence about the sea.")]
    pub prompt: String,
    /// Model name to send (default: the first one `/v1/models` lists).
    #[arg(long)]
    pub model: Option<String>,
    /// Seconds before a request times out (a timeout counts as an error).
    #[arg(long, default_value_t = 300.0, value_parser = parse_seconds)]
    pub timeout_s: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        Serve(ServeArgs),
        LoadTest(LoadTestArgs),
    }

    #[test]
    fn defaults_and_validation() {
        let Command::Serve(a) = Cli::parse_from(["longctx", "serve", "--model", "m.gguf"]).command else { panic!() };
        let c = a.server_config().unwrap();
        assert_eq!((c.addr.to_string(), c.queue, c.max_body_bytes), ("127.0.0.1:8000".into(), 16, 16 << 20));
        assert!(c.faults.is_off());
        let args = ["longctx", "serve", "--model", "m", "--fault-500", "0.3", "--fault-seed", "9", "--port", "0"];
        let Command::Serve(a) = Cli::parse_from(args).command else { panic!() };
        assert_eq!((a.fault_500, a.fault_seed, a.port), (0.3, 9, 0));
        assert!(Cli::try_parse_from(["longctx", "serve", "--model", "m", "--fault-drop", "1.5"]).is_err());

        let Command::LoadTest(l) = Cli::parse_from(["longctx", "load-test"]).command else { panic!() };
        assert_eq!((l.clients, l.requests, l.max_tokens), (vec![1, 4, 16], 48, 16));
        let Command::LoadTest(l) = Cli::parse_from(["longctx", "load-test", "--clients", "2,8"]).command else {
            panic!()
        };
        assert_eq!(l.clients, vec![2, 8]);
    }
}
