//! The API server's admission chain for a Pod CREATE, after defaulting: mutating webhook
//! dispatch (`plugin/webhook/mutating/dispatcher.go`), response verification, JSON Patch
//! application, re-defaulting of the patched object, reinvocation, then Pod validation.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::WebhookClient;
use crate::defaulting;
use crate::status::{self, ApiError};
use crate::validation;
use crate::webhook_config::{AdmissionAttributes, FailurePolicy, Webhook};

/// One webhook call as the stand-in saw it (served at `/_standin/calls`).
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub webhook: String,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub url: String,
    pub reinvocation: bool,
    pub dry_run: bool,
    /// `patched`, `allowed`, `denied`, `failed-open` (Ignore), `failed-closed` (Fail),
    /// `patch-rejected`.
    pub outcome: String,
    pub error: Option<String>,
    pub patch: Option<Value>,
    pub warnings: Vec<String>,
    /// As the API server records them: `<webhook name>/<key>`.
    pub audit_annotations: BTreeMap<String, String>,
    /// Audit annotations the API server would drop (key not a valid qualified name).
    pub dropped_audit_annotations: Vec<String>,
    pub reused_connection: bool,
    pub duration_ms: f64,
}

/// Who is creating the object (`request.userInfo`).
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

pub struct PodCreate<'a> {
    pub namespace: &'a str,
    pub namespace_labels: &'a BTreeMap<String, String>,
    pub user: &'a UserInfo,
    pub dry_run: bool,
}

pub struct Admitted {
    pub pod: Value,
    pub warnings: Vec<String>,
}

pub struct Chain<'a> {
    pub hooks: &'a [Webhook],
    pub client: &'a WebhookClient,
    /// Reinvoke every `IfNeeded` webhook once more with the final object, as the API server
    /// would if a later webhook had changed it. Shows idempotence with a single webhook.
    pub probe_reinvocation: bool,
}

enum HookOutcome {
    Allowed {
        patch: Option<Vec<u8>>,
    },
    Denied(ApiError),
    /// The call failed or its response was invalid (`ErrCallingWebhook`).
    CallFailed(String),
}

impl Chain<'_> {
    /// Runs webhooks and validation on an already-defaulted pod. `records` receives every call.
    pub async fn admit(
        &self,
        mut pod: Value,
        req: &PodCreate<'_>,
        records: &mut Vec<CallRecord>,
    ) -> Result<Admitted, ApiError> {
        let mut warnings = Vec::new();
        let labels = crate::selector::labels_of(&pod);
        let attrs = AdmissionAttributes {
            operation: "CREATE",
            group: "",
            version: "v1",
            resource: "pods",
            subresource: "",
            namespaced: true,
            object_labels: &labels,
            namespace_labels: req.namespace_labels,
        };
        let matching: Vec<&Webhook> = self.hooks.iter().filter(|h| h.matches(&attrs)).collect();
        if req.dry_run {
            if let Some(h) = matching
                .iter()
                .find(|h| !matches!(h.side_effects.as_str(), "None" | "NoneOnDryRun"))
            {
                return Err(status::bad_request(format!(
                    "admission webhook \"{}\" does not support dry run",
                    h.name
                )));
            }
        }
        // changed_after[i]: some webhook after i changed the object (reinvocation trigger).
        let mut last_change: Option<usize> = None;
        for (i, hook) in matching.iter().enumerate() {
            if self
                .invoke(hook, &mut pod, req, false, records, &mut warnings)
                .await?
            {
                last_change = Some(i);
            }
        }
        for (i, hook) in matching.iter().enumerate() {
            let needed = last_change.is_some_and(|c| c > i);
            if hook.reinvoke_if_needed && (needed || self.probe_reinvocation) {
                self.invoke(hook, &mut pod, req, true, records, &mut warnings)
                    .await?;
            }
        }
        let errs = validation::validate_pod(&pod);
        if !errs.is_empty() {
            let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            return Err(status::invalid("Pod", &name, &errs));
        }
        Ok(Admitted { pod, warnings })
    }

    /// One call; returns whether the object changed.
    async fn invoke(
        &self,
        hook: &Webhook,
        pod: &mut Value,
        req: &PodCreate<'_>,
        reinvocation: bool,
        records: &mut Vec<CallRecord>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        let uid = uuid::Uuid::new_v4().to_string();
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        let review = review_request(&uid, pod, req);
        let started = Instant::now();
        let url = WebhookClient::url_for(hook);
        let mut record = CallRecord {
            webhook: hook.name.clone(),
            uid: uid.clone(),
            namespace: req.namespace.to_string(),
            name: if name.is_empty() {
                pod["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            } else {
                name.clone()
            },
            url: url.clone(),
            reinvocation,
            dry_run: req.dry_run,
            outcome: String::new(),
            error: None,
            patch: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
            dropped_audit_annotations: Vec::new(),
            reused_connection: false,
            duration_ms: 0.0,
        };
        let body = serde_json::to_vec(&review).unwrap_or_default();
        let outcome = match self.client.call(hook, body).await {
            Err(e) => HookOutcome::CallFailed(format!(
                "failed calling webhook \"{}\": failed to call webhook: Post \"{url}\": {e}",
                hook.name
            )),
            Ok(resp) => {
                record.reused_connection = resp.reused_connection;
                let verified = check_content_type(resp.content_type.as_deref())
                    .and_then(|()| verify_response(&hook.name, &uid, &resp.body, &mut record));
                match verified {
                    Err(msg) => HookOutcome::CallFailed(format!(
                        "failed calling webhook \"{}\": received invalid webhook response: {msg}",
                        hook.name
                    )),
                    Ok(Verified::Denied(result)) => {
                        HookOutcome::Denied(status::webhook_denied(&hook.name, &result))
                    }
                    Ok(Verified::Allowed(patch)) => HookOutcome::Allowed { patch },
                }
            }
        };
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        warnings.extend(record.warnings.iter().cloned());
        let result = match outcome {
            HookOutcome::CallFailed(msg) => {
                record.error = Some(msg.clone());
                match hook.failure_policy {
                    FailurePolicy::Ignore => {
                        record.outcome = "failed-open".into();
                        Ok(false)
                    }
                    FailurePolicy::Fail => {
                        record.outcome = "failed-closed".into();
                        Err(status::internal_error(msg))
                    }
                }
            }
            HookOutcome::Denied(err) => {
                record.outcome = "denied".into();
                record.error = Some(err.message().to_string());
                Err(err)
            }
            HookOutcome::Allowed { patch: None } => {
                record.outcome = "allowed".into();
                Ok(false)
            }
            HookOutcome::Allowed { patch: Some(bytes) } => match apply_patch(pod, &bytes) {
                Ok((patched, ops)) => {
                    record.patch = Some(ops);
                    let changed = patched != *pod;
                    *pod = patched;
                    record.outcome = if changed { "patched" } else { "allowed" }.into();
                    Ok(changed)
                }
                Err(msg) => {
                    record.outcome = "patch-rejected".into();
                    record.error = Some(msg.clone());
                    Err(status::internal_error(msg))
                }
            },
        };
        records.push(record);
        result
    }
}

