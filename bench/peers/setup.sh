#!/usr/bin/env bash
# Builds the peers of `make bench-peers`, cached by version under ~/.cache/kinesis-operator: the KCL
# consumer (Maven, Java 17; its Maven repository is kept per KCL version so a warm run downloads
# nothing) and moto's server in a venv (DynamoDB for KCL's lease table). Prints one line for the
# driver: `export KCL_PEER_CP=... MOTO_SERVER=...`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../tests/env/versions.sh"
. "$here/../../tests/env/lib.sh"

KCL_VERSION=${KCL_VERSION:-3.5.1}
MOTO_VERSION=${MOTO_VERSION:-5.2.5}
kcl_dir=$CACHE_ROOT/kcl-$KCL_VERSION
moto_dir=$CACHE_ROOT/moto-$MOTO_VERSION
build=$kcl_dir/build
src=$here/kcl

command -v java >/dev/null || die "Java 17 is required for the KCL peer"
command -v mvn >/dev/null || die "Maven is required for the KCL peer"

# Rebuild when the pom or the Java source changed since the last build.
stamp=$(cat "$src/pom.xml" "$src"/src/main/java/dev/kinesisoperator/bench/*.java | sha256sum | cut -c1-16)
if [ "$(cat "$build/stamp" 2>/dev/null)" != "$stamp" ] || [ ! -f "$build/classpath.txt" ]; then
  offline=()
  # resolved: written after the first successful build, so later builds run offline.
  if [ -f "$kcl_dir/resolved" ]; then
    log "building the KCL $KCL_VERSION peer (Maven repository cached in $kcl_dir/m2)"
    offline=(-o)
  else
    log "building the KCL $KCL_VERSION peer: first run, downloading ~90 MB of Maven artifacts into $kcl_dir/m2 (a few minutes)"
  fi
  mkdir -p "$build"
  # Maven prints one line per resolved artifact and plugin step: that is the progress.
  (cd "$src" && mvn -B "${offline[@]}" -Dkcl.version="$KCL_VERSION" \
      -Dmaven.repo.local="$kcl_dir/m2" -Dkcl.build.dir="$build" \
      compile dependency:build-classpath -Dmdep.outputFile="$build/classpath.txt" 2>&1 |
      grep --line-buffered -E '^\[INFO\] (---|BUILD|Downloaded from .*amazon-kinesis-client)|ERROR' >&2) ||
    die "the KCL peer did not build; run mvn in $src for the full log"
  if tr ':' '\n' <"$build/classpath.txt" | grep -qi dynamodblocal; then
    die "DynamoDBLocal is on the KCL peer's class path; it must be excluded"
  fi
  echo "$stamp" >"$build/stamp"
  touch "$kcl_dir/resolved"
fi

if [ ! -x "$moto_dir/bin/moto_server" ]; then
  log "installing moto[server]==$MOTO_VERSION into $moto_dir"
  rm -rf "$moto_dir"
  python3 -m venv "$moto_dir"
  "$moto_dir/bin/pip" install --progress-bar off "moto[server]==$MOTO_VERSION" 2>&1 |
    grep --line-buffered -E '^(Collecting|Successfully)' >&2
fi

echo "export KCL_PEER_CP='$build/classes:$(cat "$build/classpath.txt")' MOTO_SERVER='$moto_dir/bin/moto_server' KCL_VERSION='$KCL_VERSION' MOTO_VERSION='$MOTO_VERSION'"
