//! The `admission.k8s.io/v1` AdmissionReview envelope: read the API server's request, run the
//! engine, and build the response it expects.
//!
//! Pure: bytes in, status + bytes out, no IO. The server adds TLS, timeouts and metrics around
//! [`review`]. The response is built here rather than with kube-core's types because the API
//! server needs `patch` as a base64 *string* (see DESIGN.md), and because every malformed input
//! gets its own specific message.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use crate::engine::{evaluate, PodError, Verdict};
use crate::policy::PolicySet;
use crate::spark_pod::SparkRole;

/// The only AdmissionReview version this webhook speaks.
pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";
/// The API server drops longer warnings; we cut them here so the message stays readable.
pub const MAX_WARNING_CHARS: usize = 120;
/// Key of the audit annotation listing the enforced policies applied (the API server prefixes
/// it with the webhook name, e.g. `spark-pods.spark-admission.dev/policies`).
pub const AUDIT_KEY_POLICIES: &str = "policies";
/// Key of the audit annotation listing the Audit-mode policies that would have changed the pod.
pub const AUDIT_KEY_AUDIT: &str = "audit";

/// A body that is not a readable AdmissionReview and carries no usable uid: answered with
/// HTTP 400 and the message, since there is nothing to echo back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
    #[error("request body is a JSON {0}, expected an AdmissionReview object")]
    NotAnObject(&'static str),
    #[error("apiVersion is missing, expected \"{API_VERSION}\"")]
    MissingApiVersion,
    #[error(
        "unsupported apiVersion {0}: this webhook speaks {API_VERSION} only \
         (set admissionReviewVersions: [\"v1\"] in the webhook configuration)"
    )]
    WrongApiVersion(String),
    #[error("kind is {0}, expected \"{KIND}\"")]
    WrongKind(String),
    #[error("AdmissionReview has no request object")]
    NoRequest,
    #[error("request.uid is missing or not a non-empty string")]
    NoUid,
}

/// A request whose uid is known but that cannot be evaluated: answered with an AdmissionReview
/// `allowed: false`, `status.code: 400` and the message.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request.{0} is missing or has the wrong type")]
    MissingField(&'static str),
    #[error("request.object is not a Pod: {0}")]
    NotAPod(String),
    #[error("request.object cannot be read as a Pod: {0}")]
    Pod(#[from] PodError),
}

/// What happened to one admission, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Patched,
    Unchanged,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// Everything about one admission the server logs and counts. Never holds pod contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub uid: Option<String>,
    pub operation: Option<String>,
    pub namespace: Option<String>,
    /// `metadata.name`, or `metadata.generateName` when the name is not set yet.
    pub pod_name: Option<String>,
    pub role: Option<SparkRole>,
    pub outcome: Outcome,
    pub applied: Vec<String>,
    /// Audit-mode policies that would have changed the pod.
    pub audited: Vec<String>,
    pub dry_run: bool,
    /// Why the request was skipped or failed, for the log line.
    pub note: Option<String>,
}

/// The answer to one HTTP request on `/mutate`.
#[derive(Debug, Clone)]
pub struct Reply {
    /// 200 with an AdmissionReview, or 400 with a plain-text message.
    pub http_status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// The fields of an AdmissionRequest this webhook reads.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind_group: String,
    pub kind: String,
    pub sub_resource: Option<String>,
    pub operation: String,
    pub namespace: Option<String>,
    pub dry_run: bool,
    pub object: Option<Value>,
}

