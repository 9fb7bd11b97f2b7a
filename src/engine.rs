//! The engine: one pure function from (policy set, pod) to a verdict.
//!
//! request → Spark pod view → selected policies → mutated pod → diff → verdict.
//! The diff is taken between the typed forms of the parts of the pod a mutation may change
//! ([`Parts`]), before and after, so fields the typed model does not know are never
//! removed. [`decide`] is the webhook's path: it mutates the typed pod in place and builds
//! only the patch. [`evaluate`] is the offline path (CLI, tests): it also applies the patch
//! to the submitted JSON, which shows the patched pod and checks that the patch applies.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, Pod, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use serde::Deserialize;
use serde_json::Value;

use crate::mutate;
use crate::patch::ListBefore;
use crate::policy::PolicySet;
use crate::selection::{self, PodFacts};
use crate::spark_pod::{self, SparkRole};
use crate::{AUDIT_ANNOTATION, POLICIES_ANNOTATION};

/// What the engine decided for one pod. `P` is what comes with a patch: the patched pod
/// (a JSON value) from [`evaluate`], nothing (`()`) from [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict<P = Value> {
    /// Not a Spark pod, no policy matched, or the pod already conforms: no patch.
    Unchanged,
    /// The pod must be changed: `patch` (RFC 6902, never empty) turns the original JSON into `pod`.
    Patched { patch: json_patch::Patch, pod: P },
    /// A policy with `onConflict: deny` or `maxPodMemory.action: deny` rejects the pod.
    Denied { policy: String, message: String },
}

/// The engine's answer, with everything an operator needs to see why.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation<P = Value> {
    /// `None` when the pod is not a Spark pod (no or unknown `spark-role`).
    pub role: Option<SparkRole>,
    pub verdict: Verdict<P>,
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

