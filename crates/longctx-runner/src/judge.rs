//! The judging pass (`longctx judge RUN_DIR`, and the end of `longctx run` when the experiment
//! has `[[judge]]`s): every prediction of LongBench-Chat — or of LongBench's open-ended tasks
//! (QA and summarization) — rated 1–10 by each LLM judge, as LongBench-Chat's `eval.py` asks
//! GPT-4; then the judges' means and totals, and how far they agree, in `RUN_DIR/judgements.json`.
//!
//! Judgements are appended line by line beside the predictions, in
//! `RUN_DIR/<variant>/judgements/<judge>/<dataset>.jsonl` (one
//! [`Judgement`](longctx_bench::chat::Judgement) per item, with every raw reply and failed call).
//! A rerun skips every item a judge has answered (rated, or unparsed after five replies: those
//! were paid for) and asks again only where every try failed before a reply (the endpoint was
//! down), so judging resumes and never pays twice.
//!
//! LongBench-Chat cases get the official request: `prompt_fs.txt` with the case's three rated
//! few-shot answers (optionally shuffled per judge). LongBench's open-ended samples have no rated
//! examples; they get the same instructions without them (`prompt_zs.txt`), the sample's question
//! (or, for summarization, the task's instruction) and its reference answers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use indicatif::{ProgressBar, ProgressStyle};
use longctx_backends::openai::OpenAiChat;
use longctx_bench::agreement;
use longctx_bench::chat::{self, Aggregate, FewShot, Judgement};
use longctx_bench::dataset::{self, Suite};
use longctx_bench::metrics::Metric;
use longctx_core::ChatModel;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::experiment::{validate_judges, JudgeConfig, PricingConfig};
use crate::plan::{Plan, CHAT_DATASET};
use crate::store::{read_lines, Manifest};
use crate::{Error, Result};

/// The file, in the run directory, that holds the judges' aggregates and agreement.
pub const SUMMARY_FILE: &str = "judgements.json";

/// A judge of the run: asked in this session, or only summarized with the others.
pub struct Judge {
    /// Its settings.
    pub config: JudgeConfig,
    /// Its endpoint; `None` for a judge not asked in this session (`longctx judge --judge`
    /// names others), whose judgements on disk still enter `judgements.json`.
    pub model: Option<Arc<dyn ChatModel>>,
}

impl Judge {
    /// A judge over its OpenAI-compatible endpoint.
    pub fn connect(config: &JudgeConfig, pricing: &PricingConfig) -> Result<Self> {
        let chat = OpenAiChat::new(config.endpoint_config(pricing))
            .map_err(|e| Error::Invalid(format!("judge `{}`: {e}", config.name)))?;
        Ok(Self { config: config.clone(), model: Some(Arc::new(chat)) })
    }

    /// A judge that is not asked in this session (its endpoint is not set up: its API key may be
    /// absent), only summarized.
    pub fn listed(config: &JudgeConfig) -> Self {
        Self { config: config.clone(), model: None }
    }
}

/// A file of judges for `longctx judge --judges FILE`: `[[judge]]` entries and their prices.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JudgesFile {
    #[serde(rename = "judge")]
    judges: Vec<JudgeConfig>,
    #[serde(default)]
    pricing: PricingConfig,
}

