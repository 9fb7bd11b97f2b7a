//! The mutations, one per concern. Each is a pure function over a typed Pod that leaves a
//! pod already in the desired state untouched, so applying it twice changes nothing.

pub mod local_dirs;
pub mod memory;
pub mod placement;
pub mod secret_env;
pub mod tolerations;

use k8s_openapi::api::core::v1::{EnvVar, Pod};

use crate::selection::Effective;
use crate::spark_pod::{self, SparkRole};

/// What a mutation did, and what it chose not to do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// One line per change, e.g. "nodeSelector karpenter.sh/capacity-type=spot (policy x)".
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
}

/// A policy rejects the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub policy: String,
    pub message: String,
}

/// Apply the effective policy to `pod`: placement, tolerations, local dirs, secret env,
/// memory, in that order.
pub fn apply(pod: &mut Pod, role: SparkRole, eff: &Effective<'_>) -> Result<Report, Denial> {
    let mut report = Report::default();
    if let Some(p) = &eff.placement {
        placement::apply(pod, p.policy, p.value, &mut report)?;
    }
    tolerations::apply(pod, &eff.tolerations, &mut report);

    let needs_container =
        eff.local_dirs.is_some() || !eff.secret_env.is_empty() || eff.touches_memory();
    let spark_container = spark_pod::spark_container_index(pod);
    match spark_container {
        None if needs_container => report.warnings.push(
            "no single Spark container (by argument driver/executor, SPARK_APPLICATION_ID or name): local dirs, secret env, memory unchanged".into(),
        ),
        None => {}
        Some(idx) => {
            if let Some(ld) = &eff.local_dirs {
                local_dirs::apply(pod, idx, role, ld.policy, ld.value, &mut report);
            }
            secret_env::apply(pod, idx, &eff.secret_env, &mut report)?;
            if eff.touches_memory() {
                memory::apply(pod, idx, role, eff, &mut report)?;
            }
        }
    }
    Ok(report)
}

/// Make `want` the entry the kubelet uses for its name — the last one
/// ([`spark_pod::effective_env`]) — and drop the entries it shadows, so the container lists
/// the name once. Returns whether the list changed.
pub(crate) fn set_env(env: &mut Vec<EnvVar>, want: EnvVar) -> bool {
    let Some(last) = env.iter().rposition(|e| e.name == want.name) else {
        env.push(want);
        return true;
    };
    let shadowed = shadowed_env(env, &want.name);
    let changed = env[last] != want || shadowed > 0;
    let name = want.name.clone();
    env[last] = want;
    if shadowed > 0 {
        let mut i = 0;
        env.retain(|e| {
            let keep = i >= last || e.name != name;
            i += 1;
            keep
        });
    }
    changed
}

/// How many entries of `name` the last one shadows.
pub(crate) fn shadowed_env(env: &[EnvVar], name: &str) -> usize {
    env.iter()
        .filter(|e| e.name == name)
        .count()
        .saturating_sub(1)
}
