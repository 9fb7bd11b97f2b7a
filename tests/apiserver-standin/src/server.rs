//! The REST surface: the subset of the Kubernetes API that Spark's fabric8 client uses
//! (recorded from spark-submit 3.5 / fabric8 6.7 and 4.x / fabric8 7.x), plus `/_standin/*`
//! endpoints for tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::admission::{Chain, PodCreate, UserInfo};
use crate::client::WebhookClient;
use crate::plugins::{self, PriorityClass};
use crate::selector::{labels_of, Selector};
use crate::status::{self, ApiError};
use crate::store::{self, Collection, Store};
use crate::webhook_config::Webhook;
use crate::{defaulting, namespaces, typed};

/// A change, fanned out to open watches.
#[derive(Clone, Debug)]
pub struct Event {
    pub collection: Collection,
    pub kind: &'static str,
    pub object: Value,
}

pub struct AppState {
    pub hooks: Vec<Webhook>,
    pub client: WebhookClient,
    pub probe_reinvocation: bool,
    /// PriorityClasses the Priority plugin resolves (the system ones included).
    pub priority_classes: Vec<PriorityClass>,
    /// Namespaces that exist, with their labels (incl. `kubernetes.io/metadata.name`).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub user: UserInfo,
    pub store: Mutex<Store>,
    pub events: broadcast::Sender<Event>,
    pub dump_dir: Option<PathBuf>,
    /// Write every POST body exactly as received (before defaulting or admission) to
    /// DIR/<seq>__<namespace>__<resource>.json: how the fixture recorder captures what Spark sends.
    pub record_raw: Option<PathBuf>,
    /// Sequence number of the next recorded body.
    pub recorded: std::sync::atomic::AtomicUsize,
}

type Shared = Arc<AppState>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code, &self.body)
    }
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut resp = (code, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn router(state: Shared) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// Parsed request target.
struct Target {
    collection: Collection,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("api/v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, resource] => Some(Target {
            collection: (prefix, ns.to_string(), resource.to_string()),
            name: None,
        }),
        ["namespaces", ns, resource, name] => Some(Target {
            collection: (prefix, ns.to_string(), resource.to_string()),
            name: Some(name.to_string()),
        }),
        _ => None,
    }
}

