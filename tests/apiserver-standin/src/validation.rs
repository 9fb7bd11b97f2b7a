//! The subset of Pod validation (`pkg/apis/core/validation`) that a mutating webhook's patch
//! can break. Messages follow the API server's `field.Error` wording.

use std::collections::HashSet;

use serde_json::Value;

/// One field error, as the API server reports it in `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    /// `FieldValueDuplicate`, `FieldValueNotFound`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueRequired`, `FieldValueForbidden`.
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn err(field: String, reason: &'static str, message: String) -> FieldError {
    FieldError {
        field,
        reason,
        message,
    }
}

fn invalid(field: String, value: &str, detail: &str) -> FieldError {
    err(
        field,
        "FieldValueInvalid",
        format!("Invalid value: {value:?}: {detail}"),
    )
}

/// Validates a Pod as the API server does on create (the subset above); empty means valid.
pub fn validate_pod(pod: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(pod, &mut errs);
    let spec = &pod["spec"];
    let mut volume_names = HashSet::new();
    for (i, v) in arr(&spec["volumes"]).iter().enumerate() {
        let field = format!("spec.volumes[{i}].name");
        let name = v["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errs.push(err(field, "FieldValueRequired", "Required value".into()));
        } else if !is_dns1123_label(name) {
            errs.push(invalid(field, name, "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
        } else if !volume_names.insert(name.to_string()) {
            errs.push(err(
                field,
                "FieldValueDuplicate",
                format!("Duplicate value: {name:?}"),
            ));
        }
        if let Some(limit) = v.pointer("/emptyDir/sizeLimit") {
            let s = quantity_str(limit);
            if parse_quantity(&s).is_none() {
                errs.push(invalid(
                    format!("spec.volumes[{i}].emptyDir.sizeLimit"),
                    &s,
                    "quantities must match the regular expression",
                ));
            }
        }
    }
    if arr(&spec["containers"]).is_empty() {
        errs.push(err(
            "spec.containers".into(),
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    let mut container_names = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in arr(&spec[list]).iter().enumerate() {
            let path = format!("spec.{list}[{i}]");
            let name = c["name"].as_str().unwrap_or("");
            if !container_names.insert(name.to_string()) {
                errs.push(err(
                    format!("{path}.name"),
                    "FieldValueDuplicate",
                    format!("Duplicate value: {name:?}"),
                ));
            }
            validate_container(c, &path, &volume_names, &mut errs);
        }
    }
    for (i, t) in arr(&spec["tolerations"]).iter().enumerate() {
        validate_toleration(t, &format!("spec.tolerations[{i}]"), &mut errs);
    }
    if let Some(sel) = spec["nodeSelector"].as_object() {
        for (k, v) in sel {
            validate_label(k, v.as_str().unwrap_or(""), "spec.nodeSelector", &mut errs);
        }
    }
    validate_node_affinity(&spec["affinity"]["nodeAffinity"], &mut errs);
    errs
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn validate_meta(pod: &Value, errs: &mut Vec<FieldError>) {
    if let Some(labels) = pod["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            validate_label(k, v.as_str().unwrap_or(""), "metadata.labels", errs);
        }
    }
    if let Some(annotations) = pod["metadata"]["annotations"].as_object() {
        let mut total = 0usize;
        for (k, v) in annotations {
            if let Some(msg) = qualified_name_error(k) {
                errs.push(invalid("metadata.annotations".into(), k, &msg));
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            errs.push(err(
                "metadata.annotations".into(),
                "FieldValueTooLong",
                "Too long: may not be more than 262144 bytes".into(),
            ));
        }
    }
}

fn validate_label(key: &str, value: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(msg) = qualified_name_error(key) {
        errs.push(invalid(field.into(), key, &msg));
    }
    if !is_label_value(value) {
        errs.push(invalid(field.to_string(), value, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63)"));
    }
}

fn validate_container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_paths = HashSet::new();
    for (j, m) in arr(&c["volumeMounts"]).iter().enumerate() {
        let name = m["name"].as_str().unwrap_or("");
        if !volumes.contains(name) {
            errs.push(err(
                format!("{path}.volumeMounts[{j}].name"),
                "FieldValueNotFound",
                format!("Not found: {name:?}"),
            ));
        }
        let mp = m["mountPath"].as_str().unwrap_or("");
        if mp.is_empty() {
            errs.push(err(
                format!("{path}.volumeMounts[{j}].mountPath"),
                "FieldValueRequired",
                "Required value".into(),
            ));
        } else if !mount_paths.insert(mp.to_string()) {
            errs.push(invalid(
                format!("{path}.volumeMounts[{j}].mountPath"),
                mp,
                "must be unique",
            ));
        }
    }
    let mut env_names = HashSet::new();
    for (j, e) in arr(&c["env"]).iter().enumerate() {
        let name = e["name"].as_str().unwrap_or("");
        if !is_env_var_name(name) {
            errs.push(invalid(format!("{path}.env[{j}].name"), name, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"));
        }
        env_names.insert(name);
        let has_value = e["value"].as_str().is_some_and(|v| !v.is_empty());
        if let Some(from) = e["valueFrom"].as_object() {
            if has_value {
                errs.push(err(
                    format!("{path}.env[{j}].valueFrom"),
                    "FieldValueInvalid",
                    "Invalid value: \"\": may not be specified when `value` is not empty".into(),
                ));
            }
            let sources = [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
                "fileKeyRef",
            ]
            .iter()
            .filter(|k| from.contains_key(**k))
            .count();
            if sources != 1 {
                errs.push(err(
                    format!("{path}.env[{j}].valueFrom"),
                    "FieldValueInvalid",
                    "Invalid value: \"\": may not have more than one field specified at a time"
                        .into(),
                ));
            }
            if let Some(r) = from.get("secretKeyRef") {
                for key in ["name", "key"] {
                    if r[key].as_str().is_none_or(str::is_empty) {
                        errs.push(err(
                            format!("{path}.env[{j}].valueFrom.secretKeyRef.{key}"),
                            "FieldValueRequired",
                            "Required value".into(),
                        ));
                    }
                }
            }
        }
    }
    let limits = c["resources"]["limits"].as_object();
    if let Some(requests) = c["resources"]["requests"].as_object() {
        for (res, req) in requests {
            let req_s = quantity_str(req);
            let Some(req_q) = parse_quantity(&req_s) else {
                errs.push(invalid(
                    format!("{path}.resources.requests[{res}]"),
                    &req_s,
                    "must be a valid quantity",
                ));
                continue;
            };
            if let Some(lim) = limits.and_then(|l| l.get(res)) {
                let lim_s = quantity_str(lim);
                if parse_quantity(&lim_s).is_some_and(|lim_q| req_q > lim_q) {
                    errs.push(invalid(
                        format!("{path}.resources.requests"),
                        &req_s,
                        &format!("must be less than or equal to {res} limit of {lim_s}"),
                    ));
                }
            }
        }
    }
    for (res, lim) in limits.into_iter().flatten() {
        let s = quantity_str(lim);
        if parse_quantity(&s).is_none() {
            errs.push(invalid(
                format!("{path}.resources.limits[{res}]"),
                &s,
                "must be a valid quantity",
            ));
        }
    }
}

fn validate_toleration(t: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let key = t["key"].as_str().unwrap_or("");
    let op = t["operator"].as_str().unwrap_or("");
    let value = t["value"].as_str().unwrap_or("");
    let effect = t["effect"].as_str().unwrap_or("");
    if !key.is_empty() {
        if let Some(msg) = qualified_name_error(key) {
            errs.push(invalid(format!("{path}.key"), key, &msg));
        }
    } else if op != "Exists" {
        errs.push(invalid(
            format!("{path}.operator"),
            op,
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        ));
    }
    match op {
        "" | "Equal" => {
            if !is_label_value(value) {
                errs.push(invalid(
                    format!("{path}.value"),
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters",
                ));
            }
        }
        "Exists" => {
            if !value.is_empty() {
                errs.push(invalid(
                    format!("{path}.operator"),
                    value,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(err(
            format!("{path}.operator"),
            "FieldValueNotSupported",
            format!("Unsupported value: {other:?}: supported values: \"Equal\", \"Exists\""),
        )),
    }
    if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        errs.push(err(
            format!("{path}.effect"),
            "FieldValueNotSupported",
            format!("Unsupported value: {effect:?}: supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""),
        ));
    }
    if !t["tolerationSeconds"].is_null() && effect != "NoExecute" {
        errs.push(invalid(
            format!("{path}.effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
}

fn validate_node_affinity(na: &Value, errs: &mut Vec<FieldError>) {
    let base = "spec.affinity.nodeAffinity";
    if let Some(req) = na.get("requiredDuringSchedulingIgnoredDuringExecution") {
        let terms = arr(&req["nodeSelectorTerms"]);
        if terms.is_empty() {
            errs.push(err(
                format!("{base}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"),
                "FieldValueRequired",
                "Required value: must have at least one node selector term".into(),
            ));
        }
        for (i, term) in terms.iter().enumerate() {
            validate_node_selector_term(
                term,
                &format!(
                    "{base}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
                ),
                errs,
            );
        }
    }
    for (i, p) in arr(&na["preferredDuringSchedulingIgnoredDuringExecution"])
        .iter()
        .enumerate()
    {
        let path = format!("{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
        let w = p["weight"].as_i64().unwrap_or(0);
        if !(1..=100).contains(&w) {
            errs.push(invalid(
                format!("{path}.weight"),
                &w.to_string(),
                "must be in the range 1-100",
            ));
        }
        validate_node_selector_term(&p["preference"], &format!("{path}.preference"), errs);
    }
}

fn validate_node_selector_term(term: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for (j, e) in arr(&term["matchExpressions"]).iter().enumerate() {
        let p = format!("{path}.matchExpressions[{j}]");
        let values = arr(&e["values"]);
        let key = e["key"].as_str().unwrap_or("");
        if let Some(msg) = qualified_name_error(key) {
            errs.push(invalid(format!("{p}.key"), key, &msg));
        }
        match e["operator"].as_str().unwrap_or("") {
            "In" | "NotIn" if values.is_empty() => errs.push(err(
                format!("{p}.values"),
                "FieldValueRequired",
                "Required value: must be specified when `operator` is 'In' or 'NotIn'".into(),
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(err(
                format!("{p}.values"),
                "FieldValueForbidden",
                "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    .into(),
            )),
            "Gt" | "Lt" if values.len() != 1 => errs.push(err(
                format!("{p}.values"),
                "FieldValueRequired",
                "Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"
                    .into(),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            other => errs.push(err(
                format!("{p}.operator"),
                "FieldValueInvalid",
                format!("Invalid value: {other:?}: not a valid selector operator"),
            )),
        }
    }
}

/// `metav1.validation` qualified name: optional DNS-1123 subdomain prefix and '/', then a name.
pub fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || !p.split('.').all(is_dns1123_label) {
            return Some("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".into());
        }
    }
    if name.is_empty() || name.len() > 63 || !is_name_part(name) {
        return Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63)".into());
    }
    None
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_label_value(s: &str) -> bool {
    s.is_empty() || (s.len() <= 63 && is_name_part(s))
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// The classic `C_IDENTIFIER`-like rule (`[-._a-zA-Z][-._a-zA-Z0-9]*`). Kubernetes 1.34 relaxes
/// it behind a feature gate; the stricter rule is what every supported cluster accepts.
fn is_env_var_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn quantity_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a Kubernetes quantity (`resource.Quantity`) into a number of base units.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "." {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid_pod() -> Value {
        json!({
            "metadata": {"name": "p", "labels": {"spark-role": "executor"},
                         "annotations": {"spark-admission.dev/policies": "a,b"}},
            "spec": {
                "volumes": [{"name": "spark-local-dir-1", "emptyDir": {"sizeLimit": "100Gi"}},
                            {"name": "kube-api-access-abcde", "projected": {}}],
                "containers": [{
                    "name": "spark-kubernetes-executor",
                    "volumeMounts": [{"name": "spark-local-dir-1", "mountPath": "/var/data/1"},
                                     {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                    "env": [{"name": "SPARK_LOCAL_DIRS", "value": "/var/data/1"},
                            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
                    "resources": {"requests": {"memory": "1408Mi", "cpu": "1"}, "limits": {"memory": "1408Mi"}}
                }],
                "tolerations": [
                    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "In", "values": ["spot"]}]}]}}}
            }
        })
    }

    #[test]
    fn a_valid_pod_passes() {
        assert_eq!(validate_pod(&valid_pod()), vec![]);
    }

    /// Each breakage a patch could cause, and the field the API server names.
    #[test]
    fn breakages_are_reported_on_the_right_field() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("/spec/volumes/1", json!({"name": "spark-local-dir-1", "emptyDir": {}}), "spec.volumes[1].name", "FieldValueDuplicate"),
            ("/spec/containers/0/volumeMounts/0/name", json!("missing"), "spec.containers[0].volumeMounts[0].name", "FieldValueNotFound"),
            ("/spec/containers/0/volumeMounts/1/mountPath", json!("/var/data/1"), "spec.containers[0].volumeMounts[1].mountPath", "FieldValueInvalid"),
            ("/spec/tolerations/0/operator", json!("Exists"), "spec.tolerations[0].operator", "FieldValueInvalid"),
            ("/spec/tolerations/0/operator", json!("Gt"), "spec.tolerations[0].operator", "FieldValueNotSupported"),
            ("/spec/tolerations/0/effect", json!("NoRun"), "spec.tolerations[0].effect", "FieldValueNotSupported"),
            ("/spec/tolerations/0/tolerationSeconds", json!(10), "spec.tolerations[0].effect", "FieldValueInvalid"),
            ("/spec/containers/0/resources/requests/memory", json!("2Gi"), "spec.containers[0].resources.requests", "FieldValueInvalid"),
            ("/metadata/labels/bad key", json!("x"), "metadata.labels", "FieldValueInvalid"),
            ("/metadata/labels/ok", json!("-bad-"), "metadata.labels", "FieldValueInvalid"),
            ("/metadata/annotations/Bad_Prefix.io~1x", json!("x"), "metadata.annotations", "FieldValueInvalid"),
            ("/spec/containers/0/env/0/name", json!("1BAD"), "spec.containers[0].env[0].name", "FieldValueInvalid"),
            ("/spec/containers/0/env/1/value", json!("literal"), "spec.containers[0].env[1].valueFrom", "FieldValueInvalid"),
            ("/spec/volumes/0/emptyDir/sizeLimit", json!("lots"), "spec.volumes[0].emptyDir.sizeLimit", "FieldValueInvalid"),
            ("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/values", json!([]), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", "FieldValueRequired"),
        ];
        for (pointer, value, field, reason) in cases {
            let mut pod = valid_pod();
            let (parent, last) = pointer.rsplit_once('/').unwrap();
            let last = last.replace("~1", "/");
            let target = pod.pointer_mut(parent).unwrap();
            match target {
                Value::Array(a) => {
                    let i: usize = last.parse().unwrap();
                    if i < a.len() {
                        a[i] = value;
                    } else {
                        a.push(value);
                    }
                }
                Value::Object(o) => {
                    o.insert(last, value);
                }
                _ => panic!("{pointer}"),
            }
            let errs = validate_pod(&pod);
            assert!(
                errs.iter().any(|e| e.field == field && e.reason == reason),
                "{pointer}: {errs:?}"
            );
        }
    }

    #[test]
    fn quantities() {
        for (q, want) in [
            ("1Gi", 1073741824.0),
            ("1408Mi", 1476395008.0),
            ("500m", 0.5),
            ("2", 2.0),
            ("1e3", 1000.0),
            ("1.5G", 1.5e9),
        ] {
            assert_eq!(parse_quantity(q), Some(want), "{q}");
        }
        for q in ["", "Gi", "1.2.3", "1Xi"] {
            assert_eq!(parse_quantity(q), None, "{q}");
        }
    }
}
