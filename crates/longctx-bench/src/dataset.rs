//! The LongBench and LongBench-E datasets: a typed table of their properties and loaders for
//! the official JSONL files (from a directory, LongBench's `data.zip`, or the Hugging Face hub).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use longctx_core::Sample;

use crate::error::{Error, Result};
use crate::metrics::Metric;

/// Which of the two suites a run uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Suite {
    /// LongBench v1: 21 datasets, `<name>.jsonl`.
    #[default]
    LongBench,
    /// LongBench-E: 13 datasets with a uniform length distribution, `<name>_e.jsonl`, scored
    /// per length bucket.
    LongBenchE,
}

/// Everything longctx needs to know about one LongBench dataset (from `pred.py`, `eval.py`
/// and `config/*.json` of THUDM/LongBench @ 2e00731).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Name as in the official files (`repobench-p`, `2wikimqa`, …).
    pub name: &'static str,
    /// The metric `eval.py` applies.
    pub metric: Metric,
    /// `en` or `zh` (the prompts' language).
    pub language: &'static str,
    /// `eval.py` scores only the first line of the prediction (trec, triviaqa, samsum, lsht).
    pub first_line_only: bool,
    /// `pred.py` does not wrap the prompt in the model's chat template (few-shot and code
    /// datasets: trec, triviaqa, samsum, lsht, lcc, repobench-p).
    pub skip_chat_template: bool,
    /// Generation stops at a newline (samsum).
    pub stop_at_newline: bool,
    /// Part of LongBench-E.
    pub in_longbench_e: bool,
}

const fn spec(name: &'static str, metric: Metric, language: &'static str, e: bool) -> DatasetSpec {
    DatasetSpec {
        name,
        metric,
        language,
        first_line_only: false,
        skip_chat_template: false,
        stop_at_newline: false,
        in_longbench_e: e,
    }
}

const fn few_shot(mut s: DatasetSpec) -> DatasetSpec {
    s.first_line_only = true;
    s.skip_chat_template = true;
    s
}

const fn no_chat(mut s: DatasetSpec) -> DatasetSpec {
    s.skip_chat_template = true;
    s
}

const fn stop_newline(mut s: DatasetSpec) -> DatasetSpec {
    s.stop_at_newline = true;
    s
}

/// The 21 LongBench datasets, in the order of LongBench's tables.
pub const DATASETS: &[DatasetSpec] = &[
    spec("narrativeqa", Metric::QaF1, "en", false),
    spec("qasper", Metric::QaF1, "en", true),
    spec("multifieldqa_en", Metric::QaF1, "en", true),
    spec("multifieldqa_zh", Metric::QaF1Zh, "zh", false),
    spec("hotpotqa", Metric::QaF1, "en", true),
    spec("2wikimqa", Metric::QaF1, "en", true),
    spec("musique", Metric::QaF1, "en", false),
    spec("dureader", Metric::RougeZh, "zh", false),
    spec("gov_report", Metric::Rouge, "en", true),
    spec("qmsum", Metric::Rouge, "en", false),
    spec("multi_news", Metric::Rouge, "en", true),
    spec("vcsum", Metric::RougeZh, "zh", false),
    few_shot(spec("trec", Metric::Classification, "en", true)),
    few_shot(spec("triviaqa", Metric::QaF1, "en", true)),
    stop_newline(few_shot(spec("samsum", Metric::Rouge, "en", true))),
    few_shot(spec("lsht", Metric::Classification, "zh", false)),
    spec("passage_count", Metric::Count, "en", true),
    spec("passage_retrieval_en", Metric::Retrieval, "en", true),
    spec("passage_retrieval_zh", Metric::RetrievalZh, "zh", false),
    no_chat(spec("lcc", Metric::CodeSim, "en", true)),
    no_chat(spec("repobench-p", Metric::CodeSim, "en", true)),
];