/// The judges of `longctx judge`: those of `judges_file` when given, else the run's own
/// (`RUN_DIR/experiment.toml`); with `only`, only those named are asked (the others are
/// [listed](Judge::listed): `judgements.json` keeps covering every judge).
pub fn load_judges(run_dir: &Path, judges_file: Option<&Path>, only: &[String]) -> Result<Vec<Judge>> {
    let (configs, pricing) = if let Some(path) = judges_file {
        let text = fs_err::read_to_string(path)?;
        let f: JudgesFile = toml::from_str(&text).map_err(|e| Error::from(e).in_file(path))?;
        validate_judges(&f.judges).map_err(|e| e.in_file(path))?;
        (f.judges, f.pricing)
    } else {
        let path = run_dir.join("experiment.toml");
        let text = fs_err::read_to_string(&path)?;
        let e = crate::Experiment::parse(&text).map_err(|e| e.in_file(&path))?;
        (e.judges, e.pricing)
    };
    for name in only {
        if !configs.iter().any(|c| &c.name == name) {
            let known: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
            invalid!("no judge is named `{name}` (judges: {})", known.join(", "));
        }
    }
    if configs.is_empty() {
        invalid!(
            "no judges: give `[[judge]]` entries in the experiment, or a file of them with --judges (see the README)"
        );
    }
    let asked = |c: &JudgeConfig| only.is_empty() || only.contains(&c.name);
    configs.iter().map(|c| if asked(c) { Judge::connect(c, &pricing) } else { Ok(Judge::listed(c)) }).collect()
}

/// What a judging session did.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeReport {
    /// Items (variant × dataset × prediction) open to judging.
    pub items: usize,
    /// Judgements written in this session.
    pub written: u64,
    /// Of those, without a rating (unparsed after every reply, or every try failed).
    pub unrated: u64,
    /// Items a judge asked in this session still has to answer (every try failed, or not
    /// asked: interrupted).
    pub pending: u64,
    /// US dollars the judges cost in this session.
    pub cost_usd: f64,
    /// Whether the interrupt flag stopped the session.
    pub interrupted: bool,
    /// `RUN_DIR/judgements.json`.
    pub summary: PathBuf,
}

/// One prediction to judge.
struct Item {
    variant: String,
    dataset: String,
    id: String,
    tokens: u64,
    /// The judge's user message, before the few-shot order is drawn (LongBench-Chat) or final.
    request: Request,
}

enum Request {
    /// A LongBench-Chat case: the case and its rated answers.
    Chat { case: chat::TestCase, shots: Vec<FewShot>, prediction: String },
    /// A zero-shot message.
    Plain(String),
}

/// Where a judge's judgements of a variant's dataset go.
pub fn judgements_path(run_dir: &Path, variant: &str, judge: &str, dataset: &str) -> PathBuf {
    run_dir.join(variant).join("judgements").join(judge).join(format!("{dataset}.jsonl"))
}

/// Whether LongBench's dataset has open answers a judge can rate (its metric is F1 or ROUGE).
fn open_ended(spec: &dataset::DatasetSpec) -> bool {
    matches!(spec.metric, Metric::QaF1 | Metric::QaF1Zh | Metric::Rouge | Metric::RougeZh)
}

/// The question a judge sees for a LongBench sample: its input, or for tasks without one
/// (summarization) the template's instruction after the context.
fn longbench_query(spec: &dataset::DatasetSpec, input: &str) -> String {
    if !input.trim().is_empty() {
        return input.trim().to_string();
    }
    let template = longctx_bench::prompt::template(spec);
    let tail = template.split("{context}").last().unwrap_or_default();
    tail.replace("{input}", "").trim().to_string()
}

