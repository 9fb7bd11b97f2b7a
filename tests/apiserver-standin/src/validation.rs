//! The subset of Pod validation (`pkg/apis/core/validation/validation.go`) that a mutating
//! webhook's patch can break, with the API server's field paths, reasons and wording:
//! metadata name, label keys and values, annotation keys (checked lower-cased) and total size;
//! volume names (DNS labels, unique), exactly one source per volume, hostPath path (required, no
//! `..`) and type, emptyDir sizeLimit not negative, ephemeral claim templates (only labels and
//! annotations in metadata, access modes, a positive storage request, volumeMode, storage class
//! name, the `<pod>-<volume>` claim name); container names (DNS labels, unique across init
//! containers and containers); mounts naming a volume, unique mount paths; env var names,
//! `value` vs `valueFrom`, exactly one `valueFrom` source, secret/configMap key selectors (name
//! a DNS subdomain, key a config key); resource names, non-negative quantities, extended
//! resources whole with request equal to limit, requests at most limits; tolerations; node
//! selector labels; node affinity operators, values (label values in required terms), weights.
use std::collections::HashSet;

use serde_json::Value;

use crate::quantity::Quantity;

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
/// The pod is typed (`typed` module): quantities already parse, types already match.
pub fn validate_pod(pod: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_meta(pod, &mut errs);
    let spec = &pod["spec"];
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    let mut volume_names = HashSet::new();
    for (i, v) in arr(&spec["volumes"]).iter().enumerate() {
        let base = format!("spec.volumes[{i}]");
        let field = format!("{base}.name");
        let name = v["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errs.push(err(
                field.clone(),
                "FieldValueRequired",
                "Required value".into(),
            ));
        } else if !is_dns1123_label(name) {
            errs.push(invalid(field.clone(), name, DNS1123_LABEL_MSG));
        }
        if !volume_names.insert(name.to_string()) {
            errs.push(err(
                field,
                "FieldValueDuplicate",
                format!("Duplicate value: {name:?}"),
            ));
        }
        validate_volume_source(v, &base, pod_name, &mut errs);
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
            if name.is_empty() {
                errs.push(err(
                    format!("{path}.name"),
                    "FieldValueRequired",
                    "Required value".into(),
                ));
            } else if !is_dns1123_label(name) {
                errs.push(invalid(format!("{path}.name"), name, DNS1123_LABEL_MSG));
            } else if !container_names.insert(name.to_string()) {
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

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn forbidden(field: String, detail: &str) -> FieldError {
    err(field, "FieldValueForbidden", format!("Forbidden: {detail}"))
}

fn not_supported(field: String, value: &str, supported: &[&str]) -> FieldError {
    let list = supported
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    err(
        field,
        "FieldValueNotSupported",
        format!("Unsupported value: {value:?}: supported values: {list}"),
    )
}

fn required(field: String, detail: &str) -> FieldError {
    let message = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    err(field, "FieldValueRequired", message)
}

/// `validateVolumeSource`: exactly one source (the first counts, each further one is
/// Forbidden where it stands), then the source's own rules.
fn validate_volume_source(v: &Value, base: &str, pod_name: &str, errs: &mut Vec<FieldError>) {
    // The order `validateVolumeSource` checks them in.
    const ORDER: &[&str] = &[
        "emptyDir",
        "hostPath",
        "gitRepo",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "flocker",
        "persistentVolumeClaim",
        "rbd",
        "cinder",
        "cephfs",
        "quobyte",
        "downwardAPI",
        "fc",
        "flexVolume",
        "configMap",
        "azureFile",
        "vsphereVolume",
        "photonPersistentDisk",
        "portworxVolume",
        "azureDisk",
        "storageos",
        "projected",
        "scaleIO",
        "csi",
        "ephemeral",
        "image",
    ];
    let mut count = 0;
    for source in ORDER {
        let Some(src) = v.get(*source).filter(|s| !s.is_null()) else {
            continue;
        };
        if count > 0 {
            // validation.go names two of them by a misspelling.
            let named = match *source {
                "downwardAPI" => "downwarAPI",
                "cephfs" => "cephFS",
                s => s,
            };
            errs.push(forbidden(
                format!("{base}.{named}"),
                "may not specify more than 1 volume type",
            ));
            continue;
        }
        count += 1;
        let path = format!("{base}.{source}");
        match *source {
            "hostPath" => {
                let p = src["path"].as_str().unwrap_or("");
                if p.is_empty() {
                    errs.push(required(format!("{path}.path"), ""));
                    continue;
                }
                if p.split('/').any(|part| part == "..") {
                    errs.push(invalid(format!("{path}.path"), p, "must not contain '..'"));
                }
                if let Some(t) = src["type"].as_str() {
                    const TYPES: &[&str] = &[
                        "",
                        "BlockDevice",
                        "CharDevice",
                        "Directory",
                        "DirectoryOrCreate",
                        "File",
                        "FileOrCreate",
                        "Socket",
                    ];
                    if !TYPES.contains(&t) {
                        errs.push(not_supported(format!("{path}.type"), t, TYPES));
                    }
                }
            }
            "emptyDir" if quantity(&src["sizeLimit"]).is_some_and(|q| q.is_negative()) => {
                errs.push(forbidden(
                    format!("{path}.sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
            "ephemeral" => validate_ephemeral(src, &path, v, pod_name, errs),
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(base.to_string(), "must specify a volume type"));
    }
}

/// `validateEphemeralVolumeSource` and `ValidatePersistentVolumeClaimTemplate`.
fn validate_ephemeral(
    src: &Value,
    path: &str,
    vol: &Value,
    pod_name: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(tmpl) = src.get("volumeClaimTemplate").filter(|t| !t.is_null()) else {
        errs.push(required(format!("{path}.volumeClaimTemplate"), ""));
        return;
    };
    let tpath = format!("{path}.volumeClaimTemplate");
    // Only labels and annotations may be set in the template's metadata.
    for (k, v) in tmpl["metadata"].as_object().into_iter().flatten() {
        let allowed = matches!(k.as_str(), "labels" | "annotations")
            || (k == "creationTimestamp" && v.is_null());
        if !allowed {
            errs.push(forbidden(
                format!("{tpath}.metadata.{k}"),
                "cannot be set for an ephemeral volume",
            ));
        }
    }
    let spec = &tmpl["spec"];
    let spath = format!("{tpath}.spec");
    let modes = arr(&spec["accessModes"]);
    if modes.is_empty() {
        errs.push(required(
            format!("{spath}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    const MODES: &[&str] = &[
        "ReadOnlyMany",
        "ReadWriteMany",
        "ReadWriteOnce",
        "ReadWriteOncePod",
    ];
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !MODES.contains(&m) {
            errs.push(not_supported(format!("{spath}.accessModes"), m, MODES));
        }
    }
    match quantity(&spec["resources"]["requests"]["storage"]) {
        None => errs.push(required(format!("{spath}.resources[storage]"), "")),
        Some(q) if q.is_negative() => errs.push(invalid(
            format!("{spath}.resources[storage]"),
            &q.serialize(),
            "must be greater than or equal to 0",
        )),
        Some(q) if q.is_zero() => errs.push(invalid(
            format!("{spath}.resources[storage]"),
            &q.serialize(),
            "must be greater than zero",
        )),
        Some(_) => {}
    }
    if let Some(mode) = spec["volumeMode"].as_str() {
        if !["Block", "Filesystem"].contains(&mode) {
            errs.push(not_supported(
                format!("{spath}.volumeMode"),
                mode,
                &["Block", "Filesystem"],
            ));
        }
    }
    if let Some(sc) = spec["storageClassName"].as_str().filter(|s| !s.is_empty()) {
        if !is_dns1123_subdomain(sc) {
            errs.push(invalid(
                format!("{spath}.storageClassName"),
                sc,
                DNS1123_SUBDOMAIN_MSG,
            ));
        }
    }
    // The claim is named <pod>-<volume>, which must be a valid PVC name.
    let vol_name = vol["name"].as_str().unwrap_or("");
    if !pod_name.is_empty() && !vol_name.is_empty() {
        let pvc = format!("{pod_name}-{vol_name}");
        if !is_dns1123_subdomain(&pvc) {
            errs.push(invalid(
                format!("{path}.name"),
                vol_name,
                &format!("PVC name {pvc:?}: {DNS1123_SUBDOMAIN_MSG}"),
            ));
        }
    }
}

fn quantity(v: &Value) -> Option<Quantity> {
    v.as_str().and_then(|s| Quantity::parse(s).ok())
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn validate_meta(pod: &Value, errs: &mut Vec<FieldError>) {
    if let Some(name) = pod["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
        if !is_dns1123_subdomain(name) {
            errs.push(invalid("metadata.name".into(), name, DNS1123_SUBDOMAIN_MSG));
        }
    }
    if let Some(labels) = pod["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            validate_label(k, v.as_str().unwrap_or(""), "metadata.labels", errs);
        }
    }
    if let Some(annotations) = pod["metadata"]["annotations"].as_object() {
        validate_annotations(annotations, "metadata.annotations", errs);
    }
}

/// `ValidateAnnotations`: keys are qualified names once lower-cased; keys and values together
/// at most 256 KiB.
fn validate_annotations(
    annotations: &serde_json::Map<String, Value>,
    field: &str,
    errs: &mut Vec<FieldError>,
) {
    let mut total = 0usize;
    for (k, v) in annotations {
        if let Some(msg) = qualified_name_error(&k.to_lowercase()) {
            errs.push(invalid(field.into(), k, &msg));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > 256 * 1024 {
        errs.push(err(
            field.into(),
            "FieldValueTooLong",
            "Too long: may not be more than 262144 bytes".into(),
        ));
    }
}

fn validate_label(key: &str, value: &str, field: &str, errs: &mut Vec<FieldError>) {
    if let Some(msg) = qualified_name_error(key) {
        errs.push(invalid(field.into(), key, &msg));
    }
    if !is_label_value(value) {
        errs.push(invalid(field.to_string(), value, LABEL_VALUE_MSG));
    }
}

const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

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
            errs.push(required(format!("{path}.volumeMounts[{j}].mountPath"), ""));
        } else if !mount_paths.insert(mp.to_string()) {
            errs.push(invalid(
                format!("{path}.volumeMounts[{j}].mountPath"),
                mp,
                "must be unique",
            ));
        }
    }
    for (j, e) in arr(&c["env"]).iter().enumerate() {
        let epath = format!("{path}.env[{j}]");
        let name = e["name"].as_str().unwrap_or("");
        if !is_env_var_name(name) {
            errs.push(invalid(format!("{epath}.name"), name, "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"));
        }
        let has_value = e["value"].as_str().is_some_and(|v| !v.is_empty());
        let Some(from) = e["valueFrom"].as_object() else {
            continue;
        };
        if has_value {
            errs.push(invalid(
                format!("{epath}.valueFrom"),
                "",
                "may not be specified when `value` is not empty",
            ));
        }
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .iter()
        .filter(|k| from.contains_key(**k))
        .count();
        match sources {
            0 => errs.push(invalid(
                format!("{epath}.valueFrom"),
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            )),
            1 => {}
            _ => errs.push(invalid(
                format!("{epath}.valueFrom"),
                "",
                "may not have more than one field specified at a time",
            )),
        }
        for kind in ["secretKeyRef", "configMapKeyRef"] {
            if let Some(r) = from.get(kind) {
                validate_key_selector(r, &format!("{epath}.valueFrom.{kind}"), errs);
            }
        }
    }
    validate_resources(&c["resources"], &format!("{path}.resources"), errs);
}

/// `validateSecretKeySelector` / `validateConfigMapKeySelector`: the object's name a DNS
/// subdomain, the key a config key.
fn validate_key_selector(r: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let name = r["name"].as_str().unwrap_or("");
    if name.is_empty() {
        errs.push(required(format!("{path}.name"), ""));
    } else if !is_dns1123_subdomain(name) {
        errs.push(invalid(format!("{path}.name"), name, DNS1123_SUBDOMAIN_MSG));
    }
    let key = r["key"].as_str().unwrap_or("");
    if key.is_empty() {
        errs.push(required(format!("{path}.key"), ""));
    } else if let Some(msg) = config_key_error(key) {
        errs.push(invalid(format!("{path}.key"), key, msg));
    }
}

/// `validation.IsConfigMapKey`.
fn config_key_error(key: &str) -> Option<&'static str> {
    if key.len() > 253 {
        return Some("must be no more than 253 characters");
    }
    if !key
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        return Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')");
    }
    match key {
        "." => Some("must not be '.'"),
        ".." => Some("must not be '..'"),
        k if k.starts_with("..") => Some("must not start with '..'"),
        _ => None,
    }
}

/// `ValidateResourceRequirements` for a container: standard names, non-negative quantities,
/// extended resources whole and equal in request and limit, requests at most limits.
fn validate_resources(res: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let limits = res["limits"].as_object();
    let native = |n: &str| !n.contains('/') || n.contains("kubernetes.io/");
    let overcommit = |n: &str| native(n) && !n.starts_with("hugepages-");
    for (kind, list) in [
        ("limits", limits),
        ("requests", res["requests"].as_object()),
    ] {
        for (name, v) in list.into_iter().flatten() {
            let field = format!("{path}.{kind}[{name}]");
            let standard = ["cpu", "memory", "ephemeral-storage"].contains(&name.as_str())
                || name.starts_with("hugepages-")
                || !native(name);
            if !standard {
                errs.push(invalid(
                    field.clone(),
                    name,
                    "must be a standard resource for containers",
                ));
            }
            let Some(q) = quantity(v) else { continue };
            if q.is_negative() {
                errs.push(invalid(
                    field.clone(),
                    &q.serialize(),
                    "must be greater than or equal to 0",
                ));
            }
            if !native(name) && q.serialize().contains(['m', 'u', 'n', '.']) {
                errs.push(invalid(field, &q.serialize(), "must be an integer"));
            }
        }
    }
    for (name, req) in res["requests"].as_object().into_iter().flatten() {
        let Some(req_q) = quantity(req) else { continue };
        match limits.and_then(|l| l.get(name)).and_then(quantity) {
            Some(lim_q) if !overcommit(name) && req_q != lim_q => errs.push(invalid(
                format!("{path}.requests"),
                &req_q.serialize(),
                &format!("must be equal to {name} limit of {}", lim_q.serialize()),
            )),
            Some(lim_q) if req_q.cmp_value(&lim_q).is_gt() => errs.push(invalid(
                format!("{path}.requests"),
                &req_q.serialize(),
                &format!(
                    "must be less than or equal to {name} limit of {}",
                    lim_q.serialize()
                ),
            )),
            None if !overcommit(name) => errs.push(required(
                format!("{path}.limits"),
                "Limit must be set for non overcommitable resources",
            )),
            _ => {}
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
                errs.push(invalid(format!("{path}.value"), value, LABEL_VALUE_MSG));
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
                true,
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
        validate_node_selector_term(&p["preference"], &format!("{path}.preference"), false, errs);
    }
}

/// `ValidateNodeSelectorTerm`; `label_values`: the values of a *required* term must be label
/// values (`allowInvalidLabelValueInRequiredNodeAffinity` is false on create).
fn validate_node_selector_term(
    term: &Value,
    path: &str,
    label_values: bool,
    errs: &mut Vec<FieldError>,
) {
    for (j, e) in arr(&term["matchExpressions"]).iter().enumerate() {
        let p = format!("{path}.matchExpressions[{j}]");
        let values = arr(&e["values"]);
        if label_values {
            for (k, v) in values.iter().enumerate() {
                let v = v.as_str().unwrap_or("");
                if !is_label_value(v) {
                    errs.push(invalid(format!("{p}.values[{k}]"), v, LABEL_VALUE_MSG));
                }
            }
        }
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

/// `IsDNS1123Subdomain`: at most 253 characters; its dot-separated parts follow the label
/// pattern, with no length limit of their own.
fn is_dns1123_subdomain(s: &str) -> bool {
    let part = |p: &str| {
        let b = p.as_bytes();
        b.first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.last()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    s.len() <= 253 && s.split('.').all(part)
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
                            {"name": "kube-api-access-abcde", "projected": {}},
                            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"metadata": {"creationTimestamp": null, "labels": {"a": "b"}},
                                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeMode": "Filesystem",
                                         "resources": {"requests": {"storage": "200Gi"}}}}}},
                            {"name": "nvme", "hostPath": {"path": "/mnt/nvme0", "type": "Directory"}}],
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
                "affinity": {"nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.azure.com/scalesetpriority", "operator": "In", "values": ["spot"]}]}]},
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["not a label value!"]}]}}]}}
            }
        })
    }

    #[test]
    fn a_valid_pod_passes() {
        assert_eq!(validate_pod(&valid_pod()), vec![]);
    }

    /// Each breakage a patch could cause, and the field and reason the API server reports.
    #[test]
    fn breakages_are_reported_on_the_right_field() {
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            ("/spec/volumes/1", json!({"name": "spark-local-dir-1", "emptyDir": {}}), "spec.volumes[1].name", "FieldValueDuplicate"),
            ("/spec/volumes/0/hostPath", json!({"path": "/x"}), "spec.volumes[0].hostPath", "FieldValueForbidden"),
            ("/spec/volumes/3/hostPath/path", json!(""), "spec.volumes[3].hostPath.path", "FieldValueRequired"),
            ("/spec/volumes/3/hostPath/path", json!("/mnt/../etc"), "spec.volumes[3].hostPath.path", "FieldValueInvalid"),
            ("/spec/volumes/3/hostPath/type", json!("Dir"), "spec.volumes[3].hostPath.type", "FieldValueNotSupported"),
            ("/spec/volumes/0/emptyDir/sizeLimit", json!("-1Gi"), "spec.volumes[0].emptyDir.sizeLimit", "FieldValueForbidden"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/spec/accessModes", json!([]), "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.accessModes", "FieldValueRequired"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/spec/accessModes", json!(["ReadWriteAlways"]), "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.accessModes", "FieldValueNotSupported"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/spec/resources", json!({}), "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.resources[storage]", "FieldValueRequired"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/spec/resources/requests/storage", json!("0"), "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.resources[storage]", "FieldValueInvalid"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/spec/volumeMode", json!("Raw"), "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.volumeMode", "FieldValueNotSupported"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/spec/storageClassName", json!("GP3"), "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.storageClassName", "FieldValueInvalid"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate/metadata/name", json!("claim"), "spec.volumes[2].ephemeral.volumeClaimTemplate.metadata.name", "FieldValueForbidden"),
            ("/spec/volumes/2/ephemeral/volumeClaimTemplate", json!(null), "spec.volumes[2].ephemeral.volumeClaimTemplate", "FieldValueRequired"),
            ("/spec/containers/0/volumeMounts/0/name", json!("missing"), "spec.containers[0].volumeMounts[0].name", "FieldValueNotFound"),
            ("/spec/containers/0/volumeMounts/1/mountPath", json!("/var/data/1"), "spec.containers[0].volumeMounts[1].mountPath", "FieldValueInvalid"),
            ("/spec/containers/0/name", json!("Spark_Executor"), "spec.containers[0].name", "FieldValueInvalid"),
            ("/spec/containers/1", json!({"name": "spark-kubernetes-executor"}), "spec.containers[1].name", "FieldValueDuplicate"),
            ("/spec/tolerations/0/operator", json!("Exists"), "spec.tolerations[0].operator", "FieldValueInvalid"),
            ("/spec/tolerations/0/operator", json!("Gt"), "spec.tolerations[0].operator", "FieldValueNotSupported"),
            ("/spec/tolerations/0/effect", json!("NoRun"), "spec.tolerations[0].effect", "FieldValueNotSupported"),
            ("/spec/tolerations/0/tolerationSeconds", json!(10), "spec.tolerations[0].effect", "FieldValueInvalid"),
            ("/spec/containers/0/resources/requests/memory", json!("2Gi"), "spec.containers[0].resources.requests", "FieldValueInvalid"),
            ("/spec/containers/0/resources/requests/memory", json!("-1Gi"), "spec.containers[0].resources.requests[memory]", "FieldValueInvalid"),
            ("/spec/containers/0/resources/limits/memory", json!("-2Gi"), "spec.containers[0].resources.limits[memory]", "FieldValueInvalid"),
            ("/spec/containers/0/resources/requests/nvidia.com~1gpu", json!("1"), "spec.containers[0].resources.limits", "FieldValueRequired"),
            ("/spec/containers/0/resources/limits/gpu", json!("1"), "spec.containers[0].resources.limits[gpu]", "FieldValueInvalid"),
            ("/metadata/labels/bad key", json!("x"), "metadata.labels", "FieldValueInvalid"),
            ("/metadata/labels/ok", json!("-bad-"), "metadata.labels", "FieldValueInvalid"),
            ("/metadata/annotations/bad_prefix.io~1x", json!("x"), "metadata.annotations", "FieldValueInvalid"),
            ("/metadata/annotations/big", json!("x".repeat(256 * 1024)), "metadata.annotations", "FieldValueTooLong"),
            ("/spec/containers/0/env/0/name", json!("1BAD"), "spec.containers[0].env[0].name", "FieldValueInvalid"),
            ("/spec/containers/0/env/1/value", json!("literal"), "spec.containers[0].env[1].valueFrom", "FieldValueInvalid"),
            ("/spec/containers/0/env/1/valueFrom/secretKeyRef/name", json!("DB"), "spec.containers[0].env[1].valueFrom.secretKeyRef.name", "FieldValueInvalid"),
            ("/spec/containers/0/env/1/valueFrom/secretKeyRef/name", json!(""), "spec.containers[0].env[1].valueFrom.secretKeyRef.name", "FieldValueRequired"),
            ("/spec/containers/0/env/1/valueFrom/secretKeyRef/key", json!("pw/1"), "spec.containers[0].env[1].valueFrom.secretKeyRef.key", "FieldValueInvalid"),
            ("/spec/containers/0/env/1/valueFrom/secretKeyRef/key", json!(".."), "spec.containers[0].env[1].valueFrom.secretKeyRef.key", "FieldValueInvalid"),
            ("/spec/containers/0/env/1/valueFrom", json!({}), "spec.containers[0].env[1].valueFrom", "FieldValueInvalid"),
            ("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/values", json!([]), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values", "FieldValueRequired"),
            ("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/values/0", json!("spot pool"), "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]", "FieldValueInvalid"),
        ];
        for (pointer, value, field, reason) in cases {
            let mut pod = valid_pod();
            let (parent, last) = pointer.rsplit_once('/').unwrap();
            let last = last.replace("~1", "/");
            let target = pod
                .pointer_mut(parent)
                .unwrap_or_else(|| panic!("{pointer}"));
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
    fn annotation_keys_are_checked_lower_cased_and_label_keys_are_not() {
        let mut pod = valid_pod();
        pod["metadata"]["annotations"]["Example.COM/Owner"] = json!("x");
        assert_eq!(
            validate_pod(&pod),
            vec![],
            "upper-case annotation key is valid"
        );
        pod["metadata"]["labels"]["Example.COM/Owner"] = json!("x");
        assert!(validate_pod(&pod)
            .iter()
            .any(|e| e.field == "metadata.labels"));
    }

    #[test]
    fn a_subdomain_part_may_be_longer_than_a_label() {
        let long = format!(
            "{}-exec-1-spark-local-dir-1",
            "e2e-local-dirs-ephemeral-359".repeat(2)
        );
        assert!(long.len() > 63 && is_dns1123_subdomain(&long));
        assert!(!is_dns1123_label(&long));
        assert!(!is_dns1123_subdomain(&"x".repeat(254)));
    }

    #[test]
    fn an_ephemeral_claim_name_longer_than_a_pvc_name_may_be_is_invalid() {
        let mut pod = valid_pod();
        pod["metadata"]["name"] = json!("x".repeat(250));
        assert!(
            validate_pod(&pod)
                .iter()
                .any(|e| e.field == "spec.volumes[2].ephemeral.name"
                    && e.message.contains("PVC name"))
        );
    }
}
