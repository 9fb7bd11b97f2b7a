//! Tolerations: added only where an equal toleration is not already on the pod.

use k8s_openapi::api::core::v1::{Pod, Toleration};

use super::Report;
use crate::selection::Sourced;

/// Equal as the scheduler sees them: a missing operator is `Equal`, a missing value or
/// effect is the empty string.
pub fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    let op = |t: &Toleration| t.operator.clone().unwrap_or_else(|| "Equal".into());
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    s(&a.key) == s(&b.key)
        && op(a) == op(b)
        && s(&a.value) == s(&b.value)
        && s(&a.effect) == s(&b.effect)
        && a.toleration_seconds == b.toleration_seconds
}

pub fn describe(t: &Toleration) -> String {
    let key = t.key.as_deref().unwrap_or("*");
    let op = t.operator.as_deref().unwrap_or("Equal");
    let value = match (op, t.value.as_deref()) {
        ("Exists", _) | (_, None) => String::new(),
        (_, Some(v)) => format!("={v}"),
    };
    let effect = t
        .effect
        .as_deref()
        .map(|e| format!(":{e}"))
        .unwrap_or_default();
    format!("{key}{value}{effect} ({op})")
}

/// Add `tol` unless an equal one is there; true if it was added.
pub fn ensure(pod: &mut Pod, tol: &Toleration) -> bool {
    let spec = pod.spec.get_or_insert_with(Default::default);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    if list.iter().any(|t| same_toleration(t, tol)) {
        return false;
    }
    list.push(tol.clone());
    true
}

pub fn apply(pod: &mut Pod, tolerations: &[Sourced<'_, Toleration>], report: &mut Report) {
    for t in tolerations {
        if ensure(pod, t.value) {
            report.changes.push(format!(
                "toleration {} added (policy {})",
                describe(t.value),
                t.policy
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::fixture;

    fn tol(key: &str, op: Option<&str>, value: Option<&str>, effect: Option<&str>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            toleration_seconds: None,
        }
    }

    #[test]
    fn equality_normalises_defaults() {
        let cases = [
            (
                tol("a", None, Some("v"), None),
                tol("a", Some("Equal"), Some("v"), Some("")),
                true,
            ),
            (
                tol("a", Some("Exists"), None, None),
                tol("a", Some("Exists"), Some(""), None),
                true,
            ),
            (
                tol("a", Some("Exists"), None, None),
                tol("a", Some("Equal"), None, None),
                false,
            ),
            (
                tol("a", None, Some("v"), Some("NoSchedule")),
                tol("a", None, Some("v"), Some("NoExecute")),
                false,
            ),
            (
                tol("a", None, Some("v"), None),
                tol("b", None, Some("v"), None),
                false,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(same_toleration(&a, &b), expected, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn adds_once_and_keeps_existing() {
        let mut pod = fixture("spark-3.5-driver-podtemplate-sidecar.json");
        let existing = tol(
            "dedicated",
            Some("Equal"),
            Some("spark"),
            Some("NoSchedule"),
        );
        let spot = tol(
            "kubernetes.azure.com/scalesetpriority",
            Some("Equal"),
            Some("spot"),
            Some("NoSchedule"),
        );
        let list = [
            Sourced {
                policy: "p",
                value: &existing,
            },
            Sourced {
                policy: "p",
                value: &spot,
            },
        ];
        let mut report = Report::default();
        apply(&mut pod, &list, &mut report);
        assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
        let tols = pod.spec.as_ref().unwrap().tolerations.as_ref().unwrap();
        assert_eq!(tols.len(), 2);
        let mut again = Report::default();
        apply(&mut pod, &list, &mut again);
        assert!(again.changes.is_empty());
    }
}
