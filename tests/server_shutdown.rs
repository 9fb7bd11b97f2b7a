//! The built binary under SIGTERM while requests flow, and its logs.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::*;
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Frame};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

const DRAIN: Duration = Duration::from_millis(600);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

fn spawn_binary(dir: &Path, pki: &Pki, policies: &[(&str, &str)]) -> Binary {
    let args = ["--drain-delay", "600ms", "--shutdown-timeout", "5s"];
    Binary::serve_with(dir, pki, policies, &args)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    answered: Vec<(String, Duration)>,
    refused_connections: usize,
    unanswered_sends: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_every_accepted_request_is_answered() {
    let dir = TempDir::new("sigterm");
    let pki = Pki::new();
    let mut bin = spawn_binary(dir.path(), &pki, &[("p.yaml", TEST_POLICIES)]);
    let client = client_tls(pki.ca.cert_pem(), None, &[b"http/1.1"]);
    let admin = bin.admin_addr;
    eventually(Duration::from_secs(10), "ready", || async move {
        matches!(admin_get(admin, "/readyz").await, Ok((StatusCode::OK, _)))
    })
    .await;

    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let t0 = Arc::new(Mutex::new(None::<Instant>));
    let mut workers = vec![];
    for w in 0..3 {
        let (client, pod, addr, t0) = (client.clone(), pod.clone(), bin.addr, t0.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut conn: Option<H1> = None;
            for n in 0.. {
                let reusable = match conn.take() {
                    Some(mut c) => c.ready().await.then_some(c),
                    None => None,
                };
                let mut c = match reusable {
                    Some(c) => c,
                    None => match H1::connect(addr, client.clone()).await {
                        Ok(c) => c,
                        Err(_) => {
                            // Refused (or cut during the handshake): the server stopped
                            // accepting. Nothing was sent.
                            seen.refused_connections += 1;
                            if t0.lock().unwrap().is_some() {
                                break;
                            }
                            continue;
                        }
                    },
                };
                let uid = format!("w{w}-{n}");
                let body = json_bytes(&admission_review(&uid, "CREATE", Some(&pod), false));
                match c
                    .post("/mutate?timeout=10s", Some("application/json"), body)
                    .await
                {
                    Ok(answer) => {
                        let r = answer.review_response();
                        assert_eq!(r["uid"], uid.as_str());
                        assert!(r["patch"].is_string());
                        let since = t0.lock().unwrap().map(|t| t.elapsed()).unwrap_or_default();
                        seen.answered.push((uid, since));
                        conn = Some(c);
                    }
                    Err(_) => seen.unanswered_sends += 1,
                }
            }
            seen
        }));
    }

    // A kept-alive connection idle through the whole shutdown: it must be closed by the
    // server at the end of the drain delay, not held until the shutdown timeout.
    let mut idle = H1::connect(bin.addr, client.clone()).await.unwrap();

    eventually(Duration::from_secs(10), "traffic", || {
        let logs = bin.logs.clone();
        async move {
            logs.lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("\"admission\""))
                .count()
                > 30
        }
    })
    .await;

    bin.sigterm();
    let started = Instant::now();
    *t0.lock().unwrap() = Some(started);

    // Not ready at once (well within the drain delay), while the admin port still answers.
    eventually(DRAIN / 2, "/readyz fails after SIGTERM", || async move {
        matches!(admin_get(admin, "/readyz").await,
            Ok((StatusCode::SERVICE_UNAVAILABLE, body)) if body.contains("shutting down"))
    })
    .await;

    // An in-flight request spanning the moment the server stops accepting: headers now, the
    // rest of the body after the drain delay. It must still be answered.
    let tls = tls_connect(bin.addr, client.clone()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = json_bytes(&admission_review("slow", "CREATE", Some(&pod), false));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let half = body.len() / 2;
    tx.send(Ok::<_, std::io::Error>(Frame::data(
        Bytes::copy_from_slice(&body[..half]),
    )))
    .unwrap();
    let req = Request::post("/mutate?timeout=10s")
        .header("host", SERVICE_DNS)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(ChannelBody(rx))
        .unwrap();
    let slow = tokio::spawn(async move {
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, bytes)
    });
    tokio::time::sleep(DRAIN + Duration::from_millis(300)).await;
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(&body[half..]))))
        .unwrap();
    let (status, bytes) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["response"]["uid"], "slow");

    tokio::time::timeout(Duration::from_secs(2), idle.closed())
        .await
        .expect("idle keep-alive connection closed after the drain delay");

    let exit = bin
        .wait_exit(DRAIN + SHUTDOWN_TIMEOUT + Duration::from_secs(3))
        .await;
    let took = started.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        took < DRAIN + Duration::from_secs(3),
        "nothing was stuck, so the exit should come soon after the drain: {took:?}"
    );

    let mut answered = HashSet::new();
    let mut during_drain = 0;
    for w in workers {
        let seen = w.await.unwrap();
        assert!(
            seen.refused_connections > 0,
            "workers end on a refused connection"
        );
        // No request is lost at the listener's close: every request sent was answered.
        assert_eq!(seen.unanswered_sends, 0, "requests sent but not answered");
        for (uid, since) in seen.answered {
            if since > Duration::ZERO && since < DRAIN {
                during_drain += 1;
            }
            answered.insert(uid);
        }
    }
    answered.insert("slow".to_string());
    assert!(
        during_drain > 0,
        "requests are served during the drain delay"
    );

    // Every admission the server logged (i.e. every request it accepted) reached its client.
    let logs = bin.logs.lock().unwrap().clone();
    let mut logged = 0;
    for line in &logs {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["fields"]["message"] == "admission" {
            let uid = v["fields"]["uid"].as_str().unwrap().to_string();
            assert!(
                answered.contains(&uid),
                "server accepted {uid} but the client got no answer"
            );
            logged += 1;
        }
    }
    assert!(logged > 30);
    assert!(logs.iter().any(|l| l.contains("stopped accepting")));
    assert!(logs.iter().any(|l| l.contains("server stopped")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_set_is_logged_with_file_and_line_and_keeps_the_server_unready() {
    let dir = TempDir::new("bad-policies");
    let pki = Pki::new();
    let bad = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: x}\nspec:\n  match: {roles: [executor]}\n  colour: blue\n";
    let mut bin = spawn_binary(dir.path(), &pki, &[("bad.yaml", bad)]);
    let (status, body) = admin_get(bin.admin_addr, "/readyz").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no valid policy set"), "{body}");
    let logs = bin.logs.clone();
    eventually(Duration::from_secs(5), "policy error logged", || {
        let logs = logs.clone();
        async move {
            logs.lock().unwrap().iter().any(|l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| {
                    v["fields"]["message"] == "invalid policy"
                        && v["fields"]["error"]
                            .as_str()
                            .is_some_and(|e| e.contains("bad.yaml:6:"))
                })
            })
        }
    })
    .await;
    bin.sigterm();
    let exit = bin.wait_exit(DRAIN + SHUTDOWN_TIMEOUT).await;
    assert!(exit.success());
}

