#!/usr/bin/env bash
# Builds the statically linked release binary for this machine's architecture and checks that
# it is static (no ELF interpreter, no shared libraries), so it runs in an image with no libc.
#
#   release/static-binary.sh [OUT]     # default OUT: target/dist/spark-admission-linux-<arch>
#
# glibc's crt-static on the gnu target (the machine's stable toolchain has no musl target);
# with --target the flag reaches the binary only, not build scripts or proc macros, and the
# build lands in target/<triple>/ so it never invalidates the normal target/release/.
# The binary resolves no host names (listen addresses are IP:port), so static glibc's NSS
# limits do not apply. SPARK_ADMISSION_AUDITABLE=1 builds with `cargo auditable` (must be
# installed), which embeds the dependency list for SBOM scanners; the release workflow does.
# Prints the path of the binary on stdout.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
arch="$(uname -m)"
triple="$arch-unknown-linux-gnu"
case "$arch" in x86_64) goarch=amd64 ;; aarch64) goarch=arm64 ;; *) goarch="$arch" ;; esac
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="${1:-$target_dir/dist/spark-admission-linux-$goarch}"

build=(cargo build)
[ "${SPARK_ADMISSION_AUDITABLE:-}" = 1 ] && build=(cargo auditable build)
RUSTFLAGS="-C target-feature=+crt-static" \
  "${build[@]}" --release --locked --target "$triple" --bin spark-admission >&2
bin="$target_dir/$triple/release/spark-admission"

# Static: no PT_INTERP program header and no DT_NEEDED entries.
if LC_ALL=C readelf --program-headers --wide "$bin" | grep -q 'INTERP'; then
  echo "$bin has an ELF interpreter: not statically linked" >&2; exit 1
fi
if LC_ALL=C readelf --dynamic "$bin" | grep -q 'NEEDED'; then
  echo "$bin needs shared libraries:" >&2; readelf --dynamic "$bin" | grep NEEDED >&2; exit 1
fi

mkdir -p "$(dirname "$out")"
install -m 0555 "$bin" "$out"
echo "$out"
