//! The data RULER's generators draw on that longctx does not generate: wonderwords' word lists,
//! Paul Graham's essays (the JSON file RULER's `download_paulgraham_essay.py` writes), SQuAD v2
//! dev and HotpotQA dev (as RULER's `download_qa_dataset.sh` fetches them).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One kind of data a task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Need {
    /// wonderwords' `nounlist.txt`, `adjectivelist.txt`, `verblist.txt`.
    Words,
    /// `PaulGrahamEssays.json` (`{"text": …}`).
    Essay,
    /// SQuAD v2 dev.
    Squad,
    /// HotpotQA dev (distractor).
    HotpotQa,
}

/// Where the data is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPaths {
    /// Directory holding wonderwords' three word lists (default `assets/wonderwords`,
    /// written by `tools/fetch_assets.sh`).
    pub words: Option<PathBuf>,
    /// The essays JSON file.
    pub essay: Option<PathBuf>,
    /// SQuAD v2 dev JSON.
    pub squad: Option<PathBuf>,
    /// HotpotQA dev JSON.
    pub hotpotqa: Option<PathBuf>,
}

/// The default directory of the word lists.
pub const DEFAULT_WORDS_DIR: &str = "assets/wonderwords";

impl DataPaths {
    /// The file (or directory) a need is read from, if one is set (words: the default).
    pub fn path(&self, need: Need) -> Option<PathBuf> {
        match need {
            Need::Words => Some(self.words.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_WORDS_DIR))),
            Need::Essay => self.essay.clone(),
            Need::Squad => self.squad.clone(),
            Need::HotpotQa => self.hotpotqa.clone(),
        }
    }

    /// Why a need cannot be met (`None` when its file is there): names the file and how to get it.
    pub fn missing(&self, need: Need) -> Option<String> {
        let how = match need {
            Need::Words => "run tools/fetch_assets.sh (it unpacks wonderwords' lists from PyPI), or set `words` to a directory with nounlist.txt, adjectivelist.txt and verblist.txt",
            Need::Essay => "set `essay` to the PaulGrahamEssays.json that RULER's scripts/data/synthetic/json/download_paulgraham_essay.py writes",
            Need::Squad => "set `squad` to SQuAD v2's dev-v2.0.json (RULER's download_qa_dataset.sh fetches it as squad.json)",
            Need::HotpotQa => "set `hotpotqa` to hotpot_dev_distractor_v1.json (RULER's download_qa_dataset.sh fetches it as hotpotqa.json)",
        };
        match self.path(need) {
            None => Some(format!("no file given; {how}")),
            Some(p) => {
                let present = match need {
                    Need::Words => WORD_FILES.iter().all(|f| p.join(f).is_file()),
                    _ => p.is_file(),
                };
                (!present).then(|| format!("`{}` is missing; {how}", p.display()))
            }
        }
    }
}

const WORD_FILES: [&str; 3] = ["nounlist.txt", "adjectivelist.txt", "verblist.txt"];

/// wonderwords' lists, one word per line as `_get_words_from_text_file` reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordLists {
    /// Nouns.
    pub nouns: Vec<String>,
    /// Adjectives.
    pub adjectives: Vec<String>,
    /// Verbs.
    pub verbs: Vec<String>,
}

impl WordLists {
    /// Reads the three lists from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let read = |f: &str| -> Result<Vec<String>> {
            let text = fs_err::read_to_string(dir.join(f))?;
            Ok(text.lines().map(|l| l.trim_end().to_string()).collect())
        };
        Ok(Self { nouns: read(WORD_FILES[0])?, adjectives: read(WORD_FILES[1])?, verbs: read(WORD_FILES[2])? })
    }

    /// cwe's words: nouns, adjectives and verbs, sorted and without duplicates.
    pub fn all_words(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.nouns.iter().chain(&self.adjectives).chain(&self.verbs).collect();
        set.into_iter().cloned().collect()
    }
}

/// The essays haystack: the text with every run of whitespace made one space, split on
/// spaces (niah.py's `re.sub(r'\s+', " ", essay).split(" ")`).
pub fn load_essay(path: &Path) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Essay {
        text: String,
    }
    let text = fs_err::read_to_string(path)?;
    let e: Essay = serde_json::from_str(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })?;
    // Python's `\s` (str patterns) is Unicode whitespace and the \x1c-\x1f separators.
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut last_space = false;
    for c in e.text.chars() {
        if c.is_whitespace() || ('\x1c'..='\x1f').contains(&c) {
            if !last_space {
                words.push(std::mem::take(&mut cur));
            }
            last_space = true;
        } else {
            cur.push(c);
            last_space = false;
        }
    }
    words.push(cur);
    Ok(words)
}

/// One question of a QA dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The question.
    pub query: String,
    /// Reference answers.
    pub outputs: Vec<String>,
    /// Indices (into [`QaData::docs`]) of the documents holding the answer.
    pub context: Vec<usize>,
    /// Other documents of the same article (SQuAD), preferred as distractors.
    pub more_context: Vec<usize>,
}

