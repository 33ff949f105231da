//! LongBench-Chat (THUDM LongAlign, `LongBench_Chat/eval.py`): 50 open questions over 10k–100k
//! token documents, rated 1–10 by an LLM judge against a reference answer with three rated
//! few-shot answers. This module holds what the official script fixes: the test-case file, the
//! judge request (system prompt, `prompt_fs.txt` filled in), how a prediction is written before it
//! is judged, how a rating is read from the judge's reply, and the aggregation.
//!
//! - **Prediction.** The script writes `response.strip().replace('\n', ' ')` as a line and reads
//!   it back stripped: [`official_prediction`].
//! - **Judge request.** System "You're a good assistant at evaluating the quality of texts.",
//!   user `prompt_fs.txt` formatted (Python `str.format`) with the query, the reference answer,
//!   the three few-shot answers and scores of the case (`few_shots[idx - 1]`) and the
//!   prediction, temperature 0: [`judge_prompt`].
//! - **Rating.** The last `[[…]]` of the reply, then the first number in it (`\d+\.\d+|\d+`):
//!   [`parse_rating`]. The script asks again up to 5 times when there is none, then records
//!   `"none"` — here an unparsed item, never a number.
//! - **Aggregation.** The total is the sum of the ratings (0–500 over 50 cases); the script
//!   reports no total when any case is unparsed: [`Aggregate`].

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The judge's system prompt.
pub const JUDGE_SYSTEM: &str = "You're a good assistant at evaluating the quality of texts.";

/// `LongBench_Chat/prompt_fs.txt` (data/longbench_chat/, Apache-2.0).
pub const PROMPT_FS: &str = include_str!("../../../data/longbench_chat/prompt_fs.txt");

/// The judge prompt without few-shot answers, for LongBench's open-ended tasks (which have no
/// rated example answers): `prompt_fs.txt` with its block of three rated answers left out
/// (data/longbench_chat/prompt_zs.txt; slots: question, reference, answer).
pub const PROMPT_ZS: &str = include_str!("../../../data/longbench_chat/prompt_zs.txt");

/// `LongBench_Chat/few_shots.json`.
const FEW_SHOTS: &str = include_str!("../../../data/longbench_chat/few_shots.json");

/// The official prompt length limit, in tokens (the middle is cut above it).
pub const MAX_LENGTH: usize = 64_000;

/// The official generation length.
pub const MAX_NEW_TOKENS: usize = 1024;

/// Tries per case before a reply without a rating is recorded as unparsed.
pub const JUDGE_TRIES: usize = 5;

/// One test case of `test_cases.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCase {
    /// 1-based case number (also the few-shot entry `idx − 1`).
    pub idx: usize,
    /// The whole prompt given to the model (document and question).
    pub prompt: String,
    /// The question alone (what the judge sees).
    pub query: String,
    /// The reference answer.
    pub answer: String,
}

/// One scored few-shot answer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FewShot {
    /// The answer.
    pub answer: String,
    /// Its rating (an integer in the official file).
    pub score: serde_json::Value,
}

fn chat_error(path: &Path, message: String) -> Error {
    Error::File { path: path.to_path_buf(), message }
}

/// Reads a `test_cases.json` (a JSON array of `{idx, prompt, query, answer}`); an item without
/// one of them, or with a wrong type, is an error naming the item.
pub fn read_test_cases(path: &Path) -> Result<Vec<TestCase>> {
    let text = fs_err::read_to_string(path).map_err(|e| chat_error(path, e.to_string()))?;
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| chat_error(path, format!("not a JSON array of test cases: {e}")))?;
    let mut cases = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        for key in ["idx", "prompt", "query", "answer"] {
            if item.get(key).is_none() {
                return Err(chat_error(path, format!("test case {i} (0-based) has no `{key}`")));
            }
        }
        let case: TestCase =
            serde_json::from_value(item).map_err(|e| chat_error(path, format!("test case {i} (0-based): {e}")))?;
        if case.idx == 0 {
            return Err(chat_error(path, format!("test case {i} (0-based) has idx 0; idx counts from 1")));
        }
        cases.push(case);
    }
    Ok(cases)
}

