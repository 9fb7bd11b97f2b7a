//! The `admission.k8s.io/v1` AdmissionReview envelope: read the API server's request, run the
//! engine, and build the response it expects.
//!
//! Pure: bytes in, status + bytes out, no IO. The server adds TLS, timeouts and metrics around
//! [`review`]. The body is parsed once: the envelope into a small typed struct that borrows
//! the pod's JSON text, a peek at the pod's kind, name and `spark-role`, and only for a Spark
//! pod the typed Pod itself. The response is built here rather than with kube-core's types
//! because the API server needs `patch` as a base64 *string* (kube-core serialises it as an
//! array of numbers, kube-rs issue #1781), and because every malformed input gets its own
//! specific message. [`Rejection`] decides, in one place, how each failure is answered.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::engine::{decide, Evaluation, PodError, Verdict};
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
    // RFC 8259 §8.1: JSON exchanged between systems is UTF-8. Checked for the whole body,
    // because serde_json does not check the strings it skips.
    #[error("request body is not UTF-8: invalid byte at offset {0}")]
    NotUtf8(usize),
    #[error("request body is a JSON {0}, expected an AdmissionReview object")]
    NotAnObject(&'static str),
    #[error("request body is not a valid AdmissionReview: {0}")]
    Malformed(String),
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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request.{0} is missing or has the wrong type")]
    MissingField(&'static str),
    #[error("request.object is not a Pod: {0}")]
    NotAPod(String),
    #[error("request.object cannot be read as a Pod: {0}")]
    InvalidPod(String),
    #[error("request.object is too large to evaluate: {0}")]
    TooLarge(String),
}

/// Why a request gets no regular answer; decides the HTTP status and the message.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// Nothing to echo: plain-text HTTP 400.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The submitter's request is unusable: `allowed: false`, code 400.
    #[error("{error}")]
    Request { uid: String, error: RequestError },
    /// A bug in the webhook, not in the request: plain-text HTTP 500, so that the API server
    /// applies the webhook's `failurePolicy` instead of reading it as a denial.
    #[error("internal error: {0}")]
    Internal(String),
    /// What the answer depends on is not known yet (a namespace's labels): plain-text HTTP
    /// 503, and the webhook's `failurePolicy` applies.
    #[error("{0}")]
    Unavailable(String),
}

/// The labels of the namespaces the server knows (its cache of the API's Namespaces), for
/// policies that select namespaces by label.
pub trait Namespaces: Sync {
    /// `None` when the namespace is not known.
    fn labels(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
}

/// Knows no namespace: for a server whose policies select none by label, and for tests.
pub struct NoNamespaces;

impl Namespaces for NoNamespaces {
    fn labels(&self, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
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

/// The answer to one HTTP request on `/mutate`.
#[derive(Debug, Clone)]
pub struct Reply {
    /// 200 with an AdmissionReview, or 4xx/5xx with a plain-text message.
    pub http_status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub summary: Summary,
}

/// The envelope as it arrives; `request` stays raw until the envelope is known to be good.
#[derive(Deserialize)]
struct ReviewIn<'a> {
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    kind: Option<Value>,
    #[serde(borrow)]
    request: Option<&'a RawValue>,
}

/// The fields of an AdmissionRequest this webhook reads. `O` is how the pod is read: raw JSON
/// text, or [`PodIn`] on the fast path.
#[derive(Deserialize)]
struct RequestIn<O> {
    uid: Option<Value>,
    kind: Option<Value>,
    operation: Option<Value>,
    namespace: Option<Value>,
    #[serde(rename = "subResource")]
    sub_resource: Option<Value>,
    #[serde(rename = "dryRun")]
    dry_run: Option<Value>,
    object: Option<O>,
}

/// The pod of a request: parsed in the same pass as the envelope when the request is known
/// to be a Pod CREATE by the time `object` arrives (the API server writes `kind` and
/// `operation` before it), else kept as raw JSON text.
enum PodIn<'a> {
    Typed(Box<Pod>),
    Raw(&'a RawValue),
}

/// The envelope read in one pass, pod included; any error sends the body to the slow path
/// ([`parse`]), which names it precisely.
#[derive(Deserialize)]
struct ReviewFast<'a> {
    #[serde(rename = "apiVersion")]
    api_version: Option<Value>,
    kind: Option<Value>,
    #[serde(borrow)]
    request: Option<RequestFast<'a>>,
}

struct RequestFast<'a>(RequestIn<PodIn<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for RequestFast<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "camelCase")]
        enum Field {
            Uid,
            Kind,
            Operation,
            Namespace,
            SubResource,
            DryRun,
            Object,
            #[serde(other)]
            Other,
        }
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = RequestFast<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an AdmissionRequest object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut r = RequestIn {
                    uid: None,
                    kind: None,
                    operation: None,
                    namespace: None,
                    sub_resource: None,
                    dry_run: None,
                    object: None,
                };
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::Uid => r.uid = map.next_value()?,
                        Field::Kind => r.kind = map.next_value()?,
                        Field::Operation => r.operation = map.next_value()?,
                        Field::Namespace => r.namespace = map.next_value()?,
                        Field::SubResource => r.sub_resource = map.next_value()?,
                        Field::DryRun => r.dry_run = map.next_value()?,
                        Field::Object if is_pod_create(&r) => {
                            r.object = map
                                .next_value::<Option<Pod>>()?
                                .map(|p| PodIn::Typed(Box::new(p)));
                        }
                        Field::Object => {
                            r.object = map.next_value::<Option<&'a RawValue>>()?.map(PodIn::Raw)
                        }
                        Field::Other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RequestFast(r))
            }
        }
        de.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// Whether the request read so far is a Pod CREATE (not of a subresource).
