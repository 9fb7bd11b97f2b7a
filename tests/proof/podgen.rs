//! Structure-aware random Spark pods: a recorded pod (tests/fixtures, tests/fixtures/fidelity)
//! edited the way submitters, pod templates and hostile tenants edit pods — extra and unnamed
//! containers, missing fields, huge lists, existing local dirs, tolerations, affinity, env in
//! any order, odd memory figures, forged annotations.
//!
//! The edits are read from bytes ([`Choices`]): the fuzz targets hand over libFuzzer's input,
//! the property tests a proptest byte vector. Exhausted bytes read as zeros and zero means
//! "stop", so a shorter input is a smaller pod and proptest's shrinking finds the smallest
//! failing edit list.

use serde_json::{json, Map, Value};

/// Reads choices from bytes; zeros once they are spent.
pub struct Choices<'a> {
    bytes: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(bytes: &'a [u8]) -> Choices<'a> {
        Choices { bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((b, rest)) => {
                self.bytes = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        let v = if n <= 256 {
            usize::from(self.byte())
        } else {
            usize::from(self.byte()) << 8 | usize::from(self.byte())
        };
        v % n
    }

    pub fn flag(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    pub fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }
}

/// One generated admission: which policy set, which namespace, the pod as the submitter
/// created it, and what the generator knows about it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Index into the caller's policy sets.
    pub set: usize,
    pub namespace: String,
    /// The pod as created (before the API server's defaulting).
    pub pod: Value,
    /// Whether the API server's ServiceAccount and DefaultTolerationSeconds plugins ran.
    pub plugins: bool,
    /// Index of the Spark container in `spec.containers` (tracked through the edits).
    pub spark: Option<usize>,
    /// Where filler entries go in each list, for the linearity check ([`with_filler`]).
    pub filler_at: usize,
}

impl Case {
    /// `pod` unedited, in `namespace`, with the API server's plugins.
    pub fn of(pod: Value, namespace: &str) -> Case {
        Case {
            set: 0,
            namespace: namespace.to_string(),
            spark: containers(&pod).iter().position(has_spark_arg),
            pod,
            plugins: true,
            filler_at: 0,
        }
    }
}

/// Names and values the edits draw from: close to what policies look at, so that edits meet
/// the engine's decisions rather than pass beside them.
const NAMESPACES: &[&str] = &[
    "default",
    "spark",
    "spark-jobs",
    "analytics",
    "team-a",
    "kube-system",
];
const ROLES: &[&str] = &[
    "driver",
    "executor",
    "connect-server",
    "Driver",
    "",
    "spark",
];
/// Env names of a Spark container and of what policies inject. (Not Spark's own mark
/// `SPARK_APPLICATION_ID`: a sidecar carrying it is made only on purpose, by
/// `mimic_spark_mark`.)
const ENV_NAMES: &[&str] = &[
    "SPARK_LOCAL_DIRS",
    "SPARK_EXECUTOR_DIRS",
    "SPARK_EXECUTOR_MEMORY",
    "APP_ID",
    "TENANT_ID",
    "APP_SECRET",
    "BLOB_STORAGE_URL",
    "PYSPARK_PYTHON",
    "JAVA_HOME",
];
const ENV_VALUES: &[&str] = &[
    "",
    "x",
    "8192m",
    "1g",
    "2048",
    "512k",
    "1t",
    "garbage",
    "/var/data/spark-1",
    "/tmp/mnt-1,/tmp/mnt-2",
    "/var/data/spark-local-dir-1,/var/data/spark-local-dir-2",
];
const QUANTITIES: &[&str] = &[
    "0", "1", "384Mi", "1Gi", "1408Mi", "2432Mi", "5734Mi", "8Gi", "9011Mi", "16Gi", "64Gi",
    "100Gi", "1.5Gi", "512M", "3e9", "100m", "1Ki", "999Ei",
];
const LABEL_KEYS: &[&str] = &[
    "karpenter.sh/capacity-type",
    "eks.amazonaws.com/capacityType",
    "cloud.google.com/gke-spot",
    "cloud.google.com/gke-preemptible",
    "kubernetes.azure.com/scalesetpriority",
    "node-lifecycle",
    "topology.kubernetes.io/zone",
    "team",
];
const LABEL_VALUES: &[&str] = &[
    "spot",
    "on-demand",
    "SPOT",
    "ON_DEMAND",
    "true",
    "false",
    "reserved",
    "regular",
    "a",
    "eu-west-1a",
];
const POD_LABELS: &[(&str, &str)] = &[
    ("team", "a"),
    ("team", "b"),
    ("tier", "batch"),
    ("spark-app-name", "nightly-etl"),
    ("sparkoperator.k8s.io/launched-by-spark-operator", "true"),
    ("spark-exec-resourceprofile-id", "1"),
];
const FORGED_ANNOTATIONS: &[&str] = &[
    "spark-admission.dev/driver-heap",
    "spark-admission.dev/policies",
    "spark-admission.dev/audit",
    "spark-admission.dev/overhead",
];
const OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];
const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute", ""];