/// The items of a run: every prediction of LongBench-Chat, or of LongBench's open-ended tasks.
fn items(run_dir: &Path, manifest: &Manifest) -> Result<Vec<Item>> {
    let shots = chat::few_shots();
    let mut out = Vec::new();
    // LongBench samples' questions, by dataset, read once (from the run's data source).
    let mut queries: HashMap<String, HashMap<String, String>> = HashMap::new();
    let longbench = matches!(manifest.suite.as_str(), "longbench" | "longbench-e");
    let plan = if longbench { Some(Plan::load(&run_dir.join("experiment.toml"))?) } else { None };
    for v in &manifest.variants {
        for d in &manifest.datasets {
            let path = run_dir.join(&v.name).join(format!("{d}.jsonl"));
            if !path.is_file() {
                continue;
            }
            let spec = if d == CHAT_DATASET {
                None
            } else if let Some(plan) = &plan {
                let spec = match plan.suite {
                    Suite::LongBench => dataset::dataset(d),
                    Suite::LongBenchE => dataset::dataset_e(d),
                }?;
                if !open_ended(spec) {
                    continue;
                }
                if !queries.contains_key(d) {
                    let by_id =
                        plan.samples(spec, None)?.into_iter().map(|s| (s.id.clone(), longbench_query(spec, &s.input)));
                    queries.insert(d.clone(), by_id.collect());
                }
                Some(spec)
            } else {
                continue;
            };
            for (n, line) in read_lines(&path)?.into_iter().enumerate() {
                let at = |what: &str| Error::BadLine { path: path.clone(), line: n + 1, message: what.to_string() };
                let id = line["id"].as_str().ok_or_else(|| at("no `id`"))?.to_string();
                let pred = chat::official_prediction(line["pred"].as_str().ok_or_else(|| at("no `pred`"))?);
                let answers: Vec<String> = line["answers"]
                    .as_array()
                    .ok_or_else(|| at("no `answers`"))?
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                let tokens = line["original_tokens"].as_u64().or_else(|| line["length"].as_u64()).unwrap_or(0);
                let request = if spec.is_none() {
                    let idx: usize = id.parse().map_err(|_| at("a LongBench-Chat id is the case's idx"))?;
                    let case_shots = shots
                        .get(idx.wrapping_sub(1))
                        .ok_or_else(|| at(&format!("case idx {idx} has no few-shot answers (1 to 50)")))?;
                    let case = chat::TestCase {
                        idx,
                        prompt: String::new(),
                        query: line["query"].as_str().ok_or_else(|| at("no `query`"))?.to_string(),
                        answer: answers.first().cloned().ok_or_else(|| at("no reference answer"))?,
                    };
                    Request::Chat { case, shots: case_shots.clone(), prediction: pred }
                } else {
                    let query =
                        queries[d].get(&id).ok_or_else(|| at(&format!("sample {id} is not in the dataset's data")))?;
                    Request::Plain(chat::judge_prompt_zero_shot(query, &answers.join("\n"), &pred)?)
                };
                out.push(Item { variant: v.name.clone(), dataset: d.clone(), id, tokens, request });
            }
        }
    }
    Ok(out)
}

/// The last judgement of each item in a judgements file.
fn latest(path: &Path) -> Result<HashMap<String, Judgement>> {
    Ok(chat::read_judgements(path)?.into_iter().map(|j| (j.id.clone(), j)).collect())
}

/// The items a judge has still to answer (index into the items, and the judge's message).
type Queue = Mutex<VecDeque<(usize, String)>>;

/// Per judge, the items it has not answered yet and their messages.
fn queues(run_dir: &Path, judges: &[Judge], items: &[Item]) -> Result<Vec<Queue>> {
    let mut queues = Vec::new();
    for judge in judges {
        let mut done: HashMap<(String, String), HashMap<String, Judgement>> = HashMap::new();
        let mut queue = VecDeque::new();
        let asked = if judge.model.is_some() { items } else { &[] };
        for (i, item) in asked.iter().enumerate() {
            let key = (item.variant.clone(), item.dataset.clone());
            if !done.contains_key(&key) {
                let path = judgements_path(run_dir, &item.variant, &judge.config.name, &item.dataset);
                done.insert(key.clone(), latest(&path)?);
            }
            if done[&key].get(&item.id).is_some_and(Judgement::is_final) {
                continue;
            }
            let message = match &item.request {
                Request::Chat { case, shots, prediction } => {
                    let order = chat::shot_order(shots, judge.config.shuffle_seed, &judge.config.name, case.idx);
                    chat::judge_prompt(chat::PROMPT_FS, case, &order, prediction)?
                }
                Request::Plain(m) => m.clone(),
            };
            queue.push_back((i, message));
        }
        queues.push(Mutex::new(queue));
    }
    Ok(queues)
}