/// A `test_cases.json` in a dataset repository of the Hugging Face hub (`owner/name` or
/// `owner/name@revision`), downloaded into the hub cache (or found there); its local path.
pub fn hub_test_cases(repo: &str, file: &str) -> Result<PathBuf> {
    let (id, revision) = repo.split_once('@').unwrap_or((repo, "main"));
    crate::dataset::hub_file(
        id,
        revision,
        file,
        "download LongBench_Chat/test_cases.json (THUDM/LongAlign on GitHub) elsewhere and give its local path as `test_cases`",
    )
}

/// The official few-shot answers, one entry of three per test case (`idx − 1`).
pub fn few_shots() -> Vec<Vec<FewShot>> {
    serde_json::from_str(FEW_SHOTS).expect("the shipped few_shots.json parses")
}

/// A prediction as the official script hands it to the judge: stripped, newlines turned into
/// spaces (it writes one line per prediction and reads it back stripped).
pub fn official_prediction(text: &str) -> String {
    text.trim().replace('\n', " ").trim().to_string()
}

/// Python's `str(x)` of a JSON scalar (ints as ints, floats as Python writes them).
fn python_str(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        serde_json::Value::Number(n) => crate::pyfloat::py_repr(n.as_f64().unwrap_or(f64::NAN)),
        other => other.to_string(),
    }
}

/// Python's `template.format(*args)` for `{}` slots (with `{{` / `}}` escapes), which is all
/// `prompt_fs.txt` uses.
pub fn python_format(template: &str, args: &[String]) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len() + args.iter().map(String::len).sum::<usize>());
    let mut next = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', Some('{')) | ('}', Some('}')) => {
                out.push(c);
                chars.next();
            }
            ('{', Some('}')) => {
                chars.next();
                let arg = args.get(next).ok_or_else(|| format!("the template has more than {} slots", args.len()))?;
                out.push_str(arg);
                next += 1;
            }
            ('{' | '}', _) => return Err("the template has a field other than `{}`".into()),
            _ => out.push(c),
        }
    }
    if next != args.len() {
        return Err(format!("the template has {next} slots for {} values", args.len()));
    }
    Ok(out)
}

/// The judge's user message for `case` and a prediction (already in [`official_prediction`]
/// form), from `template` (`prompt_fs.txt`) and the case's three few-shot answers, in the given
/// order.
pub fn judge_prompt(template: &str, case: &TestCase, shots: &[FewShot], prediction: &str) -> Result<String> {
    let mut args = vec![case.query.clone(), case.answer.clone()];
    for shot in shots {
        args.push(shot.answer.clone());
        args.push(python_str(&shot.score));
    }
    args.push(prediction.to_string());
    python_format(template, &args)
        .map_err(|e| Error::Template { dataset: "longbench-chat".into(), message: format!("case {}: {e}", case.idx) })
}

/// The zero-shot judge message ([`PROMPT_ZS`]) for a question, its reference answer and a
/// prediction (already in [`official_prediction`] form).
pub fn judge_prompt_zero_shot(query: &str, reference: &str, prediction: &str) -> Result<String> {
    python_format(PROMPT_ZS, &[query.to_string(), reference.to_string(), prediction.to_string()])
        .map_err(|e| Error::Template { dataset: "longbench-chat".into(), message: e })
}

/// A test case's prompt as the official script gives it to the model: when its tokens (no
/// special tokens) exceed `max_length`, the text of the first and of the last `max_length / 2`
/// tokens, each decoded without special tokens.
pub fn truncate_prompt(
    prompt: &str,
    tokenizer: &dyn longctx_core::Tokenizer,
    max_length: usize,
) -> Result<crate::prompt::Truncated> {
    let ids = tokenizer.encode(prompt, false)?;
    if ids.len() <= max_length {
        return Ok(crate::prompt::Truncated { text: prompt.to_string(), original_tokens: ids.len(), truncated: false });
    }
    let half = max_length / 2;
    let mut text = tokenizer.decode(&ids[..half], true)?;
    text.push_str(&tokenizer.decode(&ids[ids.len() - half..], true)?);
    Ok(crate::prompt::Truncated { text, original_tokens: ids.len(), truncated: true })
}

static BRACKETS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[\[([^\]]+)\]\]").expect("a valid regex"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9]+\.[0-9]+|[0-9]+").expect("a valid regex"));

