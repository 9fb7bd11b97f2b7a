//! Loopback load test of the admission server: the real server (in this process) on a free
//! port, TLS with keep-alive, the Spark executor fixture defaulted as the API server sends it.
//! Prints admissions/second and latency percentiles.
//!
//!   cargo bench --bench server_load
//!
//! Knobs (environment): BENCH_CONNECTIONS (default 8), BENCH_SECONDS (default 5, at most 60).
//! Client and server share the machine, so the figures are a lower bound for the server.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::server::*;
use hyper::StatusCode;

// The same allocator as the binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_num(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. a filter) is ignored.
    let connections = env_num("BENCH_CONNECTIONS", 8, 256) as usize;
    let seconds = env_num("BENCH_SECONDS", 5, 60);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let s = TestServer::start("bench", &[("policies.yaml", TEST_POLICIES)], |_, _| {}).await;
        let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
        let body = json_bytes(&admission_review("bench", "CREATE", Some(&pod), false));
        // Warm-up and sanity check: the executor is patched.
        let r = s
            .review(&admission_review("warm", "CREATE", Some(&pod), false))
            .await;
        assert!(r["patch"].is_string(), "the bench pod must be patched: {r}");

        let until = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = vec![];
        for _ in 0..connections {
            let (addr, client, body) = (s.addr, s.client.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = H1::connect(addr, client).await.unwrap();
                let mut latencies = Vec::with_capacity(100_000);
                while Instant::now() < until {
                    let t = Instant::now();
                    let answer = conn
                        .post(
                            "/mutate?timeout=10s",
                            Some("application/json"),
                            body.clone(),
                        )
                        .await
                        .unwrap();
                    latencies.push(t.elapsed());
                    assert_eq!(answer.status, StatusCode::OK);
                }
                latencies
            }));
        }
        let mut all = vec![];
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed();
        all.sort();
        let server_p = |q: &str| {
            let s = &s;
            let q = q.to_string();
            async move { s.metric(&q).await }
        };
        let count =
            server_p("spark_admission_admissions_total{outcome=\"patched\",role=\"executor\"}")
                .await;
        let sum = server_p("spark_admission_admission_duration_seconds_sum").await;
        println!(
            "server_load: {} requests over {} keep-alive TLS connections in {:.2}s",
            all.len(),
            connections,
            elapsed.as_secs_f64()
        );
        println!(
            "  throughput: {:.0} admissions/s (client and server on the same {} cores)",
            all.len() as f64 / elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "  latency (client, request to full answer): p50 {:?}  p90 {:?}  p99 {:?}  max {:?}",
            percentile(&all, 0.50),
            percentile(&all, 0.90),
            percentile(&all, 0.99),
            all[all.len() - 1]
        );
        if count > 0.0 {
            println!(
                "  server-side mean time in /mutate (from its histogram): {:.1} µs",
                sum / count * 1e6
            );
        }
        println!("  body: {} bytes per AdmissionReview", body.len());
        // The same work without TLS/HTTP: envelope parse + engine + patch + response JSON.
        let policies = s.server.as_ref().unwrap().state.policies.current().unwrap();
        let rounds = 2000;
        let t = Instant::now();
        for _ in 0..rounds {
            let reply = spark_admission::admission::review(
                &policies,
                &spark_admission::admission::NoNamespaces,
                &body,
            );
            assert_eq!(reply.http_status, 200);
        }
        println!(
            "  admission::review alone (no TLS/HTTP): {:.1} µs per request",
            t.elapsed().as_secs_f64() / rounds as f64 * 1e6
        );
        s.stop().await;
    });
}
