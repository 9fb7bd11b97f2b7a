#!/usr/bin/env python3
"""Measure what `spark-admission serve` costs, to size the Deployment's resources.

    cargo build --release && python3 tests/measure_serve.py [--requests 20000] [--connections 8]

Starts the release binary on loopback with certificates from `spark-admission certs` and the
repository's policies/, replays AdmissionReviews built from tests/fixtures/*.json over
HTTPS keep-alive connections (as the API server does), and prints: resident memory idle and
at peak, CPU seconds per 1000 reviews, and the client-side throughput. A benchmark that prints
figures, not a test: it asserts only that every review was answered with HTTP 200.
Standard library only.
"""

import argparse
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "spark-admission"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int, field: str) -> int:
    """A kB figure from /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def review(pod: dict) -> bytes:
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": gvk,
                "resource": gvr,
                "requestKind": gvk,
                "requestResource": gvr,
                "namespace": "spark-jobs",
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:spark-jobs:spark"},
                "object": pod,
                "oldObject": None,
                "dryRun": False,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        }
    ).encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()
    if not BINARY.is_file():
        print(f"{BINARY} missing: run `cargo build --release` first", file=sys.stderr)
        return 1

    pods = [json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "fixtures").glob("*.json"))]
    bodies = [review(p) for p in pods]

    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp) / "certs"
        subprocess.run(
            [BINARY, "certs", "--service", "spark-admission", "--namespace", "spark-admission",
             "--out", certs],
            check=True, capture_output=True,
        )
        port, admin = free_port(), free_port()
        server = subprocess.Popen(
            [BINARY, "serve", "--policies", ROOT / "policies",
             "--cert", certs / "tls.crt", "--key", certs / "tls.key",
             "--addr", f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{admin}",
             "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TOKIO_WORKER_THREADS": "2", "RUST_LOG": "warn"},
        )
        try:
            for _ in range(100):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                    c.request("GET", "/readyz")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            else:
                print("server did not become ready", file=sys.stderr)
                return 1
            idle_rss = proc_status(server.pid, "VmRSS")

            ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            per_conn = args.requests // args.connections
            failures = []

            def client(n: int) -> None:
                conn = http.client.HTTPSConnection(
                    "spark-admission.spark-admission.svc", port, context=ctx, timeout=10)
                # Dial loopback but verify the certificate for the Service's DNS name.
                raw = socket.create_connection(("127.0.0.1", port))
                # http.client writes headers and body separately: without NODELAY, Nagle and
                # delayed ACKs would add ~40 ms to every review.
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sock = ctx.wrap_socket(
                    raw, server_hostname="spark-admission.spark-admission.svc")
                for i in range(n):
                    conn.request("POST", "/mutate?timeout=5s", body=bodies[i % len(bodies)],
                                 headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        failures.append(resp.status)

            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            threads = [threading.Thread(target=client, args=(per_conn,))
                       for _ in range(args.connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            cpu1, t1 = cpu_seconds(server.pid), time.monotonic()
            total = per_conn * args.connections
            peak_rss = proc_status(server.pid, "VmHWM")
            end_rss = proc_status(server.pid, "VmRSS")
        finally:
            server.terminate()
            server.wait(timeout=30)

    if failures:
        print(f"{len(failures)} reviews failed: {failures[:5]}", file=sys.stderr)
        return 1
    print(f"reviews            {total} over {args.connections} keep-alive connections")
    print(f"rss idle           {idle_rss / 1024:.1f} MiB")
    print(f"rss peak (VmHWM)   {peak_rss / 1024:.1f} MiB")
    print(f"rss after the load {end_rss / 1024:.1f} MiB")
    print(f"server cpu         {cpu1 - cpu0:.2f} s = {1000 * (cpu1 - cpu0) / total:.3f} s per 1000 reviews")
    print(f"throughput         {total / (t1 - t0):.0f} reviews/s (client-bound: Python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
