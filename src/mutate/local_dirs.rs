//! Local dirs: the scratch volumes Spark uses for shuffle and spill.
//!
//! Spark adds its own `emptyDir` named `spark-local-dir-1` and lists the mount paths in
//! `SPARK_LOCAL_DIRS`; a volume missing from that list is never used, and a second volume
//! of an existing name is rejected by the API server. So the policy's volumes take the
//! names `spark-local-dir-1..N` (replacing Spark's default in place), are mounted in the
//! Spark container only, and `SPARK_LOCAL_DIRS` is rewritten to exactly their mount paths.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, EnvVar, EphemeralVolumeSource, HostPathVolumeSource,
    PersistentVolumeClaimSpec, PersistentVolumeClaimTemplate, Pod, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Report;
use crate::policy::model::{AccessMode, EmptyDirMedium, LocalDirVolume};
use crate::policy::LocalDirsPolicy;
use crate::spark_pod::{self, LOCAL_DIRS_ENV, LOCAL_DIR_PREFIX};

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
        let modes = if e.access_modes.is_empty() {
            vec![AccessMode::ReadWriteOnce]
        } else {
            e.access_modes.clone()
        };
        vol.ephemeral = Some(EphemeralVolumeSource {
            volume_claim_template: Some(PersistentVolumeClaimTemplate {
                metadata: None,
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(modes.iter().map(|m| m.as_str().to_string()).collect()),
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

/// Whether two volumes have the same source (names aside).
fn same_source(a: &Volume, b: &Volume) -> bool {
    let strip = |v: &Volume| Volume {
        name: String::new(),
        ..v.clone()
    };
    strip(a) == strip(b)
}

pub fn apply(
    pod: &mut Pod,
    container: usize,
    policy: &str,
    ld: &LocalDirsPolicy,
    report: &mut Report,
) {
    let desired: Vec<(Volume, String)> = ld
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let n = i as u32 + 1;
            (
                volume_for(v, format!("{LOCAL_DIR_PREFIX}{n}")),
                v.mount_path_for(n),
            )
        })
        .collect();
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    let Some(c) = spec.containers.get(container) else {
        return;
    };
    let current = spark_pod::local_dirs(pod, Some(c));
    let volumes = spec.volumes.clone().unwrap_or_default();
    let env_now = spark_pod::env_value(c, LOCAL_DIRS_ENV).map(str::to_string);
    let want_env = desired
        .iter()
        .map(|(_, p)| p.as_str())
        .collect::<Vec<_>>()
        .join(",");

    // Already as the policy wants: nothing to do, nothing to say.
    let in_place = current.len() == desired.len()
        && desired.iter().all(|(vol, path)| {
            volumes
                .iter()
                .any(|v| v.name == vol.name && same_source(v, vol))
                && current
                    .iter()
                    .any(|d| d.volume_name == vol.name && d.mount_path.as_deref() == Some(path))
        })
        && env_now.as_deref() == Some(want_env.as_str());
    if in_place {
        return;
    }

    let submitters_own =
        !current.is_empty() && !spark_pod::has_only_spark_default_local_dir(pod, Some(c));
    if submitters_own && !ld.override_submitter {
        report.warnings.push(format!(
            "local dirs: the pod already has its own {} local dir(s) ({}); kept (policy {policy} has override: false)",
            current.len(),
            current.iter().map(|d| d.volume_name.as_str()).collect::<Vec<_>>().join(", ")
        ));
        return;
    }

    // Volumes that will be gone: local dirs beyond the policy's count.
    let removed: Vec<&str> = current
        .iter()
        .filter(|d| d.index as usize > desired.len())
        .map(|d| d.volume_name.as_str())
        .collect();
    // Refuse to break other containers: they must not mount what we remove.
    let other_mounts: Vec<&str> = spec
        .containers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != container)
        .map(|(_, c)| c)
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.name.as_str())
        .collect();
    if let Some(name) = removed.iter().find(|n| other_mounts.contains(n)) {
        report.warnings.push(format!(
            "local dirs: volume {name} is also mounted by another container; local dirs not changed (policy {policy})"
        ));
        return;
    }
    // Mount paths must stay unique in the Spark container.
    let taken: Vec<&str> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| spark_pod::local_dir_index(&m.name).is_none())
        .map(|m| m.mount_path.as_str())
        .collect();
    if let Some((_, path)) = desired.iter().find(|(_, p)| taken.contains(&p.as_str())) {
        report.warnings.push(format!(
            "local dirs: mount path {path} is already used by another volume in container {}; local dirs not changed (policy {policy})",
            c.name
        ));
        return;
    }

    let spec = pod.spec.get_or_insert_with(Default::default);
    // Volumes: replace in place where the name exists, append the rest, drop the surplus.
    let vols = spec.volumes.get_or_insert_with(Vec::new);
    vols.retain(|v| !removed.contains(&v.name.as_str()));
    for (vol, _) in &desired {
        match vols.iter_mut().find(|v| v.name == vol.name) {
            Some(v) => *v = vol.clone(),
            None => vols.push(vol.clone()),
        }
    }
    let Some(c) = spec.containers.get_mut(container) else {
        return;
    };
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| !removed.contains(&m.name.as_str()));
    for (vol, path) in &desired {
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
    let env = c.env.get_or_insert_with(Vec::new);
    match env.iter_mut().find(|e| e.name == LOCAL_DIRS_ENV) {
        Some(e) => {
            e.value = Some(want_env.clone());
            e.value_from = None;
        }
        None => env.push(EnvVar {
            name: LOCAL_DIRS_ENV.into(),
            value: Some(want_env.clone()),
            value_from: None,
        }),
    }
    report.changes.push(format!(
        "local dirs: {} ({}) mounted at {want_env} in container {} (policy {policy})",
        desired.len(),
        ld.volumes
            .iter()
            .map(source_kind)
            .collect::<Vec<_>>()
            .join(", "),
        c.name
    ));
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

    fn policy(yaml: &str) -> LocalDirsPolicy {
        let ld: crate::policy::model::LocalDirs = serde_saphyr::from_str(yaml).unwrap();
        LocalDirsPolicy {
            volumes: ld.volumes.value.into_iter().map(|v| v.value).collect(),
            override_submitter: ld.override_submitter,
        }
    }

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
            apply(&mut pod, idx, "nvme", &policy(THREE_NVME), &mut r);
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
            apply(&mut pod, idx, "nvme", &policy(THREE_NVME), &mut again);
            assert_eq!(pod, once, "{name}: idempotent");
            assert!(again.changes.is_empty());
        }
    }

    #[test]
    fn override_replaces_submitter_dirs_and_drops_surplus() {
        let mut pod = fixture("spark-3.5-executor-hostpath-localdirs.json");
        let p =
            policy("override: true\nvolumes:\n- ephemeral: {size: 100Gi, storageClassName: gp3}\n");
        let mut r = Report::default();
        apply(&mut pod, 0, "eph", &p, &mut r);
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
        apply(&mut pod, 0, "p", &clash, &mut r);
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
        apply(
            &mut pod,
            0,
            "p",
            &policy("override: true\nvolumes:\n- emptyDir: {}\n"),
            &mut r,
        );
        assert_eq!(pod, before);
        assert!(r.warnings[0].contains("spark-local-dir-2"));
    }
}
