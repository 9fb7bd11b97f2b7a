//! In-memory object storage, plus the stand-in's own records for tests to inspect.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::admission::CallRecord;

/// `(api prefix, namespace, resource)`, e.g. `("api/v1", "default", "pods")`.
pub type Collection = (String, String, String);

/// The resourceVersion of every namespace: they exist before anything is stored.
pub const NAMESPACES_RESOURCE_VERSION: u64 = 1;

pub struct Store {
    pub objects: BTreeMap<Collection, BTreeMap<String, Value>>,
    /// Every pod ever admitted and stored, as stored (kept after deletion).
    pub admitted: Vec<Value>,
    pub calls: Vec<CallRecord>,
    /// Pod creates the admission chain refused: namespace, name, code, message.
    pub rejections: Vec<Value>,
    resource_version: u64,
}

impl Default for Store {
    fn default() -> Store {
        Store {
            objects: BTreeMap::new(),
            admitted: Vec::new(),
            calls: Vec::new(),
            rejections: Vec::new(),
            resource_version: NAMESPACES_RESOURCE_VERSION,
        }
    }
}

impl Store {
    pub fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    pub fn resource_version(&self) -> String {
        self.resource_version.to_string()
    }

    /// Fills what the registry sets on create: uid, resourceVersion, creationTimestamp.
    pub fn stamp_new(&mut self, obj: &mut Value) {
        let rv = self.next_resource_version();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("resourceVersion".into(), json!(rv));
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        }
    }
}

/// Kind of the objects in a known collection, None for resources the stand-in doesn't serve.
pub fn kind_of(prefix: &str, resource: &str) -> Option<&'static str> {
    Some(match (prefix, resource) {
        ("api/v1", "pods") => "Pod",
        ("api/v1", "configmaps") => "ConfigMap",
        ("api/v1", "services") => "Service",
        ("api/v1", "persistentvolumeclaims") => "PersistentVolumeClaim",
        ("api/v1", "secrets") => "Secret",
        ("api/v1", "serviceaccounts") => "ServiceAccount",
        ("api/v1", "limitranges") => "LimitRange",
        ("apis/networking.k8s.io/v1", "networkpolicies") => "NetworkPolicy",
        _ => return None,
    })
}

/// `apiVersion` for a prefix: `api/v1` → `v1`, `apis/g/v` → `g/v`.
pub fn api_version_of(prefix: &str) -> &str {
    prefix
        .strip_prefix("apis/")
        .or_else(|| prefix.strip_prefix("api/"))
        .unwrap_or(prefix)
}

/// UTC now as RFC 3339 with seconds, like `metav1.Time`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `status` the API server writes on a new pod: Pending, and the QoS class from resources.
pub fn initial_pod_status(pod: &Value) -> Value {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for res in ["cpu", "memory"] {
            let req = &c["resources"]["requests"][res];
            let lim = &c["resources"]["limits"][res];
            any |= !req.is_null() || !lim.is_null();
            if lim.is_null() || (!req.is_null() && req != lim) {
                guaranteed = false;
            }
        }
    }
    let qos = match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    };
    json!({"phase": "Pending", "qosClass": qos})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }

    #[test]
    fn qos_classes() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "c", "resources": res}]}});
        let cases = [
            (json!({}), "BestEffort"),
            (
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
                "Guaranteed",
            ),
            (
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}),
                "Burstable",
            ),
        ];
        for (res, want) in cases {
            assert_eq!(initial_pod_status(&pod(res))["qosClass"], want);
        }
    }
}
