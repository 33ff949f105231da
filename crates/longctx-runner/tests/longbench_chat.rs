//! LongBench-Chat end to end: a run over a mock model (with the official middle cut), judged by
//! scripted loopback judges (OpenAI-compatible HTTP servers on 127.0.0.1 with known ratings), by
//! a judge that is down and comes back, and by SmolLM2-135M behind `longctx serve` as a real
//! (weak) judge; and LongBench's open-ended tasks judged with `longctx judge`'s zero-shot prompt.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use longctx_bench::agreement;
use longctx_bench::chat::{self, Judgement, TestCase};
use longctx_core::{Backend, BackendError, Completion, FinishReason, GenerationRequest, PromptInput, Tokenizer, Usage};
use longctx_models::tokenizer::HfTokenizer;
use longctx_runner::experiment::ModelConfig;
use longctx_runner::judge::{self, judge_run, load_judges};
use longctx_runner::{run_with, ModelRuntime, Plan, RunOptions};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> HfTokenizer {
    HfTokenizer::from_file(&root().join("tests/fixtures/tiny/tokenizer.json")).unwrap()
}

fn cases() -> Vec<TestCase> {
    chat::read_test_cases(&root().join("tests/fixtures/longbench_chat/test_cases.json")).unwrap()
}

/// A model whose answers come from `reply`, recording the user turn of every prompt.
struct Model {
    reply: fn(&GenerationRequest) -> String,
    prompts: Mutex<Vec<String>>,
}

impl Model {
    fn new(reply: fn(&GenerationRequest) -> String) -> Arc<Self> {
        Arc::new(Self { reply, prompts: Mutex::new(Vec::new()) })
    }
}

impl Backend for Model {
    fn describe(&self) -> String {
        "mock".into()
    }
    fn generate(&self, request: &GenerationRequest) -> Result<Completion, BackendError> {
        if let PromptInput::Chat(m) = &request.prompt {
            self.prompts.lock().unwrap().push(m[0].content.clone());
        }
        Ok(Completion {
            text: (self.reply)(request),
            prompt_tokens: 10,
            completion_tokens: 3,
            latency_s: 0.0,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
        })
    }
}

/// LongBench-Chat's generation settings checked, the answer is the last line of the prompt
/// (the case's question), with spaces and a newline around it.
fn last_line(request: &GenerationRequest) -> String {
    let PromptInput::Chat(m) = &request.prompt else { panic!("LongBench-Chat prompts are chats") };
    assert_eq!((m.len(), request.max_new_tokens, request.temperature), (1, chat::MAX_NEW_TOKENS, 1.0));
    format!("  {}\n", m[0].content.lines().last().unwrap())
}

/// An OpenAI-compatible chat server on 127.0.0.1 whose replies come from `reply` (given the
/// judged answer), recording every request body.
struct Loopback {
    url: String,
    requests: Arc<Mutex<Vec<Value>>>,
}

/// The answer being judged in a judge request: the last one between the answer markers.
fn judged_answer(body: &Value) -> String {
    let user = body["messages"][1]["content"].as_str().unwrap();
    let start = user.rfind("[Assistant's answer begins]\n").unwrap() + "[Assistant's answer begins]\n".len();
    let end = user.rfind("\n[Assistant's answer ends]").unwrap();
    user[start..end].to_string()
}

fn loopback(reply: fn(&str) -> String) -> Loopback {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_ascii_lowercase();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let body: Value = serde_json::from_slice(&body).unwrap();
            let text = reply(&judged_answer(&body));
            seen.lock().unwrap().push(body);
            let answer = json!({
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 1000, "completion_tokens": 20},
            })
            .to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    Loopback { url, requests }
}

/// Judge A: 7, 8, no rating ever, 9.5 for the four cases.
fn judge_a(answer: &str) -> String {
    if answer.contains("harbour") {
        "Correct and complete. [[7]]".into()
    } else if answer.contains("ledger") {
        "Rating: [[8]]".into()
    } else if answer.contains("lamp") {
        "I cannot decide on this one.".into()
    } else {
        "Mostly right [[5]] ... on reflection [[9.5]]".into()
    }
}

/// Judge B: 6, 8, 5, 9.
fn judge_b(answer: &str) -> String {
    let r = if answer.contains("harbour") {
        6
    } else if answer.contains("ledger") {
        8
    } else if answer.contains("lamp") {
        5
    } else {
        9
    };
    format!("[[{r}]]")
}

/// A port nothing listens on.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn judge_entry(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[judge]]\nname = \"{name}\"\nbase_url = \"{url}\"\nmodel = \"judge-{name}\"\nmax_retries = 0\nbackoff_s = 0.01\n{extra}\n"
    )
}

