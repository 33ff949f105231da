//! The run loop (`longctx run`): every variant (model × strategy × parameter) on every
//! dataset, resumable.
//!
//! Work goes model by model, dataset by dataset, sample by sample, and for each sample every
//! variant of the model (so RAG at several k embeds the sample's chunks once). Up to the
//! backend's parallelism of (variant, sample) pairs are in flight: 1 for a native model, or
//! its `batch`, decoded together in one forward pass; `concurrency` for an HTTP backend.
//! Each prediction is appended and flushed as it finishes; a rerun skips the ids
//! already written. A sample that fails is recorded under `failed/` and the run goes on; a
//! rerun retries it. With a budget, no sample starts whose estimated cost would take the run
//! past it; the run then stops, resumable. Raising the interrupt flag (Ctrl-C in `longctx run`)
//! stops starting samples, waits for those in flight and records the run as interrupted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use longctx_bench::dataset::DatasetSpec;
use longctx_bench::metrics::MetricOptions;
use longctx_bench::ruler::generate::Generated;
use longctx_bench::ruler::Task;
use longctx_bench::score::{score_dir, ScoreOptions};
use longctx_context::strategy::{Applied, ContextStrategy};
use longctx_core::{Completion, Sample};
use serde_json::{json, Value};

use crate::experiment::{hash_json, ModelConfig, Price, Variant};
use crate::plan::{self, ModelRuntime, Plan, StrategyFactory};
use crate::store::{DatasetFiles, Manifest, ManifestModel, ManifestVariant, Session, Totals, SCHEMA_VERSION};
use crate::{Error, Result};

/// Prompt tokens added to the budget in cost estimates, for the chat template.
const TEMPLATE_ALLOWANCE: u64 = 64;

/// Seconds since the epoch as RFC 3339 (UTC).
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// What `longctx run` takes besides the experiment file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOptions {
    /// Samples per dataset (the first ones; overrides the file's `limit`).
    pub limit: Option<usize>,
    /// When the run directory holds a run of a different configuration, run in
    /// `<name>-<config hash>` instead of refusing.
    pub force: bool,
    /// Where run directories go (overrides the file's `output_dir`).
    pub output_dir: Option<PathBuf>,
    /// The budget in US dollars (overrides the file's `budget_usd`).
    pub budget_usd: Option<f64>,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every sample was attempted (some may have failed: see [`Totals::failed`]).
    Complete,
    /// The interrupt flag was raised; the samples in flight were finished.
    Interrupted,
    /// The next sample would have taken the run past its budget.
    Budget,
}

/// What a session did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// How it ended.
    pub outcome: Outcome,
    /// The manifest's status: `complete`, `incomplete` (failed samples), `interrupted` or
    /// `budget_exhausted`.
    pub status: String,
    /// Predictions written in this session.
    pub written: u64,
    /// Totals over the run (every session).
    pub totals: Totals,
    /// The budget, if any.
    pub budget: Option<f64>,
    /// US dollars spent by the run (every session; judges not included).
    pub spent: f64,
    /// What the experiment's `[[judge]]`s did after generation (none without judges, or when
    /// generation did not complete).
    pub judging: Option<crate::judge::JudgeReport>,
}

/// One sample of one variant, sent to a worker with the cost reserved for it.
struct Unit {
    variant: usize,
    sample: usize,
    estimate: f64,
}

/// What a worker sends back.
struct Done {
    variant: usize,
    sample: usize,
    estimate: f64,
    result: Result<Value, String>,
}

/// The running state of a session: spend, counts, the run directory, the interrupt flag.
struct State<'a> {
    run_dir: PathBuf,
    spent: f64,
    budget: Option<f64>,
    written: u64,
    outcome: Outcome,
    interrupt: &'a AtomicBool,
}

/// Runs every variant of `plan` on every dataset into its run directory, resuming what is
/// there; stops starting samples when `interrupt` is raised (those in flight finish). The
/// manifest records the session however it ends; each variant's `result.json` is written
/// from the predictions on disk.
pub fn run(plan: &Plan, options: &RunOptions, interrupt: &AtomicBool) -> Result<RunSummary> {
    run_with(plan, options, interrupt, &mut ModelRuntime::load)
}

