#!/usr/bin/env bash
# Renders install.yaml, the one-file install attached to each release: the base in manifests/,
# the cert-manager certificate path (certs/cert-manager) and the example policies (the
# ConfigMap from policies/), with the image pinned by digest. The release workflow runs it with
# the digest it pushed; .ci/run runs it with the digest of the image it built, then validates
# the result (tests/validate-manifests.sh).
#
#   release/install-yaml.sh IMAGE TAG DIGEST > install.yaml
#   e.g. release/install-yaml.sh ghcr.io/OWNER/spark-admission 0.2.0 sha256:<64 hex>
#
# Needs kubectl (with kustomize).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 3 ] || { sed -n '9,10p' "$0" >&2; exit 2; }
image="$1" tag="$2" digest="$3"
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "not a sha256 digest: $digest" >&2; exit 2; }

# Outside the repository: a kustomization may not include one of its ancestors, and kustomize
# accepts only relative paths to other kustomizations.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rel="$(realpath --relative-to="$work" "$root")"
cat >"$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/certs/cert-manager
  - $rel
images:
  - name: spark-admission
    newName: $image
    newTag: "$tag"
    digest: $digest
YAML
kubectl kustomize "$work" >"$work/install.yaml"

# The one container image must be the pinned one.
pinned="$image:$tag@$digest"
images="$(sed -n 's/^ *image: *//p' "$work/install.yaml" | sort -u)"
[ "$images" = "$pinned" ] || { echo "rendered images '$images', expected '$pinned'" >&2; exit 1; }

cat <<HEADER
# spark-admission $tag: webhook (namespace spark-admission), cert-manager certificates and the
# example policies (ConfigMap spark-admission-policies). Needs cert-manager v1.
#   kubectl apply -f install.yaml
# Image: $pinned
# Rendered by release/install-yaml.sh.
HEADER
cat "$work/install.yaml"
