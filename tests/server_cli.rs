//! `serve` with its built-in development certificate, and `certs` output served as is.

mod common;

use std::process::Command;
use std::time::Duration;

use common::server::*;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_cert_makes_a_dev_ca_prints_a_curl_line_and_serves_localhost() {
    let dir = TempDir::new("dev-default");
    write_policies(&dir.path().join("policies"), &[("p.yaml", TEST_POLICIES)]);
    let mut bin = Binary::serve(dir.path(), &["--drain-delay".into(), "0s".into()]);
    let ca = dir.path().join("certs/dev/ca.crt");
    let ca_pem = std::fs::read_to_string(&ca).expect("certs/dev/ca.crt written");
    let port = bin.addr.port();
    let logs = bin.logs.clone();
    eventually(Duration::from_secs(5), "curl line printed", || {
        let logs = logs.clone();
        async move {
            logs.lock().unwrap().iter().any(|l| {
                l.starts_with(
                    "  curl --cacert certs/dev/ca.crt -H 'Content-Type: application/json' -d @",
                ) && l.ends_with(&format!("https://localhost:{port}/mutate"))
            })
        }
    })
    .await;

    // What the printed curl does: trust the dev CA, call localhost.
    let config = client_tls(&ca_pem, None, &[b"http/1.1"]);
    let tls = tls_connect_as(bin.addr, config, "localhost").await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let req = Request::post("/mutate")
        .header("host", format!("localhost:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(json_bytes(&admission_review(
            "dev",
            "CREATE",
            Some(&pod),
            false,
        )))))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["response"]["uid"], "dev");
    assert!(v["response"]["patch"].is_string());

    bin.sigterm();
    assert!(bin.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certs_output_is_served_and_verifies_for_the_service_name() {
    let dir = TempDir::new("certs-cmd");
    let out = dir.path().join("tls");
    let status = Command::new(env!("CARGO_BIN_EXE_spark-admission"))
        .args([
            "certs",
            "--service",
            "spark-admission",
            "--namespace",
            "spark-admission",
        ])
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    for f in [
        "ca.crt",
        "ca.key",
        "tls.crt",
        "tls.key",
        "cabundle-patch.yaml",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    write_policies(&dir.path().join("policies"), &[("p.yaml", TEST_POLICIES)]);
    let mut bin = Binary::serve(
        dir.path(),
        &[
            "--cert".into(),
            out.join("tls.crt").into(),
            "--key".into(),
            out.join("tls.key").into(),
            "--drain-delay".into(),
            "0s".into(),
        ],
    );
    // As the API server does with caBundle = ca.crt, for <svc>.<ns>.svc.
    let ca_pem = std::fs::read_to_string(out.join("ca.crt")).unwrap();
    let config = client_tls(&ca_pem, None, &[b"http/1.1"]);
    let conn = H1::connect(bin.addr, config).await.unwrap();
    assert!(!conn.server_cert.is_empty());
    let (status, body) = admin_get(bin.admin_addr, "/readyz").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    bin.sigterm();
    assert!(bin.wait_exit(Duration::from_secs(10)).await.success());
}
