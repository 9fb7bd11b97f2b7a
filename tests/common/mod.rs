//! Shared test support: the API server's defaulting (what a webhook really receives) and
//! the Pod validation rules our patches could break.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

pub mod defaults;
pub mod server;

pub use defaults::default_like_apiserver;

/// A fresh, empty directory for one test, unique to this test process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("spark-admission-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A command's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every recorded Spark pod: (file name, JSON).
pub fn fixtures() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "fixtures missing");
    out
}

/// A pod of the second fixture set (`tests/fixtures/fidelity/`, recorded with real
/// spark-submit 3.3–4.x) with the manifest's entry: Spark version, role, conf and the memory
/// figures Spark was given.
pub struct FidelityPod {
    pub file: String,
    pub pod: Value,
    pub case: Value,
}

impl FidelityPod {
    /// What Spark puts in the container beyond its overhead, plus Spark's minimum overhead:
    /// heap + off-heap + pyspark memory (executors of Python apps) + the minimum
    /// (`minMemoryOverhead`, else 384Mi). The container must never be smaller.
    pub fn memory_floor_mib(&self) -> u64 {
        let m = &self.case["memory"];
        let n = |k: &str| m[k].as_u64().unwrap_or(0);
        let executor = self.case["role"] == "executor";
        let pyspark = if executor && m["resourceType"] == "python" {
            n("pysparkMiB")
        } else {
            0
        };
        let off_heap = if executor { n("offHeapMiB") } else { 0 };
        n("heapMiB") + off_heap + pyspark + m["minOverheadMiB"].as_u64().unwrap_or(384)
    }
}

/// Every pod of the second fixture set (PersistentVolumeClaims left out).
pub fn fidelity_pods() -> Vec<FidelityPod> {
    let dir = fixtures_dir().join("fidelity");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let pods: Vec<FidelityPod> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "Pod")
        .map(|c| {
            let file = c["file"].as_str().unwrap().to_string();
            let text = std::fs::read_to_string(dir.join(&file)).unwrap();
            FidelityPod {
                pod: serde_json::from_str(&text).unwrap(),
                file,
                case: c.clone(),
            }
        })
        .collect();
    assert!(pods.len() >= 80, "fidelity fixtures missing");
    pods
}

/// One recorded Spark pod by file name.
pub fn fixture(name: &str) -> Value {
    fixtures()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// `pod` as the API server hands it to a webhook, in its own namespace (or `default`).
pub fn api_server_defaults(mut pod: Value) -> Value {
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    default_like_apiserver(&mut pod, &ns);
    pod
}

/// The Spark container: the one whose first argument is Spark's `driver` / `executor`
/// (what a template names it does not matter), else by Spark's default names.
fn spark_container(pod: &Pod) -> Option<&Container> {
    let cs = &pod.spec.as_ref()?.containers;
    cs.iter()
        .find(|c| {
            c.args
                .as_ref()
                .and_then(|a| a.first())
                .is_some_and(|a| a == "driver" || a == "executor")
        })
        .or_else(|| {
            cs.iter().find(|c| {
                [
                    "spark-kubernetes-driver",
                    "spark-kubernetes-executor",
                    "executor",
                ]
                .contains(&c.name.as_str())
            })
        })
        .or(if cs.len() == 1 { cs.first() } else { None })
}

/// Index of the Spark container in a pod as JSON (see [`spark_container`]).
pub fn spark_container_index(pod: &Value) -> usize {
    let typed: Pod = serde_json::from_value(pod.clone()).unwrap();
    let name = &spark_container(&typed).expect("a Spark container").name;
    typed
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .position(|x| x.name == *name)
        .unwrap()
}

/// The entry of env var `name` the kubelet uses: the last one.
pub fn effective_env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .rev()
        .find(|e| e["name"] == name)
}

fn memory_bytes(q: &str) -> u64 {
    spark_admission::quantity::Bytes::parse_quantity(q)
        .unwrap()
        .0
}

