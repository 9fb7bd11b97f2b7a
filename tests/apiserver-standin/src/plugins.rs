//! The in-tree admission plugins that act on a plain Pod create, in the API server's order
//! (`pkg/kubeapiserver/options/plugins.go`, `AllOrderedPlugins`): LimitRanger, ServiceAccount,
//! Priority, DefaultTolerationSeconds. They run before the mutating webhooks and run again in
//! the second round when a webhook changed the object (`admission/reinvocation.go`), so what a
//! webhook removes that one of them owns comes back, and what it sets that one of them checks is
//! checked then. PodSecurity and LimitRanger's limits are validating and live in
//! `podsecurity` and `limit_ranger_validate`.

use serde_json::{json, Map, Value};

use crate::defaulting::objects_mut;
use crate::quantity::Quantity;
use crate::status::{self, ApiError};

/// Mount path of the service account token volume (ServiceAccount admission plugin).
pub const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A `scheduling.k8s.io/v1` PriorityClass the Priority plugin resolves names against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityClass {
    pub name: String,
    pub value: i64,
    pub global_default: bool,
    /// Defaulted to `PreemptLowerPriority` by the PriorityClass API.
    pub preemption_policy: String,
}

impl PriorityClass {
    pub fn new(name: &str, value: i64) -> PriorityClass {
        PriorityClass {
            name: name.into(),
            value,
            global_default: false,
            preemption_policy: "PreemptLowerPriority".into(),
        }
    }

    /// The two classes every cluster has (`scheduling.SystemPriorityClasses`).
    pub fn system() -> Vec<PriorityClass> {
        vec![
            PriorityClass::new("system-node-critical", 2_000_001_000),
            PriorityClass::new("system-cluster-critical", 2_000_000_000),
        ]
    }

    /// `NAME=VALUE[,globalDefault][,preemptionPolicy=P]`, as the stand-in's `--priority-class`.
    pub fn parse(spec: &str) -> Result<PriorityClass, String> {
        let mut parts = spec.split(',');
        let (name, value) = parts
            .next()
            .and_then(|p| p.split_once('='))
            .ok_or_else(|| format!("{spec:?}: expected NAME=VALUE"))?;
        let value: i64 = value
            .parse()
            .map_err(|_| format!("{spec:?}: {value:?} is not an integer"))?;
        let mut pc = PriorityClass::new(name, value);
        for p in parts {
            match p.split_once('=') {
                None if p == "globalDefault" => pc.global_default = true,
                Some(("preemptionPolicy", v)) => pc.preemption_policy = v.into(),
                _ => return Err(format!("{spec:?}: unknown option {p:?}")),
            }
        }
        Ok(pc)
    }
}

/// What the plugins read from the cluster.
pub struct Cluster<'a> {
    pub priority_classes: &'a [PriorityClass],
    /// The namespace's `LimitRange` objects.
    pub limit_ranges: &'a [Value],
}

/// The name admission errors use: `GetName()`, else the generateName (`extractResourceName`).
pub fn display_name(pod: &Value) -> String {
    let meta = &pod["metadata"];
    meta["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .or(meta["generateName"].as_str())
        .unwrap_or("Unknown")
        .to_string()
}

/// Runs the mutating in-tree plugins; `token_suffix` names a new token volume.
pub fn admit(pod: &mut Value, cluster: &Cluster<'_>, token_suffix: &str) -> Result<(), ApiError> {
    let name = display_name(pod);
    let forbidden = |msg: String| status::forbidden("pods", &name, &msg);
    limit_ranger(pod, cluster.limit_ranges);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    service_account(spec, token_suffix);
    priority(spec, cluster.priority_classes).map_err(forbidden)?;
    default_toleration_seconds(spec);
    Ok(())
}

/// `plugin/pkg/admission/serviceaccount/admission.go`: default the account, then mount the
/// token (a projected volume `kube-api-access-xxxxx`, reused when one exists) into every init
/// container and container that mounts nothing at the token path. Whether the ServiceAccount
/// exists, and its own `automountServiceAccountToken` and `imagePullSecrets`, are not read:
/// every account exists and automounts.
fn service_account(spec: &mut Map<String, Value>, token_suffix: &str) {
    if spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        spec.insert("serviceAccountName".into(), json!("default"));
    }
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with("kube-api-access-"))
        .map(str::to_string);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("kube-api-access-{token_suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": SA_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        for c in objects_mut(spec, list) {
            let mounted = c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == SA_MOUNT_PATH);
            if !mounted {
                if let Some(mounts) = c
                    .entry("volumeMounts")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                {
                    mounts.push(mount.clone());
                }
                needs_volume = true;
            }
        }
    }
    if existing.is_none() && needs_volume {
        if let Some(vols) = spec
            .entry("volumes")
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            vols.push(json!({
                "name": name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                    ]
                }
            }));
        }
    }
}