impl<P> Evaluation<P> {
    fn unchanged(role: Option<SparkRole>) -> Evaluation<P> {
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

/// The object handed to the engine is not a Pod it can read, or the engine failed.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error("object is not a Pod: {0}")]
    NotAPod(String),
    #[error("pod does not deserialise as a Kubernetes Pod: {0}")]
    Invalid(String),
    /// A bug in the engine, never the submitter's fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// A policy selects namespaces by label and the pod's namespace's labels are not known.
    #[error(transparent)]
    UnknownNamespace(#[from] selection::UnknownNamespace),
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

/// Evaluate the pod JSON `pod` against `policies`, and apply the patch to it.
///
/// `namespace` is the namespace the pod is created in (the AdmissionRequest's namespace);
/// when `None`, `metadata.namespace` is used, then `default`. Its labels are not known: a
/// policy that selects namespaces by label makes this an error ([`evaluate_with_labels`]).
pub fn evaluate(
    policies: &PolicySet,
    pod: &Value,
    namespace: Option<&str>,
) -> Result<Evaluation, PodError> {
    evaluate_with_labels(policies, pod, namespace, None)
}

/// [`evaluate`], with the labels of the pod's namespace.
pub fn evaluate_with_labels(
    policies: &PolicySet,
    pod: &Value,
    namespace: Option<&str>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Result<Evaluation, PodError> {
    if raw_role(pod).and_then(SparkRole::from_label).is_none() {
        if !pod.is_object() || pod.get("kind").is_some_and(|k| k != "Pod") {
            read_pod(pod)?;
        }
        return Ok(Evaluation::unchanged(None));
    }
    let decision = decide(policies, read_pod(pod)?, namespace, namespace_labels)?;
    let verdict = match decision.verdict {
        Verdict::Unchanged => Verdict::Unchanged,
        Verdict::Denied { policy, message } => Verdict::Denied { policy, message },
        Verdict::Patched { patch, pod: () } => {
            let mut patched = pod.clone();
            json_patch::patch(&mut patched, &patch).map_err(|e| {
                PodError::Internal(format!("the patch does not apply to the pod: {e}"))
            })?;
            Verdict::Patched {
                patch,
                pod: patched,
            }
        }
    };
    Ok(Evaluation {
        role: decision.role,
        verdict,
        applied: decision.applied,
        audited: decision.audited,
        changes: decision.changes,
        warnings: decision.warnings,
    })
}

/// Evaluate a typed pod against `policies`: the verdict with the patch only. The pod is
/// consumed (mutated in place): no copy of the whole pod is made. `namespace_labels` are
/// those of the pod's namespace, if known (needed only by policies with a
/// `namespaceSelector`).
pub fn decide(
    policies: &PolicySet,
    mut pod: Pod,
    namespace: Option<&str>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Result<Evaluation<()>, PodError> {
    let Some(role) = spark_pod::role(&pod) else {
        return Ok(Evaluation::unchanged(None));
    };
    if pod.spec.is_none() {
        return Err(PodError::Invalid("the pod has no spec".into()));
    }
    let namespace = namespace
        .or(pod.metadata.namespace.as_deref())
        .unwrap_or("default")
        .to_string();
    let no_labels = BTreeMap::new();
    let facts = PodFacts {
        role,
        namespace: &namespace,
        labels: pod.metadata.labels.as_ref().unwrap_or(&no_labels),
        namespace_labels,
    };
    let (enforce, audit) = selection::select(policies, facts)?;
    if enforce.is_empty() && audit.is_empty() {
        return Ok(Evaluation::unchanged(Some(role)));
    }

    #[cfg(debug_assertions)]
    let original = pod.clone();
    let before = Parts::of(&pod)?;
    let mut warnings = vec![];
    let mut changes = vec![];
    let applied: Vec<String> = enforce.iter().map(|p| p.name.clone()).collect();
    if !enforce.is_empty() {
        let effective = selection::merge(&enforce);
        match mutate::apply(&mut pod, role, &effective) {
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
        let mut scratch = pod.clone();
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

    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if !applied.is_empty() {
        annotations.insert(POLICIES_ANNOTATION.into(), applied.join(","));
    }
    if !audited.is_empty() {
        annotations.insert(AUDIT_ANNOTATION.into(), audited.join(","));
    }

    #[cfg(debug_assertions)]
    debug_assert!(
        untouched_rest_is_equal(&original, &pod),
        "a mutation changed a field outside the touchable parts"
    );
    let patch = before.diff(&pod)?;
    let verdict = if patch.0.is_empty() {
        Verdict::Unchanged
    } else {
        Verdict::Patched { patch, pod: () }
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

/// The parts of a pod the mutations may change, copied before they run: the patch is the
/// difference between these and the mutated pod's. Diffing only these (not the whole pod)
/// keeps an admission cheap; in debug builds `untouched_rest_is_equal` checks that nothing
/// else changed. Of the Spark container only `env`, `volumeMounts` and `resources` are
/// touched (local dirs, secret env, memory). Lists are kept as [`ListBefore`]: a tenant's
/// long list as text, so that its copy costs about what its JSON does.
struct Parts {
    annotations: Option<BTreeMap<String, String>>,
    node_selector: Option<BTreeMap<String, String>>,
    affinity: Option<Affinity>,
    tolerations: ListBefore<Toleration>,
    volumes: ListBefore<Volume>,
    container: Option<ContainerParts>,
}

/// The Spark container's index, `env`, `volumeMounts` and `resources`.
type ContainerParts = (
    usize,
    ListBefore<EnvVar>,
    ListBefore<VolumeMount>,
    Option<ResourceRequirements>,
);

fn serialise_failed(e: serde_json::Error) -> PodError {
    PodError::Internal(format!("the pod does not serialise: {e}"))
}

impl Parts {
    fn of(pod: &Pod) -> Result<Parts, PodError> {
        let spec = pod.spec.as_ref();
        let container = match spark_pod::spark_container_index(pod)
            .and_then(|i| Some((i, spec?.containers.get(i)?)))
        {
            Some((i, c)) => Some((
                i,
                ListBefore::of(c.env.as_ref()).map_err(serialise_failed)?,
                ListBefore::of(c.volume_mounts.as_ref()).map_err(serialise_failed)?,
                c.resources.clone(),
            )),
            None => None,
        };
        Ok(Parts {
            annotations: pod.metadata.annotations.clone(),
            node_selector: spec.and_then(|s| s.node_selector.clone()),
            affinity: spec.and_then(|s| s.affinity.clone()),
            tolerations: ListBefore::of(spec.and_then(|s| s.tolerations.as_ref()))
                .map_err(serialise_failed)?,
            volumes: ListBefore::of(spec.and_then(|s| s.volumes.as_ref()))
                .map_err(serialise_failed)?,
            container,
        })
    }

    /// The operations that turn these parts into those of `pod`.
    fn diff(&self, pod: &Pod) -> Result<json_patch::Patch, PodError> {
        use crate::patch::diff_typed;
        let spec = pod.spec.as_ref();
        let mut ops = vec![];
        diff_typed(
            &["metadata", "annotations"],
            self.annotations.as_ref(),
            pod.metadata.annotations.as_ref(),
            &mut ops,
        )
        .map_err(serialise_failed)?;
        diff_typed(
            &["spec", "nodeSelector"],
            self.node_selector.as_ref(),
            spec.and_then(|s| s.node_selector.as_ref()),
            &mut ops,
        )
        .map_err(serialise_failed)?;
        diff_typed(
            &["spec", "affinity"],
            self.affinity.as_ref(),
            spec.and_then(|s| s.affinity.as_ref()),
            &mut ops,
        )
        .map_err(serialise_failed)?;
        self.tolerations
            .diff(
                &["spec", "tolerations"],
                spec.and_then(|s| s.tolerations.as_ref()),
                &mut ops,
            )
            .map_err(serialise_failed)?;
        self.volumes
            .diff(
                &["spec", "volumes"],
                spec.and_then(|s| s.volumes.as_ref()),
                &mut ops,
            )
            .map_err(serialise_failed)?;
        if let Some((i, env, mounts, resources)) = &self.container {
            if let Some(c) = spec.and_then(|s| s.containers.get(*i)) {
                let index = i.to_string();
                let at = |field| ["spec", "containers", index.as_str(), field];
                env.diff(&at("env"), c.env.as_ref(), &mut ops)
                    .map_err(serialise_failed)?;
                mounts
                    .diff(&at("volumeMounts"), c.volume_mounts.as_ref(), &mut ops)
                    .map_err(serialise_failed)?;
                diff_typed(
                    &at("resources"),
                    resources.as_ref(),
                    c.resources.as_ref(),
                    &mut ops,
                )
                .map_err(serialise_failed)?;
            }
        }
        Ok(json_patch::Patch(ops))
    }
}

#[cfg(debug_assertions)]
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
                c.env = None;
                c.volume_mounts = None;
                c.resources = None;
            }
        }
        p
    };
    strip(before) == strip(after)
}
