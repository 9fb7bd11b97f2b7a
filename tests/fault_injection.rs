//! The fault-injection run: the built binary at a steady rate of admissions while, at the same
//! time, its certificate is rotated by `..data` symlink swap (one swap bad), its policy set is
//! swapped between valid and invalid versions, other connections send malformed and oversized
//! bodies, slowloris heads and idle floods, hostile pods (16 000 env vars or volumes) arrive
//! among the ordinary ones, and finally it gets SIGTERM while a second instance takes over
//! (the way the endpoints controller moves traffic once `/readyz` fails).
//!
//! It asserts: no well-formed request fails; every admitted pod carries exactly the policies of
//! one valid set, and a client never sees an older set after a newer one; peak RSS and open fds
//! stay bounded; no panic in either log; the old instance exits within its drain bound. And it
//! prints the figures (docs/security.md quotes them).
//!
//! About 80 s; not part of `cargo test`: `.ci/run` runs it on the static release binary with
//! `SPARK_ADMISSION_TEST_BIN=… cargo test --test fault_injection -- --ignored --nocapture`
//! (without the variable it runs the debug binary cargo built).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hostile_executor;
use common::server::*;
use hyper::StatusCode;
use rustls::ClientConfig;
use serde_json::Value;
use spark_admission::certs::service_dns_names;
use tokio::io::AsyncWriteExt as _;

/// Load on the first instance before the second starts and SIGTERM is sent.
const LOAD: Duration = Duration::from_secs(55);
/// Load on the second instance after the takeover.
const AFTER: Duration = Duration::from_secs(10);
/// Ordinary admissions per second (over HTTP/1.1 keep-alive workers and one HTTP/2 worker).
const H1_WORKERS: usize = 4;
const PER_WORKER_EVERY: Duration = Duration::from_millis(100);
const DRAIN: Duration = Duration::from_secs(2);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections held by the floods at any time.
const SLOWLORIS: usize = 40;
const IDLE_TLS: usize = 40;
const IDLE_TCP: usize = 80;

/// The policy set of generation `g`: the tests' policies, each name suffixed `-g{g}`.
fn valid_set(g: u32) -> String {
    TEST_POLICIES
        .replace(
            "name: executors-on-spot",
            &format!("name: executors-on-spot-g{g}"),
        )
        .replace(
            "name: drivers-on-demand",
            &format!("name: drivers-on-demand-g{g}"),
        )
}

/// Generation `g`'s policies with one broken document: rejected whole, so no `-g{g}` name
/// may ever be applied.
fn invalid_set(g: u32) -> String {
    format!(
        "{}---\napiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {{name: broken-g{g}}}\nspec:\n  match: {{roles: [executor]}}\n  colour: blue\n",
        valid_set(g)
    )
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    hostile_pods: AtomicU64,
    failures: Mutex<Vec<String>>,
    generations: Mutex<BTreeSet<u32>>,
    certificates: Mutex<HashSet<Vec<u8>>>,
    connects_refused: AtomicU64,
    malformed: AtomicU64,
    oversized: AtomicU64,
    slowloris_closed: AtomicU64,
    idle_closed: AtomicU64,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Where new connections go: the first instance until its `/readyz` fails, then the second.
struct Endpoints {
    target: Mutex<SocketAddr>,
}

impl Endpoints {
    fn get(&self) -> SocketAddr {
        *self.target.lock().unwrap()
    }
}

/// The generation of the set whose policies were applied, from the patched pod's
/// annotation; a failure unless the names are exactly one valid set's executor policy.
fn generation_of(patched: &Value, valid: &Mutex<HashSet<u32>>) -> Result<u32, String> {
    let names = patched["metadata"]["annotations"][spark_admission::POLICIES_ANNOTATION]
        .as_str()
        .ok_or("no policies annotation")?;
    let g: u32 = names
        .strip_prefix("executors-on-spot-g")
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| format!("applied {names:?}, not one set's executor policy"))?;
    if !valid.lock().unwrap().contains(&g) {
        return Err(format!("applied {names:?}: generation {g} was never valid"));
    }
    Ok(g)
}

