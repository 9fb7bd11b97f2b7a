//! Local dirs: the scratch volumes Spark uses for shuffle and spill.
//!
//! Spark adds its own `emptyDir` named `spark-local-dir-1` and lists the mount paths in
//! `SPARK_LOCAL_DIRS` (LocalDirsFeatureStep.scala); a volume missing from that list is never
//! used, and a second volume of an existing name is rejected by the API server. So the
//! policy's volumes take the names `spark-local-dir-1..N` (replacing Spark's default in
//! place), are mounted in the Spark container only, and the value the kubelet gives
//! `SPARK_LOCAL_DIRS` (its last entry) becomes exactly their mount paths.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EphemeralVolumeSource, HostPathVolumeSource,
    PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate, Pod, PodSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Report;
use crate::policy::model::{AccessMode, EmptyDirMedium, LocalDirVolume};
use crate::policy::LocalDirsPolicy;
use crate::quantity::Bytes;
use crate::spark_pod::{self, SparkRole, EXECUTOR_DIRS_ENV, LOCAL_DIRS_ENV, LOCAL_DIR_PREFIX};

fn volume_for(v: &LocalDirVolume, name: String) -> Volume {
    let mut vol = Volume {
        name,
        ..Default::default()
    };
    if let Some(h) = &v.host_path {
        vol.host_path = Some(HostPathVolumeSource {
            path: h.path.to_string(),
            type_: h.type_.map(|t| t.as_str().to_string()),
        });
    } else if let Some(e) = &v.empty_dir {
        vol.empty_dir = Some(EmptyDirVolumeSource {
            medium: e.medium.map(|EmptyDirMedium::Memory| "Memory".to_string()),
            size_limit: e.size_limit.map(|q| Quantity(q.0.to_string())),
            ..Default::default()
        });
    } else if let Some(e) = &v.ephemeral {
        vol.ephemeral = Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: None,
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(
                        access_modes(v)
                            .iter()
                            .map(|m| m.as_str().to_string())
                            .collect(),
                    ),
                    storage_class_name: e.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(e.size.0.to_string()),
                        )])),
                        limits: None,
                    }),
                    ..Default::default()
                },
            }),
        });
    }
    vol
}

fn access_modes(v: &LocalDirVolume) -> Vec<AccessMode> {
    match &v.ephemeral {
        Some(e) if !e.access_modes.is_empty() => e.access_modes.clone(),
        _ => vec![AccessMode::ReadWriteOnce],
    }
}

/// Whether volume `v` is the policy's volume `want`, comparing only what the policy sets:
/// the API server defaults fields after the patch (`hostPath.type: ""`, an ephemeral claim's
/// `volumeMode: Filesystem`, pkg/apis/core/v1/defaults.go), and those must not make the pod
/// look different on the next pass.
pub fn same_source(v: &Volume, want: &LocalDirVolume) -> bool {
    let quantity = |q: Option<&Quantity>| q.and_then(|q| Bytes::parse_quantity(&q.0).ok());
    let other_sources = {
        let mut bare = v.clone();
        bare.name = String::new();
        bare.host_path = None;
        bare.empty_dir = None;
        bare.ephemeral = None;
        bare != Volume::default()
    };
    if other_sources {
        return false;
    }
    if let Some(h) = &want.host_path {
        return v.host_path.as_ref().is_some_and(|got| {
            got.path == h.path.as_str()
                && got.type_.as_deref().unwrap_or("") == h.type_.map_or("", |t| t.as_str())
        });
    }
    if let Some(e) = &want.empty_dir {
        let want_medium = e.medium.map_or("", |EmptyDirMedium::Memory| "Memory");
        return v.empty_dir.as_ref().is_some_and(|got| {
            got.medium.as_deref().unwrap_or("") == want_medium
                && quantity(got.size_limit.as_ref()) == e.size_limit.map(|q| q.0)
        });
    }
    if let Some(e) = &want.ephemeral {
        let claim = v
            .ephemeral
            .as_ref()
            .and_then(|got| got.volume_claim_template.as_ref());
        return claim.is_some_and(|t| {
            let spec = &t.spec;
            let modes: Vec<&str> = access_modes(want).iter().map(|m| m.as_str()).collect();
            spec.storage_class_name == e.storage_class_name
                && spec.access_modes.as_deref().is_some_and(|m| m == modes)
                && quantity(
                    spec.resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref())
                        .and_then(|r| r.get("storage")),
                ) == Some(e.size.0)
        });
    }
    false
}