/// [`run`] with models loaded by `load` (called once per model, when it has work to do)
/// instead of from their configuration: a test backend, or one set up by the caller.
pub fn run_with(
    plan: &Plan,
    options: &RunOptions,
    interrupt: &AtomicBool,
    load: &mut dyn FnMut(&ModelConfig) -> Result<ModelRuntime>,
) -> Result<RunSummary> {
    let base = options.output_dir.clone().unwrap_or_else(|| plan.experiment.output_dir.clone());
    let config_hash = hash_json(&json!(plan.variants.iter().map(|v| v.hash.as_str()).collect::<Vec<_>>()));
    let mut run_dir = base.join(&plan.experiment.name);
    let mut previous = Manifest::load(&run_dir)?;
    if let Some(m) = &previous {
        let changed: Vec<String> = plan
            .variants
            .iter()
            .filter(|v| m.variants.iter().any(|mv| mv.name == v.name && mv.hash != v.hash))
            .map(|v| v.name.clone())
            .collect();
        if !changed.is_empty() {
            let new_dir = base.join(format!("{}-{}", plan.experiment.name, &config_hash[..8]));
            if !options.force {
                return Err(Error::ConfigChanged { dir: run_dir, variants: changed, new_dir });
            }
            run_dir = new_dir;
            eprintln!("the configuration changed: running in {}", run_dir.display());
            previous = Manifest::load(&run_dir)?;
        }
    }
    // The judges' endpoints are set up before anything runs, so that a missing API key is
    // reported before generation, not after it.
    let judges = plan
        .experiment
        .judges
        .iter()
        .map(|j| crate::judge::Judge::connect(j, &plan.experiment.pricing))
        .collect::<Result<Vec<_>>>()?;
    fs_err::create_dir_all(&run_dir)?;
    fs_err::write(run_dir.join("experiment.toml"), &plan.text)?;
    let mut manifest = new_manifest(plan, &config_hash, previous);
    manifest.save(&run_dir)?;
    eprintln!("run directory: {}", run_dir.display());

    // Every prediction file is read once, here: what earlier sessions wrote is skipped, and
    // what they spent counts against the budget.
    // Indexed [dataset][variant].
    let mut files: Vec<Vec<DatasetFiles>> = sets(plan)
        .iter()
        .map(|(name, _)| plan.variants.iter().map(|v| DatasetFiles::open(&run_dir.join(&v.name), name)).collect())
        .collect::<Result<_>>()?;
    let mut state = State {
        run_dir: run_dir.clone(),
        spent: files.iter().flatten().map(DatasetFiles::cost).sum(),
        budget: options.budget_usd.or(plan.experiment.pricing.budget_usd),
        written: 0,
        outcome: Outcome::Complete,
        interrupt,
    };
    let result = run_models(plan, options, &mut state, &mut manifest, &mut files, load);
    // Whatever happened, record it and score what is there.
    let scored = score_variants(plan, &run_dir);
    manifest.totals = totals(&files);
    let status = match (&result, state.outcome) {
        (Err(_), _) => "failed",
        (Ok(()), Outcome::Interrupted) => "interrupted",
        (Ok(()), Outcome::Budget) => "budget_exhausted",
        (Ok(()), Outcome::Complete) if manifest.totals.failed > 0 => "incomplete",
        (Ok(()), Outcome::Complete) => "complete",
    };
    manifest.status = status.to_string();
    let end = now();
    if let Some(s) = manifest.sessions.last_mut() {
        s.finished_at = Some(end.clone());
        s.status = status.to_string();
        s.written = state.written;
    }
    if status == "complete" {
        manifest.finished_at = Some(end);
    }
    manifest.save(&run_dir)?;
    result?;
    scored?;
    // Judges rate what was generated once every sample was attempted.
    let judging = if plan.experiment.judges.is_empty() || state.outcome != Outcome::Complete {
        None
    } else {
        eprintln!(
            "judging with {}",
            plan.experiment.judges.iter().map(|j| j.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        let report = crate::judge::judge_run(&run_dir, &judges, interrupt)?;
        if report.items == 0 {
            eprintln!("the judges have nothing to rate: no LongBench-Chat answers, no open-ended LongBench task");
        }
        (report.items > 0).then_some(report)
    };
    Ok(RunSummary {
        judging,
        run_dir,
        outcome: state.outcome,
        status: status.to_string(),
        written: state.written,
        totals: manifest.totals,
        budget: state.budget,
        spent: state.spent,
    })
}

fn new_manifest(plan: &Plan, config_hash: &str, previous: Option<Manifest>) -> Manifest {
    let mut variants: Vec<ManifestVariant> = plan
        .variants
        .iter()
        .map(|v| ManifestVariant {
            name: v.name.clone(),
            model: v.model.clone(),
            strategy: serde_json::to_value(&v.strategy).unwrap_or(Value::Null),
            group: v.group.clone(),
            params: v.params.clone(),
            hash: v.hash.clone(),
        })
        .collect();
    let mut datasets: Vec<String> = sets(plan).into_iter().map(|(name, _)| name).collect();
    let mut sessions = Vec::new();
    let mut started_at = now();
    if let Some(old) = previous {
        // Variants and datasets of earlier sessions stay on disk and in the report.
        for v in old.variants {
            if !variants.iter().any(|x| x.name == v.name) {
                variants.push(v);
            }
        }
        for d in old.datasets {
            if !datasets.contains(&d) {
                datasets.push(d);
            }
        }
        sessions = old.sessions;
        started_at = old.started_at;
    }
    sessions.push(Session { started_at: now(), finished_at: None, status: "running".into(), written: 0 });
    Manifest {
        schema_version: SCHEMA_VERSION,
        experiment: plan.experiment.name.clone(),
        config_hash: config_hash.to_string(),
        config: serde_json::to_value(&plan.experiment).unwrap_or(Value::Null),
        longctx_version: env!("CARGO_PKG_VERSION").to_string(),
        git_hash: option_env!("LONGCTX_GIT_HASH").map(str::to_string),
        suite: plan.experiment.benchmark.suite.clone(),
        baseline: plan.baseline(),
        datasets,
        variants,
        models: plan
            .models
            .iter()
            .map(|m| ManifestModel {
                name: m.display_name(),
                backend: format!("{:?}", m.backend).to_lowercase(),
                describe: String::new(),
                window: None,
            })
            .collect(),
        started_at,
        finished_at: None,
        status: "running".into(),
        totals: Totals::default(),
        sessions,
    }
}

/// What one "dataset" of a run is: a LongBench dataset, or a RULER task at one length.
#[derive(Clone, Copy)]
enum SetKind {
    LongBench(&'static DatasetSpec),
    Ruler(&'static Task, usize),
    Chat,
}

/// The datasets of a run in order, with their file stems.
fn sets(plan: &Plan) -> Vec<(String, SetKind)> {
    if plan.chat.is_some() {
        return vec![(plan::CHAT_DATASET.to_string(), SetKind::Chat)];
    }
    match &plan.ruler {
        Some(r) => r.sets.iter().map(|(t, l, name)| (name.clone(), SetKind::Ruler(t, *l))).collect(),
        None => plan.datasets.iter().map(|d| (d.name.to_string(), SetKind::LongBench(d))).collect(),
    }
}

fn run_models(
    plan: &Plan,
    options: &RunOptions,
    state: &mut State<'_>,
    manifest: &mut Manifest,
    files: &mut [Vec<DatasetFiles>],
    load: &mut dyn FnMut(&ModelConfig) -> Result<ModelRuntime>,
) -> Result<()> {
    let sets = sets(plan);
    // The samples of each set: LongBench's from its files; RULER's are generated in each
    // model's tokenizer once it is loaded, so only their ids are known here.
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    for (_, kind) in &sets {
        samples.push(match kind {
            SetKind::LongBench(spec) => plan.samples(spec, options.limit)?,
            SetKind::Ruler(..) => {
                let ruler = plan.ruler.as_ref().expect("a RULER plan");
                let mut ids = ruler.ids();
                if let Some(n) = options.limit {
                    ids.truncate(n);
                }
                ids.into_iter().map(|id| Sample::new(id, "", "")).collect()
            }
            SetKind::Chat => {
                let mut s = plan.chat.as_ref().expect("a LongBench-Chat plan").samples();
                if let Some(n) = options.limit {
                    s.truncate(n);
                }
                s
            }
        });
    }
    let mut factory = StrategyFactory::default();
    for (mi, model_config) in plan.models.iter().enumerate() {
        // A model's variants are consecutive (models outermost).
        let first = plan.variants.iter().position(|v| v.model_index == mi).unwrap_or(0);
        let count = plan.variants.iter().filter(|v| v.model_index == mi).count();
        let range = first..first + count;
        let variants: Vec<&Variant> = plan.variants[range.clone()].iter().collect();
        let mut runtime: Option<(ModelRuntime, Vec<Box<dyn ContextStrategy>>)> = None;
        for (((name, kind), files), samples) in sets.iter().zip(files.iter_mut()).zip(&samples) {
            if state.outcome != Outcome::Complete {
                return Ok(());
            }
            let files = &mut files[range.clone()];
            let pending: usize = files.iter().map(|f| samples.iter().filter(|s| !f.done.contains(&s.id)).count()).sum();
            if pending > 0 {
                if runtime.is_none() {
                    eprintln!("loading model `{}`", model_config.display_name());
                    let rt = load(model_config)?;
                    manifest.models[mi].describe = rt.backend.describe();
                    manifest.models[mi].window = rt.native().map(longctx_backends::native::NativeBackend::window);
                    manifest.save(&state.run_dir)?;
                    let strategies = variants
                        .iter()
                        .map(|v| factory.build(v, &plan.experiment.pricing))
                        .collect::<Result<Vec<_>>>()?;
                    runtime = Some((rt, strategies));
                }
                let (rt, strategies) = runtime.as_ref().expect("loaded above");
                let price = plan.experiment.pricing.price(&model_config.display_name());
                match *kind {
                    SetKind::LongBench(spec) => {
                        let job = Job {
                            name,
                            kind: JobKind::LongBench(spec),
                            samples,
                            variants: &variants,
                            strategies,
                            rt,
                            price,
                        };
                        run_dataset(&job, files, state)?;
                    }
                    SetKind::Chat => {
                        let chat = plan.chat.as_ref().expect("a LongBench-Chat plan");
                        let kind = JobKind::Chat { max_length: chat.max_length, temperature: chat.temperature };
                        let job = Job { name, kind, samples, variants: &variants, strategies, rt, price };
                        run_dataset(&job, files, state)?;
                    }
                    SetKind::Ruler(task, length) => {
                        let ruler = plan.ruler.as_ref().expect("a RULER plan");
                        let started = Instant::now();
                        let mut generated =
                            ruler.generate(task, length, rt).map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
                        generated.truncate(samples.len());
                        eprintln!(
                            "{:<12} {name}: {} samples generated in {:.1} s",
                            model_config.display_name(),
                            generated.len(),
                            started.elapsed().as_secs_f64()
                        );
                        let (real, templates): (Vec<Sample>, Vec<String>) =
                            generated.iter().map(|g| plan::ruler_sample(g, name)).unzip();
                        let kind = JobKind::Ruler { task, generated: &generated, templates: &templates };
                        let job = Job { name, kind, samples: &real, variants: &variants, strategies, rt, price };
                        run_dataset(&job, files, state)?;
                    }
                }
            }
            let order: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
            for f in files {
                f.compact(&order)?;
            }
        }
    }
    Ok(())
}

/// Tokens of the whole, untruncated prompt. Strategies other than full context fill the
/// template with their own context, so it is their prompt's count with the context's tokens
/// swapped for the sample's (exact up to a token or two where context and template meet).
fn original_tokens(a: &Applied) -> usize {
    (a.prompt_tokens_before + a.context_tokens_before).saturating_sub(a.context_tokens_after)
}

/// One prediction line: LongBench's keys, then what was done to get it.
fn prediction_line(
    sample: &Sample,
    variant: &Variant,
    applied: &Applied,
    completion: &Completion,
    price: &Price,
    seconds: f64,
) -> Value {
    let generation_cost =
        price.cost(completion.prompt_tokens, completion.completion_tokens, 0) + completion.usage.cost_usd;
    let context_cost = applied.usage.cost_usd;
    let mut v = json!({
        "pred": completion.text,
        "answers": sample.answers,
        "all_classes": sample.all_classes,
        "length": sample.length,
        "id": sample.id,
        "strategy": variant.name,
        "model": variant.model,
        "prompt_tokens": completion.prompt_tokens,
        "fitted_tokens": applied.prompt_tokens,
        "original_tokens": original_tokens(applied),
        "context_tokens_before": applied.context_tokens_before,
        "context_tokens_after": applied.context_tokens_after,
        "truncated": applied.truncated,
        "completion_tokens": completion.completion_tokens,
        "finish_reason": completion.finish_reason,
        "latency_s": seconds,
        "generation_latency_s": completion.latency_s,
        "requests": completion.usage.requests,
        "cost_usd": generation_cost + context_cost,
        "generation_cost_usd": generation_cost,
        "context_cost_usd": context_cost,
        "context_usage": applied.usage,
    });
    if let (Some(n), Some(kept)) = (applied.n_chunks, &applied.kept_chunks) {
        v["n_chunks"] = json!(n);
        v["kept_chunks"] = json!(kept);
    }
    v
}

/// How a job's samples become requests.
enum JobKind<'a> {
    /// The dataset's official template and generation settings.
    LongBench(&'static DatasetSpec),
    /// Generated RULER samples: per-sample templates and answer prefixes.
    Ruler { task: &'static Task, generated: &'a [Generated], templates: &'a [String] },
    /// LongBench-Chat: the whole prompt, cut in the middle as the official script cuts it.
    Chat { max_length: usize, temperature: f64 },
}

/// What the workers of one dataset share.
struct Job<'a> {
    name: &'a str,
    kind: JobKind<'a>,
    samples: &'a [Sample],
    variants: &'a [&'a Variant],
    strategies: &'a [Box<dyn ContextStrategy>],
    rt: &'a ModelRuntime,
    price: Price,
}

/// Progress of one dataset: counts for the bar and the summary line.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    tokens: u64,
    failed: u64,
    /// Sum and count of the context cost per variant (for estimates).
    context_costs: Vec<(f64, u64)>,
}

impl Job<'_> {
    /// The generation length of the job's requests.
    fn max_new_tokens(&self) -> usize {
        match &self.kind {
            JobKind::LongBench(spec) => self.rt.request(spec, String::new()).max_new_tokens,
            JobKind::Ruler { task, .. } => self.rt.ruler_request(task, String::new(), "").max_new_tokens,
            JobKind::Chat { temperature, .. } => self.rt.chat_request(String::new(), *temperature).max_new_tokens,
        }
    }

    /// Fits, generates and formats one sample of one variant.
    fn process(&self, unit: &Unit) -> Done {
        let t0 = Instant::now();
        let sample = &self.samples[unit.sample];
        let variant = self.variants[unit.variant];
        let strategy = self.strategies[unit.variant].as_ref();
        let prepared = match &self.kind {
            JobKind::LongBench(spec) => plan::apply(strategy, spec, sample, self.rt).map(|applied| {
                let request = self.rt.request(spec, applied.prompt.clone());
                (applied, request)
            }),
            JobKind::Ruler { task, generated, templates } => {
                plan::apply_ruler(strategy, sample, &templates[unit.sample], self.rt).map(|applied| {
                    let prefix = &generated[unit.sample].answer_prefix;
                    let request = self.rt.ruler_request(task, applied.prompt.clone(), prefix);
                    (applied, request)
                })
            }
            JobKind::Chat { max_length, temperature } => {
                let full = matches!(variant.strategy, crate::experiment::VariantStrategy::Full);
                plan::apply_chat(strategy, full, sample, *max_length, self.rt).map(|applied| {
                    let request = self.rt.chat_request(applied.prompt.clone(), *temperature);
                    (applied, request)
                })
            }
        };
        let result = prepared.map_err(|e| error_chain(&e)).and_then(|(applied, request)| {
            self.rt
                .backend
                .generate(&request)
                .map(|c| {
                    let mut line =
                        prediction_line(sample, variant, &applied, &c, &self.price, t0.elapsed().as_secs_f64());
                    if let JobKind::Ruler { task, generated, .. } = &self.kind {
                        let g = &generated[unit.sample];
                        line["task"] = json!(task.name);
                        line["target_length"] = json!(g.target_length);
                        line["depth"] = json!(g.depth);
                        line["haystack"] = json!(g.haystack);
                        line["answer_prefix"] = json!(g.answer_prefix);
                    }
                    if let JobKind::Chat { .. } = &self.kind {
                        // The prompt's length in tokens (as the official script counts them),
                        // and what the judges need besides the answer.
                        line["length"] = json!(applied.context_tokens_before);
                        line["query"] = json!(sample.input);
                    }
                    line
                })
                .map_err(|e| e.to_string())
        });
        Done { variant: unit.variant, sample: unit.sample, estimate: unit.estimate, result }
    }

    /// Writes a finished sample (prediction or failure) and updates the counts.
    fn record(&self, done: Done, files: &mut [DatasetFiles], state: &mut State<'_>, p: &mut Progress) -> Result<()> {
        let sample = &self.samples[done.sample];
        let f = &mut files[done.variant];
        match done.result {
            Ok(line) => {
                let c = &mut p.context_costs[done.variant];
                c.0 += line["context_cost_usd"].as_f64().unwrap_or(0.0);
                c.1 += 1;
                state.spent += line["cost_usd"].as_f64().unwrap_or(0.0);
                p.tokens +=
                    line["prompt_tokens"].as_u64().unwrap_or(0) + line["completion_tokens"].as_u64().unwrap_or(0);
                f.write_prediction(&sample.id, line)?;
                state.written += 1;
            }
            Err(error) => {
                p.failed += 1;
                let name = &self.variants[done.variant].name;
                let v = json!({"id": sample.id, "dataset": self.name, "variant": name, "error": error});
                p.bar.suspend(|| eprintln!("{name}/{} sample {}: {error}", self.name, sample.id));
                f.write_failure(v)?;
            }
        }
        p.bar.inc(1);
        let secs = p.started.elapsed().as_secs_f64().max(1e-9);
        p.bar.set_message(format!("{:.0} tok/s, ${:.4}", p.tokens as f64 / secs, state.spent));
        Ok(())
    }
}

/// Runs the samples of one dataset not yet done, with up to the backend's parallelism in
/// flight, and writes each as it finishes.
fn run_dataset(job: &Job<'_>, files: &mut [DatasetFiles], state: &mut State<'_>) -> Result<()> {
    let model = &job.rt.config;
    let estimate_generation =
        job.price.cost(model.max_prompt_tokens as u64 + TEMPLATE_ALLOWANCE, job.max_new_tokens() as u64, 0);
    // (variant, sample) pairs not done yet, sample by sample.
    let mut units: Vec<(usize, usize)> = Vec::new();
    for (si, s) in job.samples.iter().enumerate() {
        for (vi, f) in files.iter().enumerate() {
            if !f.done.contains(&s.id) {
                units.push((vi, si));
            }
        }
    }
    let bar = ProgressBar::new(units.len() as u64).with_prefix(format!("{:<12} {}", model.display_name(), job.name));
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, ETA {eta}) {msg}",
        )
        .expect("a valid template"),
    );
    let mut progress = Progress {
        bar,
        started: Instant::now(),
        tokens: 0,
        failed: 0,
        context_costs: vec![(0.0, 0); job.variants.len()],
    };
    let parallel = job.rt.backend.parallelism().max(1);
    let (work_tx, work_rx) = mpsc::channel::<Unit>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..parallel {
            let work_rx = Arc::clone(&work_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || loop {
                let unit = work_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                let Ok(unit) = unit else { break };
                if done_tx.send(job.process(&unit)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        let (mut next, mut in_flight, mut reserved, mut stop) = (0, 0usize, 0.0, false);
        let outcome = loop {
            while !stop && in_flight < parallel && next < units.len() {
                if state.interrupt.load(Ordering::SeqCst) {
                    stop = true;
                    state.outcome = Outcome::Interrupted;
                    break;
                }
                let (variant, sample) = units[next];
                let (sum, n) = progress.context_costs[variant];
                let estimate = estimate_generation + if n > 0 { sum / n as f64 } else { 0.0 };
                if state.budget.is_some_and(|budget| state.spent + reserved + estimate > budget) {
                    stop = true;
                    state.outcome = Outcome::Budget;
                    break;
                }
                reserved += estimate;
                work_tx.send(Unit { variant, sample, estimate }).expect("workers live while units are sent");
                in_flight += 1;
                next += 1;
            }
            if in_flight == 0 {
                break Ok(());
            }
            let Ok(done) = done_rx.recv() else { break Ok(()) };
            in_flight -= 1;
            reserved -= done.estimate;
            if let Err(e) = job.record(done, files, state, &mut progress) {
                break Err(e);
            }
        };
        drop(work_tx);
        outcome
    })?;
    progress.bar.finish_and_clear();
    let failed = progress.failed;
    eprintln!(
        "{:<12} {:<22} {} of {} done in {:.1} s{}",
        model.display_name(),
        job.name,
        progress.bar.position() - failed,
        units.len(),
        progress.started.elapsed().as_secs_f64(),
        if failed > 0 { format!(", {failed} failed") } else { String::new() }
    );
    Ok(())
}

/// Writes each variant's result.json (eval.py's) from the predictions on disk.
fn score_variants(plan: &Plan, run_dir: &Path) -> Result<()> {
    if plan.chat.is_some() {
        // Judges score LongBench-Chat (`longctx judge`, or the run's `[[judge]]`s).
        return Ok(());
    }
    if let Some(ruler) = &plan.ruler {
        for v in &plan.variants {
            let dir = run_dir.join(&v.name);
            if !dir.is_dir() {
                continue;
            }
            match longctx_bench::ruler::score::score_dir(&dir, ruler.threshold) {
                Ok(r) => fs_err::write(dir.join("result.json"), serde_json::to_string_pretty(&r.to_json())?)?,
                Err(longctx_bench::Error::NoPredictionFiles { .. }) => {}
                Err(e) => return Err(Error::from(e).in_file(&dir)),
            }
        }
        return Ok(());
    }
    let options = ScoreOptions { suite: plan.suite, metric: MetricOptions::default() };
    for v in &plan.variants {
        let dir = run_dir.join(&v.name);
        let has_predictions = dir.is_dir()
            && fs_err::read_dir(&dir)?
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with("jsonl"));
        if !has_predictions {
            continue;
        }
        let report = score_dir(&dir, &options).map_err(|e| Error::from(e).in_file(&dir))?;
        fs_err::write(dir.join("result.json"), report.result_json())?;
    }
    Ok(())
}

