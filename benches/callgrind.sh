#!/usr/bin/env bash
# Instructions per admission under valgrind's callgrind: spark-admission against the ceiling
# server (examples/ceiling.rs), for the Spark executor and a non-Spark pod. Instruction counts
# repeat exactly on a shared, noisy machine, so this is how a change is compared before/after.
#
#   cargo build --release --bin spark-admission --example ceiling
#   bash benches/callgrind.sh [N]          # N requests per run, default 2000
#
# Each server runs under callgrind twice, for N and 2N requests (h2load over HTTP/1.1, four
# keep-alive connections, the bodies benches/load.py builds); the difference divided by N is
# the cost of one admission with start-up and TLS handshakes cancelled out. The profiles stay
# in target/bench/callgrind/ for callgrind_annotate.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:-2000}"
out="$root/target/bench/callgrind"
rm -rf "$out" && mkdir -p "$out"
for tool in valgrind callgrind_control h2load curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install valgrind nghttp2-client curl)" >&2; exit 1; }
done
release="$root/target/release"
"$release/spark-admission" certs --out "$out/certs" --san 127.0.0.1 >/dev/null
python3 - "$out" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, "benches")
import load
load.bodies(Path(sys.argv[1]))
EOF
port=19444

# run SERVER BODY REQUESTS: prints the instructions the server executed until the load ended.
run() {
  local server=$1 body=$2 requests=$3 file="$out/$1.$2.$3"
  local cmd=("$release/examples/ceiling" --addr "127.0.0.1:$port")
  if [ "$server" = spark-admission ]; then
    cmd=("$release/spark-admission" serve --workers 1 --policies "$root/policies"
      --addr "127.0.0.1:$port" --admin-addr 127.0.0.1:0 --drain-delay 0s)
  fi
  valgrind --tool=callgrind --callgrind-out-file="$file" "${cmd[@]}" \
    --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" >"$file.log" 2>&1 &
  local pid=$!
  for _ in $(seq 200); do curl -sk -o /dev/null "https://127.0.0.1:$port/" && break; sleep 0.2; done
  h2load --h1 -n "$requests" -c 4 -t 1 -d "$out/$body.json" -H 'content-type: application/json' \
    "https://127.0.0.1:$port/mutate?timeout=10s" | grep -q "$requests succeeded" \
    || { echo "$server: not every request succeeded" >&2; kill "$pid"; exit 1; }
  callgrind_control --dump "$pid" >/dev/null 2>&1
  sleep 1
  kill -TERM "$pid"
  wait "$pid" || true
  sed -n 's/^summary: //p' "$file.1"
}

printf '%-16s %-9s %14s\n' server pod "instr/request"
for pair in "ceiling executor" "spark-admission executor" "spark-admission plain"; do
  read -r server body <<<"$pair"
  one=$(run "$server" "$body" "$n")
  two=$(run "$server" "$body" "$((2 * n))")
  printf '%-16s %-9s %14d\n' "$server" "$body" "$(((two - one) / n))"
done
