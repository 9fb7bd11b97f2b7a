//! The fidelity fixture set (tests/fixtures/fidelity/, recorded by tests/fixtures/record.sh
//! from real spark-submit 3.3–4.x) is what its manifest cases.json says it is, and Spark's
//! memory formula, as the project models it, reproduces every container figure Spark wrote.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod};
use serde_json::Value;

fn fidelity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fidelity")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest's entries, one per recorded file.
fn entries() -> Vec<Value> {
    let manifest = read_json(&fidelity_dir().join("cases.json"));
    let files = manifest["files"]
        .as_array()
        .expect("cases.json: files[]")
        .clone();
    assert!(
        files.len() >= 60,
        "fidelity set looks incomplete: {} files",
        files.len()
    );
    files
}

fn str_of<'a>(entry: &'a Value, key: &str) -> &'a str {
    entry[key]
        .as_str()
        .unwrap_or_else(|| panic!("cases.json entry without {key}: {entry}"))
}

fn pod_of(entry: &Value) -> Pod {
    let value = read_json(&fidelity_dir().join(str_of(entry, "file")));
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{}: {e}", str_of(entry, "file")))
}

fn pods() -> Vec<(Value, Pod)> {
    entries()
        .into_iter()
        .filter(|e| e["kind"] == "Pod")
        .map(|e| {
            let pod = pod_of(&e);
            (e, pod)
        })
        .collect()
}

/// The container Spark built: its first argument is the role (`driver` / `executor`), as
/// Spark's DriverCommandFeatureStep and BasicExecutorFeatureStep set it, whatever its name.
fn spark_container<'a>(pod: &'a Pod, role: &str) -> &'a Container {
    let spec = pod.spec.as_ref().expect("pod spec");
    let marked: Vec<&Container> = spec
        .containers
        .iter()
        .filter(|c| c.args.as_ref().and_then(|a| a.first()).map(String::as_str) == Some(role))
        .collect();
    assert_eq!(marked.len(), 1, "containers with first argument {role}");
    marked[0]
}

fn env_values<'a>(c: &'a Container, name: &str) -> Vec<Option<&'a str>> {
    c.env
        .iter()
        .flatten()
        .filter(|e| e.name == name)
        .map(|e| e.value.as_deref())
        .collect()
}

fn mib_or_none(figures: &Value, key: &str) -> Option<i64> {
    figures[key].as_i64()
}

/// The memory Spark asks for, in MiB, from the figures it was given: heap + overhead
/// (+ off-heap + pyspark memory on executors), overhead = the explicit one, else
/// max(trunc(factor × heap), minimum). BasicDriverFeatureStep.scala (drivers),
/// ResourceProfile.getResourcesForClusterManager (executors); Spark ≥ 4.0 reads the minimum
/// from spark.{driver,executor}.minMemoryOverhead (default 384m, the fixed
/// ResourceProfile.MEMORY_OVERHEAD_MIN_MIB before).
fn spark_memory_mib(entry: &Value) -> i64 {
    let f = &entry["memory"];
    let role = str_of(entry, "role");
    let heap = f["heapMiB"].as_i64().expect("heapMiB");
    // The factor: the role's own, else spark.kubernetes.memoryOverheadFactor, else 0.1 —
    // except a cluster-mode non-JVM driver, whose default is 0.4 (BasicDriverFeatureStep);
    // executors get that 0.4 only through spark.kubernetes.memoryOverheadFactor, which a
    // cluster-mode driver passes on to them and a client-mode driver does not set.
    let default_factor = if role == "driver" && str_of(entry, "app") == "python" {
        0.4
    } else {
        0.1
    };
    let factor = f["overheadFactor"]
        .as_f64()
        .or(f["kubernetesOverheadFactor"].as_f64())
        .unwrap_or(default_factor);
    let minimum = mib_or_none(f, "minOverheadMiB").unwrap_or(384);
    // Scala's `(factor * heap).toInt` truncates.
    let by_factor = (factor * heap as f64) as i64;
    let overhead = mib_or_none(f, "overheadMiB").unwrap_or(by_factor.max(minimum));
    if role == "driver" {
        return heap + overhead;
    }
    // pyspark memory counts only when Spark knows the app is Python
    // (spark.kubernetes.resource.type=python, set for cluster-mode drivers only).
    let pyspark = if f["resourceType"] == "python" {
        mib_or_none(f, "pysparkMiB").unwrap_or(0)
    } else {
        0
    };
    heap + overhead + f["offHeapMiB"].as_i64().unwrap_or(0) + pyspark
}

