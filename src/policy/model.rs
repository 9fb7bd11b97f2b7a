//! The policy model: what a `SparkPodPolicy` document may say.
//!
//! Every field is typed and checked while the YAML is read (unknown fields, bad names and
//! bad quantities fail with their location); rules that span several fields are checked in
//! [`super::validate`].

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::names::{
    AbsolutePath, EnvName, LabelKey, LabelValue, NamespacePattern, SecretKey, SecretName,
};
use crate::quantity::MemoryQuantity;
use crate::spark_pod::SparkRole;

pub const API_VERSION: &str = "spark-admission.dev/v1alpha1";
pub const KIND: &str = "SparkPodPolicy";

/// One YAML document as written by an admin.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyDocument {
    #[schemars(with = "String")]
    pub api_version: Spanned<String>,
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    pub metadata: Metadata,
    #[schemars(with = "PolicySpec")]
    pub spec: Spanned<PolicySpec>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Free-form notes for humans; ignored by the engine.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    /// Application order: lower first; for single values the policy applied last wins.
    #[serde(default)]
    pub priority: i32,
    #[serde(rename = "match")]
    #[schemars(with = "MatchSpec")]
    pub match_: Spanned<MatchSpec>,
    #[serde(default)]
    pub mode: Mode,
    #[schemars(with = "Option<Placement>")]
    pub placement: Option<Spanned<Placement>>,
    #[serde(default)]
    #[schemars(with = "Vec<TolerationSpec>")]
    pub tolerations: Vec<Spanned<TolerationSpec>>,
    #[schemars(with = "Option<LocalDirs>")]
    pub local_dirs: Option<Spanned<LocalDirs>>,
    #[serde(default)]
    #[schemars(with = "Vec<SecretEnv>")]
    pub secret_env: Vec<Spanned<SecretEnv>>,
    #[schemars(with = "Option<MemoryPolicy>")]
    pub memory: Option<Spanned<MemoryPolicy>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Mode {
    /// Change the pod.
    #[default]
    Enforce,
    /// Report what would change (warnings, annotation) and leave the pod as it is.
    Audit,
    /// Validated but never applied: an example kept for later, or a policy switched off
    /// during an incident without deleting it.
    Off,
}

/// Which pods a policy applies to.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatchSpec {
    /// `driver` also covers SparkConnect servers; `connect-server` names them alone.
    #[schemars(with = "Vec<SparkRole>")]
    pub roles: Spanned<Vec<SparkRole>>,
    /// Namespace names or `*` globs; empty means every namespace.
    #[serde(default)]
    pub namespaces: Vec<NamespacePattern>,
    #[serde(default)]
    pub exclude_namespaces: Vec<NamespacePattern>,
    pub pod_selector: Option<LabelSelector>,
    /// Kubernetes label-selector semantics on the labels of the pod's namespace (the server
    /// reads them from the API; offline, `--namespace-label` or the test case gives them).
    pub namespace_selector: Option<LabelSelector>,
}

/// Kubernetes label-selector semantics: every `matchLabels` entry and every expression must hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<LabelKey, LabelValue>,
    #[serde(default)]
    #[schemars(with = "Vec<SelectorRequirement>")]
    pub match_expressions: Vec<Spanned<SelectorRequirement>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorRequirement {
    pub key: LabelKey,
    pub operator: SelectorOperator,
    #[serde(default)]
    pub values: Vec<LabelValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Capacity {
    Spot,
    OnDemand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Eks,
    Karpenter,
    Gke,
    Aks,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheduling {
    /// nodeSelector or required node affinity: never on the other capacity.
    #[default]
    Required,
    /// Weighted node affinity: falls back to the other capacity when this one is short.
    Preferred,
}

/// What to do when the submitter already set something the policy contradicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Leave the submitter's choice and warn.
    #[default]
    Keep,
    /// Replace the submitter's choice with the policy's.
    Override,
    /// Reject the pod.
    Deny,
}

/// Where a Spark pod may run: spot or on-demand capacity.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placement {
    pub capacity: Capacity,
    /// A platform preset; or give `nodeLabel` for self-managed labels.
    pub provider: Option<Provider>,
    pub node_label: Option<NodeLabel>,
    #[serde(default)]
    pub scheduling: Scheduling,
    /// 1–100, only with `scheduling: preferred` (default 100).
    pub weight: Option<i32>,
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// Self-managed capacity labels, e.g. `node-lifecycle: spot`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeLabel {
    pub key: LabelKey,
    pub spot_value: LabelValue,
    /// Value on on-demand nodes; when absent, "on-demand" means "not labelled spot".
    pub on_demand_value: Option<LabelValue>,
    /// The taint spot nodes carry, tolerated by pods placed on spot.
    pub spot_taint: Option<Taint>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: LabelKey,
    #[serde(default)]
    pub value: Option<LabelValue>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

/// A toleration to add to matching pods.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TolerationSpec {
    pub key: Option<LabelKey>,
    pub operator: Option<TolerationOperator>,
    pub value: Option<LabelValue>,
    pub effect: Option<TaintEffect>,
    pub toleration_seconds: Option<i64>,
}