/// One admission of `pod` on `conn` (or a new connection to the current endpoint); checks
/// the answer and returns the generation applied.
async fn admit(
    conn: &mut Option<H1>,
    endpoints: &Endpoints,
    client: &Arc<ClientConfig>,
    tally: &Tally,
    uid: &str,
    pod: &Value,
    valid: &Mutex<HashSet<u32>>,
) -> Result<u32, String> {
    let reusable = match conn.take() {
        Some(mut c) => c.ready().await.then_some(c),
        None => None,
    };
    let mut c = match reusable {
        Some(c) => c,
        None => loop {
            // Refused: the instance stopped accepting; nothing was sent, so try the
            // endpoint again (as a client that cannot connect does).
            match H1::connect(endpoints.get(), client.clone()).await {
                Ok(c) => break c,
                Err(_) => {
                    tally.connects_refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        },
    };
    tally
        .certificates
        .lock()
        .unwrap()
        .insert(c.server_cert.clone());
    let body = json_bytes(&admission_review(uid, "CREATE", Some(pod), false));
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        c.post("/mutate?timeout=10s", Some("application/json"), body),
    )
    .await
    .map_err(|_| "no answer within 10 s".to_string())?
    .map_err(|e| format!("request failed: {e}"))?;
    if answer.status != StatusCode::OK {
        return Err(format!("HTTP {}: {}", answer.status, answer.text()));
    }
    let response = answer.review_response();
    if response["uid"] != uid || response["allowed"] != true {
        return Err(format!("unexpected answer {response}"));
    }
    let patched = apply_response_patch(pod, &response);
    let g = generation_of(&patched, valid)?;
    *conn = Some(c);
    Ok(g)
}

/// The leaf certificate a TLS connection was served.
fn leaf(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default()
}

/// Peak resident set (VmHWM, KiB) and open fds of a process.
fn rss_and_fds(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((hwm, fds))
}

fn panics(logs: &Mutex<Vec<String>>) -> usize {
    logs.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("\"message\":\"panic\""))
        .count()
}