/// The rating of a judge's reply as the official script reads it: the text of the last `[[…]]`,
/// then the first number in it (`"[[7]]"` → 7, `"[[Rating: 8.5/10]]"` → 8.5). `None` where the
/// script would ask again. (The script's `\d` also takes non-ASCII digits; a reply with those
/// is unparsed here.)
pub fn parse_rating(reply: &str) -> Option<f64> {
    let last = BRACKETS.captures_iter(reply).last()?;
    let number = NUMBER.find(last.get(1)?.as_str())?;
    number.as_str().parse().ok()
}

/// The longest judge reply asked for by default (the official script sets no limit; GPT-4's
/// analyses run to a few hundred tokens).
pub const JUDGE_MAX_TOKENS: usize = 1024;

/// One judge's verdict on one case: the rating (none: unparsed after every try), and every raw
/// reply and call failure, in order — a line of a judgements file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// The item: a LongBench-Chat case's `idx`, or a LongBench sample's id.
    pub id: String,
    /// The judge's name.
    pub judge: String,
    /// The rating; `None` when no reply held one after [`JUDGE_TRIES`] tries.
    pub rating: Option<f64>,
    /// Tries made.
    pub tries: usize,
    /// The judge's replies, in order (the last holds the rating).
    pub replies: Vec<String>,
    /// Calls that failed (endpoint down, rejected), in order.
    pub errors: Vec<String>,
    /// Tokens, requests and cost of every try.
    pub usage: longctx_core::Usage,
}

impl Judgement {
    /// Whether judging this case again could pay for nothing twice: only when every try failed
    /// before the judge replied (an endpoint that was down) is it judged again on resume.
    pub fn is_final(&self) -> bool {
        self.rating.is_some() || !self.replies.is_empty()
    }
}

/// Asks `judge` for the rating of one item, as the official script does: the system prompt and
/// `prompt` (from [`judge_prompt`]) at temperature 0 with replies of at most `max_tokens`
/// tokens, again while the reply holds no rating or the call fails, at most [`JUDGE_TRIES`]
/// times.
pub fn judge_case(
    name: &str,
    judge: &dyn longctx_core::ChatModel,
    id: &str,
    prompt: &str,
    max_tokens: usize,
) -> Judgement {
    let messages =
        [longctx_core::ChatMessage::new("system", JUDGE_SYSTEM), longctx_core::ChatMessage::new("user", prompt)];
    let mut j = Judgement {
        id: id.to_string(),
        judge: name.to_string(),
        rating: None,
        tries: 0,
        replies: Vec::new(),
        errors: Vec::new(),
        usage: longctx_core::Usage::default(),
    };
    while j.tries < JUDGE_TRIES && j.rating.is_none() {
        j.tries += 1;
        match judge.chat(&messages, max_tokens) {
            Ok(reply) => {
                j.usage += reply.usage;
                j.rating = parse_rating(&reply.text);
                j.replies.push(reply.text);
            }
            Err(e) => j.errors.push(e.0),
        }
    }
    j
}

/// The few-shot answers of a case in the order a judge sees them: the official order, or, with
/// a seed, an order drawn from (seed, judge, case) — the paper's shuffle, reproducible per judge.
pub fn shot_order(shots: &[FewShot], seed: Option<u64>, judge: &str, idx: usize) -> Vec<FewShot> {
    let mut out = shots.to_vec();
    if let Some(seed) = seed {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut h = seed ^ (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for b in judge.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        out.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(h));
    }
    out
}

/// The judgements of a file (one JSON object per line; a last line cut short by an interrupted
/// write is left out, any other bad line is an error naming it).
pub fn read_judgements(path: &Path) -> Result<Vec<Judgement>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs_err::read_to_string(path).map_err(|e| chat_error(path, e.to_string()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(j) => out.push(j),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(Error::Parse {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not a judgement: {e}"),
                })
            }
        }
    }
    Ok(out)
}

/// Appends one judgement to a judgements file (a whole line per write).
pub fn append_judgement(path: &Path, j: &Judgement) -> Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_string(j).map_err(|e| chat_error(path, e.to_string()))?;
    line.push('\n');
    let mut f =
        fs_err::OpenOptions::new().create(true).append(true).open(path).map_err(|e| chat_error(path, e.to_string()))?;
    f.write_all(line.as_bytes()).map_err(|e| chat_error(path, e.to_string()))
}

