//! `perplexity` turns logits into log-probabilities 1,024 rows at a time: over a window of 2,500
//! tokens (three chunks, the last one partial) every token's NLL equals the one-shot
//! log-softmax's.

use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use longctx_models::llama::CausalLm;
use longctx_models::load::load_hf_dir;
use longctx_models::perplexity::perplexity;

#[test]
fn chunked_log_softmax_equals_the_whole() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny/llama");
    let mut model = load_hf_dir(&dir, DType::F32, &Device::Cpu, None).unwrap().model;
    let vocab = model.config().vocab_size as u32;
    let ids: Vec<u32> = (0..2500u32).map(|i| (i * 7 + i / 13) % vocab).collect();
    let p = perplexity(&mut model, &ids, 2500, 2500, &Device::Cpu, |_, _| {}).unwrap();
    model.reset();
    let logits = model.forward(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap(), 0).unwrap();
    let logp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), D::Minus1).unwrap();
    let rows: Vec<Vec<f32>> = logp.to_vec2().unwrap();
    assert_eq!(p.per_token_nll.len(), 2499);
    for (t, nll) in p.per_token_nll.iter().enumerate() {
        assert_eq!(*nll, -rows[t][ids[t + 1] as usize], "token {}", t + 1);
    }
}
