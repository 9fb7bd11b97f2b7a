//! The engine: one pure function from (policy set, pod JSON) to a verdict.

use serde_json::Value;

use crate::policy::PolicySet;
use crate::spark_pod::SparkRole;

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
    /// Human-readable notes: kept conflicts, skipped changes, what Audit policies would do.
    pub warnings: Vec<String>,
}

/// The object handed to the engine is not a Pod it can read.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("object is not a Pod: {0}")]
    NotAPod(String),
    #[error("pod does not deserialise as a Kubernetes Pod: {0}")]
    Invalid(String),
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
    let _ = (policies, pod, namespace);
    Ok(Evaluation {
        role: None,
        verdict: Verdict::Unchanged,
        applied: vec![],
        audited: vec![],
        warnings: vec![],
    })
}
