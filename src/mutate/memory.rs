//! Memory: bounds on the memory Spark adds above the JVM heap, the limit rule, and a cap on
//! the pod's memory — without ever taking away memory Spark will use.
//!
//! What Spark puts in the container (request = limit):
//! - executors: heap + overhead + off-heap + pyspark memory
//!   (ResourceProfile.scala, `getResourcesForClusterManager`; BasicExecutorFeatureStep.scala).
//!   Off-heap counts when `spark.memory.offHeap.enabled`, pyspark memory for Python apps
//!   (`spark.kubernetes.resource.type=python`, which a cluster-mode PySpark driver sets).
//!   The heap is in the pod: `SPARK_EXECUTOR_MEMORY=<MiB>m`, which the image's entrypoint.sh
//!   passes to the JVM as `-Xmx`. Off-heap, pyspark memory and an explicit
//!   `spark.executor.memoryOverhead` are not: the `SPARK_JAVA_OPT_*` entries carry only JVM
//!   flags and the executor start-up confs (`SparkConf.isExecutorStartupConf`: auth, rpc,
//!   network, ssl, ports), as every pod of tests/fixtures/fidelity shows.
//! - drivers: heap + overhead (BasicDriverFeatureStep.scala). The heap is not in the pod:
//!   `spark.driver.memory` is in a ConfigMap Spark creates after the pod, and a container
//!   figure has many (heap, overhead) explanations (6g + 1g = 5g × 1.4 = 7168Mi).
//!
//! Overhead, unless set explicitly, is `max((factor × heapMiB).toInt, minimum)`
//! (ResourceProfile.calculateOverHeadMemory): factor 0.1, or 0.4 for Python/R apps in cluster
//! mode (BasicDriverFeatureStep passes that default on to the executors); minimum 384Mi,
//! configurable from Spark 4.0 (`spark.{driver,executor}.minMemoryOverhead`).
//!
//! So the engine lowers an executor only when what it has above its heap is exactly Spark's
//! default overhead for that heap: then nothing else (explicit overhead, off-heap, pyspark
//! memory, a raised minimum) can be in it. Raising is always safe where the heap is known.
//! A driver is never lowered: its heap is not known.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Denial, Report};
use crate::policy::model::{LimitMode, LimitRule, MaxAction, MaxPodMemory, OverheadBounds};
use crate::quantity::{Bytes, MI};
use crate::selection::{Effective, Sourced};
use crate::spark_pod::{self, SparkRole};

/// Spark's default minimum overhead (`MEMORY_OVERHEAD_MIN_MIB`, 384m).
pub const SPARK_MIN_OVERHEAD: Bytes = Bytes::mib(384);

/// Spark's default overhead factors: 0.1 (`spark.kubernetes.memoryOverheadFactor`), and 0.4
/// for non-JVM apps in cluster mode (`NON_JVM_MEMORY_OVERHEAD_FACTOR`). An executor does not
/// show which kind of app it runs, so either counts as Spark's default.
const SPARK_DEFAULT_FACTORS: [f64; 2] = [0.1, 0.4];

/// Spark's default overhead for a heap of `heap_mib`, computed as Spark does it: in doubles,
/// truncated to whole MiB, at least 384.
fn spark_default_overhead(heap_mib: u64, factor: f64) -> u64 {
    ((factor * heap_mib as f64) as u64).max(SPARK_MIN_OVERHEAD.as_mib_floor())
}

/// Whether `overhead` above `heap` is exactly Spark's default overhead for that heap, so
/// that nothing else Spark sized (explicit overhead, off-heap, pyspark memory, a raised
/// minimum) is in it.
pub fn is_spark_default(heap: Bytes, overhead: Bytes) -> bool {
    let whole_mib = |b: Bytes| b.0.is_multiple_of(MI);
    whole_mib(heap)
        && whole_mib(overhead)
        && SPARK_DEFAULT_FACTORS
            .iter()
            .any(|f| spark_default_overhead(heap.as_mib_floor(), *f) == overhead.as_mib_floor())
}

fn floor_mib(b: Bytes) -> Bytes {
    Bytes(b.0 / MI * MI)
}

