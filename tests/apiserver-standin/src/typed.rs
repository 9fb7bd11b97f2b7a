//! The Pod as the API server holds it: JSON decoded into the Go types of `k8s.io/api/core/v1`
//! (`staging/src/k8s.io/api/core/v1/types.go`) and encoded again by its JSON serializer
//! (`k8s.io/apimachinery/pkg/runtime/serializer/json`, Go's `encoding/json` rules).
//!
//! The API server never forwards a client's bytes: the create body is decoded (unknown fields
//! dropped, wrong types refused), defaulted, run through the in-tree plugins, and the webhook
//! receives `runtime.Encode` of that typed object; a webhook's patched JSON is decoded into the
//! Pod type again (`dispatcher.go`). What that does to the JSON, reproduced here from a table
//! of the Go fields (name, type, pointer or value, `omitempty`):
//! - a value field tagged `omitempty` disappears when zero (`""`, `false`, `0`, an empty list
//!   or map): `value: ""` of an env var, `readOnly: false`, `[]`;
//! - a value struct is always written: `resources: {}` on every container,
//!   `creationTimestamp: null` in metadata, `status: {}`, a quantity struct as `"0"`;
//! - a pointer is written whenever set, even to a zero value (`securityContext: {}`,
//!   `emptyDir: {}`, `automountServiceAccountToken: false`);
//! - quantities are written as `resource.Quantity.MarshalJSON` writes them (`quantity` module).
//!
//! The in-tree volume plugins nobody schedules Spark on (`gcePersistentDisk`, `rbd`, `iscsi`,
//! ... ) and `status` are kept as sent (`Opaque`), and `managedFields` is not computed.

use serde_json::{Map, Value};

use crate::quantity::Quantity;

#[derive(Clone, Copy)]
pub enum Ty {
    Str,
    Bool,
    Int,
    Quantity,
    IntOrStr,
    Time,
    /// Kept as sent.
    Opaque,
    Obj(&'static Struct),
    ObjList(&'static Struct),
    StrList,
    IntList,
    OpaqueList,
    StrMap,
    QuantityMap,
}

/// How Go writes a field: `Ptr` (pointer, `omitempty`: written when set), `Omit` (value,
/// `omitempty`: dropped when zero, structs always written), `Req` (value, always written).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ptr,
    Omit,
    Req,
}

pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub mode: Mode,
}

pub struct Struct {
    pub name: &'static str,
    pub fields: &'static [Field],
}

use Mode::{Omit as O, Ptr as P, Req as R};
use Ty::*;

const fn f(name: &'static str, ty: Ty, mode: Mode) -> Field {
    Field { name, ty, mode }
}

pub static POD: Struct = Struct {
    name: "Pod",
    fields: &[
        f("apiVersion", Str, O),
        f("kind", Str, O),
        f("metadata", Obj(&OBJECT_META), O),
        f("spec", Obj(&POD_SPEC), O),
        f("status", Opaque, R),
    ],
};

static OBJECT_META: Struct = Struct {
    name: "ObjectMeta",
    fields: &[
        f("name", Str, O),
        f("generateName", Str, O),
        f("namespace", Str, O),
        f("selfLink", Str, O),
        f("uid", Str, O),
        f("resourceVersion", Str, O),
        f("generation", Int, O),
        f("creationTimestamp", Time, O),
        f("deletionTimestamp", Time, P),
        f("deletionGracePeriodSeconds", Int, P),
        f("labels", StrMap, O),
        f("annotations", StrMap, O),
        f("ownerReferences", ObjList(&OWNER_REFERENCE), O),
        f("finalizers", StrList, O),
        f("managedFields", OpaqueList, O),
    ],
};

static OWNER_REFERENCE: Struct = Struct {
    name: "OwnerReference",
    fields: &[
        f("apiVersion", Str, R),
        f("kind", Str, R),
        f("name", Str, R),
        f("uid", Str, R),
        f("controller", Bool, P),
        f("blockOwnerDeletion", Bool, P),
    ],
};

static POD_SPEC: Struct = Struct {
    name: "PodSpec",
    fields: &[
        f("volumes", ObjList(&VOLUME), O),
        f("initContainers", ObjList(&CONTAINER), O),
        f("containers", ObjList(&CONTAINER), R),
        f("ephemeralContainers", ObjList(&EPHEMERAL_CONTAINER), O),
        f("restartPolicy", Str, O),
        f("terminationGracePeriodSeconds", Int, P),
        f("activeDeadlineSeconds", Int, P),
        f("dnsPolicy", Str, O),
        f("nodeSelector", StrMap, O),
        f("serviceAccountName", Str, O),
        f("serviceAccount", Str, O),
        f("automountServiceAccountToken", Bool, P),
        f("nodeName", Str, O),
        f("hostNetwork", Bool, O),
        f("hostPID", Bool, O),
        f("hostIPC", Bool, O),
        f("shareProcessNamespace", Bool, P),
        f("securityContext", Obj(&POD_SECURITY_CONTEXT), P),
        f("imagePullSecrets", ObjList(&LOCAL_OBJECT_REFERENCE), O),
        f("hostname", Str, O),
        f("subdomain", Str, O),
        f("affinity", Obj(&AFFINITY), P),
        f("schedulerName", Str, O),
        f("tolerations", ObjList(&TOLERATION), O),
        f("hostAliases", ObjList(&HOST_ALIAS), O),
        f("priorityClassName", Str, O),
        f("priority", Int, P),
        f("dnsConfig", Obj(&POD_DNS_CONFIG), P),
        f("readinessGates", ObjList(&POD_READINESS_GATE), O),
        f("runtimeClassName", Str, P),
        f("enableServiceLinks", Bool, P),
        f("preemptionPolicy", Str, P),
        f("overhead", QuantityMap, O),
        f(
            "topologySpreadConstraints",
            ObjList(&TOPOLOGY_SPREAD_CONSTRAINT),
            O,
        ),
        f("setHostnameAsFQDN", Bool, P),
        f("os", Obj(&NAME_ONLY), P),
        f("hostUsers", Bool, P),
        f("schedulingGates", ObjList(&NAME_ONLY), O),
        f("resourceClaims", ObjList(&POD_RESOURCE_CLAIM), O),
        f("resources", Obj(&RESOURCE_REQUIREMENTS), P),
    ],
};