/// Build a case from `bases` (pods as created, each with exactly one container carrying
/// Spark's `driver`/`executor` argument), `sets` policy sets, and `bytes`. `max_list` bounds
/// the length of the huge lists.
pub fn generate(bases: &[Value], sets: usize, bytes: &[u8], max_list: usize) -> Case {
    let mut c = Choices::new(bytes);
    let mut pod = bases[c.below(bases.len())].clone();
    let set = c.below(sets);
    let namespace = (*c.pick(NAMESPACES)).to_string();
    let plugins = c.byte() < 224; // mostly: the plugins run for every pod in a real cluster
    let filler_at = usize::from(c.byte());
    let mut spark = containers(&pod).iter().position(has_spark_arg);
    let mut mimic = false;
    for _ in 0..48 {
        let edit = c.byte();
        if edit == 0 {
            break;
        }
        match edit % 24 {
            0 => set_role(&mut c, &mut pod),
            1 | 2 => add_sidecar(&mut c, &mut pod, &mut spark),
            3 => unname_container(&mut c, &mut pod),
            4 | 5 => remove_field(&mut c, &mut pod, spark),
            6 => huge_list(&mut c, &mut pod, spark, max_list),
            7 | 8 => local_dirs(&mut c, &mut pod, spark),
            9 | 10 => add_toleration(&mut c, &mut pod),
            11 => set_affinity(&mut c, &mut pod),
            12 => node_selector(&mut c, &mut pod),
            13 => shuffle_env(&mut c, &mut pod, spark),
            14 => duplicate_env(&mut c, &mut pod, spark),
            15 | 16 => memory(&mut c, &mut pod, spark),
            17 => forge_annotation(&mut c, &mut pod),
            18 => pod_label(&mut c, &mut pod),
            19 => spark_args(&mut c, &mut pod, spark),
            20 => extra_mount(&mut c, &mut pod, spark),
            21 => mimic = true,
            22 => secret_env(&mut c, &mut pod, spark),
            _ => init_container(&mut c, &mut pod),
        }
    }
    if mimic {
        mimic_spark_mark(&mut c, &mut pod, spark);
    }
    Case {
        set,
        namespace,
        pod,
        plugins,
        spark,
        filler_at,
    }
}

fn has_spark_arg(c: &Value) -> bool {
    matches!(c["args"][0].as_str(), Some("driver" | "executor"))
}

fn containers(pod: &Value) -> &[Value] {
    pod["spec"]["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn containers_mut(pod: &mut Value) -> Option<&mut Vec<Value>> {
    pod.get_mut("spec")?.get_mut("containers")?.as_array_mut()
}

fn spark_container(pod: &mut Value, spark: Option<usize>) -> Option<&mut Map<String, Value>> {
    containers_mut(pod)?.get_mut(spark?)?.as_object_mut()
}

/// The list at `key` of `obj`, created when missing (or not a list).
fn list<'v>(obj: &'v mut Map<String, Value>, key: &str) -> &'v mut Vec<Value> {
    let slot = obj.entry(key.to_string()).or_insert_with(|| json!([]));
    if !slot.is_array() {
        *slot = json!([]);
    }
    match slot {
        Value::Array(items) => items,
        _ => unreachable!("just made an array"),
    }
}