/// The spec of a dataset by name, or [`Error::UnknownDataset`] with the closest name.
pub fn dataset(name: &str) -> Result<&'static DatasetSpec> {
    DATASETS.iter().find(|d| d.name == name).ok_or_else(|| Error::UnknownDataset {
        name: name.to_string(),
        closest: closest_name(name),
        known: DATASETS.iter().map(|d| d.name).collect::<Vec<_>>().join(", "),
    })
}

/// The spec of a LongBench-E dataset by its base name (`qasper`, not `qasper_e`).
pub fn dataset_e(name: &str) -> Result<&'static DatasetSpec> {
    let spec = dataset(name)?;
    if spec.in_longbench_e {
        Ok(spec)
    } else {
        Err(Error::NotInLongBenchE {
            name: name.to_string(),
            known: DATASETS.iter().filter(|d| d.in_longbench_e).map(|d| d.name).collect::<Vec<_>>().join(", "),
        })
    }
}

/// The known name nearest to `name` by edit distance, if it is within a third of its length.
fn closest_name(name: &str) -> Option<&'static str> {
    let lower = name.to_lowercase();
    let lower = lower.strip_suffix("_e").unwrap_or(&lower);
    DATASETS
        .iter()
        .map(|d| (edit_distance(lower, d.name), d.name))
        .min()
        .filter(|(dist, known)| *dist <= known.chars().count().div_ceil(3))
        .map(|(_, known)| known)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Where the official data files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A directory holding `<name>.jsonl` / `<name>_e.jsonl` (or a `data/` folder with them,
    /// as `data.zip` unpacks).
    Dir(PathBuf),
    /// LongBench's `data.zip` (members `data/<name>.jsonl`).
    Zip(PathBuf),
    /// A dataset repository on the Hugging Face hub holding `data.zip` (`THUDM/LongBench`),
    /// downloaded once into the hub cache (honours `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`).
    Hub {
        /// Repository id.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
    },
}

impl DataSource {
    /// The official repository: `THUDM/LongBench` at `main`.
    pub fn official_hub() -> Self {
        DataSource::Hub { repo: "THUDM/LongBench".into(), revision: "main".into() }
    }

    /// A local path: a `.zip` file or a directory.
    pub fn local(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) {
            DataSource::Zip(path)
        } else {
            DataSource::Dir(path)
        }
    }
}

/// The file name of a dataset in a suite (`qasper.jsonl`, `qasper_e.jsonl`).
pub fn file_name(spec: &DatasetSpec, suite: Suite) -> String {
    match suite {
        Suite::LongBench => format!("{}.jsonl", spec.name),
        Suite::LongBenchE => format!("{}_e.jsonl", spec.name),
    }
}

/// Loads every sample of a dataset, in file order. Checks that the dataset exists in the
/// suite; every malformed line is reported with its file and line number.
pub fn load(source: &DataSource, name: &str, suite: Suite) -> Result<Vec<Sample>> {
    let spec = match suite {
        Suite::LongBench => dataset(name)?,
        Suite::LongBenchE => dataset_e(name)?,
    };
    let file = file_name(spec, suite);
    match source {
        DataSource::Dir(dir) => {
            let path = [dir.join(&file), dir.join("data").join(&file)]
                .into_iter()
                .find(|p| p.is_file())
                .ok_or_else(|| Error::MissingDatasetFile { location: dir.display().to_string(), file: file.clone() })?;
            let reader = BufReader::new(fs_err::File::open(&path)?);
            parse_samples(reader, &path)
        }
        DataSource::Zip(zip) => load_from_zip(zip, &file),
        DataSource::Hub { repo, revision } => {
            load_from_zip(&hub_file(repo, revision, "data.zip", LONGBENCH_OFFLINE)?, &file)
        }
    }
}

