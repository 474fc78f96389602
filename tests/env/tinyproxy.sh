#!/usr/bin/env bash
# Installs tinyproxy (a small forward proxy, for the tests of spec.network.proxy) from Debian's
# package into a cache directory keyed by version: `apt-get download` and `dpkg-deb -x`, no root
# install. Does nothing when it is present. Prints the binary's path last.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

if [ -x "$TINYPROXY" ]; then
  echo "tinyproxy: present at $TINYPROXY"
  exit 0
fi
command -v apt-get >/dev/null || { echo "tinyproxy: apt-get is required (Debian or Ubuntu); install tinyproxy $TINYPROXY_VERSION and put it at $TINYPROXY" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp"
cd "$tmp"
echo "tinyproxy: downloading tinyproxy-bin $TINYPROXY_VERSION"
if ! apt-get download "tinyproxy-bin=$TINYPROXY_VERSION" >/dev/null 2>&1; then
  echo "tinyproxy: version $TINYPROXY_VERSION not served; updating the package lists and trying again"
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download "tinyproxy-bin=$TINYPROXY_VERSION" >/dev/null 2>&1 || {
    echo "tinyproxy: cannot download tinyproxy-bin=$TINYPROXY_VERSION; set TINYPROXY_VERSION to one 'apt-cache policy tinyproxy-bin' lists" >&2
    exit 1
  }
fi
dpkg-deb -x tinyproxy-bin_*.deb root
mkdir -p "$(dirname "$TINYPROXY")"
mv root/usr/bin/tinyproxy "$TINYPROXY"
"$TINYPROXY" -v
echo "tinyproxy: installed at $TINYPROXY"
