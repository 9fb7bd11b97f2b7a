//! The admission chain against a real TLS webhook served in the test (hyper + rustls with
//! certificates from rcgen): the API server's side of each contract rule.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiserver_standin::admission::{CallRecord, Chain, PodCreate, UserInfo};
use apiserver_standin::client::WebhookClient;
use apiserver_standin::plugins::PriorityClass;
use apiserver_standin::selector::Selector;
use apiserver_standin::webhook_config::{FailurePolicy, Target, Webhook};
use apiserver_standin::{defaulting, typed};
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
    start_webhook_answering(pki, delay, behaviour, None).await
}

/// A webhook whose answers carry `content_type` (None: no Content-Type header).
async fn start_webhook_answering(
    pki: &Pki,
    delay: Duration,
    behaviour: Behaviour,
    content_type: Option<&'static str>,
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
                            let mut resp =
                                hyper::Response::new(Full::new(Bytes::from(out.to_string())));
                            if let Some(ct) = content_type {
                                resp.headers_mut().insert(
                                    "content-type",
                                    hyper::header::HeaderValue::from_static(ct),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(resp)
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

fn raw_spark_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"spark-role": "executor", "spark-app-selector": "spark-1"}},
        "spec": {"containers": [{"name": "spark-kubernetes-executor", "image": "apache/spark:3.5.7",
            "resources": {"requests": {"memory": "1408Mi"}, "limits": {"memory": "1408Mi"}},
            "volumeMounts": [{"name": "spark-local-dir-1", "mountPath": "/var/data/spark-1"}]}],
            "volumes": [{"name": "spark-local-dir-1", "emptyDir": {}}]}
    })
}

/// As the create handler hands it to admission: decoded, defaulted, internal.
fn decoded(raw: &Value) -> Value {
    let mut pod = typed::pod(raw).unwrap().value;
    defaulting::pod(&mut pod);
    typed::to_internal(&mut pod);
    pod["metadata"]["namespace"] = json!("spark-jobs");
    pod
}

fn spark_pod(name: &str) -> Value {
    decoded(&raw_spark_pod(name))
}

/// The random token volume name made comparable.
fn normalized(mut pod: Value) -> Value {
    let text = pod.to_string();
    if let Some(i) = text.find("kube-api-access-") {
        let generated = &text[i..i + "kube-api-access-".len() + 5];
        pod = serde_json::from_str(&text.replace(generated, "kube-api-access-xxxxx")).unwrap();
    }
    pod
}

struct Run {
    result: Result<Value, (u16, Value)>,
    warnings: Vec<String>,
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
    admit_with(
        hooks,
        client,
        pod,
        ns,
        &ns_labels,
        &PriorityClass::system(),
        probe,
    )
    .await
}

