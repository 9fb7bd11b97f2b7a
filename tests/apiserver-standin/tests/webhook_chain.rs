//! The admission chain against a real TLS webhook served in the test (hyper + rustls with
//! certificates from rcgen): the API server's side of each contract rule.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver_standin::admission::{CallRecord, Chain, PodCreate, UserInfo};
use apiserver_standin::client::WebhookClient;
use apiserver_standin::defaulting::default_pod;
use apiserver_standin::selector::Selector;
use apiserver_standin::webhook_config::{FailurePolicy, Target, Webhook};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

const SVC_DNS: &str = "spark-admission.spark-admission.svc";

struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
}

fn pki(dns: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![dns.to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        chain: vec![cert.der().clone(), ca_cert.der().clone()],
        key_pem: key.serialize_pem(),
    }
}

type Behaviour = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// What the fake webhook saw.
#[derive(Default)]
struct Seen {
    reviews: Mutex<Vec<Value>>,
    paths: Mutex<Vec<String>>,
    hosts: Mutex<Vec<String>>,
    alpn: Mutex<Vec<Option<Vec<u8>>>>,
    connections: AtomicUsize,
}

async fn start_webhook(
    pki: &Pki,
    delay: Duration,
    behaviour: Behaviour,
) -> (SocketAddr, Arc<Seen>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            pki.chain.clone(),
            PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen2.clone();
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                seen.connections.fetch_add(1, Ordering::SeqCst);
                seen.alpn
                    .lock()
                    .unwrap()
                    .push(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        let behaviour = behaviour.clone();
                        async move {
                            seen.paths.lock().unwrap().push(req.uri().to_string());
                            seen.hosts
                                .lock()
                                .unwrap()
                                .push(req.headers()["host"].to_str().unwrap().to_string());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            seen.reviews.lock().unwrap().push(review.clone());
                            tokio::time::sleep(delay).await;
                            let out = behaviour(&review);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(out.to_string()),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

fn hook(ca: &str, connect: Option<SocketAddr>, policy: FailurePolicy, timeout: u64) -> Webhook {
    Webhook {
        configuration: "spark-admission".into(),
        name: "spark-pods.spark-admission.dev".into(),
        target: Target::Service {
            name: "spark-admission".into(),
            namespace: "spark-admission".into(),
            port: 443,
            path: "/mutate".into(),
            connect,
        },
        ca_bundle: ca.as_bytes().to_vec(),
        rules: serde_json::from_value(json!([{"operations": ["CREATE"], "apiGroups": [""],
            "apiVersions": ["v1"], "resources": ["pods"]}]))
        .unwrap(),
        object_selector: Selector::parse("spark-role in (driver,executor)").unwrap(),
        namespace_selector: Selector::parse("kubernetes.io/metadata.name notin (kube-system)")
            .unwrap(),
        failure_policy: policy,
        timeout_seconds: timeout,
        reinvoke_if_needed: true,
        side_effects: "None".into(),
        admission_review_versions: vec!["v1".into()],
    }
}

fn allow_with_patch(patch: Value) -> Behaviour {
    Arc::new(move |review: &Value| {
        let uid = review["request"]["uid"].clone();
        let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": encoded,
                            "warnings": ["capped memory overhead"]}})
    })
}

/// Adds the toleration only when absent, like an idempotent webhook.
fn toleration_patch() -> Behaviour {
    Arc::new(|review: &Value| {
        let uid = review["request"]["uid"].clone();
        let tols = review["request"]["object"]["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let has = tols.iter().any(|t| t["key"] == "spot");
        let mut resp = json!({"uid": uid, "allowed": true});
        if !has {
            let patch = json!([{"op": "add", "path": "/spec/tolerations/-",
                "value": {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}}]);
            resp["patchType"] = json!("JSONPatch");
            resp["patch"] =
                json!(base64::engine::general_purpose::STANDARD.encode(patch.to_string()));
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
    })
}

fn spark_pod(name: &str) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"spark-role": "executor", "spark-app-selector": "spark-1"}},
        "spec": {"containers": [{"name": "spark-kubernetes-executor", "image": "apache/spark:3.5.7",
            "resources": {"requests": {"memory": "1408Mi"}, "limits": {"memory": "1408Mi"}},
            "volumeMounts": [{"name": "spark-local-dir-1", "mountPath": "/var/data/spark-1"}]}],
            "volumes": [{"name": "spark-local-dir-1", "emptyDir": {}}]}
    });
    default_pod(&mut pod, "spark-jobs", "abcde");
    pod
}

struct Run {
    result: Result<Value, (u16, Value)>,
    records: Vec<CallRecord>,
}

