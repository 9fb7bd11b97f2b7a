#!/usr/bin/env python3
"""End-to-end test: real spark-submit (pyspark from PyPI) -> apiserver-standin (plays the
Kubernetes API server, webhook dispatch driven by the MutatingWebhookConfiguration rendered
from manifests/) -> the real `spark-admission serve` over verified TLS, with example policies
from policies/. Assertions run on the pods the stand-in stored. Started by tests/e2e/run.sh,
which installs what this needs; see that script for the environment it sets."""
import argparse
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
NAMESPACE = "spark-jobs"
# A namespace enforcing Pod Security "baseline" (and warning for "restricted"), as many
# clusters label their workload namespaces.
PSA_NAMESPACE = "spark-psa"
PSA_LABELS = {"pod-security.kubernetes.io/enforce": "baseline",
              "pod-security.kubernetes.io/warn": "restricted"}
# The namespaces the stand-in knows besides its built-in ones, with their labels (the stand-in
# adds kubernetes.io/metadata.name, as the API server does). `analytics` has no label of its own.
NAMESPACES = {NAMESPACE: {"team": "data"}, "analytics": {}, PSA_NAMESPACE: PSA_LABELS}
# The variant-only policy selecting namespaces by label (team=data: NAMESPACE, not analytics).
NAMESPACE_SELECTOR_POLICY = os.path.join(HERE, "namespace-selector-policy.yaml")
WEBHOOK = "spark-pods.spark-admission.dev"
ANNOTATION = "spark-admission.dev/policies"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SPARK_CONTAINERS = ("spark-kubernetes-driver", "spark-kubernetes-executor", "executor")
MIB = 1024**2

# Node models per platform (DESIGN.md "Spot capacity, by platform"): labels and taints of a
# spot node and of an on-demand node, to evaluate where a pod could be scheduled.
NODES = {
    "aks": {
        "spot": {"labels": {"kubernetes.azure.com/scalesetpriority": "spot"},
                 "taints": [{"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"}]},
        "on-demand": {"labels": {}, "taints": []},
    },
    "gke": {
        "spot": {"labels": {"cloud.google.com/gke-spot": "true"},
                 "taints": [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}]},
        "on-demand": {"labels": {}, "taints": []},
    },
    "eks": {
        "spot": {"labels": {"eks.amazonaws.com/capacityType": "SPOT"}, "taints": []},
        "on-demand": {"labels": {"eks.amazonaws.com/capacityType": "ON_DEMAND"}, "taints": []},
    },
    "karpenter": {
        "spot": {"labels": {"karpenter.sh/capacity-type": "spot"}, "taints": []},
        "on-demand": {"labels": {"karpenter.sh/capacity-type": "on-demand"}, "taints": []},
    },
}


def log(msg):
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


class Checks:
    """Named checks per scope (a Spark version or `common`)."""

    def __init__(self):
        self.results = []  # (scope, name, ok, detail)

    def check(self, scope, name, ok, detail=""):
        self.results.append((scope, name, bool(ok), detail))
        if not ok:
            log(f"FAIL [{scope}] {name}: {detail}")
        return bool(ok)

    def count(self, scope):
        rs = [r for r in self.results if r[0] == scope]
        return sum(r[2] for r in rs), sum(not r[2] for r in rs)


# ---------------------------------------------------------------- quantities and selectors

UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1024, "Mi": 1024**2,
         "Gi": 1024**3, "Ti": 1024**4, "m": 1e-3}


def quantity(q):
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(q).strip())
    if not m or m.group(2) not in UNITS:
        raise ValueError(f"bad quantity {q!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def spark_mem(s):
    """Spark's JVM memory strings as in SPARK_EXECUTOR_MEMORY (`2048m`, `2g`) -> bytes."""
    m = re.fullmatch(r"([0-9]+)([kmgt]?)b?", s.strip().lower())
    if not m:
        raise ValueError(f"bad Spark memory {s!r}")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2)]


def expr_matches(labels, e):
    k, op, vals = e["key"], e["operator"], e.get("values") or []
    if op == "In":
        return labels.get(k) in vals
    if op == "NotIn":
        return labels.get(k) not in vals
    if op == "Exists":
        return k in labels
    if op == "DoesNotExist":
        return k not in labels
    if op in ("Gt", "Lt") and k in labels:
        a, b = int(labels[k]), int(vals[0])
        return a > b if op == "Gt" else a < b
    return False


def selector_matches(labels, sel):
    if not sel:
        return True
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    return all(expr_matches(labels, e) for e in sel.get("matchExpressions") or [])


