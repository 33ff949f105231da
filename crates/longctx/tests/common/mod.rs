//! Helpers shared by the CLI tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

/// Serves each `(path, body)` the way the hub does for hf-hub (ranged GETs with `etag`,
/// `x-repo-commit`, `content-range`), 404 elsewhere, on a loopback port; stops after
/// `connections` connections.
pub(crate) fn serve(files: Vec<(String, Vec<u8>)>, connections: usize) -> u16 {
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
            // hf-hub stores files by etag, so each file gets its own.
            let response = if let Some((etag, (_, body))) = files.iter().enumerate().find(|(_, (p, _))| p == path) {
                let end = range_end.unwrap_or(body.len() - 1).min(body.len() - 1);
                let part = &body[range_start..=end];
                let mut head = format!(
                    "HTTP/1.1 206 Partial Content\r\netag: \"etag{etag}\"\r\nx-repo-commit: 0123456789abcdef0123456789abcdef01234567\r\ncontent-range: bytes {range_start}-{end}/{}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
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
