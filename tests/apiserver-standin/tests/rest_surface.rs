//! The REST surface as Spark's fabric8 client uses it (recorded from spark-submit 3.5 and 4.x):
//! served by the real router on a loopback port, no webhooks configured.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use apiserver_standin::admission::UserInfo;
use apiserver_standin::client::WebhookClient;
use apiserver_standin::plugins::PriorityClass;
use apiserver_standin::server::{router, AppState};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

async fn start() -> String {
    start_recording(None).await
}

async fn start_recording(record_raw: Option<std::path::PathBuf>) -> String {
    let mut namespaces: BTreeMap<String, BTreeMap<String, String>> = ["default", "spark-jobs"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                BTreeMap::from([("kubernetes.io/metadata.name".to_string(), n.to_string())]),
            )
        })
        .collect();
    namespaces.insert(
        "secure".into(),
        BTreeMap::from([
            (
                "kubernetes.io/metadata.name".to_string(),
                "secure".to_string(),
            ),
            (
                "pod-security.kubernetes.io/enforce".to_string(),
                "baseline".to_string(),
            ),
        ]),
    );
    let (events, _) = tokio::sync::broadcast::channel(64);
    let state = Arc::new(AppState {
        hooks: vec![],
        client: WebhookClient::default(),
        probe_reinvocation: false,
        priority_classes: PriorityClass::system(),
        namespaces,
        user: UserInfo {
            username: "t".into(),
            groups: vec![],
        },
        store: Mutex::new(Default::default()),
        events,
        dump_dir: None,
        record_raw,
        recorded: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    addr.to_string()
}

async fn call(
    addr: &str,
    method: &str,
    path: &str,
    ctype: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn executor(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"spark-app-selector": app, "spark-role": "executor"}},
           "spec": {"containers": [{"name": "spark-kubernetes-executor", "image": "apache/spark:3.5.7"}]}})
}