fn query_params(uri: &axum::http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(State(state): State<Shared>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let params = query_params(req.uri());
    tracing::info!(%method, uri = %req.uri(), "request");
    if let Some(debug) = path.strip_prefix("/_standin/") {
        return debug_endpoint(&state, debug);
    }
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin",
                    "platform": "linux/amd64", "goVersion": "go1.24"}),
        );
    }
    let is_watch = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    if path.trim_end_matches('/') == "/api/v1/namespaces" {
        return match method {
            Method::GET if is_watch => namespaces::watch(state, params),
            Method::GET => match namespaces::list(&state, &params) {
                Ok(list) => json_response(StatusCode::OK, &list),
                Err(e) => e.into_response(),
            },
            _ => status::method_not_supported(method.as_str(), &path).into_response(),
        };
    }
    if let Some(ns) = path
        .strip_prefix("/api/v1/namespaces/")
        .filter(|n| !n.contains('/'))
    {
        return match namespaces::get(&state, ns) {
            Ok(object) => json_response(StatusCode::OK, &object),
            Err(e) => e.into_response(),
        };
    }
    let Some(target) = parse_path(&path) else {
        tracing::warn!(%method, %path, "path not reproduced");
        return status::unsupported_path(&path).into_response();
    };
    let (prefix, ns, resource) = &target.collection;
    let Some(kind) = store::kind_of(prefix, resource) else {
        tracing::warn!(%method, %path, "resource not reproduced");
        return status::unsupported_path(&path).into_response();
    };
    if !state.namespaces.contains_key(ns) {
        return status::namespace_not_found(ns).into_response();
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if method == Method::GET && target.name.is_none() && is_watch {
        return watch(state, req, target.collection, params).await;
    }
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return status::bad_request(format!("reading body: {e}")).into_response(),
    };
    if method == Method::POST && target.name.is_none() {
        record_raw(&state, ns, resource, &body);
    }
    let result = match (&method, &target.name) {
        (&Method::GET, None) => list(&state, &target.collection, kind, &params),
        (&Method::GET, Some(name)) => get(&state, &target.collection, name),
        (&Method::POST, None) if resource == "pods" => create_pod(&state, ns, &body, &params).await,
        (&Method::POST, None) => create(&state, &target.collection, kind, &body, &params),
        (&Method::PUT, Some(name)) => replace(&state, &target.collection, name, &body),
        (&Method::PATCH, Some(name)) => {
            patch(
                &state,
                &target.collection,
                kind,
                name,
                &content_type,
                &body,
                &params,
            )
            .await
        }
        (&Method::DELETE, Some(name)) => delete_one(&state, &target.collection, name),
        (&Method::DELETE, None) => delete_collection(&state, &target.collection, kind, &params),
        _ => Err(status::method_not_supported(method.as_str(), &path)),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

fn record_raw(state: &AppState, ns: &str, resource: &str, body: &Bytes) {
    let Some(dir) = &state.record_raw else {
        return;
    };
    let seq = state
        .recorded
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let file = dir.join(format!("{seq:05}__{ns}__{resource}.json"));
    if let Err(e) = std::fs::write(&file, body) {
        tracing::warn!("writing {}: {e}", file.display());
    }
}

fn debug_endpoint(state: &AppState, what: &str) -> Response {
    let Ok(st) = state.store.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let body = match what {
        "pods" => json!(st.admitted),
        "calls" => json!(st.calls),
        "rejections" => json!(st.rejections),
        "stats" => json!({
            "webhookCalls": st.calls.len(),
            "webhookConnectionsOpened": state.client.connections_opened(),
            "podsAdmitted": st.admitted.len(),
            "podsRejected": st.rejections.len(),
        }),
        "config" => json!(state
            .hooks
            .iter()
            .map(|h| json!({"name": h.name, "configuration": h.configuration,
                "failurePolicy": format!("{:?}", h.failure_policy), "timeoutSeconds": h.timeout_seconds,
                "reinvokeIfNeeded": h.reinvoke_if_needed, "url": WebhookClient::url_for(h)}))
            .collect::<Vec<_>>()),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    json_response(StatusCode::OK, &body)
}

fn parse_object(body: &Bytes, kind: &str, ns: &str) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(body)
        .map_err(|e| status::bad_request(format!("error decoding request body: {e}")))?;
    if !obj.is_object() {
        return Err(status::bad_request("request body is not an object".into()));
    }
    if obj["kind"].as_str().is_some_and(|k| k != kind) {
        return Err(status::bad_request(format!(
            "the kind {:?} of the object does not match the resource {kind}",
            obj["kind"]
        )));
    }
    if obj["metadata"]["namespace"]
        .as_str()
        .is_some_and(|n| !n.is_empty() && n != ns)
    {
        return Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    Ok(obj)
}

fn created(obj: &Value, warnings: &[String]) -> Response {
    let mut resp = json_response(StatusCode::CREATED, obj);
    for w in warnings {
        // RFC 7234 warn-code 299 with a quoted text (`net.NewWarningHeader`: `\` and `"`
        // escaped), as the API server sends them.
        let v = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

fn is_dry_run(params: &BTreeMap<String, String>) -> bool {
    params.get("dryRun").is_some_and(|v| v == "All")
}

/// POST pods, as the create handler and the pod registry do it: decode into the Pod type
/// (unknown fields dropped and reported per `?fieldValidation=`, Warn by default), default,
/// admit (`admission`), then store what the typed object encodes to.
async fn create_pod(
    state: &AppState,
    ns: &str,
    body: &Bytes,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let raw = parse_object(body, "Pod", ns)?;
    let decoded = typed::pod(&raw).map_err(|e| {
        status::bad_request(format!(
            "Pod in version \"v1\" cannot be handled as a Pod: {}",
            e.0
        ))
    })?;
    let mut warnings: Vec<String> = Vec::new();
    match params.get("fieldValidation").map(String::as_str) {
        Some("Strict") if !decoded.unknown.is_empty() => {
            let list: Vec<String> = decoded
                .unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            return Err(status::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
        Some("Ignore") => {}
        _ => warnings.extend(
            decoded
                .unknown
                .iter()
                .map(|f| format!("unknown field {f:?}")),
        ),
    }
    let mut pod = decoded.value;
    defaulting::pod(&mut pod);
    typed::to_internal(&mut pod);
    pod["metadata"]["namespace"] = json!(ns);
    let display_name = plugins::display_name(&pod);
    let dry_run = is_dry_run(params);
    let chain = Chain {
        hooks: &state.hooks,
        client: &state.client,
        priority_classes: &state.priority_classes,
        probe_reinvocation: state.probe_reinvocation,
    };
    let ns_labels = state.namespaces.get(ns).cloned().unwrap_or_default();
    let limit_ranges: Vec<Value> = {
        let st = state
            .store
            .lock()
            .map_err(|_| status::internal_error("store lock poisoned".into()))?;
        let coll: Collection = ("api/v1".into(), ns.into(), "limitranges".into());
        st.objects
            .get(&coll)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    };
    let mut records = Vec::new();
    let outcome = chain
        .admit(
            pod,
            &PodCreate {
                namespace: ns,
                namespace_labels: &ns_labels,
                user: &state.user,
                dry_run,
                limit_ranges: &limit_ranges,
            },
            &mut records,
        )
        .await;
    let mut st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    st.calls.extend(records);
    let admitted = match outcome {
        Ok(a) => a,
        Err(e) => {
            st.rejections
                .push(json!({"namespace": ns, "name": display_name,
                "code": e.code.as_u16(), "message": e.message()}));
            return Err(e);
        }
    };
    warnings.extend(admitted.warnings);
    let mut pod = admitted.pod;
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let collection: Collection = ("api/v1".into(), ns.into(), "pods".into());
    if st
        .objects
        .get(&collection)
        .is_some_and(|c| c.contains_key(&name))
    {
        return Err(status::already_exists("pods", &name));
    }
    st.stamp_new(&mut pod);
    pod["status"] = store::initial_pod_status(&pod);
    typed::to_versioned(&mut pod);
    let pod = typed::pod(&pod)
        .map_err(|e| status::internal_error(e.0))?
        .value;
    if dry_run {
        return Ok(created(&pod, &warnings));
    }
    st.objects
        .entry(collection.clone())
        .or_default()
        .insert(name.clone(), pod.clone());
    st.admitted.push(pod.clone());
    drop(st);
    if let Some(dir) = &state.dump_dir {
        let file = dir.join(format!("{ns}__{name}.json"));
        if let Err(e) = std::fs::write(&file, serde_json::to_vec_pretty(&pod).unwrap_or_default()) {
            tracing::warn!("writing {}: {e}", file.display());
        }
    }
    let _ = state.events.send(Event {
        collection,
        kind: "ADDED",
        object: pod.clone(),
    });
    Ok(created(&pod, &warnings))
}

fn create(
    state: &AppState,
    coll: &Collection,
    kind: &str,
    body: &Bytes,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let mut obj = parse_object(body, kind, &coll.1)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if name.is_empty() {
        return Err(status::bad_request("metadata.name: Required value".into()));
    }
    obj["metadata"]["namespace"] = json!(coll.1);
    obj["apiVersion"] = json!(store::api_version_of(&coll.0));
    obj["kind"] = json!(kind);
    let mut st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    if st.objects.get(coll).is_some_and(|c| c.contains_key(&name)) {
        return Err(status::already_exists(&coll.2, &name));
    }
    st.stamp_new(&mut obj);
    if !is_dry_run(params) {
        st.objects
            .entry(coll.clone())
            .or_default()
            .insert(name, obj.clone());
        let _ = state.events.send(Event {
            collection: coll.clone(),
            kind: "ADDED",
            object: obj.clone(),
        });
    }
    Ok(created(&obj, &[]))
}

fn get(state: &AppState, coll: &Collection, name: &str) -> Result<Response, ApiError> {
    let st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    st.objects
        .get(coll)
        .and_then(|c| c.get(name))
        .map(|o| json_response(StatusCode::OK, o))
        .ok_or_else(|| status::not_found(&coll.2, name))
}

fn selector_of(params: &BTreeMap<String, String>) -> Result<Selector, ApiError> {
    Selector::parse(params.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| status::bad_request(e.to_string()))
}

fn list(
    state: &AppState,
    coll: &Collection,
    kind: &str,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let sel = selector_of(params)?;
    let st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    let items: Vec<&Value> = st
        .objects
        .get(coll)
        .into_iter()
        .flat_map(|c| c.values())
        .filter(|o| sel.matches(&labels_of(o)))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"apiVersion": store::api_version_of(&coll.0), "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": st.resource_version()}, "items": items}),
    ))
}

fn replace(
    state: &AppState,
    coll: &Collection,
    name: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let mut obj: Value = serde_json::from_slice(body)
        .map_err(|e| status::bad_request(format!("error decoding request body: {e}")))?;
    let mut st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    let Some(old) = st.objects.get(coll).and_then(|c| c.get(name)).cloned() else {
        return Err(status::not_found(&coll.2, name));
    };
    obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
    obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
    obj["metadata"]["resourceVersion"] = json!(st.next_resource_version());
    st.objects
        .entry(coll.clone())
        .or_default()
        .insert(name.to_string(), obj.clone());
    Ok(json_response(StatusCode::OK, &obj))
}

/// PATCH: server-side apply (creates when absent; on an existing object the applied fields
/// replace the old ones — field ownership is not tracked), JSON merge patch, strategic merge
/// (treated as a JSON merge patch), JSON patch.
async fn patch(
    state: &AppState,
    coll: &Collection,
    kind: &str,
    name: &str,
    content_type: &str,
    body: &Bytes,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let existing = {
        let st = state
            .store
            .lock()
            .map_err(|_| status::internal_error("store lock poisoned".into()))?;
        st.objects.get(coll).and_then(|c| c.get(name)).cloned()
    };
    let new = match (mime, existing) {
        ("application/apply-patch+yaml", None) => {
            if coll.2 == "pods" {
                return create_pod(state, &coll.1, body, params).await;
            }
            return create(state, coll, kind, body, params);
        }
        ("application/apply-patch+yaml", Some(old)) => {
            let applied: Value = serde_saphyr::from_slice(body)
                .map_err(|e| status::bad_request(format!("error decoding apply patch: {e}")))?;
            let mut merged = old.clone();
            json_patch::merge(&mut merged, &applied);
            merged
        }
        ("application/merge-patch+json" | "application/strategic-merge-patch+json", Some(old)) => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?;
            let mut merged = old.clone();
            json_patch::merge(&mut merged, &p);
            merged
        }
        ("application/json-patch+json", Some(old)) => {
            let p = crate::jsonpatch::Patch::decode(body)
                .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?;
            p.apply(&old).map_err(status::internal_error)?
        }
        (_, None) => return Err(status::not_found(&coll.2, name)),
        (other, _) => {
            return Err(ApiError {
                code: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                body: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"),
                    "reason": "UnsupportedMediaType", "code": 415}),
            })
        }
    };
    let body = Bytes::from(new.to_string());
    replace(state, coll, name, &body)
}

