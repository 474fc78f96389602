#!/usr/bin/env bash
# Builds toxiproxy-server and toxiproxy-cli from the Go module github.com/Shopify/toxiproxy/v2
# into a cache directory keyed by version. Does nothing when both are present. A cold build takes
# about 20 s on 2 cores (module downloads included); progress is printed as packages compile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

if [ -x "$TOXIPROXY_BIN/toxiproxy-server" ] && [ -x "$TOXIPROXY_BIN/toxiproxy-cli" ]; then
  echo "build-toxiproxy: present in $TOXIPROXY_BIN"
  exit 0
fi
command -v go >/dev/null || { echo "build-toxiproxy: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }
echo "build-toxiproxy: building toxiproxy $TOXIPROXY_VERSION into $TOXIPROXY_BIN"
start=$(date +%s)
progress() {
  awk -v start="$start" '
    / |:/ { print; fflush(); next }
    { n++; if (n % 25 == 0) { cmd = "date +%s"; cmd | getline now; close(cmd);
      printf "build-toxiproxy: %d packages compiled (%ds elapsed)\n", n, now - start; fflush() } }
    END { printf "build-toxiproxy: done, %d packages\n", n }'
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ld="-s -w -X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION"
CGO_ENABLED=0 GOBIN="$tmp" go install -v -trimpath -ldflags "$ld" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" \
  "github.com/Shopify/toxiproxy/v2/cmd/cli@$TOXIPROXY_VERSION" 2>&1 | progress
mkdir -p "$TOXIPROXY_BIN"
mv "$tmp/server" "$TOXIPROXY_BIN/toxiproxy-server"
mv "$tmp/cli" "$TOXIPROXY_BIN/toxiproxy-cli"
echo "build-toxiproxy: done in $(( $(date +%s) - start ))s; $(du -sh "$TOXIPROXY_BIN" | cut -f1) in $TOXIPROXY_BIN"