/// The Spark container's memory as the pod has it.
struct Current {
    cname: String,
    request: Bytes,
    limit: Option<Bytes>,
    /// The executor's heap; `None` for drivers and executors without a usable figure.
    heap: Option<Bytes>,
}

impl Current {
    /// Memory above the heap, and whether it is Spark's default overhead (lowerable).
    fn above_heap(&self) -> Option<(Bytes, Bytes, bool)> {
        let h = self.heap?;
        let above = self.request.saturating_sub(h);
        Some((h, above, is_spark_default(h, above)))
    }
}

/// What the container's memory will be.
struct Plan {
    request: Bytes,
    limit: Option<Bytes>,
    notes: Vec<String>,
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
    let Some(now) = read(spec, container, role, report) else {
        return Ok(());
    };
    let mut plan = Plan {
        request: now.request,
        limit: now.limit,
        notes: vec![],
    };
    if let Some(o) = eff.overhead {
        bound_overhead(&now, role, o, &mut plan, report);
    }
    apply_limit_rule(eff.limit, &now, &mut plan);
    if let Some(max) = eff.max_pod_memory {
        // Never below Spark's own minimum overhead, nor the policy's.
        let floor = eff
            .overhead
            .and_then(|o| o.value.min)
            .map_or(SPARK_MIN_OVERHEAD, |m| m.0.max(SPARK_MIN_OVERHEAD));
        cap_pod_memory(spec, container, &now, (max, floor), &mut plan, report)?;
    }
    // Requests never exceed limits.
    if let Some(l) = plan.limit {
        plan.limit = Some(l.max(plan.request));
    }
    write(pod, container, &now, plan, report);
    Ok(())
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

fn read(spec: &PodSpec, container: usize, role: SparkRole, report: &mut Report) -> Option<Current> {
    let c = spec.containers.get(container)?;
    let cname = c.name.clone();
    let (req_text, lim_text) = spark_pod::memory_of(c);
    let limit = parse(lim_text, "memory limit", &cname, report);
    // The API server defaults a missing request to the limit.
    let Some(request) = parse(req_text, "memory request", &cname, report).or(limit) else {
        report.warnings.push(format!(
            "memory: container {cname} has no memory request; memory policies not applied"
        ));
        return None;
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
        SparkRole::Driver | SparkRole::ConnectServer => None,
    };
    Some(Current {
        cname,
        request,
        limit,
        heap,
    })
}

/// Keep the memory above the heap within `[min, min(max, factor × heap)]`: raise it to
/// `min` whenever the heap is known, lower it only when it is Spark's default overhead.
fn bound_overhead(
    now: &Current,
    role: SparkRole,
    o: Sourced<'_, OverheadBounds>,
    plan: &mut Plan,
    report: &mut Report,
) {
    let policy = o.policy;
    let cname = &now.cname;
    let Some((h, above, default)) = now.above_heap() else {
        report.warnings.push(if role.is_driver() {
            format!("memory: a driver's heap is not in its pod; overhead kept (policy {policy})")
        } else {
            format!("memory: executor heap unknown (no usable SPARK_EXECUTOR_MEMORY); overhead kept (policy {policy})")
        });
        return;
    };
    if now.request < h {
        report.warnings.push(format!(
            "memory: {cname} requests {}, less than its heap {h}; kept (policy {policy})",
            now.request
        ));
        return;
    }
    let min = o.value.min.map_or(SPARK_MIN_OVERHEAD, |m| m.0);
    let by_factor = o
        .value
        .factor
        .map(|f| floor_mib(Bytes((f * h.0 as f64) as u64)));
    let cap = [o.value.max.map(|m| m.0), by_factor]
        .into_iter()
        .flatten()
        .min()
        // Lowered never below Spark's own minimum, nor the policy's.
        .map_or(above, |c| c.max(min).max(SPARK_MIN_OVERHEAD));
    let target = if above < min {
        min
    } else if above > cap && default {
        cap
    } else {
        if above > cap {
            report.warnings.push(format!(
                "memory: {above} above heap {h} is not Spark's default: tuned, off-heap or pyspark memory; kept (policy {policy})"
            ));
        }
        return;
    };
    plan.request = h.saturating_add(target);
    plan.notes.push(format!(
        "overhead {above} → {target} over heap {h} (policy {policy})"
    ));
}

fn apply_limit_rule(rule: Option<Sourced<'_, LimitRule>>, now: &Current, plan: &mut Plan) {
    plan.limit = match rule {
        Some(l) => {
            let v = match l.value.mode {
                LimitMode::EqualToRequest => Some(plan.request),
                LimitMode::RequestPlusHeadroom => Some(
                    plan.request
                        .saturating_add(l.value.headroom.map(|h| h.0).unwrap_or_default()),
                ),
                LimitMode::NoLimit => None,
            };
            if v != now.limit {
                plan.notes.push(format!(
                    "limit rule {:?} (policy {})",
                    l.value.mode, l.policy
                ));
            }
            v
        }
        // Keep the pod's own headroom above the request.
        None => now
            .limit
            .map(|l| plan.request.saturating_add(l.saturating_sub(now.request))),
    };
}

/// A container's memory footprint: its limit, or its request when it has no limit.
fn footprint(c: &Container) -> Bytes {
    let (req, lim) = spark_pod::memory_of(c);
    let p = |q: Option<String>| q.and_then(|q| Bytes::parse_quantity(&q).ok());
    p(lim).or(p(req)).unwrap_or_default()
}

/// The pod's memory without the Spark container, as the scheduler counts a pod
/// (kubernetes.io/docs/concepts/resource-management/effective-pod-requests-limits/): while
/// running, the app containers and the sidecars (init containers with `restartPolicy:
/// Always`) add up; during initialisation each init container runs alongside the sidecars
/// listed before it. The pod needs the larger of the two, plus its RuntimeClass overhead.
struct OtherContainers {
    /// Running phase without the Spark container: other app containers + sidecars.
    running: Bytes,
    /// Peak of the initialisation phase.
    init_peak: Bytes,
    /// `spec.overhead` (set by the RuntimeClass admission plugin).
    overhead: Bytes,
}

impl OtherContainers {
    fn of(spec: &PodSpec, spark: usize) -> OtherContainers {
        let overhead = spec
            .overhead
            .as_ref()
            .and_then(|o| o.get("memory"))
            .and_then(|q| Bytes::parse_quantity(&q.0).ok())
            .unwrap_or_default();
        let mut sidecars = Bytes(0);
        let mut init_peak = Bytes(0);
        for c in spec.init_containers.iter().flatten() {
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars = sidecars.saturating_add(footprint(c));
                init_peak = init_peak.max(sidecars);
            } else {
                init_peak = init_peak.max(sidecars.saturating_add(footprint(c)));
            }
        }
        let running = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != spark)
            .fold(sidecars, |acc, (_, c)| acc.saturating_add(footprint(c)));
        OtherContainers {
            running,
            init_peak,
            overhead,
        }
    }

    fn pod_total(&self, spark: Bytes) -> Bytes {
        self.running
            .saturating_add(spark)
            .max(self.init_peak)
            .saturating_add(self.overhead)
    }
}