/// The `fields` of the first log line whose message is `message`.
fn log_fields(logs: &[String], message: &str) -> Option<Value> {
    logs.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
}

/// Stalled clients bound the drain by the stop grace (1 s), not by the header or handshake
/// timeout or the shutdown timeout: an HTTP/2 client that ignores GOAWAY, a TCP connection
/// that never starts TLS, a half-sent request head and idle keep-alive connections are
/// closed; a request whose body stalls is cut at the shutdown
/// timeout. The shutdown log counts exactly the connections that are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_hold_the_drain_only_for_the_stop_grace_and_the_log_counts_them() {
    use tokio::io::AsyncWriteExt as _;
    let dir = TempDir::new("stalled-drain");
    let pki = Pki::new();
    let args = ["--drain-delay", "200ms", "--shutdown-timeout", "3s"];
    let mut bin = Binary::serve_with(dir.path(), &pki, &[("p.yaml", TEST_POLICIES)], &args);
    let h1 = client_tls(pki.ca.cert_pem(), None, &[b"http/1.1"]);
    let h2 = client_tls(pki.ca.cert_pem(), None, &[b"h2"]);
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let body = json_bytes(&admission_review("x", "CREATE", Some(&pod), false));

    // Two idle keep-alive connections, after one request each.
    let mut idle = vec![];
    for _ in 0..2 {
        let mut c = H1::connect(bin.addr, h1.clone()).await.unwrap();
        let a = c
            .post(
                "/mutate?timeout=10s",
                Some("application/json"),
                body.clone(),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK);
        idle.push(c);
    }
    // An HTTP/2 client that sends its preface and SETTINGS, then nothing: it will neither
    // answer the GOAWAY's PING nor hang up.
    let mut silent_h2 = tls_connect(bin.addr, h2).await.unwrap();
    silent_h2
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // A TCP connection that never starts TLS.
    let no_tls = tokio::net::TcpStream::connect(bin.addr).await.unwrap();
    // Half a request head.
    let mut half_head = tls_connect(bin.addr, h1.clone()).await.unwrap();
    half_head
        .write_all(b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A request whose body stops half-way: in progress, bounded by its own deadline (9 s),
    // so the shutdown timeout (3 s) cuts it.
    let mut half_body = tls_connect(bin.addr, h1.clone()).await.unwrap();
    let head = format!(
        "POST /mutate?timeout=10s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    half_body.write_all(head.as_bytes()).await.unwrap();
    half_body.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    bin.sigterm();
    let started = Instant::now();
    let exit = bin.wait_exit(Duration::from_secs(10)).await;
    let took = started.elapsed();
    assert!(exit.success(), "{exit:?}");
    let logs = bin.logs.lock().unwrap().clone();
    let stopped = log_fields(
        &logs,
        "stopped accepting; idle connections close now, requests in flight finish",
    )
    .expect("stopped accepting logged");
    assert_eq!(stopped["open_connections"], 6, "{stopped}");
    let cut = log_fields(
        &logs,
        "shutdown timeout reached; cutting the remaining connections",
    )
    .expect("the stalled body is cut at the shutdown timeout");
    assert_eq!(
        cut["remaining"], 1,
        "only the request in progress is left: {cut}"
    );
    // Drain delay + shutdown timeout, and no more: the others closed within the stop grace.
    assert!(
        took < Duration::from_millis(200 + 3000 + 800),
        "exit took {took:?}"
    );
    drop((idle, silent_h2, no_tls, half_head, half_body));
}
