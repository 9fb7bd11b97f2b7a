//! Label selectors: the `?labelSelector=` query syntax (as `k8s.io/apimachinery/pkg/labels.Parse`
//! accepts it) and the structured `metav1.LabelSelector` of webhook configurations.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            // As in apimachinery: `!=` and `notin` also match objects without the key.
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("invalid label selector {selector:?}: {reason}")]
    Syntax { selector: String, reason: String },
    #[error("unsupported label selector operator {0:?}")]
    Operator(String),
}

/// A parsed selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<Requirement>);

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// Parses the string form used in `?labelSelector=`, e.g.
    /// `spark-app-selector=spark-1,spark-role=executor,spark-exec-inactive!=true`
    /// or `spark-exec-id in (1,2)`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |reason: &str| SelectorError::Syntax {
            selector: input.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = Vec::new();
        let mut depth = 0usize;
        let mut current = String::new();
        for c in input.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.checked_sub(1).ok_or_else(|| err("unbalanced ')'"))?,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        if depth != 0 {
            return Err(err("unbalanced '('"));
        }
        parts.push(current);
        let mut reqs = Vec::new();
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            reqs.push(parse_requirement(part).ok_or_else(|| err(part))?);
        }
        Ok(Selector(reqs))
    }

    /// Converts a structured `metav1.LabelSelector`. `None` (absent) matches everything, as in
    /// webhook configurations, where the API server defaults it to `{}`.
    pub fn from_label_selector(sel: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
        let Some(sel) = sel else {
            return Ok(Selector::default());
        };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for expr in sel.match_expressions.iter().flatten() {
            let values = expr.values.clone().unwrap_or_default();
            reqs.push(match expr.operator.as_str() {
                "In" => Requirement::In(expr.key.clone(), values),
                "NotIn" => Requirement::NotIn(expr.key.clone(), values),
                "Exists" => Requirement::Exists(expr.key.clone()),
                "DoesNotExist" => Requirement::DoesNotExist(expr.key.clone()),
                other => return Err(SelectorError::Operator(other.to_string())),
            });
        }
        Ok(Selector(reqs))
    }
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return Some(Requirement::DoesNotExist(key.trim().to_string()));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Some(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Some(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    for (word, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = part.split_once(word) {
            let rest = rest.trim();
            let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
            let values = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let key = k.trim().to_string();
            return Some(if notin {
                Requirement::NotIn(key, values)
            } else {
                Requirement::In(key, values)
            });
        }
    }
    if part.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
        return None;
    }
    Some(Requirement::Exists(part.to_string()))
}

/// The labels of a JSON object (`metadata.labels`), empty when absent.
pub fn labels_of(obj: &serde_json::Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_selectors_as_fabric8_sends_them() {
        let exec = labels(&[
            ("spark-app-selector", "spark-1"),
            ("spark-role", "executor"),
            ("spark-exec-id", "2"),
        ]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("spark-app-selector=spark-1,spark-role=executor", true),
            ("spark-app-selector=spark-1,spark-role=driver", false),
            (
                "spark-app-selector=spark-1,spark-role=executor,spark-exec-inactive!=true",
                true,
            ),
            ("spark-role==executor", true),
            ("spark-exec-id in (1,2)", true),
            ("spark-exec-id in (1, 3)", false),
            ("spark-exec-id notin (1,3),spark-role", true),
            ("!spark-exec-inactive", true),
            ("!spark-role", false),
        ];
        for (sel, want) in cases {
            let parsed = Selector::parse(sel).unwrap();
            assert_eq!(parsed.matches(&exec), *want, "{sel}");
        }
    }

    #[test]
    fn malformed_query_selectors_are_rejected() {
        for sel in ["a in (b", "a)", "a,,b", "a in b"] {
            assert!(Selector::parse(sel).is_err(), "{sel}");
        }
    }

    #[test]
    fn structured_selector() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [
                {"key": "spark-role", "operator": "In", "values": ["driver", "executor"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
            ]
        }))
        .unwrap();
        let s = Selector::from_label_selector(Some(&sel)).unwrap();
        assert!(s.matches(&labels(&[("spark-role", "driver")])));
        assert!(!s.matches(&labels(&[("spark-role", "shuffle")])));
        assert!(!s.matches(&labels(&[
            ("spark-role", "driver"),
            ("kubernetes.io/metadata.name", "kube-system")
        ])));
        assert!(Selector::from_label_selector(None)
            .unwrap()
            .matches(&labels(&[])));
    }
}
