//! Which policies apply to a pod, and how several of them combine.
//!
//! Order: `priority` ascending, then `metadata.name` ascending. Every matching policy
//! applies. List fields (tolerations, secretEnv) are merged without duplicates; for single
//! values (placement, localDirs, each memory field, a secretEnv entry of the same name) the
//! policy applied last — the highest priority, then the last name — wins.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use crate::policy::model::{
    LabelSelector, LimitRule, MatchSpec, MaxPodMemory, OverheadBounds, Placement, SelectorOperator,
    SelectorRequirement,
};
use crate::policy::{LocalDirsPolicy, Mode, Policy, PolicySet, SecretEnv};
use crate::spark_pod::SparkRole;

/// What the selector sees of a pod.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    pub role: SparkRole,
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The labels of the pod's namespace; `None` when they are not known (the server has
    /// not seen the namespace yet). Only policies with a `namespaceSelector` need them.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
}

/// A policy selects namespaces by label, and the pod's namespace's labels are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the labels of namespace {namespace:?} are not known (policy {policy} selects namespaces by label)"
)]
pub struct UnknownNamespace {
    pub namespace: String,
    pub policy: String,
}

/// Matching policies of `set` in application order, split by mode (Enforce, Audit).
pub fn select<'a>(
    set: &'a PolicySet,
    pod: PodFacts<'_>,
) -> Result<(Vec<&'a Policy>, Vec<&'a Policy>), UnknownNamespace> {
    let policies = set.policies();
    let candidates = set.index().candidates(pod.role, pod.namespace);
    if pod.namespace_labels.is_none() {
        let needs_labels = candidates.iter().map(|&i| &policies[i]).find(|p| {
            p.matcher.namespace_selector.is_some() && matches_without_namespace_labels(p, pod)
        });
        if let Some(p) = needs_labels {
            return Err(UnknownNamespace {
                namespace: pod.namespace.to_string(),
                policy: p.name.clone(),
            });
        }
    }
    Ok(candidates
        .into_iter()
        .map(|i| &policies[i])
        .filter(|p| matches(&p.matcher, pod))
        .partition(|p| p.mode == Mode::Enforce))
}

/// Whether everything but the namespace selector matches: only then are the namespace's
/// labels needed.
fn matches_without_namespace_labels(p: &Policy, pod: PodFacts<'_>) -> bool {
    mismatch(&p.matcher, pod, false).is_none()
}

pub fn matches(m: &MatchSpec, pod: PodFacts<'_>) -> bool {
    m.roles.value.iter().any(|r| r.covers(pod.role))
        && (m.namespaces.is_empty() || m.namespaces.iter().any(|p| p.matches(pod.namespace)))
        && !m
            .exclude_namespaces
            .iter()
            .any(|p| p.matches(pod.namespace))
        && m.pod_selector
            .as_ref()
            .is_none_or(|s| selector_matches(s, pod.labels))
        && m.namespace_selector
            .as_ref()
            .is_none_or(|s| pod.namespace_labels.is_some_and(|l| selector_matches(s, l)))
}

fn selector_matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    s.match_labels
        .iter()
        .all(|(k, v)| labels.get(k.as_str()).map(String::as_str) == Some(v.as_str()))
        && s.match_expressions
            .iter()
            .all(|e| requirement_holds(&e.value, labels))
}

fn requirement_holds(e: &SelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(e.key.as_str());
    let in_values = || value.is_some_and(|v| e.values.iter().any(|x| x.as_str() == v));
    match e.operator {
        SelectorOperator::In => in_values(),
        SelectorOperator::NotIn => !in_values(),
        SelectorOperator::Exists => value.is_some(),
        SelectorOperator::DoesNotExist => value.is_none(),
    }
}

/// Whether a policy matched a pod, and if not, why.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchVerdict<'a> {
    pub policy: &'a Policy,
    /// Matched, and applies to the pod: mode Enforce, or Audit (reported only).
    pub matched: bool,
    /// Why it does not match, or for a match in Audit mode, that it is only reported.
    pub reason: Option<String>,
}