/// The Pod validation rules a webhook patch can break, as the API server checks them.
pub fn assert_valid_pod(pod_json: &Value, context: &str) {
    let pod: Pod = serde_json::from_value(pod_json.clone())
        .unwrap_or_else(|e| panic!("{context}: not a Pod: {e}"));
    let spec = pod.spec.as_ref().unwrap();
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let unique: BTreeSet<_> = volumes.iter().collect();
    assert_eq!(
        unique.len(),
        volumes.len(),
        "{context}: duplicate volume names {volumes:?}"
    );
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let mounts = c.volume_mounts.clone().unwrap_or_default();
        for m in &mounts {
            assert!(
                unique.contains(&m.name.as_str()),
                "{context}: container {} mounts missing volume {}",
                c.name,
                m.name
            );
        }
        let paths: BTreeSet<_> = mounts.iter().map(|m| &m.mount_path).collect();
        assert_eq!(
            paths.len(),
            mounts.len(),
            "{context}: duplicate mount paths in {}",
            c.name
        );
        // Duplicate env names are valid (the API server only warns; the kubelet uses the last).
        let env = c.env.clone().unwrap_or_default();
        for e in &env {
            assert!(
                !(e.value.is_some() && e.value_from.is_some()),
                "{context}: env {} has both value and valueFrom",
                e.name
            );
        }
        if let Some(r) = &c.resources {
            for res in ["memory", "cpu"] {
                let req = r.requests.as_ref().and_then(|m| m.get(res));
                let lim = r.limits.as_ref().and_then(|m| m.get(res));
                if let (Some(req), Some(lim), "memory") = (req, lim, res) {
                    assert!(
                        memory_bytes(&req.0) <= memory_bytes(&lim.0),
                        "{context}: {} memory request {} above limit {}",
                        c.name,
                        req.0,
                        lim.0
                    );
                }
            }
        }
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    for (i, a) in tolerations.iter().enumerate() {
        for b in &tolerations[i + 1..] {
            assert!(
                !spark_admission::mutate::tolerations::same_toleration(a, b),
                "{context}: duplicate toleration {a:?}"
            );
        }
        if a.operator.as_deref() == Some("Exists") {
            assert!(
                a.value.as_deref().unwrap_or("").is_empty(),
                "{context}: Exists with value"
            );
        }
    }
    // The effective SPARK_LOCAL_DIRS lists exactly the mount paths of the spark-local-dir-*
    // volumes.
    if let Some(c) = spark_container(&pod) {
        let local_paths: BTreeSet<String> = c
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name.starts_with("spark-local-dir-"))
            .map(|m| m.mount_path.clone())
            .collect();
        let env: BTreeSet<String> = c
            .env
            .iter()
            .flatten()
            .rev()
            .find(|e| e.name == "SPARK_LOCAL_DIRS")
            .and_then(|e| e.value.clone())
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        assert_eq!(
            env, local_paths,
            "{context}: SPARK_LOCAL_DIRS vs local-dir mounts"
        );
    }
}

/// What a hostile tenant can send (well under the API server's 3 MiB request limit): the
/// recorded Python executor, as the API server hands it over, with `env` extra env vars
/// between `SPARK_LOCAL_DIRS` (moved first) and the rest, and `volumes` extra emptyDir
/// volumes (each mounted in the Spark container) between Spark's own `spark-local-dir-1`
/// (moved first) and the rest. Policies change the first entries and append at the end, so
/// the whole list lies between two changes.
pub fn hostile_executor(env: usize, volumes: usize) -> Value {
    let mut pod = api_server_defaults(fixture("spark-3.5-executor-python.json"));
    let container = &mut pod["spec"]["containers"][0];
    let vars = container["env"].as_array_mut().unwrap();
    let at = vars
        .iter()
        .position(|e| e["name"] == "SPARK_LOCAL_DIRS")
        .unwrap();
    let local_dirs = vars.remove(at);
    let filler = (0..env).map(|i| json!({"name": format!("TENANT_VAR_{i}"), "value": "x"}));
    let rest = std::mem::take(vars);
    *vars = std::iter::once(local_dirs)
        .chain(filler)
        .chain(rest)
        .collect();
    let mounts = container["volumeMounts"].as_array_mut().unwrap();
    let extra_mounts = (0..volumes)
        .map(|i| json!({"name": format!("tenant-vol-{i}"), "mountPath": format!("/tenant/{i}")}));
    mounts.splice(1..1, extra_mounts);
    let vols = pod["spec"]["volumes"].as_array_mut().unwrap();
    let at = vols
        .iter()
        .position(|v| v["name"] == "spark-local-dir-1")
        .unwrap();
    let local_dir = vols.remove(at);
    let extra = (0..volumes).map(|i| json!({"name": format!("tenant-vol-{i}"), "emptyDir": {}}));
    let rest = std::mem::take(vols);
    *vols = std::iter::once(local_dir)
        .chain(extra)
        .chain(rest)
        .collect();
    pod
}
