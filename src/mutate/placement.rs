//! Spot / on-demand placement.
//!
//! A placement becomes one requirement on one node label: "equals V" (nodeSelector when
//! required) or "is not V" (a `NotIn` node-affinity expression, for platforms whose
//! on-demand nodes simply lack the spot label). What the submitter set is kept: other
//! nodeSelector keys, other affinity terms and expressions. Only a direct contradiction on
//! the same label key is a conflict, resolved by `onConflict`.

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PreferredSchedulingTerm, Toleration,
};

use super::{tolerations, Denial, Report};
use crate::policy::model::{Capacity, OnConflict, Placement, Provider, Scheduling};

/// What a placement asks of a node's label `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals { key: String, value: String },
    NotEquals { key: String, value: String },
}

impl Requirement {
    fn key(&self) -> &str {
        match self {
            Requirement::Equals { key, .. } | Requirement::NotEquals { key, .. } => key,
        }
    }

    fn expression(&self) -> NodeSelectorRequirement {
        let (key, op, value) = match self {
            Requirement::Equals { key, value } => (key, "In", value),
            Requirement::NotEquals { key, value } => (key, "NotIn", value),
        };
        NodeSelectorRequirement {
            key: key.clone(),
            operator: op.into(),
            values: Some(vec![value.clone()]),
        }
    }

    fn describe(&self) -> String {
        match self {
            Requirement::Equals { key, value } => format!("{key}={value}"),
            Requirement::NotEquals { key, value } => format!("{key}!={value}"),
        }
    }

    /// Whether a node whose label has `value` (None: no such label) satisfies this.
    fn admits(&self, value: Option<&str>) -> bool {
        match self {
            Requirement::Equals { value: v, .. } => value == Some(v.as_str()),
            Requirement::NotEquals { value: v, .. } => value != Some(v.as_str()),
        }
    }

    /// Whether some node could satisfy both this and the submitter's expression `e`
    /// (on the same key). Unknown operators (Gt, Lt) are assumed compatible.
    fn compatible_with(&self, e: &NodeSelectorRequirement) -> bool {
        let values: Vec<&str> = e.values.iter().flatten().map(String::as_str).collect();
        let expr = |v: Option<&str>| match e.operator.as_str() {
            "In" => v.is_some_and(|v| values.contains(&v)),
            "NotIn" => !v.is_some_and(|v| values.contains(&v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            _ => true,
        };
        // Candidate label values: absent, each listed value, and one listed nowhere.
        let fresh = "\u{0}spark-admission-unlisted";
        std::iter::once(None)
            .chain(values.iter().map(|v| Some(*v)))
            .chain(std::iter::once(Some(fresh)))
            .chain(std::iter::once(match self {
                Requirement::Equals { value, .. } | Requirement::NotEquals { value, .. } => {
                    Some(value.as_str())
                }
            }))
            .any(|v| self.admits(v) && expr(v))
    }
}

/// A placement resolved against its platform: the node requirement and, for spot on
/// platforms that taint spot nodes, the toleration it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub requirement: Requirement,
    pub toleration: Option<Toleration>,
}

fn equals(key: &str, value: &str) -> Requirement {
    Requirement::Equals {
        key: key.into(),
        value: value.into(),
    }
}

fn not_equals(key: &str, value: &str) -> Requirement {
    Requirement::NotEquals {
        key: key.into(),
        value: value.into(),
    }
}

fn no_schedule(key: &str, value: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Equal".into()),
        value: Some(value.into()),
        effect: Some("NoSchedule".into()),
        toleration_seconds: None,
    }
}