/// Every policy of `set` (in application order) with whether it matches the pod and, if
/// not, the first reason: its mode, the role, the namespace, a selector requirement.
pub fn explain<'a>(set: &'a PolicySet, pod: PodFacts<'_>) -> Vec<MatchVerdict<'a>> {
    set.policies()
        .iter()
        .map(|policy| {
            let why_not = if policy.mode == Mode::Off {
                Some("mode Off: never applied".to_string())
            } else {
                mismatch(&policy.matcher, pod, true)
            };
            let reason = match (&why_not, policy.mode) {
                (None, Mode::Audit) => {
                    Some("mode Audit: what it would change is reported, not applied".to_string())
                }
                _ => why_not.clone(),
            };
            MatchVerdict {
                policy,
                matched: why_not.is_none(),
                reason,
            }
        })
        .collect()
}

/// The first part of `m` the pod fails, in words; `None` when it matches. The namespace
/// selector is only looked at with `namespace_selector`.
fn mismatch(m: &MatchSpec, pod: PodFacts<'_>, namespace_selector: bool) -> Option<String> {
    let list = |items: &mut dyn Iterator<Item = &str>| items.collect::<Vec<_>>().join(", ");
    if !m.roles.value.iter().any(|r| r.covers(pod.role)) {
        return Some(format!(
            "role: the pod is a {}, match.roles is [{}]",
            pod.role.as_str(),
            list(&mut m.roles.value.iter().map(|r| r.as_str()))
        ));
    }
    if !m.namespaces.is_empty() && !m.namespaces.iter().any(|p| p.matches(pod.namespace)) {
        return Some(format!(
            "namespace: {} is not in match.namespaces [{}]",
            pod.namespace,
            list(&mut m.namespaces.iter().map(|p| p.as_str()))
        ));
    }
    if let Some(p) = m
        .exclude_namespaces
        .iter()
        .find(|p| p.matches(pod.namespace))
    {
        return Some(format!(
            "namespace: {} is excluded by match.excludeNamespaces {}",
            pod.namespace,
            p.as_str()
        ));
    }
    if let Some(s) = &m.pod_selector {
        if let Some(why) = selector_mismatch(s, pod.labels) {
            return Some(format!("podSelector: the pod's {why}"));
        }
    }
    match (&m.namespace_selector, pod.namespace_labels) {
        (Some(_), _) if !namespace_selector => None,
        (Some(_), None) => Some(format!(
            "namespaceSelector: the labels of namespace {} are not known",
            pod.namespace
        )),
        (Some(s), Some(labels)) => selector_mismatch(s, labels)
            .map(|why| format!("namespaceSelector: namespace {}'s {why}", pod.namespace)),
        (None, _) => None,
    }
}

/// The first requirement of `s` that `labels` fail, in words.
fn selector_mismatch(s: &LabelSelector, labels: &BTreeMap<String, String>) -> Option<String> {
    let shown = |key: &str| match labels.get(key) {
        Some(v) => format!("label {key} is {v:?}"),
        None => format!("label {key} is not set"),
    };
    for (k, v) in &s.match_labels {
        if labels.get(k.as_str()).map(String::as_str) != Some(v.as_str()) {
            return Some(format!(
                "{}, matchLabels wants {:?}",
                shown(k.as_str()),
                v.as_str()
            ));
        }
    }
    s.match_expressions
        .iter()
        .find(|e| !requirement_holds(&e.value, labels))
        .map(|e| {
            let e = &e.value;
            let values: Vec<&str> = e.values.iter().map(|v| v.as_str()).collect();
            let wants = match e.operator {
                SelectorOperator::In => format!("In [{}]", values.join(", ")),
                SelectorOperator::NotIn => format!("NotIn [{}]", values.join(", ")),
                SelectorOperator::Exists => "Exists".to_string(),
                SelectorOperator::DoesNotExist => "DoesNotExist".to_string(),
            };
            format!(
                "{}, matchExpressions wants {} {wants}",
                shown(e.key.as_str()),
                e.key.as_str()
            )
        })
}

/// A value and the name of the policy it came from.
#[derive(Debug, PartialEq)]
pub struct Sourced<'a, T> {
    pub policy: &'a str,
    pub value: &'a T,
}

// Two references: copyable whatever `T` is (a derive would demand `T: Copy`).
impl<T> Clone for Sourced<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Sourced<'_, T> {}