fn is_pod_create<O>(r: &RequestIn<O>) -> bool {
    let kind = r.kind.as_ref();
    kind.and_then(|k| k.get("kind")).and_then(Value::as_str) == Some("Pod")
        && kind
            .and_then(|k| k.get("group"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        && r.operation.as_ref().and_then(Value::as_str) == Some("CREATE")
        && r.sub_resource
            .as_ref()
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
}

/// What a Pod shows before it is parsed: enough to skip pods that are not Spark pods.
#[derive(Deserialize)]
struct PodPeek {
    kind: Option<Value>,
    metadata: Option<MetaPeek>,
}

#[derive(Deserialize)]
struct MetaPeek {
    name: Option<String>,
    #[serde(rename = "generateName")]
    generate_name: Option<String>,
    labels: Option<LabelsPeek>,
}

#[derive(Deserialize)]
struct LabelsPeek {
    // spark_pod::ROLE_LABEL (an attribute cannot name a constant).
    #[serde(rename = "spark-role")]
    role: Option<String>,
}

/// A request this webhook answers.
struct Request<'a> {
    uid: String,
    /// The pod, or why there is none to look at (not a Pod CREATE), for the log.
    pod: Result<PodIn<'a>, String>,
    namespace: Option<String>,
    operation: String,
    dry_run: bool,
}

/// Read the envelope: in one pass when it is well formed, else the slow way, which names
/// what is wrong.
fn parse(body: &[u8]) -> Result<Request<'_>, Rejection> {
    // UTF-8 checked once for the whole body: `from_slice` checks only the strings it keeps.
    let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::NotUtf8(e.valid_up_to()))?;
    // A large body takes the slow path, which keeps the pod as text until its lists have
    // been counted (crate::pod_size); the fast path parses the pod as it goes.
    let fast = (body.len() <= crate::pod_size::COUNT_ABOVE_BYTES)
        .then(|| serde_json::from_str::<ReviewFast>(text).ok())
        .flatten();
    if let Some(review) = fast {
        check_envelope(review.api_version, review.kind)?;
        let request = review.request.ok_or(EnvelopeError::NoRequest)?.0;
        return request_from(request);
    }
    if !text
        .trim_start_matches(|c: char| c.is_ascii_whitespace())
        .starts_with('{')
    {
        // Not an object: say what it is (or why it is not JSON).
        let value: Value =
            serde_json::from_str(text).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        return Err(EnvelopeError::NotAnObject(json_type(&value)).into());
    }
    let review: ReviewIn = serde_json::from_str(text).map_err(envelope_error)?;
    check_envelope(review.api_version, review.kind)?;
    let raw = review
        .request
        .filter(|r| r.get().starts_with('{'))
        .ok_or(EnvelopeError::NoRequest)?;
    let request: RequestIn<&RawValue> = serde_json::from_str(raw.get()).map_err(envelope_error)?;
    request_from(RequestIn {
        object: request.object.filter(|o| o.get() != "null").map(PodIn::Raw),
        uid: request.uid,
        kind: request.kind,
        operation: request.operation,
        namespace: request.namespace,
        sub_resource: request.sub_resource,
        dry_run: request.dry_run,
    })
}