async fn admit_with(
    hooks: &[Webhook],
    client: &WebhookClient,
    pod: Value,
    ns: &str,
    ns_labels: &BTreeMap<String, String>,
    classes: &[PriorityClass],
    probe: bool,
) -> Run {
    let user = UserInfo {
        username: "tester".into(),
        groups: vec!["system:authenticated".into()],
    };
    let chain = Chain {
        hooks,
        client,
        priority_classes: classes,
        probe_reinvocation: probe,
    };
    let mut records = Vec::new();
    let result = chain
        .admit(
            pod,
            &PodCreate {
                namespace: ns,
                namespace_labels: ns_labels,
                user: &user,
                dry_run: false,
                limit_ranges: &[],
            },
            &mut records,
        )
        .await
        .map(|a| (a.pod, a.warnings))
        .map_err(|e| (e.code.as_u16(), e.body));
    let warnings = result.as_ref().map(|r| r.1.clone()).unwrap_or_default();
    Run {
        result: result.map(|r| r.0),
        warnings,
        records,
    }
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
        assert!(run.records[1].reinvocation && run.records[1].probe);
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
    assert!(r["object"]["spec"]["volumes"][1]["name"]
        .as_str()
        .unwrap()
        .starts_with("kube-api-access-"));
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
    assert!(run.result.is_ok() && run.records.is_empty());
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
        let untouched = admit(&[], &client, spark_pod("p"), "spark-jobs", false).await;
        assert_eq!(
            normalized(ignore.result.expect(what)),
            normalized(untouched.result.unwrap()),
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
            "Internal error occurred: remove operation does not apply: doc is missing path: \"/spec/nodeSelector/x\": missing value",
        ),
        (
            "test op fails",
            json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
            500,
            "Internal error occurred: testing value /metadata/name failed: test failed",
        ),
        (
            "result does not decode",
            json!([{"op": "add", "path": "/spec/priority", "value": "high"}]),
            500,
            "Internal error occurred: json: cannot unmarshal string into Go struct field PodSpec.spec.priority of type int64",
        ),
        (
            "two sources on one volume",
            json!([{"op": "add", "path": "/spec/volumes/0/hostPath", "value": {"path": "/mnt/nvme0"}}]),
            422,
            "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
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

// ---------------------------------------------------------------------------------------------
// Probes: each behaviour of the real API server the stand-in did not reproduce before, shown
// by a test that the earlier stand-in fails.

/// The labels of the namespace `spark-jobs`, plus `extra`.
fn spark_jobs_labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    [("kubernetes.io/metadata.name", "spark-jobs")]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An answer allowing the request with `ops` as its JSON patch (none when `ops` is empty).
fn respond(review: &Value, ops: Value) -> Value {
    let mut resp = json!({"uid": review["request"]["uid"], "allowed": true});
    if ops.as_array().is_some_and(|a| !a.is_empty()) {
        resp["patchType"] = json!("JSONPatch");
        resp["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(ops.to_string()));
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
}

fn behaviour(f: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Behaviour {
    Arc::new(move |review: &Value| respond(review, f(&review["request"]["object"])))
}

fn named(mut h: Webhook, name: &str, reinvoke: bool) -> Webhook {
    h.name = name.into();
    h.reinvoke_if_needed = reinvoke;
    h
}

async fn one_hook(policy: FailurePolicy, b: Behaviour) -> (Vec<Webhook>, WebhookClient) {
    let pki = pki(SVC_DNS);
    let (addr, _) = start_webhook(&pki, Duration::ZERO, b).await;
    (
        vec![hook(&pki.ca_pem, Some(addr), policy, 5)],
        WebhookClient::default(),
    )
}

fn keys(tolerations: &Value) -> Vec<String> {
    tolerations
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["key"].as_str().unwrap_or("").to_string())
        .collect()
}

/// reinvocation.go: the whole chain runs again, the Priority plugin included, which rejects a
/// class whose priority differs from the one it set in the first round.
#[tokio::test]
async fn a_priority_class_set_by_a_webhook_is_forbidden_in_the_second_round() {
    let (hooks, client) = one_hook(
        FailurePolicy::Fail,
        behaviour(
            |_| json!([{"op": "add", "path": "/spec/priorityClassName", "value": "spark-high"}]),
        ),
    )
    .await;
    let mut classes = PriorityClass::system();
    classes.push(PriorityClass::new("spark-high", 1000));
    let ns = BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        "spark-jobs".to_string(),
    )]);
    let run = admit_with(
        &hooks,
        &client,
        spark_pod("exec-1"),
        "spark-jobs",
        &ns,
        &classes,
        false,
    )
    .await;
    let (code, status) = run.result.unwrap_err();
    assert_eq!(code, 403);
    assert_eq!(status["message"], "pods \"exec-1\" is forbidden: the integer value of priority (0) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name");
}

/// The second round's DefaultTolerationSeconds puts back the tolerations a webhook replaced;
/// that change reinvokes the IfNeeded webhook (round 1), which now sees them.
#[tokio::test]
async fn default_tolerations_a_webhook_replaces_come_back_and_reinvoke_it() {
    let (hooks, client) = one_hook(
        FailurePolicy::Fail,
        behaviour(|pod| {
            if keys(&pod["spec"]["tolerations"]).contains(&"spot".to_string()) {
                json!([])
            } else {
                json!([{"op": "add", "path": "/spec/tolerations", "value": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]}])
            }
        }),
    )
    .await;
    let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", false).await;
    let pod = run.result.unwrap();
    assert_eq!(
        keys(&pod["spec"]["tolerations"]),
        [
            "spot",
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable"
        ]
    );
    let calls: Vec<(u8, bool, bool, &str)> = run
        .records
        .iter()
        .map(|r| (r.round, r.reinvocation, r.probe, r.outcome.as_str()))
        .collect();
    assert_eq!(
        calls,
        [(0, false, false, "patched"), (1, true, false, "allowed")]
    );
    assert_eq!(
        keys(&run.records[1].object["spec"]["tolerations"]).len(),
        3,
        "the reinvocation received the round-2 object"
    );
}