/// `plugin/pkg/admission/priority/admission.go` on create: the class (or the global default)
/// decides `priority` and `preemptionPolicy`; a pod carrying different values is Forbidden. In
/// the second round the values set in the first are checked against the class a webhook set.
fn priority(spec: &mut Map<String, Value>, classes: &[PriorityClass]) -> Result<(), String> {
    let class_name = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (value, policy) = if class_name.is_empty() {
        let default = classes
            .iter()
            .filter(|c| c.global_default)
            .min_by_key(|c| c.value);
        match default {
            Some(c) => {
                spec.insert("priorityClassName".into(), json!(c.name));
                (c.value, c.preemption_policy.clone())
            }
            None => (0, "PreemptLowerPriority".to_string()),
        }
    } else {
        let c = classes
            .iter()
            .find(|c| c.name == class_name)
            .ok_or_else(|| format!("no PriorityClass with name {class_name} was found"))?;
        (c.value, c.preemption_policy.clone())
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != value {
            return Err(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"));
        }
    }
    spec.insert("priority".into(), json!(value));
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        if given != policy {
            return Err(format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"));
        }
    }
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

/// `plugin/pkg/admission/defaulttolerationseconds/admission.go`: tolerate not-ready and
/// unreachable nodes for 300 s unless a toleration already covers the taint (its key, or no
/// key, with effect NoExecute or none).
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    let tolerations: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let covers = |key: &str| {
        tolerations.iter().any(|t| {
            let t_key = t["key"].as_str().unwrap_or("");
            let effect = t["effect"].as_str().unwrap_or("");
            (t_key == key || t_key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let missing: Vec<&str> = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .into_iter()
    .filter(|k| !covers(k))
    .collect();
    if missing.is_empty() {
        return;
    }
    if let Some(list) = spec
        .entry("tolerations")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        for key in missing {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// A LimitRange's `Container` items with their API defaults (`SetDefaults_LimitRangeItem`:
/// default limit from max, default request from default limit, then from min).
fn container_items(limit_ranges: &[Value]) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    for lr in limit_ranges {
        for item in lr["spec"]["limits"].as_array().into_iter().flatten() {
            let Some(mut item) = item.as_object().cloned() else {
                continue;
            };
            if item.get("type").and_then(Value::as_str) == Some("Container") {
                let max = item.get("max").cloned().unwrap_or(json!({}));
                let min = item.get("min").cloned().unwrap_or(json!({}));
                let mut default = item.get("default").cloned().unwrap_or(json!({}));
                let mut default_request = item.get("defaultRequest").cloned().unwrap_or(json!({}));
                fill_missing(&mut default, &max);
                let filled = default.clone();
                fill_missing(&mut default_request, &filled);
                fill_missing(&mut default_request, &min);
                item.insert("default".into(), default);
                item.insert("defaultRequest".into(), default_request);
            }
            out.push(item);
        }
    }
    out
}

fn fill_missing(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            into.entry(k.clone()).or_insert(v.clone());
        }
    }
}

/// `plugin/pkg/admission/limitranger/admission.go`, `PodMutateLimitFunc`: a container without
/// a request or limit for a resource gets the LimitRange default, and the pod an annotation
/// `kubernetes.io/limit-ranger` saying what was set.
fn limit_ranger(pod: &mut Value, limit_ranges: &[Value]) {
    for item in container_items(limit_ranges) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let mut notes = Vec::new();
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        for (list, what) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            for c in objects_mut(spec, list) {
                let cname = c["name"].as_str().unwrap_or("").to_string();
                let Some(res) = c
                    .entry("resources")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                else {
                    continue;
                };
                for (field, default_key, noun) in [
                    ("requests", "defaultRequest", "request"),
                    ("limits", "default", "limit"),
                ] {
                    let mut set = Vec::new();
                    for (k, v) in item[default_key].as_object().into_iter().flatten() {
                        let target = res.entry(field).or_insert_with(|| json!({}));
                        if let Some(t) = target.as_object_mut() {
                            if !t.contains_key(k) {
                                t.insert(k.clone(), v.clone());
                                set.push(k.clone());
                            }
                        }
                    }
                    if res
                        .get(field)
                        .and_then(Value::as_object)
                        .is_some_and(Map::is_empty)
                    {
                        res.remove(field);
                    }
                    if !set.is_empty() {
                        set.sort();
                        notes.push(format!("{} {noun} for {what} {cname}", set.join(", ")));
                    }
                }
            }
        }
        if !notes.is_empty() {
            let value = format!("LimitRanger plugin set: {}", notes.join("; "));
            if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
                if let Some(ann) = meta
                    .entry("annotations")
                    .or_insert_with(|| json!({}))
                    .as_object_mut()
                {
                    ann.insert("kubernetes.io/limit-ranger".into(), json!(value));
                }
            }
        }
    }
}

/// `PodValidateLimitFunc` for `Container` items: min, max and maxLimitRequestRatio per
/// container, as LimitRanger's Validate does in the validating phase; Forbidden on failure.
pub fn limit_ranger_validate(pod: &Value, limit_ranges: &[Value]) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    for item in container_items(limit_ranges) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        for list in ["containers", "initContainers"] {
            for c in pod["spec"][list].as_array().into_iter().flatten() {
                let req = &c["resources"]["requests"];
                let lim = &c["resources"]["limits"];
                let q = |v: &Value| v.as_str().and_then(|s| Quantity::parse(s).ok());
                for (k, enforced) in sorted(&item, "min") {
                    let Some(e) = q(&enforced) else { continue };
                    let e_s = e.serialize();
                    match (q(&req[&k]), q(&lim[&k])) {
                        (None, _) => errs.push(format!(
                            "minimum {k} usage per Container is {e_s}.  No request is specified"
                        )),
                        (Some(r), _) if r.cmp_value(&e).is_lt() => errs.push(format!(
                            "minimum {k} usage per Container is {e_s}, but request is {}",
                            r.serialize()
                        )),
                        (_, Some(l)) if l.cmp_value(&e).is_lt() => errs.push(format!(
                            "minimum {k} usage per Container is {e_s}, but limit is {}",
                            l.serialize()
                        )),
                        _ => {}
                    }
                }
                for (k, enforced) in sorted(&item, "max") {
                    let Some(e) = q(&enforced) else { continue };
                    let e_s = e.serialize();
                    match (q(&req[&k]), q(&lim[&k])) {
                        (_, None) => errs.push(format!(
                            "maximum {k} usage per Container is {e_s}.  No limit is specified"
                        )),
                        (_, Some(l)) if l.cmp_value(&e).is_gt() => errs.push(format!(
                            "maximum {k} usage per Container is {e_s}, but limit is {}",
                            l.serialize()
                        )),
                        (Some(r), _) if r.cmp_value(&e).is_gt() => errs.push(format!(
                            "maximum {k} usage per Container is {e_s}, but request is {}",
                            r.serialize()
                        )),
                        _ => {}
                    }
                }
            }
        }
    }
    match errs.len() {
        0 => Ok(()),
        1 => Err(status::forbidden("pods", &display_name(pod), &errs[0])),
        _ => Err(status::forbidden(
            "pods",
            &display_name(pod),
            &format!("[{}]", errs.join(", ")),
        )),
    }
}

