//! The Spark pod view: what the engine needs to know about a pod, derived without IO.
//!
//! Spark marks its pods with the label `spark-role` (every submitter produces it). The
//! spark-operator's SparkConnect servers carry `spark-role: connect-server`; they run the
//! driver of every session on them, so the engine treats them as drivers. The Spark container
//! is found by Spark's own marks (its entrypoint argument, its env), then by name, never by
//! position: with a pod template a sidecar may come first.

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use serde::{Deserialize, Serialize};

use crate::quantity::{Bytes, QuantityError};

pub const ROLE_LABEL: &str = "spark-role";
pub const LOCAL_DIR_PREFIX: &str = "spark-local-dir-";
pub const LOCAL_DIRS_ENV: &str = "SPARK_LOCAL_DIRS";
/// When set, Spark uses it instead of `SPARK_LOCAL_DIRS` (`Utils.getConfiguredLocalDirs`).
pub const EXECUTOR_DIRS_ENV: &str = "SPARK_EXECUTOR_DIRS";
pub const EXECUTOR_MEMORY_ENV: &str = "SPARK_EXECUTOR_MEMORY";
/// Set by Spark on its own container only (BasicDriverFeatureStep, BasicExecutorFeatureStep).
pub const APPLICATION_ID_ENV: &str = "SPARK_APPLICATION_ID";
/// Where Spark mounts its own default scratch `emptyDir` (`/var/data/spark-<uuid>`).
pub const SPARK_DEFAULT_LOCAL_DIR_PATH_PREFIX: &str = "/var/data/spark-";

/// Spark's default container names (`spark.kubernetes.{driver,executor}.podTemplateContainerName`
/// unset), `executor` in Spark 2.x; the spark-operator names a SparkConnect server's container
/// `spark-kubernetes-driver` too, and runs it with `bash -c start-connect-server.sh …`, so it
/// carries none of Spark's marks (kubeflow/spark-operator
/// internal/controller/sparkconnect/reconciler.go).
const SPARK_CONTAINER_NAMES: [&str; 3] = [
    "spark-kubernetes-driver",
    "spark-kubernetes-executor",
    "executor",
];

/// The value of the `spark-role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SparkRole {
    Driver,
    Executor,
    /// A spark-operator SparkConnect server (`spark-role: connect-server`,
    /// internal/controller/sparkconnect/util.go): the driver of every session on it.
    ConnectServer,
}

impl SparkRole {
    pub const ALL: [SparkRole; 3] = [
        SparkRole::Driver,
        SparkRole::Executor,
        SparkRole::ConnectServer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SparkRole::Driver => "driver",
            SparkRole::Executor => "executor",
            SparkRole::ConnectServer => "connect-server",
        }
    }

    /// The role a `spark-role` label value names, if any.
    pub fn from_label(value: &str) -> Option<SparkRole> {
        match value {
            "driver" => Some(SparkRole::Driver),
            "executor" => Some(SparkRole::Executor),
            "connect-server" => Some(SparkRole::ConnectServer),
            _ => None,
        }
    }

    /// Whether the pod runs a Spark driver (a SparkConnect server does).
    pub fn is_driver(self) -> bool {
        matches!(self, SparkRole::Driver | SparkRole::ConnectServer)
    }

    /// Whether a policy listing `self` in `match.roles` applies to a pod of role `pod`:
    /// `driver` covers SparkConnect servers too, `connect-server` names them alone.
    pub fn covers(self, pod: SparkRole) -> bool {
        self == pod || (self == SparkRole::Driver && pod == SparkRole::ConnectServer)
    }
}

/// The role of a pod, or `None` if it is not a Spark pod (and must never be changed).
pub fn role(pod: &Pod) -> Option<SparkRole> {
    pod.metadata
        .labels
        .as_ref()?
        .get(ROLE_LABEL)
        .and_then(|v| SparkRole::from_label(v))
}

/// Index of the Spark container in `spec.containers`, by Spark's own marks first:
/// 1. the entrypoint argument Spark adds to its container — `driver`
///    (DriverCommandFeatureStep.scala) or `executor` (BasicExecutorFeatureStep.scala,
///    `.addToArgs("executor")`), whatever name a pod template gave the container;
/// 2. the env `SPARK_APPLICATION_ID`, which Spark sets on its container only;
/// 3. Spark's default container names;
/// 4. the only container of the pod.
///
/// Where a mark is carried by more than one container the pod is ambiguous: `None`, so no
/// container-level change is made rather than one to a sidecar.
pub fn spark_container_index(pod: &Pod) -> Option<usize> {
    let containers = &pod.spec.as_ref()?.containers;
    let by_arg = only_one(containers, |c| {
        c.args
            .as_ref()
            .and_then(|a| a.first())
            .is_some_and(|a| a == "driver" || a == "executor")
    });
    if let Some(found) = by_arg {
        return found;
    }
    if let Some(found) = only_one(containers, |c| {
        effective_env(c, APPLICATION_ID_ENV).is_some()
    }) {
        return found;
    }
    containers
        .iter()
        .position(|c| SPARK_CONTAINER_NAMES.contains(&c.name.as_str()))
        .or(if containers.len() == 1 { Some(0) } else { None })
}