/// Judges every item of the run that a judge has not answered yet, `concurrency` calls in
/// flight per judge; stops asking when `interrupt` is raised. Then writes
/// `RUN_DIR/judgements.json` from every judgement on disk. A run with nothing to judge (no
/// LongBench-Chat, no open-ended LongBench task) gives a report of 0 items and writes nothing.
pub fn judge_run(run_dir: &Path, judges: &[Judge], interrupt: &AtomicBool) -> Result<JudgeReport> {
    let manifest = Manifest::load(run_dir)?
        .ok_or_else(|| Error::Invalid(format!("{} holds no run (no manifest.json)", run_dir.display())))?;
    let items = items(run_dir, &manifest)?;
    let mut report = JudgeReport {
        items: items.len(),
        written: 0,
        unrated: 0,
        pending: 0,
        cost_usd: 0.0,
        interrupted: false,
        summary: run_dir.join(SUMMARY_FILE),
    };
    if items.is_empty() {
        return Ok(report);
    }
    let queues = queues(run_dir, judges, &items)?;
    let total: usize = queues.iter().map(|q| q.lock().map_or(0, |q| q.len())).sum();
    let bar = ProgressBar::new(total as u64).with_prefix("judging");
    bar.set_style(
        ProgressStyle::with_template("{prefix:.bold} [{elapsed_precise}] {wide_bar} {pos}/{len} (ETA {eta}) {msg}")
            .expect("a valid template"),
    );
    let (tx, rx) = mpsc::channel::<(usize, usize, Judgement)>();
    let written = std::thread::scope(|scope| -> Result<()> {
        for (ji, judge) in judges.iter().enumerate() {
            let Some(model) = &judge.model else { continue };
            for _ in 0..judge.config.concurrency.unwrap_or(4) {
                let (tx, queue, items) = (tx.clone(), &queues[ji], &items);
                scope.spawn(move || loop {
                    if interrupt.load(Ordering::SeqCst) {
                        break;
                    }
                    let next = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front();
                    let Some((i, message)) = next else { break };
                    let max_tokens = judge.config.max_tokens.unwrap_or(chat::JUDGE_MAX_TOKENS);
                    let j = chat::judge_case(&judge.config.name, model.as_ref(), &items[i].id, &message, max_tokens);
                    if tx.send((ji, i, j)).is_err() {
                        break;
                    }
                });
            }
        }
        drop(tx);
        for (ji, i, j) in rx {
            let item = &items[i];
            let name = &judges[ji].config.name;
            let path = judgements_path(run_dir, &item.variant, name, &item.dataset);
            if let Some(dir) = path.parent() {
                fs_err::create_dir_all(dir)?;
            }
            chat::append_judgement(&path, &j)?;
            report.written += 1;
            report.cost_usd += j.usage.cost_usd;
            if j.rating.is_none() {
                report.unrated += 1;
                let why = if j.replies.is_empty() {
                    format!("every try failed: {}", j.errors.last().map_or("", String::as_str))
                } else {
                    "no rating in any reply".to_string()
                };
                bar.suspend(|| {
                    eprintln!("{name}: {}/{} item {}: unrated ({why})", item.variant, item.dataset, item.id);
                });
            }
            bar.inc(1);
            bar.set_message(format!("${:.4}", report.cost_usd));
        }
        Ok(())
    });
    bar.finish_and_clear();
    report.interrupted = interrupt.load(Ordering::SeqCst);
    // Whatever happened, the summary covers what is on disk.
    let summary = summarize(run_dir, &manifest, judges, &items)?;
    report.pending = summary["scores"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| judges.iter().any(|j| j.model.is_some() && s["judge"] == j.config.name.as_str()))
        .filter_map(|s| s["pending"].as_u64())
        .sum();
    longctx_core::fs::write_atomic(&report.summary, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    written?;
    Ok(report)
}

/// What a judge made of an item.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// Not answered yet (not asked, or every try failed before a reply).
    Pending,
    /// No rating in any of the replies.
    Unparsed,
    /// Rated.
    Rated(f64),
}