macro_rules! container_fields {
    ($($extra:expr),*) => {
        &[
            f("name", Str, R),
            f("image", Str, O),
            f("command", StrList, O),
            f("args", StrList, O),
            f("workingDir", Str, O),
            f("ports", ObjList(&CONTAINER_PORT), O),
            f("envFrom", ObjList(&ENV_FROM_SOURCE), O),
            f("env", ObjList(&ENV_VAR), O),
            f("resources", Obj(&RESOURCE_REQUIREMENTS), O),
            f("resizePolicy", ObjList(&CONTAINER_RESIZE_POLICY), O),
            f("restartPolicy", Str, P),
            f("volumeMounts", ObjList(&VOLUME_MOUNT), O),
            f("volumeDevices", ObjList(&VOLUME_DEVICE), O),
            f("livenessProbe", Obj(&PROBE), P),
            f("readinessProbe", Obj(&PROBE), P),
            f("startupProbe", Obj(&PROBE), P),
            f("lifecycle", Obj(&LIFECYCLE), P),
            f("terminationMessagePath", Str, O),
            f("terminationMessagePolicy", Str, O),
            f("imagePullPolicy", Str, O),
            f("securityContext", Obj(&SECURITY_CONTEXT), P),
            f("stdin", Bool, O),
            f("stdinOnce", Bool, O),
            f("tty", Bool, O),
            $($extra),*
        ]
    };
}

static CONTAINER: Struct = Struct {
    name: "Container",
    fields: container_fields!(),
};

static EPHEMERAL_CONTAINER: Struct = Struct {
    name: "EphemeralContainer",
    fields: container_fields!(f("targetContainerName", Str, O)),
};

static CONTAINER_PORT: Struct = Struct {
    name: "ContainerPort",
    fields: &[
        f("name", Str, O),
        f("hostPort", Int, O),
        f("containerPort", Int, R),
        f("protocol", Str, O),
        f("hostIP", Str, O),
    ],
};

static ENV_VAR: Struct = Struct {
    name: "EnvVar",
    fields: &[
        f("name", Str, R),
        f("value", Str, O),
        f("valueFrom", Obj(&ENV_VAR_SOURCE), P),
    ],
};

static ENV_VAR_SOURCE: Struct = Struct {
    name: "EnvVarSource",
    fields: &[
        f("fieldRef", Obj(&OBJECT_FIELD_SELECTOR), P),
        f("resourceFieldRef", Obj(&RESOURCE_FIELD_SELECTOR), P),
        f("configMapKeyRef", Obj(&KEY_SELECTOR), P),
        f("secretKeyRef", Obj(&KEY_SELECTOR), P),
    ],
};

static OBJECT_FIELD_SELECTOR: Struct = Struct {
    name: "ObjectFieldSelector",
    fields: &[f("apiVersion", Str, O), f("fieldPath", Str, R)],
};

static RESOURCE_FIELD_SELECTOR: Struct = Struct {
    name: "ResourceFieldSelector",
    fields: &[
        f("containerName", Str, O),
        f("resource", Str, R),
        f("divisor", Quantity, O),
    ],
};

/// `ConfigMapKeySelector` and `SecretKeySelector` (same fields).
static KEY_SELECTOR: Struct = Struct {
    name: "SecretKeySelector",
    fields: &[f("name", Str, O), f("key", Str, R), f("optional", Bool, P)],
};

static ENV_FROM_SOURCE: Struct = Struct {
    name: "EnvFromSource",
    fields: &[
        f("prefix", Str, O),
        f("configMapRef", Obj(&OPTIONAL_REFERENCE), P),
        f("secretRef", Obj(&OPTIONAL_REFERENCE), P),
    ],
};

static OPTIONAL_REFERENCE: Struct = Struct {
    name: "SecretEnvSource",
    fields: &[f("name", Str, O), f("optional", Bool, P)],
};

static RESOURCE_REQUIREMENTS: Struct = Struct {
    name: "ResourceRequirements",
    fields: &[
        f("limits", QuantityMap, O),
        f("requests", QuantityMap, O),
        f("claims", ObjList(&RESOURCE_CLAIM), O),
    ],
};

static RESOURCE_CLAIM: Struct = Struct {
    name: "ResourceClaim",
    fields: &[f("name", Str, R), f("request", Str, O)],
};

static CONTAINER_RESIZE_POLICY: Struct = Struct {
    name: "ContainerResizePolicy",
    fields: &[f("resourceName", Str, R), f("restartPolicy", Str, R)],
};

static VOLUME_MOUNT: Struct = Struct {
    name: "VolumeMount",
    fields: &[
        f("name", Str, R),
        f("readOnly", Bool, O),
        f("recursiveReadOnly", Str, P),
        f("mountPath", Str, R),
        f("subPath", Str, O),
        f("mountPropagation", Str, P),
        f("subPathExpr", Str, O),
    ],
};

static VOLUME_DEVICE: Struct = Struct {
    name: "VolumeDevice",
    fields: &[f("name", Str, R), f("devicePath", Str, R)],
};