fn delete_one(state: &AppState, coll: &Collection, name: &str) -> Result<Response, ApiError> {
    let mut st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    let removed = st
        .objects
        .get_mut(coll)
        .and_then(|c| c.remove(name))
        .ok_or_else(|| status::not_found(&coll.2, name))?;
    let _ = state.events.send(Event {
        collection: coll.clone(),
        kind: "DELETED",
        object: removed.clone(),
    });
    Ok(json_response(StatusCode::OK, &removed))
}

fn delete_collection(
    state: &AppState,
    coll: &Collection,
    kind: &str,
    params: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let sel = selector_of(params)?;
    let mut st = state
        .store
        .lock()
        .map_err(|_| status::internal_error("store lock poisoned".into()))?;
    let mut removed = Vec::new();
    if let Some(c) = st.objects.get_mut(coll) {
        let names: Vec<String> = c
            .iter()
            .filter(|(_, o)| sel.matches(&labels_of(o)))
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            if let Some(o) = c.remove(&n) {
                removed.push(o);
            }
        }
    }
    for o in &removed {
        let _ = state.events.send(Event {
            collection: coll.clone(),
            kind: "DELETED",
            object: o.clone(),
        });
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"apiVersion": store::api_version_of(&coll.0), "kind": format!("{kind}List"),
                "metadata": {"resourceVersion": st.resource_version()}, "items": removed}),
    ))
}