/// The second round's ServiceAccount plugin mounts the token in a container a webhook added.
#[tokio::test]
async fn a_container_a_webhook_adds_gets_the_token_mounted_in_the_second_round() {
    let (hooks, client) = one_hook(
        FailurePolicy::Fail,
        behaviour(|pod| {
            if pod["spec"]["initContainers"].is_array() {
                json!([])
            } else {
                json!([{"op": "add", "path": "/spec/initContainers", "value": [{"name": "fetch", "image": "busybox:1.36"}]}])
            }
        }),
    )
    .await;
    let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", false).await;
    let pod = run.result.unwrap();
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(
        init["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(
        init["imagePullPolicy"], "IfNotPresent",
        "re-defaulted after the patch"
    );
}

/// An earlier IfNeeded webhook is called again when a later one changed the object; one with
/// `reinvocationPolicy: Never` is not.
#[tokio::test]
async fn only_if_needed_webhooks_before_a_later_change_are_reinvoked() {
    let pki = pki(SVC_DNS);
    let label = |k: &'static str| {
        behaviour(move |pod| {
            if pod["metadata"]["labels"][k].is_null() {
                json!([{"op": "add", "path": format!("/metadata/labels/{k}"), "value": "x"}])
            } else {
                json!([])
            }
        })
    };
    let (a, _) = start_webhook(&pki, Duration::ZERO, label("a")).await;
    let (b, _) = start_webhook(&pki, Duration::ZERO, label("b")).await;
    let client = WebhookClient::default();
    for (reinvoke_a, want_a_calls) in [(true, 2), (false, 1)] {
        let hooks = [
            named(
                hook(&pki.ca_pem, Some(a), FailurePolicy::Fail, 5),
                "a.example.dev",
                reinvoke_a,
            ),
            named(
                hook(&pki.ca_pem, Some(b), FailurePolicy::Fail, 5),
                "b.example.dev",
                false,
            ),
        ];
        let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", false).await;
        assert!(run.result.is_ok());
        let count = |w: &str| run.records.iter().filter(|r| r.webhook == w).count();
        assert_eq!(
            (count("a.example.dev"), count("b.example.dev")),
            (want_a_calls, 1)
        );
    }
}

/// VerifyAdmissionResponse: `patchType` without `patch` is an invalid response, a call
/// failure that failurePolicy decides.
#[tokio::test]
async fn patch_type_without_patch_is_an_invalid_response() {
    for body in [json!({}), json!({"patch": ""}), json!({"patch": null})] {
        let answer = Arc::new(move |review: &Value| {
            let mut resp =
                json!({"uid": review["request"]["uid"], "allowed": true, "patchType": "JSONPatch"});
            for (k, v) in body.as_object().unwrap() {
                resp[k] = v.clone();
            }
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
        });
        let (hooks, client) = one_hook(FailurePolicy::Fail, answer.clone()).await;
        let (code, status) = admit(&hooks, &client, spark_pod("p"), "spark-jobs", false)
            .await
            .result
            .unwrap_err();
        assert_eq!(code, 500);
        assert_eq!(status["message"], "Internal error occurred: failed calling webhook \"spark-pods.spark-admission.dev\": received invalid webhook response: webhook returned response.patchType but not response.patch");
        let (hooks, client) = one_hook(FailurePolicy::Ignore, answer).await;
        let run = admit(&hooks, &client, spark_pod("p"), "spark-jobs", false).await;
        assert!(run.result.is_ok());
        assert_eq!(run.records[0].outcome, "failed-open");
    }
}

/// dispatcher.go: a patch that does not decode is `ErrCallingWebhook`, so Ignore admits.
#[tokio::test]
async fn an_undecodable_patch_follows_failure_policy() {
    let answer: Behaviour = Arc::new(|review: &Value| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": review["request"]["uid"], "allowed": true, "patchType": "JSONPatch",
                            "patch": base64::engine::general_purpose::STANDARD.encode("{\"op\": \"add\"}")}})
    });
    let (hooks, client) = one_hook(FailurePolicy::Ignore, answer.clone()).await;
    let run = admit(&hooks, &client, spark_pod("p"), "spark-jobs", false).await;
    assert!(run.result.is_ok());
    assert_eq!(run.records[0].outcome, "failed-open");
    let (hooks, client) = one_hook(FailurePolicy::Fail, answer).await;
    let (code, status) = admit(&hooks, &client, spark_pod("p"), "spark-jobs", false)
        .await
        .result
        .unwrap_err();
    assert_eq!(code, 500);
    assert_eq!(status["message"], "Internal error occurred: failed calling webhook \"spark-pods.spark-admission.dev\": received undecodable patch in webhook response: json: cannot unmarshal object into Go value of type jsonpatch.Patch");
}

