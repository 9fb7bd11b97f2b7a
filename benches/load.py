#!/usr/bin/env python3
"""Load benchmark of `spark-admission serve` against the ceiling of its stack, in one run.

    cargo build --release --bin spark-admission --example ceiling
    python3 benches/load.py                 # the full suite (about 6 minutes), plots in docs/benchmarks/
    python3 benches/load.py --smoke         # seconds: CI's check (fails on any failed request
                                            # or when threads grow with connections)
    python3 benches/load.py --smoke --binary target/dist/spark-admission-linux-amd64
                                            # the smoke check on another build (no ceiling needed)

Each server runs pinned to CPU 0 (`taskset -c 0`, so one worker thread), the load generator
pinned to CPU 1. Both servers are started fresh for each measurement, with the same
certificate, and fed the same AdmissionReviews:
  - `executor`: the recorded Spark executor (tests/fixtures/spark-3.5-executor-python.json) as
    the API server sends it, patched by the shipped policies/;
  - `plain`: the same review without the `spark-role` label (not a Spark pod: answered as is);
  - `hostile`: the executor with 16,000 extra env vars (537 KB).
Load generators: wrk (HTTP/1.1, fixed connections, throughput and latency percentiles),
h2load (HTTP/2, 10 connections x 100 streams), oha (a fixed rate with latency correction).
Figures read from /proc: peak RSS (VmHWM), threads, CPU time. Results go to
target/bench/results.json; a Markdown table is printed; plots are written with matplotlib
(installed into a virtualenv under ~/.cache/spark-admission-bench when missing).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
BINARY = RELEASE / "spark-admission"  # --binary replaces it
CACHE = Path(os.environ.get("SPARK_ADMISSION_BENCH_CACHE", Path.home() / ".cache" / "spark-admission-bench"))
SERVER_CPU, CLIENT_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_field(pid: int, field: str) -> int:
    """A kB figure from /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# Inputs


def api_server_defaults(pod: dict) -> dict:
    """What the API server adds before calling a webhook (as tests/common/mod.rs does)."""
    spec = pod["spec"]
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("volumes", []).append({
        "name": "kube-api-access-x7k2p",
        "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        ]},
    })
    for c in spec["containers"]:
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("volumeMounts", []).append({
            "name": "kube-api-access-x7k2p",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": True,
        })
    spec["tolerations"] = spec.get("tolerations", []) + [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]
    return pod


def review(pod: dict, uid: str = "bench") -> bytes:
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": pod["metadata"].get("namespace", "default"),
            "userInfo": {"username": "system:serviceaccount:spark:spark"},
            "object": pod, "dryRun": False,
        },
    }).encode()


def bodies(workdir: Path) -> dict:
    executor = api_server_defaults(json.loads((ROOT / "tests/fixtures/spark-3.5-executor-python.json").read_text()))
    plain = json.loads(json.dumps(executor))
    del plain["metadata"]["labels"]["spark-role"]
    hostile = json.loads(json.dumps(executor))
    env = hostile["spec"]["containers"][0]["env"]
    first = [e for e in env if e["name"] == "SPARK_LOCAL_DIRS"]
    rest = [e for e in env if e["name"] != "SPARK_LOCAL_DIRS"]
    filler = [{"name": f"TENANT_VAR_{i}", "value": "x"} for i in range(16000)]
    hostile["spec"]["containers"][0]["env"] = first + filler + rest
    out = {}
    for name, pod in [("executor", executor), ("plain", plain), ("hostile", hostile)]:
        path = workdir / f"{name}.json"
        path.write_bytes(review(pod))
        out[name] = path
    return out


# ---------------------------------------------------------------------------------------------
# Servers