fn load_from_zip(zip_path: &Path, file: &str) -> Result<Vec<Sample>> {
    #[cfg(feature = "hub")]
    {
        let mut archive = zip::ZipArchive::new(fs_err::File::open(zip_path)?).map_err(|e| Error::Parse {
            path: zip_path.to_path_buf(),
            line: 0,
            message: format!("not a readable zip archive: {e}"),
        })?;
        let member = format!("data/{file}");
        let name = [member.as_str(), file]
            .into_iter()
            .find(|n| archive.index_for_name(n).is_some())
            .ok_or_else(|| Error::MissingDatasetFile {
                location: zip_path.display().to_string(),
                file: member.clone(),
            })?
            .to_string();
        let mut entry = archive.by_name(&name).map_err(|e| Error::Parse {
            path: zip_path.to_path_buf(),
            line: 0,
            message: format!("cannot read {name}: {e}"),
        })?;
        let mut text = Vec::new();
        entry.read_to_end(&mut text)?;
        parse_samples(text.as_slice(), &zip_path.join(&name))
    }
    #[cfg(not(feature = "hub"))]
    {
        let _ = (zip_path, file);
        Err(Error::NotCompiledWith { feature: "hub" })
    }
}

/// What to do when LongBench's data.zip cannot be had from the hub.
const LONGBENCH_OFFLINE: &str =
    "download LongBench's data.zip elsewhere and pass its path (or the directory it unpacks to) as the data source";

/// Downloads (or finds in the cache) one file of a hub dataset repository; `offline` says what
/// to do instead when the hub cannot be reached.
pub(crate) fn hub_file(repo: &str, revision: &str, file: &str, offline: &'static str) -> Result<PathBuf> {
    #[cfg(feature = "hub")]
    {
        let hub_error =
            |message: String| Error::Hub { repo: repo.to_string(), file: file.to_string(), message, offline };
        let api = hf_hub::api::sync::ApiBuilder::from_env().build().map_err(|e| hub_error(e.to_string()))?;
        let repo_handle =
            api.repo(hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Dataset, revision.to_string()));
        repo_handle.get(file).map_err(|e| hub_error(e.to_string()))
    }
    #[cfg(not(feature = "hub"))]
    {
        let _ = (repo, revision, file, offline);
        Err(Error::NotCompiledWith { feature: "hub" })
    }
}

/// Parses official JSONL records; `path` names the source in errors.
pub fn parse_samples(reader: impl Read, path: &Path) -> Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|e| Error::Parse { path: path.to_path_buf(), line: i + 1, message: e.to_string() })?;
        if line.trim().is_empty() {
            continue;
        }
        let sample: Sample = serde_json::from_str(&line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not a LongBench record: {e}"),
        })?;
        samples.push(sample);
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_21_datasets_and_13_in_longbench_e() {
        assert_eq!(DATASETS.len(), 21);
        assert_eq!(DATASETS.iter().filter(|d| d.in_longbench_e).count(), 13);
        let skip: Vec<_> = DATASETS.iter().filter(|d| d.skip_chat_template).map(|d| d.name).collect();
        assert_eq!(skip, ["trec", "triviaqa", "samsum", "lsht", "lcc", "repobench-p"]);
        let first: Vec<_> = DATASETS.iter().filter(|d| d.first_line_only).map(|d| d.name).collect();
        assert_eq!(first, ["trec", "triviaqa", "samsum", "lsht"]);
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let err = dataset("hotpot_qa").unwrap_err().to_string();
        assert!(err.contains("did you mean `hotpotqa`"), "{err}");
        assert!(err.contains("narrativeqa, qasper"), "{err}");
        assert!(!dataset("zzzzzz").unwrap_err().to_string().contains("did you mean"));
        assert!(matches!(dataset_e("dureader"), Err(Error::NotInLongBenchE { .. })));
    }

    #[test]
    fn malformed_line_is_named() {
        let text = "{\"input\": \"q\", \"context\": \"c\", \"answers\": [\"a\"], \"length\": 3, \"dataset\": \"qasper\", \"language\": \"en\", \"all_classes\": null, \"_id\": \"x\"}\n{oops\n";
        let err = parse_samples(text.as_bytes(), Path::new("qasper.jsonl")).unwrap_err().to_string();
        assert!(err.starts_with("qasper.jsonl:2: not a LongBench record"), "{err}");
    }
}