#[test]
fn every_fidelity_file_parses_as_the_kind_cases_json_names_without_losing_a_field() {
    for entry in entries() {
        let file = str_of(&entry, "file");
        let value = read_json(&fidelity_dir().join(file));
        let back = match str_of(&entry, "kind") {
            "Pod" => serde_json::to_value(serde_json::from_value::<Pod>(value.clone()).unwrap()),
            "PersistentVolumeClaim" => serde_json::to_value(
                serde_json::from_value::<PersistentVolumeClaim>(value.clone()).unwrap(),
            ),
            other => panic!("{file}: unexpected kind {other}"),
        }
        .unwrap();
        assert_eq!(back, value, "{file}: a field k8s-openapi does not know");
        assert_eq!(value["metadata"]["namespace"], "spark-jobs", "{file}");
    }
}

#[test]
fn cases_json_lists_exactly_the_files_present() {
    let listed: Vec<String> = entries()
        .iter()
        .map(|e| str_of(e, "file").to_string())
        .collect();
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a file listed twice");
    let present: BTreeSet<String> = std::fs::read_dir(fidelity_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "cases.json")
        .collect();
    assert_eq!(present, unique);
}

#[test]
fn every_pod_carries_the_role_and_version_it_was_recorded_with() {
    for (entry, pod) in pods() {
        let file = str_of(&entry, "file");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let role = str_of(&entry, "role");
        assert_eq!(
            labels.get("spark-role").map(String::as_str),
            Some(role),
            "{file}"
        );
        assert_eq!(
            labels.get("spark-version").map(String::as_str),
            Some(str_of(&entry, "spark")),
            "{file}"
        );
        assert!(
            file.starts_with(&format!("spark-{}-{role}", str_of(&entry, "spark"))),
            "{file}"
        );
        let c = spark_container(&pod, role);
        let app_id = env_values(c, "SPARK_APPLICATION_ID");
        assert_eq!(
            app_id,
            [labels.get("spark-app-selector").map(String::as_str)],
            "{file}: SPARK_APPLICATION_ID is the app selector"
        );
    }
}

#[test]
fn executor_heap_env_is_the_heap_spark_was_given() {
    for (entry, pod) in pods().into_iter().filter(|(e, _)| e["role"] == "executor") {
        let c = spark_container(&pod, "executor");
        let heap = entry["memory"]["heapMiB"].as_i64().unwrap();
        assert_eq!(
            env_values(c, "SPARK_EXECUTOR_MEMORY"),
            [Some(format!("{heap}m").as_str())],
            "{}",
            str_of(&entry, "file")
        );
    }
}