async fn admit(
    hooks: &[Webhook],
    client: &WebhookClient,
    pod: Value,
    ns: &str,
    probe: bool,
) -> Run {
    let ns_labels = BTreeMap::from([("kubernetes.io/metadata.name".to_string(), ns.to_string())]);
    let user = UserInfo {
        username: "tester".into(),
        groups: vec!["system:authenticated".into()],
    };
    let chain = Chain {
        hooks,
        client,
        probe_reinvocation: probe,
    };
    let mut records = Vec::new();
    let result = chain
        .admit(
            pod,
            &PodCreate {
                namespace: ns,
                namespace_labels: &ns_labels,
                user: &user,
                dry_run: false,
            },
            &mut records,
        )
        .await
        .map(|a| a.pod)
        .map_err(|e| (e.code.as_u16(), e.body));
    Run { result, records }
}

#[tokio::test]
async fn patch_applied_over_verified_tls_with_keep_alive_and_idempotent_reinvocation() {
    let pki = pki(SVC_DNS);
    let (addr, seen) = start_webhook(&pki, Duration::ZERO, toleration_patch()).await;
    let hooks = [hook(&pki.ca_pem, Some(addr), FailurePolicy::Fail, 7)];
    let client = WebhookClient::default();
    for i in 0..3 {
        let run = admit(
            &hooks,
            &client,
            spark_pod(&format!("exec-{i}")),
            "spark-jobs",
            true,
        )
        .await;
        let pod = run.result.unwrap();
        let tols = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tols.iter().filter(|t| t["key"] == "spot").count(), 1);
        assert_eq!(run.records.len(), 2, "first call + probe reinvocation");
        assert_eq!(run.records[0].outcome, "patched");
        assert!(run.records[1].reinvocation);
        assert_eq!(
            run.records[1].outcome, "allowed",
            "second call must not change the pod"
        );
    }
    // Keep-alive: six calls, one TLS connection.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(client.connections_opened(), 1);
    assert_eq!(
        seen.alpn.lock().unwrap()[0].as_deref(),
        Some(&b"http/1.1"[..])
    );
    let paths = seen.paths.lock().unwrap();
    assert!(paths.iter().all(|p| p == "/mutate?timeout=7s"), "{paths:?}");
    assert!(seen
        .hosts
        .lock()
        .unwrap()
        .iter()
        .all(|h| h == "spark-admission.spark-admission.svc:443"));
    let reviews = seen.reviews.lock().unwrap();
    let uids: std::collections::HashSet<_> = reviews
        .iter()
        .map(|r| r["request"]["uid"].clone())
        .collect();
    assert_eq!(uids.len(), reviews.len(), "fresh uid per call");
    let r = &reviews[0]["request"];
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(r["requestResource"]["resource"], "pods");
    assert_eq!(r["namespace"], "spark-jobs");
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["userInfo"]["username"], "tester");
    assert_eq!(
        r["object"]["spec"]["volumes"][1]["name"],
        "kube-api-access-abcde"
    );
}