static PROBE: Struct = Struct {
    name: "Probe",
    fields: &[
        f("exec", Obj(&EXEC_ACTION), P),
        f("httpGet", Obj(&HTTP_GET_ACTION), P),
        f("tcpSocket", Obj(&TCP_SOCKET_ACTION), P),
        f("grpc", Obj(&GRPC_ACTION), P),
        f("initialDelaySeconds", Int, O),
        f("timeoutSeconds", Int, O),
        f("periodSeconds", Int, O),
        f("successThreshold", Int, O),
        f("failureThreshold", Int, O),
        f("terminationGracePeriodSeconds", Int, P),
    ],
};

static EXEC_ACTION: Struct = Struct {
    name: "ExecAction",
    fields: &[f("command", StrList, O)],
};

static HTTP_GET_ACTION: Struct = Struct {
    name: "HTTPGetAction",
    fields: &[
        f("path", Str, O),
        f("port", IntOrStr, R),
        f("host", Str, O),
        f("scheme", Str, O),
        f("httpHeaders", ObjList(&NAME_VALUE), O),
    ],
};

static TCP_SOCKET_ACTION: Struct = Struct {
    name: "TCPSocketAction",
    fields: &[f("port", IntOrStr, R), f("host", Str, O)],
};

static GRPC_ACTION: Struct = Struct {
    name: "GRPCAction",
    fields: &[f("port", Int, R), f("service", Str, P)],
};

/// `HTTPHeader`, `Sysctl`: both fields required.
static NAME_VALUE: Struct = Struct {
    name: "HTTPHeader",
    fields: &[f("name", Str, R), f("value", Str, R)],
};

static LIFECYCLE: Struct = Struct {
    name: "Lifecycle",
    fields: &[
        f("postStart", Obj(&LIFECYCLE_HANDLER), P),
        f("preStop", Obj(&LIFECYCLE_HANDLER), P),
        f("stopSignal", Str, P),
    ],
};

static LIFECYCLE_HANDLER: Struct = Struct {
    name: "LifecycleHandler",
    fields: &[
        f("exec", Obj(&EXEC_ACTION), P),
        f("httpGet", Obj(&HTTP_GET_ACTION), P),
        f("tcpSocket", Obj(&TCP_SOCKET_ACTION), P),
        f("sleep", Obj(&SLEEP_ACTION), P),
    ],
};

static SLEEP_ACTION: Struct = Struct {
    name: "SleepAction",
    fields: &[f("seconds", Int, R)],
};

static SECURITY_CONTEXT: Struct = Struct {
    name: "SecurityContext",
    fields: &[
        f("capabilities", Obj(&CAPABILITIES), P),
        f("privileged", Bool, P),
        f("seLinuxOptions", Obj(&SE_LINUX_OPTIONS), P),
        f("windowsOptions", Obj(&WINDOWS_OPTIONS), P),
        f("runAsUser", Int, P),
        f("runAsGroup", Int, P),
        f("runAsNonRoot", Bool, P),
        f("readOnlyRootFilesystem", Bool, P),
        f("allowPrivilegeEscalation", Bool, P),
        f("procMount", Str, P),
        f("seccompProfile", Obj(&PROFILE), P),
        f("appArmorProfile", Obj(&PROFILE), P),
    ],
};

static POD_SECURITY_CONTEXT: Struct = Struct {
    name: "PodSecurityContext",
    fields: &[
        f("seLinuxOptions", Obj(&SE_LINUX_OPTIONS), P),
        f("windowsOptions", Obj(&WINDOWS_OPTIONS), P),
        f("runAsUser", Int, P),
        f("runAsGroup", Int, P),
        f("runAsNonRoot", Bool, P),
        f("supplementalGroups", IntList, O),
        f("supplementalGroupsPolicy", Str, P),
        f("fsGroup", Int, P),
        f("sysctls", ObjList(&NAME_VALUE), O),
        f("fsGroupChangePolicy", Str, P),
        f("seccompProfile", Obj(&PROFILE), P),
        f("appArmorProfile", Obj(&PROFILE), P),
        f("seLinuxChangePolicy", Str, P),
    ],
};

static CAPABILITIES: Struct = Struct {
    name: "Capabilities",
    fields: &[f("add", StrList, O), f("drop", StrList, O)],
};

static SE_LINUX_OPTIONS: Struct = Struct {
    name: "SELinuxOptions",
    fields: &[
        f("user", Str, O),
        f("role", Str, O),
        f("type", Str, O),
        f("level", Str, O),
    ],
};

static WINDOWS_OPTIONS: Struct = Struct {
    name: "WindowsSecurityContextOptions",
    fields: &[
        f("gmsaCredentialSpecName", Str, P),
        f("gmsaCredentialSpec", Str, P),
        f("runAsUserName", Str, P),
        f("hostProcess", Bool, P),
    ],
};

/// `SeccompProfile`, `AppArmorProfile`.
static PROFILE: Struct = Struct {
    name: "SeccompProfile",
    fields: &[f("type", Str, R), f("localhostProfile", Str, P)],
};

static AFFINITY: Struct = Struct {
    name: "Affinity",
    fields: &[
        f("nodeAffinity", Obj(&NODE_AFFINITY), P),
        f("podAffinity", Obj(&POD_AFFINITY), P),
        f("podAntiAffinity", Obj(&POD_AFFINITY), P),
    ],
};

static NODE_AFFINITY: Struct = Struct {
    name: "NodeAffinity",
    fields: &[
        f(
            "requiredDuringSchedulingIgnoredDuringExecution",
            Obj(&NODE_SELECTOR),
            P,
        ),
        f(
            "preferredDuringSchedulingIgnoredDuringExecution",
            ObjList(&PREFERRED_SCHEDULING_TERM),
            O,
        ),
    ],
};

