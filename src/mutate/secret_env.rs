//! Secret env refs: env vars on the Spark container filled from Secret keys
//! (`valueFrom.secretKeyRef`). The engine never reads Secret values.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Pod, SecretKeySelector};

use super::{Denial, Report};
use crate::policy::model::OnConflict;
use crate::policy::SecretEnv;
use crate::selection::Sourced;

fn desired(s: &SecretEnv) -> EnvVar {
    EnvVar {
        name: s.name.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: s.secret_name.to_string(),
                key: s.key.to_string(),
                optional: s.optional,
            }),
            ..Default::default()
        }),
    }
}

/// How an existing env var is set, for messages (never its value).
fn source_of(e: &EnvVar) -> String {
    match (&e.value, &e.value_from) {
        (
            _,
            Some(EnvVarSource {
                secret_key_ref: Some(r),
                ..
            }),
        ) => {
            format!("from Secret {} key {}", r.name, r.key)
        }
        (
            _,
            Some(EnvVarSource {
                config_map_key_ref: Some(r),
                ..
            }),
        ) => {
            format!("from ConfigMap {} key {}", r.name, r.key)
        }
        (_, Some(_)) => "from a field or resource reference".into(),
        (Some(_), None) | (None, None) => "to a literal value".into(),
    }
}