/// The policy's volumes, named `spark-local-dir-1..N`, with their mount paths.
struct Desired<'a> {
    policy: &'a str,
    dirs: Vec<(Volume, String, &'a LocalDirVolume)>,
}

impl Desired<'_> {
    /// `SPARK_LOCAL_DIRS` for this pod: the mount paths rotated by a figure of the pod.
    /// Spark ≥ 3.4 shuffles the dirs where it builds each pod so that executors do not all
    /// favour the first disk (SPARK-39755, `Utils.randomize` in LocalDirsFeatureStep; the
    /// recorded 3.5 executor lists /tmp/mnt-2 before /tmp/mnt-1). A fixed order would undo
    /// that; a rotation by executor id spreads the first dir as well, and is the same on a
    /// second pass.
    fn env_for(&self, pod: &Pod) -> String {
        let paths: Vec<&str> = self.dirs.iter().map(|(_, p, _)| p.as_str()).collect();
        let n = paths.len().max(1);
        let turn = rotation(pod) % n;
        paths[turn..]
            .iter()
            .chain(&paths[..turn])
            .copied()
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A stable figure of the pod: its `spark-exec-id` (consecutive executors get consecutive
/// rotations), else a hash of its name; 0 for a pod with neither.
fn rotation(pod: &Pod) -> usize {
    let meta = &pod.metadata;
    if let Some(id) = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("spark-exec-id"))
        .and_then(|id| id.parse::<usize>().ok())
    {
        return id;
    }
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let name = meta.name.as_deref().or(meta.generate_name.as_deref());
    name.map_or(0, |n| {
        n.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) as usize
    })
}

pub fn apply(
    pod: &mut Pod,
    container: usize,
    role: SparkRole,
    policy: &str,
    ld: &LocalDirsPolicy,
    report: &mut Report,
) {
    let desired = Desired {
        policy,
        dirs: ld
            .volumes
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let n = i as u32 + 1;
                (
                    volume_for(v, format!("{LOCAL_DIR_PREFIX}{n}")),
                    v.mount_path_for(n),
                    v,
                )
            })
            .collect(),
    };
    let want_env = desired.env_for(pod);
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    let Some(c) = spec.containers.get(container) else {
        return;
    };
    if in_place(pod, c, &desired) {
        return;
    }
    let Some(removed) = check(pod, spec, container, ld, &desired, report) else {
        return;
    };
    let dropped_claims = dropped_claims(spec, &desired, &removed);
    write(pod, container, &desired, &removed, &want_env);
    report.changes.push(format!(
        "local dirs: {} ({}) mounted at {want_env} in container {} (policy {policy})",
        desired.dirs.len(),
        ld.volumes
            .iter()
            .map(source_kind)
            .collect::<Vec<_>>()
            .join(", "),
        c_name(pod, container),
    ));
    for claim in dropped_claims {
        report.warnings.push(format!(
            "local dirs: override dropped PVC {claim}{} (policy {policy})",
            if spark_on_demand_claim(&claim) {
                ", which Spark creates on demand and still will"
            } else {
                ""
            }
        ));
    }
    if role.is_driver() {
        report.warnings.push(format!(
            "local dirs on a driver: its executors inherit SPARK_LOCAL_DIRS, so an executor policy keeps them (policy {policy})"
        ));
    }
}

