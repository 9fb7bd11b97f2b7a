//! Rules that span several fields of a policy document, checked after the YAML is read.
//! Each problem carries the line and column of the part it is about.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Toleration;
use serde_saphyr::Spanned;

use super::model::{
    LimitMode, LocalDirVolume, LocalDirs, MatchSpec, MemoryPolicy, OverheadBounds, Placement,
    PolicyDocument, Scheduling, SecretEnv, SelectorOperator, TolerationOperator, TolerationSpec,
    API_VERSION, KIND,
};
use super::names::check_dns_subdomain;
use super::yaml::Seg;
use super::{LocalDirsPolicy, Policy};
use crate::spark_pod::SparkRole;

/// A problem at a line and column of the document's file; `path` names the field it is
/// about, when the loader can point there more precisely than the span of its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub path: Option<Vec<Seg>>,
}

/// Most local dirs a policy may add; more would be a typo, not a node.
pub const MAX_LOCAL_DIRS: usize = 16;

struct Issues(Vec<Issue>);

impl Issues {
    fn at<T>(&mut self, span: &Spanned<T>, message: impl Into<String>) {
        self.0.push(Issue {
            line: span.referenced.line(),
            column: span.referenced.column(),
            message: message.into(),
            path: None,
        });
    }

    /// At the field `path` (from the document's root), or at `span` when it cannot be found.
    fn field<T>(&mut self, span: &Spanned<T>, path: &[Seg], message: impl Into<String>) {
        self.at(span, message);
        if let Some(last) = self.0.last_mut() {
            last.path = Some(path.to_vec());
        }
    }
}

use Seg::{Index as I, Key as K};

const SPEC: Seg = K("spec");

/// Check one document and turn it into a [`Policy`]; `origin` is `file` for messages.
pub fn validate(doc: PolicyDocument, file: &str) -> Result<Policy, Vec<Issue>> {
    let mut issues = Issues(vec![]);
    check_header(&doc, &mut issues);
    let name = &doc.metadata.name;
    let spec = doc.spec.value;
    let sections = Sections {
        name: None,
        matcher: Some(&spec.match_.value),
        placement: spec.placement.clone(),
        tolerations: Some(spec.tolerations.clone()),
        local_dirs: spec.local_dirs.clone(),
        secret_env: Some(spec.secret_env.clone()),
        memory: spec.memory.clone(),
        roles: &spec.match_.value.roles.value,
    };
    issues.0.extend(check_sections(&sections));
    let does_nothing = spec.placement.is_none()
        && spec.tolerations.is_empty()
        && spec.local_dirs.is_none()
        && spec.secret_env.is_empty()
        && spec.memory.is_none();
    if does_nothing {
        issues.field(
            &spec_span_ref(&spec.match_),
            &[SPEC],
            "spec sets none of placement, tolerations, localDirs, secretEnv, memory: the policy would do nothing",
        );
    }

    if !issues.0.is_empty() {
        return Err(issues.0);
    }
    let tolerations = tolerations(&spec.tolerations, &mut issues);
    let local_dirs = spec
        .local_dirs
        .as_ref()
        .map(|ld| local_dirs(ld, &mut issues));
    Ok(Policy {
        name: name.value.clone(),
        priority: spec.priority,
        mode: spec.mode,
        origin: format!("{file}:{}", name.referenced.line()),
        matcher: spec.match_.value,
        placement: spec.placement.map(|p| p.value),
        tolerations,
        local_dirs,
        secret_env: spec.secret_env.into_iter().map(|s| s.value).collect(),
        memory: spec.memory.map(|m| m.value),
    })
}

