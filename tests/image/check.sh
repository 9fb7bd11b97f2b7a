#!/usr/bin/env bash
# Checks a spark-admission image, given as an OCI image layout, the way a cluster runs it.
#
#   tests/image/check.sh LAYOUT [REF]     # REF: the tag in the layout, if it holds several
#
# 1. Config: entrypoint /spark-admission, cmd serve, USER 65532:65532, ports 8443 and 8080,
#    OCI labels with the crate version and a git revision; one layer whose digests match.
# 2. Contents: the layer holds exactly one file, /spark-admission (root-owned, mode 0555).
# 3. Runs it: the unpacked root filesystem becomes, in a private mount namespace, a read-only
#    overlay with the TLS Secret and the policies bind-mounted read-only where the Deployment
#    mounts them; the binary runs there with chroot as uid/gid 65532, an empty environment
#    and no /proc, /dev or libc: `--version`
#    must match the labels, `check` must accept the shipped policies, and `serve` must become
#    ready on its admin port, answer one AdmissionReview (examples/admission-review.json)
#    over verified TLS with a patch, expose spark_admission_build_info and exit cleanly on
#    SIGTERM.
# Needs root (mount namespace, overlayfs, chroot), python3 and unshare (util-linux).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
uid=65532
tls_dir=/etc/spark-admission/tls
policies_dir=/etc/spark-admission/policies

# --- inside the mount namespace (the script runs itself again under unshare) ---------------
if [ "${1:-}" = --in-namespace ]; then
  work="$2"
  merged="$work/merged"
  mount -t tmpfs tmpfs "$work/upper"
  mkdir "$work/upper/data" "$work/upper/work"
  mount -t overlay overlay \
    -o "lowerdir=$work/rootfs,upperdir=$work/upper/data,workdir=$work/upper/work" "$merged"
  # Mount points, as the container runtime creates them for volumeMounts.
  mkdir -p "$merged$tls_dir" "$merged$policies_dir"
  mount --bind "$work/tls" "$merged$tls_dir"
  mount -o remount,bind,ro "$merged$tls_dir"
  mount --bind "$root/policies" "$merged$policies_dir"
  mount -o remount,bind,ro "$merged$policies_dir"
  mount -o remount,ro "$merged"
  findmnt -no OPTIONS --mountpoint "$merged" | grep -qE '(^|,)ro(,|$)' \
    || { echo "FAIL: the image's root is not read-only" >&2; exit 1; }

  # A plain command, not a function: run in the background, its pid ($!) is the server's
  # (env and chroot exec).
  in_image=(env -i
    "$(command -v chroot)" --userspec="$uid:$uid" --groups="$uid" "$merged" /spark-admission)

  got="$("${in_image[@]}" --version)"
  want="spark-admission $(cat "$work/version") (revision $(cat "$work/revision"))"
  [ "$got" = "$want" ] || { echo "FAIL: --version printed '$got', labels say '$want'" >&2; exit 1; }
  echo "ok   --version: $got"

  "${in_image[@]}" check --policies "$policies_dir" >"$work/check.log" 2>&1 \
    || { echo "FAIL: check --policies" >&2; cat "$work/check.log" >&2; exit 1; }
  echo "ok   check --policies: $(grep -c . "$work/check.log") lines, exit 0"

  read -r tls_port admin_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
  "${in_image[@]}" serve --addr "127.0.0.1:$tls_port" --admin-addr "127.0.0.1:$admin_port" \
    --cert "$tls_dir/tls.crt" --key "$tls_dir/tls.key" --policies "$policies_dir" \
    --log-format json --drain-delay 0s >"$work/serve.log" 2>&1 &
  server=$!
  fail() { echo "FAIL: $*" >&2; kill -KILL "$server" 2>/dev/null || true; cat "$work/serve.log" >&2; exit 1; }

  python3 - "$server" "$tls_port" "$admin_port" "$work/tls/ca.crt" \
    "$root/examples/admission-review.json" "$(cat "$work/version")" "$(cat "$work/revision")" <<'PY' \
    || fail "serve"
import base64, http.client, json, socket, ssl, sys, time

pid, tls_port, admin_port, ca, review_file, version, revision = sys.argv[1:]

def status_ids(field):
    with open(f"/proc/{pid}/status") as f:
        line = next(l for l in f if l.startswith(field + ":"))
    return set(line.split()[1:])

deadline = time.monotonic() + 30
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", int(admin_port), timeout=2)
        c.request("GET", "/readyz")
        r = c.getresponse()
        if r.status == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("/readyz did not answer 200 within 30 s")
    time.sleep(0.1)
print("ok   serve: /readyz 200 on the admin port")

for field in ("Uid", "Gid", "Groups"):
    ids = status_ids(field)
    assert ids == {"65532"}, f"{field} of the server process: {ids}"
print("ok   serve runs as uid 65532, gid 65532, no other groups")

c = http.client.HTTPConnection("127.0.0.1", int(admin_port), timeout=5)
c.request("GET", "/metrics")
metrics = c.getresponse().read().decode()
want = f'spark_admission_build_info{{version="{version}",revision="{revision}"}} 1'
assert want in metrics, f"{want} not in /metrics"
print(f"ok   /metrics: {want}")

# Verified TLS, by the Service's DNS name, as the API server calls it.
ctx = ssl.create_default_context(cafile=ca)
c = http.client.HTTPConnection("127.0.0.1", int(tls_port), timeout=10)
c.sock = ctx.wrap_socket(
    socket.create_connection(("127.0.0.1", int(tls_port)), timeout=10),
    server_hostname="spark-admission.spark-admission.svc",
)
with open(review_file, "rb") as f:
    body = f.read()
