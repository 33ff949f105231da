//! Greedy generation against transformers' `generate(do_sample=False)` on the tiny models
//! (fixture from `tools/oracles/tiny_generate.py`): same tokens, same stop at end-of-sequence,
//! for prompts that run past max_position_embeddings while decoding.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use longctx_models::generate::{generate, GenerationParams, StopReason};
use longctx_models::load::load_hf_dir;
use serde::Deserialize;

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny")
}

#[derive(Deserialize)]
struct Run {
    prompt: Vec<u32>,
    generated: Vec<u32>,
}

/// The runs of `generate.json` by tiny model: prompts and transformers' greedy tokens.
fn runs() -> std::collections::BTreeMap<String, Vec<Run>> {
    serde_json::from_str(&std::fs::read_to_string(tiny().join("generate.json")).unwrap()).unwrap()
}

#[test]
fn greedy_tokens_equal_transformers() {
    let fixture = runs();
    assert_eq!(fixture.len(), 8);
    for (name, runs) in &fixture {
        let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
        for run in runs {
            let params = GenerationParams { max_new_tokens: 40, ..Default::default() };
            let g = generate(&mut loaded.model, &run.prompt, &params, &Device::Cpu, &|ids| {
                loaded.tokenizer.inner().decode(ids, true).unwrap()
            })
            .unwrap();
            assert_eq!(g.tokens, run.generated, "{name}, prompt of {} tokens", run.prompt.len());
            let expected_reason = if run.generated.len() < 40 { StopReason::StopToken } else { StopReason::Length };
            assert_eq!(g.stop_reason, expected_reason, "{name}");
            assert_eq!(g.prompt_tokens, run.prompt.len());
        }
    }
}

#[test]
fn chunked_prefill_and_stop_strings() {
    let fixture = runs();
    let run = &fixture["llama"][2];
    let mut loaded = load_hf_dir(&tiny().join("llama"), DType::F32, &Device::Cpu, None).unwrap();
    let decode = |ids: &[u32]| loaded.tokenizer.inner().decode(ids, true).unwrap();
    // The prompt in 7-token prefill chunks gives the same tokens (no dynamic RoPE here).
    let params = GenerationParams { max_new_tokens: 40, prefill_chunk: 7, ..Default::default() };
    let g = generate(&mut loaded.model, &run.prompt, &params, &Device::Cpu, &decode).unwrap();
    assert_eq!(g.tokens, run.generated);
    // A stop string taken from the greedy text cuts it there.
    let full = decode(&run.generated);
    let stop: String = full.chars().skip(10).take(3).collect();
    let params = GenerationParams { max_new_tokens: 40, stop_strings: vec![stop.clone()], ..Default::default() };
    let g = generate(&mut loaded.model, &run.prompt, &params, &Device::Cpu, &decode).unwrap();
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert_eq!(g.text, full[..full.find(&stop).unwrap()]);
}

