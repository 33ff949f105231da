//! `longctx run` end to end with SmolLM2-135M (GGUF) on the shipped LongBench sample: a run
//! killed with SIGKILL and resumed equals an uninterrupted one; a changed configuration is
//! refused (or forced into a new directory); the HTTP backend against `longctx serve` with 8
//! requests in flight and injected 500s, dropped connections and timeouts gives the native
//! backend's predictions; a budget stops a priced run resumably; Ctrl-C stops it cleanly;
//! `longctx prompt` shows the model's input.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gguf() -> PathBuf {
    let p = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run tools/fetch_assets.sh first");
    p
}

/// The tests run models; one at a time keeps their timings (and the HTTP timeouts) sane on
/// a small machine.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().expect("runs")
}

const DATASETS: [&str; 3] = ["qasper", "trec", "multifieldqa_zh"];
const VARIANTS: [&str; 3] = ["full", "truncate-end", "rag-k5"];

/// The experiment: 4 samples (qasper 1, trec 1, multifieldqa_zh 2) × 3 variants.
fn experiment(dir: &Path, name: &str, model: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
name = "{name}"
output_dir = "{out}"
{model}
max_prompt_tokens = 250
max_new_tokens = 8
{extra}

[benchmark]
data_dir = "{data}"
datasets = ["qasper", "trec", "multifieldqa_zh"]
limit = 2

[[strategy]]
kind = "full"

[[strategy]]
kind = "truncate"
side = "end"

[[strategy]]
kind = "rag"
k = 5
embedder = {{ kind = "native", path = "{minilm}" }}
"#,
        out = dir.join("runs").display(),
        data = root().join("data/longbench-sample").display(),
        minilm = root().join("assets/minilm").display(),
    );
    let path = dir.join(format!("{name}.toml"));
    fs_err::write(&path, text).unwrap();
    path
}

fn native_model() -> String {
    format!("[model]\nname = \"smollm2\"\nbackend = \"native\"\npath = \"{}\"", gguf().display())
}

fn http_model(port: u16, extra: &str) -> String {
    format!(
        "[model]\nname = \"smollm2\"\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:{port}\"\nmodel = \"smollm2\"\ntokenizer = \"{}\"\n{extra}",
        gguf().display()
    )
}

/// The lines of every prediction file of a run, by `variant/dataset`, without timings.
fn predictions(run: &Path) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for v in VARIANTS {
        for d in DATASETS {
            let text = fs_err::read_to_string(run.join(v).join(format!("{d}.jsonl"))).unwrap();
            let lines = text
                .lines()
                .map(|l| {
                    let mut v: Value = serde_json::from_str(l).unwrap();
                    let m = v.as_object_mut().unwrap();
                    for k in ["latency_s", "generation_latency_s", "requests"] {
                        m.remove(k);
                    }
                    v
                })
                .collect();
            out.push((format!("{v}/{d}"), lines));
        }
    }
    out
}

/// The prediction files of a run.
fn files(run: &Path) -> Vec<PathBuf> {
    VARIANTS.iter().flat_map(|v| DATASETS.iter().map(move |d| run.join(v).join(format!("{d}.jsonl")))).collect()
}

fn count_lines(run: &Path) -> usize {
    files(run).into_iter().filter_map(|p| fs_err::read_to_string(p).ok()).map(|t| t.lines().count()).sum()
}

