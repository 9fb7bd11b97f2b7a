//! The mutations, one per concern. Each is a pure function over a typed Pod that leaves a
//! pod already in the desired state untouched, so applying it twice changes nothing.

pub mod local_dirs;
pub mod memory;
pub mod placement;
pub mod secret_env;
pub mod tolerations;

use k8s_openapi::api::core::v1::Pod;

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
            "no Spark container found (expected spark-kubernetes-driver, spark-kubernetes-executor or executor): local dirs, secret env and memory were not changed".into(),
        ),
        None => {}
        Some(idx) => {
            if let Some(ld) = &eff.local_dirs {
                local_dirs::apply(pod, idx, ld.policy, ld.value, &mut report);
            }
            secret_env::apply(pod, idx, &eff.secret_env, &mut report)?;
            if eff.touches_memory() {
                memory::apply(pod, idx, role, eff, &mut report)?;
            }
        }
    }
    Ok(report)
}