/// The ratings of one judge over a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    /// Cases judged.
    pub cases: usize,
    /// Cases with a rating.
    pub rated: usize,
    /// Cases whose replies held no rating after every try.
    pub unparsed: usize,
    /// Mean rating over the rated cases (1–10).
    pub mean: Option<f64>,
    /// Sum of the ratings of the rated cases.
    pub sum: f64,
    /// The official total (the sum over every case, 0–500 on the 50 cases), absent — as the
    /// script reports `"none"` — when a case is unparsed.
    pub total: Option<f64>,
}

impl Aggregate {
    /// Aggregates ratings (`None`: unparsed).
    pub fn of(ratings: &[Option<f64>]) -> Self {
        let rated: Vec<f64> = ratings.iter().flatten().copied().collect();
        let sum: f64 = rated.iter().sum();
        let unparsed = ratings.len() - rated.len();
        Self {
            cases: ratings.len(),
            rated: rated.len(),
            unparsed,
            mean: (!rated.is_empty()).then(|| sum / rated.len() as f64),
            sum,
            total: (unparsed == 0).then_some(sum),
        }
    }
}

/// The prompt-length buckets of the judges' tables, in order (tokens).
pub const LENGTH_BUCKETS: [&str; 4] = ["0-10k", "10-20k", "20-40k", "40k+"];