/// Inject each entry on the Spark container. What counts is the entry the kubelet uses (the
/// last of a name): a later entry — from a pod template, or appended by a webhook ordered
/// after this one — overrides an earlier injection, so it is the conflict `onConflict`
/// decides, and an injection leaves the name listed once.
pub fn apply(
    pod: &mut Pod,
    container: usize,
    entries: &[Sourced<'_, SecretEnv>],
    report: &mut Report,
) -> Result<(), Denial> {
    let Some(c) = pod
        .spec
        .as_mut()
        .and_then(|s| s.containers.get_mut(container))
    else {
        return Ok(());
    };
    let cname = c.name.clone();
    let env = c.env.get_or_insert_with(Vec::new);
    for entry in entries {
        inject(env, &cname, entry, report)?;
    }
    Ok(())
}

fn inject(
    env: &mut Vec<EnvVar>,
    cname: &str,
    entry: &Sourced<'_, SecretEnv>,
    report: &mut Report,
) -> Result<(), Denial> {
    let want = desired(entry.value);
    let name = entry.value.name.as_str();
    let (secret, key, policy) = (
        entry.value.secret_name.as_str(),
        entry.value.key.as_str(),
        entry.policy,
    );
    let Some(existing) = env.iter().rev().find(|e| e.name == name) else {
        env.push(want);
        report.changes.push(format!(
            "env {name} from Secret {secret} key {key} added to container {cname} (policy {policy})"
        ));
        return Ok(());
    };
    if *existing == want {
        let shadowed = super::shadowed_env(env, name);
        if super::set_env(env, want) {
            report.changes.push(format!(
                "env {name} on container {cname}: {shadowed} shadowed duplicate(s) removed (policy {policy})"
            ));
        }
        return Ok(());
    }
    let was = source_of(existing);
    match entry.value.on_conflict {
        OnConflict::Keep => report.warnings.push(format!(
            "env {name} on container {cname} is already set {was}; kept (policy {policy} has onConflict: keep)"
        )),
        OnConflict::Override => {
            super::set_env(env, want);
            report.changes.push(format!(
                "env {name} on container {cname} was set {was}; now from Secret {secret} key {key} (policy {policy})"
            ));
            report.warnings.push(format!(
                "env {name} on {cname}: the pod's value ({was}) overridden (policy {policy})"
            ));
        }
        OnConflict::Deny => {
            return Err(Denial {
                policy: policy.to_string(),
                message: format!(
                    "env {name} on container {cname} is set {was}, and policy {policy} injects it from Secret {secret} key {key} with onConflict: deny"
                ),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::names::{EnvName, SecretKey, SecretName};
    use crate::spark_pod::spark_container_index;
    use crate::test_fixtures::fixture;

    fn entry(name: &str, key: &str, on_conflict: OnConflict) -> SecretEnv {
        SecretEnv {
            name: EnvName::new(name).unwrap(),
            secret_name: SecretName::new("app").unwrap(),
            key: SecretKey::new(key).unwrap(),
            optional: None,
            on_conflict,
        }
    }

    fn env_of(pod: &Pod, idx: usize) -> Vec<EnvVar> {
        pod.spec.as_ref().unwrap().containers[idx]
            .env
            .clone()
            .unwrap()
    }

    #[test]
    fn conflict_table_on_the_podtemplate_fixture() {
        // The fixture has a literal APP_ID and a secretKeyRef APP_SECRET (app/app_secret).
        struct Case {
            entry: SecretEnv,
            result: Result<&'static str, ()>, // Ok(what APP_ID / the var looks like afterwards)
            changes: usize,
            warnings: usize,
        }
        let cases = [
            Case {
                entry: entry("APP_ID", "app_id", OnConflict::Keep),
                result: Ok("literal"),
                changes: 0,
                warnings: 1,
            },
            // Overriding the pod's own value is a change the submitter should hear about.
            Case {
                entry: entry("APP_ID", "app_id", OnConflict::Override),
                result: Ok("secret"),
                changes: 1,
                warnings: 1,
            },
            Case {
                entry: entry("APP_ID", "app_id", OnConflict::Deny),
                result: Err(()),
                changes: 0,
                warnings: 0,
            },
            // Same secret ref already there: no conflict, even with deny.
            Case {
                entry: entry("APP_SECRET", "app_secret", OnConflict::Deny),
                result: Ok("secret"),
                changes: 0,
                warnings: 0,
            },
            Case {
                entry: entry("BLOB_STORAGE_URL", "blob_storage_url", OnConflict::Deny),
                result: Ok("secret"),
                changes: 1,
                warnings: 0,
            },
        ];
        for case in cases {
            let mut pod = fixture("spark-3.5-driver-podtemplate-sidecar.json");
            let idx = spark_container_index(&pod).unwrap();
            let before = env_of(&pod, idx).len();
            let mut report = Report::default();
            let list = [Sourced {
                policy: "p",
                value: &case.entry,
            }];
            let result = apply(&mut pod, idx, &list, &mut report);
            let name = case.entry.name.as_str();
            match case.result {
                Err(()) => {
                    let denial = result.unwrap_err();
                    assert!(
                        denial.message.contains(name) && denial.message.contains("literal"),
                        "{}",
                        denial.message
                    );
                    assert!(
                        !denial.message.contains("literal-not-secret"),
                        "never print env values"
                    );
                }
                Ok(shape) => {
                    result.unwrap();
                    let env = env_of(&pod, idx);
                    let var = env.iter().find(|e| e.name == name).unwrap();
                    match shape {
                        "literal" => assert!(var.value.is_some() && var.value_from.is_none()),
                        _ => {
                            assert!(var.value.is_none());
                            assert_eq!(
                                var.value_from
                                    .as_ref()
                                    .unwrap()
                                    .secret_key_ref
                                    .as_ref()
                                    .unwrap()
                                    .key,
                                case.entry.key.as_str()
                            );
                        }
                    }
                    let names: std::collections::BTreeSet<_> =
                        env.iter().map(|e| &e.name).collect();
                    assert_eq!(names.len(), env.len(), "no duplicate env names");
                    assert!(env.len() == before || env.len() == before + 1);
                }
            }
            assert_eq!(
                report.changes.len(),
                case.changes,
                "{name}: {:?}",
                report.changes
            );
            assert_eq!(
                report.warnings.len(),
                case.warnings,
                "{name}: {:?}",
                report.warnings
            );
            // The sidecar is never touched.
            assert!(pod.spec.as_ref().unwrap().containers[0].env.is_none());
        }
    }

    #[test]
    fn idempotent() {
        let mut pod = fixture("spark-3.5-executor-python.json");
        let e = entry("TENANT_ID", "tenant_id", OnConflict::Keep);
        let list = [Sourced {
            policy: "p",
            value: &e,
        }];
        let mut r = Report::default();
        apply(&mut pod, 0, &list, &mut r).unwrap();
        let once = pod.clone();
        let mut r2 = Report::default();
        apply(&mut pod, 0, &list, &mut r2).unwrap();
        assert_eq!(pod, once);
        assert!(r2.changes.is_empty() && r2.warnings.is_empty());
    }
}
