//! Chat templates against transformers' `apply_chat_template(tokenize=False)` (fixture from
//! `tools/oracles/chat_templates.py`): SmolLM2 (from its GGUF), Llama 3.1, Qwen2.5 and Mistral
//! (Mistral-Nemo-Instruct-2407) templates, six conversations each, with and without the
//! generation prompt; a conversation the template refuses must be refused with its message.

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
    rendered: Option<String>,
    error: Option<String>,
}

#[test]
fn renders_like_apply_chat_template() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/oracles/chat_templates/cases.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(fixture.templates.len(), 4);
    let mut refused = 0;
    for case in &fixture.cases {
        let t = &fixture.templates[&case.template];
        let template =
            ChatTemplate::new(&t.source, t.bos_token.as_deref().unwrap_or(""), t.eos_token.as_deref().unwrap_or(""))
                .unwrap();
        let got = template.render(&case.messages, case.add_generation_prompt);
        match (&case.rendered, &case.error) {
            (Some(want), _) => assert_eq!(
                got.as_ref().ok(),
                Some(want),
                "{} {:?} agp={}: {got:?}",
                case.template,
                case.messages,
                case.add_generation_prompt
            ),
            (None, Some(message)) => {
                let err = got.expect_err("the template refuses this conversation").to_string();
                assert!(err.contains(message.as_str()), "{}: {err} lacks {message}", case.template);
                refused += 1;
            }
            (None, None) => panic!("a case without `rendered` or `error`"),
        }
    }
    assert!(refused > 0, "no refused conversation in the fixture");
}