/// The sections of a policy document that could be read (all of them for a whole
/// document; those that read on their own when a required field is missing).
#[derive(Default)]
pub struct Sections<'a> {
    /// `metadata.name`, when checked here (a whole document checks it with its header).
    pub name: Option<&'a Spanned<String>>,
    pub matcher: Option<&'a MatchSpec>,
    pub placement: Option<Spanned<Placement>>,
    pub tolerations: Option<Vec<Spanned<TolerationSpec>>>,
    pub local_dirs: Option<Spanned<LocalDirs>>,
    pub secret_env: Option<Vec<Spanned<SecretEnv>>>,
    pub memory: Option<Spanned<MemoryPolicy>>,
    /// The roles the policy matches (memory rules depend on them).
    pub roles: &'a [SparkRole],
}

/// The rules of each section.
pub fn check_sections(s: &Sections<'_>) -> Vec<Issue> {
    let mut issues = Issues(vec![]);
    if let Some(name) = s.name {
        if let Err(e) = check_dns_subdomain(&name.value, "metadata.name") {
            issues.at(name, e);
        }
    }
    if let Some(m) = s.matcher {
        check_match(m, &mut issues);
    }
    if let Some(p) = &s.placement {
        check_placement(p, &mut issues);
    }
    if let Some(t) = &s.tolerations {
        tolerations(t, &mut issues);
    }
    if let Some(ld) = &s.local_dirs {
        local_dirs(ld, &mut issues);
    }
    if let Some(env) = &s.secret_env {
        check_secret_env(env, &mut issues);
    }
    if let Some(mem) = &s.memory {
        check_memory(mem, s.roles, &mut issues);
    }
    issues.0
}

fn check_header(doc: &PolicyDocument, issues: &mut Issues) {
    if doc.api_version.value != API_VERSION {
        issues.at(
            &doc.api_version,
            format!(
                "apiVersion is {:?}; expected {API_VERSION:?}",
                doc.api_version.value
            ),
        );
    }
    if doc.kind.value != KIND {
        issues.at(
            &doc.kind,
            format!("kind is {:?}; expected {KIND:?}", doc.kind.value),
        );
    }
    let name = &doc.metadata.name;
    if let Err(e) = check_dns_subdomain(&name.value, "metadata.name") {
        issues.at(name, e);
    }
}

fn check_match(m: &MatchSpec, issues: &mut Issues) {
    if m.roles.value.is_empty() {
        issues.at(
            &m.roles,
            "match.roles is empty: list at least one of driver, executor, connect-server",
        );
    }
    let selectors = [
        ("podSelector", &m.pod_selector),
        ("namespaceSelector", &m.namespace_selector),
    ];
    for (field, selector) in selectors {
        let Some(selector) = selector else { continue };
        for (i, expr) in selector.match_expressions.iter().enumerate() {
            let path = [SPEC, K("match"), K(field), K("matchExpressions"), I(i)];
            let needs_values = matches!(
                expr.value.operator,
                SelectorOperator::In | SelectorOperator::NotIn
            );
            let (key, op) = (expr.value.key.as_str(), expr.value.operator);
            if needs_values && expr.value.values.is_empty() {
                issues.field(
                    expr,
                    &[&path[..], &[K("operator")]].concat(),
                    format!(
                        "{field} expression on {key:?}: operator {op:?} needs at least one value"
                    ),
                );
            }
            if !needs_values && !expr.value.values.is_empty() {
                issues.field(
                    expr,
                    &[&path[..], &[K("values")]].concat(),
                    format!("{field} expression on {key:?}: operator {op:?} takes no values"),
                );
            }
        }
    }
}

fn check_placement(p: &Spanned<Placement>, issues: &mut Issues) {
    let at = |field| [SPEC, K("placement"), K(field)];
    match (&p.value.provider, &p.value.node_label) {
        (None, None) => issues.field(
            p,
            &[SPEC, K("placement")],
            "placement needs either provider (eks, karpenter, gke, aks) or nodeLabel",
        ),
        (Some(_), Some(_)) => issues.field(
            p,
            &at("nodeLabel"),
            "placement has both provider and nodeLabel; give only one",
        ),
        _ => {}
    }
    match (p.value.scheduling, p.value.weight) {
        (Scheduling::Required, Some(_)) => issues.field(
            p,
            &at("weight"),
            "placement.weight is only meaningful with scheduling: preferred",
        ),
        (Scheduling::Preferred, Some(w)) if !(1..=100).contains(&w) => issues.field(
            p,
            &at("weight"),
            format!("placement.weight is {w}; it must be 1 to 100"),
        ),
        _ => {}
    }
}

