//! Hot reload the way Kubernetes updates mounted volumes: the kubelet writes a new timestamped
//! directory and atomically renames a `..data` symlink onto it; the visible files are symlinks
//! through `..data`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::server::*;
use hyper::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

fn leaf_der(chain_pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_by_symlink_swap_drops_no_request() {
    let pki = Pki::new();
    let first = pki.serving.clone();
    let s = TestServer::start(
        "cert-rotation",
        &[("p.yaml", TEST_POLICIES)],
        |config, dir| {
            let secret = dir.join("secret");
            std::fs::create_dir_all(&secret).unwrap();
            kubelet_update(
                &secret,
                "2026_11_21_10_00_00.1",
                &[("tls.crt", &first.cert_pem), ("tls.key", &first.key_pem)],
            );
            config.cert = secret.join("tls.crt");
            config.key = secret.join("tls.key");
        },
    )
    .await;
    // The server uses the certificate written in the closure, signed by `pki`'s CA.
    let client = client_tls(pki.ca.cert_pem(), None, &[b"http/1.1"]);
    let secret = s.dir.path().join("secret");
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let body = json_bytes(&admission_review("rot", "CREATE", Some(&pod), false));

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = vec![];
    // Two workers open a new connection per request (they see rotations); one keeps a
    // single connection alive throughout (it must not be disturbed).
    for worker in 0..3 {
        let (client, body, stop, addr) = (client.clone(), body.clone(), stop.clone(), s.addr);
        workers.push(tokio::spawn(async move {
            let mut seen: Vec<Vec<u8>> = vec![];
            let mut count = 0usize;
            let mut kept = None;
            while !stop.load(Ordering::SeqCst) {
                let conn = match (worker, kept.take()) {
                    (2, Some(c)) => c,
                    _ => H1::connect(addr, client.clone())
                        .await
                        .unwrap_or_else(|e| panic!("worker {worker}: connect: {e}")),
                };
                let mut conn = conn;
                let answer = conn
                    .post(
                        "/mutate?timeout=10s",
                        Some("application/json"),
                        body.clone(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("worker {worker}: request {count}: {e}"));
                assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
                assert!(answer.review_response()["patch"].is_string());
                if !seen.contains(&conn.server_cert) {
                    seen.push(conn.server_cert.clone());
                }
                count += 1;
                if worker == 2 {
                    kept = Some(conn);
                }
                tokio::task::yield_now().await;
            }
            (count, seen)
        }));
    }

    eventually(Duration::from_secs(5), "first requests", || async {
        s.metric("spark_admission_admissions_total{outcome=\"patched\",role=\"executor\"}")
            .await
            >= 10.0
    })
    .await;
    let second = pki
        .ca
        .issue_server(&["spark-admission.spark-admission.svc".into()], 30)
        .unwrap();
    kubelet_update(
        &secret,
        "2026_11_21_11_00_00.2",
        &[("tls.crt", &second.cert_pem), ("tls.key", &second.key_pem)],
    );
    let second_leaf = leaf_der(&second.cert_pem);
    eventually(
        Duration::from_secs(5),
        "new connections see the new certificate",
        || {
            let (client, leaf) = (client.clone(), second_leaf.clone());
            let addr = s.addr;
            async move { H1::connect(addr, client).await.unwrap().server_cert == leaf }
        },
    )
    .await;
    for _ in 0..5 {
        let conn = H1::connect(s.addr, client.clone()).await.unwrap();
        assert_eq!(
            conn.server_cert, second_leaf,
            "every new connection after reload"
        );
    }

    // A broken update (key of another certificate) is rejected; the second one stays.
    let third = pki.ca.issue_server(&["x.example".into()], 30).unwrap();
    kubelet_update(
        &secret,
        "2026_11_21_12_00_00.3",
        &[("tls.crt", &third.cert_pem), ("tls.key", &second.key_pem)],
    );
    eventually(Duration::from_secs(5), "failed reload counted", || async {
        s.metric("spark_admission_certificate_reloads_total{result=\"failed\"}")
            .await
            == 1.0
    })
    .await;
    let conn = H1::connect(s.addr, client.clone()).await.unwrap();
    assert_eq!(conn.server_cert, second_leaf);
    let (status, _) = s.admin("/readyz").await;
    assert_eq!(status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::SeqCst);
    let first_leaf = leaf_der(&first.cert_pem);
    for (i, w) in workers.into_iter().enumerate() {
        let (count, seen) = w.await.unwrap();
        assert!(count > 0, "worker {i} made no request");
        assert!(seen.contains(&first_leaf), "worker {i}");
        if i < 2 {
            assert!(
                seen.contains(&second_leaf),
                "worker {i} never saw the new cert"
            );
        } else {
            assert_eq!(seen, vec![first_leaf.clone()], "the kept-alive connection");
        }
    }
    assert_eq!(
        s.metric("spark_admission_certificate_reloads_total{result=\"ok\"}")
            .await,
        2.0
    );
    s.stop().await;
}

fn executor_env_names(response: &Value, pod: &Value) -> Vec<String> {
    let patched = if response["patch"].is_string() {
        apply_response_patch(pod, response)
    } else {
        pod.clone()
    };
    patched["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reload_takes_valid_sets_and_rejects_invalid_ones_whole() {
    let s = TestServer::start("policy-reload", &[], |config, dir| {
        let cm = dir.join("configmap");
        std::fs::create_dir_all(&cm).unwrap();
        kubelet_update(&cm, "v1", &[("policies.yaml", TEST_POLICIES)]);
        config.policies = cm;
    })
    .await;
    let cm = s.dir.path().join("configmap");
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let review = admission_review("p", "CREATE", Some(&pod), false);
    let env = executor_env_names(&s.review(&review).await, &pod);
    assert!(env.contains(&"APP_ID".to_string()));
    assert_eq!(s.metric("spark_admission_policy_set_generation").await, 1.0);

    // A valid change: executors now get TENANT_ID instead of APP_ID.
    let v2 = TEST_POLICIES.replace(
        "{name: APP_ID, secretName: app, key: app_id}",
        "{name: TENANT_ID, secretName: app, key: tenant_id}",
    );
    kubelet_update(&cm, "v2", &[("policies.yaml", &v2)]);
    eventually(Duration::from_secs(5), "generation 2", || async {
        s.metric("spark_admission_policy_set_generation").await == 2.0
    })
    .await;
    let env = executor_env_names(&s.review(&review).await, &pod);
    assert!(env.contains(&"TENANT_ID".to_string()), "{env:?}");
    assert!(!env.contains(&"APP_ID".to_string()), "{env:?}");

    // An invalid change (one bad document next to a good one) is rejected whole.
    let v3 = format!(
        "{}---\napiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {{name: broken}}\nspec:\n  match: {{roles: [executor]}}\n  colour: blue\n",
        TEST_POLICIES.replace("APP_ID", "SHOULD_NOT_APPEAR")
    );
    kubelet_update(&cm, "v3", &[("policies.yaml", &v3)]);
    eventually(Duration::from_secs(5), "failed reload counted", || async {
        s.metric("spark_admission_policy_reloads_total{result=\"failed\"}")
            .await
            == 1.0
    })
    .await;
    assert_eq!(s.metric("spark_admission_policy_set_generation").await, 2.0);
    let env = executor_env_names(&s.review(&review).await, &pod);
    assert!(
        env.contains(&"TENANT_ID".to_string()),
        "old set still active: {env:?}"
    );
    assert!(!env.contains(&"SHOULD_NOT_APPEAR".to_string()), "{env:?}");
    let (status, _) = s.admin("/readyz").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the last good set keeps the server ready"
    );

    // Fixed again: accepted.
    kubelet_update(&cm, "v4", &[("policies.yaml", TEST_POLICIES)]);
    eventually(Duration::from_secs(5), "generation 3", || async {
        s.metric("spark_admission_policy_set_generation").await == 3.0
    })
    .await;
    let env = executor_env_names(&s.review(&review).await, &pod);
    assert!(env.contains(&"APP_ID".to_string()), "{env:?}");
    s.stop().await;
}
