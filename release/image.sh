#!/usr/bin/env bash
# Builds the release image from a static binary, offline: buildah, `FROM scratch`, no registry,
# no Docker engine, no daemon. Writes an OCI image layout.
#
#   release/image.sh BINARY LAYOUT [ARCH]
#
# BINARY  the static binary for ARCH (release/static-binary.sh)
# LAYOUT  OCI layout directory to write; the image is tagged VERSION in it (oci:LAYOUT:VERSION)
# ARCH    amd64 or arm64 (default: this machine's); FROM scratch has no RUN, so any ARCH builds
#         on any machine
# Environment: VERSION (default: Cargo.toml's), REVISION (default: `git rev-parse HEAD`),
# SOURCE (optional: the repository URL, label org.opencontainers.image.source).
# The image's creation time is the commit's, so the same binary gives the same image digest.
# Installs buildah with apt if missing. Storage (vfs driver) is a temporary directory that is
# removed afterwards: nothing is left in /var/lib/containers.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 2 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
binary="$1"
layout="$2"
case "$(uname -m)" in x86_64) host_arch=amd64 ;; aarch64) host_arch=arm64 ;; *) host_arch="$(uname -m)" ;; esac
arch="${3:-$host_arch}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v buildah >/dev/null; then
  echo "installing buildah (apt)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >/dev/null
fi

version="${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)}"
# safe.directory: run with sudo, git would refuse a checkout owned by another user.
git=(git -c safe.directory="$root" -C "$root")
revision="${REVISION:-$("${git[@]}" rev-parse HEAD 2>/dev/null || echo unknown)}"
created="$("${git[@]}" log -1 --format=%ct 2>/dev/null || echo 0)"

work="$(mktemp -d)"
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
cleanup() {
  buildah "${storage[@]}" rm --all >/dev/null 2>&1 || true
  buildah "${storage[@]}" rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/context"
install -m 0555 "$binary" "$work/context/spark-admission"
labels=()
[ -n "${SOURCE:-}" ] && labels=(--label "org.opencontainers.image.source=$SOURCE")

buildah "${storage[@]}" build --quiet --isolation chroot --identity-label=false \
  --platform "linux/$arch" --timestamp "$created" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "${labels[@]}" \
  -f "$root/release/Containerfile" -t "spark-admission:$version" "$work/context" >/dev/null
rm -rf "$layout"
mkdir -p "$(dirname "$layout")"
buildah "${storage[@]}" push --quiet "spark-admission:$version" "oci:$layout:$version"
echo "oci:$layout:$version"
