//! `spark-admission explain`: why a pod comes out of the engine as it does. For every
//! policy, whether it matched and if not the first reason ([`crate::selection::explain`]);
//! for every field the patch changes, the old and the new value and the policy that made
//! the change; the denial and the warnings. Pure: the CLI reads the files.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::engine::{evaluate_with_labels, read_pod, PodError, Verdict};
use crate::policy::{Mode, PolicySet};
use crate::selection::{self, PodFacts};
use crate::spark_pod;

/// Written in place of a policy for the webhook's own annotations.
pub const WEBHOOK_RECORD: &str = "(spark-admission's record of the policies)";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// `None`: not a Spark pod, no policy looks at it.
    pub role: Option<String>,
    pub namespace: String,
    /// The namespace's labels as given; `None` when not known.
    pub namespace_labels: Option<BTreeMap<String, String>>,
    pub policies: Vec<PolicyMatch>,
    /// `patched`, `unchanged` or `denied`.
    pub verdict: String,
    pub denied: Option<Denial>,
    pub changes: Vec<FieldChange>,
    /// What the Enforce policies did, a sentence each (the engine's own account).
    pub summary: Vec<String>,
    pub warnings: Vec<String>,
    /// Audit policies that would have changed the pod.
    pub audited: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyMatch {
    pub name: String,
    pub mode: String,
    pub matched: bool,
    /// Why not, or that an Audit match is only reported.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Denial {
    pub policy: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// JSON pointer of the field (as in the patch).
    pub field: String,
    /// `None`: not there before (or after).
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub policy: String,
}

/// Explain what `set` does to `pod` created in `namespace` (else its metadata.namespace,
/// else `default`) whose labels are `namespace_labels`.
pub fn explain(
    set: &PolicySet,
    pod: &Value,
    namespace: Option<&str>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Result<Explanation, PodError> {
    let eval = evaluate_with_labels(set, pod, namespace, namespace_labels)?;
    let typed = read_pod(pod)?;
    let namespace = namespace
        .map(str::to_string)
        .or_else(|| typed.metadata.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let no_labels = BTreeMap::new();
    let policies = match spark_pod::role(&typed) {
        Some(role) => {
            let facts = PodFacts {
                role,
                namespace: &namespace,
                labels: typed.metadata.labels.as_ref().unwrap_or(&no_labels),
                namespace_labels,
            };
            selection::explain(set, facts)
                .into_iter()
                .map(|m| PolicyMatch {
                    name: m.policy.name.clone(),
                    mode: format!("{:?}", m.policy.mode),
                    matched: m.matched,
                    reason: m.reason,
                })
                .collect()
        }
        None => vec![],
    };
    let (verdict, denied, changes) = match &eval.verdict {
        Verdict::Unchanged => ("unchanged", None, vec![]),
        Verdict::Denied { policy, message } => (
            "denied",
            Some(Denial {
                policy: policy.clone(),
                message: message.clone(),
            }),
            vec![],
        ),
        Verdict::Patched { patch, pod: after } => (
            "patched",
            None,
            field_changes(
                set,
                &eval.applied,
                pod,
                after,
                patch,
                namespace_labels,
                &namespace,
            )?,
        ),
    };
    Ok(Explanation {
        role: eval.role.map(|r| r.as_str().to_string()),
        namespace,
        namespace_labels: namespace_labels.cloned(),
        policies,
        verdict: verdict.to_string(),
        denied,
        changes,
        summary: eval.changes,
        warnings: eval.warnings,
        audited: eval.audited,
    })
}

/// Each field the patch writes, with the policy that made it what it is: the pod is run
/// through the first 1, 2, … applied policies, and a field belongs to the last policy whose
/// addition changed it.
fn field_changes(
    set: &PolicySet,
    applied: &[String],
    before: &Value,
    after: &Value,
    patch: &json_patch::Patch,
    namespace_labels: Option<&BTreeMap<String, String>>,
    namespace: &str,
) -> Result<Vec<FieldChange>, PodError> {
    let mut stages = vec![before.clone()];
    for k in 1..=applied.len() {
        let modes: BTreeMap<String, Mode> = set
            .policies()
            .iter()
            .filter(|p| p.mode != Mode::Off)
            .map(|p| {
                let on = applied[..k].contains(&p.name);
                (p.name.clone(), if on { Mode::Enforce } else { Mode::Off })
            })
            .collect();
        let partial = set.with_modes(&modes).map_err(PodError::Internal)?;
        let stage = match evaluate_with_labels(&partial, before, Some(namespace), namespace_labels)?
            .verdict
        {
            Verdict::Patched { pod, .. } => pod,
            _ => before.clone(),
        };
        stages.push(stage);
    }
    let mut changes = vec![];
    for op in &patch.0 {
        let field = op.path().to_string();
        let policy = if field.starts_with("/metadata/annotations")
            && (field == "/metadata/annotations" || field.contains("spark-admission.dev~1"))
        {
            WEBHOOK_RECORD.to_string()
        } else {
            (1..stages.len())
                .rev()
                .find(|&k| stages[k].pointer(&field) != stages[k - 1].pointer(&field))
                .map_or_else(|| "?".to_string(), |k| applied[k - 1].clone())
        };
        changes.push(FieldChange {
            old: before.pointer(&field).cloned(),
            new: after.pointer(&field).cloned(),
            field,
            policy,
        });
    }
    Ok(changes)
}

/// The explanation for a terminal.
pub fn render(e: &Explanation) -> String {
    let mut s = String::new();
    let labels = match &e.namespace_labels {
        Some(l) if l.is_empty() => "no labels".to_string(),
        Some(l) => l
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        None => "labels not given".to_string(),
    };
    let Some(role) = &e.role else {
        return "not a Spark pod (no spark-role: driver|executor|connect-server label): \
                no policy looks at it; unchanged\n"
            .to_string();
    };
    s.push_str(&format!(
        "a Spark {role} pod in namespace {} ({labels})\n\npolicies, in application order:\n",
        e.namespace
    ));
    let width = e.policies.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &e.policies {
        let status = if p.matched { "matched" } else { "no     " };
        s.push_str(&format!(
            "  {status}  {:width$}  {:7}  {}\n",
            p.name,
            p.mode,
            p.reason.as_deref().unwrap_or("")
        ));
    }
    let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), compact);
    match (&e.denied, e.changes.is_empty()) {
        (Some(d), _) => s.push_str(&format!("\ndenied by {}: {}\n", d.policy, d.message)),
        (None, true) => s.push_str("\nunchanged: no policy changes this pod\n"),
        (None, false) => {
            s.push_str("\nchanges:\n");
            for c in &e.changes {
                s.push_str(&format!(
                    "  {}  by {}\n    old: {}\n    new: {}\n",
                    c.field,
                    c.policy,
                    show(&c.old),
                    show(&c.new)
                ));
            }
        }
    }
    if !e.summary.is_empty() {
        s.push_str("\nwhat the policies did:\n");
        for line in &e.summary {
            s.push_str(&format!("  {line}\n"));
        }
    }
    if !e.warnings.is_empty() {
        s.push_str("\nwarnings:\n");
        for w in &e.warnings {
            s.push_str(&format!("  {w}\n"));
        }
    }
    s
}