fn review_request(uid: &str, pod: &Value, req: &PodCreate<'_>) -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    let mut request = json!({
        "uid": uid,
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "namespace": req.namespace,
        "operation": "CREATE",
        "userInfo": req.user,
        "object": pod,
        "oldObject": null,
        "dryRun": req.dry_run,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    });
    if let Some(name) = pod["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
        request["name"] = json!(name);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// client-go picks the decoder from the answer's `Content-Type` (none: the request's, JSON);
/// a media type it has no decoder for fails the call.
fn check_content_type(content_type: Option<&str>) -> Result<(), String> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" | "application/yaml" | "application/vnd.kubernetes.protobuf" => Ok(()),
        other => Err(format!(
            "the server responded with the content type {other:?}, which has no decoder"
        )),
    }
}

enum Verified {
    Allowed(Option<Vec<u8>>),
    Denied(Value),
}

/// The checks of `VerifyAdmissionResponse` (v1) plus decoding `patch` as Go decodes `[]byte`:
/// a standard-alphabet, padded base64 string.
fn verify_response(
    webhook: &str,
    uid: &str,
    body: &[u8],
    record: &mut CallRecord,
) -> Result<Verified, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("decoding response: {e}"))?;
    let (api_version, kind) = (
        review["apiVersion"].as_str().unwrap_or(""),
        review["kind"].as_str().unwrap_or(""),
    );
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let resp = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got_uid = resp["uid"].as_str().unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    record.warnings = resp["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(String::from))
        .collect();
    for (k, v) in resp["auditAnnotations"].as_object().into_iter().flatten() {
        let key = format!("{webhook}/{k}");
        match (validation::qualified_name_error(&key), v.as_str()) {
            (None, Some(v)) => {
                record.audit_annotations.insert(key, v.to_string());
            }
            _ => record.dropped_audit_annotations.push(key),
        }
    }
    let patch = match &resp["patch"] {
        Value::Null => None,
        Value::String(s) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| format!("decoding response.patch as base64: {e}"))?,
        ),
        other => {
            // Go's decoder would take an array of byte values here; the webhook contract
            // (DESIGN.md) is a base64 string, so the stand-in is stricter on purpose.
            return Err(format!(
                "response.patch must be a base64 string, got {}",
                json_type(other)
            ));
        }
    };
    let patch = patch.filter(|p| !p.is_empty());
    match (resp["patchType"].as_str(), &patch) {
        (Some(t), _) if t != "JSONPatch" => {
            return Err(format!(
                "webhook returned invalid response.patchType of {t:?}"
            ))
        }
        (None, Some(_)) => {
            return Err("webhook returned response.patch but not response.patchType".into())
        }
        _ => {}
    }
    match resp["allowed"].as_bool() {
        Some(true) => Ok(Verified::Allowed(patch)),
        // A missing `allowed` decodes as false: a denial.
        _ => Ok(Verified::Denied(resp["status"].clone())),
    }
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