fn c_name(pod: &Pod, container: usize) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.get(container))
        .map(|c| c.name.clone())
        .unwrap_or_default()
}

/// Already as the policy wants (dirs in any order): nothing to do, nothing to say.
fn in_place(pod: &Pod, c: &Container, desired: &Desired<'_>) -> bool {
    let current = spark_pod::local_dirs(pod, Some(c));
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    let mut env: Vec<&str> = spark_pod::env_value(c, LOCAL_DIRS_ENV)
        .map(|v| v.split(',').collect())
        .unwrap_or_default();
    let mut paths: Vec<&str> = desired.dirs.iter().map(|(_, p, _)| p.as_str()).collect();
    env.sort_unstable();
    paths.sort_unstable();
    current.len() == desired.dirs.len()
        && desired.dirs.iter().all(|(vol, path, want)| {
            volumes
                .iter()
                .any(|v| v.name == vol.name && same_source(v, want))
                && current
                    .iter()
                    .any(|d| d.volume_name == vol.name && d.mount_path.as_deref() == Some(path))
        })
        && env == paths
}

/// Whether the pod may be changed; `Some(volumes to remove)` if so, else `None` with a
/// warning that says why not.
fn check(
    pod: &Pod,
    spec: &PodSpec,
    container: usize,
    ld: &LocalDirsPolicy,
    desired: &Desired<'_>,
    report: &mut Report,
) -> Option<Vec<String>> {
    let policy = desired.policy;
    let c = spec.containers.get(container)?;
    // Utils.getConfiguredLocalDirs: SPARK_EXECUTOR_DIRS, when set, wins over SPARK_LOCAL_DIRS.
    if spark_pod::effective_env(c, EXECUTOR_DIRS_ENV).is_some() {
        report.warnings.push(format!(
            "local dirs: SPARK_EXECUTOR_DIRS is set and Spark uses it, not SPARK_LOCAL_DIRS; not changed (policy {policy})"
        ));
        return None;
    }
    let current = spark_pod::local_dirs(pod, Some(c));
    let submitters_own =
        !current.is_empty() && !spark_pod::has_only_spark_default_local_dir(pod, Some(c));
    if submitters_own && !ld.override_submitter {
        report.warnings.push(format!(
            "local dirs: the pod has its own local dirs ({}); kept (policy {policy} has override: false)",
            current.iter().map(|d| d.volume_name.as_str()).collect::<Vec<_>>().join(", ")
        ));
        return None;
    }
    // Volumes that will be gone: local dirs beyond the policy's count.
    let removed: Vec<String> = current
        .iter()
        .filter(|d| d.index as usize > desired.dirs.len())
        .map(|d| d.volume_name.clone())
        .collect();
    // Refuse to break other containers: they must not mount what we remove.
    let mut others = spec
        .containers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != container)
        .map(|(_, c)| c)
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten());
    if let Some(m) = others.find(|m| removed.contains(&m.name)) {
        report.warnings.push(format!(
            "local dirs: volume {} is also mounted by another container; not changed (policy {policy})",
            m.name
        ));
        return None;
    }
    // Mount paths must stay unique in the Spark container. `write` moves the first mount of
    // each of the policy's dirs and drops the removed ones; every other mount keeps its path
    // (also a second mount of a local dir).
    let mut moved: Vec<&str> = vec![];
    let taken: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            if spark_pod::local_dir_index(&m.name).is_none() {
                return true;
            }
            let ours = desired.dirs.iter().any(|(v, _, _)| v.name == m.name);
            if removed.contains(&m.name) || (ours && !moved.contains(&m.name.as_str())) {
                moved.push(&m.name);
                return false;
            }
            true
        })
        .map(|m| m.mount_path.as_str())
        .collect();
    if let Some((_, path, _)) = desired
        .dirs
        .iter()
        .find(|(_, p, _)| taken.contains(&p.as_str()))
    {
        report.warnings.push(format!(
            "local dirs: mount path {path} is used by another mount in {}; not changed (policy {policy})",
            c.name
        ));
        return None;
    }
    Some(removed)
}

