//! Chat templates against transformers' `apply_chat_template(tokenize=False)` (fixture from
//! `tools/oracles/chat_templates.py`): SmolLM2 (from its GGUF), Llama 3.1 and Qwen2.5 templates,
//! five conversations each, with and without the generation prompt.

use std::path::Path;

use longctx_core::ChatMessage;
use longctx_models::chat_template::ChatTemplate;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    templates: std::collections::BTreeMap<String, Template>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Template {
    #[serde(rename = "template")]
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

#[derive(Deserialize)]
struct Case {
    template: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    rendered: String,
}

#[test]
fn renders_like_apply_chat_template() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oracles/chat_templates/cases.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(fixture.templates.len(), 3);
    for case in &fixture.cases {
        let t = &fixture.templates[&case.template];
        let template =
            ChatTemplate::new(&t.source, t.bos_token.as_deref().unwrap_or(""), t.eos_token.as_deref().unwrap_or(""))
                .unwrap();
        let got = template.render(&case.messages, case.add_generation_prompt).unwrap();
        assert_eq!(got, case.rendered, "{} {:?} agp={}", case.template, case.messages, case.add_generation_prompt);
    }
}