static NODE_SELECTOR: Struct = Struct {
    name: "NodeSelector",
    fields: &[f("nodeSelectorTerms", ObjList(&NODE_SELECTOR_TERM), R)],
};

static NODE_SELECTOR_TERM: Struct = Struct {
    name: "NodeSelectorTerm",
    fields: &[
        f("matchExpressions", ObjList(&SELECTOR_REQUIREMENT), O),
        f("matchFields", ObjList(&SELECTOR_REQUIREMENT), O),
    ],
};

/// `NodeSelectorRequirement`, `LabelSelectorRequirement`.
static SELECTOR_REQUIREMENT: Struct = Struct {
    name: "NodeSelectorRequirement",
    fields: &[
        f("key", Str, R),
        f("operator", Str, R),
        f("values", StrList, O),
    ],
};

static PREFERRED_SCHEDULING_TERM: Struct = Struct {
    name: "PreferredSchedulingTerm",
    fields: &[
        f("weight", Int, R),
        f("preference", Obj(&NODE_SELECTOR_TERM), R),
    ],
};

static POD_AFFINITY: Struct = Struct {
    name: "PodAffinity",
    fields: &[
        f(
            "requiredDuringSchedulingIgnoredDuringExecution",
            ObjList(&POD_AFFINITY_TERM),
            O,
        ),
        f(
            "preferredDuringSchedulingIgnoredDuringExecution",
            ObjList(&WEIGHTED_POD_AFFINITY_TERM),
            O,
        ),
    ],
};

static POD_AFFINITY_TERM: Struct = Struct {
    name: "PodAffinityTerm",
    fields: &[
        f("labelSelector", Obj(&LABEL_SELECTOR), P),
        f("namespaces", StrList, O),
        f("topologyKey", Str, R),
        f("namespaceSelector", Obj(&LABEL_SELECTOR), P),
        f("matchLabelKeys", StrList, O),
        f("mismatchLabelKeys", StrList, O),
    ],
};

static WEIGHTED_POD_AFFINITY_TERM: Struct = Struct {
    name: "WeightedPodAffinityTerm",
    fields: &[
        f("weight", Int, R),
        f("podAffinityTerm", Obj(&POD_AFFINITY_TERM), R),
    ],
};

static LABEL_SELECTOR: Struct = Struct {
    name: "LabelSelector",
    fields: &[
        f("matchLabels", StrMap, O),
        f("matchExpressions", ObjList(&SELECTOR_REQUIREMENT), O),
    ],
};

static TOLERATION: Struct = Struct {
    name: "Toleration",
    fields: &[
        f("key", Str, O),
        f("operator", Str, O),
        f("value", Str, O),
        f("effect", Str, O),
        f("tolerationSeconds", Int, P),
    ],
};

static HOST_ALIAS: Struct = Struct {
    name: "HostAlias",
    fields: &[f("ip", Str, R), f("hostnames", StrList, O)],
};

static POD_DNS_CONFIG: Struct = Struct {
    name: "PodDNSConfig",
    fields: &[
        f("nameservers", StrList, O),
        f("searches", StrList, O),
        f("options", ObjList(&POD_DNS_CONFIG_OPTION), O),
    ],
};

static POD_DNS_CONFIG_OPTION: Struct = Struct {
    name: "PodDNSConfigOption",
    fields: &[f("name", Str, O), f("value", Str, P)],
};

static POD_READINESS_GATE: Struct = Struct {
    name: "PodReadinessGate",
    fields: &[f("conditionType", Str, R)],
};

static TOPOLOGY_SPREAD_CONSTRAINT: Struct = Struct {
    name: "TopologySpreadConstraint",
    fields: &[
        f("maxSkew", Int, R),
        f("topologyKey", Str, R),
        f("whenUnsatisfiable", Str, R),
        f("labelSelector", Obj(&LABEL_SELECTOR), P),
        f("minDomains", Int, P),
        f("nodeAffinityPolicy", Str, P),
        f("nodeTaintsPolicy", Str, P),
        f("matchLabelKeys", StrList, O),
    ],
};

/// `PodOS`, `PodSchedulingGate`.
static NAME_ONLY: Struct = Struct {
    name: "PodOS",
    fields: &[f("name", Str, R)],
};

static POD_RESOURCE_CLAIM: Struct = Struct {
    name: "PodResourceClaim",
    fields: &[
        f("name", Str, R),
        f("resourceClaimName", Str, P),
        f("resourceClaimTemplateName", Str, P),
    ],
};

static LOCAL_OBJECT_REFERENCE: Struct = Struct {
    name: "LocalObjectReference",
    fields: &[f("name", Str, O)],
};

/// The volume sources, in `VolumeSource` order (the order validation counts them in).
pub static VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

