//! Scheme defaulting of a v1 Pod (`pkg/apis/core/v1/defaults.go`, applied in the order of the
//! generated `zz_generated.defaults.go`), on the typed JSON of the `typed` module. The API server
//! applies it when it decodes the create body and again to every webhook-patched object
//! (`o.GetObjectDefaulter().Default(...)` in `dispatcher.go`): a field a webhook removes comes
//! back, and what a webhook adds gets its defaults (`volumeMode: Filesystem` in an ephemeral
//! volume's claim template, `defaultMode: 420`, `emptyDir: {}` for a volume without a source).

use serde_json::{json, Map, Value};

use crate::quantity::Quantity;
use crate::typed::VOLUME_SOURCES;

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

pub(crate) fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// The objects of the list `map[list]`, mutably.
pub(crate) fn objects_mut<'a>(
    map: &'a mut Map<String, Value>,
    list: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(list)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn object_mut<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> Option<&'a mut Map<String, Value>> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Applies the v1 defaults to a typed Pod.
pub fn pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    // SetDefaults_Pod
    for list in ["containers", "initContainers"] {
        for c in objects_mut(spec, list) {
            requests_from_limits(c);
        }
    }
    set_default(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&json!(true)) {
        for list in ["containers", "initContainers"] {
            for c in objects_mut(spec, list) {
                for p in objects_mut(c, "ports") {
                    if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                        let port = p.get("containerPort").cloned().unwrap_or(json!(0));
                        p.insert("hostPort".into(), port);
                    }
                }
            }
        }
    }
    // SetDefaults_PodSpec
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for v in objects_mut(spec, "volumes") {
        volume(v);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in objects_mut(spec, list) {
            container(c);
        }
    }
    round_resource_list(object_mut(spec, "overhead"));
    if let Some(res) = object_mut(spec, "resources") {
        round_resource_list(object_mut(res, "limits"));
        round_resource_list(object_mut(res, "requests"));
    }
}

/// SetDefaults_Pod: a limit without a request makes the request equal to the limit.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(res) = object_mut(c, "resources") else {
        return;
    };
    let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    if let Some(requests) = res
        .entry("requests")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

