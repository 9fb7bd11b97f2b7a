//! Memory: bounds on the overhead Spark adds on top of the JVM heap, the limit rule, and a
//! cap on the pod's memory.
//!
//! Spark sizes the container as request = limit = heap + overhead, with
//! overhead = max(factor × heap, 384Mi) unless set explicitly (factor 0.1 for JVM jobs,
//! 0.4 for Python/R). The JVM is started with `-Xmx<heap>`, so changing the container's
//! memory changes only the overhead. Executors carry the heap in `SPARK_EXECUTOR_MEMORY`;
//! drivers carry none, so it is inferred by inverting Spark's formula where that gives a
//! single plausible answer.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Denial, Report};
use crate::policy::model::{LimitMode, MaxAction};
use crate::quantity::{Bytes, MI};
use crate::selection::Effective;
use crate::spark_pod::{self, SparkRole};

/// Spark's minimum overhead (`spark.*.minMemoryOverhead`, default 384m).
pub const SPARK_MIN_OVERHEAD: Bytes = Bytes::mib(384);

/// Set on a driver whose memory was changed: the heap inferred from its original request,
/// which the changed request no longer reveals. A second pass reads it instead of inferring
/// again, so the result is stable.
pub const DRIVER_HEAP_ANNOTATION: &str = "spark-admission.dev/driver-heap";

/// Heaps are whole multiples of this in practice (`2g`, `4g`, `512m`, `1536m`).
const HEAP_GRANULE_MIB: u64 = 128;

/// The driver heap that explains `total` under Spark's default overhead rule, when exactly
/// one heap that is a whole multiple of 128Mi does. An explicit `memoryOverhead` can make
/// other heaps fit the same total (1g heap + 1g overhead = 2048Mi, which a 1463Mi heap
/// under factor 0.4 also gives), so anything else is "unknown".
pub fn infer_driver_heap(total: Bytes, non_jvm: bool) -> Option<Bytes> {
    if !total.0.is_multiple_of(MI) {
        return None;
    }
    let t = total.0 / MI;
    let factor = if non_jvm { 0.4 } else { 0.1 };
    let min = SPARK_MIN_OVERHEAD.0 / MI;
    // Spark: max((factor * heapMiB).toLong, minOverheadMiB), in doubles like here.
    let fits = |h: u64| h + ((factor * h as f64) as u64).max(min) == t;
    // h + overhead(h) is strictly increasing in h, so at most one heap fits; look where the
    // minimum applies (t - 384) and where the factor does (≈ t / (1 + factor)).
    let approx = (t as f64 / (1.0 + factor)) as u64;
    let mut fitting: Vec<u64> = (approx.saturating_sub(3)..=approx + 3)
        .chain(std::iter::once(t.saturating_sub(min)))
        .filter(|&h| h > 0 && h < t && fits(h))
        .collect();
    fitting.sort_unstable();
    fitting.dedup();
    match fitting.as_slice() {
        [h] if h.is_multiple_of(HEAP_GRANULE_MIB) => Some(Bytes::mib(*h)),
        _ => None,
    }
}

fn floor_mib(b: Bytes) -> Bytes {
    Bytes(b.0 / MI * MI)
}

fn parse(q: Option<String>, what: &str, cname: &str, report: &mut Report) -> Option<Bytes> {
    let q = q?;
    match Bytes::parse_quantity(&q) {
        Ok(b) => Some(b),
        Err(e) => {
            report
                .warnings
                .push(format!("memory: {what} of container {cname}: {e}"));
            None
        }
    }
}

/// A container's memory footprint: its limit, or its request when it has no limit.
fn footprint(c: &Container) -> Bytes {
    let (req, lim) = spark_pod::memory_of(c);
    let p = |q: Option<String>| q.and_then(|q| Bytes::parse_quantity(&q).ok());
    p(lim).or(p(req)).unwrap_or_default()
}