/// The model of the experiments: served by the mock backend the tests load.
const MOCK_MODEL: &str =
    "[model]\nname = \"mock\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\nmodel = \"mock\"\ntokenizer = \"unused\"";

fn chat_plan(out: &Path, judges: &str) -> Plan {
    let text = format!(
        r#"
name = "chat"
output_dir = "{}"
{MOCK_MODEL}
max_prompt_tokens = 4000
[benchmark]
suite = "longbench-chat"
test_cases = "{}"
max_length = 200
[[strategy]]
kind = "full"
[pricing]
prices.a = {{ input = 1.0, output = 2.0 }}
{judges}
"#,
        out.display(),
        root().join("tests/fixtures/longbench_chat/test_cases.json").display()
    );
    Plan::parse(text).unwrap()
}

fn run_mock(plan: &Plan, model: &Arc<Model>) -> longctx_runner::RunSummary {
    let backend: Arc<dyn Backend> = model.clone();
    let mut load = |c: &ModelConfig| Ok(ModelRuntime::with_backend(c, Arc::clone(&backend), tokenizer(), None));
    run_with(plan, &RunOptions::default(), &AtomicBool::new(false), &mut load).unwrap()
}

fn summary(run_dir: &Path) -> Value {
    serde_json::from_str(&fs_err::read_to_string(run_dir.join(judge::SUMMARY_FILE)).unwrap()).unwrap()
}

fn score<'a>(s: &'a Value, judge: &str) -> &'a Value {
    s["scores"].as_array().unwrap().iter().find(|x| x["judge"] == judge).unwrap()
}