class Server:
    """One server process pinned to SERVER_CPU, ready when /readyz (or its port) answers."""

    def __init__(self, kind: str, certs: Path, workdir: Path):
        self.kind = kind
        self.port = free_port()
        self.log = open(workdir / f"{kind}.log", "ab")
        if kind == "ceiling":
            cmd = [str(RELEASE / "examples" / "ceiling"), "--addr", f"127.0.0.1:{self.port}",
                   "--cert", str(certs / "tls.crt"), "--key", str(certs / "tls.key")]
            self.admin = None
        else:
            self.admin = free_port()
            cmd = [str(BINARY), "serve", "--policies", str(ROOT / "policies"),
                   "--cert", str(certs / "tls.crt"), "--key", str(certs / "tls.key"),
                   "--addr", f"127.0.0.1:{self.port}", "--admin-addr", f"127.0.0.1:{self.admin}",
                   "--log-format", "json", "--drain-delay", "0s"]
        started = time.monotonic()
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CPU] + cmd, stdout=self.log,
                                     stderr=self.log, env={**os.environ, "RUST_LOG": "info"})
        self.ready_seconds = self._wait_ready(started)

    def _wait_ready(self, started: float) -> float:
        deadline = started + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: see its log")
            try:
                if self.admin:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1) as r:
                        if r.status == 200:
                            return time.monotonic() - started
                else:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                        return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.kind} not ready in 20 s")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate?timeout=10s"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# ---------------------------------------------------------------------------------------------
