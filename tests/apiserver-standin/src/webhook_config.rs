//! Mutating webhooks as the API server holds them: read from the rendered
//! MutatingWebhookConfiguration(s) (`kubectl kustomize manifests/` output), with the test's
//! substitutions for what only a real cluster has (the `caBundle` a CA injector or the
//! cabundle patch would set, and where the Service's endpoints are).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
};
use serde_json::Value;

use crate::selector::{Selector, SelectorError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path} as YAML documents: {message}")]
    Yaml { path: String, message: String },
    #[error("MutatingWebhookConfiguration {config}: {message}")]
    Invalid { config: String, message: String },
    #[error("webhook {webhook}: {source}")]
    Selector {
        webhook: String,
        source: SelectorError,
    },
    #[error("no MutatingWebhookConfiguration in {0}")]
    None(String),
}

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Service: the TLS name is `<name>.<namespace>.svc`; `connect` is where its endpoints
    /// are in this test (None: the Service has no endpoints, so every call fails).
    Service {
        name: String,
        namespace: String,
        port: i32,
        path: String,
        connect: Option<SocketAddr>,
    },
    /// `clientConfig.url`.
    Url(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Copy)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub configuration: String,
    pub name: String,
    pub target: Target,
    pub ca_bundle: Vec<u8>,
    pub rules: Vec<RuleWithOperations>,
    pub object_selector: Selector,
    pub namespace_selector: Selector,
    pub failure_policy: FailurePolicy,
    pub timeout_seconds: u64,
    pub reinvoke_if_needed: bool,
    pub side_effects: String,
    pub admission_review_versions: Vec<String>,
}

/// Substitutions the test makes on the rendered configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// PEM of the CA that signed the server's certificate (replaces every `caBundle`).
    pub ca_bundle: Option<Vec<u8>>,
    /// `name.namespace:port` → local address where that Service's endpoint listens.
    pub endpoints: HashMap<String, SocketAddr>,
}

/// Reads every MutatingWebhookConfiguration in a multi-document YAML file, in the API
/// server's order (configurations sorted by name, webhooks in list order).
pub fn load(path: &str, overrides: &Overrides) -> Result<Vec<Webhook>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_string(),
        source,
    })?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| ConfigError::Yaml {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let mut configs: Vec<MutatingWebhookConfiguration> = Vec::new();
    for doc in docs {
        if doc["kind"] == "MutatingWebhookConfiguration"
            && doc["apiVersion"] == "admissionregistration.k8s.io/v1"
        {
            let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
            configs.push(
                serde_json::from_value(doc).map_err(|e| ConfigError::Invalid {
                    config: name,
                    message: e.to_string(),
                })?,
            );
        }
    }
    if configs.is_empty() {
        return Err(ConfigError::None(path.to_string()));
    }
    configs.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut hooks = Vec::new();
    for cfg in configs {
        let cfg_name = cfg.metadata.name.clone().unwrap_or_default();
        for wh in cfg.webhooks.into_iter().flatten() {
            hooks.push(convert(&cfg_name, wh, overrides)?);
        }
    }
    Ok(hooks)
}

fn convert(cfg: &str, wh: MutatingWebhook, o: &Overrides) -> Result<Webhook, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        config: cfg.to_string(),
        message,
    };
    if wh.match_conditions.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(invalid(format!(
            "webhook {}: matchConditions (CEL) are not reproduced by the stand-in",
            wh.name
        )));
    }
    let cc = wh.client_config;
    let target = match (cc.service, cc.url) {
        (Some(svc), None) => {
            let port = svc.port.unwrap_or(443);
            let key = format!("{}.{}:{}", svc.name, svc.namespace, port);
            Target::Service {
                connect: o.endpoints.get(&key).copied(),
                name: svc.name,
                namespace: svc.namespace,
                port,
                path: svc.path.unwrap_or_else(|| "/".into()),
            }
        }
        (None, Some(url)) => Target::Url(url),
        _ => {
            return Err(invalid(format!(
                "webhook {}: exactly one of clientConfig.service and clientConfig.url is required",
                wh.name
            )))
        }
    };
    let ca_bundle = o
        .ca_bundle
        .clone()
        .or(cc.ca_bundle.map(|b| b.0))
        .unwrap_or_default();
    let failure_policy = match wh.failure_policy.as_deref() {
        None | Some("Fail") => FailurePolicy::Fail,
        Some("Ignore") => FailurePolicy::Ignore,
        Some(other) => return Err(invalid(format!("failurePolicy {other:?}"))),
    };
    let timeout_seconds = match wh.timeout_seconds {
        None => 10,
        Some(t @ 1..=30) => u64::try_from(t).unwrap_or(10),
        Some(t) => {
            return Err(invalid(format!(
                "webhook {}: timeoutSeconds {t} outside 1..=30",
                wh.name
            )))
        }
    };
    if !wh.admission_review_versions.iter().any(|v| v == "v1") {
        return Err(invalid(format!(
            "webhook {}: the stand-in speaks admission.k8s.io/v1 only, config offers {:?}",
            wh.name, wh.admission_review_versions
        )));
    }
    let sel_err = |source| ConfigError::Selector {
        webhook: wh.name.clone(),
        source,
    };
    Ok(Webhook {
        configuration: cfg.to_string(),
        object_selector: Selector::from_label_selector(wh.object_selector.as_ref())
            .map_err(sel_err)?,
        namespace_selector: Selector::from_label_selector(wh.namespace_selector.as_ref())
            .map_err(sel_err)?,
        name: wh.name,
        target,
        ca_bundle,
        rules: wh.rules.unwrap_or_default(),
        failure_policy,
        timeout_seconds,
        reinvoke_if_needed: wh.reinvocation_policy.as_deref() == Some("IfNeeded"),
        side_effects: wh.side_effects,
        admission_review_versions: wh.admission_review_versions,
    })
}

