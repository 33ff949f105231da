//! `longctx run EXPERIMENT.toml [--limit N] [--force] [--output-dir DIR] [--no-report]`: every
//! variant (model × strategy × parameter) on every dataset, resumable.
//!
//! Work goes model by model, dataset by dataset, sample by sample, and for each sample every
//! variant of the model (so RAG at several k embeds the sample's chunks once). Up to the
//! backend's parallelism of samples are in flight (1 for a native model; `concurrency` for an
//! HTTP backend). Each prediction is appended and flushed as it finishes; a rerun skips the ids
//! already written. A sample that fails is recorded under `failed/` and the run goes on; a
//! rerun retries it. With a budget, no sample starts whose estimated cost would take the run
//! past it; the run then stops, resumable. Ctrl-C stops starting samples, waits for those in
//! flight and records the run as interrupted (a second Ctrl-C exits at once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use longctx_bench::dataset::DatasetSpec;
use longctx_bench::metrics::MetricOptions;
use longctx_bench::score::{score_dir, ScoreOptions};
use longctx_context::strategy::ContextStrategy;
use longctx_core::Sample;
use serde_json::{json, Value};

use crate::cli::RunArgs;
use crate::experiment::{hash_json, Price, Variant};
use crate::plan::{self, ModelRuntime, Plan, StrategyFactory};
use crate::store::{DatasetFiles, Manifest, ManifestModel, ManifestVariant, Session, Totals, SCHEMA_VERSION};

/// Prompt tokens added to the budget in cost estimates, for the chat template.
const TEMPLATE_ALLOWANCE: u64 = 64;

/// Seconds since the epoch as RFC 3339 (UTC).
pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

fn install_interrupt_handler() {
    // Installing twice (a second run in one process) is an error ctrlc reports; the first
    // handler stays, which is what we want.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) > 0 {
            eprintln!("\ninterrupted again: exiting now; finished predictions are on disk");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the samples in flight (Ctrl-C again to exit at once)");
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Interrupted,
    Budget,
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

/// The running state of a session: spend, counts, the run directory.
struct State {
    run_dir: PathBuf,
    spent: f64,
    budget: Option<f64>,
    written: u64,
    outcome: Outcome,
}

pub(crate) fn run(args: &RunArgs) -> Result<()> {
    let plan = Plan::load(&args.experiment)?;
    let base = args.output_dir.clone().unwrap_or_else(|| plan.experiment.output_dir.clone());
    let config_hash = hash_json(&json!(plan.variants.iter().map(|v| v.hash.as_str()).collect::<Vec<_>>()));
    let mut run_dir = base.join(&plan.experiment.name);
    let mut previous = Manifest::load(&run_dir)?;
    if let Some(m) = &previous {
        let changed: Vec<&str> = plan
            .variants
            .iter()
            .filter(|v| m.variants.iter().any(|mv| mv.name == v.name && mv.hash != v.hash))
            .map(|v| v.name.as_str())
            .collect();
        if !changed.is_empty() {
            if !args.force {
                bail!(
                    "{} holds a run whose configuration differs for the variant(s) {}; its predictions would not match the experiment file. Rerun with --force to start (or later resume) a new run in {}-{}, or move the old run away",
                    run_dir.display(),
                    changed.join(", "),
                    run_dir.display(),
                    &config_hash[..8]
                );
            }
            run_dir = base.join(format!("{}-{}", plan.experiment.name, &config_hash[..8]));
            eprintln!("the configuration changed: running in {}", run_dir.display());
            previous = Manifest::load(&run_dir)?;
        }
    }
    fs_err::create_dir_all(&run_dir)?;
    fs_err::write(run_dir.join("experiment.toml"), &plan.text)?;
    let mut manifest = new_manifest(&plan, &config_hash, previous);
    manifest.save(&run_dir)?;
    eprintln!("run directory: {}", run_dir.display());

    install_interrupt_handler();
    let mut state = State {
        run_dir: run_dir.clone(),
        spent: 0.0,
        budget: args.budget_usd.or(plan.experiment.pricing.budget_usd),
        written: 0,
        outcome: Outcome::Complete,
    };
    // What earlier sessions spent counts against the budget.
    for v in &plan.variants {
        for spec in &plan.datasets {
            state.spent += DatasetFiles::open(&run_dir.join(&v.name), spec.name)?.cost_so_far;
        }
    }
    let result = run_models(&plan, args, &mut state, &mut manifest);
    // Whatever happened, record it and score what is there.
    let scored = score_variants(&plan, &run_dir);
    manifest.totals = totals(&plan, &run_dir)?;
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
    if !args.no_report {
        let paths = longctx_report::write_report(&run_dir, &longctx_report::ReportOptions::default())
            .with_context(|| format!("writing the report of {}", run_dir.display()))?;
        eprintln!("report: {}", paths.html.display());
        eprintln!("        {}", paths.markdown.display());
    }
    match state.outcome {
        Outcome::Interrupted => bail!("interrupted; run the same command again to resume"),
        Outcome::Budget => bail!(
            "stopped before exceeding the budget of ${:.4} (spent ${:.4}); raise budget_usd (or --budget-usd) and run again to resume",
            state.budget.unwrap_or(0.0),
            state.spent
        ),
        Outcome::Complete if manifest.totals.failed > 0 => bail!(
            "{} sample(s) failed (see failed/ in the variant directories); run again to retry them",
            manifest.totals.failed
        ),
        Outcome::Complete => {
            eprintln!(
                "done: {} predictions written in this session, {} in the run; cost ${:.4}",
                state.written, manifest.totals.samples, manifest.totals.cost_usd
            );
            Ok(())
        }
    }
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
    let mut datasets: Vec<String> = plan.datasets.iter().map(|d| d.name.to_string()).collect();
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
            })
            .collect(),
        started_at,
        finished_at: None,
        status: "running".into(),
        totals: Totals::default(),
        sessions,
    }
}

