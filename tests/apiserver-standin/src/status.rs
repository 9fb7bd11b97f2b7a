//! `metav1.Status` answers, worded as the API server words them.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::validation::FieldError;

/// An API error: HTTP status and the `Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

fn status(code: StatusCode, reason: &str, message: String, details: Value) -> ApiError {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
    });
    if !details.is_null() {
        body["details"] = details;
    }
    ApiError { code, body }
}

pub fn not_found(resource: &str, name: &str) -> ApiError {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
        json!({"name": name, "kind": resource}),
    )
}

pub fn namespace_not_found(ns: &str) -> ApiError {
    not_found("namespaces", ns)
}

pub fn already_exists(resource: &str, name: &str) -> ApiError {
    status(
        StatusCode::CONFLICT,
        "AlreadyExists",
        format!("{resource} \"{name}\" already exists"),
        json!({"name": name, "kind": resource}),
    )
}

/// `apierrors.NewForbidden`, as `admission.NewForbidden` words an admission plugin's refusal.
pub fn forbidden(resource: &str, name: &str, reason: &str) -> ApiError {
    status(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!("{resource} \"{name}\" is forbidden: {reason}"),
        json!({"name": name, "kind": resource}),
    )
}

pub fn bad_request(message: String) -> ApiError {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, Value::Null)
}

pub fn method_not_supported(method: &str, path: &str) -> ApiError {
    status(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        ),
        Value::Null,
    )
}

pub fn unsupported_path(path: &str) -> ApiError {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("the server could not find the requested resource ({path}; not reproduced by the stand-in)"),
        Value::Null,
    )
}

/// `apierrors.NewInternalError`: a failed webhook call under `failurePolicy: Fail`, or a
/// patch that does not apply.
pub fn internal_error(message: String) -> ApiError {
    status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("Internal error occurred: {message}"),
        json!({"causes": [{"message": message}]}),
    )
}

/// `webhookerrors.ToStatusErr`: a webhook's denial, code at least 400.
pub fn webhook_denied(webhook: &str, result: &Value) -> ApiError {
    let denied_by = format!("admission webhook \"{webhook}\" denied the request");
    let message = match (result["message"].as_str(), result["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{denied_by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{denied_by}: {r}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = result["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let mut err = status(
        code,
        result["reason"].as_str().unwrap_or(""),
        message,
        result.get("details").cloned().unwrap_or(Value::Null),
    );
    if err.body["reason"] == "" {
        if let Some(o) = err.body.as_object_mut() {
            o.remove("reason");
        }
    }
    err
}

/// `apierrors.NewInvalid`: 422 with one cause per field error.
pub fn invalid(kind: &str, name: &str, errs: &[FieldError]) -> ApiError {
    let list = if errs.len() == 1 {
        errs[0].to_string()
    } else {
        format!(
            "[{}]",
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
        .collect();
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        format!("{kind} \"{name}\" is invalid: {list}"),
        json!({"name": name, "kind": "pods", "causes": causes}),
    )
}

pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}