fn object<'v>(obj: &'v mut Map<String, Value>, key: &str) -> &'v mut Map<String, Value> {
    let slot = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

fn metadata(pod: &mut Value) -> Option<&mut Map<String, Value>> {
    let pod = pod.as_object_mut()?;
    Some(object(pod, "metadata"))
}

fn spec(pod: &mut Value) -> Option<&mut Map<String, Value>> {
    let pod = pod.as_object_mut()?;
    Some(object(pod, "spec"))
}

fn insert_at(items: &mut Vec<Value>, at: usize, v: Value) {
    let at = at.min(items.len());
    items.insert(at, v);
}

fn set_role(c: &mut Choices, pod: &mut Value) {
    let remove = c.byte() < 48;
    let role = *c.pick(ROLES);
    if let Some(meta) = metadata(pod) {
        let labels = object(meta, "labels");
        if remove {
            labels.remove("spark-role");
        } else {
            labels.insert("spark-role".into(), json!(role));
        }
    }
}

fn add_sidecar(c: &mut Choices, pod: &mut Value, spark: &mut Option<usize>) {
    let n = containers(pod).len();
    let at = c.below(n + 1);
    let name = format!(
        "{}-{n}",
        c.pick(&["log-shipper", "istio-proxy", "sidecar", "main"])
    );
    let mut sidecar = json!({"name": name, "image": "busybox:1.36"});
    if c.flag() {
        sidecar["env"] = json!([{"name": c.pick(ENV_NAMES), "value": c.pick(ENV_VALUES)}]);
    }
    if c.flag() {
        let q = c.pick(QUANTITIES);
        sidecar["resources"] = json!({"requests": {"memory": q}, "limits": {"memory": q}});
    }
    if c.flag() {
        // Mounts a volume the pod has, at its own path.
        if let Some(v) = pod["spec"]["volumes"].as_array().and_then(|vs| {
            let i = c.below(vs.len());
            vs.get(i)
        }) {
            sidecar["volumeMounts"] = json!([{"name": v["name"], "mountPath": "/sidecar/data"}]);
        }
    }
    if let Some(cs) = containers_mut(pod) {
        insert_at(cs, at, sidecar);
        if let Some(s) = spark.as_mut() {
            if at <= *s {
                *s += 1;
            }
        }
    }
}

fn unname_container(c: &mut Choices, pod: &mut Value) {
    if c.byte() >= 32 {
        return; // mostly not: a pod with an unnamed container is refused before the webhook
    }
    let empty = c.flag();
    let n = containers(pod).len();
    let i = c.below(n);
    if let Some(container) = containers_mut(pod)
        .and_then(|cs| cs.get_mut(i))
        .and_then(Value::as_object_mut)
    {
        if empty {
            container.insert("name".into(), json!(""));
        } else {
            container.remove("name");
        }
    }
}

fn remove_field(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let what = c.below(19);
    let (meta_keys, spec_keys, container_keys): (&[&str], &[&str], &[&str]) = (
        &["labels", "annotations", "namespace", "name"],
        &[
            "volumes",
            "nodeSelector",
            "affinity",
            "tolerations",
            "initContainers",
        ],
        &["env", "volumeMounts", "resources", "args", "image", "ports"],
    );
    match what {
        0..=3 => {
            if let Some(m) = metadata(pod) {
                m.remove(meta_keys[what]);
            }
        }
        4..=8 => {
            if let Some(s) = spec(pod) {
                s.remove(spec_keys[what - 4]);
            }
        }
        9..=14 => {
            if let Some(s) = spark_container(pod, spark) {
                s.remove(container_keys[what - 9]);
            }
        }
        15 | 16 => {
            let part = if what == 15 { "limits" } else { "requests" };
            if let Some(r) = spark_container(pod, spark)
                .and_then(|s| s.get_mut("resources"))
                .and_then(Value::as_object_mut)
            {
                r.remove(part);
            }
        }
        17 => {
            if let Some(m) = metadata(pod) {
                object(m, "labels").remove("spark-app-selector");
            }
        }
        _ => {
            if let Some(m) = pod.as_object_mut() {
                m.remove(if c.flag() { "spec" } else { "kind" });
            }
        }
    }
}

