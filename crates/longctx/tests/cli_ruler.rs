//! RULER end to end with SmolLM2-135M (GGUF): `longctx run` on a small RULER experiment (two
//! lengths, two offline tasks, a depth sweep) writes RULER prediction lines and a
//! `result.json`, and its report has the README-shaped table, the task × length table and the
//! depth × length heatmap (PNG, SVG, inline in the HTML); `longctx ruler generate` writes fitted
//! samples; bad input (unknown task, a length below the template, a missing data file) gets a
//! clear error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn gguf() -> PathBuf {
    let p = root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "run tools/fetch_assets.sh first");
    p
}

fn words() -> PathBuf {
    root().join("tests/data/ruler/words")
}

fn longctx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_longctx")).args(args).output().expect("runs")
}

fn json_lines(path: &Path) -> Vec<Value> {
    fs_err::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_ruler_run_and_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("ruler.toml");
    let text = format!(
        r#"
name = "ruler-e2e"
output_dir = "{out}"
[model]
name = "smollm2"
backend = "native"
path = "{gguf}"
max_prompt_tokens = 1024
[benchmark]
suite = "ruler"
lengths = [1024, 768]
samples = 2
depths = 2
tasks = ["niah_single_1", "vt"]
words = "{words}"
[[strategy]]
kind = "full"
"#,
        out = dir.path().join("runs").display(),
        gguf = gguf().display(),
        words = words().display(),
    );
    fs_err::write(&exp, text).unwrap();
    let out = longctx(&["run", exp.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let run = dir.path().join("runs/ruler-e2e");
    for task in ["niah_single_1", "vt"] {
        for length in [768, 1024] {
            let lines = json_lines(&run.join(format!("full/{task}-{length}.jsonl")));
            assert_eq!(lines.len(), 2, "{task}-{length}");
            for (i, l) in lines.iter().enumerate() {
                assert_eq!((l["task"].as_str(), l["target_length"].as_u64()), (Some(task), Some(length)));
                let budget = longctx_bench::ruler::task(task).unwrap().tokens_to_generate() as u64;
                let tokens = l["prompt_tokens"].as_u64().unwrap();
                // The prompt fills its length (less the generation budget) in SmolLM2's tokenizer.
                assert!(tokens + budget <= length && (tokens + budget) * 10 > length * 8, "{task}-{length}: {tokens}");
                assert!(!l["answers"].as_array().unwrap().is_empty());
                if task == "niah_single_1" {
                    assert_eq!(l["depth"].as_f64(), Some([0.0, 100.0][i]), "{l}");
                }
            }
        }
    }
    let result: Value = serde_json::from_str(&fs_err::read_to_string(run.join("full/result.json")).unwrap()).unwrap();
    assert_eq!(result["lengths"], serde_json::json!([768, 1024]));
    for l in ["768", "1024"] {
        let avg = result["average"][l].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&avg), "{result}");
    }
    assert_eq!(result["depth"].as_array().unwrap().len(), 4, "{result}");
    // The report (written by the run) has the three views.
    let md = fs_err::read_to_string(run.join("report/report.md")).unwrap();
    assert!(
        md.contains("| Variant | Claimed length | Effective length | 768 | 1K | Avg. | wAvg. (inc) | wAvg. (dec) |"),
        "{md}"
    );
    assert!(md.contains("| full | 8K |"), "{md}");
    assert!(md.contains("full: task × length") && md.contains("| niah_single_1 |"), "{md}");
    assert!(md.contains("full: needle depth × length") && md.contains("| 100 % |"), "{md}");
    for f in ["depth-full.png", "depth-full.svg", "ruler-by-length.png", "ruler-by-length.svg"] {
        assert!(run.join("report/plots").join(f).is_file(), "{f}");
    }
    let html = fs_err::read_to_string(run.join("report/report.html")).unwrap();
    assert!(html.contains("full: needle retrieval by depth and length") && html.matches("<svg").count() >= 2);
    // Run again: nothing to do, same result.
    let again = longctx(&["run", exp.to_str().unwrap(), "--no-report"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let same: Value = serde_json::from_str(&fs_err::read_to_string(run.join("full/result.json")).unwrap()).unwrap();
    assert_eq!(same, result);
}

#[test]
fn ruler_generate_writes_fitted_samples_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("s.jsonl");
    let (model, words, out_path) = (gguf(), words(), out_file.to_str().unwrap().to_string());
    let base = ["ruler", "generate", "--tokenizer", model.to_str().unwrap(), "--words", words.to_str().unwrap()];
    let run = |extra: &[&str]| longctx(&[&base[..], extra].concat());
    let out = run(&["--task", "niah_multikey_2", "--length", "1024", "--samples", "3", "--out", &out_path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out_file);
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert!(l["length"].as_u64().unwrap() <= 1024, "{l}");
        let input = l["input"].as_str().unwrap();
        let answer = l["outputs"][0].as_str().unwrap();
        assert!(input.contains(answer), "the needle's value is in the prompt");
    }
    // The same seed, the same samples.
    let again = dir.path().join("again.jsonl");
    let out =
        run(&["--task", "niah_multikey_2", "--length", "1024", "--samples", "3", "--out", again.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(fs_err::read_to_string(&again).unwrap(), fs_err::read_to_string(&out_file).unwrap());

    let err = |extra: &[&str]| String::from_utf8_lossy(&run(extra).stderr).to_string();
    let e = err(&["--task", "niah_single_9", "--length", "1024", "--out", &out_path]);
    assert!(e.contains("niah_single_9") && e.contains("niah_single_1"), "{e}");
    let e = err(&["--task", "cwe", "--length", "200", "--out", &out_path]);
    assert!(e.contains("200"), "{e}");
    let e = err(&["--task", "qa_1", "--length", "1024", "--squad", "/nonexistent/squad.json", "--out", &out_path]);
    assert!(e.contains("/nonexistent/squad.json"), "{e}");
}