# Load generators

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "rb"); wrk.body = f:read("*a"); f:close()
done = function(summary, latency, requests)
  io.stderr:write(string.format(
    '{"requests": %d, "seconds": %f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""


def client(cmd: list) -> list:
    return ["taskset", "-c", CLIENT_CPU] + cmd


def wrk(url: str, body: Path, connections: int, seconds: float, script: Path) -> dict:
    out = subprocess.run(
        client(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script), url]),
        capture_output=True, text=True, env={**os.environ, "BODY": str(body)}, check=True)
    line = [l for l in out.stderr.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    r["failed"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["status_errors"] + r["timeouts"]
    r["rps"] = r["requests"] / r["seconds"]
    return r


def h2load(url: str, body: Path, connections: int, streams: int, requests: int) -> dict:
    out = subprocess.run(
        client(["h2load", "-n", str(requests), "-c", str(connections), "-m", str(streams), "-t", "1",
                "-d", str(body), "-H", "content-type: application/json", url]),
        capture_output=True, text=True, check=True).stdout
    r = {}
    for line in out.splitlines():
        if line.startswith("finished in"):
            r["rps"] = float(line.split(",")[1].split()[0])
        if line.startswith("requests:"):
            parts = line.replace(",", "").split()
            r["requests"] = int(parts[1])
            r["succeeded"] = int(parts[7])
            r["failed"] = r["requests"] - r["succeeded"]
        if line.startswith("status codes:"):
            r["non_2xx"] = sum(int(p.split()[0]) for p in line.split(":", 1)[1].split(",")[1:])
    r["failed"] = r.get("failed", 0) + r.get("non_2xx", 0)
    return r


def oha_binary():
    found = shutil.which("oha") or (CACHE / "oha" / "bin" / "oha")
    return str(found) if Path(found).exists() else None


def oha_fixed_rate(url: str, body: Path, rate: int, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        client([oha_binary(), "--no-tui", "--output-format", "json", "--insecure", "-m", "POST",
                "-T", "application/json", "-D", str(body), "-q", str(rate), "--latency-correction",
                "-z", f"{seconds}s", "-c", str(connections), url]),
        capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    p = r["latencyPercentiles"]
    codes = r.get("statusCodeDistribution", {})
    return {
        "rps": r["summary"]["requestsPerSec"],
        "p50_us": p["p50"] * 1e6, "p99_us": p["p99"] * 1e6, "p999_us": p["p99.9"] * 1e6,
        "requests": sum(codes.values()),
        # oha cuts the request in flight when the run's time is up: not a failure.
        "failed": sum(v for k, v in codes.items() if k != "200")
        + sum(v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"),
    }


def one_request(url: str, body: Path) -> float:
    """Time of one request on a fresh TLS connection (no verification: loopback)."""
    import ssl
    import http.client
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=30)
    data = body.read_bytes()
    start = time.monotonic()
    conn.request("POST", "/mutate?timeout=10s", data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    took = time.monotonic() - start
    if resp.status != 200:
        raise RuntimeError(f"hostile pod answered {resp.status}")
    return took


# ---------------------------------------------------------------------------------------------
# The suite


def measure(kind, certs, workdir, load):
    """Start a fresh server, run `load(server)`, return its result with the server's figures."""
    server = Server(kind, certs, workdir)
    try:
        pid = server.proc.pid
        cpu0 = cpu_seconds(pid)
        peak_threads = threads(pid)
        result = load(server)
        peak_threads = max(peak_threads, threads(pid))
        result.update({
            "peak_rss_kib": proc_field(pid, "VmHWM"),
            "threads": peak_threads,
            "cpu_seconds": cpu_seconds(pid) - cpu0,
            "ready_seconds": server.ready_seconds,
        })
        if result.get("requests"):
            result["cpu_us_per_request"] = result["cpu_seconds"] / result["requests"] * 1e6
        return result
    finally:
        server.stop()


def sample_threads(server, run):
    """Run `run()` while sampling the server's thread count; the peak is added to the result."""
    import threading
    peak = [threads(server.proc.pid)]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], threads(server.proc.pid))
            except OSError:
                return
            time.sleep(0.05)
    t = threading.Thread(target=sampler)
    t.start()
    try:
        result = run()
    finally:
        stop.set()
        t.join()
    result["threads_during"] = peak[0]
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="a few seconds; fail on any failed request or thread growth")
    ap.add_argument("--seconds", type=float, default=8, help="length of each wrk run")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench"))
    ap.add_argument("--plots", default=str(ROOT / "docs" / "benchmarks"))
    ap.add_argument("--binary", help="the spark-admission binary to measure (default target/release/spark-admission)")
    args = ap.parse_args()
    global BINARY
    if args.binary:
        BINARY = Path(args.binary).resolve()
    if os.cpu_count() < 2:
        sys.exit("needs two CPUs: the server on CPU 0, the load generator on CPU 1")
    for tool in ["wrk", "h2load", "taskset"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install wrk nghttp2-client util-linux)")
    # The smoke check measures spark-admission alone; the full suite compares it with the ceiling.
    for binary in [BINARY] + ([] if args.smoke else [RELEASE / "examples" / "ceiling"]):
        if not binary.exists():
            sys.exit(f"{binary} is missing: cargo build --release --bin spark-admission --example ceiling")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="spark-admission-bench-"))
    certs = workdir / "certs"
    subprocess.run([str(BINARY), "certs", "--out", str(certs), "--san", "127.0.0.1"],
                   check=True, capture_output=True)
    body = bodies(workdir)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    results = {"machine": machine(), "runs": []}

    def record(**r):
        results["runs"].append(r)
        shown = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in r.items()}
        print(json.dumps(shown), flush=True)

    seconds = 2 if args.smoke else args.seconds
    levels = [1, 64] if args.smoke else [1, 16, 64, 256]
    pods = ["executor"] if args.smoke else ["executor", "plain"]
    servers = ["spark-admission"] if args.smoke else ["ceiling", "spark-admission"]
    for c in levels:
        for pod in pods:
            for kind in servers:
                r = measure(kind, certs, workdir, lambda s: sample_threads(
                    s, lambda: wrk(s.url, body[pod], c, seconds, script)))
                record(test="wrk", server=kind, pod=pod, connections=c, **r)
    h2 = h2load if not args.smoke else (lambda u, b, c, m, n: h2load(u, b, c, m, 4000))
    for kind in servers:
        r = measure(kind, certs, workdir, lambda s: sample_threads(
            s, lambda: h2(s.url, body["executor"], 10, 100, 100_000)))
        record(test="h2load", server=kind, pod="executor", connections=10, streams=100, **r)
    if not args.smoke:
        if oha_binary():
            for kind in servers:
                r = measure(kind, certs, workdir, lambda s: oha_fixed_rate(s.url, body["executor"], 500, 20, 16))
                record(test="fixed-rate", server=kind, pod="executor", rate=500, connections=16, **r)
        else:
            print("oha not found (cargo install oha --locked): no fixed-rate run", file=sys.stderr)
        r = measure("spark-admission", certs, workdir, lambda s: {"seconds": one_request(s.url, body["hostile"]),
                                                                  "bytes": body["hostile"].stat().st_size})
        record(test="hostile", server="spark-admission", pod="hostile", **r)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results: {out / 'results.json'}")
    failures = check(results, smoke=args.smoke)
    if not args.smoke:
        print(table(results))
        plots(results, Path(args.plots))
    shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        sys.exit(1)


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown")
    return {"cpu": cpu, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "kernel": os.uname().release, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def check(results, smoke: bool) -> list:
    """What the smoke test enforces: no failed request; threads do not grow with connections."""
    failures = []
    ours = [r for r in results["runs"] if r["server"] == "spark-admission"]
    for r in ours:
        if r.get("failed"):
            failures.append(f"{r['test']} {r.get('connections')} connections: {r['failed']} failed requests")
    counts = [r.get("threads_during", r["threads"]) for r in ours if r["test"] in ("wrk", "h2load")]
    if counts and max(counts) > min(counts):
        failures.append(f"threads grow with connections: {counts}")
    return failures


def table(results) -> str:
    runs = results["runs"]

    def find(**kw):
        return next((r for r in runs if all(r.get(k) == v for k, v in kw.items())), None)
    lines = ["| test | connections | ceiling req/s | spark-admission req/s | ratio | p50 / p99 / p99.9 µs (ours) | peak RSS MiB | threads | CPU µs/req |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        if r["server"] != "spark-admission" or r["test"] == "hostile":
            continue
        ceiling = find(test=r["test"], server="ceiling", pod=r["pod"], connections=r.get("connections"))
        ratio = f"{r['rps'] / ceiling['rps']:.2f}" if ceiling else "–"
        lat = " / ".join(f"{r[k]:.0f}" for k in ("p50_us", "p99_us", "p999_us") if k in r) or "–"
        name = {"wrk": f"HTTP/1.1 {r['pod']}", "h2load": "HTTP/2 executor, 100 streams each",
                "fixed-rate": f"fixed {r.get('rate')}/s executor"}[r["test"]]
        lines.append(f"| {name} | {r.get('connections')} | {ceiling['rps']:.0f} | {r['rps']:.0f} | {ratio} | {lat} | "
                     f"{r['peak_rss_kib'] / 1024:.1f} | {r.get('threads_during', r['threads'])} | "
                     f"{r.get('cpu_us_per_request', 0):.0f} |" if ceiling else
                     f"| {name} | {r.get('connections')} | – | {r['rps']:.0f} | – | {lat} | {r['peak_rss_kib'] / 1024:.1f} | "
                     f"{r.get('threads_during', r['threads'])} | {r.get('cpu_us_per_request', 0):.0f} |")
    h = find(test="hostile")
    if h:
        lines.append(f"\nHostile pod ({h['bytes'] // 1024} KiB, 16,000 env vars), one request on a fresh server: "
                     f"{h['seconds'] * 1000:.1f} ms, peak RSS {h['peak_rss_kib'] / 1024:.1f} MiB, "
                     f"server CPU {h['cpu_seconds'] * 1000:.0f} ms (including start-up)")
    ready = [r["ready_seconds"] for r in runs if r["server"] == "spark-admission"]
    lines.append(f"\nTime to ready (spawn to /readyz 200): median {sorted(ready)[len(ready) // 2] * 1000:.0f} ms")
    return "\n".join(lines)


def plots(results, where: Path):
    try:
        import matplotlib
    except ImportError:
        venv = CACHE / "plot-venv"
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "matplotlib"], check=True)
        # Plot in the virtualenv's Python, from the results file.
        subprocess.run([str(venv / "bin" / "python"), __file__, "--plot-only", str(where)],
                       input=json.dumps(results), text=True, check=True)
        return
    draw(results, where)