fn spawn(dir: &Path) -> Binary {
    let s = dir.join("secret");
    let mut args: Vec<std::ffi::OsString> = vec!["--cert".into(), s.join("tls.crt").into()];
    args.extend(["--key".into(), s.join("tls.key").into()]);
    args.extend(
        [
            "--reload-interval",
            "200ms",
            "--drain-delay",
            "2s",
            "--shutdown-timeout",
            "5s",
        ]
        .map(Into::into),
    );
    Binary::serve(dir, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "about 80 s; .ci/run runs it: cargo test --test fault_injection -- --ignored"]
async fn the_server_keeps_answering_correctly_under_faults_and_hostile_input() {
    let started = Instant::now();
    let dir = TempDir::new("fault-injection");
    let pki = Pki::new();
    let secret = dir.path().join("secret");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::create_dir_all(&policies).unwrap();
    kubelet_update(
        &secret,
        "c0",
        &[
            ("tls.crt", &pki.serving.cert_pem),
            ("tls.key", &pki.serving.key_pem),
        ],
    );
    kubelet_update(&policies, "p1", &[("policies.yaml", &valid_set(1))]);
    let valid = Arc::new(Mutex::new(HashSet::from([1u32])));

    let mut a = spawn(dir.path());
    let a_pid = a.child.id();
    let (a_admin, a_logs) = (a.admin_addr, a.logs.clone());
    eventually(
        Duration::from_secs(10),
        "first instance ready",
        || async move { matches!(admin_get(a_admin, "/readyz").await, Ok((StatusCode::OK, _))) },
    )
    .await;

    let client = client_tls(pki.ca.cert_pem(), None, &[b"http/1.1"]);
    let client_h2 = client_tls(pki.ca.cert_pem(), None, &[b"h2"]);
    let endpoints = Arc::new(Endpoints {
        target: Mutex::new(a.addr),
    });
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let mut tasks = vec![];

    // Steady load: HTTP/1.1 keep-alive workers, each a request every 100 ms; every 25th
    // request of worker 0 is a hostile pod (16 000 env vars or volumes).
    let hostile = Arc::new([hostile_executor(16_000, 0), hostile_executor(0, 16_000)]);
    for w in 0..H1_WORKERS {
        let (endpoints, client, tally, stop, valid) = (
            endpoints.clone(),
            client.clone(),
            tally.clone(),
            stop.clone(),
            valid.clone(),
        );
        let (pod, hostile) = (pod.clone(), hostile.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let mut last = 0;
            let mut tick = tokio::time::interval(PER_WORKER_EVERY);
            for n in 0u64.. {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let uid = format!("w{w}-{n}");
                let is_hostile = w == 0 && n % 25 == 24;
                let pod = if is_hostile {
                    &hostile[(n / 25 % 2) as usize]
                } else {
                    &pod
                };
                tally.requests.fetch_add(1, Ordering::Relaxed);
                if is_hostile {
                    tally.hostile_pods.fetch_add(1, Ordering::Relaxed);
                }
                match admit(&mut conn, &endpoints, &client, &tally, &uid, pod, &valid).await {
                    Ok(g) => {
                        if g < last {
                            tally.fail(format!("{uid}: generation {g} after {last}"));
                        }
                        last = g;
                        tally.generations.lock().unwrap().insert(g);
                    }
                    Err(e) => tally.fail(format!("{uid}: {e}")),
                }
            }
        }));
    }
    // HTTP/2: a new connection per request, every 200 ms.
    {
        let (endpoints, client_h2, tally, stop, valid, pod) = (
            endpoints.clone(),
            client_h2.clone(),
            tally.clone(),
            stop.clone(),
            valid.clone(),
            pod.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            for n in 0u64.. {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let uid = format!("h2-{n}");
                let body = json_bytes(&admission_review(&uid, "CREATE", Some(&pod), false));
                tally.requests.fetch_add(1, Ordering::Relaxed);
                let answer = loop {
                    match post_h2(endpoints.get(), client_h2.clone(), body.clone()).await {
                        Ok((_, answer)) => break Ok(answer),
                        // Refused before anything was sent: try the endpoint again.
                        Err(e) if e.to_string().contains("onnection refused") => {
                            tally.connects_refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) => break Err(e.to_string()),
                    }
                };
                let checked = answer.and_then(|answer| {
                    if answer.status != StatusCode::OK {
                        return Err(format!("HTTP {}: {}", answer.status, answer.text()));
                    }
                    let response = answer.review_response();
                    generation_of(&apply_response_patch(&pod, &response), &valid)
                });
                match checked {
                    Ok(g) => {
                        tally.generations.lock().unwrap().insert(g);
                    }
                    Err(e) => tally.fail(format!("{uid}: {e}")),
                }
            }
        }));
    }
    // Malformed and oversized bodies on a connection of their own, every 250 ms: each gets
    // a 4xx answer saying why, never a 5xx.
    {
        let (endpoints, client, tally, stop) = (
            endpoints.clone(),
            client.clone(),
            tally.clone(),
            stop.clone(),
        );
        let review = json_bytes(&admission_review("m", "CREATE", Some(&pod), false));
        tasks.push(tokio::spawn(async move {
            let bad: Vec<(Option<&str>, Vec<u8>)> = vec![
                (Some("application/json"), b"not json".to_vec()),
                (Some("application/json"), b"{".to_vec()),
                (Some("application/json"), b"[1,2]".to_vec()),
                (Some("application/json"), review[..review.len() / 2].to_vec()),
                (Some("application/json"), b"\xff\xfe{}".to_vec()),
                (Some("application/json"), "[".repeat(100_000).into_bytes()),
                (
                    Some("application/json"),
                    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.to_vec(),
                ),
                (Some("text/plain"), review.clone()),
                (None, vec![b' '; 7 * 1024 * 1024]),
            ];
            let mut conn: Option<H1> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            for n in 0usize.. {
                tick.tick().await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (ct, body) = &bad[n % bad.len()];
                let reusable = match conn.take() {
                    Some(mut c) => c.ready().await.then_some(c),
                    None => None,
                };
                let mut c = match reusable {
                    Some(c) => c,
                    None => match H1::connect(endpoints.get(), client.clone()).await {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let oversized = body.len() > 6 * 1024 * 1024;
                match c.post("/mutate?timeout=10s", *ct, body.clone()).await {
                    Ok(a) if a.status.is_client_error() => {
                        let counter = if oversized {
                            &tally.oversized
                        } else {
                            &tally.malformed
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        conn = Some(c);
                    }
                    Ok(a) => tally.fail(format!("malformed body #{n}: HTTP {}", a.status)),
                    // Draining: the answer carried `Connection: close`, or the instance
                    // stopped between two of these requests.
                    Err(_) => {}
                }
            }
        }));
    }
    // Slowloris: request heads sent a byte a second; the server closes each at its header
    // timeout, and the flood opens another.
    for _ in 0..SLOWLORIS {
        let (addr, client, tally, stop) = (a.addr, client.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut tls) = tls_connect(addr, client.clone()).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                tally.certificates.lock().unwrap().insert(leaf(&tls));
                let _ = tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\n").await;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    if tls.write_all(b"X").await.is_err() || tls.flush().await.is_err() {
                        tally.slowloris_closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    // Idle floods: TLS connections that never send a request, and TCP connections that never
    // start TLS. Each is closed by the server (header / handshake timeout) and reopened.
    for i in 0..IDLE_TLS + IDLE_TCP {
        let (addr, client, tally, stop) = (a.addr, client.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            while !stop.load(Ordering::Relaxed) {
                let mut buf = [0u8; 64];
                let closed = if i < IDLE_TLS {
                    let Ok(mut tls) = tls_connect(addr, client.clone()).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    tokio::time::timeout(Duration::from_secs(30), tls.read(&mut buf)).await
                } else {
                    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await
                };
                if closed.is_ok() {
                    tally.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Resources of the first instance, sampled every 250 ms.
    let peak = Arc::new(Mutex::new((0u64, 0usize)));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some((rss, fds)) = rss_and_fds(a_pid) {
                    let mut p = peak.lock().unwrap();
                    *p = (p.0.max(rss), p.1.max(fds));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Faults on a schedule: a policy swap every 2.5 s (valid, invalid, valid…), a
    // certificate swap every 6 s (the third one bad: a certificate with another key).
    let mut generation = 1u32;
    let (mut policy_swaps, mut invalid_swaps, mut cert_swaps, mut bad_cert_swaps) = (0, 0, 0, 0);
    let mut key_pem = pki.serving.key_pem.clone();
    let names = service_dns_names("spark-admission", "spark-admission");
    let mut next_policy = Instant::now() + Duration::from_millis(2500);
    let mut next_cert = Instant::now() + Duration::from_secs(6);
    let load_end = Instant::now() + LOAD;
    while Instant::now() < load_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() >= next_policy {
            next_policy += Duration::from_millis(2500);
            policy_swaps += 1;
            let g = generation + 1;
            if policy_swaps % 2 == 0 {
                invalid_swaps += 1;
                kubelet_update(
                    &policies,
                    &format!("p{g}x"),
                    &[("policies.yaml", &invalid_set(g))],
                );
                generation = g; // never valid: its number is skipped
            } else {
                valid.lock().unwrap().insert(g);
                kubelet_update(
                    &policies,
                    &format!("p{g}"),
                    &[("policies.yaml", &valid_set(g))],
                );
                generation = g;
            }
        }
        if Instant::now() >= next_cert {
            next_cert += Duration::from_secs(6);
            cert_swaps += 1;
            let fresh = pki.ca.issue_server(&names, 30).unwrap();
            let version = format!("c{cert_swaps}");
            if cert_swaps == 3 {
                bad_cert_swaps += 1;
                kubelet_update(
                    &secret,
                    &version,
                    &[("tls.crt", &fresh.cert_pem), ("tls.key", &key_pem)],
                );
            } else {
                key_pem = fresh.key_pem.clone();
                kubelet_update(
                    &secret,
                    &version,
                    &[("tls.crt", &fresh.cert_pem), ("tls.key", &fresh.key_pem)],
                );
            }
        }
    }
    // The second instance starts on a valid set, as a new pod would only become ready on one.
    if policy_swaps % 2 == 0 {
        generation += 1;
        policy_swaps += 1;
        valid.lock().unwrap().insert(generation);
        let version = format!("p{generation}");
        kubelet_update(
            &policies,
            &version,
            &[("policies.yaml", &valid_set(generation))],
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let before_takeover = rss_and_fds(a_pid).unwrap_or_default();
    let (_, metrics_a) = admin_get(a_admin, "/metrics").await.unwrap();
    let metric = |series: &str| metric_value(&metrics_a, series).unwrap_or(0.0);
    let cert_reloads = (
        metric("spark_admission_certificate_reloads_total{result=\"ok\"}"),
        metric("spark_admission_certificate_reloads_total{result=\"failed\"}"),
    );
    let policy_reloads = (
        metric("spark_admission_policy_reloads_total{result=\"ok\"}"),
        metric("spark_admission_policy_reloads_total{result=\"failed\"}"),
    );

    // Takeover: the second instance on the same secret and ConfigMap; once it is ready, the
    // first gets SIGTERM, and the endpoints move when the first one's /readyz fails.
    let mut b = spawn(dir.path());
    let b_admin = b.admin_addr;
    eventually(
        Duration::from_secs(10),
        "second instance ready",
        || async move { matches!(admin_get(b_admin, "/readyz").await, Ok((StatusCode::OK, _))) },
    )
    .await;
    a.sigterm();
    let sigterm_at = Instant::now();
    eventually(Duration::from_secs(1), "endpoints moved", || async {
        if matches!(admin_get(a_admin, "/readyz").await, Ok((StatusCode::OK, _))) {
            return false;
        }
        *endpoints.target.lock().unwrap() = b.addr;
        true
    })
    .await;
    let a_exit = a
        .wait_exit(DRAIN + SHUTDOWN_TIMEOUT + Duration::from_secs(5))
        .await;
    let a_exit_after = sigterm_at.elapsed();
    tokio::time::sleep(AFTER).await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let _ = sampler.await;
    b.sigterm();
    let b_exit = b
        .wait_exit(DRAIN + SHUTDOWN_TIMEOUT + Duration::from_secs(5))
        .await;

    let shutdown_log: Vec<String> = a_logs
        .lock()
        .unwrap()
        .iter()
        .filter(|l| {
            l.contains("stopped accepting")
                || l.contains("all connections closed")
                || l.contains("shutdown timeout reached")
        })
        .cloned()
        .collect();
    let failures = tally.failures.lock().unwrap().clone();
    let generations = tally.generations.lock().unwrap().clone();
    let (peak_rss, peak_fds) = *peak.lock().unwrap();
    let (panics_a, panics_b) = (panics(&a.logs), panics(&b.logs));
    let requests = tally.requests.load(Ordering::Relaxed);
    println!(
        "fault injection ({:.0} s in all):",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  well-formed admissions: {requests} ({} hostile pods of 16 000 env vars or volumes), failed: {}",
        tally.hostile_pods.load(Ordering::Relaxed),
        failures.len()
    );
    println!(
        "  policy sets: {policy_swaps} swaps ({invalid_swaps} invalid); generations seen in answers: {} ({generations:?}); reloads ok {} / rejected {}",
        generations.len(),
        policy_reloads.0,
        policy_reloads.1
    );
    println!(
        "  certificates: {cert_swaps} swaps ({bad_cert_swaps} bad); reloads ok {} / failed {}; distinct certificates seen by clients: {}",
        cert_reloads.0,
        cert_reloads.1,
        tally.certificates.lock().unwrap().len()
    );
    println!(
        "  hostile connections: {} malformed and {} oversized bodies answered 4xx; {} slowloris and {} idle connections closed by the server (flood of {SLOWLORIS} + {IDLE_TLS} + {IDLE_TCP})",
        tally.malformed.load(Ordering::Relaxed),
        tally.oversized.load(Ordering::Relaxed),
        tally.slowloris_closed.load(Ordering::Relaxed),
        tally.idle_closed.load(Ordering::Relaxed)
    );
    println!(
        "  first instance: peak RSS {} MiB, peak open fds {peak_fds} (at the end of the load: {} fds); exited {:?} {:.1} s after SIGTERM (drain delay {DRAIN:?}); connects refused meanwhile: {}",
        peak_rss / 1024,
        before_takeover.1,
        a_exit.code(),
        a_exit_after.as_secs_f64(),
        tally.connects_refused.load(Ordering::Relaxed)
    );
    for l in &shutdown_log {
        println!("  log: {l}");
    }
    println!("  panics in the logs: {}", panics_a + panics_b);
    for f in failures.iter().take(20) {
        println!("  FAILED {f}");
    }

    assert!(failures.is_empty(), "{} failed requests", failures.len());
    assert!(requests > 1000, "too little load: {requests}");
    assert!(
        generations.len() >= 5,
        "policy generations seen: {generations:?}"
    );
    assert!(policy_reloads.1 >= 1.0 && cert_reloads.1 >= 1.0);
    assert!(tally.certificates.lock().unwrap().len() >= 3);
    assert!(tally.malformed.load(Ordering::Relaxed) > 50);
    assert!(tally.oversized.load(Ordering::Relaxed) > 5);
    assert!(tally.slowloris_closed.load(Ordering::Relaxed) >= SLOWLORIS as u64);
    assert!(tally.idle_closed.load(Ordering::Relaxed) >= (IDLE_TLS + IDLE_TCP) as u64);
    assert!(peak_rss < 512 * 1024, "peak RSS {peak_rss} KiB");
    // The floods' connections, the load's, the listeners, logs and files: well under the cap.
    let flood = SLOWLORIS + IDLE_TLS + IDLE_TCP + H1_WORKERS + 4;
    assert!(
        peak_fds < flood + 64,
        "peak fds {peak_fds} for {flood} connections"
    );
    assert_eq!(panics_a + panics_b, 0);
    assert!(
        a_exit.success() && b_exit.success(),
        "{a_exit:?} {b_exit:?}"
    );
    // Every stalled client of the floods is closed within the stop grace: nothing is left
    // for the shutdown timeout to cut.
    assert!(
        !shutdown_log
            .iter()
            .any(|l| l.contains("shutdown timeout reached")),
        "connections cut at the shutdown timeout"
    );
    assert!(a_exit_after < DRAIN + SHUTDOWN_TIMEOUT, "{a_exit_after:?}");
}
