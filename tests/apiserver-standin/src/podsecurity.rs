//! The PodSecurity admission plugin (`staging/src/k8s.io/pod-security-admission`): the namespace
//! labels `pod-security.kubernetes.io/enforce` and `warn` (levels `privileged`, `baseline`,
//! `restricted`; `-version` labels are echoed, every check is evaluated at `latest`) judge the
//! pod after all mutation, in the validating phase. Enforce answers 403
//! `violates PodSecurity "baseline:latest": ...`; warn adds a `would violate PodSecurity` warning.
//!
//! The checks of `policy/check_*.go`, each with its reason and detail wording, joined in check-ID
//! order as `AggregateCheckResult.ForbiddenDetail` joins them. Baseline: hostProcess, host
//! namespaces, privileged, capabilities, hostPath volumes, host ports, AppArmor (field only),
//! SELinux, /proc mount, seccomp, sysctls. Restricted adds: volume types, privilege escalation,
//! dropped capabilities, runAsNonRoot, runAsUser, seccomp profile required. Not reproduced: the
//! AppArmor annotations, exemptions, `audit`, and version-specific policies (`v1.2x` evaluates
//! as latest).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

/// What the namespace asks for, in one mode (`enforce` or `warn`).
pub struct Policy {
    pub level: Level,
    /// `baseline:latest`, as messages name it.
    pub label: String,
}

/// The policy of one mode from the namespace labels (none: privileged, nothing to check).
pub fn policy(ns_labels: &BTreeMap<String, String>, mode: &str) -> Option<Policy> {
    let level_s = ns_labels.get(&format!("pod-security.kubernetes.io/{mode}"))?;
    let level = Level::parse(level_s)?;
    if level == Level::Privileged {
        return None;
    }
    let version = ns_labels
        .get(&format!("pod-security.kubernetes.io/{mode}-version"))
        .map(String::as_str)
        .unwrap_or("latest");
    Some(Policy {
        level,
        label: format!("{level_s}:{version}"),
    })
}

/// One failed check: (check ID for ordering, reason, detail).
type Failure = (&'static str, String, String);

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 { one } else { many }.to_string()
}

fn join_quote(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .collect()
}

fn name(c: &Value) -> String {
    c["name"].as_str().unwrap_or("").to_string()
}

/// The names of the containers whose securityContext satisfies `pred`.
fn names_where(cs: &[&Value], pred: impl Fn(&Value) -> bool) -> Vec<String> {
    cs.iter()
        .filter(|c| pred(&c["securityContext"]))
        .map(|c| name(c))
        .collect()
}

/// One failed check whose detail is its findings joined by `; ` (none: passed).
fn fail_with(fails: &mut Vec<Failure>, id: &'static str, reason: &str, details: Vec<String>) {
    if !details.is_empty() {
        fails.push((id, reason.to_string(), details.join("; ")));
    }
}

/// `container "a"` / `containers "a", "b"`.
fn who(names: &[String]) -> String {
    format!(
        "{} {}",
        plural(names.len(), "container", "containers"),
        join_quote(names)
    )
}