/// Resolve a placement to its node label and toleration. Platform facts (DESIGN.md,
/// "Spot capacity, by platform"): EKS managed node groups label both capacities; Karpenter
/// labels both; GKE and AKS label only spot nodes and taint them.
pub fn target(p: &Placement) -> Target {
    let spot = p.capacity == Capacity::Spot;
    let (requirement, taint) = match (p.provider, &p.node_label) {
        (Some(Provider::Eks), _) => {
            let key = "eks.amazonaws.com/capacityType";
            (equals(key, if spot { "SPOT" } else { "ON_DEMAND" }), None)
        }
        (Some(Provider::Karpenter), _) => {
            let key = "karpenter.sh/capacity-type";
            (equals(key, if spot { "spot" } else { "on-demand" }), None)
        }
        (Some(Provider::Gke), _) => {
            let key = "cloud.google.com/gke-spot";
            let req = if spot {
                equals(key, "true")
            } else {
                not_equals(key, "true")
            };
            (req, Some(no_schedule(key, "true")))
        }
        (Some(Provider::Aks), _) => {
            let key = "kubernetes.azure.com/scalesetpriority";
            let req = if spot {
                equals(key, "spot")
            } else {
                not_equals(key, "spot")
            };
            (req, Some(no_schedule(key, "spot")))
        }
        (None, Some(nl)) => {
            let key = nl.key.as_str();
            let req = match (spot, &nl.on_demand_value) {
                (true, _) => equals(key, nl.spot_value.as_str()),
                (false, Some(v)) => equals(key, v.as_str()),
                (false, None) => not_equals(key, nl.spot_value.as_str()),
            };
            let taint = nl.spot_taint.as_ref().map(|t| Toleration {
                key: Some(t.key.to_string()),
                operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.into()),
                value: t.value.as_ref().map(|v| v.to_string()),
                effect: Some(t.effect.as_str().into()),
                toleration_seconds: None,
            });
            (req, taint)
        }
        // Validation guarantees one of provider / nodeLabel.
        (None, None) => (equals("", ""), None),
    };
    Target {
        requirement,
        toleration: if spot { taint } else { None },
    }
}

/// The submitter's pins on the requirement's key that contradict it.
#[derive(Debug, Default)]
struct Contradictions {
    node_selector: Option<String>,
    /// Every required term contradicts (so together with ours nothing could schedule).
    all_required_terms: bool,
}

impl Contradictions {
    fn any(&self) -> bool {
        self.node_selector.is_some() || self.all_required_terms
    }
}

fn required_terms(pod: &Pod) -> &[NodeSelectorTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or(&[])
}

fn term_contradicts(term: &NodeSelectorTerm, req: &Requirement) -> bool {
    term.match_expressions
        .iter()
        .flatten()
        .any(|e| e.key == req.key() && !req.compatible_with(e))
}

fn contradictions(pod: &Pod, req: &Requirement) -> Contradictions {
    let node_selector = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .and_then(|ns| ns.get(req.key()))
        .filter(|v| !req.admits(Some(v)))
        .cloned();
    let terms = required_terms(pod);
    Contradictions {
        node_selector,
        all_required_terms: !terms.is_empty() && terms.iter().all(|t| term_contradicts(t, req)),
    }
}

/// Remove the submitter's contradicting pins (for `onConflict: override`).
fn remove_contradictions(pod: &mut Pod, req: &Requirement) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if let Some(ns) = spec.node_selector.as_mut() {
        if ns.get(req.key()).is_some_and(|v| !req.admits(Some(v))) {
            ns.remove(req.key());
        }
    }
    let node_affinity = spec
        .affinity
        .as_mut()
        .and_then(|a| a.node_affinity.as_mut());
    if let Some(na) = node_affinity {
        if let Some(required) = na
            .required_during_scheduling_ignored_during_execution
            .as_mut()
        {
            for term in &mut required.node_selector_terms {
                if let Some(exprs) = term.match_expressions.as_mut() {
                    exprs.retain(|e| e.key != req.key() || req.compatible_with(e));
                }
            }
            // A term left with nothing would match no node; drop it.
            required.node_selector_terms.retain(|t| {
                t.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
                    || t.match_fields.as_ref().is_some_and(|f| !f.is_empty())
            });
            if required.node_selector_terms.is_empty() {
                na.required_during_scheduling_ignored_during_execution = None;
            }
        }
    }
}

fn node_affinity_mut(pod: &mut Pod) -> &mut NodeAffinity {
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.affinity
        .get_or_insert_with(Affinity::default)
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
}

