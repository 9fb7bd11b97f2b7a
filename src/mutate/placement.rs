//! Spot / on-demand placement.
//!
//! A placement becomes requirements on node labels: "is one of V…" (a nodeSelector when
//! required and V is a single value, else an `In` node-affinity expression) or "is none of
//! V…" (a `NotIn` expression, for platforms whose on-demand nodes simply lack the spot
//! label). What the submitter set is kept: other nodeSelector keys, other affinity terms
//! and expressions. Only a direct contradiction on the same label key is a conflict,
//! resolved by `onConflict`.

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PreferredSchedulingTerm, Toleration,
};

use super::{tolerations, Denial, Report};
use crate::policy::model::{Capacity, OnConflict, Placement, Provider, Scheduling};

/// What a placement asks of a node's label `key`: its value is one of `values` (`In`), or
/// none of them, the label being absent included (`NotIn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub is_in: bool,
    pub values: Vec<String>,
}

impl Requirement {
    fn expression(&self) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: self.key.clone(),
            operator: if self.is_in { "In" } else { "NotIn" }.into(),
            values: Some(self.values.clone()),
        }
    }

    /// A single required value goes into `nodeSelector`.
    fn selector_value(&self) -> Option<&str> {
        match self.values.as_slice() {
            [v] if self.is_in => Some(v),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match (self.is_in, self.values.as_slice()) {
            (true, [v]) => format!("{}={v}", self.key),
            (false, [v]) => format!("{}!={v}", self.key),
            (true, vs) => format!("{} in ({})", self.key, vs.join(", ")),
            (false, vs) => format!("{} not in ({})", self.key, vs.join(", ")),
        }
    }

    /// Whether a node whose label has `value` (None: no such label) satisfies this.
    fn admits(&self, value: Option<&str>) -> bool {
        let listed = value.is_some_and(|v| self.values.iter().any(|x| x == v));
        listed == self.is_in
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
            .chain(self.values.iter().map(|v| Some(v.as_str())))
            .any(|v| self.admits(v) && expr(v))
    }
}

fn describe_all(reqs: &[Requirement]) -> String {
    reqs.iter()
        .map(Requirement::describe)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A placement resolved against its platform: the node requirements and, for spot on
/// platforms that taint spot nodes, the toleration it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub requirements: Vec<Requirement>,
    pub toleration: Option<Toleration>,
}