fn set_memory(c: &mut Container, request: Bytes, limit: Option<Bytes>) {
    let res = c
        .resources
        .get_or_insert_with(ResourceRequirements::default);
    let (old_req, old_lim) = (
        res.requests.as_ref().and_then(|m| m.get("memory")).cloned(),
        res.limits.as_ref().and_then(|m| m.get("memory")).cloned(),
    );
    let same = |q: &Option<Quantity>, b: Bytes| {
        q.as_ref()
            .and_then(|q| Bytes::parse_quantity(&q.0).ok())
            .is_some_and(|x| x == b)
    };
    // Rewrite only what changed in value, so "8Gi" is not turned into "8192Mi".
    if !same(&old_req, request) {
        res.requests
            .get_or_insert_with(BTreeMap::new)
            .insert("memory".into(), Quantity(request.to_mib_quantity()));
    }
    match limit {
        Some(l) if !same(&old_lim, l) => {
            res.limits
                .get_or_insert_with(BTreeMap::new)
                .insert("memory".into(), Quantity(l.to_mib_quantity()));
        }
        Some(_) => {}
        None => {
            if let Some(limits) = res.limits.as_mut() {
                limits.remove("memory");
                if limits.is_empty() {
                    res.limits = None;
                }
            }
        }
    }
}

fn recorded_driver_heap(pod: &Pod) -> Option<Bytes> {
    let text = pod
        .metadata
        .annotations
        .as_ref()?
        .get(DRIVER_HEAP_ANNOTATION)?;
    Bytes::parse_quantity(text).ok()
}

fn show(b: Option<Bytes>) -> String {
    b.map_or("none".into(), |b| b.to_string())
}

