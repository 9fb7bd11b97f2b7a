//! The API server's admission chain for a Pod CREATE, from the decoded and defaulted object to
//! the one it stores:
//! 1. the mutating chain (`admission/reinvocation.go`): the in-tree plugins (`plugins`), then
//!    the mutating webhooks (`plugin/webhook/mutating/dispatcher.go`); when a webhook changed
//!    the object the whole chain runs a second time, in-tree plugins included, and an
//!    `IfNeeded` webhook is called again if anything after its first call changed the object;
//! 2. `BeforeCreate`: name generation, then Pod validation (`validation`, 422);
//! 3. the validating plugins: LimitRanger's limits, then PodSecurity (`podsecurity`, 403).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::WebhookClient;
use crate::jsonpatch::Patch;
use crate::plugins::{self, Cluster, PriorityClass};
use crate::status::{self, ApiError};
use crate::webhook_config::{AdmissionAttributes, FailurePolicy, Webhook};
use crate::{defaulting, podsecurity, typed, validation};

/// One webhook call as the stand-in saw it (served at `/_standin/calls`).
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub webhook: String,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub url: String,
    /// 0: the first round, 1: the reinvocation round (`round_1` in the audit annotations).
    pub round: u8,
    /// Called again after its first call (a real reinvocation, or the probe).
    pub reinvocation: bool,
    /// Called by `--probe-reinvocation`, not by the API server's own rules.
    pub probe: bool,
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
    /// The object the webhook received (`request.object`).
    pub object: Value,
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
    /// The namespace's LimitRange objects.
    pub limit_ranges: &'a [Value],
}

pub struct Admitted {
    /// The object to store, in its internal form (see `typed::to_internal`).
    pub pod: Value,
    pub warnings: Vec<String>,
}

pub struct Chain<'a> {
    pub hooks: &'a [Webhook],
    pub client: &'a WebhookClient,
    pub priority_classes: &'a [PriorityClass],
    /// After the API server's own rounds, call every `IfNeeded` webhook whose last call was in
    /// the first round once more with the final object — what a later webhook's change would
    /// trigger — to show its patch is idempotent. Recorded with `probe: true`.
    pub probe_reinvocation: bool,
}

/// `webhookReinvokeContext` (`mutating/reinvocationcontext.go`), webhooks by index.
#[derive(Default)]
struct Reinvocation {
    should_reinvoke: bool,
    last_output: Value,
    previously_invoked: BTreeSet<usize>,
    reinvoke: BTreeSet<usize>,
    /// Round of each webhook's last call (for the probe).
    last_round: BTreeMap<usize, u8>,
}

impl Reinvocation {
    fn require_reinvoking_previously_invoked(&mut self) {
        self.reinvoke.append(&mut self.previously_invoked);
    }
}

enum HookOutcome {
    Allowed {
        patch: Option<(Vec<u8>, String)>,
    },
    Denied(ApiError),
    /// The call failed or its response was invalid (`ErrCallingWebhook`): failurePolicy decides.
    CallFailed(String),
}