static VOLUME: Struct = Struct {
    name: "Volume",
    fields: &[
        f("name", Str, R),
        f("hostPath", Obj(&HOST_PATH), P),
        f("emptyDir", Obj(&EMPTY_DIR), P),
        f("gcePersistentDisk", Opaque, P),
        f("awsElasticBlockStore", Opaque, P),
        f("gitRepo", Opaque, P),
        f("secret", Obj(&SECRET_VOLUME), P),
        f("nfs", Obj(&NFS), P),
        f("iscsi", Opaque, P),
        f("glusterfs", Opaque, P),
        f("persistentVolumeClaim", Obj(&PVC_VOLUME), P),
        f("rbd", Opaque, P),
        f("flexVolume", Opaque, P),
        f("cinder", Opaque, P),
        f("cephfs", Opaque, P),
        f("flocker", Opaque, P),
        f("downwardAPI", Obj(&DOWNWARD_API_VOLUME), P),
        f("fc", Opaque, P),
        f("azureFile", Opaque, P),
        f("configMap", Obj(&CONFIG_MAP_VOLUME), P),
        f("vsphereVolume", Opaque, P),
        f("quobyte", Opaque, P),
        f("azureDisk", Opaque, P),
        f("photonPersistentDisk", Opaque, P),
        f("projected", Obj(&PROJECTED_VOLUME), P),
        f("portworxVolume", Opaque, P),
        f("scaleIO", Opaque, P),
        f("storageos", Opaque, P),
        f("csi", Obj(&CSI_VOLUME), P),
        f("ephemeral", Obj(&EPHEMERAL_VOLUME), P),
        f("image", Obj(&IMAGE_VOLUME), P),
    ],
};

static HOST_PATH: Struct = Struct {
    name: "HostPathVolumeSource",
    fields: &[f("path", Str, R), f("type", Str, P)],
};

static EMPTY_DIR: Struct = Struct {
    name: "EmptyDirVolumeSource",
    fields: &[f("medium", Str, O), f("sizeLimit", Quantity, P)],
};

static SECRET_VOLUME: Struct = Struct {
    name: "SecretVolumeSource",
    fields: &[
        f("secretName", Str, O),
        f("items", ObjList(&KEY_TO_PATH), O),
        f("defaultMode", Int, P),
        f("optional", Bool, P),
    ],
};

static KEY_TO_PATH: Struct = Struct {
    name: "KeyToPath",
    fields: &[f("key", Str, R), f("path", Str, R), f("mode", Int, P)],
};

static NFS: Struct = Struct {
    name: "NFSVolumeSource",
    fields: &[
        f("server", Str, R),
        f("path", Str, R),
        f("readOnly", Bool, O),
    ],
};

static PVC_VOLUME: Struct = Struct {
    name: "PersistentVolumeClaimVolumeSource",
    fields: &[f("claimName", Str, R), f("readOnly", Bool, O)],
};

static DOWNWARD_API_VOLUME: Struct = Struct {
    name: "DownwardAPIVolumeSource",
    fields: &[
        f("items", ObjList(&DOWNWARD_API_FILE), O),
        f("defaultMode", Int, P),
    ],
};

static DOWNWARD_API_FILE: Struct = Struct {
    name: "DownwardAPIVolumeFile",
    fields: &[
        f("path", Str, R),
        f("fieldRef", Obj(&OBJECT_FIELD_SELECTOR), P),
        f("resourceFieldRef", Obj(&RESOURCE_FIELD_SELECTOR), P),
        f("mode", Int, P),
    ],
};

static CONFIG_MAP_VOLUME: Struct = Struct {
    name: "ConfigMapVolumeSource",
    fields: &[
        f("name", Str, O),
        f("items", ObjList(&KEY_TO_PATH), O),
        f("defaultMode", Int, P),
        f("optional", Bool, P),
    ],
};

static PROJECTED_VOLUME: Struct = Struct {
    name: "ProjectedVolumeSource",
    fields: &[
        f("sources", ObjList(&VOLUME_PROJECTION), R),
        f("defaultMode", Int, P),
    ],
};

static VOLUME_PROJECTION: Struct = Struct {
    name: "VolumeProjection",
    fields: &[
        f("secret", Obj(&KEYS_PROJECTION), P),
        f("downwardAPI", Obj(&DOWNWARD_API_PROJECTION), P),
        f("configMap", Obj(&KEYS_PROJECTION), P),
        f("serviceAccountToken", Obj(&SA_TOKEN_PROJECTION), P),
        f(
            "clusterTrustBundle",
            Obj(&CLUSTER_TRUST_BUNDLE_PROJECTION),
            P,
        ),
    ],
};

/// `SecretProjection`, `ConfigMapProjection`.
static KEYS_PROJECTION: Struct = Struct {
    name: "ConfigMapProjection",
    fields: &[
        f("name", Str, O),
        f("items", ObjList(&KEY_TO_PATH), O),
        f("optional", Bool, P),
    ],
};

static DOWNWARD_API_PROJECTION: Struct = Struct {
    name: "DownwardAPIProjection",
    fields: &[f("items", ObjList(&DOWNWARD_API_FILE), O)],
};

static SA_TOKEN_PROJECTION: Struct = Struct {
    name: "ServiceAccountTokenProjection",
    fields: &[
        f("audience", Str, O),
        f("expirationSeconds", Int, P),
        f("path", Str, R),
    ],
};

static CLUSTER_TRUST_BUNDLE_PROJECTION: Struct = Struct {
    name: "ClusterTrustBundleProjection",
    fields: &[
        f("name", Str, P),
        f("signerName", Str, P),
        f("labelSelector", Obj(&LABEL_SELECTOR), P),
        f("optional", Bool, P),
        f("path", Str, R),
    ],
};

static CSI_VOLUME: Struct = Struct {
    name: "CSIVolumeSource",
    fields: &[
        f("driver", Str, R),
        f("readOnly", Bool, P),
        f("fsType", Str, P),
        f("volumeAttributes", StrMap, O),
        f("nodePublishSecretRef", Obj(&LOCAL_OBJECT_REFERENCE), P),
    ],
};

static EPHEMERAL_VOLUME: Struct = Struct {
    name: "EphemeralVolumeSource",
    fields: &[f("volumeClaimTemplate", Obj(&PVC_TEMPLATE), P)],
};

