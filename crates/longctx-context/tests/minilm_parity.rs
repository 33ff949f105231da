//! all-MiniLM-L6-v2 on candle against sentence-transformers (fixtures by
//! tools/oracles/minilm.py): token ids, embeddings within 1e-5, and naive-RAG chunk rankings
//! on real LongBench records (tests/data/longbench).

use std::path::{Path, PathBuf};

use longctx_context::chunk::ChunkConfig;
use longctx_context::embed::SentenceEmbedder;
use longctx_context::rag::{Order, Retrieval};
use longctx_models::encoder::Precision;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn embedder() -> SentenceEmbedder {
    let dir = root().join("assets/minilm");
    assert!(dir.join("model.safetensors").exists(), "run tools/fetch_assets.sh first ({} is missing)", dir.display());
    SentenceEmbedder::load(&dir).unwrap()
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn embeddings_equal_sentence_transformers() {
    let model = embedder();
    let fx = fixture("minilm_embeddings.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 16);
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let mut truncated = 0;
    for (c, text) in cases.iter().zip(&texts) {
        let want: Vec<u32> = serde_json::from_value(c["input_ids"].clone()).unwrap();
        assert_eq!(model.token_ids(text).unwrap(), want, "{}", c["name"]);
        truncated += usize::from(c["n_tokens_untruncated"].as_u64().unwrap() > 256);
    }
    assert!(truncated >= 3, "the fixture exercises truncation to 256 tokens");
    // Batches of 5 and of 32 (packed differently) give the same vectors.
    for batch in [5, 32] {
        let model = embedder().with_batch_size(batch);
        let got = model.embed_texts(&texts).unwrap();
        let mut worst = 0f32;
        for (c, v) in cases.iter().zip(&got) {
            let want: Vec<f32> = serde_json::from_value(c["embedding"].clone()).unwrap();
            assert_eq!(v.len(), 384);
            for (a, b) in v.iter().zip(&want) {
                worst = worst.max((a - b).abs());
            }
        }
        eprintln!("batch {batch}: max |Δ| = {worst:.2e}");
        assert!(worst <= 1e-5, "batch {batch}: max abs difference {worst}");
    }
}

/// bf16 dense layers (AMX where the CPU has it): not sentence-transformers' numbers, but close
/// to them, with the figures printed.
#[test]
fn bf16_embeddings_stay_close_to_sentence_transformers() {
    let fx = fixture("minilm_embeddings.json");
    let cases = fx["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let model = embedder().with_precision(Precision::Bf16).unwrap();
    let got = model.embed_texts(&texts).unwrap();
    let (mut worst, mut min_cos) = (0f32, 1f32);
    for (c, v) in cases.iter().zip(&got) {
        let want: Vec<f32> = serde_json::from_value(c["embedding"].clone()).unwrap();
        worst = v.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
        // Both vectors have unit length.
        min_cos = min_cos.min(v.iter().zip(&want).map(|(a, b)| a * b).sum());
    }
    eprintln!("bf16 (AMX {}): max |Δ| = {worst:.2e}, min cosine {min_cos:.7}", longctx_models::amx::available());
    assert!(worst > 1e-6, "bf16 gave f32's vectors: the bf16 path did not run");
    assert!(worst < 5e-3 && min_cos > 0.9999, "max |Δ| {worst}, min cosine {min_cos}");

    // Retrieval: the share of sentence-transformers' top-k chunks that bf16 also ranks top-k.
    let fx = fixture("rag_topk.json");
    let (mut shared, mut total) = (0usize, 0usize);
    for s in fx["samples"].as_array().unwrap() {
        let dataset = s["dataset"].as_str().unwrap();
        let path = root().join("tests/data/longbench").join(format!("{dataset}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().nth(s["line"].as_u64().unwrap() as usize).unwrap();
        let record: Value = serde_json::from_str(line).unwrap();
        let (context, query) = (record["context"].as_str().unwrap(), record["input"].as_str().unwrap());
        let r = Retrieval::new(context, query, &ChunkConfig::default(), &model, None).unwrap();
        for (k, want) in s["topk"].as_object().unwrap() {
            let k: usize = k.parse().unwrap();
            let ids: Vec<usize> = serde_json::from_value(want["ids_by_score"].clone()).unwrap();
            shared += r.ranking.iter().take(k).filter(|h| ids.contains(&h.id)).count();
            total += ids.len();
        }
    }
    let agreement = shared as f64 / total as f64;
    eprintln!("bf16 top-k agreement on the retrieval fixtures: {shared}/{total} = {agreement:.3}");
    assert!(agreement >= 0.95, "top-k agreement {agreement}");
}

#[test]
fn rag_top_k_equals_reference_on_longbench_records() {
    let model = embedder();
    let fx = fixture("rag_topk.json");
    let samples = fx["samples"].as_array().unwrap();
    assert!(samples.len() >= 8);
    for s in samples {
        let dataset = s["dataset"].as_str().unwrap();
        let path = root().join("tests/data/longbench").join(format!("{dataset}.jsonl"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let line = text.lines().nth(s["line"].as_u64().unwrap() as usize).unwrap();
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["_id"], s["_id"]);
        let context = record["context"].as_str().unwrap();
        let query = record["input"].as_str().unwrap();
        let r = Retrieval::new(context, query, &ChunkConfig::default(), &model, None).unwrap();
        assert_eq!(r.chunks.len() as u64, s["n_chunks"].as_u64().unwrap(), "{dataset} line {}", s["line"]);
        for (k, want) in s["topk"].as_object().unwrap() {
            let k: usize = k.parse().unwrap();
            let ids: Vec<usize> = serde_json::from_value(want["ids_by_score"].clone()).unwrap();
            let scores: Vec<f32> = serde_json::from_value(want["scores"].clone()).unwrap();
            let got: Vec<usize> = r.ranking.iter().take(k).map(|h| h.id).collect();
            assert_eq!(got, ids, "{dataset} line {} k={k}", s["line"]);
            for (h, w) in r.ranking.iter().zip(&scores) {
                assert!((h.score - w).abs() < 1e-5, "{dataset}: score {} vs {w}", h.score);
            }
        }
        let sel = r.select(context, 5, Order::Document, "\n");
        let want: Vec<usize> = serde_json::from_value(s["doc_order_ids_k5"].clone()).unwrap();
        assert_eq!(sel.ids, want);
        assert!(!sel.whole);
        let all = r.select(context, r.chunks.len(), Order::Document, "\n");
        assert!(all.whole);
        assert_eq!(all.text, context);
    }
}