/// PersistentVolumeClaims the change takes out of the pod (replaced or removed).
fn dropped_claims(spec: &PodSpec, desired: &Desired<'_>, removed: &[String]) -> Vec<String> {
    spec.volumes
        .iter()
        .flatten()
        .filter(|v| {
            removed.contains(&v.name) || desired.dirs.iter().any(|(d, _, _)| d.name == v.name)
        })
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// A claim Spark creates itself for `claimName=OnDemand`: `<prefix>-exec-<id>-pvc-<i>` or
/// `<prefix>-driver-pvc-<i>` (MountVolumesFeatureStep.scala).
fn spark_on_demand_claim(name: &str) -> bool {
    let Some((head, i)) = name.rsplit_once("-pvc-") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(i)
        && (head.ends_with("-driver")
            || head.rsplit_once("-exec-").is_some_and(|(_, id)| digits(id)))
}

fn write(pod: &mut Pod, container: usize, desired: &Desired<'_>, removed: &[String], env: &str) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    // Volumes: replace in place where the name exists, append the rest, drop the surplus.
    let vols = spec.volumes.get_or_insert_with(Vec::new);
    vols.retain(|v| !removed.contains(&v.name));
    for (vol, _, _) in &desired.dirs {
        match vols.iter_mut().find(|v| v.name == vol.name) {
            Some(v) => *v = vol.clone(),
            None => vols.push(vol.clone()),
        }
    }
    let Some(c) = spec.containers.get_mut(container) else {
        return;
    };
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| !removed.contains(&m.name));
    for (vol, path, _) in &desired.dirs {
        match mounts.iter_mut().find(|m| m.name == vol.name) {
            Some(m) => {
                m.mount_path = path.clone();
                // A subPath or read-only mount would not be the whole scratch volume.
                m.sub_path = m.sub_path.take().filter(|s| s.is_empty());
                m.read_only = m.read_only.filter(|r| !r);
            }
            None => mounts.push(VolumeMount {
                name: vol.name.clone(),
                mount_path: path.clone(),
                ..Default::default()
            }),
        }
    }
    super::set_env(
        c.env.get_or_insert_with(Vec::new),
        EnvVar {
            name: LOCAL_DIRS_ENV.into(),
            value: Some(env.to_string()),
            value_from: None,
        },
    );
}