fn check_envelope(api_version: Option<Value>, kind: Option<Value>) -> Result<(), EnvelopeError> {
    match api_version {
        None | Some(Value::Null) => return Err(EnvelopeError::MissingApiVersion),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => return Err(EnvelopeError::WrongApiVersion(other.to_string())),
    }
    match kind {
        Some(Value::String(k)) if k == KIND => Ok(()),
        Some(other) => Err(EnvelopeError::WrongKind(other.to_string())),
        None => Err(EnvelopeError::WrongKind("missing".to_string())),
    }
}

/// The request's fields, checked.
fn request_from(request: RequestIn<PodIn<'_>>) -> Result<Request<'_>, Rejection> {
    let uid = match request.uid {
        Some(Value::String(uid)) if !uid.is_empty() => uid,
        _ => return Err(EnvelopeError::NoUid.into()),
    };
    let fail = |error| Rejection::Request {
        uid: uid.clone(),
        error,
    };
    let kind = request
        .kind
        .as_ref()
        .and_then(Value::as_object)
        .ok_or_else(|| fail(RequestError::MissingField("kind")))?;
    let kind_name = kind
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| fail(RequestError::MissingField("kind.kind")))?;
    let kind_group = kind.get("group").and_then(Value::as_str).unwrap_or("");
    let operation = request
        .operation
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| fail(RequestError::MissingField("operation")))?
        .to_string();
    let text = |v: &Option<Value>| {
        v.as_ref()
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let sub_resource = text(&request.sub_resource);
    // Only a Pod CREATE can be a new Spark pod; everything else passes untouched.
    let pod = if kind_name != "Pod" || !kind_group.is_empty() || operation != "CREATE" {
        Err(format!("not a Pod CREATE ({operation} {kind_name})"))
    } else if let Some(sub) = &sub_resource {
        Err(format!("not a Pod CREATE ({operation} {kind_name}/{sub})"))
    } else {
        Ok(request
            .object
            .ok_or_else(|| fail(RequestError::MissingField("object")))?)
    };
    Ok(Request {
        pod,
        namespace: text(&request.namespace),
        operation,
        dry_run: request
            .dry_run
            .as_ref()
            .and_then(Value::as_bool)
            .unwrap_or(false),
        uid,
    })
}

/// A serde error on a JSON object: broken JSON, or JSON of the wrong shape.
fn envelope_error(e: serde_json::Error) -> EnvelopeError {
    if e.is_data() {
        EnvelopeError::Malformed(e.to_string())
    } else {
        EnvelopeError::NotJson(e.to_string())
    }
}

/// The peek at a pod: its name, and its role if it is a Spark pod.
fn peek(object: &RawValue) -> Result<(Option<String>, Option<SparkRole>), RequestError> {
    if !object.get().starts_with('{') {
        let value: Value = serde_json::from_str(object.get())
            .map_err(|e| RequestError::InvalidPod(e.to_string()))?;
        return Err(RequestError::NotAPod(format!(
            "it is a JSON {}",
            json_type(&value)
        )));
    }
    let peek: PodPeek =
        serde_json::from_str(object.get()).map_err(|e| RequestError::InvalidPod(e.to_string()))?;
    match peek.kind {
        None => {}
        Some(Value::String(k)) if k == "Pod" => {}
        Some(other) => return Err(RequestError::NotAPod(format!("its kind is {other}"))),
    }
    let meta = peek.metadata;
    let name = meta
        .as_ref()
        .and_then(|m| m.name.clone().or_else(|| m.generate_name.clone()))
        .filter(|n| !n.is_empty());
    let role = meta
        .and_then(|m| m.labels)
        .and_then(|l| l.role)
        .and_then(|r| SparkRole::from_label(&r));
    Ok((name, role))
}

