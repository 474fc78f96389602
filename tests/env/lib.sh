# shellcheck shell=bash
# Small helpers shared by the test-environment scripts.

log() { printf '%s %s\n' "[$(date +%H:%M:%S)] $(basename "$0"):" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds or the deadline passes.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$(( $(date +%s) + timeout ))
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# started_or_die NAME LOG TIMEOUT COMMAND...: waits for COMMAND (a readiness check) like wait_for;
# when the deadline passes, prints the end of LOG and fails naming NAME.
started_or_die() {
  local name=$1 logfile=$2 timeout=$3; shift 3
  wait_for "$name" "$timeout" "$@" && return 0
  tail -20 "$logfile" >&2
  die "$name did not start; its log is above"
}

# stop_pidfile NAME PIDFILE GRACE_SECONDS: SIGTERM the process in PIDFILE, SIGKILL it if it still
# runs after GRACE_SECONDS, and remove PIDFILE. Nothing when PIDFILE is absent.
stop_pidfile() {
  local name=$1 pidfile=$2 grace=$3 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  if ! wait_for "$name (pid $pid) to stop" "$grace" bash -c "! kill -0 $pid 2>/dev/null" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}
