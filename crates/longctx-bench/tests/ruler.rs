//! RULER: the generators' fidelity to RULER's templates, fitting, needle depths and answer
//! counts (with a word-counting tokenizer stand-in and the small data of `tests/data/ruler`),
//! and the scoring against RULER's own evaluate.py (fixture by tools/oracles/ruler_scoring.py).

use std::collections::BTreeMap;
use std::path::PathBuf;

use longctx_bench::ruler::data::{DataPaths, Need, RulerData};
use longctx_bench::ruler::generate::{Generated, Generator};
use longctx_bench::ruler::score::{postprocess, score_task, task_score, Line};
use longctx_bench::ruler::{task, Match, TASKS};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn paths() -> DataPaths {
    let d = root().join("tests/data/ruler");
    DataPaths {
        words: Some(d.join("words")),
        essay: Some(d.join("essay.json")),
        squad: Some(d.join("squad.json")),
        hotpotqa: Some(d.join("hotpotqa.json")),
    }
}

fn data() -> RulerData {
    RulerData::load(&paths(), &[Need::Words, Need::Essay, Need::Squad, Need::HotpotQa]).unwrap()
}

/// A tokenizer stand-in: words and punctuation marks, plus a chat template's 7 tokens (a
/// `Result`, as the generator's counter returns).
#[allow(clippy::unnecessary_wraps)]
fn count(user: &str, prefix: &str) -> longctx_bench::Result<usize> {
    let c = |s: &str| s.split_whitespace().count() + s.matches(['.', ',', '\n', '-', '?', ':']).count();
    Ok(7 + c(user) + c(prefix))
}

fn generator<'a>(name: &str, data: &'a RulerData, length: usize, seed: u64) -> Generator<'a> {
    Generator::new(task(name).unwrap(), data, length, seed, &count).unwrap()
}

#[test]
fn every_task_fits_its_length_and_one_more_unit_would_not() {
    let data = data();
    for t in &TASKS {
        for length in [1024, 4096] {
            let g = generator(t.name, &data, length, 42);
            for index in 0..2 {
                let s = g.sample(index, None).unwrap();
                let ttg = t.tokens_to_generate();
                assert_eq!(s.length, s.prompt_tokens + ttg);
                assert!(s.length <= length, "{} at {length}: {} tokens", t.name, s.length);
                let (_, _, more) = g.sample_with(index, s.haystack + 1, None).unwrap();
                assert!(more + ttg > length, "{} at {length}: {} units fit {more} + {ttg}", t.name, s.haystack + 1);
                let (user, prefix, same) = g.sample_with(index, s.haystack, None).unwrap();
                assert_eq!((user, prefix, same), (s.input.clone(), s.answer_prefix.clone(), s.prompt_tokens));
                // Fitting is tight: the prompt fills the length but for less than one unit.
                assert!(s.length * 10 > length * 8, "{} at {length}: only {}", t.name, s.length);
            }
        }
    }
}

fn needle_key(context: &str, kind: &str) -> String {
    let marker = format!("One of the special magic {kind} for ");
    let at = context.find(&marker).unwrap() + marker.len();
    context[at..].split(" is: ").next().unwrap().to_string()
}