fn is_in(key: &str, values: &[&str]) -> Requirement {
    Requirement {
        key: key.into(),
        is_in: true,
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn not_in(key: &str, value: &str) -> Requirement {
    Requirement {
        key: key.into(),
        is_in: false,
        values: vec![value.into()],
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

/// Resolve a placement to its node labels and toleration. Platform facts (DESIGN.md,
/// "Spot capacity, by platform"): EKS managed node groups label both capacities; Karpenter
/// labels spot, on-demand and (v1.3+) `reserved` capacity — paid-for, not spot; GKE labels
/// Spot VMs `gke-spot` and preemptible VMs `gke-preemptible`, taints spot nodes; AKS labels
/// and taints only spot nodes.
pub fn target(p: &Placement) -> Target {
    let spot = p.capacity == Capacity::Spot;
    let (requirements, taint) = match (p.provider, &p.node_label) {
        (Some(Provider::Eks), _) => {
            let key = "eks.amazonaws.com/capacityType";
            (
                vec![is_in(key, &[if spot { "SPOT" } else { "ON_DEMAND" }])],
                None,
            )
        }
        (Some(Provider::Karpenter), _) => {
            let key = "karpenter.sh/capacity-type";
            let values: &[&str] = if spot {
                &["spot"]
            } else {
                &["on-demand", "reserved"]
            };
            (vec![is_in(key, values)], None)
        }
        (Some(Provider::Gke), _) => {
            let key = "cloud.google.com/gke-spot";
            let reqs = if spot {
                vec![is_in(key, &["true"])]
            } else {
                // Preemptible VMs can be reclaimed as spot ones can: not on-demand either.
                vec![
                    not_in(key, "true"),
                    not_in("cloud.google.com/gke-preemptible", "true"),
                ]
            };
            (reqs, Some(no_schedule(key, "true")))
        }
        (Some(Provider::Aks), _) => {
            let key = "kubernetes.azure.com/scalesetpriority";
            let req = if spot {
                is_in(key, &["spot"])
            } else {
                not_in(key, "spot")
            };
            (vec![req], Some(no_schedule(key, "spot")))
        }
        (None, Some(nl)) => {
            let key = nl.key.as_str();
            let req = match (spot, &nl.on_demand_value) {
                (true, _) => is_in(key, &[nl.spot_value.as_str()]),
                (false, Some(v)) => is_in(key, &[v.as_str()]),
                (false, None) => not_in(key, nl.spot_value.as_str()),
            };
            let taint = nl.spot_taint.as_ref().map(|t| Toleration {
                key: Some(t.key.to_string()),
                operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.into()),
                value: t.value.as_ref().map(|v| v.to_string()),
                effect: Some(t.effect.as_str().into()),
                toleration_seconds: None,
            });
            (vec![req], taint)
        }
        // Validation guarantees one of provider / nodeLabel.
        (None, None) => (vec![], None),
    };
    Target {
        requirements,
        toleration: if spot { taint } else { None },
    }
}

/// The submitter's first pin that contradicts a requirement: a nodeSelector entry, or
/// required terms that all contradict (so together with ours nothing could schedule).
fn contradiction(pod: &Pod, reqs: &[Requirement]) -> Option<String> {
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    for req in reqs {
        if let Some(v) = selector
            .and_then(|ns| ns.get(&req.key))
            .filter(|v| !req.admits(Some(v)))
        {
            return Some(format!("nodeSelector {}={v}", req.key));
        }
    }
    let terms = required_terms(pod);
    let all_contradict = !terms.is_empty()
        && terms
            .iter()
            .all(|t| reqs.iter().any(|r| term_contradicts(t, r)));
    all_contradict.then(|| {
        let keys: Vec<&str> = reqs.iter().map(|r| r.key.as_str()).collect();
        format!("required node affinity on {}", keys.join(", "))
    })
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
        .any(|e| e.key == req.key && !req.compatible_with(e))
}

/// Remove the submitter's contradicting pins (for `onConflict: override`).
fn remove_contradictions(pod: &mut Pod, req: &Requirement) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    if let Some(ns) = spec.node_selector.as_mut() {
        if ns.get(&req.key).is_some_and(|v| !req.admits(Some(v))) {
            ns.remove(&req.key);
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
                    exprs.retain(|e| e.key != req.key || req.compatible_with(e));
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
    if let Some(value) = req.selector_value() {
        let spec = pod.spec.get_or_insert_with(Default::default);
        let ns = spec.node_selector.get_or_insert_with(Default::default);
        if ns.get(&req.key).map(String::as_str) == Some(value) {
            return None;
        }
        ns.insert(req.key.clone(), value.to_string());
        return Some(format!("nodeSelector {}", req.describe()));
    }
    let expr = req.expression();
    let has = |t: &NodeSelectorTerm| t.match_expressions.iter().flatten().any(|e| *e == expr);
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

/// Make the pod prefer all of `reqs` (one term) with `weight`; returns a description if
/// something changed.
fn prefer(pod: &mut Pod, reqs: &[Requirement], weight: i32) -> Option<String> {
    let exprs: Vec<NodeSelectorRequirement> = reqs.iter().map(Requirement::expression).collect();
    let na = node_affinity_mut(pod);
    let preferred = na
        .preferred_during_scheduling_ignored_during_execution
        .get_or_insert_with(Vec::new);
    let already = preferred
        .iter()
        .any(|p| p.preference.match_expressions.as_deref() == Some(exprs.as_slice()));
    if already {
        return None;
    }
    preferred.push(PreferredSchedulingTerm {
        weight,
        preference: NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: None,
        },
    });
    Some(format!(
        "preferred node affinity {} (weight {weight})",
        describe_all(reqs)
    ))
}

pub fn apply(
    pod: &mut Pod,
    policy: &str,
    p: &Placement,
    report: &mut Report,
) -> Result<(), Denial> {
    let t = target(p);
    let reqs = &t.requirements;
    if let Some(what) = contradiction(pod, reqs) {
        match p.on_conflict {
            OnConflict::Keep => {
                report.warnings.push(format!(
                    "placement: the pod sets {what}, against {} of policy {policy}; kept (onConflict: keep)",
                    describe_all(reqs)
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
                        describe_all(reqs)
                    ),
                })
            }
            OnConflict::Override => {
                for req in reqs {
                    remove_contradictions(pod, req);
                }
                report.changes.push(format!(
                    "placement: removed the pod's {what} (policy {policy}, onConflict: override)"
                ));
                report.warnings.push(format!(
                    "placement: the pod's {what} overridden by {} (policy {policy})",
                    describe_all(reqs)
                ));
            }
        }
    }
    let changes: Vec<String> = match p.scheduling {
        Scheduling::Required => reqs.iter().filter_map(|r| require(pod, r)).collect(),
        Scheduling::Preferred => prefer(pod, reqs, p.weight.unwrap_or(100))
            .into_iter()
            .collect(),
    };
    for c in changes {
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
            ("{capacity: on-demand, provider: karpenter}", "karpenter.sh/capacity-type in (on-demand, reserved)", false),
            ("{capacity: spot, provider: gke}", "cloud.google.com/gke-spot=true", true),
            ("{capacity: on-demand, provider: gke}", "cloud.google.com/gke-spot!=true and cloud.google.com/gke-preemptible!=true", false),
            ("{capacity: spot, provider: aks}", "kubernetes.azure.com/scalesetpriority=spot", true),
            ("{capacity: on-demand, provider: aks}", "kubernetes.azure.com/scalesetpriority!=spot", false),
            ("{capacity: spot, nodeLabel: {key: node-lifecycle, spotValue: spot, spotTaint: {key: spot, effect: NoSchedule}}}", "node-lifecycle=spot", true),
            ("{capacity: on-demand, nodeLabel: {key: node-lifecycle, spotValue: spot}}", "node-lifecycle!=spot", false),
            ("{capacity: on-demand, nodeLabel: {key: node-lifecycle, spotValue: spot, onDemandValue: normal}}", "node-lifecycle=normal", false),
        ];
        for (yaml, requirement, tolerates) in cases {
            let t = target(&placement(yaml));
            assert_eq!(describe_all(&t.requirements), requirement, "{yaml}");
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
            let not_in: Vec<&str> = exprs[1..]
                .iter()
                .filter(|e| e.operator == "NotIn")
                .map(|e| e.key.as_str())
                .collect();
            // Neither Spot nor preemptible VMs.
            assert_eq!(
                not_in,
                [
                    "cloud.google.com/gke-spot",
                    "cloud.google.com/gke-preemptible"
                ]
            );
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
        let eq = is_in("k", &["spot"]);
        let ne = not_in("k", "spot");
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

    #[test]
    fn karpenter_on_demand_admits_reserved_capacity() {
        let p = placement("{capacity: on-demand, provider: karpenter, onConflict: deny}");
        let mut pod = fixture("spark-3.5-driver-jvm.json");
        let mut r = Report::default();
        apply(&mut pod, "p", &p, &mut r).unwrap();
        let terms = required_terms(&pod);
        let e = &terms[0].match_expressions.as_ref().unwrap()[0];
        assert_eq!(e.key, "karpenter.sh/capacity-type");
        assert_eq!(e.operator, "In");
        assert_eq!(
            e.values.as_deref().unwrap(),
            ["on-demand".to_string(), "reserved".to_string()]
        );
        // A driver pinned to reserved capacity (an ODCR) is not a conflict.
        let mut pod = fixture("spark-3.5-driver-jvm.json");
        pod.spec.as_mut().unwrap().node_selector = Some(
            [(
                "karpenter.sh/capacity-type".to_string(),
                "reserved".to_string(),
            )]
            .into(),
        );
        apply(&mut pod, "p", &p, &mut Report::default()).unwrap();
    }

    #[test]
    fn override_warns_that_it_replaced_the_pods_choice() {
        let mut pod = fixture("spark-3.5-driver-jvm.json");
        pod.spec.as_mut().unwrap().node_selector = Some(
            [(
                "eks.amazonaws.com/capacityType".to_string(),
                "SPOT".to_string(),
            )]
            .into(),
        );
        let mut r = Report::default();
        apply(
            &mut pod,
            "drivers",
            &placement("{capacity: on-demand, provider: eks, onConflict: override}"),
            &mut r,
        )
        .unwrap();
        assert_eq!(r.warnings.len(), 1, "{r:?}");
        assert!(r.warnings[0].contains("overridden"), "{r:?}");
    }
}
