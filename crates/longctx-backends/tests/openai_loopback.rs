//! The OpenAI-compatible embeddings and chat clients, and the LLM reranker, against a small
//! scripted server on 127.0.0.1: answers, retries on 500/429/timeouts/dropped connections,
//! no retry on 400, the API key header, usage and cost.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longctx_backends::openai::{EndpointConfig, OpenAiChat, OpenAiEmbedder};
use longctx_context::rerank::LlmReranker;
use longctx_core::{ChatMessage, ChatModel, Embedder, Reranker};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
enum Fault {
    Status(u16),
    Slow(u64),
    Drop,
}

#[derive(Default)]
struct Log {
    requests: Vec<(String, Option<String>, Value)>,
}

struct Server {
    url: String,
    log: Arc<Mutex<Log>>,
}

fn read_request(stream: &mut TcpStream) -> Option<(String, Option<String>, Value)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let (mut len, mut auth) = (0, None);
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((path, auth, serde_json::from_slice(&body).ok()?))
}

/// Embeds a text as (characters, 'a's, 1) and scores passage `[i]` by its count of 'a'.
fn answer(path: &str, body: &Value) -> Value {
    if path.ends_with("/embeddings") {
        let input: Vec<&str> = body["input"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        // Items in reverse order: the client must sort by `index`.
        let data: Vec<Value> = input
            .iter()
            .enumerate()
            .rev()
            .map(|(i, t)| {
                let a = t.chars().filter(|&c| c == 'a').count();
                json!({"index": i, "embedding": [t.chars().count() as f64, a as f64, 1.0]})
            })
            .collect();
        let tokens: usize = input.iter().map(|t| t.split_whitespace().count()).sum();
        json!({"data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
    } else {
        let user = body["messages"][1]["content"].as_str().unwrap();
        let reply: Vec<String> = user
            .lines()
            .filter(|l| l.starts_with('['))
            .map(|l| {
                let (id, text) = l.split_once(']').unwrap();
                format!("{id}] {}", text.chars().filter(|&c| c == 'a').count())
            })
            .collect();
        json!({
            "choices": [{"message": {"role": "assistant", "content": reply.join("\n")}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10}
        })
    }
}

fn serve(faults: Vec<Fault>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut faults = faults.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some((path, auth, body)) = read_request(&mut stream) else { continue };
            log2.lock().unwrap().requests.push((path.clone(), auth, body.clone()));
            let fault = faults.next();
            // One thread per request, so a slow answer does not hold up the retry.
            std::thread::spawn(move || {
                let (status, text) = match fault {
                    Some(Fault::Drop) => return,
                    Some(Fault::Status(code)) => (code, "{\"error\": \"injected\"}".to_string()),
                    Some(Fault::Slow(ms)) => {
                        std::thread::sleep(Duration::from_millis(ms));
                        (200, answer(&path, &body).to_string())
                    }
                    None => (200, answer(&path, &body).to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            });
        }
    });
    Server { url, log }
}

fn config(url: &str) -> EndpointConfig {
    EndpointConfig {
        base_url: format!("{url}/v1"),
        model: "test-embed".into(),
        api_key_env: Some("LONGCTX_TEST_KEY".into()),
        timeout_s: 0.5,
        max_retries: 4,
        backoff_s: 0.01,
        usd_per_m_input: 20.0,
        usd_per_m_output: 60.0,
        usd_per_request: 0.25,
        batch_size: 2,
    }
}

#[test]
fn embeddings_retry_sort_normalize_and_cost() {
    std::env::set_var("LONGCTX_TEST_KEY", "sk-test");
    let server = serve(vec![Fault::Status(500), Fault::Status(429), Fault::Drop, Fault::Slow(1500)]);
    let embedder = OpenAiEmbedder::new(config(&server.url)).unwrap();
    let e = embedder.embed(&["a a", "bbb", "aaa x"]).unwrap();
    assert_eq!(e.vectors.len(), 3);
    for (v, t) in e.vectors.iter().zip(["a a", "bbb", "aaa x"]) {
        let raw = [t.chars().count() as f32, t.chars().filter(|&c| c == 'a').count() as f32, 1.0];
        let n = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
        for (a, b) in v.iter().zip(raw) {
            assert!((a - b / n).abs() < 1e-6, "{t}: {v:?}");
        }
    }
    // 2 batches; the first took 5 attempts (500, 429, dropped, timed out, answered).
    assert_eq!(e.usage.requests, 6);
    assert_eq!(e.usage.prompt_tokens, 2 + 1 + 2);
    // Every attempt is a request billed at $0.25.
    assert!((e.usage.cost_usd - (5.0 * 20.0 / 1e6 + 6.0 * 0.25)).abs() < 1e-12);
    let log = server.log.lock().unwrap();
    assert_eq!(log.requests.len(), 6);
    assert!(log.requests.iter().all(|(p, auth, _)| p == "/v1/embeddings" && auth.as_deref() == Some("Bearer sk-test")));
    assert_eq!(log.requests[0].2["input"], json!(["a a", "bbb"]));
}

#[test]
fn client_errors_are_not_retried_and_give_up_is_reported() {
    std::env::set_var("LONGCTX_TEST_KEY", "sk-test");
    let server = serve(vec![Fault::Status(400)]);
    let err = OpenAiEmbedder::new(config(&server.url)).unwrap().embed(&["x"]).unwrap_err();
    assert!(err.to_string().contains("HTTP 400"), "{err}");
    assert_eq!(server.log.lock().unwrap().requests.len(), 1);

    let server = serve(vec![Fault::Status(503); 10]);
    let mut cfg = config(&server.url);
    cfg.max_retries = 2;
    let err = OpenAiEmbedder::new(cfg).unwrap().embed(&["x"]).unwrap_err();
    assert!(err.to_string().contains("gave up after 3 attempts"), "{err}");

    let mut cfg = config(&server.url);
    cfg.api_key_env = Some("LONGCTX_TEST_KEY_THAT_IS_NOT_SET".into());
    let err = OpenAiEmbedder::new(cfg).unwrap_err();
    assert!(err.to_string().contains("LONGCTX_TEST_KEY_THAT_IS_NOT_SET"), "{err}");
    assert!(!format!("{:?}", OpenAiChat::new(config(&server.url)).unwrap()).contains("sk-test"));
}

#[test]
fn llm_reranker_scores_through_chat_with_cost() {
    std::env::set_var("LONGCTX_TEST_KEY", "sk-test");
    let server = serve(vec![Fault::Status(502)]);
    let mut cfg = config(&server.url);
    cfg.model = "judge".into();
    let chat = Arc::new(OpenAiChat::new(cfg).unwrap());
    let reply = chat.chat(&[ChatMessage::new("system", "s"), ChatMessage::new("user", "[0] aa")], 8).unwrap();
    assert_eq!(reply.text, "[0] 2");
    let mut reranker = LlmReranker::new(chat);
    reranker.batch = 2;
    let s = reranker.rerank("which has a?", &["xa", "aaa\nb", "none"]).unwrap();
    assert_eq!(s.scores, [1.0, 3.0, 0.0]);
    // Two requests (batches of 2), 100 + 10 tokens each.
    assert_eq!((s.usage.prompt_tokens, s.usage.completion_tokens, s.usage.requests), (200, 20, 2));
    assert!((s.usage.cost_usd - ((200.0 * 20.0 + 20.0 * 60.0) / 1e6 + 2.0 * 0.25)).abs() < 1e-12);
    let log = server.log.lock().unwrap();
    let last = &log.requests.last().unwrap().2;
    assert_eq!(last["model"], "judge");
    assert_eq!(last["temperature"], 0);
    assert!(last["messages"][1]["content"].as_str().unwrap().contains("Query: which has a?"));
}
