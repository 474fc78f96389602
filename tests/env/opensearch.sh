#!/usr/bin/env bash
# Builds (Maven, cached by version under ~/.cache/kinesis-operator/opensearch-VERSION: the Maven
# repository and the compiled launcher) and starts or stops one OpenSearch node on free loopback
# ports: single node, security off, 512 MiB heap, data in DIR/opensearch-home.
#
#   opensearch.sh build            # prints the class path once built
#   opensearch.sh start DIR [PID]  # writes DIR/opensearch.env (OPENSEARCH_URL=http://127.0.0.1:PORT)
#                                  # and DIR/opensearch.pid; with PID, the node exits when PID does
#   opensearch.sh stop DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

cmd=${1:?usage: opensearch.sh build|start|stop [DIR [PID]]}
state=${2:-}
src=$here/opensearch
build=$OPENSEARCH_DIR/build

build() {
  command -v java >/dev/null || die "Java 17 is required for the OpenSearch node"
  command -v mvn >/dev/null || die "Maven is required to build the OpenSearch node"
  local stamp
  stamp=$(cat "$src/pom.xml" "$src"/src/main/java/dev/kinesisoperator/opensearch/*.java | sha256sum | cut -c1-16)
  if [ "$(cat "$build/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$build/classpath.txt" ]; then
    local offline=()
    # resolved: written after the first successful build, so later builds run offline.
    if [ -f "$OPENSEARCH_DIR/resolved" ]; then
      log "building the OpenSearch $OPENSEARCH_VERSION launcher (Maven repository cached in $OPENSEARCH_DIR/m2)"
      offline=(-o)
    else
      log "building the OpenSearch $OPENSEARCH_VERSION launcher: first run, downloading ~70 MB of Maven artifacts into $OPENSEARCH_DIR/m2 (about a minute)"
    fi
    mkdir -p "$build"
    (cd "$src" && mvn -B -T 1 "${offline[@]}" -Dopensearch.version="$OPENSEARCH_VERSION" \
        -Dmaven.repo.local="$OPENSEARCH_DIR/m2" -Dopensearch.build.dir="$build" \
        compile dependency:build-classpath -Dmdep.outputFile="$build/classpath.txt" 2>&1 |
        grep --line-buffered -E '^\[INFO\] (---|BUILD|Downloaded from .*org/opensearch/opensearch/)|ERROR' >&2) ||
      die "the OpenSearch launcher did not build; run mvn in $src for the full log"
    echo "$stamp" >"$build/stamp"
    touch "$OPENSEARCH_DIR/resolved"
  fi
  echo "$build/classes:$(cat "$build/classpath.txt")"
}

health() {
  curl -sf --max-time 2 "$1/_cluster/health?wait_for_status=yellow&timeout=1s" 2>/dev/null |
    grep -qE '"status":"(green|yellow)"'
}

case "$cmd" in
  build) build ;;
  start)
    [ -n "$state" ] || die "usage: opensearch.sh start DIR [PID]"
    cp=$(build)
    mkdir -p "$state"
    http=$(free_port); transport=$(free_port)
    home=$state/opensearch-home
    rm -rf "$home"
    started=$(date +%s)
    nohup java -Xms512m -Xmx512m -XX:+UseSerialGC -Djava.awt.headless=true \
      -Dkinesis.operator.parent.pid="${3:-}" -cp "$cp" \
      dev.kinesisoperator.opensearch.Launcher "$home" "$http" "$transport" >"$state/opensearch.log" 2>&1 &
    pid=$!
    echo "$pid" >"$state/opensearch.pid"
    url=http://127.0.0.1:$http
    deadline=$((started + ${OPENSEARCH_START_TIMEOUT:-180}))
    next=$((started + 10))
    until health "$url"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -30 "$state/opensearch.log" >&2; die "OpenSearch exited while starting; its log is above"
      fi
      now=$(date +%s)
      if [ "$now" -ge "$deadline" ]; then
        tail -30 "$state/opensearch.log" >&2
        kill "$pid" 2>/dev/null || true
        die "OpenSearch was not healthy after $((now - started))s; its log is above"
      fi
      if [ "$now" -ge "$next" ]; then
        log "waiting for OpenSearch at $url ($((now - started))s; log: $state/opensearch.log)"
        next=$((now + 10))
      fi
      sleep 0.5
    done
    echo "export OPENSEARCH_URL=$url" >"$state/opensearch.env"
    log "OpenSearch $OPENSEARCH_VERSION ready at $url in $(($(date +%s) - started))s (pid $pid)"
    ;;
  stop)
    [ -n "$state" ] || die "usage: opensearch.sh stop DIR"
    if [ -f "$state/opensearch.pid" ]; then
      pid=$(cat "$state/opensearch.pid")
      kill "$pid" 2>/dev/null || true
      wait_for "OpenSearch (pid $pid) to exit" 30 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
      rm -f "$state/opensearch.pid"
    fi
    ;;
  *) die "unknown command $cmd; use build, start or stop" ;;
esac
