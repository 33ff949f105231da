//! Chunking by tokens with a real tokenizer (Llama 3.1's byte-level BPE, which reports byte
//! offsets): chunks cover the text exactly, hold `size` tokens each, and overlapping chunks
//! join back into the text.

use std::path::Path;

use longctx_context::chunk::{join_in_order, ChunkConfig, Unit};
use longctx_core::Tokenizer;
use longctx_models::tokenizer::HfTokenizer;

#[test]
fn token_chunks_cover_the_text() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("assets/tokenizers/llama3_1/tokenizer.json");
    assert!(path.exists(), "run tools/fetch_assets.sh first");
    let tok = HfTokenizer::from_file(&path).unwrap();
    let data = std::fs::read_to_string(root.join("tests/data/longbench/multifieldqa_zh.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(data.lines().next().unwrap()).unwrap();
    let text: String = record["context"].as_str().unwrap().chars().take(3000).collect();
    let n_tokens = tok.encode(&text, false).unwrap().len();
    let cfg = ChunkConfig { unit: Unit::Tokens, size: 64, ..ChunkConfig::default() };
    let chunks = cfg.chunk(&text, Some(&tok)).unwrap();
    assert_eq!(chunks.len(), n_tokens.div_ceil(64));
    let joined: String = chunks.iter().map(|c| c.text(&text)).collect();
    assert_eq!(joined, text);
    for c in &chunks[..chunks.len() - 1] {
        let n = tok.encode(c.text(&text), false).unwrap().len();
        assert!((60..=68).contains(&n), "a 64-token chunk re-encodes to {n} tokens");
    }
    let cfg = ChunkConfig { overlap: 16, ..cfg };
    let chunks = cfg.chunk(&text, Some(&tok)).unwrap();
    assert_eq!(chunks.len(), (n_tokens - 16).div_ceil(48));
    let all: Vec<usize> = (0..chunks.len()).collect();
    assert_eq!(join_in_order(&text, &chunks, &all, "|"), text.trim_end());
    assert!(ChunkConfig { unit: Unit::Tokens, ..ChunkConfig::default() }.chunk("x", None).is_err());
}