pub fn apply(
    pod: &mut Pod,
    container: usize,
    role: SparkRole,
    eff: &Effective<'_>,
    report: &mut Report,
) -> Result<(), Denial> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let Some(c) = spec.containers.get(container) else {
        return Ok(());
    };
    let cname = c.name.clone();
    let (req_text, lim_text) = spark_pod::memory_of(c);
    let limit = parse(lim_text, "memory limit", &cname, report);
    // The API server defaults a missing request to the limit.
    let Some(request) = parse(req_text, "memory request", &cname, report).or(limit) else {
        report.warnings.push(format!(
            "memory: container {cname} has no memory request; memory policies not applied"
        ));
        return Ok(());
    };
    let heap = match role {
        SparkRole::Executor => match spark_pod::executor_heap(c) {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => {
                report.warnings.push(format!("memory: {e}"));
                None
            }
            None => None,
        },
        SparkRole::Driver => recorded_driver_heap(pod)
            .or_else(|| infer_driver_heap(request, spark_pod::is_non_jvm_driver(c))),
    };
    let min_overhead = eff
        .overhead
        .and_then(|o| o.value.min)
        .map_or(SPARK_MIN_OVERHEAD, |m| m.0);

    let mut new_request = request;
    let mut notes = vec![];
    if let Some(o) = eff.overhead {
        match heap {
            None => report.warnings.push(format!(
                "memory: the JVM heap of container {cname} is not known ({}); overhead left at request {request} (policy {})",
                match role {
                    SparkRole::Executor => "no usable SPARK_EXECUTOR_MEMORY",
                    SparkRole::Driver => "the driver's request does not identify a single heap",
                },
                o.policy
            )),
            Some(h) if request < h => report.warnings.push(format!(
                "memory: container {cname} requests {request}, less than its heap {h}; overhead left alone (policy {})",
                o.policy
            )),
            Some(h) => {
                let current = request.saturating_sub(h);
                let by_factor = o
                    .value
                    .factor
                    .map(|f| floor_mib(Bytes((f * h.0 as f64) as u64)));
                let cap = [o.value.max.map(|m| m.0), by_factor]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|c| c.max(min_overhead));
                let bounded = if current < min_overhead {
                    min_overhead
                } else {
                    cap.filter(|c| current > *c).unwrap_or(current)
                };
                if bounded != current {
                    new_request = h.saturating_add(bounded);
                    notes.push(format!(
                        "overhead {current} → {bounded} over heap {h} (policy {})",
                        o.policy
                    ));
                }
            }
        }
    }

    let mut new_limit = match eff.limit {
        Some(l) => {
            let v = match l.value.mode {
                LimitMode::EqualToRequest => Some(new_request),
                LimitMode::RequestPlusHeadroom => Some(
                    new_request.saturating_add(l.value.headroom.map(|h| h.0).unwrap_or_default()),
                ),
                LimitMode::NoLimit => None,
            };
            if v != limit {
                notes.push(format!(
                    "limit rule {:?} (policy {})",
                    l.value.mode, l.policy
                ));
            }
            v
        }
        // Keep the pod's own headroom above the request.
        None => limit.map(|l| new_request.saturating_add(l.saturating_sub(request))),
    };

    if let Some(max) = eff.max_pod_memory {
        let cap = max.value.value.0;
        let others: Bytes = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != container)
            .fold(Bytes(0), |acc, (_, c)| acc.saturating_add(footprint(c)));
        let spark = new_limit.unwrap_or(new_request).max(new_request);
        let total = others.saturating_add(spark);
        if total > cap {
            let figures = format!(
                "pod memory {total} (container {cname} {spark}{}) exceeds maxPodMemory {cap}",
                if others.0 > 0 {
                    format!(" + other containers {others}")
                } else {
                    String::new()
                }
            );
            let deny = |why: String| Denial {
                policy: max.policy.to_string(),
                message: format!("policy {}: {figures}{why}", max.policy),
            };
            if max.value.action == MaxAction::Deny {
                return Err(deny(String::new()));
            }
            let budget = floor_mib(cap.saturating_sub(others));
            let Some(h) = heap else {
                return Err(deny(
                    "; it cannot be clamped because the JVM heap is not known".into(),
                ));
            };
            let needed = h.saturating_add(min_overhead);
            if budget < needed {
                return Err(deny(format!(
                    "; it cannot be clamped: heap {h} + minimum overhead {min_overhead} = {needed} does not fit in {budget}"
                )));
            }
            new_request = new_request.min(budget);
            new_limit = new_limit.map(|l| l.min(budget));
            notes.push(format!(
                "clamped to maxPodMemory {cap} (policy {})",
                max.policy
            ));
        }
    }

    // Requests never exceed limits.
    if let Some(l) = new_limit {
        if l < new_request {
            new_limit = Some(new_request);
        }
    }
    if new_request == request && new_limit == limit {
        return Ok(());
    }
    let Some(c) = pod
        .spec
        .as_mut()
        .and_then(|s| s.containers.get_mut(container))
    else {
        return Ok(());
    };
    set_memory(c, new_request, new_limit);
    if let (SparkRole::Driver, Some(h), None) = (role, heap, recorded_driver_heap(pod)) {
        pod.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DRIVER_HEAP_ANNOTATION.into(), h.to_string());
    }
    report.changes.push(format!(
        "memory of container {cname}: request {request} → {new_request}, limit {} → {}; {}",
        show(limit),
        show(new_limit),
        notes.join("; ")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;
    use crate::selection::merge;
    use crate::test_fixtures::fixture;

    #[test]
    fn driver_heap_inference_table() {
        let cases = [
            // (total MiB, python?, expected heap MiB)
            (5734, true, Some(4096)),  // driver-python fixture: 4g × 1.4
            (2432, false, Some(2048)), // driver-jvm fixture: 2g + 384
            (2048, true, None),        // podtemplate fixture: only 1463Mi fits
            (1408, false, Some(1024)), // 1g + 384 (minimum applies)
            (9011, false, Some(8192)), // 8g × 1.1
            (1000, false, None),       // 616 fits, not a multiple of 128
        ];
        for (total, python, expected) in cases {
            assert_eq!(
                infer_driver_heap(Bytes::mib(total), python),
                expected.map(Bytes::mib),
                "{total}Mi python={python}"
            );
        }
        assert_eq!(infer_driver_heap(Bytes(5734 * MI + 1), true), None);
    }

    fn run(pod_name: &str, memory_yaml: &str) -> (Pod, Result<Report, Denial>) {
        let yaml = format!(
            "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {{name: mem}}\nspec:\n  match: {{roles: [driver, executor]}}\n  memory:\n{memory_yaml}\n"
        );
        let set = PolicySet::from_sources(&[("m.yaml", yaml.as_str())]).unwrap();
        let refs: Vec<_> = set.policies().iter().collect();
        let eff = merge(&refs);
        let mut pod = fixture(pod_name);
        let role = spark_pod::role(&pod).unwrap();
        let idx = spark_pod::spark_container_index(&pod).unwrap();
        let mut report = Report::default();
        let r = apply(&mut pod, idx, role, &eff, &mut report).map(|_| report);
        (pod, r)
    }

    fn mem(pod: &Pod) -> (Option<String>, Option<String>) {
        let idx = spark_pod::spark_container_index(pod).unwrap();
        spark_pod::memory_of(&pod.spec.as_ref().unwrap().containers[idx])
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    #[test]
    fn overhead_cap_table() {
        let cap = "    overhead: {factor: 0.15, max: 4Gi}";
        let cases = [
            // python driver 4g: 1638Mi overhead → 614Mi (0.15 × 4096 = 614.4)
            (
                "spark-3.5-driver-python.json",
                cap,
                s("4710Mi"),
                s("4710Mi"),
            ),
            // JVM driver 2g + 384Mi: within bounds (minimum 384Mi beats 0.15 × 2048)
            ("spark-3.5-driver-jvm.json", cap, s("2432Mi"), s("2432Mi")),
            // executor 8g with 819Mi: within 0.15 × 8192 = 1228Mi
            (
                "spark-3.5-executor-python.json",
                cap,
                s("9011Mi"),
                s("9011Mi"),
            ),
            // executor 16g × 1.4 = 22937Mi → 16384 + 2457
            (
                "spark-3.5-executor-hostpath-localdirs.json",
                cap,
                s("18841Mi"),
                s("18841Mi"),
            ),
            // a max below the factor's figure wins
            (
                "spark-3.5-executor-hostpath-localdirs.json",
                "    overhead: {factor: 0.4, max: 1Gi}",
                s("17408Mi"),
                s("17408Mi"),
            ),
            // a minimum raises a small overhead
            (
                "spark-3.5-executor-python.json",
                "    overhead: {min: 1Gi}",
                s("9216Mi"),
                s("9216Mi"),
            ),
            // headroom rule on top
            (
                "spark-3.5-executor-python.json",
                "    limit: {mode: RequestPlusHeadroom, headroom: 1Gi}",
                s("9011Mi"),
                s("10035Mi"),
            ),
            (
                "spark-3.5-executor-python.json",
                "    limit: {mode: NoLimit}",
                s("9011Mi"),
                None,
            ),
            // unknown driver heap: overhead untouched
            (
                "spark-3.5-driver-podtemplate-sidecar.json",
                cap,
                s("2048Mi"),
                s("2048Mi"),
            ),
        ];
        for (name, yaml, req, lim) in cases {
            let (pod, r) = run(name, yaml);
            let report = r.unwrap();
            assert_eq!(
                mem(&pod),
                (req.clone(), lim.clone()),
                "{name} {yaml}: {report:?}"
            );
            if name.contains("podtemplate") {
                assert_eq!(report.warnings.len(), 1, "{report:?}");
            }
        }
    }

    #[test]
    fn max_pod_memory_deny_and_clamp() {
        let (_, r) = run(
            "spark-3.5-executor-python.json",
            "    maxPodMemory: {value: 8Gi, action: deny}",
        );
        let d = r.unwrap_err();
        assert_eq!(d.policy, "mem");
        assert!(
            d.message.contains("9011Mi") && d.message.contains("8Gi"),
            "{}",
            d.message
        );

        // 16g heap executor clamped to 20Gi: 22937Mi → 20480Mi.
        let (pod, r) = run(
            "spark-3.5-executor-hostpath-localdirs.json",
            "    maxPodMemory: {value: 20Gi, action: clamp}",
        );
        r.unwrap();
        assert_eq!(mem(&pod), (s("20480Mi"), s("20480Mi")));

        // Clamp below heap + minimum overhead is refused.
        let (_, r) = run(
            "spark-3.5-executor-hostpath-localdirs.json",
            "    maxPodMemory: {value: 16Gi, action: clamp}",
        );
        assert!(r.unwrap_err().message.contains("cannot be clamped"));

        // Clamp with an unknown heap is refused rather than starving the JVM.
        let (_, r) = run(
            "spark-3.5-driver-podtemplate-sidecar.json",
            "    maxPodMemory: {value: 1Gi, action: clamp}",
        );
        assert!(r.unwrap_err().message.contains("heap is not known"));
    }

    #[test]
    fn idempotent_on_every_fixture() {
        for name in crate::test_fixtures::FIXTURES {
            let yaml = "    overhead: {factor: 0.15, max: 4Gi}\n    limit: {mode: RequestPlusHeadroom, headroom: 512Mi}";
            let (pod, r) = run(name, yaml);
            r.unwrap();
            let role = spark_pod::role(&pod).unwrap();
            let idx = spark_pod::spark_container_index(&pod).unwrap();
            let set = PolicySet::from_sources(&[(
                "m.yaml",
                format!("apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {{name: mem}}\nspec:\n  match: {{roles: [driver, executor]}}\n  memory:\n{yaml}\n").as_str(),
            )])
            .unwrap();
            let refs: Vec<_> = set.policies().iter().collect();
            let mut again = pod.clone();
            let mut report = Report::default();
            apply(&mut again, idx, role, &merge(&refs), &mut report).unwrap();
            // The headroom is re-derived from the new request, so the second pass is a no-op.
            assert_eq!(again, pod, "{name}");
            assert!(report.changes.is_empty(), "{name}: {report:?}");
        }
    }
}