#[test]
fn a_judged_run_gives_the_official_totals_and_means_and_judge_agreement() {
    let out = tempfile::tempdir().unwrap();
    let (a, b) = (loopback(judge_a), loopback(judge_b));
    let judges = judge_entry("a", &a.url, "") + &judge_entry("b", &b.url, "shuffle_seed = 3");
    let plan = chat_plan(out.path(), &judges);
    let model = Model::new(last_line);
    let s = run_mock(&plan, &model);
    assert_eq!((s.status.as_str(), s.written), ("complete", 4));
    let run_dir = out.path().join("chat");

    // Generation: the official middle cut of the long case, at max_length tokens without
    // special tokens; the others whole.
    let tok = tokenizer();
    let cases = cases();
    let prompts = model.prompts.lock().unwrap().clone();
    let ids = tok.encode(&cases[1].prompt, false).unwrap();
    assert!(ids.len() > 200);
    let cut = tok.decode(&ids[..100], true).unwrap() + &tok.decode(&ids[ids.len() - 100..], true).unwrap();
    assert!(prompts.contains(&cut), "the ledger's prompt is cut in the middle");
    assert!(prompts.contains(&cases[0].prompt));
    let lines = longctx_runner::store::read_lines(&run_dir.join("full/longbench-chat.jsonl")).unwrap();
    let ledger = lines.iter().find(|l| l["id"] == "49").unwrap();
    assert_eq!((ledger["length"].as_u64(), ledger["truncated"].as_bool()), (Some(ids.len() as u64), Some(true)));
    assert_eq!(ledger["query"], cases[1].query);
    assert_eq!(ledger["answers"], json!([cases[1].answer]));

    // The judge requests: the official system prompt and message, temperature 0; judge B
    // sees the few-shot answers in its seeded order.
    let shots = chat::few_shots();
    // The model answered with the last line of the prompt it received.
    let pred = |case: &TestCase| {
        let received = if case.idx == 49 { &cut } else { &case.prompt };
        chat::official_prediction(&format!("  {}\n", received.lines().last().unwrap()))
    };
    let first = |l: &Loopback, case: &TestCase| -> Value {
        let all = l.requests.lock().unwrap().clone();
        all.iter()
            .find(|r| judged_answer(r) == pred(case))
            .unwrap_or_else(|| panic!("{}: {:?}", pred(case), all.iter().map(judged_answer).collect::<Vec<_>>()))
            .clone()
    };
    for (l, name, seed) in [(&a, "a", None), (&b, "b", Some(3))] {
        for case in &cases {
            let r = first(l, case);
            assert_eq!((r["temperature"].as_f64(), r["model"].as_str()), (Some(0.0), Some(&*format!("judge-{name}"))));
            assert_eq!(r["messages"][0]["content"], chat::JUDGE_SYSTEM);
            let order = chat::shot_order(&shots[case.idx - 1], seed, name, case.idx);
            let expected = chat::judge_prompt(chat::PROMPT_FS, case, &order, &pred(case)).unwrap();
            assert_eq!(r["messages"][1]["content"].as_str().unwrap(), expected, "judge {name} case {}", case.idx);
        }
    }
    // Judge A was asked five times where it never rated.
    assert_eq!((a.requests.lock().unwrap().len(), b.requests.lock().unwrap().len()), (8, 4));
    let j = s.judging.as_ref().unwrap();
    assert_eq!((j.items, j.written, j.unrated, j.pending), (4, 8, 1, 0));

    // Aggregation as eval.py: no total while a case is unparsed.
    let sum = summary(&run_dir);
    let (sa, sb) = (score(&sum, "a"), score(&sum, "b"));
    assert_eq!((sa["rated"].as_u64(), sa["unparsed"].as_u64(), &sa["total"]), (Some(3), Some(1), &Value::Null));
    assert!((sa["mean"].as_f64().unwrap() - (7.0 + 8.0 + 9.5) / 3.0).abs() < 1e-12);
    assert_eq!((sb["total"].as_f64(), sb["mean"].as_f64()), (Some(28.0), Some(7.0)));
    // Judge A's price: 8 requests of 1000 prompt and 20 completion tokens at $1 / $2 per M.
    assert!((sa["cost_usd"].as_f64().unwrap() - 8.0 * (1000.0 + 40.0) / 1e6).abs() < 1e-12, "{sa}");
    assert!((sa["cost_per_item_usd"].as_f64().unwrap() - 2.0 * (1040.0) / 1e6).abs() < 1e-12, "{sa}");
    // Agreement over the three cases both rated (harbour, ledger, mussels).
    let all = sum["agreement"].as_array().unwrap().iter().find(|x| x["bucket"] == "all").unwrap();
    let (xa, xb) = ([7.0, 8.0, 9.5], [6.0, 8.0, 9.0]);
    assert_eq!(all["pairs"], 3);
    assert_eq!(all["spearman"].as_f64(), Some(agreement::spearman(&xa, &xb)));
    assert_eq!(all["kendall_tau_b"].as_f64(), Some(agreement::kendall_tau_b(&xa, &xb)));
    assert_eq!(all["quadratic_kappa"].as_f64(), Some(agreement::quadratic_kappa(&[7, 8, 10], &[6, 8, 9], None)));
    assert_eq!((all["mean_abs_diff"].as_f64(), all["share_within_1"].as_f64()), (Some(0.5), Some(1.0)));
    let lamp = sum["ratings"].as_array().unwrap().iter().find(|r| r["id"] == "36").unwrap();
    assert_eq!(lamp["ratings"], json!({"a": "unparsed", "b": 5.0}));
    // The raw replies are kept, every try of the unparsed case too.
    let stored = chat::read_judgements(&judge::judgements_path(&run_dir, "full", "a", "longbench-chat")).unwrap();
    let unparsed: Vec<&Judgement> = stored.iter().filter(|j| j.rating.is_none()).collect();
    assert_eq!((unparsed.len(), unparsed[0].replies.len()), (1, chat::JUDGE_TRIES));

    // Resuming asks nothing again; the report shows the judges.
    let judges = load_judges(&run_dir, None, &[]).unwrap();
    let again = judge_run(&run_dir, &judges, &AtomicBool::new(false)).unwrap();
    assert_eq!((again.written, a.requests.lock().unwrap().len()), (0, 8));
    let paths = longctx_report::write_report(&run_dir, &longctx_report::ReportOptions::default()).unwrap();
    let md = fs_err::read_to_string(&paths.markdown).unwrap();
    assert!(md.contains("LLM judges") && md.contains("Agreement between judges"), "{md}");
    assert!(md.contains("| full | b | 7.00 | 28.0 | 4/4 |"), "{md}");
    assert!(paths.plots.iter().any(|p| p.ends_with("judges-a-vs-b.svg")));
}