static PVC_TEMPLATE: Struct = Struct {
    name: "PersistentVolumeClaimTemplate",
    fields: &[
        f("metadata", Obj(&OBJECT_META), O),
        f("spec", Obj(&PVC_SPEC), R),
    ],
};

static PVC_SPEC: Struct = Struct {
    name: "PersistentVolumeClaimSpec",
    fields: &[
        f("accessModes", StrList, O),
        f("selector", Obj(&LABEL_SELECTOR), P),
        f("resources", Obj(&VOLUME_RESOURCE_REQUIREMENTS), O),
        f("volumeName", Str, O),
        f("storageClassName", Str, P),
        f("volumeMode", Str, P),
        f("dataSource", Obj(&TYPED_OBJECT_REFERENCE), P),
        f("dataSourceRef", Obj(&TYPED_OBJECT_REFERENCE), P),
        f("volumeAttributesClassName", Str, P),
    ],
};

static VOLUME_RESOURCE_REQUIREMENTS: Struct = Struct {
    name: "VolumeResourceRequirements",
    fields: &[f("limits", QuantityMap, O), f("requests", QuantityMap, O)],
};

/// `TypedLocalObjectReference`, `TypedObjectReference`.
static TYPED_OBJECT_REFERENCE: Struct = Struct {
    name: "TypedObjectReference",
    fields: &[
        f("apiGroup", Str, P),
        f("kind", Str, R),
        f("name", Str, R),
        f("namespace", Str, P),
    ],
};

static IMAGE_VOLUME: Struct = Struct {
    name: "ImageVolumeSource",
    fields: &[f("reference", Str, O), f("pullPolicy", Str, O)],
};

/// A decode error, worded as Go's `encoding/json` words a type mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

/// The result of decoding and re-encoding: the typed JSON and the fields the decoder dropped.
pub struct Typed {
    pub value: Value,
    /// `spec.containers[0].foo`: what `fieldValidation=Warn` reports as `unknown field`.
    pub unknown: Vec<String>,
}

/// Decodes JSON into the Pod type and encodes it back as the API server's serializer would.
pub fn pod(v: &Value) -> Result<Typed, DecodeError> {
    let mut ctx = Ctx::default();
    if !v.is_object() {
        return Err(DecodeError(format!(
            "json: cannot unmarshal {} into Go value of type v1.Pod",
            json_kind(v)
        )));
    }
    let mut value = ctx.obj(&POD, v, "")?;
    value["apiVersion"] = Value::from("v1");
    value["kind"] = Value::from("Pod");
    if !value["status"].is_object() {
        value["status"] = Value::Object(Map::new());
    }
    Ok(Typed {
        value,
        unknown: ctx.unknown,
    })
}

#[derive(Default)]
struct Ctx {
    unknown: Vec<String>,
}