/// `maxPodMemory`: deny, or clamp the Spark container — its headroom above the request
/// first, then its overhead, but only an overhead the engine may lower (Spark's default)
/// and never below heap + minimum overhead.
fn cap_pod_memory(
    spec: &PodSpec,
    container: usize,
    now: &Current,
    (max, floor): (Sourced<'_, MaxPodMemory>, Bytes),
    plan: &mut Plan,
    report: &mut Report,
) -> Result<(), Denial> {
    let cap = max.value.value.0;
    let policy = max.policy;
    let others = OtherContainers::of(spec, container);
    let spark = plan.limit.unwrap_or(plan.request).max(plan.request);
    let total = others.pod_total(spark);
    if total <= cap {
        return Ok(());
    }
    let figures = format!(
        "pod memory {total} (container {} {spark}, other containers {}, init peak {}) exceeds maxPodMemory {cap}",
        now.cname, others.running, others.init_peak
    );
    let deny = |why: String| Denial {
        policy: policy.to_string(),
        message: format!("policy {policy}: {figures}{why}"),
    };
    if max.value.action == MaxAction::Deny {
        return Err(deny(String::new()));
    }
    if others.init_peak.saturating_add(others.overhead) > cap {
        return Err(deny("; the init containers alone exceed it".into()));
    }
    let budget = floor_mib(
        cap.saturating_sub(others.running)
            .saturating_sub(others.overhead),
    );
    if budget < plan.request {
        lower_request_to(budget, floor, now, plan).map_err(deny)?;
    }
    plan.limit = plan.limit.map(|l| l.min(budget));
    plan.notes
        .push(format!("clamped to maxPodMemory {cap} (policy {policy})"));
    report.warnings.push(format!(
        "memory: {} clamped to {budget} for maxPodMemory {cap} (policy {policy})",
        now.cname
    ));
    Ok(())
}

/// Lower the Spark container's request to `budget`, or say why that would starve Spark.
fn lower_request_to(
    budget: Bytes,
    floor: Bytes,
    now: &Current,
    plan: &mut Plan,
) -> Result<(), String> {
    let Some((h, above, default)) = now.above_heap() else {
        return Err("; it cannot be clamped because the JVM heap is not known".into());
    };
    if !default {
        return Err(format!(
            "; it cannot be clamped: {above} above heap {h} is not Spark's default overhead (tuned overhead, off-heap or pyspark memory)"
        ));
    }
    let needed = h.saturating_add(floor);
    if budget < needed {
        return Err(format!(
            "; it cannot be clamped: heap {h} + minimum overhead {floor} = {needed} does not fit in {budget}"
        ));
    }
    plan.request = budget;
    Ok(())
}

fn show(b: Option<Bytes>) -> String {
    b.map_or("none".into(), |b| b.to_string())
}

fn write(pod: &mut Pod, container: usize, now: &Current, plan: Plan, report: &mut Report) {
    if plan.request == now.request && plan.limit == now.limit {
        return;
    }
    let Some(c) = pod
        .spec
        .as_mut()
        .and_then(|s| s.containers.get_mut(container))
    else {
        return;
    };
    set_memory(c, plan.request, plan.limit);
    report.changes.push(format!(
        "memory of container {}: request {} → {}, limit {} → {}; {}",
        now.cname,
        now.request,
        plan.request,
        show(now.limit),
        show(plan.limit),
        plan.notes.join("; ")
    ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicySet;
    use crate::selection::merge;
    use crate::test_fixtures::fixture;
    use k8s_openapi::api::core::v1::EnvVar;

    #[test]
    fn sparks_default_overhead_is_recognised_exactly() {
        let cases = [
            // (heap MiB, above heap MiB, Spark's default?)
            (8192, 819, true),   // 0.1: client-mode / JVM executor
            (8192, 3276, true),  // 0.4: cluster-mode PySpark executor
            (2048, 384, true),   // minimum
            (16384, 6553, true), // 0.4 × 16g
            (8192, 3072, false), // explicit memoryOverhead=3g
            (2048, 1024, false), // Spark 4 minMemoryOverhead=1g
            (8192, 4096, false), // factor 0.5 (tmpfs)
            (8192, 9011, false), // 0.1 + 8g off-heap
            (8192, 7372, false), // 0.4 + 4g pyspark memory
            (8192, 820, false),  // one MiB off
        ];
        for (heap, above, expected) in cases {
            assert_eq!(
                is_spark_default(Bytes::mib(heap), Bytes::mib(above)),
                expected,
                "{heap}Mi + {above}Mi"
            );
        }
        // A heap that is not whole MiB is not a figure Spark wrote.
        assert!(!is_spark_default(Bytes(8192 * MI + 1), Bytes::mib(819)));
    }

    fn run(pod: Pod, memory_yaml: &str) -> (Pod, Result<Report, Denial>) {
        let yaml = format!(
            "apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {{name: mem}}\nspec:\n  match: {{roles: [executor]}}\n  memory:\n{memory_yaml}\n"
        );
        let set = PolicySet::from_sources(&[("m.yaml", yaml.as_str())]).unwrap();
        let refs: Vec<_> = set.policies().iter().collect();
        let eff = merge(&refs);
        let mut pod = pod;
        let role = spark_pod::role(&pod).unwrap();
        let idx = spark_pod::spark_container_index(&pod).unwrap();
        let mut report = Report::default();
        let r = apply(&mut pod, idx, role, &eff, &mut report).map(|_| report);
        (pod, r)
    }

    /// The client-mode executor fixture (8g) sized as Spark sizes `heap` + `above`.
    fn executor(heap: u64, above: u64) -> Pod {
        let mut pod = fixture("spark-3.5-executor-python.json");
        let c = &mut pod.spec.as_mut().unwrap().containers[0];
        let total = Quantity(format!("{}Mi", heap + above));
        let res = c.resources.as_mut().unwrap();
        res.requests
            .as_mut()
            .unwrap()
            .insert("memory".into(), total.clone());
        res.limits.as_mut().unwrap().insert("memory".into(), total);
        let env = c.env.as_mut().unwrap();
        env.retain(|e| e.name != spark_pod::EXECUTOR_MEMORY_ENV);
        env.push(EnvVar {
            name: spark_pod::EXECUTOR_MEMORY_ENV.into(),
            value: Some(format!("{heap}m")),
            value_from: None,
        });
        pod
    }

    fn mem(pod: &Pod) -> (Option<String>, Option<String>) {
        let idx = spark_pod::spark_container_index(pod).unwrap();
        spark_pod::memory_of(&pod.spec.as_ref().unwrap().containers[idx])
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    #[test]
    fn overhead_bounds_table() {
        let cap = "    overhead: {factor: 0.15, max: 4Gi}";
        let cases = [
            // (heap, above, policy, request, limit, warnings)
            // 0.4 default on 16g: 6553Mi → 0.15 × 16g = 2457Mi.
            (16384, 6553, cap, "18841Mi", Some("18841Mi"), 0),
            // 0.1 default on 8g: within the cap, untouched.
            (8192, 819, cap, "9011Mi", Some("9011Mi"), 0),
            // 0.1 default on 48g: 4915Mi above the 4Gi max, lowered to 4Gi.
            (49152, 4915, cap, "53248Mi", Some("53248Mi"), 0),
            // A max below the factor's figure wins.
            (
                16384,
                6553,
                "    overhead: {factor: 0.4, max: 1Gi}",
                "17408Mi",
                Some("17408Mi"),
                0,
            ),
            // Never below Spark's minimum, whatever the factor.
            (
                2048,
                819,
                "    overhead: {factor: 0.01}",
                "2432Mi",
                Some("2432Mi"),
                0,
            ),
            // Tuned overhead, off-heap, pyspark memory: kept, with a warning.
            (8192, 3072, cap, "11264Mi", Some("11264Mi"), 1),
            (8192, 9011, cap, "17203Mi", Some("17203Mi"), 1),
            // Raising to a minimum is safe whatever the overhead holds.
            (
                8192,
                819,
                "    overhead: {min: 1Gi}",
                "9216Mi",
                Some("9216Mi"),
                0,
            ),
            (
                8192,
                900,
                "    overhead: {min: 1Gi}",
                "9216Mi",
                Some("9216Mi"),
                0,
            ),
            // Limit rules on top.
            (
                8192,
                819,
                "    limit: {mode: RequestPlusHeadroom, headroom: 1Gi}",
                "9011Mi",
                Some("10035Mi"),
                0,
            ),
            (8192, 819, "    limit: {mode: NoLimit}", "9011Mi", None, 0),
        ];
        for (heap, above, yaml, req, lim, warnings) in cases {
            let (pod, r) = run(executor(heap, above), yaml);
            let report = r.unwrap();
            let ctx = format!("{heap}+{above} {yaml}: {report:?}");
            assert_eq!(mem(&pod), (s(req), lim.map(str::to_string)), "{ctx}");
            assert_eq!(report.warnings.len(), warnings, "{ctx}");
        }
    }

    #[test]
    fn an_unknown_executor_heap_leaves_memory_alone_and_says_so() {
        let mut pod = executor(16384, 6553);
        pod.spec.as_mut().unwrap().containers[0]
            .env
            .as_mut()
            .unwrap()
            .retain(|e| e.name != spark_pod::EXECUTOR_MEMORY_ENV);
        let (after, r) = run(pod.clone(), "    overhead: {factor: 0.15}");
        assert_eq!(after, pod);
        assert!(r.unwrap().warnings[0].contains("heap unknown"));
    }

    #[test]
    fn max_pod_memory_deny_and_clamp() {
        let (_, r) = run(
            executor(8192, 819),
            "    maxPodMemory: {value: 8Gi, action: deny}",
        );
        let d = r.unwrap_err();
        assert_eq!(d.policy, "mem");
        assert!(
            d.message.contains("9011Mi") && d.message.contains("8Gi"),
            "{}",
            d.message
        );

        // Spark's default overhead: clamped, with a warning.
        let (pod, r) = run(
            executor(16384, 6553),
            "    maxPodMemory: {value: 20Gi, action: clamp}",
        );
        let report = r.unwrap();
        assert_eq!(mem(&pod), (s("20480Mi"), s("20480Mi")));
        assert!(report.warnings[0].contains("clamped"), "{report:?}");

        // Below heap + minimum overhead: refused.
        let (_, r) = run(
            executor(16384, 6553),
            "    maxPodMemory: {value: 16Gi, action: clamp}",
        );
        assert!(r.unwrap_err().message.contains("cannot be clamped"));

        // Off-heap or pyspark memory may be in it: refused rather than starving them.
        let (_, r) = run(
            executor(8192, 9011),
            "    maxPodMemory: {value: 12Gi, action: clamp}",
        );
        assert!(r.unwrap_err().message.contains("not Spark's default"));
    }

    #[test]
    fn max_pod_memory_counts_init_containers_and_sidecars_as_the_scheduler_does() {
        let container = |name: &str, mib: u64, always: bool| Container {
            name: name.into(),
            restart_policy: always.then(|| "Always".to_string()),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity(format!("{mib}Mi")),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Spark container 9011Mi; sidecar 1Gi (native); init container 12Gi after it.
        let cases = [
            // (init containers, pod total the denial names)
            (vec![container("sidecar", 1024, true)], "10035Mi"),
            (vec![container("setup", 4096, false)], "9011Mi"),
            (
                vec![
                    container("sidecar", 1024, true),
                    container("big-init", 12288, false),
                ],
                "13Gi",
            ),
        ];
        for (inits, total) in cases {
            let mut pod = executor(8192, 819);
            pod.spec.as_mut().unwrap().init_containers = Some(inits);
            let (_, r) = run(pod, "    maxPodMemory: {value: 8Gi, action: deny}");
            let message = r.unwrap_err().message;
            assert!(
                message.contains(&format!("pod memory {total} ")),
                "{message}"
            );
        }
        // The RuntimeClass's pod overhead counts too.
        let mut pod = executor(8192, 819);
        pod.spec.as_mut().unwrap().overhead = Some(BTreeMap::from([(
            "memory".to_string(),
            Quantity("256Mi".into()),
        )]));
        let (_, r) = run(pod, "    maxPodMemory: {value: 8Gi, action: deny}");
        let message = r.unwrap_err().message;
        assert!(message.contains("pod memory 9267Mi "), "{message}");
        // An init container that alone exceeds the cap cannot be clamped away.
        let mut pod = executor(16384, 6553);
        pod.spec.as_mut().unwrap().init_containers = Some(vec![container("big", 30720, false)]);
        let (_, r) = run(pod, "    maxPodMemory: {value: 20Gi, action: clamp}");
        assert!(r.unwrap_err().message.contains("init containers alone"));
    }

    #[test]
    fn a_second_pass_changes_nothing() {
        let yaml = "    overhead: {factor: 0.15, max: 4Gi, min: 512Mi}\n    limit: {mode: RequestPlusHeadroom, headroom: 512Mi}\n    maxPodMemory: {value: 18Gi, action: clamp}";
        for (heap, above) in [
            (16384, 6553),
            (8192, 819),
            (8192, 3072),
            (2048, 384),
            (1024, 384),
        ] {
            let (pod, r) = run(executor(heap, above), yaml);
            r.unwrap();
            let (again, r) = run(pod.clone(), yaml);
            let report = r.unwrap();
            assert_eq!(again, pod, "{heap}+{above}");
            assert!(report.changes.is_empty(), "{heap}+{above}: {report:?}");
        }
    }
}