/// A block of `n` distinct entries in one list, at a chosen place.
fn huge_list(c: &mut Choices, pod: &mut Value, spark: Option<usize>, max_list: usize) {
    let kind = c.below(5);
    let n = c.below(max_list + 1);
    let at = c.below(256);
    // A prefix of its own per edit, so that two blocks never repeat a name.
    let k = usize::from(c.byte());
    match kind {
        0 => {
            if let Some(s) = spark_container(pod, spark) {
                let env = list(s, "env");
                let at = at.min(env.len());
                env.splice(
                    at..at,
                    (0..n).map(|i| json!({"name": format!("GEN_{k}_VAR_{i}"), "value": "v"})),
                );
            }
        }
        1 => {
            let mount = c.flag();
            if let Some(s) = spec(pod) {
                let vs = list(s, "volumes");
                let at = at.min(vs.len());
                vs.splice(
                    at..at,
                    (0..n).map(|i| json!({"name": format!("gen-{k}-vol-{i}"), "emptyDir": {}})),
                );
            }
            if mount {
                if let Some(s) = spark_container(pod, spark) {
                    let ms = list(s, "volumeMounts");
                    let at = at.min(ms.len());
                    ms.splice(
                        at..at,
                        (0..n).map(|i| {
                            json!({"name": format!("gen-{k}-vol-{i}"), "mountPath": format!("/gen/{k}/{i}")})
                        }),
                    );
                }
            }
        }
        2 => {
            if let Some(s) = spec(pod) {
                let ts = list(s, "tolerations");
                let at = at.min(ts.len());
                ts.splice(
                    at..at,
                    (0..n).map(|i| {
                        json!({"key": format!("gen.example/taint-{k}-{i}"), "operator": "Exists"})
                    }),
                );
            }
        }
        3 => {
            if let Some(s) = spec(pod) {
                let sel = object(s, "nodeSelector");
                for i in 0..n {
                    sel.insert(format!("gen.example/label-{k}-{i}"), json!("x"));
                }
            }
        }
        _ => {
            if let Some(s) = spec(pod) {
                let terms: Vec<Value> = (0..n.max(1))
                    .map(|i| {
                        json!({"matchExpressions": [{"key": format!("gen.example/zone-{i}"), "operator": "Exists"}]})
                    })
                    .collect();
                object(s, "affinity").insert(
                    "nodeAffinity".into(),
                    json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}),
                );
            }
        }
    }
}

/// Local dirs the submitter configured: `spark-local-dir-N` volumes of any source, their
/// mounts, and `SPARK_LOCAL_DIRS` listing them (or not quite).
fn local_dirs(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let count = 1 + c.below(4);
    let consistent = c.byte() < 192;
    let mut paths = vec![];
    for _ in 0..count {
        let n = 1 + c.below(6);
        let name = format!("spark-local-dir-{n}");
        let source = match c.below(4) {
            0 => json!({"emptyDir": {}}),
            1 => json!({"emptyDir": {"medium": "Memory", "sizeLimit": c.pick(QUANTITIES)}}),
            2 => {
                json!({"hostPath": {"path": format!("/mnt/disk{n}"), "type": "DirectoryOrCreate"}})
            }
            _ => json!({"persistentVolumeClaim": {"claimName": "OnDemand"}}),
        };
        let path = if c.flag() {
            format!("/var/data/spark-local-dir-{n}")
        } else {
            format!("/tmp/mnt-{n}")
        };
        let mut volume = json!({"name": name});
        if let (Some(v), Some(src)) = (volume.as_object_mut(), source.as_object()) {
            v.extend(src.clone());
        }
        let duplicate = c.byte() < 2; // rarely a second volume of the name: an invalid pod
        if let Some(s) = spec(pod) {
            let vs = list(s, "volumes");
            // Replace a dir of that name (Spark's own default one), or add it.
            match vs.iter().position(|v| v["name"] == name) {
                Some(i) if !duplicate => vs[i] = volume,
                _ => vs.push(volume),
            }
        }
        if let Some(s) = spark_container(pod, spark) {
            let ms = list(s, "volumeMounts");
            if !ms.iter().any(|m| m["name"] == name) {
                ms.push(json!({"name": name, "mountPath": path}));
                paths.push(path);
            }
        }
    }
    if let Some(s) = spark_container(pod, spark) {
        let env = list(s, "env");
        let value = if consistent {
            let mut all: Vec<String> = env
                .iter()
                .rev()
                .find(|e| e["name"] == "SPARK_LOCAL_DIRS")
                .and_then(|e| e["value"].as_str())
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            all.extend(paths);
            all.join(",")
        } else {
            paths.join(",")
        };
        match env.iter().position(|e| e["name"] == "SPARK_LOCAL_DIRS") {
            Some(i) if c.flag() => env[i] = json!({"name": "SPARK_LOCAL_DIRS", "value": value}),
            _ => env.push(json!({"name": "SPARK_LOCAL_DIRS", "value": value})),
        }
        if c.byte() < 32 {
            env.push(json!({"name": "SPARK_EXECUTOR_DIRS", "value": "/tmp/exec"}));
        }
    }
}

