//! A bounded load test of an OpenAI-compatible server: per level, `clients` threads share a
//! fixed number of identical greedy chat requests; requests per second and latency
//! percentiles of the successful ones are reported, failures are counted by kind.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::args::LoadTestArgs;
use crate::Error;

const MAX_CLIENTS: usize = 256;
const MAX_REQUESTS: usize = 10_000;

/// Latency percentiles of the successful requests of a level, in milliseconds (nearest rank).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// One level of concurrency.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelReport {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests sent.
    pub requests: usize,
    /// Requests answered 200 with a completion.
    pub ok: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Failures by kind (`HTTP 429`, `transport`, `bad answer`).
    pub error_kinds: BTreeMap<String, usize>,
    /// Seconds from the first request to the last answer.
    pub wall_s: f64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Generated tokens per second (from the answers' usage).
    pub completion_tokens_per_s: f64,
    /// Latency of the successful requests.
    pub latency: Latency,
}

/// What [`load_test`] measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// The server.
    pub url: String,
    /// The model name sent.
    pub model: String,
    /// max_tokens of each request.
    pub max_tokens: usize,
    /// One entry per level, in the order given.
    pub levels: Vec<LevelReport>,
}

impl LoadReport {
    /// Failed requests over all levels.
    pub fn errors(&self) -> usize {
        self.levels.iter().map(|l| l.errors).sum()
    }
}

/// A table, one row per level.
impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} ({}, max_tokens {})", self.url, self.model, self.max_tokens)?;
        writeln!(
            f,
            "{:>7} {:>8} {:>6} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "clients", "requests", "errors", "req/s", "tok/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        )?;
        for l in &self.levels {
            writeln!(
                f,
                "{:>7} {:>8} {:>6} {:>8.2} {:>8.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                l.clients,
                l.requests,
                l.errors,
                l.requests_per_s,
                l.completion_tokens_per_s,
                l.latency.p50_ms,
                l.latency.p90_ms,
                l.latency.p99_ms,
                l.latency.max_ms
            )?;
        }
        Ok(())
    }
}

fn base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    url.strip_suffix("/v1").unwrap_or(url).to_string()
}

/// One request: its completion tokens, or the kind of its failure.
fn request(agent: &ureq::Agent, url: &str, body: &str) -> Result<u64, String> {
    match agent.post(url).set("Content-Type", "application/json").send_string(body) {
        Ok(resp) => {
            let v: Value = resp.into_string().ok().and_then(|t| serde_json::from_str(&t).ok()).ok_or("bad answer")?;
            if v["choices"][0]["message"]["content"].is_string() {
                Ok(v["usage"]["completion_tokens"].as_u64().unwrap_or(0))
            } else {
                Err("bad answer".into())
            }
        }
        Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code}")),
        Err(ureq::Error::Transport(_)) => Err("transport".into()),
    }
}

/// Runs the levels of `args` one after the other against `args.url` (after one warm-up
/// request, which must succeed) and reports each.
pub fn load_test(args: &LoadTestArgs) -> Result<LoadReport, Error> {
    if args.clients.is_empty() || args.clients.iter().any(|&c| c == 0 || c > MAX_CLIENTS) {
        return Err(Error::Config(format!("--clients must be between 1 and {MAX_CLIENTS}")));
    }
    if args.requests == 0 || args.requests > MAX_REQUESTS {
        return Err(Error::Config(format!("--requests must be between 1 and {MAX_REQUESTS}")));
    }
    let base = base(&args.url);
    let timeout = Duration::from_secs_f64(args.timeout_s.max(0.001));
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let model = match &args.model {
        Some(m) => m.clone(),
        None => agent
            .get(&format!("{base}/v1/models"))
            .call()
            .map_err(|e| Error::LoadTest(format!("{base}/v1/models: {e}")))?
            .into_json::<Value>()
            .ok()
            .and_then(|v| v["data"][0]["id"].as_str().map(str::to_string))
            .ok_or_else(|| Error::LoadTest(format!("{base}/v1/models lists no model")))?,
    };
    let url = format!("{base}/v1/chat/completions");
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": args.prompt}],
        "max_tokens": args.max_tokens,
        "temperature": 0,
    })
    .to_string();
    request(&agent, &url, &body).map_err(|e| Error::LoadTest(format!("{url}: the warm-up request failed: {e}")))?;

    let mut levels = Vec::with_capacity(args.clients.len());
    for &clients in &args.clients {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(f64, Result<u64, String>)>> = Mutex::new(Vec::with_capacity(args.requests));
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..clients {
                s.spawn(|| {
                    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
                    while next.fetch_add(1, Ordering::SeqCst) < args.requests {
                        let t = Instant::now();
                        let r = request(&agent, &url, &body);
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        results.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((ms, r));
                    }
                });
            }
        });
        let wall_s = start.elapsed().as_secs_f64();
        let results = results.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut ms, mut tokens, mut error_kinds) = (Vec::new(), 0, BTreeMap::new());
        for (t, r) in results {
            match r {
                Ok(n) => {
                    ms.push(t);
                    tokens += n;
                }
                Err(kind) => *error_kinds.entry(kind).or_insert(0) += 1,
            }
        }
        let ok = ms.len();
        let level = LevelReport {
            clients,
            requests: args.requests,
            ok,
            errors: args.requests - ok,
            error_kinds,
            wall_s,
            requests_per_s: ok as f64 / wall_s,
            completion_tokens_per_s: tokens as f64 / wall_s,
            latency: Latency::of(ms),
        };
        tracing::info!(
            "{clients} clients: {:.2} req/s, p50 {:.0} ms, p99 {:.0} ms, {} errors",
            level.requests_per_s,
            level.latency.p50_ms,
            level.latency.p99_ms,
            level.errors
        );
        levels.push(level);
    }
    Ok(LoadReport { url: base, model, max_tokens: args.max_tokens, levels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let l = Latency::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms), (50.0, 90.0, 99.0, 100.0, 50.5));
        let one = Latency::of(vec![7.0]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Latency::of(Vec::new()), Latency::default());
    }

    #[test]
    fn bad_arguments_and_dead_servers_are_errors() {
        let args = LoadTestArgs {
            url: "http://127.0.0.1:9".into(),
            clients: vec![1],
            requests: 1,
            max_tokens: 1,
            prompt: "x".into(),
            model: Some("m".into()),
            timeout_s: 2.0,
            json: false,
        };
        assert!(matches!(load_test(&LoadTestArgs { clients: vec![0], ..args.clone() }), Err(Error::Config(_))));
        assert!(matches!(load_test(&LoadTestArgs { requests: 0, ..args.clone() }), Err(Error::Config(_))));
        assert!(matches!(load_test(&args), Err(Error::LoadTest(_))));
    }
}
