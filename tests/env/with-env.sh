#!/usr/bin/env bash
# Runs a command inside a fresh test environment: one local Kubernetes control plane and one
# kinesis-local emulator, both torn down when the command ends, fails or is interrupted.
#
#   tests/env/with-env.sh cargo test --workspace
#
# The command sees KUBECONFIG, KINESIS_ENDPOINT and S3_ENDPOINT (a SeaweedFS S3 gateway). With USE_EXISTING_CLUSTER=1 the cluster in the
# caller's KUBECONFIG (kind, k3d, a cloud cluster) is used instead of starting one.
# KEEP_ENV=1 keeps the state directory (logs, kubeconfig) after a successful run too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"
# shellcheck source=versions.sh
. "$here/versions.sh"
# The fault tests start their own Toxiproxy (built by `make tools`).
export TOXIPROXY_SERVER=$TOXIPROXY_BIN/toxiproxy-server
# The proxy tests start their own tinyproxy (installed by `make tools`).
export TINYPROXY
[ $# -gt 0 ] || die "usage: with-env.sh COMMAND [ARGS...]"

state=$(mktemp -d "${TMPDIR:-/tmp}/kinesis-operator-env.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ "${USE_EXISTING_CLUSTER:-}" = 1 ] || "$here/cluster.sh" down "$state" || true
  "$here/kinesis-local.sh" stop "$state" || true
  "$here/seaweedfs.sh" stop "$state" || true
  if [ "$rc" -eq 0 ] && [ "${KEEP_ENV:-}" != 1 ]; then
    rm -rf "$state"
  else
    log "test environment state (component logs, kubeconfig) kept in $state"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$here/kinesis-local.sh" start "$state"
# shellcheck disable=SC1091
. "$state/kinesis.env"
"$here/seaweedfs.sh" start "$state"
# shellcheck disable=SC1091
. "$state/seaweedfs.env"
if [ "${USE_EXISTING_CLUSTER:-}" = 1 ]; then
  [ -n "${KUBECONFIG:-}" ] || die "USE_EXISTING_CLUSTER=1 needs KUBECONFIG"
  log "using the existing cluster in $KUBECONFIG"
else
  "$here/cluster.sh" up "$state"
  # shellcheck disable=SC1091
  . "$state/cluster.env"
fi
export TEST_ENV_STATE=$state
# The chart's alert rules are checked with the pinned promtool (tests/env/build-promtool.sh).
export PROMTOOL
# Ctrl-C reaches the command too; if it then stops cleanly (exit 0, like `make demo`), so do we.
interrupted=0
trap 'interrupted=1' INT
rc=0
"$@" || rc=$?
if [ "$rc" -ne 0 ]; then
  exit "$rc"
fi
if [ "$interrupted" = 1 ]; then
  log "interrupted; the command stopped cleanly"
fi