fn add_toleration(c: &mut Choices, pod: &mut Value) {
    let t = match c.below(8) {
        0 => {
            json!({"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot", "effect": "NoSchedule"})
        }
        1 => {
            json!({"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"})
        }
        2 => {
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        }
        3 => json!({"operator": "Exists"}),
        4 => json!({"key": c.pick(LABEL_KEYS), "operator": "Exists", "effect": c.pick(EFFECTS)}),
        5 => {
            json!({"key": c.pick(LABEL_KEYS), "operator": "Equal", "value": c.pick(LABEL_VALUES), "effect": c.pick(EFFECTS)})
        }
        6 => json!({"key": "spot", "value": "true", "effect": "NoSchedule"}),
        _ => {
            json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60})
        }
    };
    let at = c.below(256);
    if let Some(s) = spec(pod) {
        insert_at(list(s, "tolerations"), at, t);
    }
}

fn expression(c: &mut Choices) -> Value {
    let op = *c.pick(OPERATORS);
    let mut e = json!({"key": c.pick(LABEL_KEYS), "operator": op});
    if matches!(op, "In" | "NotIn") {
        let n = 1 + c.below(3);
        e["values"] = Value::Array((0..n).map(|_| json!(c.pick(LABEL_VALUES))).collect());
    }
    e
}