/// The JSON type as Go's decoder names it in its errors.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn go_type(ty: Ty) -> String {
    match ty {
        Str => "string".into(),
        Bool => "bool".into(),
        Int => "int64".into(),
        Quantity => "resource.Quantity".into(),
        IntOrStr => "intstr.IntOrString".into(),
        Time => "v1.Time".into(),
        Opaque => "interface {}".into(),
        Obj(s) => format!("v1.{}", s.name),
        ObjList(s) => format!("[]v1.{}", s.name),
        StrList => "[]string".into(),
        IntList => "[]int64".into(),
        OpaqueList => "[]interface {}".into(),
        StrMap => "map[string]string".into(),
        QuantityMap => "v1.ResourceList".into(),
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// A decoded value, its encoding, and whether Go would consider it zero (for `omitempty`).
struct Decoded {
    json: Value,
    zero: bool,
}

impl Ctx {
    fn mismatch(v: &Value, owner: &str, path: &str, ty: Ty) -> DecodeError {
        // Go names the innermost struct and the field path without indices.
        let dotted: String = path
            .split('.')
            .map(|p| p.split('[').next().unwrap_or(p))
            .collect::<Vec<_>>()
            .join(".");
        DecodeError(format!(
            "json: cannot unmarshal {} into Go struct field {owner}.{dotted} of type {}",
            json_kind(v),
            go_type(ty)
        ))
    }

    fn obj(&mut self, s: &Struct, v: &Value, path: &str) -> Result<Value, DecodeError> {
        let empty = Map::new();
        let input = v.as_object().unwrap_or(&empty);
        for k in input.keys() {
            if !s.fields.iter().any(|f| f.name == k) {
                self.unknown.push(child(path, k));
            }
        }
        let mut out = Map::new();
        for field in s.fields {
            let fpath = child(path, field.name);
            let given = input.get(field.name).filter(|v| !v.is_null());
            let emitted = match (field.mode, given) {
                (Mode::Ptr, None) => None,
                (Mode::Ptr, Some(v)) => Some(self.value(field.ty, v, s.name, &fpath)?.json),
                (mode, given) => {
                    let d = match given {
                        Some(v) => self.value(field.ty, v, s.name, &fpath)?,
                        None => self.zero(field.ty, &fpath)?,
                    };
                    (mode == Mode::Req || !d.zero).then_some(d.json)
                }
            };
            if let Some(json) = emitted {
                out.insert(field.name.to_string(), json);
            }
        }
        Ok(Value::Object(out))
    }

    /// The zero value of a type, as written when the field is not `omitempty` (or a struct).
    fn zero(&mut self, ty: Ty, path: &str) -> Result<Decoded, DecodeError> {
        let json = match ty {
            Str => Value::from(""),
            Bool => Value::Bool(false),
            Int | IntOrStr => Value::from(0),
            Quantity => Value::from("0"),
            Obj(s) => {
                let v = self.obj(s, &Value::Null, path)?;
                // A struct is never "empty" for omitempty.
                return Ok(Decoded {
                    json: v,
                    zero: false,
                });
            }
            Time | Opaque | ObjList(_) | StrList | IntList | OpaqueList | StrMap | QuantityMap => {
                Value::Null
            }
        };
        let zero = !matches!(ty, Quantity | IntOrStr | Time);
        Ok(Decoded { json, zero })
    }

    fn value(
        &mut self,
        ty: Ty,
        v: &Value,
        owner: &str,
        path: &str,
    ) -> Result<Decoded, DecodeError> {
        let bad = || Self::mismatch(v, owner, path, ty);
        Ok(match ty {
            Str => {
                let s = v.as_str().ok_or_else(bad)?;
                Decoded {
                    json: Value::from(s),
                    zero: s.is_empty(),
                }
            }
            Bool => {
                let b = v.as_bool().ok_or_else(bad)?;
                Decoded {
                    json: Value::Bool(b),
                    zero: !b,
                }
            }
            Int => {
                let n = v.as_i64().ok_or_else(bad)?;
                Decoded {
                    json: Value::from(n),
                    zero: n == 0,
                }
            }
            IntOrStr => match v {
                Value::String(_) => Decoded {
                    json: v.clone(),
                    zero: false,
                },
                Value::Number(n) if n.is_i64() => Decoded {
                    json: v.clone(),
                    zero: false,
                },
                _ => return Err(bad()),
            },
            Quantity => Decoded {
                json: Value::from(quantity(v).map_err(DecodeError)?.serialize()),
                zero: false,
            },
            Time => Decoded {
                json: Value::from(v.as_str().ok_or_else(bad)?),
                zero: false,
            },
            Opaque => Decoded {
                json: v.clone(),
                zero: false,
            },
            Obj(s) => {
                if !v.is_object() {
                    return Err(bad());
                }
                Decoded {
                    json: self.obj(s, v, path)?,
                    zero: false,
                }
            }
            ObjList(s) => self.list(v, owner, path, ty, |ctx, item, p| {
                if !item.is_object() {
                    return Err(Self::mismatch(item, owner, p, Obj(s)));
                }
                ctx.obj(s, item, p)
            })?,
            StrList | IntList | OpaqueList => {
                let elem = match ty {
                    StrList => Str,
                    IntList => Int,
                    _ => Opaque,
                };
                self.list(v, owner, path, ty, |ctx, item, p| {
                    ctx.value(elem, item, owner, p).map(|d| d.json)
                })?
            }
            StrMap | QuantityMap => {
                let m = v.as_object().ok_or_else(bad)?;
                let mut out = Map::new();
                for (k, item) in m {
                    let p = format!("{path}[{k}]");
                    let json = if matches!(ty, StrMap) {
                        // A null map value decodes as "".
                        if item.is_null() {
                            Value::from("")
                        } else {
                            self.value(Str, item, owner, &p)?.json
                        }
                    } else {
                        self.value(Quantity, item, owner, &p)?.json
                    };
                    out.insert(k.clone(), json);
                }
                Decoded {
                    zero: out.is_empty(),
                    json: Value::Object(out),
                }
            }
        })
    }

    fn list(
        &mut self,
        v: &Value,
        owner: &str,
        path: &str,
        ty: Ty,
        mut item: impl FnMut(&mut Ctx, &Value, &str) -> Result<Value, DecodeError>,
    ) -> Result<Decoded, DecodeError> {
        let a = v
            .as_array()
            .ok_or_else(|| Self::mismatch(v, owner, path, ty))?;
        let mut out = Vec::with_capacity(a.len());
        for (i, x) in a.iter().enumerate() {
            out.push(item(self, x, &format!("{path}[{i}]"))?);
        }
        Ok(Decoded {
            zero: out.is_empty(),
            json: Value::Array(out),
        })
    }
}

/// v1 → internal (`pkg/apis/core/v1/conversion.go`): the internal PodSpec has no
/// `serviceAccount`; v1's is read as an alias of `serviceAccountName` when that is empty.
pub fn to_internal(pod: &mut Value) {
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        let alias = spec.remove("serviceAccount");
        let empty = spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if let (true, Some(a)) = (empty, alias) {
            spec.insert("serviceAccountName".into(), a);
        }
    }
}

/// internal → v1: `serviceAccount` is written as a copy of `serviceAccountName`.
pub fn to_versioned(pod: &mut Value) {
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        match spec.get("serviceAccountName").cloned() {
            Some(Value::String(n)) if !n.is_empty() => {
                spec.insert("serviceAccount".into(), Value::String(n));
            }
            _ => {
                spec.remove("serviceAccount");
            }
        }
    }
}

/// A quantity as `Quantity.UnmarshalJSON` reads it: a string, or a bare JSON number.
pub fn quantity(v: &Value) -> Result<Quantity, String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type resource.Quantity",
                json_kind(other)
            ))
        }
    };
    Quantity::parse(&s).map_err(str::to_string)
}

/// `equality.Semantic.DeepEqual` on two typed pods: quantities compare by value, an empty
/// list equals an absent one.
pub fn semantic_eq(a: &Value, b: &Value) -> bool {
    eq_obj(&POD, a, b)
}

fn eq_obj(s: &Struct, a: &Value, b: &Value) -> bool {
    let (a_keys, b_keys): (Vec<&String>, Vec<&String>) = (
        a.as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default(),
        b.as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default(),
    );
    // Keys outside the table (none after decoding) compare as plain JSON.
    for k in a_keys.iter().chain(b_keys.iter()) {
        if !s.fields.iter().any(|f| f.name == k.as_str()) && a[k.as_str()] != b[k.as_str()] {
            return false;
        }
    }
    s.fields
        .iter()
        .all(|f| eq_value(f.ty, &a[f.name], &b[f.name]))
}