/// A watch: synthetic ADDED events for what exists, then live events. fabric8 6.x and 7.x
/// both open watches as WebSockets; a plain GET gets a chunked stream of JSON lines.
async fn watch(
    state: Shared,
    req: Request,
    coll: Collection,
    params: BTreeMap<String, String>,
) -> Response {
    let sel = match selector_of(&params) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let rx = state.events.subscribe();
    let initial: Vec<Value> = match state.store.lock() {
        Ok(st) => st
            .objects
            .get(&coll)
            .into_iter()
            .flat_map(|c| c.values())
            .filter(|o| sel.matches(&labels_of(o)))
            .map(|o| json!({"type": "ADDED", "object": o}))
            .collect(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if is_ws {
        let (mut parts, _) = req.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws.on_upgrade(move |socket| ws_watch(socket, initial, rx, coll, sel)),
            Err(e) => e.into_response(),
        };
    }
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let mut rx = rx;
        for ev in initial {
            if tx.send(Ok(Bytes::from(format!("{ev}\n")))).await.is_err() {
                return;
            }
        }
        while let Some(ev) = next_event(&mut rx, &coll, &sel).await {
            if tx.send(Ok(Bytes::from(format!("{ev}\n")))).await.is_err() {
                return;
            }
        }
    });
    json_lines(out)
}

