#!/usr/bin/env bash
# The merge-request job, for any CI system: the policies must be valid, their tests must
# pass, and the kustomization must render. Needs spark-admission (the release binary of the
# version the kustomization pins) and kubectl on PATH.
set -euo pipefail
cd "$(dirname "$0")"
spark-admission check policies
spark-admission test --policies policies --junit test-results.xml tests
kubectl kustomize . >/dev/null