/// Make the pod require `req`; returns a description if something changed.
fn require(pod: &mut Pod, req: &Requirement) -> Option<String> {
    match req {
        Requirement::Equals { key, value } => {
            let spec = pod.spec.get_or_insert_with(Default::default);
            let ns = spec.node_selector.get_or_insert_with(Default::default);
            if ns.get(key) == Some(value) {
                return None;
            }
            ns.insert(key.clone(), value.clone());
            Some(format!("nodeSelector {key}={value}"))
        }
        Requirement::NotEquals { .. } => {
            let expr = req.expression();
            let has =
                |t: &NodeSelectorTerm| t.match_expressions.iter().flatten().any(|e| *e == expr);
            let terms = required_terms(pod);
            if !terms.is_empty() && terms.iter().all(has) {
                return None;
            }
            let na = node_affinity_mut(pod);
            let required = na
                .required_during_scheduling_ignored_during_execution
                .get_or_insert_with(|| NodeSelector {
                    node_selector_terms: vec![],
                });
            if required.node_selector_terms.is_empty() {
                required
                    .node_selector_terms
                    .push(NodeSelectorTerm::default());
            }
            // Terms are ORed: the expression must be in every one of them.
            for term in &mut required.node_selector_terms {
                if !has(term) {
                    term.match_expressions
                        .get_or_insert_with(Vec::new)
                        .push(expr.clone());
                }
            }
            Some(format!("required node affinity {}", req.describe()))
        }
    }
}

/// Make the pod prefer `req` with `weight`; returns a description if something changed.
fn prefer(pod: &mut Pod, req: &Requirement, weight: i32) -> Option<String> {
    let expr = req.expression();
    let na = node_affinity_mut(pod);
    let preferred = na
        .preferred_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new);
    let already = preferred
        .iter()
        .any(|p| p.preference.match_expressions.as_deref() == Some(std::slice::from_ref(&expr)));
    if already {
        return None;
    }
    preferred.push(PreferredSchedulingTerm {
        weight,
        preference: NodeSelectorTerm {
            match_expressions: Some(vec![expr]),
            match_fields: None,
        },
    });
    Some(format!(
        "preferred node affinity {} (weight {weight})",
        req.describe()
    ))
}