#[tokio::test]
async fn fabric8_calls() {
    let addr = start().await;
    let json_ct = "application/json; charset=utf-8";
    let (code, v) = call(&addr, "GET", "/version", json_ct, None).await;
    assert_eq!((code, v["major"].as_str()), (200, Some("1")));

    // Server-side apply creates, then updates in place.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "drv-svc"},
                     "spec": {"clusterIP": "None"}});
    let path = "/api/v1/namespaces/spark-jobs/services/drv-svc?fieldManager=fabric8&force=true";
    let (code, created) = call(
        &addr,
        "PATCH",
        path,
        "application/apply-patch+yaml",
        Some(svc.clone()),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let uid = created["metadata"]["uid"].clone();
    let mut svc2 = svc.clone();
    svc2["metadata"]["labels"] = json!({"spark-app-selector": "spark-1"});
    let (code, updated) = call(
        &addr,
        "PATCH",
        path,
        "application/apply-patch+yaml",
        Some(svc2),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(updated["metadata"]["uid"], uid);
    assert_eq!(
        updated["metadata"]["labels"]["spark-app-selector"],
        "spark-1"
    );

    let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": "np"}, "spec": {"podSelector": {}}});
    let (code, _) = call(
        &addr,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/spark-jobs/networkpolicies",
        json_ct,
        Some(np.clone()),
    )
    .await;
    assert_eq!(code, 201);
    let (code, st) = call(
        &addr,
        "POST",
        "/apis/networking.k8s.io/v1/namespaces/spark-jobs/networkpolicies",
        json_ct,
        Some(np),
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (409, Some("AlreadyExists")));

    // Open both kinds of watch before the pods exist.
    let ws_url = format!("ws://{addr}/api/v1/namespaces/spark-jobs/pods?labelSelector=spark-app-selector%3Dspark-1%2Cspark-role%3Dexecutor%2Cspark-exec-inactive%21%3Dtrue&allowWatchBookmarks=true&watch=true");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();

    for (name, app) in [("e1", "spark-1"), ("e2", "spark-1"), ("other", "spark-2")] {
        let (code, pod) = call(
            &addr,
            "POST",
            "/api/v1/namespaces/spark-jobs/pods",
            json_ct,
            Some(executor(name, app)),
        )
        .await;
        assert_eq!(code, 201, "{pod}");
        assert_eq!(pod["metadata"]["namespace"], "spark-jobs");
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["status"]["phase"], "Pending");
    }
    let mut added = vec![];
    while added.len() < 2 {
        let msg = ws.next().await.unwrap().unwrap();
        let ev: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        added.push((
            ev["type"].as_str().unwrap().to_string(),
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    assert_eq!(
        added,
        vec![
            ("ADDED".to_string(), "e1".to_string()),
            ("ADDED".to_string(), "e2".to_string())
        ]
    );

    let (code, pod) = call(
        &addr,
        "GET",
        "/api/v1/namespaces/spark-jobs/pods/e1",
        json_ct,
        None,
    )
    .await;
    assert_eq!((code, pod["metadata"]["name"].as_str()), (200, Some("e1")));
    let (code, st) = call(
        &addr,
        "GET",
        "/api/v1/namespaces/spark-jobs/pods/nope",
        json_ct,
        None,
    )
    .await;
    assert_eq!((code, st["reason"].as_str()), (404, Some("NotFound")));
    let (code, st) = call(
        &addr,
        "POST",
        "/api/v1/namespaces/missing/pods",
        json_ct,
        Some(executor("x", "a")),
    )
    .await;
    assert_eq!(
        (code, st["message"].as_str()),
        (404, Some("namespaces \"missing\" not found"))
    );

    let (code, list) = call(
        &addr,
        "GET",
        "/api/v1/namespaces/spark-jobs/pods?labelSelector=spark-app-selector%3Dspark-1",
        json_ct,
        None,
    )
    .await;
    assert_eq!(
        (
            code,
            list["kind"].as_str(),
            list["items"].as_array().unwrap().len()
        ),
        (200, Some("PodList"), 2)
    );

    // Collection delete by label selector, as SparkContext.stop does.
    let (code, gone) = call(&addr, "DELETE", "/api/v1/namespaces/spark-jobs/pods?labelSelector=spark-app-selector%3Dspark-1%2Cspark-role%3Dexecutor", json_ct, Some(json!({"apiVersion": "v1", "kind": "DeleteOptions"}))).await;
    assert_eq!((code, gone["items"].as_array().unwrap().len()), (200, 2));
    let msg = ws.next().await.unwrap().unwrap();
    let ev: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(ev["type"], "DELETED");
    let (_, list) = call(
        &addr,
        "GET",
        "/api/v1/namespaces/spark-jobs/pods",
        json_ct,
        None,
    )
    .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // The record of admitted pods survives deletion.
    let (_, admitted) = call(&addr, "GET", "/_standin/pods", json_ct, None).await;
    assert_eq!(admitted.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn plain_http_watch_streams_json_lines() {
    let addr = start().await;
    let (code, _) = call(
        &addr,
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        Some(executor("e1", "spark-1")),
    )
    .await;
    assert_eq!(code, 201);
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(
        "/api/v1/namespaces/default/pods?labelSelector=spark-role%3Dexecutor&watch=true",
    )
    .header("host", &addr)
    .body(Full::new(Bytes::new()))
    .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let ev: Value = serde_json::from_slice(&frame).unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("e1"))
    );
}

#[tokio::test]
async fn record_raw_keeps_each_posted_body_as_sent_before_defaulting() {
    let dir = std::env::temp_dir().join(format!("standin-record-raw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let addr = start_recording(Some(dir.clone())).await;
    let pod = executor("exec-1", "spark-rec");
    let (code, stored) = call(
        &addr,
        "POST",
        "/api/v1/namespaces/spark-jobs/pods",
        "application/json",
        Some(pod.clone()),
    )
    .await;
    assert_eq!(code, 201, "{stored}");
    // The stored pod was defaulted; the recording was not.
    assert!(stored["spec"]["restartPolicy"].is_string());
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                     "metadata": {"name": "exec-1-pvc-0"}, "spec": {}});
    let path = "/api/v1/namespaces/spark-jobs/persistentvolumeclaims";
    let (code, _) = call(&addr, "POST", path, "application/json", Some(pvc.clone())).await;
    assert_eq!(code, 201);

    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "00000__spark-jobs__pods.json",
            "00001__spark-jobs__persistentvolumeclaims.json"
        ]
    );
    let raw = std::fs::read(dir.join(&files[0])).unwrap();
    assert_eq!(raw, pod.to_string().into_bytes());
    let raw = std::fs::read(dir.join(&files[1])).unwrap();
    assert_eq!(raw, pvc.to_string().into_bytes());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The create handler: decoded into the Pod type (wrong types: 400; unknown fields dropped with
/// a warning, or 400 under `fieldValidation=Strict`), a name required only after admission,
/// LimitRange defaults from the namespace's LimitRanges, Pod Security per namespace label.
#[tokio::test]
async fn pod_create_decodes_defaults_and_judges_as_the_api_server_does() {
    let addr = start().await;
    let ct = "application/json";
    let pods = "/api/v1/namespaces/spark-jobs/pods";

    let mut unknown = executor("u1", "spark-1");
    unknown["spec"]["frobnicate"] = json!(1);
    let (code, st) = call(
        &addr,
        "POST",
        &format!("{pods}?fieldValidation=Strict"),
        ct,
        Some(unknown.clone()),
    )
    .await;
    assert_eq!(
        (code, st["message"].as_str()),
        (
            400,
            Some("strict decoding error: unknown field \"spec.frobnicate\"")
        )
    );
    let (code, stored) = call(&addr, "POST", pods, ct, Some(unknown)).await;
    assert_eq!(code, 201);
    assert!(stored["spec"].get("frobnicate").is_none());
    assert_eq!(stored["spec"]["serviceAccount"], "default");

    let mut wrong = executor("w1", "spark-1");
    wrong["spec"]["containers"][0]["image"] = json!(7);
    let (code, st) = call(&addr, "POST", pods, ct, Some(wrong)).await;
    assert_eq!(code, 400);
    assert_eq!(st["message"], "Pod in version \"v1\" cannot be handled as a Pod: json: cannot unmarshal number into Go struct field Container.spec.containers.image of type string");

    let mut nameless = executor("x", "spark-1");
    nameless["metadata"].as_object_mut().unwrap().remove("name");
    let (code, st) = call(&addr, "POST", pods, ct, Some(nameless)).await;
    assert_eq!((code, st["message"].as_str()), (422, Some("Pod \"\" is invalid: metadata.name: Required value: name or generateName is required")));

    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults"},
                    "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "500m"}, "default": {"cpu": "1"}}]}});
    let (code, _) = call(
        &addr,
        "POST",
        "/api/v1/namespaces/spark-jobs/limitranges",
        ct,
        Some(lr),
    )
    .await;
    assert_eq!(code, 201);
    let (code, stored) = call(&addr, "POST", pods, ct, Some(executor("l1", "spark-1"))).await;
    assert_eq!(code, 201);
    assert_eq!(
        stored["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "1"}, "requests": {"cpu": "500m"}})
    );
    assert_eq!(stored["metadata"]["annotations"]["kubernetes.io/limit-ranger"], "LimitRanger plugin set: cpu request for container spark-kubernetes-executor; cpu limit for container spark-kubernetes-executor");

    let mut host = executor("h1", "spark-1");
    host["spec"]["volumes"] = json!([{"name": "nvme", "hostPath": {"path": "/mnt/nvme0"}}]);
    let (code, st) = call(
        &addr,
        "POST",
        "/api/v1/namespaces/secure/pods",
        ct,
        Some(host),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(st["message"], "pods \"h1\" is forbidden: violates PodSecurity \"baseline:latest\": hostPath volumes (volume \"nvme\")");
    let (code, _) = call(
        &addr,
        "POST",
        "/api/v1/namespaces/secure/pods",
        ct,
        Some(executor("h2", "spark-1")),
    )
    .await;
    assert_eq!(code, 201);
}

#[tokio::test]
async fn namespaces_are_listed_and_watched_as_kube_runtimes_reflector_asks() {
    let addr = start().await;
    let (code, list) = call(&addr, "GET", "/api/v1/namespaces?limit=500", "", None).await;
    assert_eq!(code, 200);
    assert_eq!(list["kind"], "NamespaceList");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "secure", "spark-jobs"]);
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, one) = call(&addr, "GET", "/api/v1/namespaces/secure", "", None).await;
    assert_eq!(code, 200);
    assert_eq!(
        one["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "baseline"
    );
    assert_eq!(
        call(&addr, "DELETE", "/api/v1/namespaces", "", None)
            .await
            .0,
        405
    );

    // The watch from the list's version: nothing changed, so only the bookmark 2 s before
    // the deadline, then the server ends the stream at timeoutSeconds.
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!(
        "/api/v1/namespaces?allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=3&watch=true"
    ))
    .header("host", &addr)
    .body(Full::new(Bytes::new()))
    .unwrap();
    let started = std::time::Instant::now();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    let events: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "BOOKMARK");
    assert_eq!(
        events[0]["object"]["metadata"]["resourceVersion"],
        rv.as_str()
    );
    assert!(
        elapsed >= std::time::Duration::from_millis(2900)
            && elapsed < std::time::Duration::from_secs(10),
        "{elapsed:?}"
    );
}
