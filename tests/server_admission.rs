//! The admission endpoint over real TLS: Spark fixtures, other operations, every malformed
//! input of the README table, the caller's timeout, HTTP/2.

mod common;

use std::time::{Duration, Instant};

use common::server::*;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Frame};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

async fn server(name: &str) -> TestServer {
    TestServer::start(name, &[("policies.yaml", TEST_POLICIES)], |_, _| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spark_fixtures_get_a_patch_that_makes_a_valid_pod_and_is_idempotent() {
    let s = server("fixtures").await;
    for (name, pod) in fixtures() {
        let pod = api_server_defaults(pod);
        let uid = format!("uid-{name}");
        let r = s
            .review(&admission_review(&uid, "CREATE", Some(&pod), false))
            .await;
        assert_eq!(r["uid"], uid.as_str(), "{name}");
        assert_eq!(r["allowed"], true, "{name}: {r}");
        let role = pod["metadata"]["labels"]["spark-role"].as_str().unwrap();
        let policy = if role == "executor" {
            "executors-on-spot"
        } else {
            "drivers-on-demand"
        };
        assert_eq!(r["auditAnnotations"]["policies"], policy, "{name}: {r}");
        for w in r["warnings"].as_array().into_iter().flatten() {
            assert!(w.as_str().unwrap().chars().count() <= 120, "{name}: {w}");
        }
        assert!(r["patch"].is_string(), "{name}: expected a patch: {r}");
        let patched = apply_response_patch(&pod, &r);
        assert_valid_pod(&patched, &name);
        // The API server's own additions survive the patch.
        let tolerations = patched["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable"));
        let volumes = patched["spec"]["volumes"].as_array().unwrap();
        assert!(volumes
            .iter()
            .any(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-")));
        let env_names: Vec<String> = patched["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["env"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect();
        let injected = if role == "executor" {
            "APP_ID"
        } else {
            "APP_SECRET"
        };
        assert!(env_names.iter().any(|n| n == injected), "{name}");

        // reinvocationPolicy: IfNeeded sends our own output back: nothing more to change.
        let again = s
            .review(&admission_review(&uid, "CREATE", Some(&patched), false))
            .await;
        assert_eq!(again["allowed"], true);
        assert!(
            again.get("patch").is_none(),
            "{name}: second pass patched: {again}"
        );
    }
    assert_eq!(
        s.metric("spark_admission_admissions_total{outcome=\"patched\",role=\"executor\"}")
            .await,
        2.0
    );
    assert!(
        s.metric("spark_admission_policy_applications_total{policy=\"drivers-on-demand\",mode=\"enforce\"}")
            .await
            >= 3.0,
        "each driver counted"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_pods_and_operations_are_allowed_unchanged_and_dry_run_is_answered() {
    let s = server("operations").await;
    let executor = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let mut plain = executor.clone();
    plain["metadata"]["labels"] = json!({"app": "web"});
    let mut not_spark_role = executor.clone();
    not_spark_role["metadata"]["labels"]["spark-role"] = json!("shuffle-service");
    for (what, review) in [
        (
            "non-Spark pod",
            admission_review("a", "CREATE", Some(&plain), false),
        ),
        (
            "unknown spark-role",
            admission_review("b", "CREATE", Some(&not_spark_role), false),
        ),
        (
            "UPDATE",
            admission_review("c", "UPDATE", Some(&executor), false),
        ),
        (
            "DELETE",
            admission_review("d", "DELETE", Some(&executor), false),
        ),
    ] {
        let r = s.review(&review).await;
        assert_eq!(r["uid"], review["request"]["uid"], "{what}");
        assert_eq!(r["allowed"], true, "{what}");
        assert!(r.get("patch").is_none(), "{what}: {r}");
        assert!(r.get("status").is_none(), "{what}: {r}");
    }

    let wet = s
        .review(&admission_review("e", "CREATE", Some(&executor), false))
        .await;
    let dry = s
        .review(&admission_review("f", "CREATE", Some(&executor), true))
        .await;
    assert_eq!(dry["uid"], "f");
    assert_eq!(dry["allowed"], true);
    assert!(dry["patch"].is_string());
    assert_eq!(dry["patch"], wet["patch"], "dry run gets the same answer");
    assert_eq!(
        s.metric("spark_admission_admissions_total{outcome=\"unchanged\",role=\"none\"}")
            .await,
        4.0,
        "non-Spark CREATE, unknown role, UPDATE, DELETE"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_negotiated_and_served() {
    let s = server("h2").await;
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let config = client_tls(s.pki.ca.cert_pem(), None, &[b"h2"]);
    let (alpn, answer) = post_h2(
        s.addr,
        config,
        json_bytes(&admission_review("h2", "CREATE", Some(&pod), false)),
    )
    .await
    .unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let r = answer.review_response();
    assert_eq!(r["uid"], "h2");
    assert!(r["patch"].is_string());
    let h1 = s.connect().await;
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    s.stop().await;
}

/// One row of the README's malformed-input table.
struct Case {
    what: &'static str,
    path: &'static str,
    method: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    /// For HTTP 200: the AdmissionReview is a denial with status.code 400.
    contains: &'static str,
}

fn review_with(request: Value) -> Vec<u8> {
    json_bytes(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}),
    )
}

fn cases() -> Vec<Case> {
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let good = admission_review("m", "CREATE", Some(&pod), false);
    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_version = good.clone();
    no_version.as_object_mut().unwrap().remove("apiVersion");
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("Pod");
    let mut no_uid = good.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let mut no_operation = good.clone();
    no_operation["request"]
        .as_object_mut()
        .unwrap()
        .remove("operation");
    let mut no_object = good.clone();
    no_object["request"]["object"] = Value::Null;
    let mut configmap = good.clone();
    configmap["request"]["object"] =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let mut broken_pod = good.clone();
    broken_pod["request"]["object"]["spec"]["containers"] = json!("not a list");
    let c = |what, body: Vec<u8>, status, contains| Case {
        what,
        path: "/mutate?timeout=10s",
        method: "POST",
        content_type: Some("application/json"),
        body,
        status,
        contains,
    };
    vec![
        c(
            "not JSON",
            b"{\"apiVersion\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "request body is not valid JSON",
        ),
        c(
            "JSON nested too deep",
            "[".repeat(300).into_bytes(),
            StatusCode::BAD_REQUEST,
            "recursion limit exceeded",
        ),
        c(
            "JSON but not an object",
            b"[1,2,3]".to_vec(),
            StatusCode::BAD_REQUEST,
            "is a JSON array, expected an AdmissionReview object",
        ),
        c(
            "no apiVersion",
            json_bytes(&no_version),
            StatusCode::BAD_REQUEST,
            "apiVersion is missing",
        ),
        c(
            "wrong apiVersion",
            json_bytes(&wrong_version),
            StatusCode::BAD_REQUEST,
            "unsupported apiVersion \"admission.k8s.io/v1beta1\"",
        ),
        c(
            "wrong kind",
            json_bytes(&wrong_kind),
            StatusCode::BAD_REQUEST,
            "kind is \"Pod\", expected \"AdmissionReview\"",
        ),
        c(
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "AdmissionReview has no request object",
        ),
        c(
            "no uid",
            json_bytes(&no_uid),
            StatusCode::BAD_REQUEST,
            "request.uid is missing",
        ),
        c(
            "no operation",
            json_bytes(&no_operation),
            StatusCode::OK,
            "request.operation is missing",
        ),
        c(
            "no kind",
            review_with(json!({"uid": "m", "operation": "CREATE"})),
            StatusCode::OK,
            "request.kind is missing",
        ),
        c(
            "Pod CREATE without object",
            json_bytes(&no_object),
            StatusCode::OK,
            "request.object is missing",
        ),
        c(
            "object is not a Pod",
            json_bytes(&configmap),
            StatusCode::OK,
            "request.object is not a Pod: its kind is \"ConfigMap\"",
        ),
        c(
            "object does not read as a Pod",
            json_bytes(&broken_pod),
            StatusCode::OK,
            "request.object cannot be read as a Pod",
        ),
        c(
            "body over the limit",
            vec![b' '; 70 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than the limit of 65536 bytes",
        ),
        Case {
            content_type: Some("application/x-www-form-urlencoded"),
            ..c(
                "wrong Content-Type",
                json_bytes(&good),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            )
        },
        Case {
            path: "/mutate?timeout=soon",
            ..c(
                "bad ?timeout=",
                json_bytes(&good),
                StatusCode::BAD_REQUEST,
                "invalid ?timeout= query",
            )
        },
        Case {
            method: "GET",
            ..c(
                "GET /mutate",
                vec![],
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST /mutate",
            )
        },
        Case {
            path: "/validate",
            ..c(
                "unknown path",
                json_bytes(&good),
                StatusCode::NOT_FOUND,
                "the admission endpoint is POST /mutate",
            )
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_input_gets_its_documented_answer() {
    let s = TestServer::start("malformed", &[("p.yaml", TEST_POLICIES)], |c, _| {
        c.max_body_bytes = 64 * 1024;
    })
    .await;
    let mut conn = s.connect().await;
    for case in cases() {
        let mut req = Request::builder()
            .method(case.method)
            .uri(case.path)
            .header("host", SERVICE_DNS);
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        assert!(
            conn.ready().await,
            "{}: a refusal must keep the connection usable",
            case.what
        );
        let answer = conn
            .request(req.body(Full::new(Bytes::from(case.body))).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        assert_eq!(
            answer.status,
            case.status,
            "{}: {}",
            case.what,
            answer.text()
        );
        if case.status == StatusCode::OK {
            let r = answer.review_response();
            assert_eq!(r["uid"], "m", "{}", case.what);
            assert_eq!(r["allowed"], false, "{}", case.what);
            assert_eq!(r["status"]["code"], 400, "{}", case.what);
            let msg = r["status"]["message"].as_str().unwrap();
            assert!(msg.contains(case.contains), "{}: {msg}", case.what);
        } else {
            let text = answer.text();
            assert!(text.contains(case.contains), "{}: {text}", case.what);
        }
    }
    // Nothing took the server down: a good request still works.
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let r = s
        .review(&admission_review("ok", "CREATE", Some(&pod), false))
        .await;
    assert_eq!(r["allowed"], true);
    assert!(
        s.metric("spark_admission_admissions_total{outcome=\"error\",role=\"none\"}")
            .await
            >= 15.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_without_content_length_is_refused() {
    let s = TestServer::start("chunked", &[("p.yaml", TEST_POLICIES)], |c, _| {
        c.max_body_bytes = 1024;
    })
    .await;
    let tls = tls_connect(s.addr, s.client.clone()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // No Content-Length: the body comes chunked and only reading it shows it is too large.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..4 {
        tx.send(Ok(Frame::data(Bytes::from(vec![b' '; 512]))))
            .unwrap();
    }
    drop(tx);
    let body = ChannelBody(rx);
    let req = Request::post("/mutate")
        .header("host", SERVICE_DNS)
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("limit of 1024 bytes"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_timeout_is_honoured() {
    let s = server("timeout").await;
    let tls = tls_connect(s.addr, s.client.clone()).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // A body that never ends: only the deadline can produce an answer.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(Ok(Frame::data(Bytes::from_static(b"{\"apiVersion\":"))))
        .unwrap();
    let req = Request::post("/mutate?timeout=2s")
        .header("host", SERVICE_DNS)
        .header("content-type", "application/json")
        .body(ChannelBody(rx))
        .unwrap();
    let started = Instant::now();
    let resp = send.send_request(req).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    // Budget: 90% of the caller's timeout, so the answer beats the API server's deadline.
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1750),
        "answered too early: {elapsed:?}"
    );
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("timeout of 2s"));
    drop(tx);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_policy_set_the_server_is_not_ready_and_answers_503() {
    let s = TestServer::start(
        "no-policies",
        &[(
            "bad.yaml",
            "apiVersion: spark-admission.dev/v1alpha1\nkind: Nope\n",
        )],
        |_, _| {},
    )
    .await;
    let (status, body) = s.admin("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no valid policy set"), "{body}");
    let (status, _) = s.admin("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let answer = s
        .connect()
        .await
        .post(
            "/mutate",
            Some("application/json"),
            json_bytes(&admission_review("x", "CREATE", Some(&pod), false)),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.text().contains("no valid policy set loaded yet"));
    assert_eq!(
        s.metric("spark_admission_policy_reloads_total{result=\"failed\"}")
            .await,
        1.0
    );
    assert_eq!(s.metric("spark_admission_policy_set_generation").await, 0.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_far_over_the_limit_is_refused_before_the_body() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = TestServer::start("huge", &[("p.yaml", TEST_POLICIES)], |c, _| {
        c.max_body_bytes = 1024;
    })
    .await;
    let mut tls = tls_connect(s.addr, s.client.clone()).await.unwrap();
    // Only the head: the server must answer without waiting for 100 MB that never come.
    tls.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: {SERVICE_DNS}\r\nContent-Type: application/json\r\n\
             Content-Length: 100000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1024 bytes"),
        "{answer}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_names_the_policy_and_the_figures() {
    let deny = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\n\
                metadata: {name: executor-memory-cap}\nspec:\n  match: {roles: [executor]}\n  \
                memory:\n    maxPodMemory: {value: 4Gi, action: deny}\n";
    let s = TestServer::start("deny", &[("deny.yaml", deny)], |_, _| {}).await;
    let pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let r = s
        .review(&admission_review("d-1", "CREATE", Some(&pod), false))
        .await;
    assert_eq!(r["uid"], "d-1");
    assert_eq!(r["allowed"], false);
    assert!(r.get("patch").is_none());
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("executor-memory-cap"), "{msg}");
    assert!(msg.contains("4Gi") || msg.contains("4096Mi"), "{msg}");
    assert_eq!(
        s.metric("spark_admission_admissions_total{outcome=\"denied\",role=\"executor\"}")
            .await,
        1.0
    );
    s.stop().await;
}