pub fn apply(
    pod: &mut Pod,
    policy: &str,
    p: &Placement,
    report: &mut Report,
) -> Result<(), Denial> {
    let t = target(p);
    let req = &t.requirement;
    let found = contradictions(pod, req);
    if found.any() {
        let what = match &found.node_selector {
            Some(v) => format!("nodeSelector {}={v}", req.key()),
            None => format!("required node affinity on {}", req.key()),
        };
        match p.on_conflict {
            OnConflict::Keep => {
                report.warnings.push(format!(
                    "placement: the pod sets {what}, which contradicts {} of policy {policy}; kept the pod's choice (onConflict: keep)",
                    req.describe()
                ));
                return Ok(());
            }
            OnConflict::Deny => {
                return Err(Denial {
                    policy: policy.into(),
                    message: format!(
                        "the pod sets {what}, but policy {policy} places {} pods on {} ({}) with onConflict: deny",
                        crate::spark_pod::role(pod).map_or("these", |r| r.as_str()),
                        match p.capacity {
                            Capacity::Spot => "spot",
                            Capacity::OnDemand => "on-demand",
                        },
                        req.describe()
                    ),
                })
            }
            OnConflict::Override => {
                remove_contradictions(pod, req);
                report
                    .changes
                    .push(format!("placement: removed the pod's {what} (policy {policy}, onConflict: override)"));
            }
        }
    }
    let changed = match p.scheduling {
        Scheduling::Required => require(pod, req),
        Scheduling::Preferred => prefer(pod, req, p.weight.unwrap_or(100)),
    };
    if let Some(c) = changed {
        report
            .changes
            .push(format!("placement: {c} (policy {policy})"));
    }
    if let Some(tol) = &t.toleration {
        if tolerations::ensure(pod, tol) {
            report.changes.push(format!(
                "toleration {} added for spot nodes (policy {policy})",
                tolerations::describe(tol)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::fixture;

    /// A required node affinity with one term per entry, each holding one expression.
    fn required(terms: &[(&str, &str, &[&str])]) -> Option<Affinity> {
        Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms
                        .iter()
                        .map(|(key, op, values)| NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: key.to_string(),
                                operator: op.to_string(),
                                values: if values.is_empty() {
                                    None
                                } else {
                                    Some(values.iter().map(|v| v.to_string()).collect())
                                },
                            }]),
                            match_fields: None,
                        })
                        .collect(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn node_affinity(pod: &Pod) -> NodeAffinity {
        let affinity = pod.spec.as_ref().unwrap().affinity.as_ref().unwrap();
        affinity.node_affinity.clone().unwrap()
    }

    fn placement(yaml: &str) -> Placement {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn node_selector(pod: &Pod) -> Vec<(String, String)> {
        pod.spec
            .as_ref()
            .unwrap()
            .node_selector
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect()
    }

    #[test]
    fn presets_resolve_to_platform_labels_and_taints() {
        let cases = [
            ("{capacity: spot, provider: eks}", "eks.amazonaws.com/capacityType=SPOT", false),
            ("{capacity: on-demand, provider: eks}", "eks.amazonaws.com/capacityType=ON_DEMAND", false),
            ("{capacity: spot, provider: karpenter}", "karpenter.sh/capacity-type=spot", false),
            ("{capacity: on-demand, provider: karpenter}", "karpenter.sh/capacity-type=on-demand", false),
            ("{capacity: spot, provider: gke}", "cloud.google.com/gke-spot=true", true),
            ("{capacity: on-demand, provider: gke}", "cloud.google.com/gke-spot!=true", false),
            ("{capacity: spot, provider: aks}", "kubernetes.azure.com/scalesetpriority=spot", true),
            ("{capacity: on-demand, provider: aks}", "kubernetes.azure.com/scalesetpriority!=spot", false),
            ("{capacity: spot, nodeLabel: {key: node-lifecycle, spotValue: spot, spotTaint: {key: spot, effect: NoSchedule}}}", "node-lifecycle=spot", true),
            ("{capacity: on-demand, nodeLabel: {key: node-lifecycle, spotValue: spot}}", "node-lifecycle!=spot", false),
            ("{capacity: on-demand, nodeLabel: {key: node-lifecycle, spotValue: spot, onDemandValue: normal}}", "node-lifecycle=normal", false),
        ];
        for (yaml, requirement, tolerates) in cases {
            let t = target(&placement(yaml));
            assert_eq!(t.requirement.describe(), requirement, "{yaml}");
            assert_eq!(t.toleration.is_some(), tolerates, "{yaml}");
        }
    }

    #[test]
    fn required_spot_merges_with_submitter_selector_and_affinity() {
        let mut pod = fixture("spark-3.5-driver-podtemplate-sidecar.json");
        let mut r = Report::default();
        apply(
            &mut pod,
            "p",
            &placement("{capacity: spot, provider: aks}"),
            &mut r,
        )
        .unwrap();
        let ns = node_selector(&pod);
        assert!(
            ns.contains(&("workload".into(), "spark".into())),
            "keeps submitter's keys"
        );
        assert!(ns.contains(&(
            "kubernetes.azure.com/scalesetpriority".into(),
            "spot".into()
        )));
        let tols = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert_eq!(
            tols.len(),
            2,
            "keeps dedicated=spark and adds the spot toleration"
        );
        assert_eq!(r.changes.len(), 2);

        // Preferred zone affinity of the executor fixture is kept.
        let mut pod = fixture("spark-3.5-executor-hostpath-localdirs.json");
        apply(
            &mut pod,
            "p",
            &placement("{capacity: spot, provider: karpenter, scheduling: preferred, weight: 80}"),
            &mut Report::default(),
        )
        .unwrap();
        let na = node_affinity(&pod);
        let preferred = na
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(preferred.len(), 2);
        assert_eq!(
            preferred[0].preference.match_expressions.as_ref().unwrap()[0].key,
            "topology.kubernetes.io/zone"
        );
        assert_eq!(preferred[1].weight, 80);
    }

    #[test]
    fn on_demand_via_not_in_goes_into_every_required_term() {
        let mut pod = fixture("spark-3.5-driver-jvm.json");
        pod.spec.as_mut().unwrap().affinity =
            required(&[("zone", "In", &["a"]), ("zone", "In", &["b"])]);
        let p = placement("{capacity: on-demand, provider: gke}");
        apply(&mut pod, "p", &p, &mut Report::default()).unwrap();
        let terms = required_terms(&pod).to_vec();
        assert_eq!(terms.len(), 2);
        for t in &terms {
            let exprs = t.match_expressions.as_ref().unwrap();
            assert_eq!(exprs.len(), 2);
            assert_eq!(exprs[1].operator, "NotIn");
        }
        assert!(
            pod.spec.as_ref().unwrap().tolerations.is_none(),
            "on-demand needs no spot toleration"
        );
        let once = pod.clone();
        let mut again = Report::default();
        apply(&mut pod, "p", &p, &mut again).unwrap();
        assert_eq!(pod, once);
        assert!(again.changes.is_empty());
    }

    #[test]
    fn conflicts_follow_on_conflict() {
        let pinned = || {
            let mut pod = fixture("spark-3.5-executor-python.json");
            pod.spec.as_mut().unwrap().node_selector = Some(
                [(
                    "eks.amazonaws.com/capacityType".to_string(),
                    "ON_DEMAND".to_string(),
                )]
                .into(),
            );
            pod
        };
        // keep
        let mut pod = pinned();
        let mut r = Report::default();
        apply(
            &mut pod,
            "spot",
            &placement("{capacity: spot, provider: eks}"),
            &mut r,
        )
        .unwrap();
        assert_eq!(
            node_selector(&pod),
            [(
                "eks.amazonaws.com/capacityType".to_string(),
                "ON_DEMAND".to_string()
            )]
        );
        assert_eq!(r.warnings.len(), 1);
        assert!(r.changes.is_empty());
        // override
        let mut pod = pinned();
        apply(
            &mut pod,
            "spot",
            &placement("{capacity: spot, provider: eks, onConflict: override}"),
            &mut Report::default(),
        )
        .unwrap();
        assert_eq!(
            node_selector(&pod),
            [(
                "eks.amazonaws.com/capacityType".to_string(),
                "SPOT".to_string()
            )]
        );
        // deny
        let mut pod = pinned();
        let d = apply(
            &mut pod,
            "spot",
            &placement("{capacity: spot, provider: eks, onConflict: deny}"),
            &mut Report::default(),
        )
        .unwrap_err();
        assert_eq!(d.policy, "spot");
        assert!(
            d.message.contains("ON_DEMAND") && d.message.contains("SPOT"),
            "{}",
            d.message
        );
        // Not a conflict: the submitter allows both capacities.
        let mut pod = fixture("spark-3.5-executor-python.json");
        pod.spec.as_mut().unwrap().affinity = required(&[(
            "eks.amazonaws.com/capacityType",
            "In",
            &["SPOT", "ON_DEMAND"],
        )]);
        apply(
            &mut pod,
            "spot",
            &placement("{capacity: spot, provider: eks, onConflict: deny}"),
            &mut Report::default(),
        )
        .unwrap();
        // Override of a contradicting required term drops the now-empty term.
        let mut pod = fixture("spark-3.5-executor-python.json");
        pod.spec.as_mut().unwrap().affinity =
            required(&[("kubernetes.azure.com/scalesetpriority", "DoesNotExist", &[])]);
        apply(
            &mut pod,
            "spot",
            &placement("{capacity: spot, provider: aks, onConflict: override}"),
            &mut Report::default(),
        )
        .unwrap();
        let na = node_affinity(&pod);
        assert!(na
            .required_during_scheduling_ignored_during_execution
            .is_none());
        assert!(node_selector(&pod).contains(&(
            "kubernetes.azure.com/scalesetpriority".into(),
            "spot".into()
        )));
    }

    #[test]
    fn compatibility_table() {
        let e = |op: &str, vals: &[&str]| NodeSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: if vals.is_empty() {
                None
            } else {
                Some(vals.iter().map(|v| v.to_string()).collect())
            },
        };
        let eq = equals("k", "spot");
        let ne = not_equals("k", "spot");
        let cases = [
            (&eq, e("In", &["spot"]), true),
            (&eq, e("In", &["on-demand"]), false),
            (&eq, e("NotIn", &["spot"]), false),
            (&eq, e("NotIn", &["x"]), true),
            (&eq, e("Exists", &[]), true),
            (&eq, e("DoesNotExist", &[]), false),
            (&eq, e("Gt", &["3"]), true),
            (&ne, e("In", &["spot"]), false),
            (&ne, e("In", &["spot", "regular"]), true),
            (&ne, e("NotIn", &["spot"]), true),
            (&ne, e("Exists", &[]), true),
            (&ne, e("DoesNotExist", &[]), true),
        ];
        for (req, expr, expected) in cases {
            assert_eq!(req.compatible_with(&expr), expected, "{req:?} vs {expr:?}");
        }
    }
}
