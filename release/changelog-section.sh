#!/usr/bin/env bash
# Prints the CHANGELOG.md section of one version (its notes, without the heading); fails when
# there is none or it is empty. The release workflow uses it as the release notes; .ci/run runs
# it for Cargo.toml's version, so a version bump without its changelog entry fails CI.
#
#   release/changelog-section.sh 0.2.0
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -eq 1 ] || { sed -n '7p' "$0" >&2; exit 2; }
notes="$(awk -v heading="## [$1]" '
  index($0, heading) == 1 { found = 1; next }
  found && /^## / { exit }
  found { print }
' "$root/CHANGELOG.md")"
[ -n "$(tr -d '[:space:]' <<<"$notes")" ] \
  || { echo "CHANGELOG.md has no notes under '## [$1]'" >&2; exit 1; }
printf '%s\n' "$notes"
