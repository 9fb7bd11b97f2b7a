//! What the API server's admission plugins add to a pod before a webhook sees it. No
//! dependency beyond serde_json: the property tests and the fuzz targets (tests/proof) use it
//! too.

use serde_json::{json, Value};

fn set_default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key.to_string()).or_insert(value);
    }
}

/// What the API server does to a pod before mutating admission: field defaulting, the
/// ServiceAccount admission plugin (token volume and its mount in every container) and
/// DefaultTolerationSeconds (not-ready / unreachable tolerations).
pub fn default_like_apiserver(pod: &mut Value, namespace: &str) {
    pod["metadata"]["namespace"] = json!(namespace);
    let spec = &mut pod["spec"];
    for (k, v) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("terminationGracePeriodSeconds", json!(30)),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
        ("serviceAccountName", json!("default")),
    ] {
        set_default(spec, k, v);
    }
    let sa = spec["serviceAccountName"].clone();
    set_default(spec, "serviceAccount", sa);
    let token_volume = "kube-api-access-x7k2p";
    let mount = json!({
        "name": token_volume,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": true
    });
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                for (k, v) in [
                    ("terminationMessagePath", json!("/dev/termination-log")),
                    ("terminationMessagePolicy", json!("File")),
                    ("imagePullPolicy", json!("IfNotPresent")),
                    ("resources", json!({})),
                ] {
                    set_default(c, k, v);
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
                c.as_object_mut()
                    .unwrap()
                    .entry("volumeMounts")
                    .or_insert(json!([]))
                    .as_array_mut()
                    .unwrap()
                    .push(mount.clone());
            }
        }
    }
    spec.as_object_mut()
        .unwrap()
        .entry("volumes")
        .or_insert(json!([]))
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": token_volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }
        }));
    let tolerations = spec
        .as_object_mut()
        .unwrap()
        .entry("tolerations")
        .or_insert(json!([]))
        .as_array_mut()
        .unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        tolerations.push(json!({
            "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300
        }));
    }
}