/// SetDefaults_ResourceList: every value rounded up to milli-units.
fn round_resource_list(list: Option<&mut Map<String, Value>>) {
    for v in list.into_iter().flat_map(|m| m.values_mut()) {
        if let Some(mut q) = v.as_str().and_then(|s| Quantity::parse(s).ok()) {
            q.round_up(-3);
            *v = Value::from(q.serialize());
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    // SetDefaults_Container
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    set_default(c, "imagePullPolicy", json!(default_pull_policy(image)));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    for p in objects_mut(c, "ports") {
        set_default(p, "protocol", json!("TCP"));
    }
    for e in objects_mut(c, "env") {
        if let Some(field_ref) = object_mut(e, "valueFrom").and_then(|v| object_mut(v, "fieldRef"))
        {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
    if let Some(res) = object_mut(c, "resources") {
        round_resource_list(object_mut(res, "limits"));
        round_resource_list(object_mut(res, "requests"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = object_mut(c, probe) {
            for (k, d) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                if p.get(k).and_then(Value::as_i64).unwrap_or(0) == 0 {
                    p.insert(k.into(), json!(d));
                }
            }
            http_get(object_mut(p, "httpGet"));
        }
    }
    if let Some(l) = object_mut(c, "lifecycle") {
        for h in ["postStart", "preStop"] {
            http_get(object_mut(l, h).and_then(|h| object_mut(h, "httpGet")));
        }
    }
}

fn http_get(a: Option<&mut Map<String, Value>>) {
    if let Some(a) = a {
        set_default(a, "path", json!("/"));
        set_default(a, "scheme", json!("HTTP"));
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent` (digests and names that
/// do not parse included).
fn default_pull_policy(image: &str) -> &'static str {
    if image.is_empty() || image.contains('@') {
        return "IfNotPresent";
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn volume(v: &mut Map<String, Value>) {
    // SetDefaults_Volume: no source at all is an emptyDir.
    if !VOLUME_SOURCES.iter().any(|s| v.contains_key(*s)) {
        v.insert("emptyDir".into(), json!({}));
    }
    if let Some(hp) = object_mut(v, "hostPath") {
        set_default(hp, "type", json!(""));
    }
    for kind in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = object_mut(v, kind) {
            set_default(src, "defaultMode", json!(420));
        }
    }
    if let Some(d) = object_mut(v, "downwardAPI") {
        field_refs(d);
    }
    if let Some(p) = object_mut(v, "projected") {
        for s in objects_mut(p, "sources") {
            if let Some(t) = object_mut(s, "serviceAccountToken") {
                set_default(t, "expirationSeconds", json!(3600));
            }
            if let Some(d) = object_mut(s, "downwardAPI") {
                field_refs(d);
            }
        }
    }
    if let Some(spec) = object_mut(v, "ephemeral")
        .and_then(|e| object_mut(e, "volumeClaimTemplate"))
        .and_then(|t| object_mut(t, "spec"))
    {
        // SetDefaults_PersistentVolumeClaimSpec
        set_default(spec, "volumeMode", json!("Filesystem"));
        if let Some(res) = object_mut(spec, "resources") {
            round_resource_list(object_mut(res, "limits"));
            round_resource_list(object_mut(res, "requests"));
        }
    }
    // The in-tree sources kept as sent still get their defaults.
    if let Some(s) = object_mut(v, "iscsi") {
        set_default(s, "iscsiInterface", json!("default"));
    }
    if let Some(s) = object_mut(v, "rbd") {
        set_default(s, "pool", json!("rbd"));
        set_default(s, "user", json!("admin"));
        set_default(s, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(s) = object_mut(v, "azureDisk") {
        set_default(s, "cachingMode", json!("ReadWrite"));
        set_default(s, "kind", json!("Shared"));
        set_default(s, "fsType", json!("ext4"));
        set_default(s, "readOnly", json!(false));
    }
    if let Some(s) = object_mut(v, "scaleIO") {
        set_default(s, "storageMode", json!("ThinProvisioned"));
        set_default(s, "fsType", json!("xfs"));
    }
}

fn field_refs(d: &mut Map<String, Value>) {
    for item in objects_mut(d, "items") {
        if let Some(f) = object_mut(item, "fieldRef") {
            set_default(f, "apiVersion", json!("v1"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(v: Value) -> Value {
        crate::typed::pod(&v).unwrap().value
    }

    #[test]
    fn scheme_defaults_of_a_spark_pod() {
        let mut p = typed(json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [
                    {"name": "spark-kubernetes-driver", "image": "apache/spark:3.5.7",
                     "resources": {"limits": {"memory": "1Gi", "cpu": "0.0001"}},
                     "env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                     "ports": [{"containerPort": 7078}],
                     "readinessProbe": {"httpGet": {"port": 4040}}},
                    {"name": "sidecar", "image": "repo/x@sha256:abc"}
                ],
                "volumes": [
                    {"name": "cfg", "configMap": {"name": "c"}},
                    {"name": "bare"},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "200Gi"}}}}}},
                    {"name": "nvme", "hostPath": {"path": "/mnt/nvme0"}}
                ]
            }
        }));
        pod(&mut p);
        let s = &p["spec"];
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["securityContext"], json!({}));
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        let c0 = &s["containers"][0];
        assert_eq!(c0["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c0["terminationMessagePolicy"], "File");
        assert_eq!(c0["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c0["resources"]["requests"]["memory"], "1Gi");
        assert_eq!(
            c0["resources"]["limits"]["cpu"], "1m",
            "rounded up to milli"
        );
        assert_eq!(c0["resources"]["requests"]["cpu"], "1m");
        assert_eq!(c0["ports"][0]["protocol"], "TCP");
        assert_eq!(c0["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(c0["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c0["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(s["initContainers"][0]["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(s["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(
            s["volumes"][1]["emptyDir"],
            json!({}),
            "no source: emptyDir"
        );
        assert_eq!(
            s["volumes"][2]["ephemeral"]["volumeClaimTemplate"]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(s["volumes"][3]["hostPath"]["type"], "");
        // Defaulting is idempotent and keeps the typed shape.
        let again = {
            let mut q = typed(p.clone());
            pod(&mut q);
            q
        };
        assert_eq!(again, p);
    }

    #[test]
    fn pull_policy_by_tag() {
        for (image, want) in [
            ("spark", "Always"),
            ("spark:latest", "Always"),
            ("registry:5000/spark", "Always"),
            ("registry:5000/spark:3.5", "IfNotPresent"),
            ("spark@sha256:00", "IfNotPresent"),
            ("", "IfNotPresent"),
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
