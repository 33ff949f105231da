//! Unpacks jieba's dictionary and HMM tables (committed gzipped under `data/jieba/`) into
//! `OUT_DIR` in the form the library embeds: the HMM as text, and the dictionary as the
//! concatenated words (`jieba_words.txt`, sorted by bytes) plus an index of little-endian
//! `u32` pairs (start offset of each word, its frequency; `jieba_index.bin`), so that the
//! segmenter starts without parsing or hashing 349k lines.

use std::io::Read;
use std::path::Path;

fn gunzip(src: &str) -> String {
    println!("cargo:rerun-if-changed={src}");
    let gz = std::fs::read(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut text).unwrap_or_else(|e| panic!("{src}: {e}"));
    text
}

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    std::fs::write(out.join("jieba_hmm.tsv"), gunzip("data/jieba/hmm.tsv.gz")).expect("writes OUT_DIR");

    let dict = gunzip("data/jieba/dict.txt.gz");
    let mut lines = dict.lines();
    let total = lines.next().and_then(|l| l.strip_prefix("total ")).expect("dictionary starts with `total N`");
    let mut words = String::new();
    let mut index = Vec::new();
    let mut previous = "";
    for line in lines {
        let (word, freq) = line.rsplit_once(' ').expect("dictionary line is `word freq`");
        assert!(previous < word, "dictionary is sorted by bytes and distinct at {word:?}");
        previous = word;
        let freq: u32 = freq.parse().expect("frequency fits in u32");
        let start = u32::try_from(words.len()).expect("dictionary under 4 GiB");
        index.extend_from_slice(&start.to_le_bytes());
        index.extend_from_slice(&freq.to_le_bytes());
        words.push_str(word);
    }
    std::fs::write(out.join("jieba_words.txt"), words).expect("writes OUT_DIR");
    std::fs::write(out.join("jieba_index.bin"), index).expect("writes OUT_DIR");
    std::fs::write(out.join("jieba_total.txt"), total).expect("writes OUT_DIR");
}