impl Verdict {
    fn rating(self) -> Option<f64> {
        match self {
            Self::Rated(x) => Some(x),
            _ => None,
        }
    }
}

/// One item's verdicts by every judge, with their judgements.
struct Rated<'a> {
    item: &'a Item,
    bucket: &'static str,
    verdicts: Vec<Verdict>,
    judgements: Vec<Option<&'a Judgement>>,
}

/// The aggregates of one judge over some items.
fn aggregate_json(rated: &[&Rated<'_>], ji: usize) -> Value {
    let ratings: Vec<Option<f64>> = rated.iter().map(|r| r.verdicts[ji].rating()).collect();
    let judgements: Vec<&Judgement> = rated.iter().filter_map(|r| r.judgements[ji]).collect();
    let cost: f64 = judgements.iter().map(|j| j.usage.cost_usd).sum();
    let tries: usize = judgements.iter().map(|j| j.tries).sum();
    let mut v = serde_json::to_value(Aggregate::of(&ratings)).unwrap_or(Value::Null);
    v["cost_usd"] = json!(cost);
    v["cost_per_item_usd"] = json!(if judgements.is_empty() { 0.0 } else { cost / judgements.len() as f64 });
    v["tries"] = json!(tries);
    v
}

/// Agreement of two judges over the items both rated.
fn agreement_json(a: &[f64], b: &[f64]) -> Value {
    let ia: Vec<i64> = a.iter().map(|x| x.round() as i64).collect();
    let ib: Vec<i64> = b.iter().map(|x| x.round() as i64).collect();
    let defined = a.len() >= 2;
    let or_null = |x: f64| if defined && x.is_finite() { json!(x) } else { Value::Null };
    json!({
        "pairs": a.len(),
        "spearman": or_null(agreement::spearman(a, b)),
        "kendall_tau_b": or_null(agreement::kendall_tau_b(a, b)),
        "quadratic_kappa": or_null(agreement::quadratic_kappa(&ia, &ib, None)),
        "mean_abs_diff": if a.is_empty() { Value::Null } else { json!(agreement::mean_abs_diff(a, b)) },
        "share_within_1": if a.is_empty() { Value::Null } else { json!(agreement::share_within(a, b, 1.0)) },
    })
}

/// Per variant, dataset and judge: the official aggregation with cost, and per bucket.
fn scores_json(manifest: &Manifest, names: &[&str], rated: &[Rated<'_>]) -> Vec<Value> {
    let mut scores = Vec::new();
    for v in &manifest.variants {
        for d in &manifest.datasets {
            let group: Vec<&Rated<'_>> =
                rated.iter().filter(|r| r.item.variant == v.name && &r.item.dataset == d).collect();
            if group.is_empty() {
                continue;
            }
            for (ji, name) in names.iter().enumerate() {
                let answered: Vec<&Rated<'_>> =
                    group.iter().copied().filter(|r| r.verdicts[ji] != Verdict::Pending).collect();
                let mut entry = aggregate_json(&answered, ji);
                let mut by_bucket = serde_json::Map::new();
                for b in chat::LENGTH_BUCKETS {
                    let in_b: Vec<&Rated<'_>> = answered.iter().copied().filter(|r| r.bucket == b).collect();
                    if !in_b.is_empty() {
                        by_bucket.insert(b.to_string(), aggregate_json(&in_b, ji));
                    }
                }
                entry["variant"] = json!(v.name);
                entry["dataset"] = json!(d);
                entry["judge"] = json!(name);
                entry["items"] = json!(group.len());
                entry["pending"] = json!(group.len() - answered.len());
                entry["buckets"] = Value::Object(by_bucket);
                scores.push(entry);
            }
        }
    }
    scores
}

/// `judgements.json`: per variant, dataset and judge the official aggregation (mean 1–10,
/// total) with cost, also per prompt-length bucket; between each two judges Spearman's ρ,
/// Kendall's τ-b, quadratic-weighted κ (ratings rounded to integers), mean |Δ| and the share
/// within one point, over all items and per bucket; and every item's ratings.
fn summarize(run_dir: &Path, manifest: &Manifest, judges: &[Judge], items: &[Item]) -> Result<Value> {
    let names: Vec<&str> = judges.iter().map(|j| j.config.name.as_str()).collect();
    let mut files: HashMap<(String, String, usize), HashMap<String, Judgement>> = HashMap::new();
    for it in items {
        for (ji, name) in names.iter().enumerate() {
            let key = (it.variant.clone(), it.dataset.clone(), ji);
            if !files.contains_key(&key) {
                files.insert(key.clone(), latest(&judgements_path(run_dir, &it.variant, name, &it.dataset))?);
            }
        }
    }
    let rated: Vec<Rated<'_>> = items
        .iter()
        .map(|it| {
            let judgements: Vec<Option<&Judgement>> = (0..names.len())
                .map(|ji| files[&(it.variant.clone(), it.dataset.clone(), ji)].get(&it.id).filter(|j| j.is_final()))
                .collect();
            let verdicts = judgements
                .iter()
                .map(|j| match j.map(|j| j.rating) {
                    None => Verdict::Pending,
                    Some(None) => Verdict::Unparsed,
                    Some(Some(x)) => Verdict::Rated(x),
                })
                .collect();
            let bucket = chat::length_bucket(usize::try_from(it.tokens).unwrap_or(usize::MAX));
            Rated { item: it, bucket, verdicts, judgements }
        })
        .collect();
    let pending = rated.iter().map(|r| r.verdicts.iter().filter(|v| **v == Verdict::Pending).count()).sum::<usize>();
    // Agreement between each two judges, over everything both rated, and per bucket.
    let mut agreement = Vec::new();
    for a in 0..names.len() {
        for b in a + 1..names.len() {
            for bucket in std::iter::once("all").chain(chat::LENGTH_BUCKETS) {
                let (xa, xb): (Vec<f64>, Vec<f64>) = rated
                    .iter()
                    .filter(|r| bucket == "all" || r.bucket == bucket)
                    .filter_map(|r| Some((r.verdicts[a].rating()?, r.verdicts[b].rating()?)))
                    .unzip();
                if xa.is_empty() && bucket != "all" {
                    continue;
                }
                let mut entry = agreement_json(&xa, &xb);
                entry["a"] = json!(names[a]);
                entry["b"] = json!(names[b]);
                entry["bucket"] = json!(bucket);
                agreement.push(entry);
            }
        }
    }
    let ratings: Vec<Value> = rated
        .iter()
        .map(|r| {
            let by_judge: BTreeMap<&str, Value> = names
                .iter()
                .zip(&r.verdicts)
                .map(|(n, v)| {
                    let v = match v {
                        Verdict::Rated(x) => json!(x),
                        Verdict::Unparsed => json!("unparsed"),
                        Verdict::Pending => Value::Null,
                    };
                    (*n, v)
                })
                .collect();
            json!({
                "variant": r.item.variant, "dataset": r.item.dataset, "id": r.item.id,
                "tokens": r.item.tokens, "bucket": r.bucket, "ratings": by_judge,
            })
        })
        .collect();
    Ok(json!({
        "judges": judges.iter().map(|j| json!({
            "name": j.config.name, "model": j.config.model, "base_url": j.config.base_url,
            "shuffle_seed": j.config.shuffle_seed,
        })).collect::<Vec<_>>(),
        "items": items.len(),
        "pending": pending,
        "scores": scores_json(manifest, &names, &rated),
        "agreement": agreement,
        "ratings": ratings,
    }))
}