/// The webhook client decodes any media type with its one serializer: `text/plain` is fine.
#[tokio::test]
async fn an_answer_labelled_text_plain_is_decoded() {
    let pki = pki(SVC_DNS);
    let (addr, _) = start_webhook_answering(
        &pki,
        Duration::ZERO,
        behaviour(|_| json!([{"op": "add", "path": "/metadata/labels/seen", "value": "yes"}])),
        Some("text/plain; charset=utf-8"),
    )
    .await;
    let hooks = [hook(&pki.ca_pem, Some(addr), FailurePolicy::Fail, 5)];
    let run = admit(
        &hooks,
        &WebhookClient::default(),
        spark_pod("p"),
        "spark-jobs",
        false,
    )
    .await;
    assert_eq!(run.result.unwrap()["metadata"]["labels"]["seen"], "yes");
}

/// dispatcher.go re-defaults every patched object: an ephemeral volume's claim gets
/// `volumeMode: Filesystem`, a volume without a source `emptyDir: {}`. A webhook that compares
/// whole volumes with its own then patches again when called again — the probe shows it; one
/// comparing only the fields it sets does not.
#[tokio::test]
async fn what_a_webhook_adds_is_defaulted_and_the_probe_catches_whole_volume_comparison() {
    let wanted = json!({"name": "spark-local-dir-1", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "200Gi"}}}}}});
    let bare = json!({"name": "scratch"});
    let whole = {
        let (wanted, bare) = (wanted.clone(), bare.clone());
        behaviour(move |pod| {
            let vols = pod["spec"]["volumes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut ops = vec![];
            if !vols.contains(&wanted) {
                ops.push(json!({"op": "replace", "path": "/spec/volumes/0", "value": wanted}));
            }
            if !vols.iter().any(|v| v["name"] == "scratch") {
                ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": bare}));
            }
            Value::Array(ops)
        })
    };
    let fields_it_sets = behaviour(|pod| {
        let first = &pod["spec"]["volumes"][0];
        let set = first["ephemeral"]["volumeClaimTemplate"]["spec"]["storageClassName"] == "gp3";
        if set {
            json!([])
        } else {
            json!([{"op": "replace", "path": "/spec/volumes/0", "value": {"name": "spark-local-dir-1",
                "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                "resources": {"requests": {"storage": "200Gi"}}}}}}},
                   {"op": "add", "path": "/spec/volumes/-", "value": {"name": "scratch"}}])
        }
    });
    for (b, probe_outcome) in [(whole, "patched"), (fields_it_sets, "allowed")] {
        let (hooks, client) = one_hook(FailurePolicy::Fail, b).await;
        let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", true).await;
        let pod = run.result.unwrap();
        let vols = &pod["spec"]["volumes"];
        assert_eq!(
            vols[0]["ephemeral"]["volumeClaimTemplate"]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(vols[2]["emptyDir"], json!({}), "{vols}");
        let probe: Vec<&str> = run
            .records
            .iter()
            .filter(|r| r.probe)
            .map(|r| r.outcome.as_str())
            .collect();
        assert_eq!(probe, [probe_outcome]);
    }
}

/// PodSecurity judges the pod after mutation: a hostPath a webhook adds is refused in a
/// `baseline` namespace; `warn` adds a warning.
#[tokio::test]
async fn pod_security_judges_the_patched_pod() {
    let (hooks, client) = one_hook(
        FailurePolicy::Ignore,
        behaviour(|_| json!([{"op": "replace", "path": "/spec/volumes/0", "value": {"name": "spark-local-dir-1", "hostPath": {"path": "/mnt/nvme0", "type": "Directory"}}}])),
    )
    .await;
    let ns = spark_jobs_labels(&[("pod-security.kubernetes.io/enforce", "baseline")]);
    let run = admit_with(
        &hooks,
        &client,
        spark_pod("exec-1"),
        "spark-jobs",
        &ns,
        &PriorityClass::system(),
        false,
    )
    .await;
    let (code, status) = run.result.unwrap_err();
    assert_eq!(code, 403);
    assert_eq!(status["message"], "pods \"exec-1\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"spark-local-dir-1\")");

    let warn_only = spark_jobs_labels(&[("pod-security.kubernetes.io/warn", "restricted")]);
    let run = admit_with(
        &[],
        &client,
        spark_pod("exec-1"),
        "spark-jobs",
        &warn_only,
        &PriorityClass::system(),
        false,
    )
    .await;
    assert!(run.result.is_ok());
    assert!(
        run.warnings[0].starts_with(
            "would violate PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"
        ),
        "{:?}",
        run.warnings
    );
}

/// Patches the real library applies and an RFC-strict one refuses.
#[tokio::test]
async fn json_patch_as_the_api_servers_library_applies_it() {
    for ops in [
        json!([{"op": "replace", "path": "/spec/nodeSelector", "value": {"pool": "spot"}}]),
        json!([{"op": "test", "path": "/metadata/annotations", "value": null},
               {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}]),
        json!([{"op": "remove", "path": "/spec/containers/0/volumeMounts/-1"}]),
    ] {
        let o = ops.clone();
        let (hooks, client) = one_hook(FailurePolicy::Fail, behaviour(move |_| o.clone())).await;
        let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", false).await;
        assert!(run.result.is_ok(), "{ops}: {:?}", run.result);
        assert_eq!(run.records[0].outcome, "patched", "{ops}");
    }
}

/// `equality.Semantic` compares quantities by value: respelling one is no change, so no
/// second round.
#[tokio::test]
async fn a_patch_that_only_respells_a_quantity_changes_nothing() {
    let (hooks, client) = one_hook(
        FailurePolicy::Fail,
        behaviour(|_| json!([{"op": "replace", "path": "/spec/containers/0/resources/requests/memory", "value": "1476395008"}])),
    )
    .await;
    let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", false).await;
    assert!(run.result.is_ok());
    let outcomes: Vec<&str> = run.records.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["allowed"]);
}

/// ValidateAnnotations lower-cases keys before checking them.
#[tokio::test]
async fn an_upper_case_annotation_key_is_admitted() {
    let (hooks, client) = one_hook(
        FailurePolicy::Fail,
        behaviour(|_| json!([{"op": "add", "path": "/metadata/annotations", "value": {"Example.COM/Owner": "data"}}])),
    )
    .await;
    let run = admit(&hooks, &client, spark_pod("exec-1"), "spark-jobs", false).await;
    assert!(run.result.is_ok(), "{:?}", run.result);
}

/// The webhook receives the typed encoding of what the client sent, not its bytes.
#[tokio::test]
async fn the_webhook_receives_the_typed_encoding_of_the_submitted_pod() {
    use apiserver_standin::server::{router, AppState};
    let pki = pki(SVC_DNS);
    let (addr, seen) = start_webhook(&pki, Duration::ZERO, behaviour(|_| json!([]))).await;
    let (events, _) = tokio::sync::broadcast::channel(16);
    let state = Arc::new(AppState {
        hooks: vec![hook(&pki.ca_pem, Some(addr), FailurePolicy::Fail, 5)],
        client: WebhookClient::default(),
        probe_reinvocation: false,
        priority_classes: PriorityClass::system(),
        namespaces: BTreeMap::from([(
            "spark-jobs".to_string(),
            BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                "spark-jobs".to_string(),
            )]),
        )]),
        user: UserInfo {
            username: "t".into(),
            groups: vec![],
        },
        store: Mutex::new(Default::default()),
        events,
        dump_dir: None,
        record_raw: None,
        recorded: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let mut raw = raw_spark_pod("exec-1");
    raw["spec"]["containers"][0]["resources"]["requests"]["memory"] = json!("2048Mi");
    raw["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("2048Mi");
    raw["spec"]["containers"][0]["env"] = json!([{"name": "EMPTY", "value": ""}]);
    raw["spec"]["containers"][0]["ports"] = json!([]);
    raw["spec"]["containers"][0]["frobnicate"] = json!(true);
    raw["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "s:1"}));
    let tcp = tokio::net::TcpStream::connect(api).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/api/v1/namespaces/spark-jobs/pods")
        .header("host", api.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(raw.to_string())))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warning = resp.headers()["warning"].to_str().unwrap().to_string();
    assert_eq!(
        warning,
        r#"299 - "unknown field \"spec.containers[0].frobnicate\"""#
    );
    let reviews = seen.reviews.lock().unwrap();
    let obj = &reviews[0]["request"]["object"];
    let c = &obj["spec"]["containers"][0];
    assert_eq!(c["resources"]["requests"]["memory"], "2Gi");
    assert_eq!(c["env"][0], json!({"name": "EMPTY"}));
    assert!(c.get("ports").is_none() && c.get("frobnicate").is_none());
    assert_eq!(obj["spec"]["containers"][1]["resources"], json!({}));
    assert_eq!(obj["spec"]["serviceAccount"], "default");
    assert_eq!(obj["metadata"]["creationTimestamp"], Value::Null);
    assert_eq!(obj["status"], json!({}));
}
