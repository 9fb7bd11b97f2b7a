//! The server stays bounded whatever clients do: overflowing timeouts, a panicking engine,
//! hostile pods, idle and half-sent connections, a full TLS port, many connections. (Its
//! speed and memory are measured by `benches/`, not asserted here.)

mod common;

use std::time::{Duration, Instant};

use common::server::*;
use hyper::StatusCode;
use serde_json::Value;
use spark_admission::admission::{self, Reply};
use spark_admission::PolicySet;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn server(
    name: &str,
    tweak: impl FnOnce(&mut spark_admission::server::Config),
) -> TestServer {
    TestServer::start(name, &[("policies.yaml", TEST_POLICIES)], |c, _| tweak(c)).await
}

fn executor_review(uid: &str) -> Vec<u8> {
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    json_bytes(&admission_review(uid, "CREATE", Some(&pod), false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_out_of_range_is_answered_400_with_the_reason() {
    let s = server("timeout-range", |_| {}).await;
    let mut conn = s.connect().await;
    for timeout in ["1e19", "99999999999h", "0s", "31s", "-1s"] {
        let a = conn
            .post(
                &format!("/mutate?timeout={timeout}"),
                Some("application/json"),
                executor_review("t"),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{timeout}: {}", a.text());
        assert!(
            a.text().contains("invalid ?timeout= query"),
            "{timeout}: {}",
            a.text()
        );
    }
    // The connection is still usable.
    let a = conn
        .post(
            "/mutate?timeout=10s",
            Some("application/json"),
            executor_review("ok"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

/// An engine that panics on bodies containing "boom", and answers the rest as usual.
fn panics_on_boom(
    policies: &PolicySet,
    namespaces: &dyn admission::Namespaces,
    body: &[u8],
) -> Reply {
    if body.windows(4).any(|w| w == b"boom") {
        panic!("boom: an engine bug");
    }
    admission::review(policies, namespaces, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_evaluation_is_answered_500_and_the_connection_stays_usable() {
    let s = server("panic", |c| c.evaluator = panics_on_boom).await;
    let mut conn = s.connect().await;
    let a = conn
        .post(
            "/mutate?timeout=10s",
            Some("application/json"),
            executor_review("boom"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.text());
    assert!(
        a.text()
            .contains("internal error while evaluating the request: boom"),
        "{}",
        a.text()
    );
    assert!(a.text().contains("failurePolicy"), "{}", a.text());
    let a = conn
        .post(
            "/mutate?timeout=10s",
            Some("application/json"),
            executor_review("fine"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.review_response()["uid"], "fine");
    assert_eq!(
        s.metric("spark_admission_admissions_total{outcome=\"error\",role=\"none\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_with_16000_env_vars_is_answered_with_a_small_patch() {
    let s = server("hostile", |_| {}).await;
    for (what, pod) in [
        ("16,000 env vars", common::hostile_executor(16_000, 0)),
        ("16,000 volumes", common::hostile_executor(0, 16_000)),
    ] {
        let r = s
            .review(&admission_review("h", "CREATE", Some(&pod), false))
            .await;
        assert_eq!(r["allowed"], true, "{what}");
        let patched = apply_response_patch(&pod, &r);
        common::assert_valid_pod(&patched, what);
        let ops: Value = {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["patch"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let ops = ops.as_array().unwrap().len();
        assert!(ops < 30, "{what}: {ops} operations");
    }
}

/// The time until the server closes `stream` (reads until EOF or error).
async fn time_to_close(mut stream: impl tokio::io::AsyncRead + Unpin, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {limit:?}"
    );
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_sent_and_idle_connections_are_closed_by_their_timeouts() {
    let header = Duration::from_millis(300);
    let idle = Duration::from_millis(1200);
    let s = server("timeouts", |c| {
        c.limits.header = header;
        c.limits.idle = idle;
    })
    .await;
    let limit = Duration::from_secs(5);

    // Silent after the handshake: closed after the header timeout.
    let tls = tls_connect(s.addr, s.client.clone()).await.unwrap();
    let t = time_to_close(tls, limit).await;
    assert!(
        t >= header - Duration::from_millis(50) && t < idle,
        "silent: {t:?}"
    );

    // Slowloris: half a request head, then nothing.
    let mut tls = tls_connect(s.addr, s.client.clone()).await.unwrap();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Ty")
        .await
        .unwrap();
    let t = time_to_close(tls, limit).await;
    assert!(t < idle, "half-sent head: {t:?}");

    // Idle after a request: kept past the header timeout, closed after the idle timeout.
    let mut conn = s.connect().await;
    let a = conn
        .post(
            "/mutate?timeout=10s",
            Some("application/json"),
            executor_review("k"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
    let answered = Instant::now();
    tokio::time::sleep(header * 2).await;
    assert!(
        !conn.is_closed(),
        "an idle keep-alive connection outlives the header timeout"
    );
    conn.closed().await;
    let t = answered.elapsed();
    assert!(
        t >= idle - Duration::from_millis(50) && t < idle * 3,
        "idle: {t:?}"
    );
    assert_eq!(s.metric("spark_admission_open_connections").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_answers_while_the_tls_port_is_full() {
    let s = server("saturated", |c| c.max_connections = 4).await;
    let mut held = vec![];
    for _ in 0..4 {
        held.push(s.connect().await);
    }
    // A fifth connection waits in the backlog: its handshake does not finish.
    let fifth = tokio::time::timeout(
        Duration::from_millis(500),
        tls_connect(s.addr, s.client.clone()),
    )
    .await;
    assert!(
        fifth.is_err(),
        "the fifth connection should wait for a slot"
    );
    let started = Instant::now();
    assert_eq!(s.admin("/healthz").await.0, StatusCode::OK);
    assert_eq!(s.admin("/readyz").await.0, StatusCode::OK);
    let (_, metrics) = s.admin("/metrics").await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        metric_value(&metrics, "spark_admission_open_connections"),
        Some(4.0)
    );
    // A slot freed: the next connection is served.
    held.pop();
    let mut conn = tokio::time::timeout(Duration::from_secs(5), s.connect())
        .await
        .unwrap();
    let a = conn
        .post(
            "/mutate?timeout=10s",
            Some("application/json"),
            executor_review("next"),
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

async fn post(conn: &mut H1, body: &[u8]) -> Answer {
    conn.post(
        "/mutate?timeout=10s",
        Some("application/json"),
        body.to_vec(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_body_budget_is_spent_requests_are_refused_at_once() {
    // Room for one executor review in flight, not two.
    let body = executor_review("b");
    let s = server("budget", |c| c.max_inflight_bytes = body.len() + 100).await;
    // One request holds the budget: its body never finishes arriving.
    let mut stalled = tls_connect(s.addr, s.client.clone()).await.unwrap();
    let head = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body[..100]).await.unwrap();
    let mut conn = s.connect().await;
    // The stalled request has reserved its bytes once its head is read.
    let deadline = Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let a = post(&mut conn, &body).await;
        if a.status != StatusCode::OK || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert!(refused.text().contains("overloaded"), "{}", refused.text());
    assert_eq!(
        s.metric("spark_admission_shed_requests_total{reason=\"overloaded\"}")
            .await,
        1.0
    );
    // The stalled client goes away: its bytes come back to the budget.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(5);
    while post(&mut conn, &body).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the budget never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .count()
}

/// The real binary, as deployed: its thread count is fixed by `--workers`, whatever the
/// number of connections and streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_thread_count_does_not_grow_with_connections_or_streams() {
    let dir = TempDir::new("threads");
    let pki = Pki::new();
    let policies = [("p.yaml", TEST_POLICIES)];
    let server = Binary::serve_with(dir.path(), &pki, &policies, &["--workers", "2"]);
    let pid = server.child.id();
    let workers = 2;
    let before = threads_of(pid);
    let body = executor_review("load");
    let h1 = client_tls(pki.ca.cert_pem(), None, &[b"http/1.1"]);
    let h2 = client_tls(pki.ca.cert_pem(), None, &[b"h2"]);
    let mut tasks = vec![];
    for i in 0..64 {
        let (addr, body) = (server.addr, body.clone());
        let (h1, h2) = (h1.clone(), h2.clone());
        tasks.push(tokio::spawn(async move {
            if i % 8 == 0 {
                // HTTP/2: 20 concurrent streams on one connection.
                let streams: Vec<_> = (0..20)
                    .map(|_| post_h2(addr, h2.clone(), body.clone()))
                    .collect();
                for s in streams {
                    assert_eq!(s.await.unwrap().1.status, StatusCode::OK);
                }
            } else {
                let mut conn = H1::connect(addr, h1).await.unwrap();
                for _ in 0..20 {
                    assert_eq!(post(&mut conn, &body).await.status, StatusCode::OK);
                }
            }
        }));
    }
    let mut peak = 0;
    for t in tasks {
        peak = peak.max(threads_of(pid));
        t.await.unwrap();
    }
    let after = threads_of(pid);
    assert!(
        peak <= workers + 4 && after <= before.max(workers + 4),
        "threads: {before} before, {peak} at peak, {after} after ({workers} workers)"
    );
}
