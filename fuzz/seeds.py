#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (fuzz/corpus/TARGET/NAME) from the
recorded pods and the policy files. Run from anywhere: python3 fuzz/seeds.py"""
import json
import os
import random
import shutil

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
corpus = os.path.join(root, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def review(obj, op="CREATE", kind="Pod", uid="seed-uid", **extra):
    req = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "namespace": "spark",
        "operation": op,
        "userInfo": {"username": "system:serviceaccount:spark:spark"},
        "object": obj,
        "dryRun": False,
    }
    req.update(extra)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def compact(v):
    return json.dumps(v, separators=(",", ":")).encode()


for target in ("admission_body", "policy_set", "engine"):
    shutil.rmtree(os.path.join(corpus, target), ignore_errors=True)

fixtures = os.path.join(root, "tests", "fixtures")
for name in sorted(os.listdir(fixtures)):
    if name.endswith(".json"):
        pod = json.load(open(os.path.join(fixtures, name)))
        write("admission_body", "review-" + name, compact(review(pod)))
driver = json.load(open(os.path.join(fixtures, "spark-3.5-driver-jvm.json")))
executor = json.load(open(os.path.join(fixtures, "spark-3.5-executor-python.json")))
write("admission_body", "update", compact(review(driver, op="UPDATE")))
write("admission_body", "delete", compact(review(None, op="DELETE")))
write("admission_body", "configmap", compact(review({"kind": "ConfigMap"}, kind="ConfigMap")))
write("admission_body", "binding", compact(review({"kind": "Binding"}, subResource="binding")))
write("admission_body", "dry-run", compact(review(executor, dryRun=True)))
write("admission_body", "not-spark", compact(review({"kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})))
write("admission_body", "containers-not-a-list", compact(review({"kind": "Pod", "metadata": {"labels": {"spark-role": "driver"}}, "spec": {"containers": 5}})))
write("admission_body", "escaped-role-key", b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"kind":"Pod"},"operation":"CREATE","object":{"metadata":{"labels":{"spark\\u002drole":"executor"}},"spec":{"containers":[{"name":"spark-kubernetes-executor","args":["executor"]}]}}}}')
write("admission_body", "v1beta1", compact({**review(driver), "apiVersion": "admission.k8s.io/v1beta1"}))
write("admission_body", "no-uid", compact({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}))
write("admission_body", "not-json", b"not json")
write("admission_body", "array", b"[1,2]")
write("admission_body", "deep", b"[" * 200)
write("admission_body", "empty", b"")

for d, _, files in sorted(os.walk(os.path.join(root, "policies"))):
    for name in sorted(files):
        if name.endswith(".yaml"):
            write("policy_set", "shipped-" + name, open(os.path.join(d, name), "rb").read())
sets = os.path.join(root, "tests", "proof", "sets")
for name in sorted(os.listdir(sets)):
    write("policy_set", "proof-" + name, open(os.path.join(sets, name), "rb").read())
write("policy_set", "empty", b"")
write("policy_set", "unknown-field", b"apiVersion: spark-admission.dev/v1alpha1\nkind: SparkPodPolicy\nmetadata: {name: x}\nspec:\n  match: {roles: [executor]}\n  colour: blue\n")

# The engine target reads choices from bytes: a spread of fixed pseudo-random inputs.
rng = random.Random(10)
for i in range(24):
    data = bytes(rng.randrange(256) for _ in range(16 + 8 * i))
    write("engine", "seed-%02d" % i, data)