/// The typed Pod; on failure, the path of the offending field.
fn read_pod(object: &RawValue) -> Result<Pod, RequestError> {
    let text = object.get();
    if text.len() > crate::pod_size::COUNT_ABOVE_BYTES {
        let over = crate::pod_size::ListCounts::of(text).and_then(|c| c.over_limit());
        if let Some(why) = over {
            return Err(RequestError::TooLarge(why));
        }
    }
    serde_json::from_str(text).map_err(|_| {
        let mut de = serde_json::Deserializer::from_str(text);
        match serde_path_to_error::deserialize::<_, Pod>(&mut de) {
            Err(e) => RequestError::InvalidPod(format!("at {}: {}", e.path(), e.inner())),
            Ok(_) => RequestError::InvalidPod("the pod does not deserialise".to_string()),
        }
    })
}

/// Answer one `/mutate` body with the given policy set; `namespaces` gives the labels of
/// the pod's namespace when a policy selects namespaces by label.
pub fn review(policies: &PolicySet, namespaces: &dyn Namespaces, body: &[u8]) -> Reply {
    let mut summary = Summary::empty(Outcome::Error);
    match answer(policies, namespaces, body, &mut summary) {
        Ok((allowed, extras)) => review_bytes(allowed, extras, summary),
        Err(rejection) => rejection_reply(rejection, summary),
    }
}

/// Whether the request is allowed, and what goes with the answer; `summary` is filled in
/// along the way (also when the request is rejected).
fn answer(
    policies: &PolicySet,
    namespaces: &dyn Namespaces,
    body: &[u8],
    summary: &mut Summary,
) -> Result<(bool, ResponseExtras), Rejection> {
    let request = parse(body)?;
    summary.uid = Some(request.uid.clone());
    summary.operation = Some(request.operation);
    summary.namespace = request.namespace;
    summary.dry_run = request.dry_run;
    summary.outcome = Outcome::Unchanged;
    let uid = request.uid;
    let fail = |error| Rejection::Request {
        uid: uid.clone(),
        error,
    };

    let object = match request.pod {
        Ok(PodIn::Typed(pod)) => {
            summary.pod_name = name_of(&pod);
            return respond(
                evaluate_pod(policies, namespaces, *pod, summary, &fail)?,
                summary,
            );
        }
        Ok(PodIn::Raw(object)) => object,
        Err(why) => {
            summary.note = Some(why);
            return Ok((true, ResponseExtras::default()));
        }
    };
    // A pod whose text holds no `spark-role` is looked at without being parsed (exact: a key
    // written with escapes is still found by the peek); one that does is parsed at once.
    let pod = if object.get().contains(crate::spark_pod::ROLE_LABEL) {
        // On failure the peek names a wrong kind more plainly than the typed parse.
        let pod = read_pod(object).map_err(|e| fail(peek(object).err().unwrap_or(e)))?;
        summary.pod_name = name_of(&pod);
        pod
    } else {
        let (name, role) = peek(object).map_err(fail)?;
        summary.pod_name = name;
        if role.is_none() {
            summary.note = Some("not a Spark pod".to_string());
            return Ok((true, ResponseExtras::default()));
        }
        read_pod(object).map_err(fail)?
    };
    respond(
        evaluate_pod(policies, namespaces, pod, summary, &fail)?,
        summary,
    )
}

/// Decide for the pod; the labels of its namespace are looked up only when a policy of the
/// set selects namespaces by label.
fn evaluate_pod(
    policies: &PolicySet,
    namespaces: &dyn Namespaces,
    pod: Pod,
    summary: &Summary,
    fail: &dyn Fn(RequestError) -> Rejection,
) -> Result<Evaluation<()>, Rejection> {
    let namespace = summary.namespace.as_deref();
    let labels = namespace
        .filter(|_| policies.selects_namespaces())
        .and_then(|ns| namespaces.labels(ns));
    decide(policies, pod, namespace, labels.as_ref()).map_err(|e| match e {
        PodError::Internal(message) => Rejection::Internal(message),
        PodError::UnknownNamespace(e) => Rejection::Unavailable(e.to_string()),
        PodError::NotAPod(m) => fail(RequestError::NotAPod(m)),
        PodError::Invalid(m) => fail(RequestError::InvalidPod(m)),
    })
}