fn eq_value(ty: Ty, a: &Value, b: &Value) -> bool {
    let empty = |v: &Value| {
        v.is_null()
            || v.as_array().is_some_and(Vec::is_empty)
            || (matches!(ty, StrMap | QuantityMap) && v.as_object().is_some_and(Map::is_empty))
    };
    match ty {
        Quantity => match (quantity(a), quantity(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        Obj(s) => {
            if a.is_null() || b.is_null() {
                return a.is_null() && b.is_null();
            }
            eq_obj(s, a, b)
        }
        ObjList(s) => {
            if empty(a) || empty(b) {
                return empty(a) && empty(b);
            }
            match (a.as_array(), b.as_array()) {
                (Some(x), Some(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq_obj(s, p, q))
                }
                _ => a == b,
            }
        }
        QuantityMap => {
            if empty(a) || empty(b) {
                return empty(a) && empty(b);
            }
            match (a.as_object(), b.as_object()) {
                (Some(x), Some(y)) => {
                    x.len() == y.len()
                        && x.iter()
                            .all(|(k, v)| y.get(k).is_some_and(|w| eq_value(Quantity, v, w)))
                }
                _ => a == b,
            }
        }
        StrList | IntList | OpaqueList | StrMap => {
            if empty(a) || empty(b) {
                return empty(a) && empty(b);
            }
            a == b
        }
        Str | Bool | Int | IntOrStr | Time | Opaque => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn typed(v: Value) -> Value {
        pod(&v).unwrap().value
    }

    #[test]
    fn the_webhook_sees_go_encoding_not_the_clients_bytes() {
        let sent = json!({
            "metadata": {"name": "p", "labels": {}, "annotations": {"a": "b"}},
            "spec": {
                "containers": [{
                    "name": "c", "image": "i:1",
                    "resources": {"requests": {"memory": "2048Mi", "cpu": "1000m"}, "limits": {"memory": 2147483648u64}},
                    "env": [{"name": "E", "value": ""}, {"name": "F", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}],
                    "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": false}],
                    "ports": [],
                    "unknownField": 1
                }, {"name": "side", "image": "s"}],
                "volumes": [{"name": "v", "emptyDir": {}}, {"name": "w", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "200Gi"}}}}}}],
                "automountServiceAccountToken": false,
                "hostNetwork": false,
                "tolerations": []
            }
        });
        let t = pod(&sent).unwrap();
        let p = &t.value;
        assert_eq!(p["apiVersion"], "v1");
        assert_eq!(p["kind"], "Pod");
        assert_eq!(p["status"], json!({}));
        assert_eq!(p["metadata"]["creationTimestamp"], Value::Null);
        assert!(p["metadata"]
            .as_object()
            .unwrap()
            .contains_key("creationTimestamp"));
        assert!(p["metadata"].get("labels").is_none(), "empty map dropped");
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["resources"]["requests"]["memory"], "2Gi");
        assert_eq!(c["resources"]["requests"]["cpu"], "1");
        assert_eq!(
            c["resources"]["limits"]["memory"], "2147483648",
            "a bare number is DecimalSI"
        );
        assert_eq!(c["env"][0], json!({"name": "E"}), "empty value dropped");
        assert_eq!(
            c["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"], "0",
            "a value struct is always written"
        );
        assert_eq!(
            c["volumeMounts"][0],
            json!({"name": "v", "mountPath": "/v"})
        );
        assert!(c.get("ports").is_none());
        assert!(c.get("unknownField").is_none());
        assert_eq!(p["spec"]["containers"][1]["resources"], json!({}));
        assert_eq!(
            p["spec"]["volumes"][0]["emptyDir"],
            json!({}),
            "pointer kept"
        );
        assert_eq!(
            p["spec"]["volumes"][1]["ephemeral"]["volumeClaimTemplate"]["metadata"],
            json!({"creationTimestamp": null})
        );
        assert_eq!(p["spec"]["automountServiceAccountToken"], false);
        assert!(p["spec"].get("hostNetwork").is_none());
        assert!(p["spec"].get("tolerations").is_none());
        assert_eq!(
            t.unknown,
            vec!["spec.containers[0].unknownField".to_string()]
        );
        // Encoding is stable: decoding its own output changes nothing.
        assert_eq!(typed(p.clone()), *p);
    }

    #[test]
    fn wrong_types_and_bad_quantities_do_not_decode() {
        for (sent, want) in [
            (
                json!({"spec": {"containers": [{"name": 1}]}}),
                "json: cannot unmarshal number into Go struct field Container.spec.containers.name of type string",
            ),
            (
                json!({"spec": {"containers": "x"}}),
                "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container",
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "lots"}}}]}}),
                crate::quantity::ERR_FORMAT_WRONG,
            ),
            (
                json!({"spec": {"priority": 1.5}}),
                "json: cannot unmarshal number into Go struct field PodSpec.spec.priority of type int64",
            ),
        ] {
            assert_eq!(pod(&sent).err().map(|e| e.0).as_deref(), Some(want), "{sent}");
        }
    }

    #[test]
    fn semantic_equality_compares_quantities_by_value() {
        let a = typed(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "512Mi"}}}]}}),
        );
        let b = typed(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "536870912"}}}]}}),
        );
        assert_ne!(a, b);
        assert!(semantic_eq(&a, &b));
        let c = typed(
            json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": "1Gi"}}}]}}),
        );
        assert!(!semantic_eq(&a, &c));
    }
}
