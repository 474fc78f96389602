#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (its S3 gateway is the S3-compatible store of the S3 sink tests) from the
# Go module github.com/seaweedfs/seaweedfs at the pinned pseudo-version into a cache directory keyed
# by version; does nothing when it is there. The module's go.mod has replace directives, so
# `go install pkg@version` refuses it: the module is downloaded through the module proxy and built
# as the main module from the (read-only) module cache. Progress is printed as packages compile.
# Cold build: 13 min 23 s (measured on 2 busy cores, module downloads included; see the end of the output).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

dir=$(dirname "$WEED")
if [ -x "$WEED" ]; then
  echo "build-seaweedfs: present in $dir"
  exit 0
fi
command -v go >/dev/null || { echo "build-seaweedfs: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }
echo "build-seaweedfs: building weed $SEAWEEDFS_VERSION into $dir"
start=$(date +%s)
src=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$src" ] || { echo "build-seaweedfs: the module download did not give a source directory" >&2; exit 1; }
echo "build-seaweedfs: module source in $src ($(( $(date +%s) - start ))s)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$src" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--p=2} -buildvcs=false -mod=readonly" \
  go build -v -trimpath -ldflags "-s -w" -o "$tmp/weed" ./weed) 2>&1 |
  awk -v label="build-seaweedfs" -v start="$start" '
    / |:/ { print; fflush(); next }
    { n++; if (n % 50 == 0) { cmd = "date +%s"; cmd | getline now; close(cmd);
      printf "%s: %d packages compiled (%ds elapsed)\n", label, n, now - start; fflush() } }
    END { printf "%s: %d packages compiled\n", label, n }'
[ -x "$tmp/weed" ] || { echo "build-seaweedfs: weed was not built; see the output above" >&2; exit 1; }
mkdir -p "$dir"
mv "$tmp/weed" "$WEED"
echo "build-seaweedfs: done in $(( $(date +%s) - start ))s; $(du -sh "$dir" | cut -f1) in $dir"
