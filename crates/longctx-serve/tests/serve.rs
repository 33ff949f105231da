//! `longctx serve` end to end: a real server on 127.0.0.1 over SmolLM2-135M-Instruct (Q4_1
//! GGUF in `assets/`, fetched by `tools/fetch_assets.sh`) and all-MiniLM-L6-v2, called with
//! a blocking HTTP client and with longctx's own OpenAI client.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use longctx_backends::native::{NativeBackend, NativeOptions};
use longctx_backends::openai::{Endpoint, EndpointConfig, OpenAiBackend, OpenAiEmbedder};
use longctx_context::embed::SentenceEmbedder;
use longctx_core::{Backend, ChatMessage, Embedder, FinishReason, GenerationRequest, PromptInput};
use longctx_serve::{load_test, Fault, Faults, LoadTestArgs, Server, ServerConfig};
use serde_json::{json, Value};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

fn load(window: Option<usize>) -> NativeBackend {
    let path = assets().join("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(path.is_file(), "{} is missing: run tools/fetch_assets.sh", path.display());
    NativeBackend::load(&path, &NativeOptions { context_window: window, ..NativeOptions::default() }).unwrap()
}

fn backend() -> Arc<NativeBackend> {
    static BACKEND: OnceLock<Arc<NativeBackend>> = OnceLock::new();
    Arc::clone(BACKEND.get_or_init(|| Arc::new(load(None))))
}

fn start(config: ServerConfig) -> Server {
    Server::start(backend(), None, config).unwrap()
}

/// An HTTP answer, or `None` when the connection failed or broke before a complete answer.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

fn send(method: &str, url: &str, body: Option<&str>) -> Option<Answer> {
    // A fresh agent per request: no pooled connection outlives a test's server.
    let req = ureq::AgentBuilder::new().timeout(Duration::from_mins(5)).build().request(method, url);
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(_)) => return None,
    };
    let (status, retry_after) = (resp.status(), resp.header("Retry-After").map(str::to_string));
    let text = resp.into_string().ok()?;
    Some(Answer { status, retry_after, text })
}

fn post(server: &Server, path: &str, body: &Value) -> Answer {
    send("POST", &format!("{}{path}", server.url()), Some(&body.to_string())).expect("an answer")
}

fn chat_body(content: &str, max_tokens: usize) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0})
}

/// A prompt of a few hundred tokens, so that a request keeps the worker busy for a while.
fn long_prompt() -> String {
    "Summarize: the tide came in over the grey stones while gulls circled the harbour. ".repeat(30)
}

/// The `data:` payloads of a server-sent-events body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n").filter(|e| !e.is_empty()).map(|e| e.strip_prefix("data: ").expect(e).to_string()).collect()
}

#[test]
fn answers_equal_native_generation_streamed_or_not() {
    let server = start(ServerConfig::default());
    let backend = backend();
    let messages = vec![ChatMessage::new("user", "What is the capital of France? Answer in one sentence.")];
    let native = backend
        .generate(&GenerationRequest {
            prompt: PromptInput::Chat(messages.clone()),
            max_new_tokens: 24,
            stop: vec![],
            temperature: 0.0,
            seed: 0,
        })
        .unwrap();
    let body = json!({"model": "x", "messages": messages, "max_tokens": 24, "temperature": 0});
    let v = post(&server, "/v1/chat/completions", &body).json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], native.text.as_str());
    let finish = if native.finish_reason == FinishReason::Length { "length" } else { "stop" };
    assert_eq!(v["choices"][0]["finish_reason"], finish);
    assert_eq!(v["usage"]["prompt_tokens"], native.prompt_tokens);
    assert_eq!(v["usage"]["completion_tokens"], native.completion_tokens);
    assert_eq!(v["usage"]["total_tokens"], native.prompt_tokens + native.completion_tokens);

    // Streamed: a role chunk, content chunks, a finish chunk, a usage chunk, [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let answer = post(&server, "/v1/chat/completions", &streamed);
    assert_eq!(answer.status, 200);
    let data = events(&answer.text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, native.text);
    assert!(chunks.len() > 4, "the text came in pieces: {chunks:?}");
    let (last, usage) = (&chunks[chunks.len() - 2], &chunks[chunks.len() - 1]);
    assert_eq!(last["choices"][0]["finish_reason"], finish);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], native.completion_tokens);

    // Raw text with a stop string, streamed and not.
    let request = GenerationRequest {
        prompt: PromptInput::Text("The three primary colours are".into()),
        max_new_tokens: 20,
        stop: vec![".".into()],
        temperature: 0.0,
        seed: 0,
    };
    let native = backend.generate(&request).unwrap();
    let body = json!({"prompt": ["The three primary colours are"], "max_tokens": 20, "stop": ".", "temperature": 0});
    let v = post(&server, "/v1/completions", &body).json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], native.text.as_str());
    assert_eq!(v["usage"]["prompt_tokens"], native.prompt_tokens);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let data = events(&post(&server, "/v1/completions", &streamed).text);
    let text: String = data
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, native.text);

    // longctx's own OpenAI client gets what the native backend gives.
    let config = EndpointConfig {
        base_url: format!("{}/v1", server.url()),
        model: "smollm2".into(),
        api_key_env: None,
        max_retries: 0,
        ..EndpointConfig::default()
    };
    let client = OpenAiBackend::new(config, Endpoint::Auto, 1).unwrap();
    let over_http = client.generate(&request).unwrap();
    assert_eq!((over_http.text, over_http.completion_tokens), (native.text, native.completion_tokens));

    let models = send("GET", &format!("{}/v1/models", server.url()), None).unwrap().json();
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(models["data"][0]["max_model_len"], backend.window());
    let health = send("GET", &format!("{}/health", server.url()), None).unwrap().json();
    assert_eq!(
        health,
        json!({"status": "ok", "waiting": 0, "running": 0, "prefix_cache": {"hits": 0, "reused_tokens": 0}})
    );
    server.shutdown().unwrap();
}