/// Evaluates every check of the level; the `ForbiddenDetail` text, or None when allowed.
pub fn evaluate(pod: &Value, level: Level) -> Option<String> {
    let mut fails: Vec<Failure> = Vec::new();
    baseline(pod, level, &mut fails);
    if level == Level::Restricted {
        restricted(pod, &mut fails);
    }
    if fails.is_empty() {
        return None;
    }
    fails.sort_by(|a, b| a.0.cmp(b.0));
    Some(
        fails
            .iter()
            .map(|(_, reason, detail)| {
                if detail.is_empty() {
                    reason.clone()
                } else {
                    format!("{reason} ({detail})")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn baseline(pod: &Value, level: Level, fails: &mut Vec<Failure>) {
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];
    let cs = containers(pod);

    // check_windowsHostProcess.go
    let host_process = names_where(&cs, |sc| sc["windowsOptions"]["hostProcess"] == true);
    if psc["windowsOptions"]["hostProcess"] == true || !host_process.is_empty() {
        let mut parts = Vec::new();
        if psc["windowsOptions"]["hostProcess"] == true {
            parts.push("pod".to_string());
        }
        if !host_process.is_empty() {
            parts.push(who(&host_process));
        }
        fails.push((
            "hostProcess",
            "hostProcess".into(),
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                parts.join(" and ")
            ),
        ));
    }

    // check_hostNamespaces.go
    let ns: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec[**f] == true)
        .map(|f| format!("{f}=true"))
        .collect();
    if !ns.is_empty() {
        fails.push(("hostNamespaces", "host namespaces".into(), ns.join(", ")));
    }

    // check_privileged.go
    let privileged = names_where(&cs, |sc| sc["privileged"] == true);
    if !privileged.is_empty() {
        fails.push((
            "privileged",
            "privileged".into(),
            format!(
                "{} must not set securityContext.privileged=true",
                who(&privileged)
            ),
        ));
    }

    // check_capabilities_baseline.go (overridden by the restricted check)
    if level == Level::Baseline {
        const ALLOWED: &[&str] = &[
            "AUDIT_WRITE",
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "FSETID",
            "KILL",
            "MKNOD",
            "NET_BIND_SERVICE",
            "SETFCAP",
            "SETGID",
            "SETPCAP",
            "SETUID",
            "SYS_CHROOT",
        ];
        let details = forbidden_adds(&cs, |cap| ALLOWED.contains(&cap));
        fail_with(
            fails,
            "capabilities_baseline",
            "non-default capabilities",
            details,
        );
    }

    // check_hostPathVolumes.go (overridden by restrictedVolumes)
    if level == Level::Baseline {
        let host: Vec<String> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| v.get("hostPath").is_some_and(|h| !h.is_null()))
            .map(|v| v["name"].as_str().unwrap_or("").to_string())
            .collect();
        if !host.is_empty() {
            fails.push((
                "hostPathVolumes",
                "hostPath volumes".into(),
                format!(
                    "{} {}",
                    plural(host.len(), "volume", "volumes"),
                    join_quote(&host)
                ),
            ));
        }
    }

    // check_hostPorts.go
    let mut port_details = Vec::new();
    for c in &cs {
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["hostPort"].as_i64().filter(|h| *h != 0))
            .map(|h| h.to_string())
            .collect();
        if !ports.is_empty() {
            port_details.push(format!(
                "container {:?} uses {} {}",
                name(c),
                plural(ports.len(), "hostPort", "hostPorts"),
                ports.join(", ")
            ));
        }
    }
    if !port_details.is_empty() {
        fails.push(("hostPorts", "hostPort".into(), port_details.join("; ")));
    }

    // check_appArmorProfile.go (the field; the annotations are not read)
    let mut apparmor = Vec::new();
    if psc["appArmorProfile"]["type"] == "Unconfined" {
        apparmor.push("pod must not set appArmorProfile.type to \"Unconfined\"".to_string());
    }
    for c in &cs {
        if c["securityContext"]["appArmorProfile"]["type"] == "Unconfined" {
            apparmor.push(format!(
                "container {:?} must not set appArmorProfile.type to \"Unconfined\"",
                name(c)
            ));
        }
    }
    if !apparmor.is_empty() {
        fails.push((
            "appArmorProfile",
            "forbidden AppArmor profile".into(),
            apparmor.join("; "),
        ));
    }

    // check_seLinuxOptions.go
    let selinux_bad = |o: &Value| {
        let t = o["type"].as_str().unwrap_or("");
        ![
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ]
        .contains(&t)
            || o["user"].as_str().is_some_and(|s| !s.is_empty())
            || o["role"].as_str().is_some_and(|s| !s.is_empty())
    };
    let se = names_where(&cs, |sc| selinux_bad(&sc["seLinuxOptions"]));
    if selinux_bad(&psc["seLinuxOptions"]) || !se.is_empty() {
        fails.push(("seLinuxOptions", "seLinuxOptions".into(), String::new()));
    }

    // check_procMount.go
    let proc = names_where(&cs, |sc| {
        sc["procMount"].as_str().is_some_and(|p| p != "Default")
    });
    if !proc.is_empty() {
        fails.push((
            "procMount",
            "procMount".into(),
            format!("{} must not set securityContext.procMount", who(&proc)),
        ));
    }

    // check_seccompProfile_baseline.go (overridden by the restricted check)
    if level == Level::Baseline {
        let mut details = Vec::new();
        if psc["seccompProfile"]["type"] == "Unconfined" {
            details.push(
                "pod must not set securityContext.seccompProfile.type to \"Unconfined\"".into(),
            );
        }
        let bad = names_where(&cs, |sc| sc["seccompProfile"]["type"] == "Unconfined");
        if !bad.is_empty() {
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                who(&bad)
            ));
        }
        fail_with(fails, "seccompProfile_baseline", "seccompProfile", details);
    }

    // check_sysctls.go
    const SAFE: &[&str] = &[
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ];
    let sysctls: Vec<String> = psc["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !SAFE.contains(n))
        .map(str::to_string)
        .collect();
    if !sysctls.is_empty() {
        fails.push(("sysctls", "forbidden sysctls".into(), sysctls.join(", ")));
    }
}