impl Chain<'_> {
    /// Admits a decoded, defaulted pod (internal form); `records` receives every webhook call.
    pub async fn admit(
        &self,
        mut pod: Value,
        req: &PodCreate<'_>,
        records: &mut Vec<CallRecord>,
    ) -> Result<Admitted, ApiError> {
        let mut warnings = Vec::new();
        let cluster = Cluster {
            priority_classes: self.priority_classes,
            limit_ranges: req.limit_ranges,
        };
        let mut state = Reinvocation::default();
        plugins::admit(&mut pod, &cluster, &defaulting::random_suffix())?;
        self.dispatch(&mut pod, req, 0, &mut state, records, &mut warnings)
            .await?;
        if state.should_reinvoke {
            plugins::admit(&mut pod, &cluster, &defaulting::random_suffix())?;
            self.dispatch(&mut pod, req, 1, &mut state, records, &mut warnings)
                .await?;
        }
        if self.probe_reinvocation {
            self.probe(&mut pod, req, &state, records, &mut warnings)
                .await?;
        }
        // BeforeCreate: the name is generated before validation sees the object.
        let meta = &pod["metadata"];
        if meta["name"].as_str().is_none_or(str::is_empty) {
            match meta["generateName"].as_str().filter(|g| !g.is_empty()) {
                Some(g) => {
                    pod["metadata"]["name"] = json!(format!("{g}{}", defaulting::random_suffix()))
                }
                None => {
                    return Err(status::invalid(
                        "Pod",
                        "",
                        &[validation::FieldError {
                            field: "metadata.name".into(),
                            reason: "FieldValueRequired",
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ))
                }
            }
        }
        let errs = validation::validate_pod(&pod);
        if !errs.is_empty() {
            let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            return Err(status::invalid("Pod", &name, &errs));
        }
        // The validating admission plugins, in order.
        plugins::limit_ranger_validate(&pod, req.limit_ranges)?;
        if let Some(p) = podsecurity::policy(req.namespace_labels, "warn") {
            if let Some(detail) = podsecurity::evaluate(&pod, p.level) {
                warnings.push(format!("would violate PodSecurity {:?}: {detail}", p.label));
            }
        }
        if let Some(p) = podsecurity::policy(req.namespace_labels, "enforce") {
            if let Some(detail) = podsecurity::evaluate(&pod, p.level) {
                return Err(status::forbidden(
                    "pods",
                    &plugins::display_name(&pod),
                    &format!("violates PodSecurity {:?}: {detail}", p.label),
                ));
            }
        }
        Ok(Admitted { pod, warnings })
    }

    fn attributes<'b>(
        labels: &'b BTreeMap<String, String>,
        req: &'b PodCreate<'_>,
    ) -> AdmissionAttributes<'b> {
        AdmissionAttributes {
            operation: "CREATE",
            group: "",
            version: "v1",
            resource: "pods",
            subresource: "",
            namespaced: true,
            object_labels: labels,
            namespace_labels: req.namespace_labels,
        }
    }

    /// `mutatingDispatcher.Dispatch`: one pass over the webhooks in order.
    async fn dispatch(
        &self,
        pod: &mut Value,
        req: &PodCreate<'_>,
        round: u8,
        state: &mut Reinvocation,
        records: &mut Vec<CallRecord>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        // In-tree plugins of the second round changed the object: every webhook called
        // before is due again.
        if round == 1 && !typed::semantic_eq(&state.last_output, pod) {
            state.require_reinvoking_previously_invoked();
        }
        let mut versioned = versioned(pod)?;
        for (i, hook) in self.hooks.iter().enumerate() {
            let labels = crate::selector::labels_of(&versioned);
            if !hook.matches(&Self::attributes(&labels, req)) {
                continue;
            }
            // A webhook is never called for the first time in the second round.
            if round == 1 && !state.reinvoke.contains(&i) {
                continue;
            }
            let reinvocation = state.last_round.contains_key(&i);
            let changed = self
                .invoke(
                    hook,
                    &mut versioned,
                    req,
                    round,
                    reinvocation,
                    false,
                    records,
                    warnings,
                )
                .await?;
            state.last_round.insert(i, round);
            if changed {
                state.require_reinvoking_previously_invoked();
                state.should_reinvoke = true;
            }
            if hook.reinvoke_if_needed {
                state.previously_invoked.insert(i);
            }
        }
        *pod = versioned;
        typed::to_internal(pod);
        state.last_output = pod.clone();
        Ok(())
    }

    async fn probe(
        &self,
        pod: &mut Value,
        req: &PodCreate<'_>,
        state: &Reinvocation,
        records: &mut Vec<CallRecord>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let mut versioned = versioned(pod)?;
        for (i, hook) in self.hooks.iter().enumerate() {
            if hook.reinvoke_if_needed && state.last_round.get(&i) == Some(&0) {
                self.invoke(hook, &mut versioned, req, 1, true, true, records, warnings)
                    .await?;
            }
        }
        *pod = versioned;
        typed::to_internal(pod);
        Ok(())
    }

    /// `callAttrMutatingHook` plus the failure handling of `Dispatch`; returns whether the
    /// object changed.
    #[allow(clippy::too_many_arguments)]
    async fn invoke(
        &self,
        hook: &Webhook,
        pod: &mut Value,
        req: &PodCreate<'_>,
        round: u8,
        reinvocation: bool,
        probe: bool,
        records: &mut Vec<CallRecord>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        if req.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
            return Err(status::bad_request(format!(
                "admission webhook \"{}\" does not support dry run",
                hook.name
            )));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let url = WebhookClient::url_for(hook);
        let mut record = CallRecord {
            webhook: hook.name.clone(),
            uid: uid.clone(),
            namespace: req.namespace.to_string(),
            name: plugins::display_name(pod),
            url: url.clone(),
            round,
            reinvocation,
            probe,
            dry_run: req.dry_run,
            outcome: String::new(),
            error: None,
            patch: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
            dropped_audit_annotations: Vec::new(),
            object: pod.clone(),
            reused_connection: false,
            duration_ms: 0.0,
        };
        let body = serde_json::to_vec(&review_request(&uid, pod, req)).unwrap_or_default();
        let started = Instant::now();
        let failed = |reason: String| {
            HookOutcome::CallFailed(format!(
                "failed calling webhook \"{}\": {reason}",
                hook.name
            ))
        };
        let outcome = match self.client.call(hook, body).await {
            Err(e) => failed(format!("failed to call webhook: Post \"{url}\": {e}")),
            Ok(resp) => {
                record.reused_connection = resp.reused_connection;
                match decode_response(resp.content_type.as_deref(), &resp.body) {
                    Err(e) => failed(format!("failed to call webhook: {e}")),
                    Ok(review) => match verify_response(&hook.name, &uid, &review, &mut record) {
                        Err(msg) => failed(format!("received invalid webhook response: {msg}")),
                        Ok(Verified::Denied(result)) => {
                            HookOutcome::Denied(status::webhook_denied(&hook.name, &result))
                        }
                        Ok(Verified::Allowed(patch)) => HookOutcome::Allowed { patch },
                    },
                }
            }
        };
        record.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        warnings.extend(record.warnings.iter().cloned());
        let result = match outcome {
            HookOutcome::CallFailed(msg) => fail(hook, &mut record, msg),
            HookOutcome::Denied(err) => {
                record.outcome = "denied".into();
                record.error = Some(err.message().to_string());
                Err(err)
            }
            HookOutcome::Allowed { patch: None } => {
                record.outcome = "allowed".into();
                Ok(false)
            }
            HookOutcome::Allowed {
                patch: Some((bytes, patch_type)),
            } => match Patch::decode(&bytes) {
                // An undecodable patch is a failed call: failurePolicy decides.
                Err(e) => fail(
                    hook,
                    &mut record,
                    format!(
                        "failed calling webhook \"{}\": received undecodable patch in webhook response: {e}",
                        hook.name
                    ),
                ),
                Ok(patch) if patch.is_empty() => {
                    record.outcome = "allowed".into();
                    record.patch = Some(json!([]));
                    Ok(false)
                }
                Ok(_) if patch_type != "JSONPatch" => fail(
                    hook,
                    &mut record,
                    format!(
                        "failed calling webhook \"{}\": unsupported patch type {patch_type:?}",
                        hook.name
                    ),
                ),
                Ok(patch) => {
                    record.patch = serde_json::from_slice(&bytes).ok();
                    match apply_patch(pod, &patch) {
                        Ok((patched, changed)) => {
                            *pod = patched;
                            record.outcome = if changed { "patched" } else { "allowed" }.into();
                            Ok(changed)
                        }
                        // Not a call failure: rejected whatever the failurePolicy.
                        Err(msg) => {
                            record.outcome = "patch-rejected".into();
                            record.error = Some(msg.clone());
                            Err(status::internal_error(msg))
                        }
                    }
                }
            },
        };
        records.push(record);
        result
    }
}