/// What is being admitted, for matching.
pub struct AdmissionAttributes<'a> {
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespaced: bool,
    pub object_labels: &'a BTreeMap<String, String>,
    pub namespace_labels: &'a BTreeMap<String, String>,
}

impl Webhook {
    /// `ShouldCallHook`: rules, then namespaceSelector, then objectSelector.
    pub fn matches(&self, a: &AdmissionAttributes<'_>) -> bool {
        self.rules.iter().any(|r| rule_matches(r, a))
            && (!a.namespaced || self.namespace_selector.matches(a.namespace_labels))
            && self.object_selector.matches(a.object_labels)
    }
}

fn rule_matches(r: &RuleWithOperations, a: &AdmissionAttributes<'_>) -> bool {
    let any = |list: &Option<Vec<String>>, value: &str| {
        list.iter().flatten().any(|v| v == "*" || v == value)
    };
    let resource_ok = r.resources.iter().flatten().any(|res| {
        let (res_name, sub) = res.split_once('/').unwrap_or((res.as_str(), ""));
        let name_ok = res_name == "*" || res_name == a.resource;
        // `pods` is the main resource only; `pods/*` and `*/*` name subresources too.
        let sub_ok = if res.contains('/') {
            sub == "*" || sub == a.subresource
        } else {
            a.subresource.is_empty()
        };
        name_ok && sub_ok
    });
    let scope_ok = match r.scope.as_deref() {
        None | Some("*") => true,
        Some("Namespaced") => a.namespaced,
        Some("Cluster") => !a.namespaced,
        Some(_) => false,
    };
    any(&r.operations, a.operation)
        && any(&r.api_groups, a.group)
        && any(&r.api_versions, a.version)
        && resource_ok
        && scope_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: spark-admission
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata:
  name: spark-admission
webhooks:
- name: spark-pods.spark-admission.dev
  admissionReviewVersions: ["v1"]
  sideEffects: None
  failurePolicy: Ignore
  timeoutSeconds: 5
  reinvocationPolicy: IfNeeded
  clientConfig:
    service: {name: spark-admission, namespace: spark-admission, path: /mutate, port: 443}
    caBundle: ""
  rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
    scope: Namespaced
  objectSelector:
    matchExpressions:
    - {key: spark-role, operator: In, values: [driver, executor]}
  namespaceSelector:
    matchExpressions:
    - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, spark-admission]}
"#;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn loads_rendered_config_with_overrides() {
        let dir = std::env::temp_dir().join(format!("standin-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rendered.yaml");
        std::fs::write(&file, RENDERED).unwrap();
        let addr: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        let overrides = Overrides {
            ca_bundle: Some(b"PEM".to_vec()),
            endpoints: HashMap::from([("spark-admission.spark-admission:443".to_string(), addr)]),
        };
        let hooks = load(file.to_str().unwrap(), &overrides).unwrap();
        assert_eq!(hooks.len(), 1);
        let h = &hooks[0];
        assert_eq!(h.failure_policy, FailurePolicy::Ignore);
        assert_eq!(h.timeout_seconds, 5);
        assert!(h.reinvoke_if_needed);
        assert_eq!(h.ca_bundle, b"PEM");
        assert_eq!(
            h.target,
            Target::Service {
                name: "spark-admission".into(),
                namespace: "spark-admission".into(),
                port: 443,
                path: "/mutate".into(),
                connect: Some(addr)
            }
        );

        let ns_default = labels(&[("kubernetes.io/metadata.name", "default")]);
        let ns_system = labels(&[("kubernetes.io/metadata.name", "kube-system")]);
        let driver = labels(&[("spark-role", "driver")]);
        let plain = labels(&[("app", "web")]);
        let attrs = |op, obj, ns, sub| AdmissionAttributes {
            operation: op,
            group: "",
            version: "v1",
            resource: "pods",
            subresource: sub,
            namespaced: true,
            object_labels: obj,
            namespace_labels: ns,
        };
        assert!(h.matches(&attrs("CREATE", &driver, &ns_default, "")));
        assert!(!h.matches(&attrs("UPDATE", &driver, &ns_default, "")));
        assert!(!h.matches(&attrs("CREATE", &plain, &ns_default, "")));
        assert!(!h.matches(&attrs("CREATE", &driver, &ns_system, "")));
        assert!(!h.matches(&attrs("CREATE", &driver, &ns_default, "binding")));
    }
}