/// An uninterrupted native run, shared by the tests that compare with it.
fn reference() -> &'static (tempfile::TempDir, PathBuf) {
    static R: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let exp = experiment(dir.path(), "reference", &native_model(), "");
        let out = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let run = dir.path().join("runs/reference");
        (dir, run)
    })
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let _serial = one_at_a_time();
    let (_keep, reference_run) = reference();
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), "killed", &native_model(), "");
    let run = dir.path().join("runs/killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args(["run", exp.to_str().unwrap(), "--no-report"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count_lines(&run) < 5 {
        assert!(start.elapsed() < Duration::from_mins(5), "the run made no progress");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_before = count_lines(&run);
    assert!((5..12).contains(&done_before), "{done_before} predictions at the kill");
    let manifest: Value = serde_json::from_str(&fs_err::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "running", "a killed run cannot have recorded its end");

    let out = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("done: {} predictions written in this session, 12 in the run", 12 - done_before)),
        "{stderr}"
    );
    assert_eq!(predictions(&run), predictions(reference_run));
    for v in VARIANTS {
        let a = fs_err::read(run.join(v).join("result.json")).unwrap();
        let b = fs_err::read(reference_run.join(v).join("result.json")).unwrap();
        assert_eq!(a, b, "{v}/result.json");
    }
    let manifest: Value = serde_json::from_str(&fs_err::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["totals"]["samples"], 12);

    // Nothing left to do: a third run writes nothing.
    let out = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("done: 0 predictions written"));

    // A changed configuration is refused, or run in a new directory with --force.
    let changed = experiment(
        dir.path(),
        "killed",
        &native_model().replace("name = \"smollm2\"", "name = \"smollm2\"\ntemperature = 0.5"),
        "",
    );
    let out = longctx(&["run", changed.to_str().unwrap(), "--no-report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("differs for the variant(s) full, truncate-end, rag-k5") && stderr.contains("--force"),
        "{stderr}"
    );
    let out = longctx(&["run", changed.to_str().unwrap(), "--no-report", "--force", "--limit", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let forced = fs_err::read_dir(dir.path().join("runs")).unwrap().count();
    assert_eq!(forced, 2, "--force runs in a new directory beside the old one");
}

#[test]
fn ctrl_c_finishes_the_samples_in_flight_and_records_the_interruption() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), "interrupted", &native_model(), "");
    let run = dir.path().join("runs/interrupted");
    let child = Command::new(env!("CARGO_BIN_EXE_longctx"))
        .args(["run", exp.to_str().unwrap(), "--no-report"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count_lines(&run) < 2 {
        assert!(start.elapsed() < Duration::from_mins(5), "the run made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted; run the same command again to resume"), "{stderr}");
    let done = count_lines(&run);
    assert!((2..12).contains(&done), "{done} predictions after the interrupt");
    let manifest: Value = serde_json::from_str(&fs_err::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted");
    assert_eq!(manifest["totals"]["samples"], done as u64);
    let out = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(count_lines(&run), 12);
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(extra: &[&str]) -> (Server, u16) {
    let port = free_port();
    let g = gguf();
    let mut args: Vec<String> =
        ["serve", "--model", &g.display().to_string(), "--port", &port.to_string(), "--served-model-name", "smollm2"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let child = Command::new(env!("CARGO_BIN_EXE_longctx")).args(&args).stderr(Stdio::null()).spawn().unwrap();
    let server = Server(child);
    let start = Instant::now();
    loop {
        if ureq::get(&format!("http://127.0.0.1:{port}/health")).call().is_ok() {
            return (server, port);
        }
        assert!(start.elapsed() < Duration::from_mins(1), "the server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_http_backend_through_faults_matches_the_native_backend() {
    let _serial = one_at_a_time();
    let (_keep, reference_run) = reference();
    let (_server, port) = serve(&[
        "--fault-500",
        "0.2",
        "--fault-drop",
        "0.1",
        "--fault-slow",
        "0.15",
        "--fault-slow-s",
        "35",
        "--fault-seed",
        "3",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let model = http_model(port, "concurrency = 8\ntimeout_s = 30\nmax_retries = 10\nbackoff_s = 0.05");
    let exp = experiment(dir.path(), "http", &model, "");
    let out = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = dir.path().join("runs/http");
    assert_eq!(predictions(&run), predictions(reference_run));
    // Faults were met and retried: more requests than predictions.
    let requests: u64 = files(&run)
        .into_iter()
        .flat_map(|p| fs_err::read_to_string(p).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
        .map(|l| serde_json::from_str::<Value>(&l).unwrap()["requests"].as_u64().unwrap())
        .sum();
    eprintln!("HTTP run through faults: {requests} requests for 12 predictions");
    assert!(requests > 12, "{requests} requests for 12 predictions: no fault was injected");
}

#[test]
fn a_budget_stops_a_priced_run_resumably() {
    let _serial = one_at_a_time();
    let (_server, port) = serve(&[]);
    let dir = tempfile::tempdir().unwrap();
    // About 250 prompt tokens at $1000 per million: $0.25 or so per sample.
    let pricing = "[pricing]\nbudget_usd = 1.5\nprices.smollm2 = { input = 1000.0, output = 2000.0 }";
    let exp = experiment(dir.path(), "priced", &http_model(port, "concurrency = 2"), "");
    let text = fs_err::read_to_string(&exp).unwrap() + "\n" + pricing + "\n";
    fs_err::write(&exp, text).unwrap();
    let out = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stopped before exceeding the budget of $1.5000"), "{stderr}");
    let run = dir.path().join("runs/priced");
    let manifest: Value = serde_json::from_str(&fs_err::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "budget_exhausted");
    let spent = manifest["totals"]["cost_usd"].as_f64().unwrap();
    let done = manifest["totals"]["samples"].as_u64().unwrap();
    assert!(spent <= 1.5 && spent > 0.5 && (1..12).contains(&done), "spent ${spent} on {done} samples");
    let out = longctx(&["run", exp.to_str().unwrap(), "--no-report", "--budget-usd", "100"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: Value = serde_json::from_str(&fs_err::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["totals"]["samples"], 12);
    let line: Value =
        serde_json::from_str(fs_err::read_to_string(run.join("full/qasper.jsonl")).unwrap().lines().next().unwrap())
            .unwrap();
    let expected = line["prompt_tokens"].as_f64().unwrap() * 1000.0 / 1e6
        + line["completion_tokens"].as_f64().unwrap() * 2000.0 / 1e6;
    assert!((line["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-12, "{line}");
}

#[test]
fn prompt_shows_what_the_model_receives() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment(dir.path(), "p", &native_model(), "");
    let out = longctx(&["prompt", exp.to_str().unwrap(), "--variant", "rag-k5", "--dataset", "qasper", "--index", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // SmolLM2's chat template around LongBench's qasper prompt.
    assert!(stdout.starts_with("<|im_start|>system\n"), "{stdout}");
    assert!(stdout.contains("<|im_start|>user\nYou are given a scientific article and a question."), "{stdout}");
    assert!(stdout.trim_end().ends_with("<|im_start|>assistant"), "{stdout}");
    assert!(stderr.contains("(5 of 100 chunks"), "{stderr}");
    assert!(stderr.contains("with the chat template; up to 8 new tokens"), "{stderr}");
    // trec is a few-shot dataset: no chat template, and the JSON form says so.
    let out =
        longctx(&["prompt", exp.to_str().unwrap(), "--variant", "full", "--dataset", "trec", "--index", "0", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chat_template"], false);
    assert!(v["tokens"].as_u64().unwrap() <= 401, "{}", v["tokens"]);
    assert_eq!(v["strategy"]["truncated"], true);
    // Through an HTTP backend with `endpoint = "chat"`, trec goes as a chat message too (no
    // server is needed to show the prompt).
    let chat = experiment(dir.path(), "p-chat", &http_model(9, "endpoint = \"chat\""), "");
    let out = longctx(&["prompt", chat.to_str().unwrap(), "--variant", "full", "--dataset", "trec", "--index", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<|im_start|>system\n"));
    let out = longctx(&["prompt", exp.to_str().unwrap(), "--variant", "nope", "--dataset", "trec", "--index", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the variants are: full, truncate-end, rag-k5"));
}

/// LongBench-Chat with SmolLM2 natively (greedy, two cases, the long one cut in the middle), then
/// `longctx judge` with a judge that is down: its judgements are recorded as pending and the
/// command fails saying to run it again; without judges it says where they come from.
#[test]
fn longbench_chat_runs_and_judging_an_unreachable_judge_leaves_items_pending() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cases = root().join("tests/fixtures/longbench_chat/test_cases.json");
    let exp = dir.path().join("chat.toml");
    let text = format!(
        "name = \"chat\"\noutput_dir = \"{}\"\n{}\nmax_prompt_tokens = 1000\nmax_new_tokens = 8\n[benchmark]\nsuite = \"longbench-chat\"\ntest_cases = \"{}\"\nmax_length = 150\ngreedy = true\nlimit = 2\n[[strategy]]\nkind = \"full\"\n",
        dir.path().display(),
        native_model(),
        cases.display()
    );
    fs_err::write(&exp, text).unwrap();
    let out = longctx(&["run", exp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = dir.path().join("chat");
    let lines: Vec<Value> = fs_err::read_to_string(run.join("full/longbench-chat.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["id"].as_str(), lines[0]["truncated"].as_bool()), (Some("26"), Some(false)));
    assert_eq!((lines[1]["id"].as_str(), lines[1]["truncated"].as_bool()), (Some("49"), Some(true)));
    assert!(lines[1]["length"].as_u64().unwrap() > 150, "{}", lines[1]);
    assert!(run.join("report/report.md").is_file());
    // `longctx prompt` shows the cut prompt the model received.
    let out = longctx(&[
        "prompt",
        exp.to_str().unwrap(),
        "--variant",
        "full",
        "--dataset",
        "longbench-chat",
        "--index",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((shown["id"].as_str(), shown["strategy"]["truncated"].as_bool()), (Some("49"), Some(true)));
    assert_eq!(shown["strategy"]["prompt_tokens"], 150);
    assert_eq!(shown["request"]["temperature"], 0.0);
    // The same test file from a dataset repository of the hub (a loopback hub): the same prompt;
    // a repository without it is named, with what to do offline.
    let hub_file = "/datasets/THUDM/LongBench-Chat/resolve/main/LongBench_Chat/test_cases.json";
    let port = common::serve(vec![(hub_file.into(), fs_err::read(&cases).unwrap())], 12);
    let home = tempfile::tempdir().unwrap();
    let from_hub = |repo: &str| {
        let text = fs_err::read_to_string(&exp).unwrap().replace(
            &format!("test_cases = \"{}\"", cases.display()),
            &format!("test_cases = {{ hub = \"{repo}\", file = \"LongBench_Chat/test_cases.json\" }}"),
        );
        let path = dir.path().join("chat-hub.toml");
        fs_err::write(&path, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_longctx"))
            .args(["prompt", path.to_str().unwrap(), "--variant", "full", "--dataset", "longbench-chat"])
            .args(["--index", "1", "--json"])
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("HF_HOME", home.path())
            .output()
            .unwrap()
    };
    let out = from_hub("THUDM/LongBench-Chat");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hub_shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&hub_shown["request"], &hub_shown["id"]), (&shown["request"], &shown["id"]));
    let out = from_hub("THUDM/Elsewhere@v1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("`LongBench_Chat/test_cases.json` of the dataset repository `THUDM/Elsewhere`")
            && err.contains("give its local path as `test_cases`"),
        "{err}"
    );

    let out = longctx(&["judge", run.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no judges: give `[[judge]]` entries"), "{err}");

    let judges = dir.path().join("judges.toml");
    let port = free_port();
    fs_err::write(
        &judges,
        format!("[[judge]]\nname = \"down\"\nbase_url = \"http://127.0.0.1:{port}\"\nmodel = \"m\"\nmax_retries = 0\n"),
    )
    .unwrap();
    let out = longctx(&["judge", run.to_str().unwrap(), "--judges", judges.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("2 judgement(s) pending"), "{err}");
    let stored = fs_err::read_to_string(run.join("full/judgements/down/longbench-chat.jsonl")).unwrap();
    assert_eq!(stored.lines().count(), 2);
    let summary: Value = serde_json::from_str(&fs_err::read_to_string(run.join("judgements.json")).unwrap()).unwrap();
    assert_eq!(summary["pending"], 2);
    let md = fs_err::read_to_string(run.join("report/report.md")).unwrap();
    assert!(md.contains("LLM judges"), "{md}");
}