#[test]
fn prompts_are_rulers_templates_with_their_fields() {
    let data = data();
    let s = generator("niah_single_1", &data, 2048, 1).sample(0, None).unwrap();
    let (head, context, tail) = s.parts();
    let key = needle_key(context, "numbers");
    assert_eq!(head, "A special magic number is hidden within the following text. Make sure to memorize it. I will quiz you about the number afterwards.\n");
    assert_eq!(tail, format!("\nWhat is the special magic number for {key} mentioned in the provided text?"));
    assert_eq!(s.answer_prefix, format!(" The special magic number for {key} mentioned in the provided text is"));
    assert!(context
        .starts_with("The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n"));

    let s = generator("niah_multivalue", &data, 2048, 1).sample(0, None).unwrap();
    let (head, context, tail) = s.parts();
    let key = needle_key(context, "numbers");
    assert_eq!(head, "Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n");
    assert_eq!(tail, format!("\nWhat are all the special magic numbers for {key} mentioned in the provided text?"));
    assert_eq!(s.answer_prefix, format!(" The special magic numbers for {key} mentioned in the provided text are"));
    assert_eq!(s.outputs.len(), 4);

    let s = generator("niah_multiquery", &data, 2048, 1).sample(0, None).unwrap();
    let (_, context, tail) = s.parts();
    let q = tail.strip_prefix("\nWhat are all the special magic numbers for ").unwrap();
    let q = q.strip_suffix(" mentioned in the provided text?").unwrap();
    let keys: Vec<&str> = q.split(", ").collect();
    assert_eq!(keys.len(), 4);
    assert!(keys[3].starts_with("and "), "{q}");
    for k in &keys {
        assert!(context.contains(&format!("for {} is: ", k.trim_start_matches("and "))));
    }

    let s = generator("niah_multikey_3", &data, 2048, 1).sample(0, None).unwrap();
    let (head, context, _) = s.parts();
    assert_eq!(head, "A special magic uuid is hidden within the following text. Make sure to memorize it. I will quiz you about the uuid afterwards.\n");
    assert!(context.lines().all(|l| l.starts_with("One of the special magic uuids for ")));

    let s = generator("vt", &data, 2048, 1).sample(0, None).unwrap();
    let (head, _, tail) = s.parts();
    let value = tail.strip_prefix("\nQuestion: Find all variables that are assigned the value ").unwrap();
    let value = value.strip_suffix(" in the text above.").unwrap();
    assert!(
        head.ends_with("\nMemorize and track the chain(s) of variable assignment hidden in the following text.\n\n")
    );
    assert!(
        head.starts_with("Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n")
    );
    assert_eq!(
        s.answer_prefix,
        format!(" Answer: According to the chain(s) of variable assignment in the text above, 5 variables are assigned the value {value}, they are: ")
    );

    let s = generator("cwe", &data, 4096, 1).sample(0, None).unwrap();
    let (head, _, tail) = s.parts();
    assert!(head.starts_with("Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n1. "));
    assert!(head.contains("\nQuestion: What are the 10 most common words in the above list? Answer: The top 10 words that appear most often in the list are: 1. "));
    assert!(head.ends_with("\nBelow is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.\n"));
    assert_eq!(tail, "\nQuestion: What are the 10 most common words in the above list?");
    assert_eq!(s.answer_prefix, " Answer: The top 10 words that appear most often in the list are:");

    let s = generator("fwe", &data, 2048, 1).sample(0, None).unwrap();
    let (head, _, tail) = s.parts();
    assert_eq!(head, "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words. ");
    assert_eq!(tail, "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?");
    assert_eq!(
        s.answer_prefix,
        " Answer: According to the coded text above, the three most frequently appeared words are:"
    );

    for name in ["qa_1", "qa_2"] {
        let s = generator(name, &data, 2048, 1).sample(3, None).unwrap();
        let (head, context, tail) = s.parts();
        assert_eq!(head, "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.\n\n");
        assert!(tail.starts_with("\n\nAnswer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: Which "));
        assert!(context.starts_with("Document 1:\n"));
        assert_eq!(s.answer_prefix, " Answer:");
    }
}

fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn needles_sit_at_the_requested_depth() {
    let data = data();
    let g = generator("niah_single_1", &data, 4096, 5);
    for depth in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let s = g.sample(1, Some(depth)).unwrap();
        assert_eq!(s.depth, Some(depth));
        let lines: Vec<&str> = s.parts().1.lines().collect();
        let at = lines.iter().position(|l| l.starts_with("One of")).unwrap();
        let measured = 100.0 * at as f64 / (lines.len() - 1) as f64;
        assert!((measured - depth).abs() <= 100.0 / lines.len() as f64 + 1e-9, "{depth}: line {at} of {}", lines.len());
    }
    for name in ["niah_single_2", "niah_single_3"] {
        let g = generator(name, &data, 4096, 5);
        for depth in [0.0, 30.0, 60.0, 100.0] {
            let s = g.sample(0, Some(depth)).unwrap();
            let context = s.parts().1;
            let at = context.find("One of the special magic").unwrap();
            let measured = 100.0 * at as f64 / (context.len() - 80) as f64;
            assert!((measured - depth).abs() < 3.0, "{name} {depth}: at {measured:.1} %");
        }
    }
    // Other tasks have no depth to sweep.
    assert_eq!(generator("niah_multikey_1", &data, 2048, 5).sample(0, Some(50.0)).unwrap().depth, None);
}