#[test]
fn errors_have_openai_shape_and_status() {
    let server =
        start(ServerConfig { max_body_bytes: 2048, served_model_name: Some("tiny".into()), ..Default::default() });
    let url = server.url();
    let check = |answer: Option<Answer>, status: u16, code: &str| {
        let answer = answer.expect("an answer");
        assert_eq!(answer.status, status, "{}", answer.text);
        let v = answer.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["error"]["message"].as_str().unwrap().to_string()
    };
    let chat = format!("{url}/v1/chat/completions");
    check(send("POST", &chat, Some("{not json")), 400, "invalid_request");
    let m = check(send("POST", &chat, Some(r#"{"model": "m"}"#)), 400, "invalid_request");
    assert!(m.contains("messages"), "{m}");
    check(send("POST", &format!("{url}/v1/completions"), Some(r#"{"prompt": 3}"#)), 400, "invalid_request");
    check(send("GET", &format!("{url}/v1/nothing"), None), 404, "not_found");
    check(send("POST", &format!("{url}/v1/embeddings"), Some(r#"{"input": "x"}"#)), 404, "not_found");
    check(send("GET", &chat, None), 405, "method_not_allowed");
    let big = chat_body(&"word ".repeat(1000), 4).to_string();
    check(send("POST", &chat, Some(&big)), 413, "body_too_large");
    // A prompt that fits only without the requested tokens; the message gives the counts.
    let m = check(send("POST", &chat, Some(&chat_body("Hi", 1_000_000).to_string())), 400, "context_length_exceeded");
    assert!(m.contains("1000000 new tokens") && m.contains(&format!("window of {}", backend().window())), "{m}");
    let models = send("GET", &format!("{url}/v1/models"), None).unwrap().json();
    assert_eq!(models["data"][0]["id"], "tiny");
    server.shutdown().unwrap();
}

#[test]
fn a_small_window_rejects_long_prompts_and_bounds_default_max_tokens() {
    let server = Server::start(Arc::new(load(Some(64))), None, ServerConfig::default()).unwrap();
    let url = format!("{}/v1/chat/completions", server.url());
    let long = json!({"messages": [{"role": "user", "content": long_prompt()}], "temperature": 0});
    let answer = send("POST", &url, Some(&long.to_string())).unwrap();
    assert_eq!(answer.status, 400);
    let message = answer.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("window of 64"), "{message}");
    // Without max_tokens, a short prompt gets what the window leaves.
    let short = json!({"messages": [{"role": "user", "content": "Count: 1, 2, 3,"}], "temperature": 0});
    let v = send("POST", &url, Some(&short.to_string())).unwrap().json();
    let total = v["usage"]["total_tokens"].as_u64().unwrap();
    assert!(total <= 64 && v["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{v}");
    server.shutdown().unwrap();
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let server = start(ServerConfig { queue: 1, ..Default::default() });
    let n = 6;
    let barrier = Barrier::new(n);
    let body = chat_body(&long_prompt(), 24);
    let answers: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    post(&server, "/v1/chat/completions", &body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(ok + busy.len(), n, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    assert!(ok >= 1 && !busy.is_empty(), "{ok} answered, {} refused", busy.len());
    assert!(busy.iter().all(|a| a.retry_after.is_some() && a.json()["error"]["code"] == "queue_full"));
    server.shutdown().unwrap();
}

#[test]
fn injected_faults_fail_drop_and_delay() {
    let body = chat_body("Hi", 1);
    let server = start(ServerConfig { faults: Faults { error_500: 1.0, ..Faults::default() }, ..Default::default() });
    for _ in 0..3 {
        let answer = post(&server, "/v1/chat/completions", &body);
        assert_eq!((answer.status, answer.json()["error"]["type"].as_str()), (500, Some("server_error")));
    }
    assert_eq!(send("GET", &format!("{}/health", server.url()), None).unwrap().status, 200);
    server.shutdown().unwrap();

    let server = start(ServerConfig { faults: Faults { drop: 1.0, ..Faults::default() }, ..Default::default() });
    let url = format!("{}/v1/chat/completions", server.url());
    // The client gets no response at all: the connection closes before the status line.
    let err = ureq::post(&url).send_string(&body.to_string()).unwrap_err();
    assert!(matches!(err, ureq::Error::Transport(_)), "{err}");
    server.shutdown().unwrap();

    let faults = Faults { slow: 1.0, slow_s: 0.6, ..Faults::default() };
    let server = start(ServerConfig { faults, ..Default::default() });
    let t = Instant::now();
    assert_eq!(post(&server, "/v1/chat/completions", &body).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(600), "{:?}", t.elapsed());
    server.shutdown().unwrap();
}

#[test]
fn fault_patterns_repeat_with_the_seed() {
    let faults = Faults { error_500: 0.3, drop: 0.2, slow: 0.3, slow_s: 0.05, seed: 11 };
    let outcome = |fault: Option<Fault>| match fault {
        Some(Fault::Drop) => "drop",
        Some(Fault::Error500) => "500",
        Some(Fault::Slow(_)) | None => "200",
    };
    let expected: Vec<&str> = (0..16).map(|n| outcome(faults.fault_for(n))).collect();
    assert!(["drop", "500", "200"].iter().all(|k| expected.contains(k)), "{expected:?}");
    let observed = |server: &Server| -> Vec<&str> {
        let url = format!("{}/v1/completions", server.url());
        let body = json!({"prompt": "Hello there, my friend", "max_tokens": 1, "temperature": 0}).to_string();
        (0..16)
            .map(|_| match send("POST", &url, Some(&body)) {
                None => "drop",
                Some(a) if a.status == 500 && a.json()["error"]["message"] == "injected fault" => "500",
                Some(a) if a.status == 200 => "200",
                Some(a) => panic!("unexpected {}: {}", a.status, a.text),
            })
            .collect()
    };
    for _ in 0..2 {
        let server = start(ServerConfig { faults, ..Default::default() });
        assert_eq!(observed(&server), expected);
        server.shutdown().unwrap();
    }
}

#[test]
fn shutdown_finishes_the_requests_already_accepted() {
    let server = start(ServerConfig::default());
    let url = server.url();
    let body = chat_body(&long_prompt(), 24);
    std::thread::scope(|s| {
        let first = s.spawn(|| post(&server, "/v1/chat/completions", &body));
        std::thread::sleep(Duration::from_millis(50));
        let second = s.spawn(|| post(&server, "/v1/chat/completions", &body));
        // Wait until one request runs and the other waits.
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let h = send("GET", &format!("{url}/health"), None).unwrap().json();
            if h["running"] == 1 && h["waiting"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "the requests never ran: {h}");
            std::thread::sleep(Duration::from_millis(5));
        }
        server.begin_shutdown();
        std::thread::sleep(Duration::from_millis(50));
        // New requests are refused: no connection, or 503 on one that raced the listener.
        if let Some(a) = send("POST", &format!("{url}/v1/chat/completions"), Some(&body.to_string())) {
            assert_eq!(a.status, 503, "{}", a.text);
        }
        for request in [first, second] {
            let answer = request.join().unwrap();
            assert_eq!(answer.status, 200, "{}", answer.text);
            assert!(answer.json()["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        }
    });
    server.shutdown().unwrap();
    assert!(send("GET", &format!("{url}/health"), None).is_none());
}

/// Regression (issue 6): a client that timed out left its generation running to max_tokens,
/// so an HTTP backend's retry queued behind its own abandoned request.
#[test]
fn a_client_that_times_out_stops_its_generation() {
    let server = start(ServerConfig::default());
    // Counting rarely ends with an end-of-sequence token: 3000 tokens would take a minute.
    let body = json!({"model": "m", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 3000, "temperature": 0});
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(1)).build();
    let url = format!("{}/v1/completions", server.url());
    assert!(agent.post(&url).send_string(&body.to_string()).is_err(), "the request should time out");
    let start = Instant::now();
    loop {
        let health = send("GET", &format!("{}/health", server.url()), None).unwrap().json();
        if health["running"] == 0 && health["waiting"] == 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the abandoned generation is still running: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.shutdown().unwrap();
}

#[test]
fn a_client_leaving_mid_stream_does_not_wedge_the_worker() {
    let server = start(ServerConfig::default());
    let mut body = chat_body("Tell me a long story about a lighthouse keeper.", 64);
    body["stream"] = json!(true);
    let resp = ureq::post(&format!("{}/v1/chat/completions", server.url())).send_string(&body.to_string()).unwrap();
    let mut reader = resp.into_reader();
    let mut first = [0u8; 16];
    reader.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"data: "));
    drop(reader);
    // The abandoned generation stops and the worker serves the next request.
    let answer = post(&server, "/v1/chat/completions", &chat_body("Hi", 4));
    assert_eq!(answer.status, 200, "{}", answer.text);
    server.shutdown().unwrap();
}

#[test]
fn embeddings_equal_the_sentence_embedder() {
    let embedder = Arc::new(SentenceEmbedder::load(&assets().join("minilm")).unwrap());
    let server = Server::start(backend(), Some(Arc::clone(&embedder)), ServerConfig::default()).unwrap();
    let texts = ["The sea is calm tonight.", "Quantized matrix multiplication", "x"];
    let want = embedder.embed(&texts).unwrap().vectors;
    let v = post(&server, "/v1/embeddings", &json!({"model": "minilm", "input": texts})).json();
    assert_eq!((v["object"].as_str(), v["model"].as_str()), (Some("list"), Some("minilm")));
    let tokens: usize = texts.iter().map(|t| embedder.token_ids(t).unwrap().len()).sum();
    assert_eq!(v["usage"]["prompt_tokens"], tokens);
    for (i, want) in want.iter().enumerate() {
        let item = &v["data"][i];
        assert_eq!(item["index"], i);
        let got: Vec<f32> = item["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(&got, want, "text {i}");
    }
    let one = post(&server, "/v1/embeddings", &json!({"input": texts[0]})).json();
    assert_eq!(one["data"].as_array().unwrap().len(), 1);
    // longctx's OpenAI embedder reads the same vectors.
    let config = EndpointConfig {
        base_url: server.url(),
        model: "minilm".into(),
        api_key_env: None,
        ..EndpointConfig::default()
    };
    let over_http = OpenAiEmbedder::new(config).unwrap().embed(&texts).unwrap().vectors;
    for (a, b) in over_http.iter().zip(&want) {
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6));
    }
    server.shutdown().unwrap();
}

#[test]
fn the_load_test_reports_sane_numbers() {
    let server = start(ServerConfig::default());
    let args = LoadTestArgs {
        url: server.url(),
        clients: vec![1, 3],
        requests: 6,
        max_tokens: 4,
        prompt: "Say hello.".into(),
        model: None,
        timeout_s: 120.0,
        json: false,
    };
    let report = load_test(&args).unwrap();
    assert_eq!(report.model, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(report.errors(), 0, "{report}");
    for level in &report.levels {
        assert_eq!((level.requests, level.ok), (6, 6));
        assert!(level.requests_per_s > 0.0 && level.completion_tokens_per_s > 0.0, "{report}");
        let l = &level.latency;
        assert!(0.0 < l.p50_ms && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms, "{report}");
    }
    assert_eq!(report.levels.iter().map(|l| l.clients).collect::<Vec<_>>(), [1, 3]);
    assert!(report.to_string().lines().count() == 4);
    server.shutdown().unwrap();
}

/// Continuous batching: eight clients at once (different prompts and lengths, half of them
/// streamed, one with a stop string) are decoded together — `/health` sees several running —
/// and each answer equals the native backend's generation for that request alone.
#[test]
fn concurrent_requests_are_batched_and_answer_as_alone() {
    let server = start(ServerConfig::default());
    let backend = backend();
    let questions = [
        "What is the capital of France?",
        "Name three colours.",
        "Count from one to five.",
        "What do bees make?",
        "Write a short greeting.",
        "Why is the sky blue? Answer briefly.",
        "What is two plus two?",
        "Say something about the sea.",
    ];
    let requests: Vec<GenerationRequest> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| GenerationRequest {
            prompt: PromptInput::Chat(vec![ChatMessage::new("user", *q)]),
            max_new_tokens: 8 + 2 * i,
            stop: if i == 3 { vec!["honey".into()] } else { vec![] },
            temperature: 0.0,
            seed: 0,
        })
        .collect();
    let alone: Vec<String> = requests.iter().map(|r| backend.generate(r).unwrap().text).collect();
    let url = server.url();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (url, peak, done) = (url.clone(), Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(a) = send("GET", &format!("{url}/health"), None) {
                    let running = a.json()["running"].as_u64().unwrap_or(0);
                    peak.fetch_max(running, std::sync::atomic::Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let barrier = Arc::new(Barrier::new(requests.len()));
    let handles: Vec<_> = requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let PromptInput::Chat(messages) = &r.prompt else { unreachable!() };
            let mut body =
                json!({"model": "x", "messages": messages, "max_tokens": r.max_new_tokens, "temperature": 0});
            if !r.stop.is_empty() {
                body["stop"] = json!(r.stop);
            }
            if i % 2 == 1 {
                body["stream"] = json!(true);
            }
            let (url, barrier) = (url.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let a = send("POST", &format!("{url}/v1/chat/completions"), Some(&body.to_string())).unwrap();
                assert_eq!(a.status, 200, "{}", a.text);
                if i % 2 == 1 {
                    let data = events(&a.text);
                    data[..data.len() - 1]
                        .iter()
                        .filter_map(|e| {
                            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                                .as_str()
                                .map(str::to_string)
                        })
                        .collect::<String>()
                } else {
                    a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string()
                }
            })
        })
        .collect();
    let answers: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap();
    assert_eq!(answers, alone);
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(peak >= 2, "the requests were never decoded together (peak running {peak})");
}

/// With the prefix cache on, a repeated prompt and a chat's next turn start from the KV cache
/// of the earlier request (the stats count the reused tokens) and answer exactly as a fresh
/// generation does.
#[test]
fn shared_prompt_prefixes_are_reused_and_answers_stay_the_same() {
    let backend = Arc::new(load(None));
    backend.set_prefix_cache_bytes(64 << 20);
    let server = Server::start(Arc::clone(&backend), None, ServerConfig::default()).unwrap();
    let url = server.url();
    let ask = |messages: &[ChatMessage], max_tokens: usize| -> String {
        let body = json!({"model": "x", "messages": messages, "max_tokens": max_tokens, "temperature": 0});
        let a = send("POST", &format!("{url}/v1/chat/completions"), Some(&body.to_string())).unwrap();
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string()
    };
    let fresh = |messages: &[ChatMessage], max_tokens: usize| -> String {
        let r = GenerationRequest {
            prompt: PromptInput::Chat(messages.to_vec()),
            max_new_tokens: max_tokens,
            stop: vec![],
            temperature: 0.0,
            seed: 0,
        };
        backend.generate(&r).unwrap().text
    };
    let first = vec![ChatMessage::new("user", "Name three animals that live in the sea.")];
    let answer = ask(&first, 12);
    assert_eq!(answer, fresh(&first, 12));
    assert_eq!(backend.prefix_cache_stats().hits, 0);
    // The same prompt again: all but its last token come from the cache.
    assert_eq!(ask(&first, 12), answer);
    let stats = backend.prefix_cache_stats();
    assert_eq!(stats.hits, 1);
    assert!(stats.reused_tokens >= 10, "{stats:?}");
    // The next turn of the chat shares the first prompt and (part of) the answer.
    let mut second = first.clone();
    second.push(ChatMessage::new("assistant", &answer));
    second.push(ChatMessage::new("user", "Which of them is the largest?"));
    let reply = ask(&second, 10);
    assert_eq!(reply, fresh(&second, 10));
    let after = backend.prefix_cache_stats();
    assert_eq!(after.hits, 2);
    let health = send("GET", &format!("{url}/health"), None).unwrap().json();
    assert_eq!(health["prefix_cache"]["hits"], 2);
    assert_eq!(health["prefix_cache"]["reused_tokens"], after.reused_tokens);
    assert!(after.reused_tokens - stats.reused_tokens >= stats.reused_tokens, "{after:?}");
    // Off: nothing is kept or reused.
    backend.set_prefix_cache_bytes(0);
    assert_eq!(ask(&first, 12), answer);
    assert_eq!(backend.prefix_cache_stats().hits, 2);
}