/// The [bucket](LENGTH_BUCKETS) of a prompt of `tokens` tokens: 0–10k, 10–20k, 20–40k, 40k+.
pub fn length_bucket(tokens: usize) -> &'static str {
    LENGTH_BUCKETS[match tokens {
        0..10_000 => 0,
        10_000..20_000 => 1,
        20_000..40_000 => 2,
        _ => 3,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_files_fit_together() {
        let shots = few_shots();
        assert_eq!(shots.len(), 50);
        assert!(shots.iter().all(|s| s.len() == 3));
        let case = TestCase { idx: 1, prompt: "p".into(), query: "Q?".into(), answer: "A.".into() };
        let p = judge_prompt(PROMPT_FS, &case, &shots[0], "my answer").unwrap();
        assert!(p.contains("[Question]\nQ?\n\n[Reference answer begins]\nA.\n[Reference answer ends]"));
        assert!(p.ends_with("my answer\n[Assistant's answer ends]") || p.contains("my answer"));
        assert!(p.contains(&format!("Rating: [[{}]]", shots[0][0].score)));
    }

    #[test]
    fn a_test_file_without_idx_or_answer_is_refused_by_item() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test_cases.json");
        let good = r#"{"idx": 1, "prompt": "doc Q?", "query": "Q?", "answer": "A."}"#;
        fs_err::write(&path, format!("[{good}]")).unwrap();
        assert_eq!(read_test_cases(&path).unwrap()[0].query, "Q?");
        fs_err::write(&path, format!(r#"[{good}, {{"idx": 2, "prompt": "p", "query": "q"}}]"#)).unwrap();
        let err = read_test_cases(&path).unwrap_err().to_string();
        assert!(err.contains("test case 1 (0-based) has no `answer`"), "{err}");
        fs_err::write(&path, r#"[{"prompt": "p", "query": "q", "answer": "a"}]"#).unwrap();
        assert!(read_test_cases(&path).unwrap_err().to_string().contains("has no `idx`"));
        fs_err::write(&path, r#"{"idx": 1}"#).unwrap();
        assert!(read_test_cases(&path).unwrap_err().to_string().contains("not a JSON array"));
    }

    /// A scripted judge: replies (Ok) or failures (Err) in order, then the last forever.
    struct Scripted(std::sync::Mutex<Vec<std::result::Result<&'static str, &'static str>>>);

    impl longctx_core::ChatModel for Scripted {
        fn chat(
            &self,
            messages: &[longctx_core::ChatMessage],
            _max_tokens: usize,
        ) -> std::result::Result<longctx_core::ChatReply, longctx_core::CallError> {
            assert_eq!(messages[0].content, JUDGE_SYSTEM);
            let mut script = self.0.lock().unwrap();
            let next = if script.len() > 1 { script.remove(0) } else { script[0] };
            next.map(|text| longctx_core::ChatReply {
                text: text.into(),
                usage: longctx_core::Usage { prompt_tokens: 10, completion_tokens: 2, requests: 1, cost_usd: 0.5 },
            })
            .map_err(|e| longctx_core::CallError(e.into()))
        }
    }

    fn scripted(s: Vec<std::result::Result<&'static str, &'static str>>) -> Scripted {
        Scripted(std::sync::Mutex::new(s))
    }

    #[test]
    fn a_judge_is_asked_again_until_it_rates_then_recorded_unparsed() {
        let j = judge_case(
            "a",
            &scripted(vec![Ok("Good."), Err("HTTP 503"), Ok("Rating: [[7]]")]),
            "3",
            "p",
            JUDGE_MAX_TOKENS,
        );
        assert_eq!((j.rating, j.tries, j.replies.len(), j.errors.len()), (Some(7.0), 3, 2, 1));
        assert_eq!(j.usage.requests, 2);
        assert!((j.usage.cost_usd - 1.0).abs() < 1e-12);
        let never = judge_case("a", &scripted(vec![Ok("I cannot rate this.")]), "3", "p", JUDGE_MAX_TOKENS);
        assert_eq!((never.rating, never.tries, never.replies.len()), (None, JUDGE_TRIES, JUDGE_TRIES));
        assert!(never.is_final(), "replies were paid for: not asked again on resume");
        let down = judge_case("a", &scripted(vec![Err("connection refused")]), "3", "p", JUDGE_MAX_TOKENS);
        assert_eq!((down.rating, down.errors.len()), (None, JUDGE_TRIES));
        assert!(!down.is_final(), "nothing was paid: judged again on resume");
    }

    #[test]
    fn judgements_append_and_read_back_and_a_torn_last_line_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("judgements.jsonl");
        assert!(read_judgements(&path).unwrap().is_empty());
        let a = judge_case("a", &scripted(vec![Ok("[[8]]")]), "1", "p", JUDGE_MAX_TOKENS);
        let b = judge_case("b", &scripted(vec![Ok("none")]), "1", "p", JUDGE_MAX_TOKENS);
        append_judgement(&path, &a).unwrap();
        append_judgement(&path, &b).unwrap();
        assert_eq!(read_judgements(&path).unwrap(), [a.clone(), b]);
        let mut text = fs_err::read_to_string(&path).unwrap();
        text.push_str("{\"id\": \"2\", \"jud");
        fs_err::write(&path, &text).unwrap();
        assert_eq!(read_judgements(&path).unwrap().len(), 2);
        fs_err::write(&path, format!("garbage\n{}\n", serde_json::to_string(&a).unwrap())).unwrap();
        let err = read_judgements(&path).unwrap_err().to_string();
        assert!(err.contains("judgements.jsonl:1: not a judgement"), "{err}");
    }

    #[test]
    fn shots_keep_the_official_order_or_shuffle_by_judge() {
        let shots = &few_shots()[4];
        assert_eq!(shot_order(shots, None, "a", 5), *shots);
        let a = shot_order(shots, Some(1), "gpt-4", 5);
        assert_eq!(a, shot_order(shots, Some(1), "gpt-4", 5));
        let mut sorted: Vec<String> = a.iter().map(|s| s.answer.clone()).collect();
        sorted.sort();
        let mut official: Vec<String> = shots.iter().map(|s| s.answer.clone()).collect();
        official.sort();
        assert_eq!(sorted, official);
        let orders: std::collections::HashSet<Vec<String>> = (0..20)
            .map(|i| shot_order(shots, Some(1), &format!("judge-{i}"), 5).iter().map(|s| s.answer.clone()).collect())
            .collect();
        assert!(orders.len() > 1, "different judges see different orders");
    }

    #[test]
    fn python_format_escapes_and_counts() {
        let a = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(python_format("{{x}} {} [[{}]]", &a(&["a", "7"])).unwrap(), "{x} a [[7]]");
        assert!(python_format("{} {}", &a(&["a"])).is_err());
        assert!(python_format("{}", &a(&["a", "b"])).is_err());
        assert!(python_format("{0}", &a(&["a"])).is_err());
    }

    #[test]
    fn aggregation_reports_no_total_with_an_unparsed_case() {
        let a = Aggregate::of(&[Some(7.0), Some(8.5), None]);
        assert_eq!((a.rated, a.unparsed, a.sum, a.total), (2, 1, 15.5, None));
        assert_eq!(a.mean, Some(7.75));
        assert_eq!(Aggregate::of(&[Some(3.0), Some(4.0)]).total, Some(7.0));
        assert_eq!(Aggregate::of(&[None]).mean, None);
        assert_eq!((length_bucket(9_999), length_bucket(10_000), length_bucket(40_000)), ("0-10k", "10-20k", "40k+"));
    }
}