fn sorted(item: &Map<String, Value>, key: &str) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = item
        .get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spark_pod() -> Value {
        json!({
            "metadata": {"name": "exec-1"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "spark-kubernetes-executor", "image": "apache/spark:3.5.7",
                                "resources": {"requests": {"memory": "1408Mi"}, "limits": {"memory": "1408Mi"}}},
                               {"name": "sidecar", "image": "s"}]
            }
        })
    }

    fn cluster<'a>(classes: &'a [PriorityClass], lrs: &'a [Value]) -> Cluster<'a> {
        Cluster {
            priority_classes: classes,
            limit_ranges: lrs,
        }
    }

    #[test]
    fn plugins_default_account_token_priority_and_tolerations() {
        let classes = PriorityClass::system();
        let mut p = spark_pod();
        admit(&mut p, &cluster(&classes, &[]), "abcde").unwrap();
        let s = &p["spec"];
        assert_eq!(s["serviceAccountName"], "default");
        assert_eq!(s["priority"], 0);
        assert_eq!(s["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(s["volumes"][0]["name"], "kube-api-access-abcde");
        for list in ["initContainers", "containers"] {
            for c in s[list].as_array().unwrap() {
                assert!(
                    c["volumeMounts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|m| m["mountPath"] == SA_MOUNT_PATH),
                    "{c}"
                );
            }
        }
        let keys: Vec<&str> = s["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable"
            ]
        );
        // Run again (the second round): nothing changes.
        let before = p.clone();
        admit(&mut p, &cluster(&classes, &[]), "zzzzz").unwrap();
        assert_eq!(p, before);
    }

    #[test]
    fn the_second_round_mounts_the_token_in_a_container_a_webhook_added_and_restores_tolerations() {
        let classes = PriorityClass::system();
        let mut p = spark_pod();
        admit(&mut p, &cluster(&classes, &[]), "abcde").unwrap();
        // A webhook adds a sidecar and replaces the tolerations.
        p["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "late", "image": "l"}));
        p["spec"]["tolerations"] =
            json!([{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]);
        admit(&mut p, &cluster(&classes, &[]), "zzzzz").unwrap();
        assert_eq!(
            p["spec"]["volumes"].as_array().unwrap().len(),
            1,
            "token volume reused"
        );
        assert_eq!(
            p["spec"]["containers"][2]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_priority_class_set_after_the_first_round_is_forbidden() {
        let mut classes = PriorityClass::system();
        classes.push(PriorityClass::new("spark-high", 1000));
        let mut p = spark_pod();
        admit(&mut p, &cluster(&classes, &[]), "abcde").unwrap();
        p["spec"]["priorityClassName"] = json!("spark-high");
        let err = admit(&mut p, &cluster(&classes, &[]), "abcde").unwrap_err();
        assert_eq!(err.code.as_u16(), 403);
        assert_eq!(err.message(), "pods \"exec-1\" is forbidden: the integer value of priority (0) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name");
        p["spec"]["priorityClassName"] = json!("nope");
        let err = admit(&mut p, &cluster(&classes, &[]), "abcde").unwrap_err();
        assert!(err
            .message()
            .ends_with("no PriorityClass with name nope was found"));
        // Set on the submitted pod, the class decides.
        let mut q = spark_pod();
        q["spec"]["priorityClassName"] = json!("spark-high");
        admit(&mut q, &cluster(&classes, &[]), "abcde").unwrap();
        assert_eq!(q["spec"]["priority"], 1000);
    }

    #[test]
    fn limit_ranger_defaults_and_limits() {
        let lr = [json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "2"}, "max": {"memory": "2Gi"}}]}})];
        let classes = PriorityClass::system();
        let mut p = spark_pod();
        admit(&mut p, &cluster(&classes, &lr), "abcde").unwrap();
        let side = &p["spec"]["containers"][1]["resources"];
        assert_eq!(side["limits"], json!({"cpu": "2", "memory": "2Gi"}));
        assert_eq!(side["requests"], json!({"cpu": "2", "memory": "2Gi"}));
        assert_eq!(
            p["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
            "LimitRanger plugin set: cpu request for container spark-kubernetes-executor; cpu limit for container spark-kubernetes-executor; cpu, memory request for container sidecar; cpu, memory limit for container sidecar; cpu, memory request for init container init; cpu, memory limit for init container init"
        );
        assert!(limit_ranger_validate(&p, &lr).is_ok());
        p["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("3Gi");
        let err = limit_ranger_validate(&p, &lr).unwrap_err();
        assert_eq!(err.message(), "pods \"exec-1\" is forbidden: maximum memory usage per Container is 2Gi, but limit is 3Gi");
    }

    #[test]
    fn priority_class_flags() {
        assert_eq!(
            PriorityClass::parse("spark=1000,globalDefault,preemptionPolicy=Never").unwrap(),
            PriorityClass {
                name: "spark".into(),
                value: 1000,
                global_default: true,
                preemption_policy: "Never".into()
            }
        );
        assert!(PriorityClass::parse("spark").is_err());
    }
}