#[test]
fn container_memory_is_sparks_formula_for_the_figures_it_was_given() {
    let mut wrong = vec![];
    for (entry, pod) in pods() {
        let c = spark_container(&pod, str_of(&entry, "role"));
        let res = c.resources.as_ref().expect("resources");
        let want = format!("{}Mi", spark_memory_mib(&entry));
        let request = res.requests.as_ref().and_then(|r| r.get("memory"));
        let limit = res.limits.as_ref().and_then(|r| r.get("memory"));
        for (what, got) in [("request", request), ("limit", limit)] {
            if got.map(|q| q.0.as_str()) != Some(want.as_str()) {
                wrong.push(format!(
                    "{}: memory {what} {got:?}, formula {want} from {}",
                    str_of(&entry, "file"),
                    entry["memory"]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn gpu_executors_carry_the_vendor_resource_limit() {
    let gpu = pods()
        .into_iter()
        .filter(|(e, _)| e["conf"]["spark.executor.resource.gpu.amount"].is_string())
        .collect::<Vec<_>>();
    assert!(!gpu.is_empty(), "no GPU case recorded");
    for (entry, pod) in gpu {
        let c = spark_container(&pod, "executor");
        let vendor = entry["conf"]["spark.executor.resource.gpu.vendor"]
            .as_str()
            .unwrap();
        let limits = c.resources.as_ref().and_then(|r| r.limits.clone());
        assert_eq!(
            limits
                .unwrap_or_default()
                .get(&format!("{vendor}/gpu"))
                .map(|q| q.0.clone()),
            entry["conf"]["spark.executor.resource.gpu.amount"]
                .as_str()
                .map(str::to_string),
            "{}",
            str_of(&entry, "file")
        );
    }
}

#[test]
fn on_demand_claims_are_what_the_executor_mounts_with_the_size_and_class_given() {
    let claims: Vec<Value> = entries()
        .into_iter()
        .filter(|e| e["kind"] == "PersistentVolumeClaim")
        .collect();
    assert!(!claims.is_empty(), "no PVC recorded");
    let prefix = "spark.kubernetes.executor.volumes.persistentVolumeClaim.spark-local-dir-1";
    for entry in claims {
        let file = str_of(&entry, "file");
        let pvc: PersistentVolumeClaim =
            serde_json::from_value(read_json(&fidelity_dir().join(file))).unwrap();
        let pod_file = file.replace("-pvc.json", ".json");
        let pod: Pod = serde_json::from_value(read_json(&fidelity_dir().join(&pod_file))).unwrap();
        let claim = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .find(|v| v.name == "spark-local-dir-1")
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|p| p.claim_name.clone());
        assert_eq!(claim, pvc.metadata.name, "{file}");
        let spec = pvc.spec.expect("spec");
        let conf = &entry["conf"];
        assert_eq!(
            spec.storage_class_name.as_deref(),
            conf[format!("{prefix}.options.storageClass")].as_str(),
            "{file}"
        );
        let size = spec
            .resources
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").map(|q| q.0.clone()));
        assert_eq!(
            size.as_deref(),
            conf[format!("{prefix}.options.sizeLimit")].as_str(),
            "{file}"
        );
    }
}

/// The pod with what differs on every run (ids, names, the local-dir uuid) blanked.
fn without_run_ids(mut pod: Value) -> Value {
    pod["metadata"]["name"] = Value::Null;
    for label in ["spark-app-selector", "spark-app-name"] {
        pod["metadata"]["labels"][label] = Value::Null;
    }
    for c in pod["spec"]["containers"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        for e in c["env"].as_array_mut().into_iter().flatten() {
            if e["name"] == "SPARK_APPLICATION_ID" || e["name"] == "SPARK_LOCAL_DIRS" {
                e["value"] = Value::Null;
            }
        }
        for m in c["volumeMounts"].as_array_mut().into_iter().flatten() {
            if m["name"] == "spark-local-dir-1" {
                m["mountPath"] = Value::Null;
            }
        }
    }
    for v in pod["spec"]["volumes"].as_array_mut().into_iter().flatten() {
        if v["configMap"].is_object() {
            v["configMap"]["name"] = Value::Null;
        }
    }
    pod
}

#[test]
fn a_6g_pyspark_driver_with_1g_overhead_is_the_same_pod_as_a_5g_one_with_the_default() {
    let versions: BTreeSet<String> = entries()
        .iter()
        .filter(|e| e["case"] == "driver-python-5g")
        .map(|e| str_of(e, "spark").to_string())
        .collect();
    assert_eq!(versions.len(), 4, "{versions:?}");
    for v in versions {
        let pod = |case: &str| {
            without_run_ids(read_json(
                &fidelity_dir().join(format!("spark-{v}-{case}.json")),
            ))
        };
        assert_eq!(
            pod("driver-python-overhead-1g"),
            pod("driver-python-5g"),
            "Spark {v}"
        );
    }
}