/// The merged effect of several policies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effective<'a> {
    pub placement: Option<Sourced<'a, Placement>>,
    pub tolerations: Vec<Sourced<'a, Toleration>>,
    pub local_dirs: Option<Sourced<'a, LocalDirsPolicy>>,
    pub secret_env: Vec<Sourced<'a, SecretEnv>>,
    pub overhead: Option<Sourced<'a, OverheadBounds>>,
    pub limit: Option<Sourced<'a, LimitRule>>,
    pub max_pod_memory: Option<Sourced<'a, MaxPodMemory>>,
}

impl Effective<'_> {
    pub fn touches_memory(&self) -> bool {
        self.overhead.is_some() || self.limit.is_some() || self.max_pod_memory.is_some()
    }
}

/// Fold policies, in application order, into one effective policy.
pub fn merge<'a>(policies: &[&'a Policy]) -> Effective<'a> {
    let mut eff = Effective::default();
    for p in policies {
        let from = |value| Sourced {
            policy: p.name.as_str(),
            value,
        };
        if let Some(pl) = &p.placement {
            eff.placement = Some(from(pl));
        }
        for t in &p.tolerations {
            if !eff.tolerations.iter().any(|e| e.value == t) {
                eff.tolerations.push(Sourced {
                    policy: &p.name,
                    value: t,
                });
            }
        }
        if let Some(ld) = &p.local_dirs {
            eff.local_dirs = Some(Sourced {
                policy: &p.name,
                value: ld,
            });
        }
        for s in &p.secret_env {
            let entry = Sourced {
                policy: p.name.as_str(),
                value: s,
            };
            match eff.secret_env.iter_mut().find(|e| e.value.name == s.name) {
                Some(existing) => *existing = entry,
                None => eff.secret_env.push(entry),
            }
        }
        if let Some(m) = &p.memory {
            if let Some(o) = &m.overhead {
                eff.overhead = Some(Sourced {
                    policy: &p.name,
                    value: o,
                });
            }
            if let Some(l) = &m.limit {
                eff.limit = Some(Sourced {
                    policy: &p.name,
                    value: l,
                });
            }
            if let Some(x) = &m.max_pod_memory {
                eff.max_pod_memory = Some(Sourced {
                    policy: &p.name,
                    value: x,
                });
            }
        }
    }
    eff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(yaml: &str) -> PolicySet {
        PolicySet::from_sources(&[("p.yaml", yaml)]).unwrap()
    }

    const BASE: &str = "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\n";

    fn policy(name: &str, priority: i32, matcher: &str, body: &str) -> String {
        format!("---\n{BASE}metadata:\n  name: {name}\nspec:\n  priority: {priority}\n  match:\n{matcher}\n{body}\n")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TOL: &str = "  tolerations:\n  - {key: a, operator: Exists}";

    #[test]
    fn matching_table() {
        let l = labels(&[
            ("spark-role", "executor"),
            ("team", "data-eng"),
            ("tier", "gold"),
        ]);
        let nsl = labels(&[("kubernetes.io/metadata.name", "x"), ("env", "prod")]);
        let exec = |ns| PodFacts {
            role: SparkRole::Executor,
            namespace: ns,
            labels: &l,
            namespace_labels: Some(&nsl),
        };
        let driver = PodFacts {
            role: SparkRole::Driver,
            namespace: "default",
            labels: &l,
            namespace_labels: Some(&nsl),
        };
        let cases: &[(&str, PodFacts, bool)] = &[
            ("    roles: [executor]", exec("default"), true),
            ("    roles: [executor]", driver, false),
            ("    roles: [driver, executor]", driver, true),
            ("    roles: [executor]\n    namespaces: [team-*]", exec("team-a"), true),
            ("    roles: [executor]\n    namespaces: [team-*]", exec("default"), false),
            ("    roles: [executor]\n    excludeNamespaces: [kube-*]", exec("kube-system"), false),
            ("    roles: [executor]\n    namespaces: ['*']\n    excludeNamespaces: [default]", exec("default"), false),
            ("    roles: [executor]\n    podSelector:\n      matchLabels: {team: data-eng}", exec("x"), true),
            ("    roles: [executor]\n    podSelector:\n      matchLabels: {team: ml}", exec("x"), false),
            ("    roles: [executor]\n    podSelector:\n      matchExpressions:\n      - {key: tier, operator: In, values: [gold, silver]}", exec("x"), true),
            ("    roles: [executor]\n    podSelector:\n      matchExpressions:\n      - {key: tier, operator: NotIn, values: [gold]}", exec("x"), false),
            ("    roles: [executor]\n    podSelector:\n      matchExpressions:\n      - {key: missing, operator: NotIn, values: [gold]}", exec("x"), true),
            ("    roles: [executor]\n    podSelector:\n      matchExpressions:\n      - {key: team, operator: Exists}", exec("x"), true),
            ("    roles: [executor]\n    podSelector:\n      matchExpressions:\n      - {key: team, operator: DoesNotExist}", exec("x"), false),
            ("    roles: [executor]\n    namespaceSelector:\n      matchLabels: {env: prod}", exec("x"), true),
            ("    roles: [executor]\n    namespaceSelector:\n      matchLabels: {env: dev}", exec("x"), false),
            ("    roles: [executor]\n    namespaceSelector:\n      matchExpressions:\n      - {key: env, operator: NotIn, values: [dev]}", exec("x"), true),
            ("    roles: [executor]\n    namespaceSelector:\n      matchExpressions:\n      - {key: team, operator: Exists}", exec("x"), false),
        ];
        for (matcher, facts, expected) in cases {
            let s = set(&policy("p", 0, matcher, TOL));
            let (enforce, audit) = select(&s, *facts).unwrap();
            assert!(audit.is_empty());
            assert_eq!(
                enforce.len() == 1,
                *expected,
                "{matcher} / {:?}",
                facts.namespace
            );
        }
    }

    #[test]
    fn order_is_priority_then_name_and_later_single_values_win() {
        let m = "    roles: [executor]";
        let yaml = [
            policy("zz-low", -5, m, "  placement: {capacity: spot, provider: eks}\n  tolerations:\n  - {key: a, operator: Exists}"),
            policy("b-high", 10, m, "  placement: {capacity: on-demand, provider: eks}\n  tolerations:\n  - {key: a, operator: Exists}\n  - {key: b, operator: Exists}"),
            policy("a-high", 10, m, "  secretEnv:\n  - {name: X, secretName: s, key: k}"),
            policy("mid", 0, m, "  secretEnv:\n  - {name: X, secretName: other, key: k}\n  - {name: Y, secretName: s, key: y}"),
        ]
        .concat();
        let s = set(&yaml);
        assert_eq!(s.names(), ["zz-low", "mid", "a-high", "b-high"]);
        let l = labels(&[]);
        let (enforce, _) = select(
            &s,
            PodFacts {
                role: SparkRole::Executor,
                namespace: "default",
                labels: &l,
                namespace_labels: None,
            },
        )
        .unwrap();
        let eff = merge(&enforce);
        assert_eq!(eff.placement.unwrap().policy, "b-high");
        let tol_keys: Vec<_> = eff
            .tolerations
            .iter()
            .map(|t| t.value.key.as_deref().unwrap())
            .collect();
        assert_eq!(tol_keys, ["a", "b"], "tolerations merge without duplicates");
        let env: Vec<_> = eff
            .secret_env
            .iter()
            .map(|e| {
                (
                    e.value.name.as_str(),
                    e.value.secret_name.as_str(),
                    e.policy,
                )
            })
            .collect();
        assert_eq!(env, [("X", "s", "a-high"), ("Y", "s", "mid")]);
    }

    #[test]
    fn audit_policies_are_separate() {
        let yaml = policy(
            "a",
            0,
            "    roles: [driver]",
            &format!("  mode: Audit\n{TOL}"),
        );
        let s = set(&yaml);
        let l = labels(&[]);
        let (enforce, audit) = select(
            &s,
            PodFacts {
                role: SparkRole::Driver,
                namespace: "default",
                labels: &l,
                namespace_labels: None,
            },
        )
        .unwrap();
        assert!(enforce.is_empty());
        assert_eq!(audit.len(), 1);
    }
}