uid = json.loads(body)["request"]["uid"]
c.request("POST", "/mutate?timeout=10s", body=body, headers={"Content-Type": "application/json"})
r = c.getresponse()
answer = r.read()
assert r.status == 200, f"/mutate answered {r.status}: {answer[:500]!r}"
resp = json.loads(answer)["response"]
assert resp["uid"] == uid and resp["allowed"] is True, resp
assert resp.get("patchType") == "JSONPatch", resp
patch = json.loads(base64.b64decode(resp["patch"]))
assert patch, "empty patch"
print(f"ok   /mutate over TLS ({c.sock.version()}): allowed, {len(patch)} patch operations")
PY

  kill -TERM "$server"
  status=0
  wait "$server" || status=$?
  [ "$status" = 0 ] || fail "serve exited with $status after SIGTERM"
  grep -q '"message":"serving"' "$work/serve.log" || fail "no startup log line"
  grep '"message":"serving"' "$work/serve.log" | grep -q "\"version\":\"$(cat "$work/version")\"" \
    || fail "the startup log line has no version"
  echo "ok   serve: logged its version at start, exit 0 after SIGTERM"
  exit 0
fi

# --- outside: read the layout, unpack, then run the above in a private mount namespace -----
[ $# -ge 1 ] || { sed -n '2,4p' "$0" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "$0 needs root (mount namespace, overlayfs, chroot)" >&2; exit 1; }
layout="$1"
ref="${2:-}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/rootfs" "$work/upper" "$work/merged" "$work/tls"
chmod 0755 "$work"

crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)"
python3 - "$layout" "$ref" "$work" "$crate_version" <<'PY'
import gzip, hashlib, io, json, os, re, sys, tarfile

layout, ref, work, crate_version = sys.argv[1:]

def blob(desc):
    algo, hexdigest = desc["digest"].split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexdigest), "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"digest mismatch: {desc['digest']}"
    assert len(data) == desc["size"], f"size mismatch: {desc['digest']}"
    return data

with open(os.path.join(layout, "index.json")) as f:
    index = json.load(f)
manifests = index["manifests"]
if ref:
    manifests = [m for m in manifests
                 if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref]
assert len(manifests) == 1, f"expected one image in {layout} (ref {ref!r}), found {len(manifests)}"
manifest = json.loads(blob(manifests[0]))
assert "layers" in manifest, "a multi-platform index: check each platform's image"
config = json.loads(blob(manifest["config"]))
c = config["config"]

def expect(what, got, want):
    assert got == want, f"{what}: {got!r}, expected {want!r}"
    print(f"ok   {what}: {got}")

arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
expect("os/architecture", f'{config["os"]}/{config["architecture"]}', f"linux/{arch}")
expect("entrypoint", c.get("Entrypoint"), ["/spark-admission"])
expect("cmd", c.get("Cmd"), ["serve"])
expect("user", c.get("User"), "65532:65532")
expect("exposed ports", sorted(c.get("ExposedPorts", {})), ["8080/tcp", "8443/tcp"])
# Docker writes a default PATH for every image; nothing else may be set.
env = [e for e in c.get("Env") or [] if not e.startswith("PATH=")]
expect("environment", env, [])
labels = c.get("Labels") or {}
oci = "org.opencontainers.image."
expect("label title", labels.get(oci + "title"), "spark-admission")
expect("label licenses", labels.get(oci + "licenses"), "Apache-2.0")
expect("label version", labels.get(oci + "version"), crate_version)
revision = labels.get(oci + "revision", "")
assert re.fullmatch(r"[0-9a-f]{40}", revision), f"label revision: {revision!r}, not a git commit"
print(f"ok   label revision: {revision}")
with open(os.path.join(work, "version"), "w") as f:
    f.write(crate_version)
with open(os.path.join(work, "revision"), "w") as f:
    f.write(revision)

layers = manifest["layers"]
assert len(layers) == 1, f"{len(layers)} layers, expected one"
data = blob(layers[0])
tar_bytes = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
diff_ids = config["rootfs"]["diff_ids"]
assert diff_ids == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()], "diff_id mismatch"
with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
    members = [m for m in tar.getmembers() if m.name.strip("./") != ""]
    names = [m.name.lstrip("./") for m in members]
    expect("files in the image", names, ["spark-admission"])
    m = members[0]
    assert m.isreg(), "/spark-admission is not a regular file"
    expect("/spark-admission owner and mode", (m.uid, m.gid, oct(m.mode & 0o7777)), (0, 0, "0o555"))
    out = os.path.join(work, "rootfs", "spark-admission")
    with open(out, "wb") as f:
        f.write(tar.extractfile(m).read())
    os.chmod(out, 0o555)
print(f"ok   image size: layer {len(data) / 2**20:.1f} MiB compressed, "
      f"binary {m.size / 2**20:.1f} MiB")
PY

# The serving certificate, made by the image's own binary; owned as the kubelet's fsGroup
# and defaultMode 0440 would leave it.
"$work/rootfs/spark-admission" certs --service spark-admission --namespace spark-admission \
  --out "$work/tls" >/dev/null
chgrp "$uid" "$work/tls"/*
chmod 0440 "$work/tls"/*

unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" --in-namespace "$work"
echo "image checks passed"