fn run_models(plan: &Plan, args: &RunArgs, state: &mut State, manifest: &mut Manifest) -> Result<()> {
    let mut samples: HashMap<&str, Vec<Sample>> = HashMap::new();
    for spec in &plan.datasets {
        samples.insert(spec.name, plan.samples(spec, args.limit)?);
    }
    let mut factory = StrategyFactory::default();
    for (mi, model_config) in plan.models.iter().enumerate() {
        let variants: Vec<&Variant> = plan.variants.iter().filter(|v| v.model_index == mi).collect();
        let mut runtime: Option<(ModelRuntime, Vec<Box<dyn ContextStrategy>>)> = None;
        for spec in &plan.datasets {
            if state.outcome != Outcome::Complete {
                return Ok(());
            }
            let samples = &samples[spec.name];
            let mut files: Vec<DatasetFiles> = variants
                .iter()
                .map(|v| DatasetFiles::open(&state.run_dir.join(&v.name), spec.name))
                .collect::<Result<_>>()?;
            let pending: usize = variants
                .iter()
                .enumerate()
                .map(|(vi, _)| samples.iter().filter(|s| !files[vi].done.contains(&s.id)).count())
                .sum();
            if pending > 0 {
                if runtime.is_none() {
                    eprintln!("loading model `{}`", model_config.display_name());
                    let rt = ModelRuntime::load(model_config)?;
                    manifest.models[mi].describe = rt.backend.describe();
                    manifest.save(&state.run_dir)?;
                    let strategies = variants
                        .iter()
                        .map(|v| factory.build(v, &plan.experiment.pricing))
                        .collect::<Result<Vec<_>>>()?;
                    runtime = Some((rt, strategies));
                }
                let (rt, strategies) = runtime.as_ref().expect("loaded above");
                let price = plan.experiment.pricing.price(&model_config.display_name());
                let job = Job { spec, samples, variants: &variants, strategies, rt, price };
                run_dataset(&job, &mut files, state)?;
            }
            let order: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
            for f in &mut files {
                f.compact(&order)?;
            }
        }
    }
    Ok(())
}

/// Tokens of the whole, untruncated prompt. Strategies other than full context fill the
/// template with their own context, so it is their prompt's count with the context's tokens
/// swapped for the sample's (exact up to a token or two where context and template meet).
fn original_tokens(a: &longctx_context::strategy::Applied) -> usize {
    (a.prompt_tokens_before + a.context_tokens_before).saturating_sub(a.context_tokens_after)
}

