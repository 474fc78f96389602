#!/usr/bin/env bash
# Builds a Go command from its module into a cache directory keyed by version; does nothing when
# every binary is there. Progress is printed as packages compile.
#
#   build-go-tool.sh crane        go-containerregistry's crane   (cold: 109 s on 2 busy cores)
#   build-go-tool.sh actionlint   rhysd/actionlint               (cold: 16 s, modules cached)
#   build-go-tool.sh containerd   containerd, ctr, containerd-shim-runc-v2 (cold: 231 s)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

tool=${1:?usage: build-go-tool.sh crane|actionlint|containerd}
tags=""
case "$tool" in
  crane)
    dir=$(dirname "$CRANE"); version=$CRANE_VERSION
    pkgs=("github.com/google/go-containerregistry/cmd/crane@$version")
    bins=(crane) ;;
  actionlint)
    dir=$(dirname "$ACTIONLINT"); version=$ACTIONLINT_VERSION
    pkgs=("github.com/rhysd/actionlint/cmd/actionlint@$version")
    bins=(actionlint) ;;
  containerd)
    dir=$CONTAINERD_BIN; version=$CONTAINERD_VERSION; tags=no_btrfs
    pkgs=()
    for c in containerd ctr containerd-shim-runc-v2; do pkgs+=("github.com/containerd/containerd/v2/cmd/$c@$version"); done
    bins=(containerd ctr containerd-shim-runc-v2) ;;
  *) echo "build-go-tool: unknown tool $tool" >&2; exit 2 ;;
esac

missing=0
for b in "${bins[@]}"; do [ -x "$dir/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  echo "build-$tool: present in $dir"
  exit 0
fi
command -v go >/dev/null || { echo "build-$tool: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }
echo "build-$tool: building $tool $version into $dir"
start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:--p=2} -buildvcs=false" go install -v -trimpath -tags "$tags" \
  -ldflags "-s -w" "${pkgs[@]}" 2>&1 |
  awk -v label="build-$tool" -v start="$start" '
    / |:/ { print; fflush(); next }
    { n++; if (n % 25 == 0) { cmd = "date +%s"; cmd | getline now; close(cmd);
      printf "%s: %d packages compiled (%ds elapsed)\n", label, n, now - start; fflush() } }
    END { printf "%s: %d packages compiled\n", label, n }'
mkdir -p "$dir"
for b in "${bins[@]}"; do
  [ -x "$tmp/$b" ] || { echo "build-$tool: $b was not built; see the output above" >&2; exit 1; }
  mv "$tmp/$b" "$dir/$b"
done
echo "build-$tool: done in $(( $(date +%s) - start ))s; $(du -sh "$dir" | cut -f1) in $dir"
