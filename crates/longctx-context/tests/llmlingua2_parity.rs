//! LLMLingua-2 against the `llmlingua` package (0.2.2): a tiny random-weight XLM-R token
//! classifier with the real XLM-R vocabulary; every field of compress_prompt's result must be
//! equal (fixtures by tools/oracles/llmlingua2.py).

use std::path::Path;

use longctx_context::llmlingua2::{CompressOptions, LlmLingua2};
use serde_json::Value;

#[test]
fn compressed_text_equals_llmlingua() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tokenizer = root.join("../../assets/xlmr/tokenizer.json");
    assert!(tokenizer.exists(), "run tools/fetch_assets.sh first ({} is missing)", tokenizer.display());
    let model = LlmLingua2::load(&root.join("tests/fixtures/llmlingua2_tiny"), Some(&tokenizer)).unwrap();
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tests/fixtures/llmlingua2_cases.json")).unwrap())
            .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 50);
    let mut failures = Vec::new();
    let (mut en, mut zh) = (0, 0);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        en += usize::from(id.starts_with("en") || id.starts_with("multi_en"));
        zh += usize::from(id.starts_with("zh") || id.starts_with("multi_zh"));
        let opts: CompressOptions = serde_json::from_value(case["kwargs"].clone()).unwrap();
        let got = match &case["context"] {
            Value::String(s) => model.compress(s, &opts),
            Value::Array(list) => {
                let list: Vec<&str> = list.iter().map(|v| v.as_str().unwrap()).collect();
                model.compress_list(&list, &opts)
            }
            other => panic!("{id}: context {other}"),
        };
        let got = match got {
            Ok(g) => serde_json::to_value(g).unwrap(),
            Err(e) => {
                failures.push(format!("{id}: error {e}"));
                continue;
            }
        };
        let want = &case["result"];
        for (key, w) in want.as_object().unwrap() {
            if &got[key] != w {
                failures.push(format!(
                    "{id}: {key}\n   got  {:.300}\n   want {:.300}",
                    got[key].to_string(),
                    w.to_string()
                ));
            }
        }
    }
    eprintln!("{} cases ({en} English, {zh} Chinese), {} failures", cases.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compress_strategy_puts_the_compressed_context_in_the_prompt() {
    use std::sync::Arc;

    use longctx_context::strategy::{Compress, ContextStrategy};
    use longctx_core::Sample;
    use longctx_models::tokenizer::HfTokenizer;

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tokenizer = root.join("../../assets/xlmr/tokenizer.json");
    let model = Arc::new(LlmLingua2::load(&root.join("tests/fixtures/llmlingua2_tiny"), Some(&tokenizer)).unwrap());
    let context = "The committee met on Tuesday. It approved the budget for 2025 and adjourned at noon.\n\
                   Members asked for a report on the new building before the next meeting.";
    let sample = Sample::new("x", context, "What was approved?");
    let options = CompressOptions { rate: 0.5, force_tokens: vec!["\n".into()], ..CompressOptions::default() };
    let strategy = Compress { compressor: Arc::clone(&model), options: options.clone() };
    // The target model's tokenizer counts the prompt (here XLM-R's own, for the test).
    let counter = HfTokenizer::from_file(&tokenizer).unwrap();
    let applied = strategy.apply(&sample, "C: {context}\nQ: {input}", &counter, 10_000).unwrap();
    let compressed = model.compress(context, &options).unwrap().compressed_prompt;
    assert_eq!(applied.prompt, format!("C: {compressed}\nQ: What was approved?"));
    assert!(applied.context_tokens_after < applied.context_tokens_before);
    assert!(!applied.truncated);
    assert_eq!(strategy.name(), "llmlingua2-0.5");
}
