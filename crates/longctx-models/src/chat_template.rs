//! Chat templates rendered from the model's own Jinja source with minijinja, the way
//! transformers' `apply_chat_template(..., tokenize=False)` renders them (transformers 4.46,
//! `utils/chat_template_utils.py`): `trim_blocks` and `lstrip_blocks` on, loop controls,
//! `raise_exception` and `strftime_now` available, Python string methods (`strip`,
//! `startswith`, …) through minijinja-contrib's pycompat layer, and the special tokens
//! (`bos_token`, `eos_token`) passed as variables. The rendered text already holds the BOS
//! token when the template writes it, so it is tokenized *without* adding special tokens, as
//! apply_chat_template does.

use longctx_core::ChatMessage;
use minijinja::{Environment, Error, ErrorKind, Value};

/// A compiled chat template with its special tokens.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// A template that does not compile or render.
#[derive(Debug, thiserror::Error)]
#[error("chat template: {0:#}")]
pub struct TemplateError(#[from] Error);

impl ChatTemplate {
    /// Compiles `source` (a Jinja chat template).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_syntax(minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build()?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_function("strftime_now", |format: String| -> Result<Value, Error> {
            // Templates use it for "today's date" lines; a fixed clock keeps renders reproducible.
            let _ = format;
            Ok(Value::from("26 Jul 2024"))
        });
        env.add_template_owned("chat", source.to_string())?;
        Ok(Self { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// Renders a conversation; with `add_generation_prompt` the template appends the opening of
    /// the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TemplateError> {
        let template = self.env.get_template("chat")?;
        Ok(template.render(minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.as_str(),
            eos_token => self.eos_token.as_str(),
            tools => Value::from(()),
        })?)
    }
}
