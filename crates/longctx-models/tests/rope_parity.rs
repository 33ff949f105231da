//! RoPE against transformers 4.46.3 (`ROPE_INIT_FUNCTIONS` and `LlamaRotaryEmbedding`),
//! fixtures from `tools/oracles/rope_parity.py`: every scaling variant, the dynamic NTK
//! recomputation over single and chunked passes, and the reset below the original length.

use std::path::Path;

use longctx_models::rope::RotaryState;
use longctx_models::HfConfig;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    head_dim: usize,
    rope_theta: f64,
    max_position_embeddings: usize,
    rope_scaling: Option<serde_json::Value>,
    init: Vec<Init>,
    runs: std::collections::BTreeMap<String, Vec<Pass>>,
}

#[derive(Deserialize)]
struct Init {
    seq_len: Option<usize>,
    inv_freq: Vec<f32>,
    attention_factor: f64,
}

#[derive(Deserialize)]
struct Pass {
    start: usize,
    end: usize,
    inv_freq: Vec<f32>,
    positions: Vec<usize>,
    cos: Vec<Vec<f32>>,
    sin: Vec<Vec<f32>>,
}

fn assert_rel(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * w.abs().max(f32::MIN_POSITIVE), "{what}[{i}]: longctx {g} transformers {w}");
    }
}

fn assert_abs(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: max |Δ| = {worst}");
}

#[test]
fn rope_matches_transformers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oracles/rope/cases.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(fixture.cases.len() >= 10);
    for case in &fixture.cases {
        let config = serde_json::json!({
            "hidden_size": case.head_dim * 2,
            "num_attention_heads": 2,
            "rope_theta": case.rope_theta,
            "max_position_embeddings": case.max_position_embeddings,
            "rope_scaling": case.rope_scaling,
        });
        let params = HfConfig::from_json(&config.to_string()).unwrap().rope_params().unwrap();
        for init in &case.init {
            let (inv_freq, attention) = params.inv_freq(init.seq_len);
            let what = format!("{} init seq_len={:?}", case.name, init.seq_len);
            assert_rel(&inv_freq, &init.inv_freq, 2e-6, &what);
            assert!((f64::from(attention) - init.attention_factor).abs() < 1e-6, "{what}: attention factor");
        }
        for (schedule, passes) in &case.runs {
            let mut state = RotaryState::new(params);
            for pass in passes {
                state.update(pass.end - 1);
                let what = format!("{} {schedule} pass {}..{}", case.name, pass.start, pass.end);
                assert_rel(state.inv_freq(), &pass.inv_freq, 2e-6, &what);
                for (k, &p) in pass.positions.iter().enumerate() {
                    let (cos, sin) = state.cos_sin(p);
                    assert_abs(&cos, &pass.cos[k], 2e-5, &format!("{what} cos@{p}"));
                    assert_abs(&sin, &pass.sin[k], 2e-5, &format!("{what} sin@{p}"));
                }
            }
        }
    }
}