/// A failed call under the webhook's failurePolicy: Ignore admits unchanged, Fail rejects
/// with `apierrors.NewInternalError`.
fn fail(hook: &Webhook, record: &mut CallRecord, msg: String) -> Result<bool, ApiError> {
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

/// The internal object as a webhook receives it: converted to v1 and encoded.
fn versioned(pod: &Value) -> Result<Value, ApiError> {
    let mut v = pod.clone();
    typed::to_versioned(&mut v);
    typed::pod(&v)
        .map(|t| t.value)
        .map_err(|e| status::internal_error(e.0))
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

/// What client-go makes of the answer: any well-formed media type is decoded by the webhook
/// client's one serializer (`NegotiatedSerializerWrapper` matches every type), which
/// recognizes JSON and YAML by content; a malformed `Content-Type` fails the call.
fn decode_response(content_type: Option<&str>, body: &[u8]) -> Result<Value, String> {
    if let Some(ct) = content_type {
        media_type_error(ct).map_or(Ok(()), |e| Err(format!("Internal error occurred: {e}")))?;
    }
    serde_json::from_slice(body).or_else(|json_err| {
        std::str::from_utf8(body)
            .ok()
            .and_then(|text| serde_saphyr::from_str::<Value>(text).ok())
            .filter(Value::is_object)
            .ok_or_else(|| json_err.to_string())
    })
}

/// `mime.ParseMediaType`'s rejections, in short.
fn media_type_error(ct: &str) -> Option<String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&c))
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    match media.split_once('/') {
        None if media.is_empty() => return Some("mime: no media type".into()),
        None => return Some("mime: expected slash after first token".into()),
        Some((t, s)) if !token(t) || !token(s) => {
            return Some("mime: expected token after slash".into())
        }
        Some(_) => {}
    }
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        match p.split_once('=') {
            Some((k, _)) if token(k.trim()) => {}
            _ => return Some("mime: invalid media parameter".into()),
        }
    }
    None
}