/// Totals over every prediction and failure of the run's files.
fn totals(files: &[Vec<DatasetFiles>]) -> Totals {
    let mut t = Totals::default();
    for f in files.iter().flatten() {
        for line in f.predictions() {
            t.samples += 1;
            t.cost_usd += line["cost_usd"].as_f64().unwrap_or(0.0);
            t.prompt_tokens += line["prompt_tokens"].as_u64().unwrap_or(0);
            t.completion_tokens += line["completion_tokens"].as_u64().unwrap_or(0);
        }
        t.failed += f.failed() as u64;
    }
    t
}

/// An error and its sources, `: `-separated (as a failed sample records it).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;

    use longctx_core::{Backend, BackendError, FinishReason, GenerationRequest, PromptInput, Usage};
    use longctx_models::tokenizer::HfTokenizer;

    use super::*;

    /// A backend that answers with the first word of the prompt's last line, and fails the
    /// calls whose numbers (from 0) are in `fail`.
    struct Mock {
        calls: AtomicUsize,
        fail: Vec<usize>,
    }

    impl Backend for Mock {
        fn describe(&self) -> String {
            "mock".into()
        }
        fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail.contains(&n) {
                return Err(BackendError::Failed(format!("call {n} fails")));
            }
            let text = match &request.prompt {
                PromptInput::Chat(m) => m[0].content.clone(),
                PromptInput::Text(t) => t.clone(),
            };
            let word = text.lines().last().unwrap_or_default().split_whitespace().next().unwrap_or("?");
            Ok(Completion {
                text: word.to_string(),
                prompt_tokens: text.len() as u64,
                completion_tokens: 1,
                latency_s: 0.0,
                finish_reason: FinishReason::Stop,
                usage: Usage::default(),
            })
        }
    }

    fn root() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
    }

    /// Two datasets of the shipped sample (3 + 1 records) × two variants.
    fn plan(out: &Path, extra: &str, tail: &str) -> Plan {
        let text = format!(
            r#"
name = "t"
output_dir = "{}"
[model]
name = "mock"
backend = "openai"
base_url = "http://127.0.0.1:9"
model = "mock"
tokenizer = "unused"
max_prompt_tokens = 300
{extra}
[benchmark]
data_dir = "{}"
datasets = ["multi_news", "trec"]
[[strategy]]
kind = "full"
[[strategy]]
kind = "truncate"
side = "end"
{tail}
"#,
            out.display(),
            root().join("data/longbench-sample").display()
        );
        Plan::parse(text).unwrap()
    }

    fn run_mock(plan: &Plan, options: &RunOptions, interrupt: bool, fail: Vec<usize>) -> Result<RunSummary> {
        let backend: Arc<dyn Backend> = Arc::new(Mock { calls: AtomicUsize::new(0), fail });
        let mut load = |c: &ModelConfig| {
            let tokenizer = HfTokenizer::from_file(&root().join("tests/fixtures/tiny/tokenizer.json")).unwrap();
            Ok(ModelRuntime::with_backend(c, Arc::clone(&backend), tokenizer, None))
        };
        run_with(plan, options, &AtomicBool::new(interrupt), &mut load)
    }

    fn ids(path: &Path) -> Vec<String> {
        crate::store::read_lines(path).unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn a_rerun_retries_failures_and_writes_each_sample_once_in_dataset_order() {
        let out = tempfile::tempdir().unwrap();
        let plan = plan(out.path(), "", "");
        let first = run_mock(&plan, &RunOptions::default(), false, vec![1, 4]).unwrap();
        assert_eq!((first.outcome, first.status.as_str(), first.written), (Outcome::Complete, "incomplete", 6));
        assert_eq!((first.totals.samples, first.totals.failed), (6, 2));
        let dir = out.path().join("t");
        assert!(dir.join("truncate-end/failed/multi_news.jsonl").is_file());
        let second = run_mock(&plan, &RunOptions::default(), false, vec![]).unwrap();
        assert_eq!((second.status.as_str(), second.written, second.totals.samples), ("complete", 2, 8));
        assert_eq!(second.totals.failed, 0);
        assert!(!dir.join("truncate-end/failed").join("multi_news.jsonl").exists());
        let samples = plan.samples(plan.datasets[0], None).unwrap();
        let order: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
        for variant in ["full", "truncate-end"] {
            assert_eq!(ids(&dir.join(variant).join("multi_news.jsonl")), order, "{variant}");
            assert!(dir.join(variant).join("result.json").is_file());
        }
        let manifest = Manifest::load(&dir).unwrap().unwrap();
        assert_eq!(manifest.sessions.len(), 2);
        assert_eq!((manifest.status.as_str(), manifest.totals.samples), ("complete", 8));
        // A third run has nothing to do.
        assert_eq!(run_mock(&plan, &RunOptions::default(), false, vec![]).unwrap().written, 0);
    }

    #[test]
    fn an_interrupted_run_starts_nothing_and_says_so() {
        let out = tempfile::tempdir().unwrap();
        let s = run_mock(&plan(out.path(), "", ""), &RunOptions::default(), true, vec![]).unwrap();
        assert_eq!((s.outcome, s.status.as_str(), s.written), (Outcome::Interrupted, "interrupted", 0));
        let manifest = Manifest::load(&out.path().join("t")).unwrap().unwrap();
        assert_eq!(manifest.sessions[0].status, "interrupted");
    }

    #[test]
    fn the_budget_stops_the_run_before_it_is_exceeded_and_a_larger_one_resumes_it() {
        let out = tempfile::tempdir().unwrap();
        // $1 per million prompt tokens: a sample's estimate is (300 + 64) µ$ plus its output.
        let plan = plan(out.path(), "", "[pricing]\nprices.mock = { input = 1.0, output = 1.0 }");
        let options = RunOptions { budget_usd: Some(0.0012), ..RunOptions::default() };
        let s = run_mock(&plan, &options, false, vec![]).unwrap();
        assert_eq!((s.outcome, s.status.as_str()), (Outcome::Budget, "budget_exhausted"));
        assert!(s.spent <= 0.0012 && s.written >= 1 && s.written < 8, "{s:?}");
        let more = RunOptions { budget_usd: Some(1.0), ..RunOptions::default() };
        let s = run_mock(&plan, &more, false, vec![]).unwrap();
        assert_eq!((s.status.as_str(), s.totals.samples), ("complete", 8));
    }

    /// A RULER reader that repeats what it was given: all of the user turn when the prompt
    /// is under `short` characters, otherwise only its first fifth (so needles deeper than
    /// that are "lost in the middle").
    struct Echo {
        short: usize,
        calls: AtomicUsize,
    }

    impl Backend for Echo {
        fn describe(&self) -> String {
            "echo".into()
        }
        fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let PromptInput::Chat(m) = &request.prompt else { panic!("RULER prompts are chats") };
            assert_eq!(
                (m.len(), m[1].role.as_str()),
                (2, "assistant"),
                "the answer prefix starts the assistant's turn"
            );
            let user = &m[0].content;
            let text = if user.len() < self.short {
                user.clone()
            } else {
                user.chars().take(user.chars().count() / 5).collect()
            };
            Ok(Completion {
                text,
                prompt_tokens: user.len() as u64,
                completion_tokens: 1,
                latency_s: 0.0,
                finish_reason: FinishReason::Stop,
                usage: Usage::default(),
            })
        }
    }

    fn ruler_plan(out: &Path) -> Plan {
        let text = format!(
            r#"
name = "r"
output_dir = "{}"
[model]
name = "echo"
backend = "openai"
base_url = "http://127.0.0.1:9"
model = "echo"
tokenizer = "unused"
max_prompt_tokens = 8192
[benchmark]
suite = "ruler"
lengths = [4096, 8192]
samples = 5
depths = 5
tasks = ["niah_single_1", "niah_multikey_2", "vt", "fwe"]
words = "{}"
[[strategy]]
kind = "full"
"#,
            out.display(),
            root().join("tests/data/ruler/words").display()
        );
        Plan::parse(text).unwrap()
    }

    #[test]
    fn a_ruler_run_scores_lengths_and_depths_and_resumes_without_new_calls() {
        let out = tempfile::tempdir().unwrap();
        let plan = ruler_plan(out.path());
        // The tiny tokenizer spends about 1.3 characters per token: 4K-token prompts are
        // about 5,000 characters, 8K ones about 10,000.
        let backend = Arc::new(Echo { short: 6000, calls: AtomicUsize::new(0) });
        let dyn_backend: Arc<dyn Backend> = backend.clone();
        let mut load = |c: &ModelConfig| {
            let tokenizer = HfTokenizer::from_file(&root().join("tests/fixtures/tiny/tokenizer.json")).unwrap();
            // A ChatML-like template, as SmolLM2's (the answer prefix continues the last turn).
            let template = longctx_models::chat_template::ChatTemplate::new(
                "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% if not loop.last %}\n{% endif %}{% endfor %}",
                "",
                "",
            )
            .unwrap();
            Ok(ModelRuntime::with_backend(c, Arc::clone(&dyn_backend), tokenizer, Some(template)))
        };
        let s = run_with(&plan, &RunOptions::default(), &AtomicBool::new(false), &mut load).unwrap();
        assert_eq!((s.status.as_str(), s.written), ("complete", 40));
        assert_eq!(backend.calls.load(Ordering::SeqCst), 40);
        let dir = out.path().join("r/full");
        let line = &crate::store::read_lines(&dir.join("niah_single_1-8192.jsonl")).unwrap()[4];
        assert_eq!(
            (line["task"].as_str(), line["target_length"].as_u64(), line["depth"].as_f64()),
            (Some("niah_single_1"), Some(8192), Some(100.0))
        );
        assert!(
            line["length"].as_u64().unwrap() <= 8192 && line["fitted_tokens"].as_u64().unwrap() + 128 <= 8192,
            "{line}"
        );
        let result: Value = serde_json::from_str(&fs_err::read_to_string(dir.join("result.json")).unwrap()).unwrap();
        assert_eq!(result["suite"], "ruler");
        assert_eq!(result["average"]["4096"], 100.0, "{result}");
        assert!(result["average"]["8192"].as_f64().unwrap() < 85.6, "{result}");
        assert_eq!(result["effective_length"], 4096, "{result}");
        let depth = |d: f64, l: u64| {
            result["depth"].as_array().unwrap().iter().find(|c| c["depth"] == d && c["length"] == l).unwrap()["score"]
                .as_f64()
                .unwrap()
        };
        assert_eq!((depth(0.0, 4096), depth(100.0, 4096)), (100.0, 100.0));
        assert_eq!((depth(0.0, 8192), depth(100.0, 8192)), (100.0, 0.0));
        // A second session finds every sample done and asks the backend nothing.
        let s = run_with(&plan, &RunOptions::default(), &AtomicBool::new(false), &mut load).unwrap();
        assert_eq!((s.status.as_str(), s.written), ("complete", 0));
        assert_eq!(backend.calls.load(Ordering::SeqCst), 40);
    }

    #[test]
    fn a_changed_configuration_is_refused_and_force_runs_beside_it() {
        let out = tempfile::tempdir().unwrap();
        run_mock(&plan(out.path(), "", ""), &RunOptions::default(), false, vec![]).unwrap();
        let changed = plan(out.path(), "temperature = 0.5", "");
        let err = run_mock(&changed, &RunOptions::default(), false, vec![]).unwrap_err();
        assert!(matches!(&err, Error::ConfigChanged { variants, .. } if variants.len() == 2), "{err}");
        assert!(err.to_string().contains("--force"));
        let forced = RunOptions { force: true, ..RunOptions::default() };
        let s = run_mock(&changed, &forced, false, vec![]).unwrap();
        assert!(s.run_dir.file_name().unwrap().to_str().unwrap().starts_with("t-"), "{}", s.run_dir.display());
        assert_eq!(s.totals.samples, 8);
    }
}