/// The container `mark` holds for: `Some(Some(i))` if exactly one, `Some(None)` if several,
/// `None` if none.
fn only_one(containers: &[Container], mark: impl Fn(&Container) -> bool) -> Option<Option<usize>> {
    let mut found = containers.iter().enumerate().filter(|(_, c)| mark(c));
    match (found.next(), found.next()) {
        (Some((i, _)), None) => Some(Some(i)),
        (Some(_), Some(_)) => Some(None),
        _ => None,
    }
}

/// The entry of env var `name` the kubelet uses: the last one. The kubelet builds the
/// environment in list order, a later entry overwriting an earlier one of the same name
/// (pkg/kubelet/kubelet_pods.go, `makeEnvironmentVariables`); the API server only warns about
/// the duplicate. A pod template that sets `SPARK_LOCAL_DIRS` yields two entries, the
/// template's and then Spark's (LocalDirsFeatureStep.scala appends its own).
pub fn effective_env<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container
        .env
        .as_ref()?
        .iter()
        .rev()
        .find(|e| e.name == name)
}

/// How many entries of env var `name` the container lists.
pub fn env_count(container: &Container, name: &str) -> usize {
    container
        .env
        .iter()
        .flatten()
        .filter(|e| e.name == name)
        .count()
}

/// The literal value the kubelet gives env var `name` in `container` (its last entry), if
/// that entry is a literal.
pub fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    effective_env(container, name).and_then(|e| e.value.as_deref())
}

/// The executor's JVM heap (`-Xmx`), from `SPARK_EXECUTOR_MEMORY`.
pub fn executor_heap(container: &Container) -> Option<Result<Bytes, QuantityError>> {
    env_value(container, EXECUTOR_MEMORY_ENV).map(Bytes::parse_jvm)
}

/// The container's memory request and limit.
pub fn memory_of(container: &Container) -> (Option<String>, Option<String>) {
    let get = |m: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| { m.and_then(|m| m.get("memory")).map(|q| q.0.clone()) };
    let resources = container.resources.as_ref();
    (
        get(resources.and_then(|r| r.requests.as_ref())),
        get(resources.and_then(|r| r.limits.as_ref())),
    )
}

/// The index `N` of a volume named `spark-local-dir-N`.
pub fn local_dir_index(volume_name: &str) -> Option<u32> {
    volume_name
        .strip_prefix(LOCAL_DIR_PREFIX)
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
}

/// One scratch directory Spark uses: a `spark-local-dir-N` volume and its mount.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDir {
    pub index: u32,
    pub volume_name: String,
    pub mount_path: Option<String>,
}

/// The pod's current local dirs, ordered by index.
pub fn local_dirs(pod: &Pod, container: Option<&Container>) -> Vec<LocalDir> {
    let Some(spec) = pod.spec.as_ref() else {
        return vec![];
    };
    let mut dirs: Vec<LocalDir> = spec
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| {
            let index = local_dir_index(&v.name)?;
            let mount_path = container
                .and_then(|c| c.volume_mounts.as_ref())
                .and_then(|ms| ms.iter().find(|m| m.name == v.name))
                .map(|m| m.mount_path.clone());
            Some(LocalDir {
                index,
                volume_name: v.name.clone(),
                mount_path,
            })
        })
        .collect();
    dirs.sort_by_key(|d| d.index);
    dirs
}

