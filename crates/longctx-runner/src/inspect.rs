//! What the model receives for one sample of an experiment (`longctx prompt`): the strategy's
//! prompt, the request, and the text after the chat template with its tokens. Nothing is
//! hidden: the text returned is the text tokenized.

use longctx_bench::dataset::{self, Suite};
use longctx_context::strategy::Applied;
use longctx_core::{GenerationRequest, PromptInput};

use crate::plan::{self, ModelRuntime, Plan, StrategyFactory};
use crate::{Error, Result};

/// One sample of one variant, as the model receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    /// The variant.
    pub variant: String,
    /// The dataset.
    pub dataset: &'static str,
    /// The sample's index in the dataset file.
    pub index: usize,
    /// The sample's `_id`.
    pub id: String,
    /// What the backend is asked.
    pub request: GenerationRequest,
    /// The model's input text (after the chat template when one applies).
    pub text: String,
    /// Its tokens.
    pub tokens: usize,
    /// Whether the chat template applies.
    pub chat_template: bool,
    /// What the strategy did.
    pub applied: Applied,
    /// The native model's window (`None` for an HTTP backend).
    pub window: Option<usize>,
    /// What serves the model (`native:file.gguf`, `openai:model@url`).
    pub backend: String,
    /// The prompt budget.
    pub max_prompt_tokens: usize,
}

impl Inspection {
    /// Whether the prompt and the generation would not fit the native model's window (the
    /// backend would reject the request).
    pub fn over_window(&self) -> bool {
        self.window.is_some_and(|w| self.tokens + self.request.max_new_tokens > w)
    }
}

/// Loads the variant's model and strategy and prepares sample `index` of `dataset`.
pub fn inspect(plan: &Plan, variant: &str, dataset: &str, index: usize) -> Result<Inspection> {
    let Some(v) = plan.variants.iter().find(|v| v.name == variant) else {
        let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        return Err(Error::Invalid(format!("no variant `{variant}`; the variants are: {}", names.join(", "))));
    };
    if plan.ruler.is_some() {
        return Err(Error::Invalid(
            "`longctx prompt` shows LongBench prompts; RULER's samples are generated per model: see them with `longctx ruler generate`".into(),
        ));
    }
    let (name, spec, samples) = if let Some(chat) = &plan.chat {
        if dataset != plan::CHAT_DATASET {
            invalid!("a LongBench-Chat experiment has one dataset, `{}`", plan::CHAT_DATASET);
        }
        (plan::CHAT_DATASET, None, chat.samples())
    } else {
        let spec = match plan.suite {
            Suite::LongBench => dataset::dataset(dataset)?,
            Suite::LongBenchE => dataset::dataset_e(dataset)?,
        };
        (spec.name, Some(spec), plan.samples(spec, None)?)
    };
    let Some(sample) = samples.get(index) else {
        return Err(Error::Invalid(format!("{name} has {} samples; index {index} is out of range", samples.len())));
    };
    let model_config = &plan.models[v.model_index];
    let rt = ModelRuntime::load(model_config)?;
    let strategy = StrategyFactory::default().build(v, &plan.experiment.pricing)?;
    let in_sample =
        |e: Error| Error::Sample { dataset: name.to_string(), index, id: sample.id.clone(), source: Box::new(e) };
    let (applied, request) = match (spec, &plan.chat) {
        (Some(spec), _) => {
            let applied = plan::apply(strategy.as_ref(), spec, sample, &rt).map_err(in_sample)?;
            let request = rt.request(spec, applied.prompt.clone());
            (applied, request)
        }
        (None, Some(chat)) => {
            let full = matches!(v.strategy, crate::experiment::VariantStrategy::Full);
            let applied = plan::apply_chat(strategy.as_ref(), full, sample, chat.max_length, &rt).map_err(in_sample)?;
            let request = rt.chat_request(applied.prompt.clone(), chat.temperature);
            (applied, request)
        }
        (None, None) => unreachable!("a dataset spec or a LongBench-Chat plan"),
    };
    let rendered = rt.render(&request)?;
    let chat_template = matches!(*rt.model_input(&request), PromptInput::Chat(_));
    Ok(Inspection {
        variant: v.name.clone(),
        dataset: name,
        index,
        id: sample.id.clone(),
        tokens: rendered.ids.len(),
        text: rendered.text,
        request,
        chat_template,
        applied,
        window: rt.native().map(longctx_backends::native::NativeBackend::window),
        backend: rt.backend.describe(),
        max_prompt_tokens: model_config.max_prompt_tokens,
    })
}