#[test]
fn answers_occur_in_the_context_as_often_as_the_task_says() {
    let data = data();
    for name in [
        "niah_single_1",
        "niah_single_2",
        "niah_single_3",
        "niah_multikey_1",
        "niah_multikey_2",
        "niah_multikey_3",
        "niah_multivalue",
        "niah_multiquery",
    ] {
        for index in 0..3 {
            let s = generator(name, &data, 4096, 9).sample(index, None).unwrap();
            let context = s.parts().1;
            let needles = context.matches("One of the special magic").count();
            let expected = match name {
                "niah_multikey_1" | "niah_multivalue" | "niah_multiquery" => 4,
                "niah_multikey_2" | "niah_multikey_3" => needles, // a haystack of needles
                _ => 1,
            };
            assert_eq!(needles, expected, "{name}");
            for o in &s.outputs {
                assert_eq!(occurrences(context, &format!("is: {o}.")), 1, "{name}: {o}");
            }
        }
    }
    let s = generator("vt", &data, 4096, 9).sample(0, None).unwrap();
    let (_, context, tail) = s.parts();
    let value = tail.split("the value ").nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(s.outputs.len(), 5);
    assert_eq!(occurrences(context, &format!("VAR {} = {value}\n", s.outputs[0])), 1);
    for w in s.outputs.windows(2) {
        assert_eq!(occurrences(context, &format!("VAR {} = VAR {} ", w[1], w[0])), 1);
    }
    for (length, common, uncommon) in [(4096, 30, 3), (2048, 6, 1)] {
        let s = generator("cwe", &data, length, 9).sample(0, None).unwrap();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for item in s.parts().1.split(' ').skip(1).step_by(2) {
            *counts.entry(item).or_default() += 1;
        }
        assert_eq!(s.outputs.len(), 10);
        for o in &s.outputs {
            assert_eq!(counts[o.as_str()], common, "{o}");
        }
        assert!(counts.iter().filter(|(w, _)| !s.outputs.iter().any(|o| o == *w)).all(|(_, &c)| c == uncommon));
    }
    let s = generator("fwe", &data, 4096, 9).sample(0, None).unwrap();
    let words: Vec<&str> = s.parts().1.split(' ').collect();
    let n = |w: &str| words.iter().filter(|x| **x == w).count();
    let (a, b, c) = (n(&s.outputs[0]), n(&s.outputs[1]), n(&s.outputs[2]));
    assert!(n("...") > a && a > b && b >= c && c > 0, "{} {a} {b} {c}", n("..."));
    assert!(words.iter().filter(|w| !s.outputs.iter().any(|o| o == *w) && **w != "...").all(|w| n(w) <= c));
    for name in ["qa_1", "qa_2"] {
        let s = generator(name, &data, 2048, 9).sample(2, None).unwrap();
        assert!(s.outputs.iter().any(|o| s.parts().1.contains(o.as_str())), "{name}");
    }
}

#[test]
fn the_same_seed_gives_the_same_samples() {
    let data = data();
    for name in ["niah_multikey_2", "vt", "cwe", "fwe", "qa_1"] {
        let a: Vec<Generated> = (0..2).map(|i| generator(name, &data, 2048, 7).sample(i, None).unwrap()).collect();
        let b: Vec<Generated> = (0..2).map(|i| generator(name, &data, 2048, 7).sample(i, None).unwrap()).collect();
        let c = generator(name, &data, 2048, 8).sample(0, None).unwrap();
        assert_eq!(a, b, "{name}");
        assert_ne!(a[0].input, a[1].input, "{name}");
        assert_ne!(a[0].input, c.input, "{name}");
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let data = data();
    let e = generator("cwe", &data, 300, 1).sample(0, None).unwrap_err().to_string();
    assert!(e.contains("RULER task `cwe` cannot be fitted to 300 tokens") && e.contains("take"), "{e}");
    let e = task("niah_single").unwrap_err().to_string();
    assert!(e.contains("unknown RULER task `niah_single`"), "{e}");
    let missing = DataPaths { essay: Some("/nowhere/PaulGrahamEssays.json".into()), ..paths() };
    let e = RulerData::load(&missing, &[Need::Essay]).unwrap_err().to_string();
    assert!(
        e.contains("`/nowhere/PaulGrahamEssays.json` is missing") && e.contains("download_paulgraham_essay.py"),
        "{e}"
    );
    let none = DataPaths { squad: None, ..paths() };
    assert!(none.missing(Need::Squad).unwrap().contains("set `squad`"));
    assert!(Generator::new(task("qa_1").unwrap(), &RulerData::default(), 2048, 1, &count).is_err());
}

#[test]
fn scoring_equals_rulers_evaluate_py() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/oracles/ruler_scoring.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let strings =
        |v: &Value| -> Vec<String> { v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect() };
    let lines = fixture["lines"].as_array().unwrap();
    assert!(lines.len() >= 200);
    let mut groups: BTreeMap<(String, u64), Vec<Line>> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let name = l["task"].as_str().unwrap();
        let metric = task(name).unwrap().metric();
        let pred = l["pred"].as_str().unwrap();
        let outputs = strings(&l["outputs"]);
        let post = postprocess(pred);
        assert_eq!(post, l["post"].as_str().unwrap(), "line {i}: {pred:?}");
        assert_eq!(
            task_score(metric, &[post], std::slice::from_ref(&outputs)),
            l["score"].as_f64().unwrap(),
            "line {i}: {pred:?}"
        );
        groups.entry((name.to_string(), l["length"].as_u64().unwrap())).or_default().push(Line {
            pred: pred.to_string(),
            answers: outputs,
            depth: None,
        });
    }
    let expected = fixture["groups"].as_array().unwrap();
    assert_eq!(expected.len(), 26);
    let names: std::collections::BTreeSet<&str> = expected.iter().map(|g| g["task"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 13);
    for g in expected {
        let name = g["task"].as_str().unwrap();
        let got = score_task(task(name).unwrap().metric(), &groups[&(name.to_string(), g["length"].as_u64().unwrap())]);
        assert_eq!(got.score, g["score"].as_f64().unwrap(), "{name} {}", g["length"]);
        assert_eq!(got.nulls, g["nulls"].as_str().unwrap(), "{name}");
        assert_eq!(got.n as u64, g["n"].as_u64().unwrap());
    }
    assert_eq!(task("qa_1").unwrap().metric(), Match::Part);
}