#[tokio::test]
async fn selectors_decide_who_is_called() {
    let pki = pki(SVC_DNS);
    let (addr, seen) = start_webhook(&pki, Duration::ZERO, toleration_patch()).await;
    let hooks = [hook(&pki.ca_pem, Some(addr), FailurePolicy::Fail, 5)];
    let client = WebhookClient::default();
    let mut plain = spark_pod("web");
    plain["metadata"]["labels"] = json!({"app": "web"});
    let run = admit(&hooks, &client, plain.clone(), "spark-jobs", false).await;
    assert_eq!(run.result.unwrap(), plain);
    let run = admit(&hooks, &client, spark_pod("sys"), "kube-system", false).await;
    assert!(run.result.is_ok());
    assert!(run.records.is_empty());
    assert_eq!(seen.reviews.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn call_failures_follow_failure_policy() {
    let pki = pki(SVC_DNS);
    let wrong_name = pki_for_other_name();
    let (good, _) = start_webhook(&pki, Duration::ZERO, toleration_patch()).await;
    let (slow, _) = start_webhook(&pki, Duration::from_secs(3), toleration_patch()).await;
    let (misnamed, _) = start_webhook(&wrong_name, Duration::ZERO, toleration_patch()).await;
    let (bad_uid, _) = start_webhook(
        &pki,
        Duration::ZERO,
        Arc::new(|_: &Value| {
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": "not-the-request", "allowed": true}})
        }),
    )
    .await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let other_ca = pki_for_other_name().ca_pem;
    let cases: Vec<(&str, Option<SocketAddr>, String, u64, &str)> = vec![
        ("stopped", Some(closed), pki.ca_pem.clone(), 5, "dial tcp"),
        (
            "no endpoints",
            None,
            pki.ca_pem.clone(),
            5,
            "no endpoints available",
        ),
        ("unknown CA", Some(good), other_ca, 5, "tls"),
        (
            "wrong DNS name",
            Some(misnamed),
            wrong_name.ca_pem.clone(),
            5,
            "tls",
        ),
        (
            "timeout",
            Some(slow),
            pki.ca_pem.clone(),
            1,
            "deadline exceeded",
        ),
        (
            "uid mismatch",
            Some(bad_uid),
            pki.ca_pem.clone(),
            5,
            "expected response.uid",
        ),
    ];
    for (what, connect, ca, timeout, msg) in cases {
        let client = WebhookClient::default();
        let started = Instant::now();
        let fail = admit(
            &[hook(&ca, connect, FailurePolicy::Fail, timeout)],
            &client,
            spark_pod("p"),
            "spark-jobs",
            false,
        )
        .await;
        let (code, status) = fail.result.expect_err(what);
        assert_eq!(code, 500, "{what}");
        assert_eq!(status["reason"], "InternalError", "{what}");
        let m = status["message"].as_str().unwrap();
        assert!(m.starts_with("Internal error occurred: failed calling webhook \"spark-pods.spark-admission.dev\""), "{what}: {m}");
        assert!(m.contains(msg), "{what}: {m}");
        assert!(
            started.elapsed() < Duration::from_millis(timeout * 1000 + 900),
            "{what} took {:?}",
            started.elapsed()
        );
        let ignore = admit(
            &[hook(&ca, connect, FailurePolicy::Ignore, timeout)],
            &client,
            spark_pod("p"),
            "spark-jobs",
            false,
        )
        .await;
        assert_eq!(
            ignore.result.expect(what),
            spark_pod("p"),
            "{what}: admitted unmodified"
        );
        assert_eq!(ignore.records[0].outcome, "failed-open", "{what}");
    }
}

fn pki_for_other_name() -> Pki {
    pki("other.example.svc")
}

#[tokio::test]
async fn broken_patches_reject_even_under_ignore() {
    let pki = pki(SVC_DNS);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "duplicate volume",
            json!([{"op": "add", "path": "/spec/volumes/-", "value": {"name": "spark-local-dir-1", "emptyDir": {}}}]),
            422,
            "spec.volumes[2].name: Duplicate value: \"spark-local-dir-1\"",
        ),
        (
            "mount without volume",
            json!([{"op": "add", "path": "/spec/containers/0/volumeMounts/-", "value": {"name": "nope", "mountPath": "/x"}}]),
            422,
            "Not found: \"nope\"",
        ),
        (
            "Exists with value",
            json!([{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "k", "operator": "Exists", "value": "v"}}]),
            422,
            "value must be empty",
        ),
        (
            "request over limit",
            json!([{"op": "replace", "path": "/spec/containers/0/resources/requests/memory", "value": "2Gi"}]),
            422,
            "must be less than or equal to memory limit",
        ),
        (
            "does not apply",
            json!([{"op": "remove", "path": "/spec/nodeSelector/x"}]),
            500,
            "applying patch",
        ),
        (
            "test op fails",
            json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
            500,
            "applying patch",
        ),
    ];
    for (what, patch, code, msg) in cases {
        let (addr, _) = start_webhook(&pki, Duration::ZERO, allow_with_patch(patch)).await;
        let client = WebhookClient::default();
        let run = admit(
            &[hook(&pki.ca_pem, Some(addr), FailurePolicy::Ignore, 5)],
            &client,
            spark_pod("p"),
            "spark-jobs",
            false,
        )
        .await;
        let (got, status) = run.result.expect_err(what);
        assert_eq!(got, code, "{what}: {status}");
        assert!(
            status["message"].as_str().unwrap().contains(msg),
            "{what}: {status}"
        );
    }
}

#[tokio::test]
async fn denial_is_reported_like_the_api_server() {
    let pki = pki(SVC_DNS);
    let (addr, _) = start_webhook(&pki, Duration::ZERO, Arc::new(|r: &Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": r["request"]["uid"], "allowed": false,
                            "status": {"code": 403, "message": "policy memory-cap: overhead 40% over 25%"}}})
    })).await;
    let client = WebhookClient::default();
    let run = admit(
        &[hook(&pki.ca_pem, Some(addr), FailurePolicy::Ignore, 5)],
        &client,
        spark_pod("p"),
        "spark-jobs",
        false,
    )
    .await;
    let (code, status) = run.result.unwrap_err();
    assert_eq!(code, 403);
    assert_eq!(
        status["message"],
        "admission webhook \"spark-pods.spark-admission.dev\" denied the request: policy memory-cap: overhead 40% over 25%"
    );
}