def draw(results, where: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    where.mkdir(parents=True, exist_ok=True)
    runs = [r for r in results["runs"] if r["test"] == "wrk"]
    series = [("ceiling", "executor", "ceiling (parse + allow)"),
              ("spark-admission", "plain", "spark-admission, non-Spark pod"),
              ("spark-admission", "executor", "spark-admission, Spark executor")]
    for metric, label, name in [("rps", "admissions per second", "throughput"),
                                ("p99_us", "p99 latency (µs)", "latency-p99"),
                                ("peak_rss_kib", "peak RSS (MiB)", "memory"),
                                ("threads_during", "threads (peak)", "threads")]:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for server, pod, title in series:
            pts = sorted((r["connections"], r[metric] / (1024 if metric == "peak_rss_kib" else 1))
                         for r in runs if r["server"] == server and r["pod"] == pod)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=title)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("HTTP/1.1 keep-alive connections")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{label}: one server CPU ({results['machine']['when']})", fontsize=9)
        fig.tight_layout()
        fig.savefig(where / f"{name}.png", dpi=110)
        plt.close(fig)
    print(f"plots: {where}/{{throughput,latency-p99,memory,threads}}.png")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--plot-only":
        draw(json.loads(sys.stdin.read()), Path(sys.argv[2]))
    else:
        main()