/// A value on one line, shortened when long.
fn compact(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    const MAX: usize = 200;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}… ({} characters)", text.chars().count())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SET: &str = "\
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata: {name: tol}
spec:
  match: {roles: [executor]}
  tolerations: [{key: spot, operator: Exists}]
---
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata: {name: prod-only}
spec:
  match:
    roles: [executor]
    namespaceSelector: {matchLabels: {env: prod}}
  placement: {capacity: spot, provider: aks, scheduling: required}
---
apiVersion: spark-admission.dev/v1alpha1
kind: SparkPodPolicy
metadata: {name: drivers}
spec:
  match: {roles: [driver]}
  tolerations: [{key: d, operator: Exists}]
";

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "e", "labels": {"spark-role": "executor"}},
               "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "b"}]}]}})
    }

    #[test]
    fn each_policy_is_matched_or_told_why_not_and_each_field_names_its_policy() {
        let set = PolicySet::from_sources(&[("p.yaml", SET)]).unwrap();
        let labels = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        let e = explain(&set, &pod(), Some("team-a"), Some(&labels)).unwrap();
        let matches: Vec<(&str, bool, Option<&str>)> = e
            .policies
            .iter()
            .map(|p| (p.name.as_str(), p.matched, p.reason.as_deref()))
            .collect();
        assert_eq!(
            matches,
            [
                ("drivers", false, Some("role: the pod is a executor, match.roles is [driver]")),
                ("prod-only", false, Some("namespaceSelector: namespace team-a's label env is \"dev\", matchLabels wants \"prod\"")),
                ("tol", true, None),
            ]
        );
        let fields: Vec<(&str, &str)> = e
            .changes
            .iter()
            .map(|c| (c.field.as_str(), c.policy.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("/metadata/annotations", WEBHOOK_RECORD),
                ("/spec/tolerations", "tol")
            ]
        );
        assert_eq!(e.changes[1].old, None);
        assert_eq!(
            e.changes[1].new,
            Some(json!([{"key": "spot", "operator": "Exists"}]))
        );

        let prod = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let e = explain(&set, &pod(), Some("team-a"), Some(&prod)).unwrap();
        let by: Vec<(&str, &str)> = e
            .changes
            .iter()
            .map(|c| (c.field.as_str(), c.policy.as_str()))
            .collect();
        assert_eq!(
            by,
            [
                ("/metadata/annotations", WEBHOOK_RECORD),
                ("/spec/nodeSelector", "prod-only"),
                ("/spec/tolerations", "tol"),
            ],
            "{e:#?}"
        );
        assert!(render(&e).contains("  /spec/nodeSelector  by prod-only\n    old: (absent)\n"));
    }

    #[test]
    fn a_pod_that_is_not_a_spark_pod_is_said_so() {
        let set = PolicySet::from_sources(&[("p.yaml", SET)]).unwrap();
        let mut p = pod();
        p["metadata"]["labels"] = json!({});
        let e = explain(&set, &p, None, None).unwrap();
        assert_eq!((e.role.as_deref(), e.verdict.as_str()), (None, "unchanged"));
        assert!(render(&e).starts_with("not a Spark pod"));
    }
}