#[test]
fn a_judge_that_is_down_leaves_items_pending_and_a_rerun_judges_only_those() {
    let out = tempfile::tempdir().unwrap();
    let a = loopback(judge_b);
    let judges = judge_entry("a", &a.url, "") + &judge_entry("down", &closed_port(), "");
    let plan = chat_plan(out.path(), &judges);
    let s = run_mock(&plan, &Model::new(last_line));
    let run_dir = out.path().join("chat");
    let j = s.judging.unwrap();
    assert_eq!((s.status.as_str(), j.written, j.unrated, j.pending), ("complete", 8, 4, 4));
    let path = judge::judgements_path(&run_dir, "full", "down", "longbench-chat");
    let failed = chat::read_judgements(&path).unwrap();
    assert_eq!(failed.len(), 4);
    assert!(failed.iter().all(|j| j.replies.is_empty() && j.errors.len() == chat::JUDGE_TRIES && !j.is_final()));
    assert!(
        failed[0].errors[0].contains("Connection refused") || failed[0].errors[0].contains("connect"),
        "{:?}",
        failed[0].errors
    );
    let sum = summary(&run_dir);
    assert_eq!((score(&sum, "down")["pending"].as_u64(), score(&sum, "down")["rated"].as_u64()), (Some(4), Some(0)));

    // The endpoint is back (at another address: a judges file points there); only it is asked
    // (judge `a`, listed with an API key that is not set, is not set up).
    let back = loopback(judge_b);
    let file = out.path().join("judges.toml");
    let unset_key = "api_key_env = \"LONGCTX_TEST_UNSET_KEY\"";
    fs_err::write(&file, judge_entry("a", &a.url, unset_key) + &judge_entry("down", &back.url, "")).unwrap();
    let judges = load_judges(&run_dir, Some(&file), &["down".into()]).unwrap();
    let r = judge_run(&run_dir, &judges, &AtomicBool::new(false)).unwrap();
    assert_eq!(
        (r.written, r.pending, back.requests.lock().unwrap().len(), a.requests.lock().unwrap().len()),
        (4, 0, 4, 4)
    );
    assert_eq!(chat::read_judgements(&path).unwrap().len(), 8, "appended, nothing lost");
    let sum = summary(&run_dir);
    assert_eq!((score(&sum, "down")["total"].as_f64(), score(&sum, "a")["total"].as_f64()), (Some(28.0), Some(28.0)));
    let all = sum["agreement"].as_array().unwrap().iter().find(|x| x["bucket"] == "all").unwrap();
    assert_eq!((all["pairs"].as_u64(), all["quadratic_kappa"].as_f64()), (Some(4), Some(1.0)));

    // Naming a judge that does not exist says which there are.
    let err = load_judges(&run_dir, Some(&file), &["c".into()]).err().unwrap().to_string();
    assert!(err.contains("no judge is named `c` (judges: a, down)"), "{err}");
}

#[test]
fn a_judge_without_its_api_key_stops_the_run_before_generation() {
    let out = tempfile::tempdir().unwrap();
    let judge = judge_entry("a", "http://127.0.0.1:9", "api_key_env = \"LONGCTX_TEST_UNSET_KEY\"");
    let plan = chat_plan(out.path(), &judge);
    let model = Model::new(last_line);
    let backend: Arc<dyn Backend> = model.clone();
    let mut load = |c: &ModelConfig| Ok(ModelRuntime::with_backend(c, Arc::clone(&backend), tokenizer(), None));
    let err = run_with(&plan, &RunOptions::default(), &AtomicBool::new(false), &mut load).unwrap_err().to_string();
    assert!(err.contains("judge `a`") && err.contains("LONGCTX_TEST_UNSET_KEY is not set"), "{err}");
    assert!(model.prompts.lock().unwrap().is_empty(), "nothing was generated");
}

#[test]
fn bad_experiments_and_judges_are_refused_with_the_reason() {
    let parse = |s: &str| Plan::parse(s.to_string()).err().map(|e| e.to_string()).unwrap_or_default();
    let head = "name = \"x\"\n[model]\nbackend = \"native\"\npath = \"m.gguf\"\nmax_prompt_tokens = 100\n[[strategy]]\nkind = \"full\"\n";
    let e = parse(&format!("{head}[benchmark]\nsuite = \"longbench-chat\"\n"));
    assert!(e.contains("needs `test_cases`"), "{e}");
    let e = parse(&format!("{head}[benchmark]\nmax_length = 100\n"));
    assert!(e.contains("`max_length` is a LongBench-Chat setting"), "{e}");
    let missing =
        format!("{head}[benchmark]\nsuite = \"longbench-chat\"\ntest_cases = \"/nonexistent/test_cases.json\"\n");
    assert!(parse(&missing).contains("/nonexistent/test_cases.json"), "{}", parse(&missing));
    let cases = root().join("tests/fixtures/longbench_chat/test_cases.json");
    let ok = format!("{head}[benchmark]\nsuite = \"longbench-chat\"\ntest_cases = \"{}\"\n", cases.display());
    let e = parse(&format!("{ok}essay = \"essays.json\"\n"));
    assert!(e.contains("takes `test_cases`, `max_length`, `greedy` and `limit`, not `essay`"), "{e}");
    let two = judge_entry("a", "http://x", "") + &judge_entry("a", "http://y", "");
    assert!(parse(&format!("{ok}{two}")).contains("two judges are named `a`"));
    assert!(parse(&format!("{ok}{}", judge_entry("a/b", "http://x", ""))).contains("plain file name"));
    assert!(parse(&format!("{ok}{}", judge_entry("a", "http://x", "concurrency = 0"))).contains("at least 1"));
}