/// Parse the envelope. The outer error is "no uid known" (HTTP 400); the inner one is a request
/// with a uid whose other fields are unusable (AdmissionReview error response).
pub fn parse(
    body: &[u8],
) -> Result<Result<AdmissionRequest, (String, RequestError)>, EnvelopeError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
    let Value::Object(mut review) = review else {
        return Err(EnvelopeError::NotAnObject(json_type(&review)));
    };
    match review.get("apiVersion") {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingApiVersion),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => return Err(EnvelopeError::WrongApiVersion(other.to_string())),
    }
    match review.get("kind") {
        Some(Value::String(k)) if k == KIND => {}
        Some(other) => return Err(EnvelopeError::WrongKind(other.to_string())),
        None => return Err(EnvelopeError::WrongKind("missing".to_string())),
    }
    let Some(Value::Object(mut request)) = review.remove("request") else {
        return Err(EnvelopeError::NoRequest);
    };
    let uid = match request.get("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => uid.clone(),
        _ => return Err(EnvelopeError::NoUid),
    };
    let fields = (|| {
        let kind = request
            .get("kind")
            .and_then(Value::as_object)
            .ok_or(RequestError::MissingField("kind"))?;
        let kind_name = kind
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(RequestError::MissingField("kind.kind"))?
            .to_string();
        let kind_group = kind
            .get("group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let operation = request
            .get("operation")
            .and_then(Value::as_str)
            .ok_or(RequestError::MissingField("operation"))?
            .to_string();
        let opt_str = |key: &str| {
            request
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let sub_resource = opt_str("subResource");
        let namespace = opt_str("namespace");
        let dry_run = request
            .get("dryRun")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((
            kind_name,
            kind_group,
            operation,
            sub_resource,
            namespace,
            dry_run,
        ))
    })();
    let (kind, kind_group, operation, sub_resource, namespace, dry_run) = match fields {
        Ok(f) => f,
        Err(e) => return Ok(Err((uid, e))),
    };
    let object = match request.remove("object") {
        None | Some(Value::Null) => None,
        Some(o) => Some(o),
    };
    Ok(Ok(AdmissionRequest {
        uid,
        kind_group,
        kind,
        sub_resource,
        operation,
        namespace,
        dry_run,
        object,
    }))
}

/// Answer one `/mutate` body with the given policy set.
pub fn review(policies: &PolicySet, body: &[u8]) -> Reply {
    let request = match parse(body) {
        Err(e) => return bad_request(&e),
        Ok(Err((uid, e))) => {
            let summary = Summary {
                uid: Some(uid.clone()),
                note: Some(e.to_string()),
                ..Summary::empty(Outcome::Error)
            };
            return error_review(&uid, &e, summary);
        }
        Ok(Ok(r)) => r,
    };
    let mut summary = Summary {
        uid: Some(request.uid.clone()),
        operation: Some(request.operation.clone()),
        namespace: request.namespace.clone(),
        dry_run: request.dry_run,
        ..Summary::empty(Outcome::Unchanged)
    };

    // Only Pod CREATE can be a new Spark pod; everything else passes untouched and quickly.
    let is_pod = request.kind == "Pod" && request.kind_group.is_empty();
    if !is_pod || request.operation != "CREATE" || request.sub_resource.is_some() {
        summary.note = Some(format!(
            "not a Pod CREATE ({} {}{})",
            request.operation,
            request.kind,
            request
                .sub_resource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        ));
        return allowed_review(&request.uid, ResponseExtras::default(), summary);
    }

    let pod = match pod_object(request.object) {
        Ok(pod) => pod,
        Err(e) => {
            summary.outcome = Outcome::Error;
            summary.note = Some(e.to_string());
            return error_review(&request.uid, &e, summary);
        }
    };
    summary.pod_name = pod_name(&pod);

    let evaluation = match evaluate(policies, &pod, request.namespace.as_deref()) {
        Ok(ev) => ev,
        Err(e) => {
            let e = RequestError::from(e);
            summary.outcome = Outcome::Error;
            summary.note = Some(e.to_string());
            return error_review(&request.uid, &e, summary);
        }
    };
    summary.role = evaluation.role;
    summary.applied = evaluation.applied.clone();
    summary.audited = evaluation.audited.clone();

    let mut extras = ResponseExtras {
        warnings: evaluation
            .warnings
            .iter()
            .map(|w| clip_warning(w))
            .collect(),
        ..ResponseExtras::default()
    };
    if !evaluation.applied.is_empty() {
        extras
            .audit_annotations
            .insert(AUDIT_KEY_POLICIES.to_string(), evaluation.applied.join(","));
    }
    if !evaluation.audited.is_empty() {
        extras
            .audit_annotations
            .insert(AUDIT_KEY_AUDIT.to_string(), evaluation.audited.join(","));
    }

    match evaluation.verdict {
        Verdict::Unchanged => {
            if evaluation.role.is_none() {
                summary.note = Some("not a Spark pod".to_string());
            }
            allowed_review(&request.uid, extras, summary)
        }
        Verdict::Patched { patch, .. } => match serde_json::to_vec(&patch) {
            Ok(json) => {
                extras.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
                summary.outcome = Outcome::Patched;
                allowed_review(&request.uid, extras, summary)
            }
            Err(e) => {
                // Cannot happen for a json_patch::Patch, but never panic on the request path.
                summary.outcome = Outcome::Error;
                let message = format!("internal error: cannot serialise the patch: {e}");
                summary.note = Some(message.clone());
                review_bytes(
                    &request.uid,
                    false,
                    ResponseExtras {
                        status: Some(StatusOut::failure(500, "InternalError", message)),
                        ..ResponseExtras::default()
                    },
                    summary,
                )
            }
        },
        Verdict::Denied { policy, message } => {
            summary.outcome = Outcome::Denied;
            summary.note = Some(format!("denied by policy {policy}"));
            extras.status = Some(StatusOut::failure(
                403,
                "Forbidden",
                // The engine's message normally names the policy already; never lose it.
                if message.contains(policy.as_str()) {
                    format!("spark-admission: {message}")
                } else {
                    format!("spark-admission: policy {policy}: {message}")
                },
            ));
            review_bytes(&request.uid, false, extras, summary)
        }
    }
}

impl Summary {
    fn empty(outcome: Outcome) -> Summary {
        Summary {
            uid: None,
            operation: None,
            namespace: None,
            pod_name: None,
            role: None,
            outcome,
            applied: vec![],
            audited: vec![],
            dry_run: false,
            note: None,
        }
    }
}

fn pod_object(object: Option<Value>) -> Result<Value, RequestError> {
    let Some(object) = object else {
        return Err(RequestError::MissingField("object"));
    };
    if !object.is_object() {
        return Err(RequestError::NotAPod(format!(
            "it is a JSON {}",
            json_type(&object)
        )));
    }
    match object.get("kind") {
        None => {}
        Some(Value::String(k)) if k == "Pod" => {}
        Some(other) => return Err(RequestError::NotAPod(format!("its kind is {other}"))),
    }
    Ok(object)
}

fn pod_name(pod: &Value) -> Option<String> {
    let meta = pod.get("metadata")?;
    ["name", "generateName"]
        .iter()
        .find_map(|k| {
            meta.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Printable, at most [`MAX_WARNING_CHARS`] characters (cut with an ellipsis).
pub fn clip_warning(w: &str) -> String {
    let clean: String = w
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= MAX_WARNING_CHARS {
        return clean;
    }
    let mut cut: String = clean.chars().take(MAX_WARNING_CHARS - 3).collect();
    cut.push_str("...");
    cut
}

#[derive(Default)]
struct ResponseExtras {
    patch: Option<String>,
    warnings: Vec<String>,
    audit_annotations: BTreeMap<String, String>,
    status: Option<StatusOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<String, String>,
}

/// A `metav1.Status`, the part the API server reads.
#[derive(Serialize)]
struct StatusOut {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: String,
}

impl StatusOut {
    fn failure(code: u16, reason: &'static str, message: String) -> StatusOut {
        StatusOut {
            status: "Failure",
            code,
            reason,
            message,
        }
    }
}

fn allowed_review(uid: &str, extras: ResponseExtras, summary: Summary) -> Reply {
    review_bytes(uid, true, extras, summary)
}

fn error_review(uid: &str, e: &RequestError, summary: Summary) -> Reply {
    let extras = ResponseExtras {
        status: Some(StatusOut::failure(
            400,
            "BadRequest",
            format!("spark-admission: {e}"),
        )),
        ..ResponseExtras::default()
    };
    review_bytes(uid, false, extras, summary)
}

fn review_bytes(uid: &str, allowed: bool, extras: ResponseExtras, summary: Summary) -> Reply {
    let out = ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response: ResponseOut {
            uid,
            allowed,
            patch_type: extras.patch.as_ref().map(|_| "JSONPatch"),
            patch: extras.patch,
            status: extras.status,
            warnings: extras.warnings,
            audit_annotations: extras.audit_annotations,
        },
    };
    match serde_json::to_vec(&out) {
        Ok(body) => Reply {
            http_status: 200,
            content_type: "application/json",
            body,
            summary,
        },
        Err(e) => plain_reply(
            500,
            format!("internal error: cannot serialise the response: {e}"),
            Summary {
                outcome: Outcome::Error,
                ..summary
            },
        ),
    }
}

fn bad_request(e: &EnvelopeError) -> Reply {
    let summary = Summary {
        note: Some(e.to_string()),
        ..Summary::empty(Outcome::Error)
    };
    plain_reply(400, e.to_string(), summary)
}

/// A plain-text HTTP answer (for errors where there is no uid to echo).
pub fn plain_reply(http_status: u16, message: String, summary: Summary) -> Reply {
    let mut body = message.into_bytes();
    body.push(b'\n');
    Reply {
        http_status,
        content_type: "text/plain; charset=utf-8",
        body,
        summary,
    }
}

/// A summary for a request refused before its body was read (size, content type, timeout…).
pub fn error_summary(note: String) -> Summary {
    Summary {
        note: Some(note),
        ..Summary::empty(Outcome::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn review_json(request: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": API_VERSION, "kind": KIND, "request": request
        }))
        .unwrap()
    }

    fn pod_request(op: &str, object: Value) -> Value {
        json!({
            "uid": "u-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": op,
            "namespace": "spark",
            "object": object,
        })
    }

    fn response(reply: &Reply) -> Value {
        assert_eq!(
            reply.http_status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let v: Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["kind"], KIND);
        v["response"].clone()
    }

    #[test]
    fn envelope_errors_are_http_400_with_specific_messages() {
        let deep = "[".repeat(200);
        let cases: Vec<(&[u8], &str)> = vec![
            (b"not json", "not valid JSON"),
            (deep.as_bytes(), "recursion limit exceeded"),
            (b"[1,2]", "JSON array"),
            (br#"{"kind":"AdmissionReview","request":{"uid":"a"}}"#, "apiVersion is missing"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a"}}"#,
                "unsupported apiVersion \"admission.k8s.io/v1beta1\"",
            ),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}"#, "kind is \"Pod\""),
            (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "no request"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#,
                "request.uid is missing",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#,
                "request.uid is missing",
            ),
        ];
        for (body, want) in cases {
            let reply = review(&PolicySet::default(), body);
            assert_eq!(reply.http_status, 400);
            let text = String::from_utf8(reply.body).unwrap();
            assert!(text.contains(want), "{text:?} should contain {want:?}");
            assert_eq!(reply.summary.outcome, Outcome::Error);
        }
    }

    #[test]
    fn known_uid_errors_are_review_denials_with_code_400() {
        let cases = vec![
            (json!({"uid": "u-1", "operation": "CREATE"}), "request.kind"),
            (
                json!({"uid": "u-1", "kind": {"kind": "Pod"}}),
                "request.operation",
            ),
            (
                pod_request("CREATE", Value::Null),
                "request.object is missing",
            ),
            (pod_request("CREATE", json!([1])), "JSON array"),
            (
                pod_request("CREATE", json!({"kind": "ConfigMap", "metadata": {}})),
                "its kind is \"ConfigMap\"",
            ),
        ];
        for (request, want) in cases {
            let reply = review(&PolicySet::default(), &review_json(request));
            let r = response(&reply);
            assert_eq!(r["uid"], "u-1");
            assert_eq!(r["allowed"], false);
            assert_eq!(r["status"]["code"], 400);
            let msg = r["status"]["message"].as_str().unwrap();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
            assert_eq!(reply.summary.outcome, Outcome::Error);
        }
    }

    #[test]
    fn non_pod_create_requests_are_allowed_unchanged() {
        let pod =
            json!({"kind": "Pod", "metadata": {"name": "p", "labels": {"spark-role": "driver"}}});
        let mut configmap = pod_request("CREATE", json!({"kind": "ConfigMap"}));
        configmap["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
        let mut binding = pod_request("CREATE", json!({"kind": "Binding"}));
        binding["subResource"] = json!("binding");
        for request in [
            pod_request("UPDATE", pod.clone()),
            pod_request("DELETE", Value::Null),
            pod_request("CONNECT", Value::Null),
            configmap,
            binding,
        ] {
            let reply = review(&PolicySet::default(), &review_json(request));
            let r = response(&reply);
            assert_eq!(r["uid"], "u-1");
            assert_eq!(r["allowed"], true);
            assert!(r.get("patch").is_none());
            assert_eq!(reply.summary.outcome, Outcome::Unchanged);
        }
    }

    #[test]
    fn dry_run_is_answered_and_recorded() {
        let mut request = pod_request(
            "CREATE",
            json!({"kind": "Pod", "metadata": {"generateName": "job-"}, "spec": {"containers": []}}),
        );
        request["dryRun"] = json!(true);
        let reply = review(&PolicySet::default(), &review_json(request));
        let r = response(&reply);
        assert_eq!(r["allowed"], true);
        assert!(reply.summary.dry_run);
        assert_eq!(reply.summary.pod_name.as_deref(), Some("job-"));
    }

    #[test]
    fn warnings_are_clipped_to_120_printable_chars() {
        assert_eq!(clip_warning("short\nline"), "short line");
        let long = "é".repeat(300);
        let clipped = clip_warning(&long);
        assert_eq!(clipped.chars().count(), MAX_WARNING_CHARS);
        assert!(clipped.ends_with("..."));
        let exact = "x".repeat(MAX_WARNING_CHARS);
        assert_eq!(clip_warning(&exact), exact);
    }

    #[test]
    fn patch_is_a_base64_string_with_patch_type() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/a", "value": 1}])).unwrap();
        let extras = ResponseExtras {
            patch: Some(
                base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(&patch).unwrap()),
            ),
            warnings: vec!["w".into()],
            audit_annotations: BTreeMap::from([("policies".to_string(), "a,b".to_string())]),
            status: None,
        };
        let reply = allowed_review("u-9", extras, Summary::empty(Outcome::Patched));
        let r = response(&reply);
        assert_eq!(r["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap();
        let back: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(back, json!([{"op": "add", "path": "/a", "value": 1}]));
        assert_eq!(r["auditAnnotations"]["policies"], "a,b");
        assert_eq!(r["warnings"], json!(["w"]));
    }
}
