//! The Spark pod view: what the engine needs to know about a pod, derived without IO.
//!
//! Spark marks its pods with the label `spark-role` (every submitter produces it) and names
//! its container `spark-kubernetes-driver` / `spark-kubernetes-executor` (`executor` in
//! Spark 2.x). With a pod template a sidecar may come first, so the container is found by
//! name, never by position.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Serialize};

use crate::quantity::{Bytes, QuantityError};

pub const ROLE_LABEL: &str = "spark-role";
pub const LOCAL_DIR_PREFIX: &str = "spark-local-dir-";
pub const LOCAL_DIRS_ENV: &str = "SPARK_LOCAL_DIRS";
pub const EXECUTOR_MEMORY_ENV: &str = "SPARK_EXECUTOR_MEMORY";
/// Where Spark mounts its own default scratch `emptyDir` (`/var/data/spark-<uuid>`).
pub const SPARK_DEFAULT_LOCAL_DIR_PATH_PREFIX: &str = "/var/data/spark-";

const SPARK_CONTAINER_NAMES: [&str; 3] = [
    "spark-kubernetes-driver",
    "spark-kubernetes-executor",
    "executor",
];

/// The value of the `spark-role` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SparkRole {
    Driver,
    Executor,
}

impl SparkRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SparkRole::Driver => "driver",
            SparkRole::Executor => "executor",
        }
    }

    /// The role a `spark-role` label value names, if any.
    pub fn from_label(value: &str) -> Option<SparkRole> {
        match value {
            "driver" => Some(SparkRole::Driver),
            "executor" => Some(SparkRole::Executor),
            _ => None,
        }
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

/// Index of the Spark container in `spec.containers`: found by name; the only container
/// if there is exactly one; otherwise `None`.
pub fn spark_container_index(pod: &Pod) -> Option<usize> {
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .position(|c| SPARK_CONTAINER_NAMES.contains(&c.name.as_str()))
        .or(if containers.len() == 1 { Some(0) } else { None })
}

/// The literal value of env var `name` in `container`, if set as a literal.
pub fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
}

/// The executor's JVM heap (`-Xmx`), from `SPARK_EXECUTOR_MEMORY`.
pub fn executor_heap(container: &Container) -> Option<Result<Bytes, QuantityError>> {
    env_value(container, EXECUTOR_MEMORY_ENV).map(Bytes::parse_jvm)
}

/// Whether the driver runs a Python or R application, for which Spark's default
/// memory-overhead factor is 0.4 instead of 0.1.
pub fn is_non_jvm_driver(container: &Container) -> bool {
    container.args.iter().flatten().any(|a| {
        a == "org.apache.spark.deploy.PythonRunner" || a == "org.apache.spark.deploy.RRunner"
    })
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

    #[test]
    fn single_unknown_container_is_the_spark_container_but_two_are_not() {
        let mut pod = fixture("spark-3.5-executor-python.json");
        pod.spec.as_mut().unwrap().containers[0].name = "main".into();
        assert_eq!(spark_container_index(&pod), Some(0));
        let mut sidecar = pod.spec.as_ref().unwrap().containers[0].clone();
        sidecar.name = "sidecar".into();
        pod.spec.as_mut().unwrap().containers.push(sidecar);
        assert_eq!(spark_container_index(&pod), None);
        // Spark 2.x name.
        pod.spec.as_mut().unwrap().containers[1].name = "executor".into();
        assert_eq!(spark_container_index(&pod), Some(1));
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
    fn python_driver_detected_from_args() {
        let py = fixture("spark-3.5-driver-python.json");
        let jvm = fixture("spark-3.5-driver-jvm.json");
        assert!(is_non_jvm_driver(&py.spec.as_ref().unwrap().containers[0]));
        assert!(!is_non_jvm_driver(
            &jvm.spec.as_ref().unwrap().containers[0]
        ));
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
