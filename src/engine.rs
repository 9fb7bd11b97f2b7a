//! The engine: one pure function from (policy set, pod JSON) to a verdict.
//!
//! request → Spark pod view → selected policies → mutated pod → diff → verdict.
//! The diff is taken between the typed forms of the original and mutated pod and applied to
//! the original JSON, so fields the typed model does not know are never removed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::Value;

use crate::mutate;
use crate::policy::PolicySet;
use crate::selection::{self, PodFacts};
use crate::spark_pod::{self, SparkRole};
use crate::{AUDIT_ANNOTATION, POLICIES_ANNOTATION};

/// What the engine decided for one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not a Spark pod, no policy matched, or the pod already conforms: no patch.
    Unchanged,
    /// The pod must be changed: `patch` (RFC 6902, never empty) turns the original JSON into `pod`.
    Patched {
        patch: json_patch::Patch,
        pod: Value,
    },
    /// A policy with `onConflict: deny` or `maxPodMemory.action: deny` rejects the pod.
    Denied { policy: String, message: String },
}

/// The engine's answer, with everything an operator needs to see why.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// `None` when the pod is not a Spark pod (no or unknown `spark-role`).
    pub role: Option<SparkRole>,
    pub verdict: Verdict,
    /// Enforce-mode policies that matched, in application order.
    pub applied: Vec<String>,
    /// Audit-mode policies that would have changed the pod.
    pub audited: Vec<String>,
    /// What Enforce policies changed, one line each. Empty when the patch only writes the
    /// webhook's own annotations (a pod only Audit policies matched, or one that already
    /// conforms): such an admission is not a patched pod for metrics and logs.
    pub changes: Vec<String>,
    /// Human-readable notes: kept conflicts, skipped changes, what Audit policies would do.
    pub warnings: Vec<String>,
}

impl Evaluation {
    fn unchanged(role: Option<SparkRole>) -> Evaluation {
        Evaluation {
            role,
            verdict: Verdict::Unchanged,
            applied: vec![],
            audited: vec![],
            changes: vec![],
            warnings: vec![],
        }
    }
}

/// The object handed to the engine is not a Pod it can read.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("object is not a Pod: {0}")]
    NotAPod(String),
    #[error("pod does not deserialise as a Kubernetes Pod: {0}")]
    Invalid(String),
}

/// Read a Pod from JSON, naming the field that is wrong.
pub fn read_pod(pod: &Value) -> Result<Pod, PodError> {
    if !pod.is_object() {
        return Err(PodError::NotAPod("expected a JSON object".into()));
    }
    if let Some(kind) = pod.get("kind") {
        if kind != "Pod" {
            return Err(PodError::NotAPod(format!(
                "kind is {kind}, expected \"Pod\""
            )));
        }
    }
    // Fast path first; on failure read again to name the offending field.
    Pod::deserialize(pod).or_else(|_| {
        serde_path_to_error::deserialize(pod).map_err(|e| {
            let at = e.path().to_string();
            PodError::Invalid(format!("at {at}: {}", e.inner()))
        })
    })
}

/// The `spark-role` label straight from the JSON: pods that are not Spark pods (most pods
/// in a cluster, if the webhook's objectSelector is missing) are answered without parsing.
fn raw_role(pod: &Value) -> Option<&str> {
    pod.get("metadata")?
        .get("labels")?
        .get(spark_pod::ROLE_LABEL)?
        .as_str()
}