/// An f16 KV cache: the logits of every step stay within 2e-2 of the f32 cache's (the keys and
/// values are rounded to f16, nothing else changes) and the chunked prefill (later chunks read
/// the f16 cache back) agrees the same way; with an f32 cache set explicitly the tokens are the
/// transformers fixture's.
#[test]
fn an_f16_kv_cache_stays_close_to_the_f32_one() {
    use candle_core::Tensor;
    use longctx_models::llama::CausalLm;
    let fixture = runs();
    for (name, runs) in &fixture {
        let run = &runs[runs.len() - 1];
        let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
        let model = &mut loaded.model;
        // Teacher-forced steps over prompt + generated tokens, prompt in chunks of 5.
        let mut logits_with = |kv: Option<DType>| {
            model.set_kv_cache_dtype(kv);
            model.reset();
            let mut out = Vec::new();
            let ids: Vec<u32> = run.prompt.iter().chain(&run.generated).copied().collect();
            let p = run.prompt.len();
            for (i, chunk) in run.prompt.chunks(5).enumerate() {
                let t = Tensor::new(chunk, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                out.push(model.forward(&t, i * 5).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            for (j, &id) in ids[p..].iter().enumerate() {
                let t = Tensor::new(&[id], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                out.push(model.forward_last(&t, p + j).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            out
        };
        let (full, half) = (logits_with(Some(DType::F32)), logits_with(Some(DType::F16)));
        let mut worst = 0f32;
        for (a, b) in full.iter().zip(&half) {
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(worst < 2e-2 && worst > 0.0, "{name}: largest logit difference {worst}");
        model.set_kv_cache_dtype(Some(DType::F32));
        let params = GenerationParams { max_new_tokens: 40, ..Default::default() };
        let g = generate(model, &run.prompt, &params, &Device::Cpu, &|_| String::new()).unwrap();
        assert_eq!(g.tokens, run.generated, "{name}");
    }
}

/// Token budgets of the four sequences the batched tests decode together.
const BUDGETS: [usize; 4] = [30, 12, 25, 40];

/// Greedy settings of batched sequence `i` (its budget, EOS ignored), prompts prefilled
/// `prefill_chunk` tokens at a time.
fn batch_params(i: usize, prefill_chunk: usize) -> GenerationParams {
    GenerationParams { max_new_tokens: BUDGETS[i], ignore_eos: true, prefill_chunk, ..Default::default() }
}

/// The runs' prompts and the tokens each gets decoded alone with [`batch_params`].
fn decoded_alone<'a>(
    model: &mut longctx_models::llama::Llama,
    runs: &'a [Run],
    prefill_chunk: usize,
) -> (Vec<&'a [u32]>, Vec<Vec<u32>>) {
    let prompts: Vec<&[u32]> = runs.iter().map(|r| r.prompt.as_slice()).collect();
    let alone = (0..prompts.len())
        .map(|i| generate(model, prompts[i], &batch_params(i, prefill_chunk), &Device::Cpu, &|_| String::new()))
        .map(|g| g.unwrap().tokens)
        .collect();
    (prompts, alone)
}

/// Greedy decoding of several sequences in one forward pass per step, sequences joining at
/// different steps and leaving when done, gives each exactly the tokens it gets alone
/// (including past max_position_embeddings, where dynamic RoPE changes its frequencies).
#[test]
fn batched_decoding_equals_decoding_alone() {
    use longctx_models::generate::{prefill, Decoding};
    let fixture = runs();
    for (name, runs) in &fixture {
        let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
        let model = &mut loaded.model;
        let chunk = GenerationParams::default().prefill_chunk;
        let (prompts, alone) = decoded_alone(model, runs, chunk);
        // Sequence i joins at step 3·i.
        let mut active: Vec<(usize, longctx_models::llama::Sequence, Decoding, u32)> = Vec::new();
        let mut done: Vec<Option<Vec<u32>>> = vec![None; prompts.len()];
        let mut step = 0;
        while done.iter().any(Option::is_none) {
            for (i, p) in prompts.iter().enumerate() {
                if step == 3 * i {
                    let params = batch_params(i, chunk);
                    let mut seq = model.new_sequence(p.len() + BUDGETS[i]);
                    let logits =
                        model.with_sequence(&mut seq, |m| prefill(m, p, params.prefill_chunk, &Device::Cpu)).unwrap();
                    let mut d = Decoding::new(&params, &[], p.len());
                    match d.step(&logits, &|_| String::new(), &mut |_| true).unwrap() {
                        Some(next) => active.push((i, seq, d, next)),
                        None => done[i] = Some(d.tokens().to_vec()),
                    }
                }
            }
            step += 1;
            if active.is_empty() {
                continue;
            }
            let tokens: Vec<u32> = active.iter().map(|a| a.3).collect();
            let mut seqs: Vec<&mut longctx_models::llama::Sequence> = active.iter_mut().map(|a| &mut a.1).collect();
            let logits = model.decode_batch(&mut seqs, &tokens).unwrap();
            let mut still = Vec::new();
            for (r, (i, seq, mut d, _)) in active.drain(..).enumerate() {
                match d.step(&logits.get(r).unwrap(), &|_| String::new(), &mut |_| true).unwrap() {
                    Some(next) => still.push((i, seq, d, next)),
                    None => done[i] = Some(d.tokens().to_vec()),
                }
            }
            active = still;
        }
        for (i, (a, b)) in alone.iter().zip(&done).enumerate() {
            assert_eq!(Some(a), b.as_ref(), "{name}: sequence {i}");
        }
    }
}

/// A prompt that starts with the tokens of an earlier sequence, prefilled from a copy of that
/// sequence's cache (`fork_sequence` + `prefill_from`), gives the logits and the greedy tokens
/// of prefilling it from scratch (what `longctx serve`'s prefix cache relies on). The earlier
/// sequence is longer than the shared prefix (it went on decoding), and the prefix is cut at
/// several places, incl. all but the last prompt token. Likewise a prompt whose last token is
/// fed by `decode_batch` after the rest is prefilled.
#[test]
fn a_forked_prefix_or_a_last_prompt_token_decoded_gives_the_logits_of_a_full_prefill() {
    use longctx_models::generate::{prefill, prefill_from, Decoding};
    use longctx_models::llama::CausalLm;
    use longctx_models::rope::RopeScaling;
    let fixture = runs();
    let greedy = |model: &mut longctx_models::llama::Llama,
                  seq: &mut longctx_models::llama::Sequence,
                  logits: candle_core::Tensor,
                  n: usize| {
        let params = GenerationParams { max_new_tokens: n, ignore_eos: true, ..Default::default() };
        let mut d = Decoding::new(&params, &[], seq.len());
        let mut next = d.step(&logits, &|_| String::new(), &mut |_| true).unwrap();
        while let Some(t) = next {
            let logits = model.decode_batch(&mut [&mut *seq], &[t]).unwrap();
            next = d.step(&logits.get(0).unwrap(), &|_| String::new(), &mut |_| true).unwrap();
        }
        d.tokens().to_vec()
    };
    let mut checked = 0;
    for (name, runs) in &fixture {
        let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
        let model = &mut loaded.model;
        let window = model.config().rope.max_position_embeddings;
        let dynamic = matches!(model.config().rope.scaling, RopeScaling::DynamicNtk { .. });
        for run in runs {
            let p = &run.prompt;
            // The earlier sequence: the prompt plus 5 decoded tokens.
            let mut earlier = model.new_sequence(p.len() + 5);
            let logits = model.with_sequence(&mut earlier, |m| prefill(m, p, 512, &Device::Cpu)).unwrap();
            greedy(model, &mut earlier, logits, 5);
            // A later prompt: the same prompt with two tokens changed at the end and one more.
            let mut later = p.clone();
            let n = later.len();
            later[n - 1] = (later[n - 1] + 1) % 32;
            later.push(3);
            if dynamic && later.len() + 8 > window {
                continue; // the backend does not reuse prefixes there
            }
            let mut fresh = model.new_sequence(later.len() + 8);
            let want = model.with_sequence(&mut fresh, |m| prefill(m, &later, 512, &Device::Cpu)).unwrap();
            let want_tokens = greedy(model, &mut fresh, want.clone(), 8);
            for cut in [1, n / 2, n - 1] {
                let mut forked = model.fork_sequence(&earlier, cut, later.len() + 8).unwrap();
                assert_eq!(forked.len(), cut);
                let got = model
                    .with_sequence(&mut forked, |m| prefill_from(m, &later[cut..], cut, 512, &Device::Cpu))
                    .unwrap();
                let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff <= 1e-5, "{name}: prefix {cut} of {}: logits differ by {diff}", later.len());
                assert_eq!(greedy(model, &mut forked, got, 8), want_tokens, "{name}: prefix {cut}");
                checked += 1;
            }
            // The earlier sequence is unchanged by the forks.
            assert_eq!(earlier.len(), p.len() + 4);
            // The prompt's last token fed as a batched decode row after prefilling the rest
            // (how `longctx serve` admits a request) gives the same logits and tokens.
            let mut split = model.new_sequence(later.len() + 8);
            model.with_sequence(&mut split, |m| prefill(m, &later[..later.len() - 1], 512, &Device::Cpu)).unwrap();
            let got = model.decode_batch(&mut [&mut split], &[later[later.len() - 1]]).unwrap().get(0).unwrap();
            let diff = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-5, "{name}: last prompt token as a decode row: logits differ by {diff}");
            assert_eq!(greedy(model, &mut split, got, 8), want_tokens, "{name}: last prompt token as a decode row");
        }
    }
    assert!(checked >= 24, "{checked} forks checked");
}

/// Prompts prefilled inside the batched step (`forward_batch`: a joining sequence's whole
/// prompt as rows beside the others' single decode tokens, in chunks of at most 16 tokens)
/// give the tokens of decoding each sequence alone.
#[test]
fn prompts_prefilled_in_the_batch_equal_decoding_alone() {
    use longctx_models::generate::Decoding;
    use longctx_models::llama::Sequence;
    /// A sequence of the batch: index, sequence, decoding, prompt tokens not yet fed, next token.
    type Joined = (usize, Sequence, Decoding, Vec<u32>, Option<u32>);
    const CHUNK: usize = 16;
    let fixture = runs();
    for (name, runs) in &fixture {
        let mut loaded = load_hf_dir(&tiny().join(name), DType::F32, &Device::Cpu, None).unwrap();
        let model = &mut loaded.model;
        let (prompts, alone) = decoded_alone(model, runs, CHUNK);
        let mut active: Vec<Joined> = Vec::new();
        let mut done: Vec<Option<Vec<u32>>> = vec![None; prompts.len()];
        let mut step = 0;
        while done.iter().any(Option::is_none) {
            for (i, p) in prompts.iter().enumerate() {
                if step == 2 * i {
                    let seq = model.new_sequence(p.len() + BUDGETS[i]);
                    active.push((i, seq, Decoding::new(&batch_params(i, CHUNK), &[], p.len()), p.to_vec(), None));
                }
            }
            step += 1;
            if active.is_empty() {
                continue;
            }
            let rows: Vec<Vec<u32>> = active
                .iter_mut()
                .map(|a| match a.4 {
                    Some(t) => vec![t],
                    None => a.3.drain(..CHUNK.min(a.3.len())).collect(),
                })
                .collect();
            let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
            let mut seqs: Vec<&mut Sequence> = active.iter_mut().map(|a| &mut a.1).collect();
            let logits = model.forward_batch(&mut seqs, &refs).unwrap();
            let mut still = Vec::new();
            for (r, (i, seq, mut d, pending, next)) in active.drain(..).enumerate() {
                if next.is_none() && !pending.is_empty() {
                    still.push((i, seq, d, pending, None)); // the prompt is not all in yet
                    continue;
                }
                match d.step(&logits.get(r).unwrap(), &|_| String::new(), &mut |_| true).unwrap() {
                    Some(t) => still.push((i, seq, d, pending, Some(t))),
                    None => done[i] = Some(d.tokens().to_vec()),
                }
            }
            active = still;
        }
        for (i, (a, b)) in alone.iter().zip(&done).enumerate() {
            assert_eq!(Some(a), b.as_ref(), "{name}: sequence {i}");
        }
    }
}