/// `metadata.name`, or `generateName` before the API server has made the name.
fn name_of(pod: &Pod) -> Option<String> {
    pod.metadata
        .name
        .clone()
        .or_else(|| pod.metadata.generate_name.clone())
        .filter(|n| !n.is_empty())
}

/// What the answer carries for an evaluated pod.
fn respond(
    evaluation: Evaluation<()>,
    summary: &mut Summary,
) -> Result<(bool, ResponseExtras), Rejection> {
    summary.role = evaluation.role;
    if evaluation.role.is_none() {
        summary.note = Some("not a Spark pod".to_string());
    }
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
    summary.applied = evaluation.applied;
    summary.audited = evaluation.audited;
    let allowed = match evaluation.verdict {
        Verdict::Unchanged => true,
        Verdict::Patched { patch, .. } => {
            let json = serde_json::to_vec(&patch)
                .map_err(|e| Rejection::Internal(format!("cannot serialise the patch: {e}")))?;
            extras.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
            // A patch that only adds the audit annotation leaves the pod as it was.
            summary.outcome = if evaluation.changes.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Patched
            };
            true
        }
        Verdict::Denied { policy, message } => {
            summary.outcome = Outcome::Denied;
            summary.note = Some(format!("denied by policy {policy}"));
            extras.status = Some(StatusOut::failure(
                403,
                "Forbidden",
                denial_message(&policy, &message),
            ));
            false
        }
    };
    Ok((allowed, extras))
}

/// The message a denied submitter reads: always names the policy.
fn denial_message(policy: &str, message: &str) -> String {
    if message.contains(policy) {
        format!("spark-admission: {message}")
    } else {
        format!("spark-admission: policy {policy}: {message}")
    }
}

fn rejection_reply(rejection: Rejection, mut summary: Summary) -> Reply {
    summary.outcome = Outcome::Error;
    summary.note = Some(rejection.to_string());
    match rejection {
        Rejection::Envelope(e) => plain_reply(400, e.to_string(), summary),
        Rejection::Internal(_) => {
            plain_reply(500, format!("spark-admission: {rejection}"), summary)
        }
        Rejection::Unavailable(_) => plain_reply(
            503,
            format!("spark-admission: {rejection}; the webhook's failurePolicy applies"),
            summary,
        ),
        Rejection::Request { uid, error } => {
            summary.uid = Some(uid);
            let extras = ResponseExtras {
                status: Some(StatusOut::failure(
                    400,
                    "BadRequest",
                    format!("spark-admission: {error}"),
                )),
                ..ResponseExtras::default()
            };
            review_bytes(false, extras, summary)
        }
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

/// The AdmissionReview answer, echoing `summary.uid`.
fn review_bytes(allowed: bool, extras: ResponseExtras, summary: Summary) -> Reply {
    let out = ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response: ResponseOut {
            uid: summary.uid.as_deref().unwrap_or_default(),
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
            format!("spark-admission: internal error: cannot serialise the response: {e}"),
            Summary {
                outcome: Outcome::Error,
                ..summary
            },
        ),
    }
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
            // In a field the webhook skips, where serde_json would not look (found by fuzzing).
            (
                b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"x\":\"\xf9\"}",
                "not UTF-8: invalid byte at offset 66",
            ),
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
            let reply = review(&PolicySet::default(), &NoNamespaces, body);
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
            (
                pod_request(
                    "CREATE",
                    json!({"kind": "ConfigMap", "metadata": {"labels": {"spark-role": "driver"}}}),
                ),
                "its kind is \"ConfigMap\"",
            ),
            (
                pod_request(
                    "CREATE",
                    json!({"kind": "Pod", "metadata": {"labels": {"spark-role": "driver"}}, "spec": {"containers": 5}}),
                ),
                "cannot be read as a Pod: at spec.containers",
            ),
        ];
        for (request, want) in cases {
            let reply = review(&PolicySet::default(), &NoNamespaces, &review_json(request));
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
            let reply = review(&PolicySet::default(), &NoNamespaces, &review_json(request));
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
        let reply = review(&PolicySet::default(), &NoNamespaces, &review_json(request));
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
        let summary = Summary {
            uid: Some("u-9".into()),
            ..Summary::empty(Outcome::Patched)
        };
        let reply = review_bytes(true, extras, summary);
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
