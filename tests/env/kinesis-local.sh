#!/usr/bin/env bash
# Installs the kinesis-local emulator (npm, cached by version) and starts or stops it on a free
# loopback port. `start DIR` writes DIR/kinesis.env (KINESIS_ENDPOINT=http://127.0.0.1:PORT) and
# DIR/kinesis.pid; `stop DIR` ends it. The emulator listens on all interfaces and has no setting
# to change that, so only its loopback address is ever used.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

cmd=${1:?usage: kinesis-local.sh start|stop|install DIR}
state=${2:-}

install() {
  local main="$KINESIS_LOCAL_DIR/node_modules/kinesis-local/main.js"
  if [ ! -f "$main" ]; then
    command -v npm >/dev/null || die "npm is required to install kinesis-local; install Node.js 20+"
    log "installing kinesis-local@$KINESIS_LOCAL_VERSION into $KINESIS_LOCAL_DIR"
    mkdir -p "$KINESIS_LOCAL_DIR"
    npm install --silent --no-audit --no-fund --prefix "$KINESIS_LOCAL_DIR" "kinesis-local@$KINESIS_LOCAL_VERSION" >&2
  fi
  echo "$main"
}

case "$cmd" in
  install) install >/dev/null ;;
  start)
    [ -n "$state" ] || die "usage: kinesis-local.sh start DIR"
    main=$(install)
    mkdir -p "$state"
    plain=$(free_port); tls=$(free_port)
    KINESIS_MOCK_PLAIN_PORT=$plain KINESIS_MOCK_TLS_PORT=$tls \
    KINESIS_MOCK_CERT_PATH="$(dirname "$main")/server.json" \
    CREATE_STREAM_DURATION=0ms DELETE_STREAM_DURATION=0ms \
    REGISTER_STREAM_CONSUMER_DURATION=0ms DEREGISTER_STREAM_CONSUMER_DURATION=0ms \
    SPLIT_SHARD_DURATION=0ms MERGE_SHARDS_DURATION=0ms UPDATE_SHARD_COUNT_DURATION=0ms \
    SHARD_LIMIT=1000 LOG_LEVEL=${KINESIS_LOCAL_LOG_LEVEL:-WARN} \
      nohup node "$main" >"$state/kinesis.log" 2>&1 &
    echo $! >"$state/kinesis.pid"
    started_or_die "kinesis-local on 127.0.0.1:$plain" "$state/kinesis.log" 60 port_open "$plain"
    echo "export KINESIS_ENDPOINT=http://127.0.0.1:$plain" >"$state/kinesis.env"
    log "kinesis-local ready at http://127.0.0.1:$plain"
    ;;
  stop)
    [ -n "$state" ] || die "usage: kinesis-local.sh stop DIR"
    stop_pidfile kinesis-local "$state/kinesis.pid" 5
    ;;
  *) die "unknown command $cmd; use start, stop or install" ;;
esac