enum Verified {
    /// The patch and its type, when there is a patch.
    Allowed(Option<(Vec<u8>, String)>),
    Denied(Value),
}

/// `schema.GroupVersionKind.String()` of an `apiVersion` and `kind`.
fn gvk_string(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// `VerifyAdmissionResponse` (`webhook/request/admissionreview.go`), for a mutating webhook
/// answering `admission.k8s.io/v1`, in its order; `patch` decoded as Go decodes `[]byte`.
fn verify_response(
    webhook: &str,
    uid: &str,
    review: &Value,
    record: &mut CallRecord,
) -> Result<Verified, String> {
    let resp = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let got_uid = resp["uid"].as_str().unwrap_or("");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    let (api_version, kind) = (
        review["apiVersion"].as_str().unwrap_or(""),
        review["kind"].as_str().unwrap_or(""),
    );
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}",
            gvk_string(api_version, kind)
        ));
    }
    let patch = match &resp["patch"] {
        Value::Null => Vec::new(),
        Value::String(s) => base64::engine::general_purpose::STANDARD
            .decode(s.replace(['\r', '\n'], ""))
            .map_err(|e| format!("decoding response.patch as base64: {e}"))?,
        other => {
            // Go's decoder would take an array of byte values here; the webhook contract
            // (DESIGN.md) is a base64 string, so the stand-in is stricter on purpose.
            return Err(format!(
                "response.patch must be a base64 string, got {}",
                typed::json_kind(other)
            ));
        }
    };
    let patch_type = &resp["patchType"];
    if !patch.is_empty() && patch_type.is_null() {
        return Err("webhook returned response.patch but not response.patchType".into());
    }
    if patch.is_empty() && !patch_type.is_null() {
        return Err("webhook returned response.patchType but not response.patch".into());
    }
    if patch_type.as_str() == Some("") {
        return Err("webhook returned invalid response.patchType of \"\"".into());
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
    match resp["allowed"].as_bool() {
        Some(true) => {
            Ok(Verified::Allowed((!patch.is_empty()).then(|| {
                (patch, patch_type.as_str().unwrap_or("").to_string())
            })))
        }
        // A missing `allowed` decodes as false: a denial.
        _ => Ok(Verified::Denied(resp["status"].clone())),
    }
}

