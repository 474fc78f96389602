#!/usr/bin/env bash
# Builds promtool from the Go module github.com/prometheus/prometheus into a cache directory keyed
# by version; does nothing when it is there. A cold build takes a few minutes on 2 cores (it
# downloads ~300 MB of modules the first time); progress is printed as packages compile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

if [ -x "$PROMTOOL" ]; then
  echo "build-promtool: $PROMTOOL present"
  exit 0
fi
command -v go >/dev/null || { echo "build-promtool: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }
dir=$(dirname "$PROMTOOL")
mkdir -p "$dir"
start=$(date +%s)
echo "build-promtool: building promtool $PROMETHEUS_VERSION into $dir (cold: a few minutes)"
CGO_ENABLED=0 GOBIN="$dir" go install -v -trimpath -ldflags "-s -w" \
  "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" 2>&1 |
  awk -v start="$start" '
    / |:/ { print; fflush(); next }
    { n++; if (n % 100 == 0) { cmd = "date +%s"; cmd | getline now; close(cmd);
      printf "build-promtool: %d packages compiled (%ds elapsed)\n", n, now - start; fflush() } }'
[ -x "$PROMTOOL" ] || { echo "build-promtool: promtool was not built; see the output above" >&2; exit 1; }
echo "build-promtool: done in $(( $(date +%s) - start ))s"