fn set_affinity(c: &mut Choices, pod: &mut Value) {
    let required = c.flag();
    let preferred = c.flag();
    let anti = c.byte() < 64;
    let mut node = Map::new();
    if required {
        let terms: Vec<Value> = (0..1 + c.below(3))
            .map(|_| json!({"matchExpressions": (0..1 + c.below(3)).map(|_| expression(c)).collect::<Vec<_>>()}))
            .collect();
        node.insert(
            "requiredDuringSchedulingIgnoredDuringExecution".into(),
            json!({"nodeSelectorTerms": terms}),
        );
    }
    if preferred {
        let terms: Vec<Value> = (0..1 + c.below(3))
            .map(|_| json!({"weight": 1 + c.below(100), "preference": {"matchExpressions": [expression(c)]}}))
            .collect();
        node.insert(
            "preferredDuringSchedulingIgnoredDuringExecution".into(),
            Value::Array(terms),
        );
    }
    if let Some(s) = spec(pod) {
        let affinity = object(s, "affinity");
        if !node.is_empty() {
            affinity.insert("nodeAffinity".into(), Value::Object(node));
        }
        if anti {
            affinity.insert(
                "podAntiAffinity".into(),
                json!({"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"spark-role": "executor"}}}}]}),
            );
        }
    }
}

fn node_selector(c: &mut Choices, pod: &mut Value) {
    let key = *c.pick(LABEL_KEYS);
    let value = *c.pick(LABEL_VALUES);
    if let Some(s) = spec(pod) {
        object(s, "nodeSelector").insert(key.into(), json!(value));
    }
}

fn shuffle_env(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let n = containers(pod).len();
    // Mostly the Spark container's env; sometimes a sidecar's.
    let i = if c.byte() < 200 {
        spark
    } else {
        Some(c.below(n))
    };
    if let Some(env) = containers_mut(pod)
        .and_then(|cs| cs.get_mut(i?))
        .and_then(|x| x.get_mut("env"))
        .and_then(Value::as_array_mut)
    {
        // Fisher–Yates with the choices.
        for k in (1..env.len()).rev() {
            let j = c.below(k + 1);
            env.swap(k, j);
        }
    }
}

fn duplicate_env(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let name = *c.pick(ENV_NAMES);
    let value = *c.pick(ENV_VALUES);
    let at = c.below(256);
    if let Some(s) = spark_container(pod, spark) {
        let env = list(s, "env");
        let existing = env.iter().find(|e| e["name"] == name).cloned();
        let entry = match existing {
            Some(e) if value.is_empty() => e,
            _ => json!({"name": name, "value": value}),
        };
        insert_at(env, at, entry);
    }
}

fn secret_env(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let name = *c.pick(ENV_NAMES);
    let secret = *c.pick(&["app", "other", "app-creds"]);
    let key = *c.pick(&["app_id", "tenant_id", "app_secret", "token"]);
    let optional = c.flag();
    let at = c.below(256);
    if let Some(s) = spark_container(pod, spark) {
        insert_at(
            list(s, "env"),
            at,
            json!({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": optional}}}),
        );
    }
}

fn memory(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let what = c.below(5);
    let (a, b) = {
        let (x, y) = (*c.pick(QUANTITIES), *c.pick(QUANTITIES));
        let bytes =
            |q: &str| spark_admission::quantity::Bytes::parse_quantity(q).map_or(0, |b| b.0);
        if bytes(x) <= bytes(y) {
            (x, y)
        } else {
            (y, x)
        }
    };
    let heap = *c.pick(ENV_VALUES);
    let swap = c.byte() < 32;
    let Some(s) = spark_container(pod, spark) else {
        return;
    };
    let resources = object(s, "resources");
    match what {
        0 => {
            object(resources, "requests").insert("memory".into(), json!(a));
            object(resources, "limits").insert("memory".into(), json!(a));
        }
        1 => {
            // Rarely the other way round: a request above the limit is an invalid pod.
            let (request, limit) = if swap { (b, a) } else { (a, b) };
            object(resources, "requests").insert("memory".into(), json!(request));
            object(resources, "limits").insert("memory".into(), json!(limit));
        }
        2 => {
            object(resources, "limits").remove("memory");
        }
        3 => {
            // The request alone (valid when there is no limit, or a larger one).
            object(resources, "requests").insert("memory".into(), json!(a));
        }
        _ => {
            let env = list(s, "env");
            match env
                .iter()
                .position(|e| e["name"] == "SPARK_EXECUTOR_MEMORY")
            {
                Some(i) => env[i]["value"] = json!(heap),
                None => env.push(json!({"name": "SPARK_EXECUTOR_MEMORY", "value": heap})),
            }
        }
    }
}

fn forge_annotation(c: &mut Choices, pod: &mut Value) {
    let key = *c.pick(FORGED_ANNOTATIONS);
    let value = *c.pick(&["1Gi", "1408Mi", "999999Gi", "x", "", "memory-overhead-cap"]);
    if let Some(meta) = metadata(pod) {
        object(meta, "annotations").insert(key.into(), json!(value));
    }
}

fn pod_label(c: &mut Choices, pod: &mut Value) {
    let (k, v) = *c.pick(POD_LABELS);
    if let Some(meta) = metadata(pod) {
        object(meta, "labels").insert(k.into(), json!(v));
    }
}

fn spark_args(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let what = c.below(3);
    if let Some(s) = spark_container(pod, spark) {
        match what {
            0 => {
                s.remove("args");
            }
            1 => {
                s.insert("args".into(), json!(["spark-submit"]));
            }
            _ => {
                s.insert("name".into(), json!("main"));
            }
        }
    }
}

fn extra_mount(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let volume = pod["spec"]["volumes"]
        .as_array()
        .filter(|vs| !vs.is_empty())
        .map(|vs| vs[c.below(vs.len())]["name"].clone());
    let path = *c.pick(&[
        "/var/data/spark-local-dir-1",
        "/tmp/mnt-1",
        "/opt/extra",
        "/var/data/spark-1",
    ]);
    if let (Some(name), Some(s)) = (volume, spark_container(pod, spark)) {
        list(s, "volumeMounts").push(json!({"name": name, "mountPath": path}));
    }
}

fn init_container(c: &mut Choices, pod: &mut Value) {
    let env = c.flag();
    if let Some(s) = spec(pod) {
        let inits = list(s, "initContainers");
        let n = inits.len();
        let mut init =
            json!({"name": format!("init-{n}"), "image": "busybox:1.36", "command": ["true"]});
        if env {
            init["env"] = json!([{"name": "SPARK_LOCAL_DIRS", "value": "/init"}]);
        }
        inits.push(init);
    }
}

/// A sidecar that carries one of Spark's marks that the Spark container also carries: the
/// pod becomes ambiguous and the engine must change no container at all.
fn mimic_spark_mark(c: &mut Choices, pod: &mut Value, spark: Option<usize>) {
    let Some(s) = spark else { return };
    let Some(real) = containers(pod).get(s).cloned() else {
        return;
    };
    let has_arg = has_spark_arg(&real);
    let app_id = real["env"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "SPARK_APPLICATION_ID"))
        .cloned();
    let mut sidecar = json!({"name": "mimic", "image": "busybox:1.36"});
    if has_arg {
        sidecar["args"] = real["args"].clone();
    } else if let Some(e) = app_id {
        sidecar["env"] = json!([e]);
    } else {
        return;
    }
    let n = containers(pod).len();
    let at = c.below(n + 1);
    if let Some(cs) = containers_mut(pod) {
        insert_at(cs, at, sidecar);
    }
}

/// `pod` (as the webhook receives it) with `n` more entries the policies never touch in each
/// list a policy changes — the Spark container's env and mounts, the volumes, the
/// tolerations — at the case's filler position. The patch must not grow with them.
pub fn with_filler(pod: &Value, spark: Option<usize>, at: usize, n: usize) -> Value {
    let mut pod = pod.clone();
    let splice = |items: &mut Vec<Value>, make: &dyn Fn(usize) -> Value| {
        let at = at.min(items.len());
        items.splice(at..at, (0..n).map(make));
    };
    if let Some(s) = spark_container(&mut pod, spark) {
        if let Some(env) = s.get_mut("env").and_then(Value::as_array_mut) {
            splice(
                env,
                &|i| json!({"name": format!("FILLER_{i}"), "value": "f"}),
            );
        }
        if let Some(ms) = s.get_mut("volumeMounts").and_then(Value::as_array_mut) {
            splice(
                ms,
                &|i| json!({"name": format!("filler-{i}"), "mountPath": format!("/filler/{i}")}),
            );
        }
    }
    let mounted = spark
        .and_then(|s| pod["spec"]["containers"][s]["volumeMounts"].as_array())
        .is_some();
    if let Some(s) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(vs) = s.get_mut("volumes").and_then(Value::as_array_mut) {
            splice(
                vs,
                &|i| json!({"name": format!("filler-{i}"), "emptyDir": {}}),
            );
        } else if mounted {
            // The mounts above need their volumes.
            s.insert(
                "volumes".into(),
                Value::Array(
                    (0..n)
                        .map(|i| json!({"name": format!("filler-{i}"), "emptyDir": {}}))
                        .collect(),
                ),
            );
        }
        if let Some(ts) = s.get_mut("tolerations").and_then(Value::as_array_mut) {
            splice(
                ts,
                &|i| json!({"key": format!("filler.example/t-{i}"), "operator": "Exists", "effect": "NoSchedule"}),
            );
        }
    }
    pod
}
