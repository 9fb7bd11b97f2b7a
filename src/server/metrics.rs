//! Prometheus metrics of the server (names fixed by the team rules).

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::admission::Outcome;
use crate::spark_pod::SparkRole;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    outcome: &'static str,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
    /// `enforce`: the policy matched and was applied; `audit`: an Audit-mode policy that
    /// would have changed the pod.
    mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Latency buckets in seconds: an admission normally takes well under a millisecond.
const DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 10.0,
];

pub struct Metrics {
    registry: Registry,
    admissions: Family<AdmissionLabels, Counter>,
    duration: Histogram,
    policy_applications: Family<PolicyLabels, Counter>,
    policy_reloads: Family<ResultLabels, Counter>,
    certificate_reloads: Family<ResultLabels, Counter>,
    certificate_expiry: Gauge,
    policy_generation: Gauge,
    open_connections: Gauge,
    shed: Family<ReasonLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn result_label(ok: bool) -> ResultLabels {
    ResultLabels {
        result: if ok { "ok" } else { "failed" },
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("spark_admission");
        let admissions = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admissions",
            "Admission requests answered, by outcome and Spark role",
            admissions.clone(),
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "admission_duration",
            "Time from request to answer on /mutate",
            Unit::Seconds,
            duration.clone(),
        );
        let policy_applications = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_applications",
            "Pods a policy applied to (mode=enforce) or would have changed (mode=audit)",
            policy_applications.clone(),
        );
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy set loads from the policy directory",
            policy_reloads.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Serving certificate and key loads",
            certificate_reloads.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "notAfter of the active serving certificate (Unix time)",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        let policy_generation = Gauge::default();
        registry.register(
            "policy_set_generation",
            "Generation of the active policy set: 0 before the first good load, +1 per reload",
            policy_generation.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Connections open on the TLS port",
            open_connections.clone(),
        );
        let shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "shed_requests",
            "Requests refused without evaluation: overloaded (request-body budget spent, HTTP \
             503) or deadline (the caller's timeout passed while the server was busy, HTTP 504)",
            shed.clone(),
        );
        // Constant 1; the labels say which build answers (e.g. during a rollout).
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: crate::VERSION,
                revision: crate::REVISION,
            })
            .set(1);
        registry.register(
            "build_info",
            "Version and source revision of the running binary",
            build_info,
        );
        Metrics {
            open_connections,
            shed,
            registry,
            admissions,
            duration,
            policy_applications,
            policy_reloads,
            certificate_reloads,
            certificate_expiry,
            policy_generation,
        }
    }

    pub fn admission(
        &self,
        outcome: Outcome,
        role: Option<SparkRole>,
        applied: &[String],
        audited: &[String],
        seconds: f64,
    ) {
        self.admissions
            .get_or_create(&AdmissionLabels {
                outcome: outcome.as_str(),
                role: role.map_or("none", SparkRole::as_str),
            })
            .inc();
        self.duration.observe(seconds);
        let by_mode = applied
            .iter()
            .map(|p| (p, "enforce"))
            .chain(audited.iter().map(|p| (p, "audit")));
        for (policy, mode) in by_mode {
            self.policy_applications
                .get_or_create(&PolicyLabels {
                    policy: policy.clone(),
                    mode,
                })
                .inc();
        }
    }

    pub fn policy_reload(&self, ok: bool, generation: Option<u64>) {
        self.policy_reloads.get_or_create(&result_label(ok)).inc();
        if let Some(generation) = generation {
            self.policy_generation
                .set(i64::try_from(generation).unwrap_or(i64::MAX));
        }
    }

    pub fn certificate_reload(&self, ok: bool, not_after: Option<i64>) {
        self.certificate_reloads
            .get_or_create(&result_label(ok))
            .inc();
        if let Some(not_after) = not_after {
            self.certificate_expiry.set(not_after);
        }
    }

    pub fn connection_opened(&self) {
        self.open_connections.inc();
    }

    pub fn connection_closed(&self) {
        self.open_connections.dec();
    }

    /// Connections open on the TLS port now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.get()
    }

    /// A request refused without evaluation, and why (`overloaded`, `deadline`).
    pub fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// The registry in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_agreed_names() {
        let m = Metrics::new();
        m.admission(
            Outcome::Patched,
            Some(SparkRole::Executor),
            &["executors-on-spot".to_string()],
            &["memory-cap".to_string()],
            0.0002,
        );
        m.policy_reload(true, Some(3));
        m.certificate_reload(false, None);
        m.certificate_reload(true, Some(1_900_000_000));
        let text = m.encode();
        let build_info = format!(
            "spark_admission_build_info{{version=\"{}\",revision=\"{}\"}} 1",
            crate::VERSION,
            crate::REVISION
        );
        for want in [
            "spark_admission_admissions_total{outcome=\"patched\",role=\"executor\"} 1",
            "spark_admission_admission_duration_seconds_bucket{le=\"0.00025\"} 1",
            "spark_admission_policy_applications_total{policy=\"executors-on-spot\",mode=\"enforce\"} 1",
            "spark_admission_policy_applications_total{policy=\"memory-cap\",mode=\"audit\"} 1",
            "spark_admission_policy_reloads_total{result=\"ok\"} 1",
            "spark_admission_certificate_reloads_total{result=\"failed\"} 1",
            "spark_admission_certificate_expiry_timestamp_seconds 1900000000",
            "spark_admission_policy_set_generation 3",
            build_info.as_str(),
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
