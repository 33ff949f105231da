//! `longctx generate --model M (--prompt TEXT | --prompt-file F) [--chat] [--max-new-tokens N]
//! [--rope-scaling KIND:FACTOR] [--json]`.
//!
//! JSON output: `text`, `tokens` (generated ids), `prompt_tokens`, `completion_tokens`,
//! `prefill_s`, `decode_s`, `stop_reason`, `kv_cache_bytes` (for prompt + max_new_tokens).

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use longctx_core::{ChatMessage, Tokenizer};
use longctx_models::generate::{generate, GenerationParams};
use longctx_models::llama::{CausalLm, ATTENTION_CHUNK};

use super::model::ModelArgs;
use crate::cli::{GenerateArgs, KvCacheType};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub(crate) fn run(args: &GenerateArgs) -> Result<()> {
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => fs_err::read_to_string(f)?,
        (None, None) => bail!("give --prompt or --prompt-file"),
    };
    let device = Device::Cpu;
    let mut loaded = args.load_model(&device)?;
    let (text, add_special) = if args.chat {
        let template = loaded
            .chat_template
            .as_ref()
            .with_context(|| format!("{}: no chat template in tokenizer_config.json", args.model.display()))?;
        // The rendered text carries the template's own BOS; apply_chat_template tokenizes it
        // without adding special tokens.
        (template.render(&[ChatMessage::new("user", prompt)], true)?, false)
    } else {
        (prompt, true)
    };
    let ids = loaded.tokenizer.encode(&text, add_special)?;
    if ids.is_empty() {
        bail!("the prompt has no tokens");
    }
    let config = loaded.model.config().clone();
    let total = ids.len() + args.max_new_tokens;
    loaded.model.set_kv_cache_dtype(args.kv_cache.map(KvCacheType::candle));
    let dtype_bytes = loaded.model.kv_cache_dtype().size_in_bytes();
    let kv_bytes = config.kv_cache_bytes(total, dtype_bytes);
    let scratch = config.attention_scratch_bytes(args.prefill_chunk, total, ATTENTION_CHUNK);
    let needed = loaded.weight_bytes as f64 + kv_bytes as f64 + scratch as f64;
    if !args.json {
        eprintln!(
            "prompt {} tokens; KV cache for {total} tokens: {:.1} MiB; weights {:.1} MiB",
            ids.len(),
            kv_bytes as f64 / 1024.0 / 1024.0,
            loaded.weight_bytes as f64 / 1024.0 / 1024.0
        );
    }
    if let Some(limit) = args.memory_limit_gib {
        if needed > limit * GIB {
            bail!(
                "this request needs about {:.2} GiB (weights {:.2} + KV cache {:.2} for {total} tokens + attention {:.2}), over the limit of {limit} GiB; shorten the prompt, lower --max-new-tokens or --prefill-chunk, or use a smaller dtype",
                needed / GIB,
                loaded.weight_bytes as f64 / GIB,
                kv_bytes as f64 / GIB,
                scratch as f64 / GIB
            );
        }
    }
    let params = GenerationParams {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        stop_strings: args.stop.clone(),
        stop_tokens: Vec::new(),
        prefill_chunk: args.prefill_chunk,
        ignore_eos: false,
    };
    let tokenizer = &loaded.tokenizer;
    let g = generate(&mut loaded.model, &ids, &params, &device, &|t| tokenizer.decode(t, true).unwrap_or_default())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&g)?;
        v["kv_cache_bytes"] = kv_bytes.into();
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}", g.text)?;
        eprintln!(
            "prompt {} tokens in {:.2} s ({:.1} tok/s); {} new tokens in {:.2} s ({:.1} tok/s); stop: {:?}",
            g.prompt_tokens,
            g.prefill_s,
            g.prompt_tokens as f64 / g.prefill_s.max(1e-9),
            g.completion_tokens,
            g.decode_s,
            g.completion_tokens as f64 / g.decode_s.max(1e-9),
            g.stop_reason
        );
    }
    Ok(())
}