/// Whether the pod's local dirs are only Spark's own default: a single plain `emptyDir`
/// named `spark-local-dir-1` mounted under `/var/data/spark-`. Those are replaced by a
/// policy; anything else was configured by the submitter.
pub fn has_only_spark_default_local_dir(pod: &Pod, container: Option<&Container>) -> bool {
    let dirs = local_dirs(pod, container);
    let [dir] = dirs.as_slice() else {
        return false;
    };
    let plain_empty_dir = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == dir.volume_name))
        .and_then(|v| v.empty_dir.as_ref())
        .is_some_and(|e| e.medium.as_deref().unwrap_or("").is_empty() && e.size_limit.is_none());
    dir.index == 1
        && plain_empty_dir
        && dir
            .mount_path
            .as_deref()
            .is_some_and(|p| p.starts_with(SPARK_DEFAULT_LOCAL_DIR_PATH_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{fixture, FIXTURES};

    #[test]
    fn roles_of_fixtures() {
        for name in FIXTURES {
            let pod = fixture(name);
            let expected = if name.contains("driver") {
                SparkRole::Driver
            } else {
                SparkRole::Executor
            };
            assert_eq!(role(&pod), Some(expected), "{name}");
        }
    }

    #[test]
    fn non_spark_roles_are_not_spark_pods() {
        let mut pod = fixture("spark-3.5-executor-python.json");
        for value in ["Driver", "shuffle-service", ""] {
            pod.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert(ROLE_LABEL.into(), value.into());
            assert_eq!(role(&pod), None, "{value:?}");
        }
        pod.metadata.labels.as_mut().unwrap().remove(ROLE_LABEL);
        assert_eq!(role(&pod), None);
    }

    #[test]
    fn spark_container_found_by_name_not_position() {
        let pod = fixture("spark-3.5-driver-podtemplate-sidecar.json");
        let idx = spark_container_index(&pod).unwrap();
        assert_eq!(idx, 1);
        assert_eq!(
            pod.spec.unwrap().containers[idx].name,
            "spark-kubernetes-driver"
        );
    }

    /// The executor fixture's Spark container renamed, with or without Spark's marks.
    fn spark_container(name: &str, arg: bool, app_id_env: bool) -> Container {
        let pod = fixture("spark-3.5-executor-python.json");
        let mut c = pod.spec.unwrap().containers.remove(0);
        c.name = name.into();
        if !arg {
            c.args = None;
        }
        if !app_id_env {
            c.env
                .as_mut()
                .unwrap()
                .retain(|e| e.name != APPLICATION_ID_ENV);
        }
        c
    }

    fn sidecar(name: &str) -> Container {
        Container {
            name: name.into(),
            image: Some("fluent/fluent-bit:3.1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn spark_container_by_marks_then_names_then_the_only_one() {
        let cases: Vec<(&str, Vec<Container>, Option<usize>)> = vec![
            (
                "template name `main` after a sidecar: by its `executor` argument",
                vec![sidecar("log-shipper"), spark_container("main", true, true)],
                Some(1),
            ),
            (
                "no argument (another webhook's rewrite): by SPARK_APPLICATION_ID",
                vec![sidecar("log-shipper"), spark_container("main", false, true)],
                Some(1),
            ),
            (
                "no marks at all: Spark's default name",
                vec![
                    sidecar("log-shipper"),
                    spark_container("spark-kubernetes-executor", false, false),
                ],
                Some(1),
            ),
            (
                "Spark 2.x name",
                vec![
                    sidecar("log-shipper"),
                    spark_container("executor", false, false),
                ],
                Some(1),
            ),
            (
                "the only container, whatever its name",
                vec![spark_container("main", false, false)],
                Some(0),
            ),
            (
                "two unmarked unknown containers: none",
                vec![sidecar("a"), spark_container("main", false, false)],
                None,
            ),
            (
                "two containers carry the argument: ambiguous, none",
                vec![
                    spark_container("a", true, true),
                    spark_container("spark-kubernetes-executor", true, true),
                ],
                None,
            ),
        ];
        for (what, containers, expected) in cases {
            let mut pod = fixture("spark-3.5-executor-python.json");
            pod.spec.as_mut().unwrap().containers = containers;
            assert_eq!(spark_container_index(&pod), expected, "{what}");
        }
    }

    #[test]
    fn sparkconnect_servers_are_drivers_and_policies_can_name_them() {
        assert_eq!(
            SparkRole::from_label("connect-server"),
            Some(SparkRole::ConnectServer)
        );
        assert!(SparkRole::ConnectServer.is_driver());
        assert!(SparkRole::Driver.covers(SparkRole::ConnectServer));
        assert!(SparkRole::ConnectServer.covers(SparkRole::ConnectServer));
        assert!(!SparkRole::ConnectServer.covers(SparkRole::Driver));
        assert!(!SparkRole::Executor.covers(SparkRole::ConnectServer));
    }

    #[test]
    fn the_effective_env_entry_is_the_last() {
        let mut c = spark_container("main", true, true);
        c.env.as_mut().unwrap().push(EnvVar {
            name: EXECUTOR_MEMORY_ENV.into(),
            value: Some("4g".into()),
            value_from: None,
        });
        assert_eq!(env_count(&c, EXECUTOR_MEMORY_ENV), 2);
        assert_eq!(env_value(&c, EXECUTOR_MEMORY_ENV), Some("4g"));
        assert_eq!(executor_heap(&c), Some(Ok(Bytes::mib(4096))));
    }

    #[test]
    fn executor_heap_from_env() {
        let pod = fixture("spark-3.5-executor-python.json");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(executor_heap(c), Some(Ok(Bytes::mib(8192))));
        let pod = fixture("spark-3.5-driver-jvm.json");
        assert_eq!(
            executor_heap(&pod.spec.as_ref().unwrap().containers[0]),
            None
        );
    }

    #[test]
    fn local_dirs_of_fixtures() {
        let pod = fixture("spark-3.5-executor-hostpath-localdirs.json");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let dirs = local_dirs(&pod, Some(c));
        let paths: Vec<_> = dirs
            .iter()
            .map(|d| d.mount_path.as_deref().unwrap())
            .collect();
        assert_eq!(paths, ["/tmp/mnt-1", "/tmp/mnt-2"]);
        assert!(!has_only_spark_default_local_dir(&pod, Some(c)));

        let pod = fixture("spark-3.5-driver-python.json");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(local_dirs(&pod, Some(c)).len(), 1);
        assert!(has_only_spark_default_local_dir(&pod, Some(c)));
    }
}