fn tolerations(specs: &[Spanned<TolerationSpec>], issues: &mut Issues) -> Vec<Toleration> {
    let mut out = vec![];
    for (i, t) in specs.iter().enumerate() {
        match toleration(&t.value) {
            Ok(tol) => {
                if !out.contains(&tol) {
                    out.push(tol);
                }
            }
            Err((field, e)) => issues.field(t, &[SPEC, K("tolerations"), I(i), K(field)], e),
        }
    }
    out
}

fn local_dirs(ld: &Spanned<LocalDirs>, issues: &mut Issues) -> LocalDirsPolicy {
    let volumes = &ld.value.volumes;
    if volumes.value.is_empty() {
        issues.at(volumes, "localDirs.volumes is empty");
    }
    if volumes.value.len() > MAX_LOCAL_DIRS {
        issues.at(
            volumes,
            format!(
                "localDirs.volumes has {} entries; at most {MAX_LOCAL_DIRS} are allowed",
                volumes.value.len()
            ),
        );
    }
    let mut paths = BTreeSet::new();
    for (i, v) in volumes.value.iter().enumerate() {
        let at = |field: &[Seg]| [&[SPEC, K("localDirs"), K("volumes"), I(i)], field].concat();
        if let Err((field, e)) = check_local_dir(&v.value) {
            issues.field(v, &at(field), format!("localDirs.volumes[{i}]: {e}"));
        }
        let path = v.value.mount_path_for(i as u32 + 1);
        if !paths.insert(path.clone()) {
            issues.field(
                v,
                &at(&[K("mountPath")]),
                format!("localDirs.volumes[{i}]: mount path {path} is used twice"),
            );
        }
    }
    LocalDirsPolicy {
        volumes: volumes.value.iter().map(|v| v.value.clone()).collect(),
        override_submitter: ld.value.override_submitter,
    }
}

fn check_secret_env(entries: &[Spanned<SecretEnv>], issues: &mut Issues) {
    let mut env_names = BTreeSet::new();
    for (i, s) in entries.iter().enumerate() {
        if !env_names.insert(s.value.name.clone()) {
            issues.field(
                s,
                &[SPEC, K("secretEnv"), I(i), K("name")],
                format!("secretEnv lists {} twice", s.value.name.as_str()),
            );
        }
    }
}

fn check_memory(mem: &Spanned<MemoryPolicy>, roles: &[SparkRole], issues: &mut Issues) {
    let m = &mem.value;
    let at = |fields: &[&'static str]| {
        let mut path = vec![SPEC, K("memory")];
        path.extend(fields.iter().map(|f| K(f)));
        path
    };
    if m.overhead.is_none() && m.limit.is_none() && m.max_pod_memory.is_none() {
        issues.field(
            mem,
            &at(&[]),
            "memory sets none of overhead, limit, maxPodMemory",
        );
    }
    if let Some(o) = &m.overhead {
        check_overhead(o, mem, issues);
        if let Some(r) = roles.iter().find(|r| r.is_driver()) {
            issues.field(
                mem,
                &at(&["overhead"]),
                format!(
                    "memory.overhead cannot apply to role {}: a driver's heap is not in its pod (spark.driver.memory is in a ConfigMap Spark creates after the pod); match executors only",
                    r.as_str()
                ),
            );
        }
    }
    if let Some(l) = &m.limit {
        match (l.mode, l.headroom) {
            (LimitMode::RequestPlusHeadroom, None) => issues.field(
                mem,
                &at(&["limit", "mode"]),
                "memory.limit.mode RequestPlusHeadroom needs memory.limit.headroom",
            ),
            (LimitMode::EqualToRequest | LimitMode::NoLimit, Some(_)) => issues.field(
                mem,
                &at(&["limit", "headroom"]),
                "memory.limit.headroom is only used with mode RequestPlusHeadroom",
            ),
            _ => {}
        }
    }
    if let Some(max) = &m.max_pod_memory {
        if max.value.0 .0 == 0 {
            issues.field(
                mem,
                &at(&["maxPodMemory", "value"]),
                "memory.maxPodMemory.value must be above 0",
            );
        }
    }
}