/// One finding per container adding a capability `allowed` refuses.
fn forbidden_adds(cs: &[&Value], allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let mut details = Vec::new();
    for c in cs {
        let bad: Vec<String> = c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|cap| !allowed(cap))
            .map(str::to_string)
            .collect();
        if !bad.is_empty() {
            details.push(format!(
                "container {:?} must not include {} in securityContext.capabilities.add",
                name(c),
                join_quote(&bad)
            ));
        }
    }
    details
}

fn restricted(pod: &Value, fails: &mut Vec<Failure>) {
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];
    let cs = containers(pod);
    let windows = spec["os"]["name"] == "windows";

    // check_restrictedVolumes.go
    const ALLOWED_VOLUMES: &[&str] = &[
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    let mut bad_volumes = Vec::new();
    let mut bad_types = BTreeSet::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let source = crate::typed::VOLUME_SOURCES
            .iter()
            .find(|s| v.get(**s).is_some_and(|x| !x.is_null()));
        match source {
            Some(s) if ALLOWED_VOLUMES.contains(s) => {}
            other => {
                bad_volumes.push(v["name"].as_str().unwrap_or("").to_string());
                bad_types.insert(other.map_or("unknown", |s| *s).to_string());
            }
        }
    }
    if !bad_volumes.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        fails.push((
            "restrictedVolumes",
            "restricted volume types".into(),
            format!(
                "{} {} {} {} {}",
                plural(bad_volumes.len(), "volume", "volumes"),
                join_quote(&bad_volumes),
                plural(bad_volumes.len(), "uses", "use"),
                plural(
                    types.len(),
                    "restricted volume type",
                    "restricted volume types"
                ),
                join_quote(&types)
            ),
        ));
    }

    if !windows {
        // check_allowPrivilegeEscalation.go
        let bad = names_where(&cs, |sc| sc["allowPrivilegeEscalation"] != false);
        if !bad.is_empty() {
            fails.push((
                "allowPrivilegeEscalation",
                "allowPrivilegeEscalation != false".into(),
                format!(
                    "{} must set securityContext.allowPrivilegeEscalation=false",
                    who(&bad)
                ),
            ));
        }

        // check_capabilities_restricted.go
        let mut details = Vec::new();
        let no_drop = names_where(&cs, |sc| {
            !sc["capabilities"]["drop"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d == "ALL")
        });
        if !no_drop.is_empty() {
            details.push(format!(
                "{} must set securityContext.capabilities.drop=[\"ALL\"]",
                who(&no_drop)
            ));
        }
        details.extend(forbidden_adds(&cs, |cap| cap == "NET_BIND_SERVICE"));
        fail_with(
            fails,
            "capabilities_restricted",
            "unrestricted capabilities",
            details,
        );

        // check_seccompProfile_restricted.go
        let ok_type = |v: &Value| v == "RuntimeDefault" || v == "Localhost";
        let pod_type = &psc["seccompProfile"]["type"];
        let mut details = Vec::new();
        if !pod_type.is_null() && !ok_type(pod_type) {
            details.push(format!(
                "pod must not set securityContext.seccompProfile.type to {pod_type}"
            ));
        }
        let explicit_bad = names_where(&cs, |sc| {
            let t = &sc["seccompProfile"]["type"];
            !t.is_null() && !ok_type(t)
        });
        if !explicit_bad.is_empty() {
            details.push(format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                who(&explicit_bad)
            ));
        }
        if !ok_type(pod_type) {
            let unset = names_where(&cs, |sc| sc["seccompProfile"]["type"].is_null());
            if !unset.is_empty() {
                details.push(format!(
                    "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    who(&unset)
                ));
            }
        }
        fail_with(
            fails,
            "seccompProfile_restricted",
            "seccompProfile",
            details,
        );
    }

    // check_runAsNonRoot.go
    let mut details = Vec::new();
    if psc["runAsNonRoot"] == false {
        details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let explicit_false = names_where(&cs, |sc| sc["runAsNonRoot"] == false);
    if !explicit_false.is_empty() {
        details.push(format!(
            "{} must not set securityContext.runAsNonRoot=false",
            who(&explicit_false)
        ));
    }
    let non_root_uid = |v: &Value| v.as_i64().is_some_and(|u| u != 0);
    let pod_ok = psc["runAsNonRoot"] == true || non_root_uid(&psc["runAsUser"]);
    if !pod_ok {
        let unset = names_where(&cs, |sc| {
            sc["runAsNonRoot"].is_null() && !non_root_uid(&sc["runAsUser"])
        });
        if !unset.is_empty() {
            details.push(format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                who(&unset)
            ));
        }
    }
    fail_with(fails, "runAsNonRoot", "runAsNonRoot != true", details);

    // check_runAsUser.go
    let mut details = Vec::new();
    if psc["runAsUser"] == 0 {
        details.push("pod must not set runAsUser=0".to_string());
    }
    let root = names_where(&cs, |sc| sc["runAsUser"] == 0);
    if !root.is_empty() {
        details.push(format!("{} must not set runAsUser=0", who(&root)));
    }
    fail_with(fails, "runAsUser", "runAsUser=0", details);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spark_executor(volume: Value) -> Value {
        json!({"spec": {
            "containers": [{"name": "spark-kubernetes-executor"}],
            "volumes": [volume, {"name": "kube-api-access-abcde", "projected": {"sources": []}}]
        }})
    }

    #[test]
    fn baseline_rejects_host_path_local_dirs_and_admits_empty_dir_and_ephemeral() {
        let host = spark_executor(
            json!({"name": "spark-local-dir-1", "hostPath": {"path": "/mnt/nvme0"}}),
        );
        assert_eq!(
            evaluate(&host, Level::Baseline).as_deref(),
            Some("hostPath volumes (volume \"spark-local-dir-1\")")
        );
        for v in [
            json!({"name": "spark-local-dir-1", "emptyDir": {"sizeLimit": "400Gi"}}),
            json!({"name": "spark-local-dir-1", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}),
        ] {
            assert_eq!(evaluate(&spark_executor(v), Level::Baseline), None);
        }
    }

    #[test]
    fn restricted_names_everything_a_plain_spark_pod_lacks_in_check_order() {
        let host = spark_executor(json!({"name": "d", "hostPath": {"path": "/x"}}));
        assert_eq!(
            evaluate(&host, Level::Restricted).as_deref(),
            Some("allowPrivilegeEscalation != false (container \"spark-kubernetes-executor\" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"spark-kubernetes-executor\" must set securityContext.capabilities.drop=[\"ALL\"]), restricted volume types (volume \"d\" uses restricted volume type \"hostPath\"), runAsNonRoot != true (pod or container \"spark-kubernetes-executor\" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container \"spark-kubernetes-executor\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")")
        );
        let hardened = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "e", "ephemeral": {}}]
        }});
        assert_eq!(evaluate(&hardened, Level::Restricted), None);
    }

    #[test]
    fn namespace_labels_select_the_policy() {
        let labels: BTreeMap<String, String> = [
            ("pod-security.kubernetes.io/enforce", "baseline"),
            ("pod-security.kubernetes.io/warn", "restricted"),
            ("pod-security.kubernetes.io/warn-version", "v1.33"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(policy(&labels, "enforce").unwrap().label, "baseline:latest");
        assert_eq!(policy(&labels, "warn").unwrap().label, "restricted:v1.33");
        assert!(policy(&BTreeMap::new(), "enforce").is_none());
    }
}
