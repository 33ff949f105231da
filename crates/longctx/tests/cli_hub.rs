//! `--data hub`: LongBench's data.zip through hf-hub, against a minimal local stand-in for the
//! Hugging Face hub (loopback only, a bounded number of connections).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// A data.zip holding `data/qasper.jsonl` (the real qasper record) and `data/qasper_e.jsonl`.
fn data_zip() -> Vec<u8> {
    let record = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/longbench-sample/qasper.jsonl"))
        .expect("shipped sample");
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for name in ["data/qasper.jsonl", "data/qasper_e.jsonl"] {
        zip.start_file(name, options).unwrap();
        zip.write_all(&record).unwrap();
        zip.write_all(&record).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// Serves `body` at `/datasets/THUDM/LongBench/resolve/main/data.zip` the way the hub does
/// for hf-hub (ranged GETs with `etag`, `x-repo-commit`, `content-range`); 404 elsewhere.
fn serve(body: Vec<u8>, connections: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut range_start = 0usize;
            let mut range_end = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = r.trim().split_once('-').unwrap();
                    range_start = a.parse().unwrap();
                    range_end = b.parse::<usize>().ok();
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let response = if path == "/datasets/THUDM/LongBench/resolve/main/data.zip" {
                let end = range_end.unwrap_or(body.len() - 1).min(body.len() - 1);
                let part = &body[range_start..=end];
                let mut head = format!(
                    "HTTP/1.1 206 Partial Content\r\netag: \"abc123\"\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\ncontent-range: bytes {range_start}-{end}/{}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len(),
                    part.len()
                )
                .into_bytes();
                head.extend_from_slice(part);
                head
            } else {
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    port
}

#[test]
fn loads_longbench_and_longbench_e_from_the_hub() {
    let port = serve(data_zip(), 16);
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_longctx"))
            .args(args)
            .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
            .env("HF_HOME", home.path())
            .output()
            .unwrap()
    };
    let out = run(&["datasets", "qasper", "--data", "hub"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("qasper: 2 samples"), "{text}");
    // The second load reads the cached archive (LongBench-E member this time).
    let out = run(&["datasets", "qasper", "--data", "hub", "--longbench-e"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8(out.stdout).unwrap().contains("qasper: 2 samples"));
    // A dataset that the archive lacks is named.
    let out = run(&["datasets", "trec", "--data", "hub"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data/trec.jsonl"), "{err}");
}