/// Applies a patch to the encoded object, decodes the result into the Pod type, compares it
/// with the object before (`equality.Semantic`, before defaulting) and defaults it. Returns the
/// new object (typed) and whether it changed. A patch that does not apply or a result that
/// does not decode is an internal error.
fn apply_patch(pod: &Value, patch: &Patch) -> Result<(Value, bool), String> {
    let patched = patch.apply(pod)?;
    let mut new = typed::pod(&patched).map_err(|e| e.0)?.value;
    let changed = !typed::semantic_eq(pod, &new);
    defaulting::pod(&mut new);
    let new = typed::pod(&new).map_err(|e| e.0)?.value;
    Ok((new, changed))
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
            round: 0,
            reinvocation: false,
            probe: false,
            dry_run: false,
            outcome: String::new(),
            error: None,
            patch: None,
            warnings: vec![],
            audit_annotations: BTreeMap::new(),
            dropped_audit_annotations: vec![],
            object: Value::Null,
            reused_connection: false,
            duration_ms: 0.0,
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn review(response: Value) -> Value {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
    }

    /// Every rule of `VerifyAdmissionResponse`, with its message.
    #[test]
    fn response_checks() {
        let ok_patch = b64(r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#);
        let cases: Vec<(Value, Result<&str, &str>)> = vec![
            (review(json!({"uid": "u1", "allowed": true})), Ok("allowed")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": ok_patch})), Ok("patch")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": null, "patch": null})), Ok("allowed")),
            (review(json!({"uid": "u1", "allowed": false, "status": {"message": "no"}})), Ok("denied")),
            (review(json!({"uid": "u1"})), Ok("denied")),
            (json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "response": {"uid": "u1", "allowed": true}}),
             Err("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview")),
            (json!({"response": {"uid": "u1", "allowed": true}}),
             Err("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind=")),
            (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}), Err("webhook response was absent")),
            (json!({"apiVersion": "v1", "kind": "Status", "response": {"uid": "other", "allowed": true}}), Err("expected response.uid=\"u1\", got \"other\"")),
            (review(json!({"uid": "u1", "allowed": true, "patch": ok_patch})), Err("webhook returned response.patch but not response.patchType")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch"})), Err("webhook returned response.patchType but not response.patch")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": ""})), Err("webhook returned response.patchType but not response.patch")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": null})), Err("webhook returned response.patchType but not response.patch")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "", "patch": ok_patch})), Err("webhook returned invalid response.patchType of \"\"")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "MergePatch", "patch": ok_patch})), Ok("patch")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": "not base64!"})), Err("base64")),
            (review(json!({"uid": "u1", "allowed": true, "patchType": "JSONPatch", "patch": [91, 93]})), Err("must be a base64 string")),
        ];
        for (resp, want) in cases {
            let got = verify_response("w.example.dev", "u1", &resp, &mut record());
            match (got, want) {
                (Ok(Verified::Allowed(None)), Ok("allowed")) => {}
                (Ok(Verified::Allowed(Some(_))), Ok("patch")) => {}
                (Ok(Verified::Denied(_)), Ok("denied")) => {}
                (Err(msg), Err(want)) => assert!(msg.contains(want), "{msg} vs {want}"),
                (_, want) => panic!("{resp}: expected {want:?}"),
            }
        }
    }

    /// client-go decodes any well-formed media type with the webhook client's one serializer.
    #[test]
    fn any_well_formed_content_type_is_decoded() {
        let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
        for ct in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("text/plain"),
            Some("text/html; charset=utf-8"),
        ] {
            assert!(decode_response(ct, body).is_ok(), "{ct:?}");
        }
        let yaml = b"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n";
        assert_eq!(
            decode_response(Some("application/yaml"), yaml).unwrap()["kind"],
            "AdmissionReview"
        );
        for bad in ["", "json", "text/", "a b/c", "text/plain; =x"] {
            assert!(decode_response(Some(bad), body).is_err(), "{bad:?}");
        }
        assert!(decode_response(None, b"not json").is_err());
    }

    #[test]
    fn audit_annotations_are_prefixed_and_invalid_keys_dropped() {
        let mut rec = record();
        let resp = review(json!({"uid": "u1", "allowed": true,
                         "auditAnnotations": {"policies": "a,b", "bad key": "x"}}));
        verify_response("w.example.dev", "u1", &resp, &mut rec).unwrap();
        assert_eq!(rec.audit_annotations["w.example.dev/policies"], "a,b");
        assert_eq!(
            rec.dropped_audit_annotations,
            vec!["w.example.dev/bad key".to_string()]
        );
    }

    fn typed_pod(v: Value) -> Value {
        let mut t = typed::pod(&v).unwrap().value;
        defaulting::pod(&mut t);
        typed::pod(&t).unwrap().value
    }

    fn patch(ops: Value) -> Patch {
        Patch::decode(ops.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn patches_apply_decode_compare_and_redefault() {
        let pod = typed_pod(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i:1", "resources": {"requests": {"memory": "2Gi"}}}]}}));
        let (patched, changed) = apply_patch(
            &pod,
            &patch(
                json!([{"op":"add","path":"/spec/containers/-","value":{"name":"s","image":"j"}}]),
            ),
        )
        .unwrap();
        assert!(changed);
        assert_eq!(
            patched["spec"]["containers"][1]["imagePullPolicy"],
            "Always"
        );
        assert_eq!(patched["spec"]["containers"][1]["resources"], json!({}));
        // Same value, other spelling: semantically unchanged.
        let (same, changed) = apply_patch(
            &pod,
            &patch(json!([{"op":"replace","path":"/spec/containers/0/resources/requests/memory","value":"2048Mi"}])),
        )
        .unwrap();
        assert!(!changed);
        assert_eq!(
            same["spec"]["containers"][0]["resources"]["requests"]["memory"],
            "2Gi"
        );
        // Removing a default is a change; defaulting puts it back.
        let (back, changed) = apply_patch(
            &pod,
            &patch(json!([{"op":"remove","path":"/spec/dnsPolicy"}])),
        )
        .unwrap();
        assert!(changed);
        assert_eq!(back["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(apply_patch(
            &pod,
            &patch(json!([{"op":"remove","path":"/spec/nothing"}]))
        )
        .unwrap_err()
        .contains("Unable to remove nonexistent key"));
        assert!(apply_patch(
            &pod,
            &patch(json!([{"op":"add","path":"/spec/containers","value":"x"}]))
        )
        .unwrap_err()
        .starts_with("json: cannot unmarshal string"));
    }
}