fn check_overhead(o: &OverheadBounds, mem: &Spanned<MemoryPolicy>, issues: &mut Issues) {
    let at = |field: &'static str| [SPEC, K("memory"), K("overhead"), K(field)];
    if let Some(f) = o.factor {
        if !(f > 0.0 && f <= 10.0) {
            issues.field(
                mem,
                &at("factor"),
                format!("memory.overhead.factor is {f}; it must be above 0 and at most 10"),
            );
        }
    }
    if let (Some(min), Some(max)) = (o.min, o.max) {
        if min > max {
            issues.field(
                mem,
                &at("min"),
                format!(
                    "memory.overhead.min ({}) is above memory.overhead.max ({})",
                    min.0, max.0
                ),
            );
        }
    }
    if o.factor.is_none() && o.min.is_none() && o.max.is_none() {
        issues.field(
            mem,
            &[SPEC, K("memory"), K("overhead")],
            "memory.overhead sets none of factor, min, max",
        );
    }
}

fn spec_span_ref<T>(s: &Spanned<T>) -> Spanned<()> {
    Spanned::new((), s.referenced, s.defined)
}

/// A policy toleration as the Kubernetes object, after the API server's own rules.
/// On error, the field at fault and why.
fn toleration(t: &TolerationSpec) -> Result<Toleration, (&'static str, String)> {
    let op = t.operator.unwrap_or(TolerationOperator::Equal);
    if op == TolerationOperator::Exists && t.value.as_ref().is_some_and(|v| !v.as_str().is_empty())
    {
        return Err((
            "value",
            "toleration with operator Exists must not have a value".into(),
        ));
    }
    if t.key.is_none() && op != TolerationOperator::Exists {
        return Err((
            "operator",
            "toleration without a key must use operator Exists".into(),
        ));
    }
    if t.toleration_seconds.is_some() && t.effect != Some(super::model::TaintEffect::NoExecute) {
        return Err((
            "tolerationSeconds",
            "tolerationSeconds is only allowed with effect NoExecute".into(),
        ));
    }
    Ok(Toleration {
        key: t.key.as_ref().map(|k| k.to_string()),
        operator: Some(
            match op {
                TolerationOperator::Equal => "Equal",
                TolerationOperator::Exists => "Exists",
            }
            .to_string(),
        ),
        value: t.value.as_ref().map(|v| v.to_string()),
        effect: t.effect.map(|e| e.as_str().to_string()),
        toleration_seconds: t.toleration_seconds,
    })
}

/// On error, the field at fault (relative to the volume) and why.
fn check_local_dir(v: &LocalDirVolume) -> Result<(), (&'static [Seg], String)> {
    let sources = [
        v.host_path.is_some(),
        v.empty_dir.is_some(),
        v.ephemeral.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources != 1 {
        return Err((
            &[],
            format!("set exactly one of hostPath, emptyDir, ephemeral (found {sources})"),
        ));
    }
    if let Some(e) = &v.ephemeral {
        if e.size.0 .0 == 0 {
            return Err((
                &[K("ephemeral"), K("size")],
                "ephemeral.size must be above 0".into(),
            ));
        }
        if let Some(sc) = &e.storage_class_name {
            check_dns_subdomain(sc, "ephemeral.storageClassName")
                .map_err(|e| (&[K("ephemeral"), K("storageClassName")][..], e))?;
        }
    }
    Ok(())
}
