//! What the API server does to a Pod before mutating webhooks see it: scheme defaulting
//! (`pkg/apis/core/v1/defaults.go`) and the in-tree mutating admission plugins that touch a
//! plain Pod (ServiceAccount, DefaultTolerationSeconds, Priority).

use serde_json::{json, Map, Value};

/// Mount path of the service account token volume (ServiceAccount admission plugin).
pub const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Alphabet of `k8s.io/apimachinery/pkg/util/rand.String` (no vowels, no confusable digits).
const RAND_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five random characters as the API server uses for `kube-api-access-xxxxx` and generateName.
pub fn random_suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| RAND_ALPHABET[usize::from(*b) % RAND_ALPHABET.len()] as char)
        .collect()
}

/// Scheme defaulting alone, as the API server re-applies it to a webhook-patched object.
pub fn scheme_defaults_only(pod: &mut Value) {
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        scheme_defaults(spec);
    }
}

/// Applies defaulting and the in-tree admission plugins, in the API server's order.
/// `token_suffix` names the projected token volume (`kube-api-access-<suffix>`).
pub fn default_pod(pod: &mut Value, namespace: &str, token_suffix: &str) {
    let Some(obj) = pod.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(meta) = meta {
        meta.insert("namespace".into(), json!(namespace));
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    scheme_defaults(spec);
    service_account_plugin(spec, token_suffix);
    default_toleration_seconds(spec);
    priority_plugin(spec);
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

fn scheme_defaults(spec: &mut Map<String, Value>) {
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        for c in containers_mut(spec, list) {
            container_defaults(c);
        }
    }
    if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            volume_defaults(v);
        }
    }
}

fn containers_mut<'a>(
    spec: &'a mut Map<String, Value>,
    list: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    spec.get_mut(list)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn container_defaults(c: &mut Map<String, Value>) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let policy = c
        .get("image")
        .and_then(Value::as_str)
        .map(default_pull_policy)
        .unwrap_or("IfNotPresent");
    set_default(c, "imagePullPolicy", json!(policy));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut() {
            if let Some(field_ref) = e
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                set_default(field_ref, "apiVersion", json!("v1"));
            }
        }
    }
    // SetDefaults_Pod: a limit without a request makes the request equal to the limit.
    if let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) {
        if let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
            let requests = res
                .entry("requests")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(requests) = requests {
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent` (digests included).
fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn volume_defaults(v: &mut Map<String, Value>) {
    for kind in ["secret", "configMap", "projected", "downwardAPI"] {
        if let Some(src) = v.get_mut(kind).and_then(Value::as_object_mut) {
            set_default(src, "defaultMode", json!(420));
        }
    }
    if let Some(hp) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set_default(hp, "type", json!(""));
    }
}

/// ServiceAccount admission plugin: default the account, then mount its token (a projected
/// volume with token, cluster CA and namespace) into every container and init container,
/// unless automounting is off or the container already mounts something at the path.
fn service_account_plugin(spec: &mut Map<String, Value>, token_suffix: &str) {
    set_default(spec, "serviceAccountName", json!("default"));
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let already_mounted = |spec: &Map<String, Value>| {
        ["initContainers", "containers"].iter().all(|list| {
            spec.get(*list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .all(|c| mounts_at(c, SA_MOUNT_PATH))
        })
    };
    if already_mounted(spec) {
        return;
    }
    let name = format!("kube-api-access-{token_suffix}");
    let volume = json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]
        }
    });
    if let Some(vols) = spec
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        vols.push(volume);
    }
    let mount = json!({"name": name, "readOnly": true, "mountPath": SA_MOUNT_PATH});
    for list in ["initContainers", "containers"] {
        for c in containers_mut(spec, list) {
            if mounts_at(&Value::Object(c.clone()), SA_MOUNT_PATH) {
                continue;
            }
            if let Some(mounts) = c
                .entry("volumeMounts")
                .or_insert_with(|| json!([]))
                .as_array_mut()
            {
                mounts.push(mount.clone());
            }
        }
    }
}

fn mounts_at(container: &Value, path: &str) -> bool {
    container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(path))
}

/// DefaultTolerationSeconds: tolerate not-ready and unreachable nodes for 300 s unless the pod
/// already tolerates them (or tolerates every NoExecute taint).
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    let Some(tolerations) = tolerations else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = tolerations.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (t_key == key || (t_key.is_empty() && op == "Exists"))
        });
        if !tolerated {
            tolerations.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300
            }));
        }
    }
}

/// Priority plugin with no global default PriorityClass: priority 0.
fn priority_plugin(spec: &mut Map<String, Value>) {
    if spec.get("priorityClassName").is_none() {
        set_default(spec, "priority", json!(0));
    }
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"spark-role": "driver"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "spark-kubernetes-driver", "image": "apache/spark:3.5.7",
                     "resources": {"limits": {"memory": "1Gi"}},
                     "env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                     "ports": [{"containerPort": 7078}]},
                    {"name": "sidecar", "image": "repo/x@sha256:abc"}
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}}]
            }
        })
    }

    #[test]
    fn api_server_defaults_and_plugins() {
        let mut p = pod();
        default_pod(&mut p, "spark-jobs", "abcde");
        let s = &p["spec"];
        assert_eq!(p["metadata"]["namespace"], "spark-jobs");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["serviceAccountName"], "default");
        assert_eq!(s["priority"], 0);
        let c0 = &s["containers"][0];
        assert_eq!(c0["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c0["terminationMessagePolicy"], "File");
        assert_eq!(c0["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c0["resources"]["requests"]["memory"], "1Gi");
        assert_eq!(c0["ports"][0]["protocol"], "TCP");
        assert_eq!(c0["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(s["initContainers"][0]["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(s["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(s["volumes"][1]["name"], "kube-api-access-abcde");
        for c in s["containers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(s["initContainers"].as_array().unwrap())
        {
            assert!(mounts_at(c, SA_MOUNT_PATH), "{c}");
        }
        let tol = s["tolerations"].as_array().unwrap();
        assert_eq!(tol.len(), 2);
        assert!(tol
            .iter()
            .all(|t| t["effect"] == "NoExecute" && t["tolerationSeconds"] == 300));
    }

    #[test]
    fn respects_opt_outs_and_existing_values() {
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(false);
        p["spec"]["dnsPolicy"] = json!("Default");
        p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        default_pod(&mut p, "ns", "abcde");
        assert_eq!(p["spec"]["dnsPolicy"], "Default");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn pull_policy_by_tag() {
        for (image, want) in [
            ("spark", "Always"),
            ("spark:latest", "Always"),
            ("registry:5000/spark", "Always"),
            ("registry:5000/spark:3.5", "IfNotPresent"),
            ("spark@sha256:00", "IfNotPresent"),
        ] {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn random_suffix_uses_the_api_server_alphabet() {
        let s = random_suffix();
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| RAND_ALPHABET.contains(&b)));
    }
}
