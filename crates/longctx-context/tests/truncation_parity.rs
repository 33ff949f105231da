//! Truncation in token space against transformers with the same tokenizers (Llama 3.1 adds a
//! BOS, Qwen2.5 adds none): texts and token counts before and after, for every side and
//! budget of the fixture (tools/oracles/truncation.py).

use std::path::Path;

use longctx_context::truncate::{truncate, Side};
use longctx_models::tokenizer::HfTokenizer;
use serde_json::Value;

#[test]
fn truncation_equals_transformers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/truncation.json")).unwrap()).unwrap();
    let texts: Vec<&str> = fx["texts"].as_array().unwrap().iter().map(|t| t["text"].as_str().unwrap()).collect();
    let mut tokenizers = std::collections::HashMap::new();
    for name in ["llama3_1", "qwen2_5"] {
        let path = root.join("../../assets/tokenizers").join(name).join("tokenizer.json");
        assert!(path.exists(), "run tools/fetch_assets.sh first ({} is missing)", path.display());
        tokenizers.insert(name, HfTokenizer::from_file(&path).unwrap());
    }
    let cases = fx["cases"].as_array().unwrap();
    let (mut cut, mut over) = (0, 0);
    for c in cases {
        let tok = &tokenizers[c["tokenizer"].as_str().unwrap()];
        let text = texts[c["text_index"].as_u64().unwrap() as usize];
        let budget = c["budget"].as_u64().unwrap() as usize;
        let side: Side = c["side"].as_str().unwrap().parse().unwrap();
        let t = truncate(text, tok, budget, side).unwrap();
        let what = format!("{} text {} budget {budget} {side:?}", c["tokenizer"], c["text_index"]);
        assert_eq!(t.text, c["out"].as_str().unwrap(), "{what}");
        assert_eq!(t.tokens_before as u64, c["tokens_before"].as_u64().unwrap(), "{what}");
        assert_eq!(t.tokens_after as u64, c["tokens_after"].as_u64().unwrap(), "{what}");
        assert_eq!(t.truncated, c["truncated"].as_bool().unwrap(), "{what}");
        cut += usize::from(t.truncated);
        over += usize::from(t.tokens_after > budget);
    }
    eprintln!("{} cases, {cut} truncated, {over} over budget after re-encoding (middle joins)", cases.len());
    assert!(cut > 100);
}
