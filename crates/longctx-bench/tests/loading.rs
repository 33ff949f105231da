//! Loading the official LongBench files: the real records of tests/data/longbench (the first
//! 20 lines of each reference file, byte for byte), a data.zip, LongBench-E names, and errors
//! that name the file and line.

use std::path::{Path, PathBuf};

use longctx_bench::dataset::{load, DataSource, Suite};
use longctx_bench::prompt;
use longctx_bench::Error;

fn records() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/longbench");
    assert!(p.is_dir(), "the LongBench test records are expected at {}", p.display());
    p
}

#[test]
fn loads_every_real_record() {
    let source = DataSource::local(records());
    for (name, n) in
        [("multi_news", 20), ("multifieldqa_zh", 20), ("passage_retrieval_zh", 20), ("qasper", 1), ("trec", 1)]
    {
        let samples = load(&source, name, Suite::LongBench).unwrap();
        assert_eq!(samples.len(), n, "{name}");
        let spec = longctx_bench::dataset::dataset(name).unwrap();
        for s in &samples {
            assert_eq!(s.dataset, name);
            assert_eq!(s.id.len(), 48);
            assert!(!s.answers.is_empty());
            assert_eq!(s.language, spec.language, "{name} {}", s.id);
            // The official template fills in one pass and keeps the whole context.
            let text = prompt::fill(prompt::template(spec), s, name).unwrap();
            assert!(text.contains(&s.context));
        }
    }
    let trec = load(&source, "trec", Suite::LongBench).unwrap();
    assert_eq!(trec[0].all_classes.as_ref().map(Vec::len), Some(50));
}

#[test]
fn loads_from_a_data_zip_and_longbench_e_names() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("data.zip");
    let record = std::fs::read(records().join("qasper.jsonl")).unwrap();
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("data/qasper_e.jsonl", options).unwrap();
        std::io::Write::write_all(&mut zip, &record).unwrap();
        zip.finish().unwrap();
    }
    let source = DataSource::local(&zip_path);
    assert_eq!(source, DataSource::Zip(zip_path.clone()));
    assert_eq!(load(&source, "qasper", Suite::LongBenchE).unwrap().len(), 1);
    let err = load(&source, "qasper", Suite::LongBench).unwrap_err();
    assert!(matches!(err, Error::MissingDatasetFile { .. }), "{err}");
    assert!(err.to_string().contains("data/qasper.jsonl"), "{err}");
    // LongBench-E has 13 datasets only.
    let err = load(&source, "dureader", Suite::LongBenchE).unwrap_err();
    assert!(err.to_string().contains("not part of LongBench-E"), "{err}");
}

#[test]
fn a_data_dir_may_hold_a_data_folder_and_bad_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let good = std::fs::read_to_string(records().join("trec.jsonl")).unwrap();
    std::fs::write(dir.path().join("data/trec.jsonl"), format!("{good}{{\"input\": 1}}\n")).unwrap();
    let err = load(&DataSource::local(dir.path()), "trec", Suite::LongBench).unwrap_err().to_string();
    assert!(err.contains("trec.jsonl:2: not a LongBench record"), "{err}");
    let err = load(&DataSource::local(dir.path()), "trek", Suite::LongBench).unwrap_err().to_string();
    assert!(err.contains("did you mean `trec`"), "{err}");
}