/// A plain-HTTP watch's body: the JSON lines sent on `out`, chunked, until its sender is gone.
pub(crate) fn json_lines(
    out: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Response {
    let stream = tokio_stream::wrappers::ReceiverStream::new(out);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The next event for this watch, or None when the stand-in shuts down.
async fn next_event(
    rx: &mut broadcast::Receiver<Event>,
    coll: &Collection,
    sel: &Selector,
) -> Option<Value> {
    loop {
        match rx.recv().await {
            Ok(ev) if ev.collection == *coll && sel.matches(&labels_of(&ev.object)) => {
                return Some(json!({"type": ev.kind, "object": ev.object}));
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

async fn ws_watch(
    mut socket: WebSocket,
    initial: Vec<Value>,
    mut rx: broadcast::Receiver<Event>,
    coll: Collection,
    sel: Selector,
) {
    for ev in initial {
        if socket
            .send(Message::Text(ev.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    loop {
        tokio::select! {
            ev = next_event(&mut rx, &coll, &sel) => {
                let Some(ev) = ev else { return };
                if socket.send(Message::Text(ev.to_string().into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        let t = parse_path("/api/v1/namespaces/default/pods").unwrap();
        assert_eq!(
            t.collection,
            ("api/v1".into(), "default".into(), "pods".into())
        );
        assert!(t.name.is_none());
        let t = parse_path("/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/x").unwrap();
        assert_eq!(t.collection.0, "apis/networking.k8s.io/v1");
        assert_eq!(t.name.as_deref(), Some("x"));
        assert!(parse_path("/api/v1/nodes").is_none());
        let uri: axum::http::Uri = "/p?labelSelector=spark-app-selector%3Dspark-1%2Cspark-exec-inactive%21%3Dtrue&watch=true"
            .parse()
            .unwrap();
        let q = query_params(&uri);
        assert_eq!(
            q["labelSelector"],
            "spark-app-selector=spark-1,spark-exec-inactive!=true"
        );
        assert_eq!(q["watch"], "true");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