/// Scratch directories for shuffle and spill.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalDirs {
    #[schemars(with = "Vec<LocalDirVolume>")]
    pub volumes: Spanned<Vec<Spanned<LocalDirVolume>>>,
    /// Also replace local dirs the submitter configured themselves.
    #[serde(default, rename = "override")]
    pub override_submitter: bool,
}

/// One local dir: exactly one volume source, and optionally where to mount it.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocalDirVolume {
    pub host_path: Option<HostPathSource>,
    pub empty_dir: Option<EmptyDirSource>,
    pub ephemeral: Option<EphemeralSource>,
    /// Default: `/var/data/spark-local-dir-N`.
    pub mount_path: Option<AbsolutePath>,
}

/// Where the `n`-th local dir is mounted when a policy gives no `mountPath`.
pub const DEFAULT_LOCAL_DIR_MOUNT_PREFIX: &str = "/var/data/spark-local-dir-";

impl LocalDirVolume {
    /// Where this volume is mounted as the `n`-th (1-based) local dir.
    pub fn mount_path_for(&self, n: u32) -> String {
        self.mount_path
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| format!("{DEFAULT_LOCAL_DIR_MOUNT_PREFIX}{n}"))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPathSource {
    pub path: AbsolutePath,
    /// Kubernetes hostPath type, e.g. `DirectoryOrCreate`.
    #[serde(rename = "type")]
    pub type_: Option<HostPathType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum HostPathType {
    DirectoryOrCreate,
    Directory,
}

impl HostPathType {
    pub fn as_str(self) -> &'static str {
        match self {
            HostPathType::DirectoryOrCreate => "DirectoryOrCreate",
            HostPathType::Directory => "Directory",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmptyDirSource {
    pub medium: Option<EmptyDirMedium>,
    pub size_limit: Option<MemoryQuantity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum EmptyDirMedium {
    Memory,
}

/// A generic ephemeral volume: a PVC created with the pod and deleted with it.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EphemeralSource {
    pub storage_class_name: Option<String>,
    pub size: MemoryQuantity,
    #[serde(default)]
    pub access_modes: Vec<AccessMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadWriteOncePod,
    ReadWriteMany,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
            AccessMode::ReadWriteMany => "ReadWriteMany",
        }
    }
}

/// An env var on the Spark container filled from a Secret key.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretEnv {
    pub name: EnvName,
    pub secret_name: SecretName,
    pub key: SecretKey,
    pub optional: Option<bool>,
    #[serde(default)]
    pub on_conflict: OnConflict,
}

/// Bounds on the memory Spark adds on top of the JVM heap, and on the pod's memory.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemoryPolicy {
    pub overhead: Option<OverheadBounds>,
    pub limit: Option<LimitRule>,
    pub max_pod_memory: Option<MaxPodMemory>,
}

/// The memory above an executor's heap is kept within `[min, min(max, factor × heap)]`
/// (`min` defaults to Spark's own 384Mi): raised to `min` whenever the heap is known, lowered
/// only from Spark's default overhead (see `mutate::memory`). Executors only: a driver's
/// heap is not in its pod.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OverheadBounds {
    pub factor: Option<f64>,
    pub min: Option<MemoryQuantity>,
    pub max: Option<MemoryQuantity>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitRule {
    pub mode: LimitMode,
    pub headroom: Option<MemoryQuantity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum LimitMode {
    /// limit = request (Spark's own choice; Guaranteed memory).
    EqualToRequest,
    /// limit = request + headroom.
    RequestPlusHeadroom,
    /// No memory limit.
    NoLimit,
}

#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MaxPodMemory {
    pub value: MemoryQuantity,
    pub action: MaxAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MaxAction {
    Deny,
    Clamp,
}