def tolerates(tols, taint):
    for t in tols:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable(pod, node, ignore_taints=False):
    spec = pod["spec"]
    if any(node["labels"].get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    req = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if req and not any(all(expr_matches(node["labels"], e) for e in t.get("matchExpressions") or [])
                       for t in req["nodeSelectorTerms"]):
        return False
    return ignore_taints or all(tolerates(spec.get("tolerations") or [], t) for t in node["taints"]
                                if t["effect"] in ("NoSchedule", "NoExecute"))


def preference(pod, node):
    prefs = ((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution") or []
    return sum(p["weight"] for p in prefs
               if all(expr_matches(node["labels"], e) for e in p["preference"].get("matchExpressions") or []))


# ---------------------------------------------------------------- policies

def load_policies(directory):
    """Every SparkPodPolicy under the directory (recursively), as the server loads it."""
    out = []
    for dirpath, _, files in sorted(os.walk(directory)):
        for f in sorted(files):
            if f.endswith((".yaml", ".yml")):
                with open(os.path.join(dirpath, f)) as fh:
                    for doc in yaml.safe_load_all(fh):
                        if doc and doc.get("kind") == "SparkPodPolicy":
                            doc["_file"] = os.path.relpath(os.path.join(dirpath, f), directory)
                            out.append(doc)
    return out


def mode(pol):
    return pol["spec"].get("mode", "Enforce")


def active_provider(policies):
    """The platform of the enforced placement policies (policies/ enables one pair)."""
    providers = {p["spec"]["placement"].get("provider") for p in policies
                 if "placement" in p["spec"] and mode(p) == "Enforce"}
    return providers.pop() if len(providers) == 1 else None


def namespace_labels(namespace):
    return {**NAMESPACES.get(namespace, {}), "kubernetes.io/metadata.name": namespace}


def policy_matches(pol, role, namespace, labels):
    m = pol["spec"]["match"]
    # `driver` covers SparkConnect servers (spark-role: connect-server), which run the driver
    # of every session on them.
    if role not in m["roles"] and not (role == "connect-server" and "driver" in m["roles"]):
        return False
    if m.get("namespaces") and not any(fnmatch.fnmatchcase(namespace, g) for g in m["namespaces"]):
        return False
    if any(fnmatch.fnmatchcase(namespace, g) for g in m.get("excludeNamespaces") or []):
        return False
    if not selector_matches(namespace_labels(namespace), m.get("namespaceSelector")):
        return False
    return selector_matches(labels, m.get("podSelector"))


def applicable(policies, pod, enforce_only=True):
    labels = pod["metadata"].get("labels", {})
    role = labels.get("spark-role")
    ns = pod["metadata"]["namespace"]
    pols = [p for p in policies if policy_matches(p, role, ns, labels)
            and (mode(p) == "Enforce" if enforce_only else mode(p) != "Off")]
    return sorted(pols, key=lambda p: (p["spec"].get("priority", 0), p["metadata"]["name"]))


def last_with(pols, key):
    with_key = [p for p in pols if key in p["spec"]]
    return with_key[-1] if with_key else None


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, parse_body(r.read())
    except urllib.error.HTTPError as e:
        return e.code, parse_body(e.read())


def parse_body(raw):
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw.decode(errors="replace")


def wait_until(what, fn, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if fn():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


class Proc:
    def __init__(self, name, cmd, logdir, env=None):
        self.name = name
        self.log = open(os.path.join(logdir, f"{name}.log"), "w")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def stop(self, sig=signal.SIGTERM, timeout=25):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


class Standin:
    """An apiserver-standin process with the rendered webhook configuration, the test CA as
    caBundle, and the webhook Service mapped to the local server port."""

    def __init__(self, name, args, workdir, rendered, ca, server_port):
        ready = os.path.join(workdir, f"{name}.addr")
        if os.path.exists(ready):
            os.remove(ready)
        self.proc = Proc(name, [args.standin, "--ready-file", ready, "--probe-reinvocation",
                                "--dump-dir", os.path.join(workdir, f"{name}-pods"),
                                *[a for ns, labels in NAMESPACES.items()
                                  for a in ("--namespace", ",".join([ns] + [f"{k}={v}" for k, v in labels.items()]))],
                                "--webhook-config", rendered, "--ca-bundle", ca,
                                "--endpoint", f"spark-admission.spark-admission:443=127.0.0.1:{server_port}"],
                         workdir)
        wait_until(f"{name} to listen", lambda: os.path.exists(ready) and open(ready).read())
        with open(ready) as fh:
            self.url = "http://" + fh.read().strip()

    def get(self, what):
        return http("GET", f"{self.url}/_standin/{what}")[1]

    def create_pod(self, ns, pod):
        return http("POST", f"{self.url}/api/v1/namespaces/{ns}/pods", pod)


# ---------------------------------------------------------------- Spark

def spark_env(args, version, workdir):
    env = dict(os.environ)
    venv = os.path.join(args.cache, f"venv-{version}")
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env["PATH"]
    env.pop("SPARK_HOME", None)
    env["VIRTUAL_ENV"] = venv
    env["PYSPARK_PYTHON"] = os.path.join(venv, "bin", "python")
    env["PYSPARK_DRIVER_PYTHON"] = os.path.join(venv, "bin", "python")
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    env["KUBECONFIG"] = os.path.join(workdir, "no-kubeconfig")  # never a real cluster's
    return env


def confs(conf):
    return [a for k, v in conf.items() for a in ("--conf", f"{k}={v}")]


# Memory each submission gives Spark, and what Spark sizes the container from it
# (BasicDriverFeatureStep; ResourceProfile.getResourcesForClusterManager): heap + overhead
# (+ off-heap on executors), overhead = explicit or max(factor x heap, 384). `lowerable`: the
# overhead is Spark's default, the only case in which the webhook may lower it.
DRIVER_DEFAULT = {"conf": {"spark.driver.memory": "2g"},
                  "memory": {"heap": 2048, "total": 2048 + 819, "lowerable": False}}
# PySpark driver, 6g + explicit 1g: 7168Mi, which is also 5g x 1.4 (drivers are never lowered).
DRIVER_EXPLICIT_OVERHEAD = {"conf": {"spark.driver.memory": "6g", "spark.driver.memoryOverhead": "1g"},
                            "memory": {"heap": 6144, "total": 7168, "lowerable": False}}
# Executors as a cluster-mode PySpark driver creates them: it runs with these two properties
# (DriverCommandFeatureStep, BasicDriverFeatureStep), so its executors get the 0.4 default.
EXECUTORS_PYSPARK_DEFAULT = {"conf": {"spark.executor.memory": "2g",
                                      "spark.kubernetes.resource.type": "python",
                                      "spark.kubernetes.memoryOverheadFactor": "0.4"},
                             "memory": {"heap": 2048, "total": 2048 + 819, "lowerable": True}}
# Off-heap executors in a container Spark's template names `main`: 2g + 384 + 1g off-heap.
EXECUTORS_OFFHEAP = {"conf": {"spark.executor.memory": "2g",
                              "spark.memory.offHeap.enabled": "true",
                              "spark.memory.offHeap.size": "1g"},
                     "memory": {"heap": 2048, "off_heap": 1024, "total": 2048 + 384 + 1024, "lowerable": False},
                     "template": "executor-template-main.yaml", "container": "main"}


def submit_cluster(args, version, standin_url, workdir, name, setup=DRIVER_DEFAULT, timeout=180):
    cmd = ["spark-submit", "--master", f"k8s://{standin_url}", "--deploy-mode", "cluster",
           "--name", name,
           "--conf", f"spark.kubernetes.namespace={NAMESPACE}",
           "--conf", f"spark.kubernetes.container.image=apache/spark:{version}",
           "--conf", "spark.kubernetes.submission.waitAppCompletion=false",
           "--conf", "spark.kubernetes.authenticate.driver.serviceAccountName=spark",
           "--conf", f"spark.kubernetes.driver.podTemplateFile={HERE}/driver-template.yaml",
           "--conf", "spark.kubernetes.driver.podTemplateContainerName=spark-kubernetes-driver",
           *confs(setup["conf"]),
           "local:///opt/spark/examples/src/main/python/pi.py", "10"]
    return run_logged(cmd, spark_env(args, version, workdir), workdir, f"submit-{name}", timeout)


def submit_client(args, version, standin_url, workdir, name, executors=2,
                  setup=EXECUTORS_PYSPARK_DEFAULT, timeout=180, namespace=NAMESPACE):
    template = setup.get("template", "executor-template.yaml")
    container = setup.get("container", "spark-kubernetes-executor")
    cmd = ["spark-submit", "--master", f"k8s://{standin_url}", "--deploy-mode", "client",
           "--name", name,
           "--conf", f"spark.kubernetes.namespace={namespace}",
           "--conf", f"spark.kubernetes.container.image=apache/spark:{version}",
           "--conf", f"spark.executor.instances={executors}",
           "--conf", "spark.executor.cores=1",
           "--conf", "spark.driver.host=127.0.0.1",
           "--conf", "spark.driver.bindAddress=127.0.0.1",
           "--conf", "spark.scheduler.minRegisteredResourcesRatio=0",
           "--conf", "spark.ui.enabled=false",
           "--conf", f"spark.kubernetes.executor.podTemplateFile={HERE}/{template}",
           "--conf", f"spark.kubernetes.executor.podTemplateContainerName={container}",
           *confs(setup["conf"]),
           os.path.join(HERE, "client_app.py")]
    env = spark_env(args, version, workdir)
    env["E2E_STANDIN_URL"] = standin_url
    env["E2E_EXECUTORS"] = str(executors)
    env["E2E_WAIT_SECONDS"] = "60"
    return run_logged(cmd, env, workdir, f"submit-{name}", timeout)


def run_logged(cmd, env, workdir, name, timeout):
    path = os.path.join(workdir, f"{name}.log")
    with open(path, "w") as out:
        try:
            rc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                timeout=timeout, stdin=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    with open(path) as fh:
        return rc, fh.read()


def app_id_from(output):
    m = re.search(r"application ID (spark-[0-9a-f]+)", output) or re.search(r'"appId": "(spark-[^"]+)"', output)
    return m.group(1) if m else None


# ---------------------------------------------------------------- assertions on stored pods

def spark_container(pod):
    """By Spark's mark, the first argument `driver`/`executor`, whatever a template named it."""
    cs = pod["spec"]["containers"]
    return (next((c for c in cs if (c.get("args") or [None])[0] in ("driver", "executor")), None)
            or next((c for c in cs if c["name"] in SPARK_CONTAINERS), None))


def env_map(c):
    return {e["name"]: e for e in c.get("env") or []}


def check_spark_pod(chk, scope, pod, policies, provider, calls, memory=None):
    """`memory`: what the submission gave Spark (see DRIVER_DEFAULT...), for the memory checks."""
    labels = pod["metadata"].get("labels", {})
    role = labels["spark-role"]
    name = pod["metadata"]["name"]
    tag = f"{role} {name}"
    pols = applicable(policies, pod)
    names = [p["metadata"]["name"] for p in pols]
    ann = (pod["metadata"].get("annotations") or {}).get(ANNOTATION, "")
    applied = [s.strip() for s in ann.split(",") if s.strip()]
    chk.check(scope, f"{tag}: annotation names the policies applied", sorted(applied) == sorted(names),
              f"annotation {ann!r}, expected {names}")

    sc = spark_container(pod)
    if not chk.check(scope, f"{tag}: Spark container present", sc is not None, ""):
        return
    others = [c for c in pod["spec"]["containers"] if c is not sc] + (pod["spec"].get("initContainers") or [])

    # What the API server added before the webhook is still there.
    all_containers = pod["spec"]["containers"] + (pod["spec"].get("initContainers") or [])
    chk.check(scope, f"{tag}: token volume mounted in every container",
              all(any(m["mountPath"] == SA_MOUNT and m["name"].startswith("kube-api-access-")
                      for m in c.get("volumeMounts") or []) for c in all_containers), "")
    tol_keys = {t.get("key") for t in pod["spec"].get("tolerations") or []}
    chk.check(scope, f"{tag}: default NoExecute tolerations kept",
              {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} <= tol_keys, str(tol_keys))

    # Placement, judged on model nodes of the platform.
    placement = last_with(pols, "placement")
    if placement and provider in NODES:
        pl = placement["spec"]["placement"]
        want, other = pl["capacity"], ("on-demand" if pl["capacity"] == "spot" else "spot")
        nodes = NODES[provider]
        ok_want = schedulable(pod, nodes[want])
        if pl.get("scheduling", "required") == "required":
            # Excluded by the pod's own node selection, not merely by the other nodes' taints.
            ok = ok_want and not schedulable(pod, nodes[other], ignore_taints=True)
        else:
            ok = ok_want and preference(pod, nodes[want]) > preference(pod, nodes[other])
        chk.check(scope, f"{tag}: placed on {want} capacity ({provider}, {pl.get('scheduling', 'required')})", ok,
                  json.dumps({"nodeSelector": pod["spec"].get("nodeSelector"), "affinity": pod["spec"].get("affinity"),
                              "tolerations": pod["spec"].get("tolerations")}))
        if want == "spot":
            chk.check(scope, f"{tag}: tolerates the {provider} spot taint",
                      all(tolerates(pod["spec"].get("tolerations") or [], t) for t in nodes["spot"]["taints"]), "")
    elif role == "driver" and provider in NODES:
        chk.check(scope, f"{tag}: a placement policy matched", False, f"policies {names}")

    for p in pols:
        for t in p["spec"].get("tolerations") or []:
            chk.check(scope, f"{tag}: toleration {t.get('key')} from {p['metadata']['name']}",
                      any(all(x.get(k) == v for k, v in t.items()) for x in pod["spec"].get("tolerations") or []), "")

    # Local dirs: replaced, mounted in the Spark container, SPARK_LOCAL_DIRS consistent.
    ld = last_with(pols, "localDirs")
    vols = [v for v in pod["spec"].get("volumes") or [] if v["name"].startswith("spark-local-dir-")]
    mounts = [m for m in sc.get("volumeMounts") or [] if m["name"].startswith("spark-local-dir-")]
    env = env_map(sc)
    local_dirs = env.get("SPARK_LOCAL_DIRS", {}).get("value", "")
    # The effective entry (the last: env_map keeps it) names exactly the mounts; the order is
    # the webhook's per-executor rotation.
    chk.check(scope, f"{tag}: SPARK_LOCAL_DIRS equals the local-dir mounts",
              sorted(local_dirs.split(",")) == sorted(m["mountPath"] for m in mounts) and len(mounts) == len(vols),
              f"SPARK_LOCAL_DIRS={local_dirs!r}, mounts {[m['mountPath'] for m in mounts]}, volumes {[v['name'] for v in vols]}")
    if ld:
        want_vols = ld["spec"]["localDirs"]["volumes"]
        ok = len(vols) == len(want_vols)
        for got, w in zip(vols, want_vols):
            for src in ("hostPath", "emptyDir", "ephemeral"):
                if src in w:
                    ok &= src in got
                    if src == "hostPath":
                        ok &= got["hostPath"]["path"] == w["hostPath"]["path"]
        chk.check(scope, f"{tag}: local dirs replaced per {ld['metadata']['name']}", ok,
                  f"volumes {json.dumps(vols)}")
        chk.check(scope, f"{tag}: no local dir mounted in sidecars/init",
                  not any(m["name"].startswith("spark-local-dir-") for c in others for m in c.get("volumeMounts") or []), "")

    # Secret env refs on the Spark container only.
    for p in pols:
        for s in p["spec"].get("secretEnv") or []:
            e = env.get(s["name"])
            ref = ((e or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
            chk.check(scope, f"{tag}: {s['name']} from secret {s['secretName']}/{s['key']} on the Spark container",
                      ref.get("name") == s["secretName"] and ref.get("key") == s["key"] and "value" not in (e or {}),
                      json.dumps(e))
            chk.check(scope, f"{tag}: {s['name']} not on sidecars/init containers",
                      not any(s["name"] in env_map(c) for c in others), "")

    # Memory: overhead within the policy's bounds where the heap is known (executors).
    mem = last_with(pols, "memory")
    res = sc.get("resources") or {}
    req = (res.get("requests") or {}).get("memory")
    lim = (res.get("limits") or {}).get("memory")
    if req and lim:
        chk.check(scope, f"{tag}: memory request <= limit", quantity(req) <= quantity(lim), f"{req} / {lim}")
    limit_rule = ((mem or {}).get("spec", {}).get("memory", {}).get("limit") or {}).get("mode")
    if limit_rule and req:
        want_lim = {"EqualToRequest": req, "NoLimit": None}.get(limit_rule, lim)
        if limit_rule == "RequestPlusHeadroom":
            want_lim = quantity(req) + quantity(mem["spec"]["memory"]["limit"]["headroom"])
            lim_ok = lim is not None and abs(quantity(lim) - want_lim) < 1
        else:
            lim_ok = (lim is None) == (want_lim is None) and (lim is None or quantity(lim) == quantity(want_lim))
        chk.check(scope, f"{tag}: memory limit per {limit_rule}", lim_ok, f"request {req}, limit {lim}")
    if memory and req:
        check_memory(chk, scope, tag, pod, sc, mem, memory, calls)

    # The webhook was called for it, and calling again changed nothing (idempotent).
    mine = [c for c in calls if c["name"] == name and c["namespace"] == pod["metadata"]["namespace"]]
    first = [c for c in mine if not c["reinvocation"]]
    chk.check(scope, f"{tag}: webhook called once, patched", len(first) == 1 and first[0]["outcome"] == "patched",
              json.dumps([(c["outcome"], c["error"]) for c in first]))
    if first:
        audit = first[0]["audit_annotations"].get(f"{WEBHOOK}/policies", "")
        chk.check(scope, f"{tag}: audit annotation {WEBHOOK}/policies matches the pod annotation",
                  audit == ann and not first[0]["dropped_audit_annotations"],
                  f"{first[0]['audit_annotations']} dropped {first[0]['dropped_audit_annotations']}")
    again = [c for c in mine if c["reinvocation"]]
    chk.check(scope, f"{tag}: reinvocation with its own output changes nothing",
              again and all(c["outcome"] == "allowed" for c in again), json.dumps([c["patch"] for c in again]))
    check_same_verdict(chk, scope, tag, first, again)
    long_warnings = [w for c in mine for w in c["warnings"] if len(w) > 120]
    chk.check(scope, f"{tag}: warnings at most 120 chars", not long_warnings, str(long_warnings))


def check_memory(chk, scope, tag, pod, sc, mem, memory, calls):
    """Never below what Spark will use; lowered only from Spark's default overhead, within the
    policy's bounds; otherwise exactly as Spark sized it, with a warning saying why."""
    req = quantity(sc["resources"]["requests"]["memory"])
    heap, total = memory["heap"] * MIB, memory["total"] * MIB
    floor = heap + memory.get("off_heap", 0) * MIB + 384 * MIB
    chk.check(scope, f"{tag}: memory {req / MIB:.0f}Mi >= heap + off-heap + minimum overhead {floor / MIB:.0f}Mi",
              req >= floor, "")
    ob = ((mem or {}).get("spec", {}).get("memory", {}).get("overhead")) or {}
    if not ob or not memory["lowerable"]:
        chk.check(scope, f"{tag}: memory kept as Spark sized it ({memory['total']}Mi)", req == total,
                  f"request {req / MIB:.0f}Mi")
        if ob and total - heap > 0:
            first = [c for c in calls if c["name"] == pod["metadata"]["name"] and not c["reinvocation"]]
            chk.check(scope, f"{tag}: a warning says why memory was kept",
                      any("not Spark's default" in w for c in first for w in c["warnings"]),
                      json.dumps([c["warnings"] for c in first]))
        return
    overhead = req - heap
    lo = quantity(ob["min"]) if ob.get("min") else 384 * MIB
    hi = float("inf")
    if ob.get("factor") is not None:
        hi = min(hi, ob["factor"] * heap)
    if ob.get("max"):
        hi = min(hi, quantity(ob["max"]))
    hi = max(hi, lo, 384 * MIB)
    chk.check(scope, f"{tag}: Spark's default overhead lowered to {overhead / MIB:.0f}Mi within [{lo / MIB:.0f}Mi, {hi / MIB:.0f}Mi] ({mem['metadata']['name']})",
              lo - MIB <= overhead <= hi + MIB and req < total, f"request {req / MIB:.0f}Mi, Spark's {memory['total']}Mi")


def defaulted_equal(stored, sent):
    """The stored pod carries the sent labels/spec untouched (the webhook did nothing)."""
    ann = (stored["metadata"].get("annotations") or {})
    same_containers = [c["name"] for c in stored["spec"]["containers"]] == [c["name"] for c in sent["spec"]["containers"]]
    same_env = all((c.get("env") or []) == (s.get("env") or [])
                   for c, s in zip(stored["spec"]["containers"], sent["spec"]["containers"]))
    return (ANNOTATION not in ann and "nodeSelector" not in stored["spec"]
            and "affinity" not in stored["spec"] and same_containers and same_env
            and [v["name"] for v in stored["spec"]["volumes"] if not v["name"].startswith("kube-api-access-")]
            == [v["name"] for v in sent["spec"].get("volumes") or []])


def plain_pod(name, labels):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "main", "image": "nginx:1.27",
                                     "env": [{"name": "MODE", "value": "web"}],
                                     "volumeMounts": [{"name": "spark-local-dir-1", "mountPath": "/data"}]}],
                     "volumes": [{"name": "spark-local-dir-1", "emptyDir": {}}]}}


def start_server(args, name, pol_dir, certs, work, procs, port=None, env=None):
    """`spark-admission serve` on loopback with the test certificates; (process, port)."""
    port, admin = port or free_port(), free_port()
    server = Proc(name, [args.server, "serve", "--policies", pol_dir,
                         "--cert", os.path.join(certs, "tls.crt"), "--key", os.path.join(certs, "tls.key"),
                         "--addr", f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{admin}",
                         "--drain-delay", "0s", "--shutdown-timeout", "2s", "--log-format", "text"], work, env=env)
    procs.append(server)
    wait_until(f"{name} ready", lambda: http("GET", f"http://127.0.0.1:{admin}/readyz")[0] == 200)
    return server, port


def check_fixtures(chk, scope, standin, policies):
    """Every recorded Spark pod in tests/fixtures (pod templates with sidecars, submitter local
    dirs, literal env clashing with a secret env policy...) goes through the chain: admitted (the
    patch applies and the result validates), the right policies named, and idempotent."""
    fixtures = os.path.join(ROOT, "tests", "fixtures")
    for f in sorted(os.listdir(fixtures)) if os.path.isdir(fixtures) else []:
        if not f.endswith(".json"):
            continue
        with open(os.path.join(fixtures, f)) as fh:
            pod = json.load(fh)
        ns = pod["metadata"].get("namespace") or "default"
        code, stored = standin.create_pod(ns, pod)
        ok = code == 201
        detail = json.dumps(stored)[:600]
        if ok:
            ann = (stored["metadata"].get("annotations") or {}).get(ANNOTATION, "")
            pols = applicable(policies, stored)
            want = sorted(p["metadata"]["name"] for p in pols)
            mine = [c for c in standin.get("calls") if c["name"] == pod["metadata"]["name"] and c["namespace"] == ns]
            ok = (sorted(a for a in ann.split(",") if a) == want
                  and [c["outcome"] for c in mine] == ["patched", "allowed"])
            detail = f"annotation {ann!r} want {want}; calls {[(c['outcome'], c['error']) for c in mine]}"
            check_same_verdict(chk, scope, f"fixture {f}", [c for c in mine if not c["reinvocation"]],
                               [c for c in mine if c["reinvocation"]])
        chk.check(scope, f"fixture {f}: admitted, valid, right policies, idempotent", ok, detail)


def check_same_verdict(chk, scope, tag, first, again):
    """Called again with its own output (as re-defaulted by the API server), the webhook warns
    nothing it did not warn the first time: a new warning means it took its own work for
    someone else's."""
    said = {w for c in first for w in c["warnings"]}
    new = [w for c in again for w in c["warnings"] if w not in said]
    chk.check(scope, f"{tag}: reinvocation warns nothing new", not new, str(new))


# ---------------------------------------------------------------- policy variants

# A pod gets one placement and one set of local dirs: a run enforces one policy of each kind
# per role, as the example files tell a user to switch them.
EXCLUSIVE = ("placement", "localDirs")
# Recorded pods without a template, submitter local dirs or literal env: judged like the pods
# of a real submission (the drivers of a variant come from these).
PLAIN_FIXTURES = ("spark-3.5-driver-python.json", "spark-3.5-driver-jvm.json", "spark-3.5-executor-python.json")
VARIANTS = {}  # scope -> description
PSA_VERDICTS = []  # (scope, verdict)


def is_off(pol):
    # PyYAML reads `mode: Off` as the boolean false (YAML 1.1).
    return mode(pol) in ("Off", False)


def policy_variants(policies):
    """The shipped set, then one variant per file of switched-off policies: that file's policies
    enforced, and every enforced policy of the same exclusive kind for the same roles switched
    off."""
    enforced = [p for p in policies if not is_off(p)]
    out = [{"name": "shipped", "enforce": [], "off": []}]
    for f in sorted({p["_file"] for p in policies if is_off(p)}):
        group = [p for p in policies if p["_file"] == f and is_off(p)]
        kinds = {k for p in group for k in p["spec"] if k in EXCLUSIVE}
        roles = {r for p in group for r in p["spec"]["match"]["roles"]}
        displaced = [p["metadata"]["name"] for p in enforced
                     if kinds & set(p["spec"]) and roles & set(p["spec"]["match"]["roles"])]
        out.append({"name": os.path.splitext(f)[0].replace(os.sep, "-"),
                    "enforce": [p["metadata"]["name"] for p in group], "off": displaced})
    return out


def set_mode(doc_text, mode_value):
    """A policy document with `spec.mode` set, edited as text so the rest stays as written."""
    lines = doc_text.split("\n")
    for i, line in enumerate(lines):
        if re.match(r"^\s+mode:\s*\S+", line):
            lines[i] = re.sub(r"mode:\s*\S+", f"mode: {mode_value}", line, count=1)
            return "\n".join(lines)
    for i, line in enumerate(lines):
        if line.rstrip() == "spec:":
            indent = re.match(r"^(\s*)", lines[i + 1]).group(1) if i + 1 < len(lines) else "  "
            lines.insert(i + 1, f"{indent}mode: {mode_value}")
            return "\n".join(lines)
    raise ValueError("policy document without spec")


def write_variant(src, dest, variant):
    """A copy of the policy directory (its YAML files, subdirectories kept) with the variant's
    modes."""
    want = {**{n: "Enforce" for n in variant["enforce"]}, **{n: "Off" for n in variant["off"]}}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith((".yaml", ".yml")):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            with open(os.path.join(src, rel)) as fh:
                docs = re.split(r"(?m)^---\s*$", fh.read())
            for i, doc in enumerate(docs):
                parsed = yaml.safe_load(doc)
                name = ((parsed or {}).get("metadata") or {}).get("name")
                if (parsed or {}).get("kind") == "SparkPodPolicy" and name in want:
                    docs[i] = set_mode(doc, want[name])
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            with open(os.path.join(dest, rel), "w") as fh:
                fh.write("---".join(docs))


def check_pod_security(chk, scope, standin, policies):
    """What the variant's local-dirs policy does in a namespace enforcing Pod Security
    "baseline": a recorded executor is admitted unless the policy gives it hostPath volumes,
    which baseline forbids. Returns whether it was admitted."""
    with open(os.path.join(ROOT, "tests", "fixtures", "spark-3.5-executor-python.json")) as fh:
        pod = json.load(fh)
    pod["metadata"]["namespace"] = PSA_NAMESPACE
    ld = last_with(applicable(policies, pod), "localDirs")
    host = bool(ld) and any("hostPath" in v for v in ld["spec"]["localDirs"]["volumes"])
    code, stored = standin.create_pod(PSA_NAMESPACE, pod)
    message = stored.get("message", "") if isinstance(stored, dict) else str(stored)
    who = ld["metadata"]["name"] if ld else "no local-dirs policy"
    if host:
        ok = code == 403 and 'violates PodSecurity "baseline:latest": hostPath volumes' in message
        verdict = f"{who} rejected ({message.split('is forbidden: ')[-1]})"
    else:
        vols = stored.get("spec", {}).get("volumes", []) if code == 201 else []
        ok = code == 201 and not any("hostPath" in v for v in vols)
        verdict = f"{who} admitted"
    chk.check(scope, f"Pod Security baseline ({PSA_NAMESPACE}): {verdict}", ok, f"{code} {message}")
    PSA_VERDICTS.append((scope, verdict))
    return code == 201


def run_variants(args, work, chk, certs, rendered, pol_dir):
    """Every shipped policy enforced at least once: one run per variant (`policy_variants`),
    each with its own server and stand-in, one Spark version and client-mode executors, the
    drivers from recorded pods; and each variant's local dirs in the Pod Security namespace,
    where the first admitted variant also runs its executors."""
    # The first version listed: Spark 3.5 starts faster than 4.x, and the variants are about
    # the policies, which each version already ran as shipped.
    version = args.versions[0]
    psa_submitted = False
    for v in policy_variants(load_policies(pol_dir)):
        scope = f"variant {v['name']}"
        VARIANTS[scope] = (f"enforced: {', '.join(v['enforce'])}; off: {', '.join(v['off']) or '-'}"
                           if v["enforce"] else "policies as shipped")
        t0 = time.monotonic()
        vdir = os.path.join(work, f"policies-{v['name']}")
        write_variant(pol_dir, vdir, v)
        policies = load_policies(vdir)
        chk.check(scope, "variant's modes in force",
                  all(not is_off(p) for p in policies if p["metadata"]["name"] in v["enforce"])
                  and all(is_off(p) for p in policies if p["metadata"]["name"] in v["off"]), vdir)
        procs = []
        try:
            _, port = start_server(args, f"server-{v['name']}", vdir, certs, work, procs)
            standin = Standin(f"standin-{v['name']}", args, work, rendered, os.path.join(certs, "ca.crt"), port)
            procs.append(standin.proc)
            provider = active_provider(policies)
            admitted = check_pod_security(chk, scope, standin, policies)
            in_psa = admitted and not psa_submitted
            if v["enforce"] or in_psa:
                ns = PSA_NAMESPACE if in_psa else NAMESPACE
                psa_submitted |= in_psa
                name = f"e2e-{v['name']}-{version.replace('.', '')}"
                rc, out = submit_client(args, version, standin.url, work, name, namespace=ns)
                app = app_id_from(out)
                chk.check(scope, f"client-mode executors admitted in {ns} (Spark {version})", rc == 0 and app,
                          f"rc={rc}\n{out[-3000:]}")
                pods, calls = standin.get("pods"), standin.get("calls")
                execs = [p for p in pods if p["metadata"]["labels"].get("spark-app-selector") == app
                         and p["metadata"]["labels"].get("spark-role") == "executor"]
                if chk.check(scope, "two executor pods stored", len(execs) == 2, str(len(execs))) and in_psa:
                    PSA_VERDICTS.append((scope, "a real spark-submit's executors admitted"))
                for p in execs:
                    check_spark_pod(chk, scope, p, policies, provider, calls,
                                    memory=EXECUTORS_PYSPARK_DEFAULT["memory"])
            if v["enforce"]:
                for f in PLAIN_FIXTURES:
                    with open(os.path.join(ROOT, "tests", "fixtures", f)) as fh:
                        pod = json.load(fh)
                    pod["metadata"]["name"] += f"-{v['name']}"
                    code, stored = standin.create_pod(pod["metadata"].get("namespace") or "default", pod)
                    if chk.check(scope, f"recorded {f} admitted", code == 201, json.dumps(stored)[:500]):
                        check_spark_pod(chk, scope, stored, policies, provider, standin.get("calls"))
                check_fixtures(chk, scope, standin, policies)
        finally:
            for p in reversed(procs):
                p.stop()
        TIMES[scope] = time.monotonic() - t0


def run_namespace_selector(args, work, chk, certs, rendered, pol_dir):
    """match.namespaceSelector end to end: the shipped set plus NAMESPACE_SELECTOR_POLICY, the
    server's Namespace cache filled from the stand-in (a kubeconfig naming it: list, then a
    watch kept open), one real client-mode submission into the labelled namespace and one into
    the other, and a recorded driver in each; the model (`policy_matches`) reads the same labels."""
    version = args.versions[0]
    scope = "variant namespace-selector"
    VARIANTS[scope] = ("policies as shipped + tests/e2e/namespace-selector-policy.yaml, "
                       "namespace labels from the stand-in's Namespaces")
    t0 = time.monotonic()
    vdir = os.path.join(work, "policies-namespace-selector")
    write_variant(pol_dir, vdir, {"enforce": [], "off": []})
    shutil.copy(NAMESPACE_SELECTOR_POLICY, vdir)
    policies = load_policies(vdir)
    selecting = [p for p in policies if p["spec"]["match"].get("namespaceSelector")]
    chk.check(scope, "one policy selects namespaces by label", len(selecting) == 1, str(len(selecting)))
    labelled = [ns for ns in (NAMESPACE, "analytics") if selector_matches(namespace_labels(ns),
                                                                         selecting[0]["spec"]["match"]["namespaceSelector"])]
    chk.check(scope, f"the model: {NAMESPACE} selected, analytics not", labelled == [NAMESPACE], str(labelled))
    procs = []
    try:
        # The stand-in first (it needs the server's port), then the server with a kubeconfig
        # naming the stand-in: it is ready only once its Namespace cache has synced.
        port = free_port()
        standin = Standin("standin-namespace-selector", args, work, rendered, os.path.join(certs, "ca.crt"), port)
        procs.append(standin.proc)
        kubeconfig = os.path.join(work, "kubeconfig-namespace-selector")
        with open(kubeconfig, "w") as fh:
            fh.write("apiVersion: v1\nkind: Config\ncurrent-context: standin\n"
                     f"clusters:\n- name: standin\n  cluster: {{server: \"{standin.url}\"}}\n"
                     "contexts:\n- name: standin\n  context: {cluster: standin, user: standin}\n"
                     "users:\n- name: standin\n  user: {token: e2e}\n")
        server, _ = start_server(args, "server-namespace-selector", vdir, certs, work, procs, port=port,
                                 env={**os.environ, "KUBECONFIG": kubeconfig})
        with open(os.path.join(work, "server-namespace-selector.log")) as fh:
            server_log = fh.read()
        with open(os.path.join(work, "standin-namespace-selector.log")) as fh:
            requests = [line for line in fh if "/api/v1/namespaces?" in line]
        chk.check(scope, "server ready after listing the stand-in's Namespaces, watch open",
                  "namespace cache synced" in server_log and any("watch=true" not in r for r in requests)
                  and any("watch=true" in r for r in requests), "".join(requests)[-1500:])
        provider = active_provider(policies)
        tol = selecting[0]["spec"]["tolerations"][0]
        for ns in (NAMESPACE, "analytics"):
            applies = ns == NAMESPACE
            name = f"e2e-nssel-{ns}-{version.replace('.', '')}"
            rc, out = submit_client(args, version, standin.url, work, name, executors=1, namespace=ns)
            app = app_id_from(out)
            chk.check(scope, f"client-mode executor admitted in {ns} (Spark {version})", rc == 0 and app,
                      f"rc={rc}\n{out[-3000:]}")
            pods = [p for p in standin.get("pods") if p["metadata"]["labels"].get("spark-app-selector") == app
                    and p["metadata"]["labels"].get("spark-role") == "executor"]
            chk.check(scope, f"one executor pod stored in {ns}", len(pods) == 1, str(len(pods)))
            judged = [(p, EXECUTORS_PYSPARK_DEFAULT["memory"]) for p in pods]
            with open(os.path.join(ROOT, "tests", "fixtures", "spark-3.5-driver-python.json")) as fh:
                driver = json.load(fh)
            driver["metadata"]["name"] += "-nssel"
            driver["metadata"]["namespace"] = ns
            code, stored = standin.create_pod(ns, driver)
            if chk.check(scope, f"recorded driver admitted in {ns}", code == 201, json.dumps(stored)[:500]):
                judged.append((stored, None))
            calls = standin.get("calls")
            for p, memory in judged:
                check_spark_pod(chk, scope, p, policies, provider, calls, memory=memory)
                role = p["metadata"]["labels"]["spark-role"]
                ann = (p["metadata"].get("annotations") or {}).get(ANNOTATION, "")
                named = selecting[0]["metadata"]["name"] in ann.split(",")
                tolerated = any(t.get("key") == tol["key"] for t in p["spec"].get("tolerations") or [])
                chk.check(scope, f"{role} in {ns}: {selecting[0]['metadata']['name']} "
                          + ("applied (namespace labelled team=data)" if applies else "not applied (no team label)"),
                          named == applies and tolerated == applies, f"annotation {ann!r}, tolerations "
                          + json.dumps(p["spec"].get("tolerations")))
        # One list and one watch for the whole run: the watch stayed open (a watch the
        # reflector lost would be opened again, after an error with a new list).
        with open(os.path.join(work, "standin-namespace-selector.log")) as fh:
            requests = [line for line in fh if "/api/v1/namespaces?" in line]
        watches = sum("watch=true" in r for r in requests)
        chk.check(scope, "one Namespace list and one watch, kept open through the submissions",
                  server.p.poll() is None and watches == 1 and len(requests) == 2, "".join(requests)[-1500:])
    finally:
        for p in reversed(procs):
            p.stop()
    TIMES[scope] = time.monotonic() - t0


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--versions", nargs="+", required=True)
    ap.add_argument("--server", required=True, help="spark-admission binary")
    ap.add_argument("--standin", required=True, help="apiserver-standin binary")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--policies", default=os.path.join(ROOT, "policies"))
    args = ap.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    chk = Checks()
    procs = []
    started = time.monotonic()
    try:
        run(args, work, chk, procs)
    except Exception as e:  # report, still print the summary
        import traceback
        traceback.print_exc()
        chk.check("common", "harness ran to the end", False, repr(e))
    finally:
        for p in procs:
            p.stop()
    scopes = list(dict.fromkeys(args.versions + ["common"] + [r[0] for r in chk.results]))
    total_ok = total_bad = 0
    for scope in scopes:
        ok, bad = chk.count(scope)
        total_ok += ok
        total_bad += bad
    for scope in args.versions:
        secs = TIMES.get(scope, 0.0)
        ok, bad = chk.count(scope)
        print(f"e2e spark {scope}: {'PASS' if bad == 0 and ok else 'FAIL'} - {ok} checks passed, {bad} failed "
              f"(cluster + client mode, webhook down under Fail and Ignore) in {secs:.1f}s")
    for scope, what in VARIANTS.items():
        ok, bad = chk.count(scope)
        print(f"e2e {scope}: {'PASS' if bad == 0 and ok else 'FAIL'} - {ok} checks passed, {bad} failed "
              f"({what}) in {TIMES.get(scope, 0.0):.1f}s")
    if PSA_VERDICTS:
        by_verdict = {}
        for scope, verdict in PSA_VERDICTS:
            by_verdict.setdefault(verdict, []).append(scope.removeprefix("variant "))
        print(f"e2e Pod Security baseline ({PSA_NAMESPACE}): "
              + "; ".join(f"{verdict} [{', '.join(scopes)}]" for verdict, scopes in by_verdict.items()))
    ok, bad = chk.count("common")
    print(f"e2e common: {'PASS' if bad == 0 and ok else 'FAIL'} - {ok} checks passed, {bad} failed "
          f"(non-Spark pod, excluded namespace, dry run, recorded fixtures, keep-alive); total {time.monotonic() - started:.1f}s; logs in {work}")
    print(f"{total_ok} passed, {total_bad} failed")
    return 0 if total_bad == 0 and total_ok > 0 else 1


TIMES = {}


def run(args, work, chk, procs):
    # Certificates from our own CLI, for the in-cluster service name.
    certs = os.path.join(work, "certs")
    subprocess.run([args.server, "certs", "--service", "spark-admission", "--namespace", "spark-admission",
                    "--out", certs], check=True, stdout=subprocess.DEVNULL)
    # The webhook configuration, rendered from manifests/ (base: Fail; with the fail-open
    # component: Ignore).
    base = os.path.join(work, "rendered-base.yaml")
    with open(base, "w") as out:
        subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, "manifests")], check=True, stdout=out)
    fo_dir = os.path.join(work, "fail-open")
    os.makedirs(fo_dir)
    with open(os.path.join(fo_dir, "kustomization.yaml"), "w") as fh:
        rel = os.path.relpath(os.path.join(ROOT, "manifests"), fo_dir)
        fh.write("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
                 f"resources:\n  - {rel}\ncomponents:\n  - {rel}/components/fail-open\n")
    fail_open = os.path.join(work, "rendered-fail-open.yaml")
    with open(fail_open, "w") as out:
        subprocess.run(["kubectl", "kustomize", fo_dir], check=True, stdout=out)

    # The example policies exactly as shipped (one platform pair enabled, the rest Off), as
    # the server sees them in the cluster: the files of the ConfigMap generated by the root
    # kustomization, written out flat like the kubelet's volume.
    pol_dir = args.policies
    if os.path.abspath(pol_dir) == os.path.join(ROOT, "policies") and os.path.exists(os.path.join(ROOT, "kustomization.yaml")):
        rendered = subprocess.run(["kubectl", "kustomize", ROOT], check=True, capture_output=True, text=True).stdout
        cms = [d for d in yaml.safe_load_all(rendered)
               if d and d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "spark-admission-policies"]
        pol_dir = os.path.join(work, "policies-configmap")
        os.makedirs(pol_dir)
        for key, text in (cms[0].get("data") or {}).items() if cms else []:
            with open(os.path.join(pol_dir, key), "w") as fh:
                fh.write(text)
        in_git = sorted(p["metadata"]["name"] for p in load_policies(args.policies))
        in_cm = sorted(p["metadata"]["name"] for p in load_policies(pol_dir))
        chk.check("common", "policies ConfigMap holds every policy in policies/", in_git == in_cm,
                  f"policies/ {in_git} vs ConfigMap {in_cm}")
    policies = load_policies(pol_dir)
    provider = active_provider(policies)
    enforced = [p["metadata"]["name"] for p in policies if mode(p) == "Enforce"]
    log(f"platform {provider}; enforced policies {enforced}")
    kinds = {k for p in policies if mode(p) == "Enforce" for k in p["spec"]}
    chk.check("common", "example policies: a tainted-spot platform pair, local dirs, secret env, memory",
              provider in ("aks", "gke") and {"placement", "localDirs", "secretEnv", "memory"} <= kinds,
              f"{provider} {sorted(kinds)}")

    server, port = start_server(args, "server", pol_dir, certs, work, procs)
    standin = Standin("standin-fail", args, work, base, os.path.join(certs, "ca.crt"), port)
    procs.append(standin.proc)
    cfg = standin.get("config")
    chk.check("common", "base webhook config: failurePolicy Fail", cfg and cfg[0]["failurePolicy"] == "Fail", json.dumps(cfg))

    for v in args.versions:
        t0 = time.monotonic()
        rc, out = submit_cluster(args, v, standin.url, work, f"e2e-cluster-{v.replace('.', '')}",
                                 setup=DRIVER_EXPLICIT_OVERHEAD)
        cluster_app = app_id_from(out)
        chk.check(v, "cluster-mode spark-submit succeeds", rc == 0 and cluster_app, f"rc={rc}\n{out[-2000:]}")
        rc, out = submit_client(args, v, standin.url, work, f"e2e-client-{v.replace('.', '')}")
        client_app = app_id_from(out)
        chk.check(v, "client-mode driver gets its executors admitted", rc == 0 and client_app, f"rc={rc}\n{out[-3000:]}")
        pods = standin.get("pods")
        calls = standin.get("calls")
        # Off-heap executors in a container the template renamed `main`.
        rc, out = submit_client(args, v, standin.url, work, f"e2e-offheap-{v.replace('.', '')}", executors=1,
                                setup=EXECUTORS_OFFHEAP)
        offheap_app = app_id_from(out)
        chk.check(v, "off-heap executors: the driver gets its executor admitted", rc == 0 and offheap_app,
                  f"rc={rc}\n{out[-3000:]}")
        pods = standin.get("pods")
        calls = standin.get("calls")

        def of(app, role):
            return [p for p in pods if p["metadata"]["labels"].get("spark-app-selector") == app
                    and p["metadata"]["labels"].get("spark-role") == role]

        runs = [("driver", cluster_app, 1, DRIVER_EXPLICIT_OVERHEAD),
                ("executor", client_app, 2, EXECUTORS_PYSPARK_DEFAULT),
                ("executor", offheap_app, 1, EXECUTORS_OFFHEAP)]
        stored = []
        for role, app, want, setup in runs:
            got = of(app, role)
            chk.check(v, f"{want} {role} pod(s) of {app} stored", len(got) == want, str(len(got)))
            stored += [(p, setup) for p in got]
        chk.check(v, f"pods carry spark-version {v}",
                  all(p["metadata"]["labels"].get("spark-version") == v for p, _ in stored), "")
        for p, setup in stored:
            check_spark_pod(chk, v, p, policies, provider, calls, memory=setup["memory"])
        main = [p for p, setup in stored if setup is EXECUTORS_OFFHEAP]
        chk.check(v, "a renamed Spark container (`main`) is the one patched, its sidecar untouched",
                  main and all(spark_container(p)["name"] == "main"
                               and "APP_ID" in env_map(spark_container(p))
                               and not any("APP_ID" in env_map(c) for c in p["spec"]["containers"] if c["name"] != "main")
                               for p in main), json.dumps(main)[:800])
        TIMES[v] = time.monotonic() - t0

    # Non-Spark pod in the same namespace: never sent, stored as defaulted.
    calls_before = len(standin.get("calls"))
    sent = plain_pod("web-1", {"app": "web"})
    code, stored = standin.create_pod(NAMESPACE, sent)
    chk.check("common", "non-Spark pod admitted", code == 201, json.dumps(stored)[:500])
    chk.check("common", "non-Spark pod untouched (never sent to the webhook)",
              code == 201 and defaulted_equal(stored, sent) and len(standin.get("calls")) == calls_before, "")
    # Spark-labelled pod in kube-system: excluded by namespaceSelector.
    sent = plain_pod("spark-in-kube-system", {"spark-role": "executor", "spark-app-selector": "spark-sys"})
    code, stored = standin.create_pod("kube-system", sent)
    chk.check("common", "Spark pod in kube-system admitted without a webhook call",
              code == 201 and defaulted_equal(stored, sent) and len(standin.get("calls")) == calls_before,
              f"{code} calls {len(standin.get('calls')) - calls_before}")
    # A dry-run create of a Spark pod: the webhook is called (sideEffects: None) and patches,
    # nothing is stored.
    sent = plain_pod("spark-dry-run", {"spark-role": "executor", "spark-app-selector": "spark-dry"})
    sent["spec"]["containers"][0]["name"] = "spark-kubernetes-executor"
    code, answered = http("POST", f"{standin.url}/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All", sent)
    dry_calls = [c for c in standin.get("calls") if c["name"] == "spark-dry-run"]
    chk.check("common", "dry-run Spark pod: webhook called with dryRun, patched, not stored",
              code == 201 and ANNOTATION in (answered["metadata"].get("annotations") or {})
              and dry_calls and all(c["dry_run"] for c in dry_calls)
              and not any(p["metadata"]["name"] == "spark-dry-run" for p in standin.get("pods")),
              f"{code} {json.dumps(dry_calls)[:500]}")
    # A SparkConnect server (the spark-operator labels it spark-role=connect-server and names
    # its container spark-kubernetes-driver): in the webhook's scope, placed like a driver.
    sent = plain_pod("spark-connect-server", {"spark-role": "connect-server", "sparkoperator.k8s.io/connect-name": "sc"})
    sent["spec"]["containers"][0]["name"] = "spark-kubernetes-driver"
    code, stored = standin.create_pod(NAMESPACE, sent)
    sc_calls = [c for c in standin.get("calls") if c["name"] == "spark-connect-server" and not c["reinvocation"]]
    want = sorted(p["metadata"]["name"] for p in applicable(policies, stored)) if code == 201 else []
    ann = ((stored.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION, "") if code == 201 else ""
    on_demand = provider in NODES and code == 201 and schedulable(stored, NODES[provider]["on-demand"]) \
        and not schedulable(stored, NODES[provider]["spot"], ignore_taints=True)
    chk.check("common", "SparkConnect server: webhook called, driver policies applied, placed on on-demand",
              code == 201 and len(sc_calls) == 1 and sorted(a for a in ann.split(",") if a) == want
              and any("driver" in p["spec"]["match"]["roles"] for p in applicable(policies, stored)) and on_demand,
              f"{code} calls {len(sc_calls)} annotation {ann!r} want {want} {json.dumps(stored)[:600]}")
    check_fixtures(chk, "common", standin, policies)
    stats = standin.get("stats")
    log(f"stand-in stats: {stats}")
    chk.check("common", "webhook connections kept alive and reused",
              stats["webhookConnectionsOpened"] * 2 <= stats["webhookCalls"], json.dumps(stats))

    # Webhook stopped: the base (Fail) rejects Spark pods, the fail-open component admits them
    # unmodified. Both with real spark-submit.
    server.stop()
    chk.check("common", "server exits on SIGTERM", server.p.returncode == 0, f"rc={server.p.returncode}")
    standin_open = Standin("standin-ignore", args, work, fail_open, os.path.join(certs, "ca.crt"), port)
    procs.append(standin_open.proc)
    cfg = standin_open.get("config")
    chk.check("common", "fail-open webhook config: failurePolicy Ignore", cfg and cfg[0]["failurePolicy"] == "Ignore", json.dumps(cfg))
    for v in args.versions:
        t0 = time.monotonic()
        name = f"e2e-down-{v.replace('.', '')}"
        rc, out = submit_cluster(args, v, standin.url, work, name + "-fail")
        chk.check(v, "webhook down + Fail: spark-submit fails with the API server's error",
                  rc not in (0, "timeout") and f'failed calling webhook "{WEBHOOK}"' in out,
                  f"rc={rc}\n{out[-1500:]}")
        rej = [r for r in standin.get("rejections") if r["name"].startswith(name + "-fail")]
        chk.check(v, "webhook down + Fail: driver rejected with 500 InternalError",
                  rej and rej[-1]["code"] == 500 and rej[-1]["message"].startswith("Internal error occurred: failed calling webhook"),
                  json.dumps(rej))
        rc, out = submit_cluster(args, v, standin_open.url, work, name + "-ignore")
        app = app_id_from(out)
        chk.check(v, "webhook down + Ignore: spark-submit succeeds", rc == 0 and app, f"rc={rc}\n{out[-1500:]}")
        drv = [p for p in standin_open.get("pods") if p["metadata"]["labels"].get("spark-app-selector") == app]
        chk.check(v, "webhook down + Ignore: driver admitted unmodified",
                  len(drv) == 1 and ANNOTATION not in (drv[0]["metadata"].get("annotations") or {})
                  and "affinity" not in drv[0]["spec"]
                  and any(v2["name"].startswith("spark-local-dir-") and "emptyDir" in v2 for v2 in drv[0]["spec"]["volumes"]),
                  json.dumps(drv)[:800])
        oc = [c["outcome"] for c in standin_open.get("calls")
              if c["name"].startswith(name + "-ignore") and not c["reinvocation"]]
        chk.check(v, "webhook down + Ignore: the call failed open", oc == ["failed-open"], str(oc))
        TIMES[v] += time.monotonic() - t0

    run_variants(args, work, chk, certs, base, pol_dir)
    run_namespace_selector(args, work, chk, certs, base, pol_dir)


if __name__ == "__main__":
    sys.exit(main())
