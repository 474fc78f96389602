#!/usr/bin/env bash
# Starts or stops SeaweedFS (`weed server -s3`: master, volume server, filer and S3 gateway in one
# process, built by build-seaweedfs.sh) on free loopback ports with its data in DIR/seaweedfs.
# `start DIR` writes DIR/seaweedfs.env (S3_ENDPOINT=http://127.0.0.1:PORT) and DIR/seaweedfs.pid
# once the gateway answers; `stop DIR` ends it. No identities are configured, so the gateway
# accepts any credentials.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

cmd=${1:?usage: seaweedfs.sh start|stop DIR}
state=${2:?usage: seaweedfs.sh start|stop DIR}

# The gateway answers ListBuckets (anonymous) with 200 once the filer behind it is up.
s3_ready() { curl -fsS -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; }

case "$cmd" in
  start)
    [ -x "$WEED" ] || "$here/build-seaweedfs.sh" >&2
    data=$state/seaweedfs
    mkdir -p "$data/logs"
    p() { free_port; }
    s3=$(p)
    # Small volumes (the tests write megabytes), and writes allowed on a nearly full disk.
    (cd "$data" && exec nohup "$WEED" -logdir="$data/logs" server -dir="$data" \
      -ip=127.0.0.1 -ip.bind=127.0.0.1 \
      -master.port="$(p)" -master.port.grpc="$(p)" -master.volumeSizeLimitMB=64 \
      -volume.port="$(p)" -volume.port.grpc="$(p)" -volume.max=0 -volume.minFreeSpace=256MiB \
      -filer -filer.port="$(p)" -filer.port.grpc="$(p)" -filer.localSocket="$data/filer.sock" \
      -s3 -s3.port="$s3" -s3.port.grpc="$(p)" -s3.localSocket="$data/s3.sock" \
      -s3.port.iceberg=0 -s3.port.lance=0 >"$data/weed.log" 2>&1) &
    echo $! >"$state/seaweedfs.pid"
    started_or_die "the SeaweedFS S3 gateway on 127.0.0.1:$s3" "$data/weed.log" 60 s3_ready "$s3"
    echo "export S3_ENDPOINT=http://127.0.0.1:$s3" >"$state/seaweedfs.env"
    log "SeaweedFS S3 gateway ready at http://127.0.0.1:$s3"
    ;;
  stop)
    # Its data is a scratch directory: a short grace, then SIGKILL (a graceful stop takes
    # over 10 s).
    stop_pidfile SeaweedFS "$state/seaweedfs.pid" 2
    ;;
  *) die "unknown command $cmd; use start or stop" ;;
esac
