//! The API server's handling of a Pod around a mutating webhook, as the end-to-end stand-in
//! (`tests/apiserver-standin`) reproduces it, for checks that run thousands of times a second
//! (property tests, fuzz targets) and cannot start the stand-in as a server.
//!
//! The modules are the stand-in's own source files, compiled here unchanged (`#[path]`), so
//! there is one copy of each rule: a rule the stand-in learns, these checks learn too. Only
//! the stand-in's pure modules are taken (no HTTP, no admission plugins); the few lines
//! below put them together in the order its `server::create_pod` and
//! `admission::apply_patch` use them.
#![forbid(unsafe_code)]
#![allow(dead_code)]

#[path = "../../apiserver-standin/src/defaulting.rs"]
pub mod defaulting;
#[path = "../../apiserver-standin/src/jsonpatch.rs"]
pub mod jsonpatch;
#[path = "../../apiserver-standin/src/quantity.rs"]
pub mod quantity;
#[path = "../../apiserver-standin/src/typed.rs"]
pub mod typed;
#[path = "../../apiserver-standin/src/validation.rs"]
pub mod validation;

use serde_json::Value;

/// A pod as created (the body of `POST /api/v1/namespaces/NS/pods`) → what a webhook receives:
/// decoded into the Pod type (unknown fields dropped), defaulted, in namespace `ns`. An error
/// is the API server's 400 (the webhook is never called).
pub fn as_webhook_sees(created: &Value, ns: &str) -> Result<Value, String> {
    let mut pod = typed::pod(created).map_err(|e| e.0)?.value;
    defaulting::pod(&mut pod);
    pod["metadata"]["namespace"] = Value::from(ns);
    Ok(typed::pod(&pod).map_err(|e| e.0)?.value)
}

/// A webhook's JSON Patch applied as the API server applies it (evanphx/json-patch v4
/// semantics), the result decoded into the Pod type and defaulted again. An error is the API
/// server's 500 whatever the failurePolicy.
pub fn apply_webhook_patch(pod: &Value, patch: &[u8]) -> Result<Value, String> {
    let patch = jsonpatch::Patch::decode(patch)?;
    let patched = patch.apply(pod)?;
    let mut new = typed::pod(&patched).map_err(|e| e.0)?.value;
    defaulting::pod(&mut new);
    Ok(typed::pod(&new).map_err(|e| e.0)?.value)
}

/// Pod validation on create (`BeforeCreate` then `ValidatePodCreate`, the stand-in's
/// subset): the field errors, empty when the API server stores the pod.
pub fn validation_errors(pod: &Value) -> Vec<String> {
    let mut pod = pod.clone();
    typed::to_internal(&mut pod);
    let meta = &mut pod["metadata"];
    if meta["name"].as_str().is_none_or(str::is_empty) {
        match meta["generateName"].as_str().filter(|g| !g.is_empty()) {
            Some(g) => meta["name"] = Value::from(format!("{g}xxxxx")),
            None => {
                return vec![
                    "metadata.name: Required value: name or generateName is required".into(),
                ]
            }
        }
    }
    validation::validate_pod(&pod)
        .iter()
        .map(ToString::to_string)
        .collect()
}