/// Applies an RFC 6902 patch, then decodes and re-defaults the result as the API server does
/// (`jsonpatch.DecodePatch` + `Apply`, decode into the Pod type, scheme defaulting). Returns
/// the new object and the patch as JSON.
fn apply_patch(pod: &Value, bytes: &[u8]) -> Result<(Value, Value), String> {
    let ops: Value = serde_json::from_slice(bytes).map_err(|e| format!("decoding patch: {e}"))?;
    let patch: json_patch::Patch =
        serde_json::from_value(ops.clone()).map_err(|e| format!("decoding patch: {e}"))?;
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).map_err(|e| format!("applying patch: {e}"))?;
    // Decoding into the typed Pod drops unknown fields and rejects wrong types, like the
    // API server's strict-enough decode of the patched JSON.
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(patched).map_err(|e| format!("decoding patched object: {e}"))?;
    let mut patched = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    defaulting::scheme_defaults_only(&mut patched);
    Ok((patched, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CallRecord {
        CallRecord {
            webhook: "w".into(),
            uid: "u".into(),
            namespace: "ns".into(),
            name: "p".into(),
            url: String::new(),
            reinvocation: false,
            dry_run: false,
            outcome: String::new(),
            error: None,
            patch: None,
            warnings: vec![],
            audit_annotations: BTreeMap::new(),
            dropped_audit_annotations: vec![],
            reused_connection: false,
            duration_ms: 0.0,
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn response_checks() {
        let ok_patch = b64(r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#);
        let cases: Vec<(Value, Result<&str, &str>)> = vec![
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true}}),
                Ok("allowed"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": ok_patch}}),
                Ok("patch"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": false, "status": {"message": "no"}}}),
                Ok("denied"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1"}}),
                Ok("denied"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true}}),
                Err("expected webhook response of admission.k8s.io/v1"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
                Err("webhook response was absent"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "other", "allowed": true}}),
                Err("expected response.uid"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true, "patch": ok_patch}}),
                Err("but not response.patchType"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true, "patchType": "MergePatch", "patch": ok_patch}}),
                Err("invalid response.patchType"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": "not base64!"}}),
                Err("base64"),
            ),
            (
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": [91, 93]}}),
                Err("must be a base64 string"),
            ),
        ];
        for (resp, want) in cases {
            let got = verify_response(
                "w.example.dev",
                "u1",
                resp.to_string().as_bytes(),
                &mut record(),
            );
            match (got, want) {
                (Ok(Verified::Allowed(None)), Ok("allowed")) => {}
                (Ok(Verified::Allowed(Some(_))), Ok("patch")) => {}
                (Ok(Verified::Denied(_)), Ok("denied")) => {}
                (Err(msg), Err(want)) => assert!(msg.contains(want), "{msg} vs {want}"),
                (_, want) => panic!("{resp}: expected {want:?}"),
            }
        }
    }

    #[test]
    fn content_types_the_client_can_decode() {
        for ok in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
        ] {
            assert!(check_content_type(ok).is_ok(), "{ok:?}");
        }
        assert!(check_content_type(Some("text/plain")).is_err());
    }

    #[test]
    fn audit_annotations_are_prefixed_and_invalid_keys_dropped() {
        let mut rec = record();
        let resp = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": "u1", "allowed": true,
                         "auditAnnotations": {"policies": "a,b", "bad key": "x"}}});
        verify_response("w.example.dev", "u1", resp.to_string().as_bytes(), &mut rec).unwrap();
        assert_eq!(rec.audit_annotations["w.example.dev/policies"], "a,b");
        assert_eq!(
            rec.dropped_audit_annotations,
            vec!["w.example.dev/bad key".to_string()]
        );
    }

    #[test]
    fn patches_apply_and_redefault_or_fail() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i:1"}]}});
        let add_container =
            r#"[{"op":"add","path":"/spec/containers/-","value":{"name":"s","image":"j"}}]"#;
        let (patched, _) = apply_patch(&pod, add_container.as_bytes()).unwrap();
        assert_eq!(
            patched["spec"]["containers"][1]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(
            patched["spec"]["containers"][1]["terminationMessagePath"],
            "/dev/termination-log"
        );
        let bad = r#"[{"op":"remove","path":"/spec/nothing"}]"#;
        assert!(apply_patch(&pod, bad.as_bytes())
            .unwrap_err()
            .contains("applying patch"));
        let wrong_type = r#"[{"op":"add","path":"/spec/containers","value":"x"}]"#;
        assert!(apply_patch(&pod, wrong_type.as_bytes())
            .unwrap_err()
            .contains("decoding patched object"));
    }
}