/// A QA dataset as qa.py reads it: documents sorted and deduplicated, answerable questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaData {
    /// The questions, in file order.
    pub questions: Vec<Question>,
    /// The documents.
    pub docs: Vec<String>,
}

fn parse_error(path: &Path, e: &serde_json::Error) -> Error {
    Error::Parse { path: path.to_path_buf(), line: e.line(), message: e.to_string() }
}

fn index_docs(all: impl Iterator<Item = String>) -> (Vec<String>, HashMap<String, usize>) {
    let set: BTreeSet<String> = all.collect();
    let docs: Vec<String> = set.into_iter().collect();
    let index = docs.iter().enumerate().map(|(i, d)| (d.clone(), i)).collect();
    (docs, index)
}

/// qa.py's `read_squad`: SQuAD v2 JSON; impossible questions are left out.
pub fn load_squad(path: &Path) -> Result<QaData> {
    #[derive(Deserialize)]
    struct File {
        data: Vec<Article>,
    }
    #[derive(Deserialize)]
    struct Article {
        paragraphs: Vec<Paragraph>,
    }
    #[derive(Deserialize)]
    struct Paragraph {
        context: String,
        qas: Vec<Qa>,
    }
    #[derive(Deserialize)]
    struct Qa {
        question: String,
        answers: Vec<Answer>,
        #[serde(default)]
        is_impossible: bool,
    }
    #[derive(Deserialize)]
    struct Answer {
        text: String,
    }
    let text = fs_err::read_to_string(path)?;
    let f: File = serde_json::from_str(&text).map_err(|e| parse_error(path, &e))?;
    let (docs, index) = index_docs(f.data.iter().flat_map(|a| a.paragraphs.iter().map(|p| p.context.clone())));
    let mut questions = Vec::new();
    for a in &f.data {
        let more: Vec<usize> = a.paragraphs.iter().map(|p| index[&p.context]).collect();
        for p in &a.paragraphs {
            let own = index[&p.context];
            for q in p.qas.iter().filter(|q| !q.is_impossible) {
                questions.push(Question {
                    query: q.question.clone(),
                    outputs: q.answers.iter().map(|a| a.text.clone()).collect(),
                    context: vec![own],
                    more_context: more.iter().copied().filter(|&i| i != own).collect(),
                });
            }
        }
    }
    Ok(QaData { questions, docs })
}

/// qa.py's `read_hotpotqa`: documents are `title\n` + the paragraph's sentences joined.
pub fn load_hotpotqa(path: &Path) -> Result<QaData> {
    #[derive(Deserialize)]
    struct Item {
        question: String,
        answer: String,
        context: Vec<(String, Vec<String>)>,
    }
    let text = fs_err::read_to_string(path)?;
    let items: Vec<Item> = serde_json::from_str(&text).map_err(|e| parse_error(path, &e))?;
    let doc = |t: &str, p: &[String]| format!("{t}\n{}", p.concat());
    let (docs, index) = index_docs(items.iter().flat_map(|d| d.context.iter().map(|(t, p)| doc(t, p))));
    let questions = items
        .iter()
        .map(|d| Question {
            query: d.question.clone(),
            outputs: vec![d.answer.clone()],
            context: d.context.iter().map(|(t, p)| index[&doc(t, p)]).collect(),
            more_context: Vec::new(),
        })
        .collect();
    Ok(QaData { questions, docs })
}

/// The data loaded for a set of tasks.
#[derive(Debug, Clone, Default)]
pub struct RulerData {
    /// Word lists.
    pub words: Option<WordLists>,
    /// The essays, as words.
    pub essay: Option<Vec<String>>,
    /// SQuAD.
    pub squad: Option<QaData>,
    /// HotpotQA.
    pub hotpotqa: Option<QaData>,
}

impl RulerData {
    /// Loads what `needs` asks for from `paths`; a missing file is an error naming it.
    pub fn load(paths: &DataPaths, needs: &[Need]) -> Result<Self> {
        let mut d = Self::default();
        for &need in needs {
            if let Some(why) = paths.missing(need) {
                return Err(Error::RulerData { message: why });
            }
            let p = paths.path(need).expect("present");
            let in_file = |e: Error| match e {
                Error::Io(io) => Error::RulerData { message: format!("{}: {io}", p.display()) },
                other => other,
            };
            match need {
                Need::Words if d.words.is_none() => d.words = Some(WordLists::load(&p).map_err(in_file)?),
                Need::Essay if d.essay.is_none() => d.essay = Some(load_essay(&p).map_err(in_file)?),
                Need::Squad if d.squad.is_none() => d.squad = Some(load_squad(&p).map_err(in_file)?),
                Need::HotpotQa if d.hotpotqa.is_none() => d.hotpotqa = Some(load_hotpotqa(&p).map_err(in_file)?),
                _ => {}
            }
        }
        Ok(d)
    }
}