#[test]
fn longbench_open_ended_tasks_are_judged_zero_shot() {
    let out = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
name = "lb"
output_dir = "{}"
{MOCK_MODEL}
max_prompt_tokens = 300
[benchmark]
data_dir = "{}"
datasets = ["multi_news", "trec"]
[[strategy]]
kind = "full"
"#,
        out.path().display(),
        root().join("data/longbench-sample").display()
    );
    let plan = Plan::parse(text).unwrap();
    let backend: Arc<dyn Backend> = Model::new(|_| "A summary of the news.".into());
    let mut load = |c: &ModelConfig| Ok(ModelRuntime::with_backend(c, Arc::clone(&backend), tokenizer(), None));
    run_with(&plan, &RunOptions::default(), &AtomicBool::new(false), &mut load).unwrap();
    let run_dir = out.path().join("lb");
    let j = loopback(|_| "[[6]]".into());
    let file = out.path().join("judges.toml");
    fs_err::write(&file, judge_entry("j", &j.url, "")).unwrap();
    let judges = load_judges(&run_dir, Some(&file), &[]).unwrap();
    let r = judge_run(&run_dir, &judges, &AtomicBool::new(false)).unwrap();
    // multi_news (ROUGE) only: trec is classification.
    let n = longctx_runner::store::read_lines(&run_dir.join("full/multi_news.jsonl")).unwrap().len();
    assert_eq!((r.items, r.written), (n, n as u64));
    let body = j.requests.lock().unwrap()[0].clone();
    let user = body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("[Question]\nNow, write a one-page summary of all the news."), "{user}");
    assert!(!user.contains("Below are several assistants' answers"), "zero-shot: {user}");
    assert!(user.ends_with("A summary of the news.\n[Assistant's answer ends]\n\nRating: "));
    let sum = summary(&run_dir);
    assert_eq!(score(&sum, "j")["dataset"], "multi_news");
    assert_eq!(score(&sum, "j")["total"].as_f64(), Some(6.0 * n as f64));
    let md = fs_err::read_to_string(
        longctx_report::write_report(&run_dir, &longctx_report::ReportOptions::default()).unwrap().markdown,
    )
    .unwrap();
    assert!(md.contains("LLM judges") && md.contains("multi_news"), "{md}");
}

/// SmolLM2-135M-Instruct behind `longctx serve` as a real, weak judge: every item ends rated or
/// unparsed, with its raw replies stored.
#[test]
fn smollm2_behind_longctx_serve_judges_every_item() {
    let model = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.is_file(), "{} is missing: run tools/fetch_assets.sh", model.display());
    let native =
        longctx_backends::native::NativeBackend::load(&model, &longctx_backends::native::NativeOptions::default())
            .unwrap();
    let server = longctx_serve::Server::start(Arc::new(native), None, longctx_serve::ServerConfig::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    // A case with short few-shot answers; judge replies of at most 32 tokens.
    let mut plan = chat_plan(out.path(), &judge_entry("smollm2", &server.url(), "max_tokens = 32\nconcurrency = 1"));
    plan.chat.as_mut().unwrap().cases.retain(|c| c.idx == 36);
    let s = run_mock(&plan, &Model::new(last_line));
    let j = s.judging.unwrap();
    assert_eq!((j.items, j.written, j.pending), (1, 1, 0));
    let run_dir = out.path().join("chat");
    let stored = chat::read_judgements(&judge::judgements_path(&run_dir, "full", "smollm2", "longbench-chat")).unwrap();
    assert_eq!(stored.len(), 1);
    for j in &stored {
        assert!(j.is_final() && !j.replies.is_empty() && j.errors.is_empty(), "{j:?}");
        assert_eq!(j.rating, chat::parse_rating(j.replies.last().unwrap()));
        assert!(j.rating.is_some() || j.replies.len() == chat::JUDGE_TRIES, "{j:?}");
        assert!(j.usage.prompt_tokens > 500, "the whole judge request was read: {j:?}");
    }
    eprintln!("SmolLM2's judgements: {:?}", stored.iter().map(|j| (&j.id, j.rating, &j.replies)).collect::<Vec<_>>());
}