/// Evaluate `pod` against `policies`.
///
/// `namespace` is the namespace the pod is created in (the AdmissionRequest's namespace);
/// when `None`, `metadata.namespace` is used, then `default`.
pub fn evaluate(
    policies: &PolicySet,
    pod: &Value,
    namespace: Option<&str>,
) -> Result<Evaluation, PodError> {
    if raw_role(pod).and_then(SparkRole::from_label).is_none() {
        if !pod.is_object() || pod.get("kind").is_some_and(|k| k != "Pod") {
            read_pod(pod)?;
        }
        return Ok(Evaluation::unchanged(None));
    }
    let typed = read_pod(pod)?;
    let Some(role) = spark_pod::role(&typed) else {
        return Ok(Evaluation::unchanged(None));
    };
    if typed.spec.is_none() {
        return Err(PodError::Invalid("the pod has no spec".into()));
    }
    let namespace = namespace
        .or(typed.metadata.namespace.as_deref())
        .unwrap_or("default");
    let no_labels = BTreeMap::new();
    let facts = PodFacts {
        role,
        namespace,
        labels: typed.metadata.labels.as_ref().unwrap_or(&no_labels),
    };
    let (enforce, audit) = selection::select(policies, facts);
    if enforce.is_empty() && audit.is_empty() {
        return Ok(Evaluation::unchanged(Some(role)));
    }

    let mut mutated = typed.clone();
    let mut warnings = vec![];
    let mut changes = vec![];
    let applied: Vec<String> = enforce.iter().map(|p| p.name.clone()).collect();
    if !enforce.is_empty() {
        let effective = selection::merge(&enforce);
        match mutate::apply(&mut mutated, role, &effective) {
            Ok(report) => {
                changes = report.changes;
                warnings.extend(report.warnings);
            }
            Err(denial) => {
                return Ok(Evaluation {
                    role: Some(role),
                    verdict: Verdict::Denied {
                        policy: denial.policy,
                        message: denial.message,
                    },
                    applied,
                    audited: vec![],
                    changes,
                    warnings,
                })
            }
        }
    }

    // Audit policies: what each would do on top of the enforced result, reported only.
    let mut audited = vec![];
    for policy in &audit {
        let mut scratch = mutated.clone();
        let effective = selection::merge(&[*policy]);
        match mutate::apply(&mut scratch, role, &effective) {
            Ok(report) => {
                if !report.changes.is_empty() {
                    audited.push(policy.name.clone());
                }
                warnings.extend(
                    report
                        .changes
                        .iter()
                        .map(|c| format!("audit {}: would apply {c}", policy.name)),
                );
                warnings.extend(
                    report
                        .warnings
                        .iter()
                        .map(|w| format!("audit {}: {w}", policy.name)),
                );
            }
            Err(denial) => {
                audited.push(policy.name.clone());
                warnings.push(format!(
                    "audit {}: would deny: {}",
                    policy.name, denial.message
                ));
            }
        }
    }

    let annotations = mutated
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    if !applied.is_empty() {
        annotations.insert(POLICIES_ANNOTATION.into(), applied.join(","));
    }
    if !audited.is_empty() {
        annotations.insert(AUDIT_ANNOTATION.into(), audited.join(","));
    }

    let patch = diff_touchable(&typed, &mutated)?;
    let verdict = if patch.0.is_empty() {
        Verdict::Unchanged
    } else {
        let mut patched = pod.clone();
        json_patch::patch(&mut patched, &patch).map_err(|e| {
            PodError::Invalid(format!(
                "internal error: patch does not apply to the pod: {e}"
            ))
        })?;
        Verdict::Patched {
            patch,
            pod: patched,
        }
    };
    Ok(Evaluation {
        role: Some(role),
        verdict,
        applied,
        audited,
        changes,
        warnings,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, PodError> {
    serde_json::to_value(v)
        .map_err(|e| PodError::Invalid(format!("internal error: pod does not serialise: {e}")))
}

/// The parts of a pod the mutations may change, with their JSON Pointer tokens. Diffing
/// only these (not the whole pod) keeps an admission cheap; `debug_assert` checks that
/// nothing else changed.
fn touchable(pod: &Pod) -> Result<Vec<(Vec<String>, Value)>, PodError> {
    let spec = pod.spec.as_ref();
    let mut parts = vec![
        (
            vec!["metadata".into(), "annotations".into()],
            to_json(&pod.metadata.annotations)?,
        ),
        (
            vec!["spec".into(), "nodeSelector".into()],
            to_json(&spec.and_then(|s| s.node_selector.as_ref()))?,
        ),
        (
            vec!["spec".into(), "affinity".into()],
            to_json(&spec.and_then(|s| s.affinity.as_ref()))?,
        ),
        (
            vec!["spec".into(), "tolerations".into()],
            to_json(&spec.and_then(|s| s.tolerations.as_ref()))?,
        ),
        (
            vec!["spec".into(), "volumes".into()],
            to_json(&spec.and_then(|s| s.volumes.as_ref()))?,
        ),
    ];
    if let Some(i) = spark_pod::spark_container_index(pod) {
        let c = spec.and_then(|s| s.containers.get(i));
        parts.push((
            vec!["spec".into(), "containers".into(), i.to_string()],
            to_json(&c)?,
        ));
    }
    Ok(parts)
}

fn diff_touchable(before: &Pod, after: &Pod) -> Result<json_patch::Patch, PodError> {
    debug_assert!(
        untouched_rest_is_equal(before, after),
        "a mutation changed a field outside the touchable parts"
    );
    let mut ops = vec![];
    for ((path, a), (_, b)) in touchable(before)?.iter().zip(touchable(after)?.iter()) {
        let part = crate::patch::diff_at_path(path, a, b);
        ops.extend(part.0);
    }
    Ok(json_patch::Patch(ops))
}

fn untouched_rest_is_equal(before: &Pod, after: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        let idx = spark_pod::spark_container_index(&p);
        p.metadata.annotations = None;
        if let Some(s) = p.spec.as_mut() {
            s.node_selector = None;
            s.affinity = None;
            s.tolerations = None;
            s.volumes = None;
            if let Some(c) = idx.and_then(|i| s.containers.get_mut(i)) {
                *c = Default::default();
            }
        }
        p
    };
    strip(before) == strip(after)
}