fn source_kind(v: &LocalDirVolume) -> String {
    if let Some(h) = &v.host_path {
        format!("hostPath {}", h.path)
    } else if let Some(e) = &v.empty_dir {
        match e.medium {
            Some(EmptyDirMedium::Memory) => "emptyDir (Memory)".into(),
            None => "emptyDir".into(),
        }
    } else if let Some(e) = &v.ephemeral {
        format!("ephemeral {}", e.size.0)
    } else {
        "volume".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spark_pod::spark_container_index;
    use crate::test_fixtures::{fixture, FIXTURES};

    fn run(pod: &mut Pod, idx: usize, name: &str, ld: &LocalDirsPolicy, report: &mut Report) {
        let role = spark_pod::role(pod).unwrap();
        apply(pod, idx, role, name, ld, report);
    }

    fn policy(yaml: &str) -> LocalDirsPolicy {
        let ld: crate::policy::model::LocalDirs = serde_saphyr::from_str(yaml).unwrap();
        LocalDirsPolicy {
            volumes: ld.volumes.value.into_iter().map(|v| v.value).collect(),
            override_submitter: ld.override_submitter,
        }
    }

    const OVERRIDE_ONE_EMPTY_DIR: &str = "override: true\nvolumes:\n- emptyDir: {}\n";

    const THREE_NVME: &str = "volumes:\n- hostPath: {path: /mnt/nvme0}\n  mountPath: /tmp/mnt-1\n- hostPath: {path: /mnt/nvme1}\n  mountPath: /tmp/mnt-2\n- hostPath: {path: /mnt/nvme2}\n  mountPath: /tmp/mnt-3\n";

    fn check_invariants(pod: &Pod, idx: usize) {
        let spec = pod.spec.as_ref().unwrap();
        let vols = spec.volumes.as_ref().unwrap();
        let names: std::collections::BTreeSet<_> = vols.iter().map(|v| &v.name).collect();
        assert_eq!(names.len(), vols.len(), "unique volume names");
        let c = &spec.containers[idx];
        let mounts = c.volume_mounts.as_ref().unwrap();
        for m in mounts {
            assert!(names.contains(&m.name), "mount {} names a volume", m.name);
        }
        let paths: std::collections::BTreeSet<_> = mounts.iter().map(|m| &m.mount_path).collect();
        assert_eq!(paths.len(), mounts.len(), "unique mount paths");
        let dirs = spark_pod::local_dirs(pod, Some(c));
        let mut want: Vec<_> = dirs.iter().map(|d| d.mount_path.clone().unwrap()).collect();
        let mut env: Vec<_> = spark_pod::env_value(c, LOCAL_DIRS_ENV)
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        want.sort();
        env.sort();
        assert_eq!(
            env, want,
            "SPARK_LOCAL_DIRS lists exactly the local-dir mounts"
        );
    }

    #[test]
    fn replaces_spark_default_on_every_fixture_except_submitter_dirs() {
        for name in FIXTURES {
            let mut pod = fixture(name);
            let idx = spark_container_index(&pod).unwrap();
            let mut r = Report::default();
            run(&mut pod, idx, "nvme", &policy(THREE_NVME), &mut r);
            check_invariants(&pod, idx);
            let dirs =
                spark_pod::local_dirs(&pod, Some(&pod.spec.as_ref().unwrap().containers[idx]));
            if name.contains("hostpath") {
                assert_eq!(dirs.len(), 2, "{name}: submitter's dirs kept");
                assert_eq!(r.warnings.len(), 1);
            } else {
                assert_eq!(dirs.len(), 3, "{name}");
                assert_eq!(r.changes.len(), 1);
                let vols = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
                assert!(
                    vols.iter()
                        .all(|v| v.name != "spark-local-dir-1" || v.host_path.is_some()),
                    "default emptyDir replaced in place"
                );
            }
            let once = pod.clone();
            let mut again = Report::default();
            run(&mut pod, idx, "nvme", &policy(THREE_NVME), &mut again);
            assert_eq!(pod, once, "{name}: idempotent");
            assert!(again.changes.is_empty());
        }
    }

    #[test]
    fn a_local_dir_mounted_twice_at_the_policys_path_is_left_alone() {
        // Found by the engine fuzz target: Spark's default dir also mounted at the path the
        // policy wants; moving the first mount there would give the container two mounts at
        // one path, which the API server rejects.
        let mut pod = fixture("spark-3.5-executor-python.json");
        let c = &mut pod.spec.as_mut().unwrap().containers[0];
        c.volume_mounts.as_mut().unwrap().push(VolumeMount {
            name: "spark-local-dir-1".into(),
            mount_path: "/var/data/spark-local-dir-1".into(),
            ..Default::default()
        });
        let before = pod.clone();
        let mut r = Report::default();
        run(
            &mut pod,
            0,
            "one",
            &policy("volumes:\n- emptyDir: {}\n"),
            &mut r,
        );
        assert_eq!(pod, before);
        assert!(r.changes.is_empty());
        assert!(
            r.warnings[0]
                .contains("mount path /var/data/spark-local-dir-1 is used by another mount"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn override_replaces_submitter_dirs_and_drops_surplus() {
        let mut pod = fixture("spark-3.5-executor-hostpath-localdirs.json");
        let p =
            policy("override: true\nvolumes:\n- ephemeral: {size: 100Gi, storageClassName: gp3}\n");
        let mut r = Report::default();
        run(&mut pod, 0, "eph", &p, &mut r);
        check_invariants(&pod, 0);
        let spec = pod.spec.as_ref().unwrap();
        let locals: Vec<_> = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .filter(|v| v.name.starts_with(LOCAL_DIR_PREFIX))
            .collect();
        assert_eq!(locals.len(), 1);
        let claim = locals[0]
            .ephemeral
            .as_ref()
            .unwrap()
            .volume_claim_template
            .as_ref()
            .unwrap();
        assert_eq!(claim.spec.storage_class_name.as_deref(), Some("gp3"));
        assert_eq!(
            claim.spec.access_modes.as_ref().unwrap(),
            &["ReadWriteOnce"]
        );
        assert_eq!(
            claim
                .spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"]
                .0,
            "100Gi"
        );
        assert_eq!(
            spark_pod::env_value(&spec.containers[0], LOCAL_DIRS_ENV),
            Some("/var/data/spark-local-dir-1")
        );
        // The init container is untouched.
        assert!(spec.init_containers.as_ref().unwrap()[0]
            .volume_mounts
            .is_none());
    }

    #[test]
    fn refuses_mount_path_clash_and_removing_a_shared_volume() {
        let mut pod = fixture("spark-3.5-driver-python.json");
        let clash = policy("volumes:\n- emptyDir: {}\n  mountPath: /opt/spark/conf\n");
        let mut r = Report::default();
        run(&mut pod, 0, "p", &clash, &mut r);
        assert_eq!(r.warnings.len(), 1);
        assert!(r.changes.is_empty());
        assert_eq!(pod, fixture("spark-3.5-driver-python.json"));

        let mut pod = fixture("spark-3.5-executor-hostpath-localdirs.json");
        pod.spec.as_mut().unwrap().init_containers.as_mut().unwrap()[0].volume_mounts =
            Some(vec![VolumeMount {
                name: "spark-local-dir-2".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]);
        let before = pod.clone();
        let mut r = Report::default();
        run(&mut pod, 0, "p", &policy(OVERRIDE_ONE_EMPTY_DIR), &mut r);
        assert_eq!(pod, before);
        assert!(r.warnings[0].contains("spark-local-dir-2"));
    }

    fn env_of(pod: &Pod, idx: usize, name: &str) -> Option<String> {
        spark_pod::env_value(&pod.spec.as_ref().unwrap().containers[idx], name).map(String::from)
    }

    #[test]
    fn the_dir_order_is_spread_per_executor_and_stable_per_pod() {
        let mut firsts = std::collections::BTreeSet::new();
        for id in 1..=3 {
            let mut pod = fixture("spark-3.5-executor-python.json");
            pod.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("spark-exec-id".into(), id.to_string());
            let mut r = Report::default();
            run(&mut pod, 0, "nvme", &policy(THREE_NVME), &mut r);
            let env = env_of(&pod, 0, LOCAL_DIRS_ENV).unwrap();
            firsts.insert(env.split(',').next().unwrap().to_string());
            let once = pod.clone();
            run(&mut pod, 0, "nvme", &policy(THREE_NVME), &mut r);
            assert_eq!(pod, once, "exec {id}: a second pass keeps the order");
        }
        assert_eq!(
            firsts.len(),
            3,
            "each of three executors favours another disk"
        );
        // Pods without an executor id rotate by their name, the same way every time.
        let driver = fixture("spark-3.5-driver-python.json");
        assert_eq!(rotation(&driver), rotation(&driver.clone()));
    }

    #[test]
    fn same_source_ignores_what_the_api_server_defaults_after_the_patch() {
        let cases = [
            (
                "ephemeral: {size: 200Gi, storageClassName: gp3}",
                r#"{"name": "spark-local-dir-1", "ephemeral": {"volumeClaimTemplate": {"spec": {
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeMode": "Filesystem",
                    "resources": {"requests": {"storage": "200Gi"}}}}}}"#,
                true,
            ),
            (
                "hostPath: {path: /mnt/nvme0}",
                r#"{"name": "spark-local-dir-1", "hostPath": {"path": "/mnt/nvme0", "type": ""}}"#,
                true,
            ),
            (
                "emptyDir: {sizeLimit: 100Gi}",
                r#"{"name": "spark-local-dir-1", "emptyDir": {"sizeLimit": "107374182400"}}"#,
                true,
            ),
            (
                "emptyDir: {}",
                r#"{"name": "spark-local-dir-1", "emptyDir": {"medium": "Memory"}}"#,
                false,
            ),
            (
                "ephemeral: {size: 200Gi, storageClassName: gp3}",
                r#"{"name": "spark-local-dir-1", "ephemeral": {"volumeClaimTemplate": {"spec": {
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "gp2",
                    "resources": {"requests": {"storage": "200Gi"}}}}}}"#,
                false,
            ),
            (
                "hostPath: {path: /mnt/nvme0}",
                r#"{"name": "spark-local-dir-1", "emptyDir": {}}"#,
                false,
            ),
        ];
        for (want, volume, expected) in cases {
            let want: LocalDirVolume = serde_saphyr::from_str(want).unwrap();
            let v: Volume = serde_json::from_str(volume).unwrap();
            assert_eq!(same_source(&v, &want), expected, "{volume}");
        }
    }

    #[test]
    fn spark_executor_dirs_wins_so_local_dirs_are_left_alone() {
        let mut pod = fixture("spark-3.5-executor-python.json");
        pod.spec.as_mut().unwrap().containers[0]
            .env
            .as_mut()
            .unwrap()
            .push(EnvVar {
                name: EXECUTOR_DIRS_ENV.into(),
                value: Some("/scratch".into()),
                value_from: None,
            });
        let before = pod.clone();
        let mut r = Report::default();
        run(&mut pod, 0, "nvme", &policy(THREE_NVME), &mut r);
        assert_eq!(pod, before);
        assert!(r.warnings[0].contains("SPARK_EXECUTOR_DIRS"), "{r:?}");
    }

    #[test]
    fn a_driver_scoped_policy_warns_that_executors_inherit_its_dirs() {
        let mut pod = fixture("spark-3.5-driver-python.json");
        let mut r = Report::default();
        run(&mut pod, 0, "nvme", &policy(THREE_NVME), &mut r);
        assert_eq!(r.changes.len(), 1);
        assert!(r.warnings[0].contains("executors inherit"), "{r:?}");
    }

    #[test]
    fn override_that_drops_a_spark_created_claim_says_so() {
        let mut pod = fixture("spark-3.5-executor-hostpath-localdirs.json");
        let vols = pod.spec.as_mut().unwrap().volumes.as_mut().unwrap();
        let v = vols
            .iter_mut()
            .find(|v| v.name == "spark-local-dir-1")
            .unwrap();
        *v = serde_json::from_value(serde_json::json!({
            "name": "spark-local-dir-1",
            "persistentVolumeClaim": {"claimName": "shuffle-heavy-7ba4d7a1fe03f36d-exec-1-pvc-0"}
        }))
        .unwrap();
        let mut r = Report::default();
        run(&mut pod, 0, "p", &policy(OVERRIDE_ONE_EMPTY_DIR), &mut r);
        assert_eq!(r.changes.len(), 1);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("exec-1-pvc-0") && w.contains("Spark creates on demand")),
            "{r:?}"
        );
    }

    #[test]
    fn spark_on_demand_claim_names() {
        for (name, expected) in [
            ("app-7ba4d7a1fe03f36d-exec-12-pvc-0", true),
            ("app-7ba4d7a1fe03f36d-driver-pvc-1", true),
            ("team-scratch", false),
            ("app-exec-x-pvc-0", false),
            ("app-exec-1-pvc-", false),
        ] {
            assert_eq!(spark_on_demand_claim(name), expected, "{name}");
        }
    }
}