/// One prediction line: LongBench's keys, then what was done to get it.
fn prediction_line(
    sample: &Sample,
    variant: &Variant,
    applied: &longctx_context::strategy::Applied,
    completion: &longctx_core::Completion,
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

/// What the workers of one dataset share.
struct Job<'a> {
    spec: &'static DatasetSpec,
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
    /// Fits, generates and formats one sample of one variant.
    fn process(&self, unit: &Unit) -> Done {
        let t0 = Instant::now();
        let sample = &self.samples[unit.sample];
        let variant = self.variants[unit.variant];
        let result = plan::apply(self.strategies[unit.variant].as_ref(), self.spec, sample, self.rt)
            .map_err(|e| format!("{e:#}"))
            .and_then(|applied| {
                let request = self.rt.request(self.spec, applied.prompt.clone());
                self.rt
                    .backend
                    .generate(&request)
                    .map(|c| prediction_line(sample, variant, &applied, &c, &self.price, t0.elapsed().as_secs_f64()))
                    .map_err(|e| e.to_string())
            });
        Done { variant: unit.variant, sample: unit.sample, estimate: unit.estimate, result }
    }

    /// Writes a finished sample (prediction or failure) and updates the counts.
    fn record(&self, done: Done, files: &mut [DatasetFiles], state: &mut State, p: &mut Progress) -> Result<()> {
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
                f.write_prediction(&sample.id, &line)?;
                state.written += 1;
            }
            Err(error) => {
                p.failed += 1;
                let name = &self.variants[done.variant].name;
                let v = json!({"id": sample.id, "dataset": self.spec.name, "variant": name, "error": error});
                p.bar.suspend(|| eprintln!("{name}/{} sample {}: {error}", self.spec.name, sample.id));
                f.write_failure(&v)?;
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
fn run_dataset(job: &Job<'_>, files: &mut [DatasetFiles], state: &mut State) -> Result<()> {
    let model = &job.rt.config;
    let estimate_generation = job.price.cost(
        model.max_prompt_tokens as u64 + TEMPLATE_ALLOWANCE,
        job.rt.request(job.spec, String::new()).max_new_tokens as u64,
        0,
    );
    // (variant, sample) pairs not done yet, sample by sample.
    let mut units: Vec<(usize, usize)> = Vec::new();
    for (si, s) in job.samples.iter().enumerate() {
        for (vi, f) in files.iter().enumerate() {
            if !f.done.contains(&s.id) {
                units.push((vi, si));
            }
        }
    }
    let bar =
        ProgressBar::new(units.len() as u64).with_prefix(format!("{:<12} {}", model.display_name(), job.spec.name));
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
                if INTERRUPTED.load(Ordering::SeqCst) {
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
        job.spec.name,
        progress.bar.position() - failed,
        units.len(),
        progress.started.elapsed().as_secs_f64(),
        if failed > 0 { format!(", {failed} failed") } else { String::new() }
    );
    Ok(())
}

/// Writes each variant's result.json (eval.py's) from the predictions on disk.
fn score_variants(plan: &Plan, run_dir: &Path) -> Result<()> {
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
        let report = score_dir(&dir, &options).with_context(|| format!("scoring {}", dir.display()))?;
        fs_err::write(dir.join("result.json"), report.result_json())?;
    }
    Ok(())
}

/// Totals over every prediction and failure on disk.
fn totals(plan: &Plan, run_dir: &Path) -> Result<Totals> {
    let mut t = Totals::default();
    for v in &plan.variants {
        for spec in &plan.datasets {
            let dir = run_dir.join(&v.name);
            for line in crate::store::read_lines(&dir.join(format!("{}.jsonl", spec.name)))? {
                t.samples += 1;
                t.cost_usd += line["cost_usd"].as_f64().unwrap_or(0.0);
                t.prompt_tokens += line["prompt_tokens"].as_u64().unwrap_or(0);
                t.completion_tokens += line["completion_tokens"].as_u64().unwrap_or(0);
            }
            t.failed +=
                crate::store::read_lines(&dir.join("failed").join(format!("{}.jsonl", spec.name)))?.len() as u64;
        }
    }
    Ok(t)
}
