#!/usr/bin/env bash
# Builds the operator and ingester container images from the release binaries with no Docker
# engine: a root filesystem tar per image (the binary, the shared libraries `ldd` lists, a CA
# bundle, /etc/passwd with the nonroot user 65532), appended to an empty OCI base by crane against
# a throwaway `crane registry serve` on loopback, then exported as image archives:
#
#   build-images.sh OUT_DIR [RELEASE_DIR]
#   build-images.sh --pause OUT_DIR   only the real node's sandbox image (pause.c, static)
#
# writes OUT_DIR/kinesis-ingester.tar and OUT_DIR/kinesis-operator.tar (docker-archive layout,
# which `ctr images import`, `kind load image-archive`, `docker load`, `podman load` and
# `crane push` all accept), tagged $IMAGE_PREFIX/<name>:$IMAGE_VERSION (default
# ghcr.io/kinesis-operator/<name>:<workspace version>, what the chart pulls), for this machine's
# architecture (IMAGE_ARCH=arm64 or amd64 for another, from cross-built binaries), with
# OUT_DIR/<name>-config.json beside each. The Dockerfiles build the same image with Docker; check_dockerfile below fails the build when they
# disagree on the entrypoint, the user or the files the image must hold.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

names=(kinesis-ingester kinesis-operator)
if [ "${1:-}" = --pause ]; then
  names=(pause)
  shift
fi
out=$(mkdir -p "${1:?usage: build-images.sh [--pause] OUT_DIR [RELEASE_DIR]}" && cd "$1" && pwd)
release=${2:-${CARGO_TARGET_DIR:-$root/target}/release}
"$here/build-go-tool.sh" crane >&2

version=${IMAGE_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)}
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
source_url=$(sed -n 's/^repository = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
registry_prefix=${IMAGE_PREFIX:-ghcr.io/kinesis-operator}
case "$(uname -m)" in
  x86_64) host_arch=amd64 ;;
  aarch64) host_arch=arm64 ;;
  *) die "unsupported machine $(uname -m)" ;;
esac
# IMAGE_ARCH=arm64 on an amd64 machine (or the reverse): RELEASE_DIR holds binaries cross-built
# for it (`make images IMAGE_ARCH=arm64`), and their libraries come from the cross toolchain's
# sysroot (Debian: /usr/aarch64-linux-gnu from libc6-dev-arm64-cross) instead of `ldd`.
arch=${IMAGE_ARCH:-$host_arch}
case "$arch" in
  amd64) triple=x86_64-linux-gnu ;;
  arm64) triple=aarch64-linux-gnu ;;
  *) die "IMAGE_ARCH must be amd64 or arm64, not $arch" ;;
esac
sysroot=${CROSS_SYSROOT:-/usr/$triple}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle (install ca-certificates or set CA_BUNDLE)"

work=$(mktemp -d "${TMPDIR:-/tmp}/kinesis-images.XXXXXX")
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The image's files: the same paths the Dockerfiles produce (see check_dockerfile).
rootfs() { # rootfs NAME DIR
  local name=$1 dir=$2 bin=$release/$1 lib
  [ -x "$bin" ] || die "$bin is missing: run cargo build --release -p $name --bin $name first"
  mkdir -p "$dir/usr/local/bin" "$dir/etc/ssl/certs" "$dir/tmp" "$dir/home/nonroot"
  chmod 1777 "$dir/tmp"
  # The release profile keeps line tables (debug = "line-tables-only"): 5x the size. The image
  # keeps the symbols (backtraces name functions) and drops the rest, as the Dockerfiles do.
  local strip=strip
  [ "$arch" = "$host_arch" ] || strip=$triple-strip
  "$strip" --strip-debug -o "$dir/usr/local/bin/$name" "$bin"
  if [ "$arch" = "$host_arch" ]; then
    # Every shared library the dynamic loader resolves, and the loader itself, at the same path.
    for lib in $(ldd "$bin" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
      mkdir -p "$dir$(dirname "$lib")"
      cp -L "$lib" "$dir$lib"
    done
  else
    cross_libs "$bin" "$dir"
  fi
  cp -L "$ca_bundle" "$dir/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
}

# A cross-built binary's loader (its ELF interpreter) and the libraries it names (NEEDED), from
# the sysroot, at Debian's multiarch paths, as in distroless/cc-debian12 for that architecture.
# The libraries of glibc name no others beyond these.
cross_libs() { # cross_libs BIN DIR
  local bin=$1 dir=$2 interp lib file_arch
  [ -d "$sysroot/lib" ] || die "no $arch sysroot at $sysroot: install the cross toolchain (apt-get install gcc-$triple libc6-dev-${arch}-cross) or set CROSS_SYSROOT"
  file_arch=$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
  case "$arch/$file_arch" in
    arm64/AArch64 | amd64/*X86-64) ;;
    *) die "$bin is built for $file_arch, not $arch" ;;
  esac
  interp=$(readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
  [ -n "$interp" ] || die "$bin has no ELF interpreter"
  mkdir -p "$dir$(dirname "$interp")" "$dir/lib/$triple"
  cp -L "$sysroot/lib/$(basename "$interp")" "$dir$interp"
  for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]$/\1/p'); do
    [ -e "$sysroot/lib/$lib" ] || die "$bin needs $lib, which $sysroot/lib does not have"
    cp -L "$sysroot/lib/$lib" "$dir/lib/$triple/$lib"
  done
  # The binary starts with only the image's files: run it under qemu-user when it is installed.
  if command -v "qemu-${triple%%-*}" >/dev/null; then
    "qemu-${triple%%-*}" -L "$dir" "$dir/usr/local/bin/$(basename "$bin")" --version >&2 ||
      die "$(basename "$bin") does not start under qemu-${triple%%-*} with only the image's files"
  else
    log "qemu-${triple%%-*} not installed (apt-get install qemu-user): the $arch binary was not started"
  fi
}

# Fails when the Dockerfile would build a different image: entrypoint, user, labels and the
# binary's path must match what this script puts in the archive.
check_dockerfile() { # check_dockerfile NAME CONFIG_JSON
  local name=$1 config=$2 df=$root/${1#kinesis-}/Dockerfile
  python3 - "$df" "$config" "$name" <<'PY'
import json, re, sys
df, config, name = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))["config"], sys.argv[3]
errors = []
entry = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", df, re.M).group(1))
if entry != config["Entrypoint"]:
    errors.append(f"ENTRYPOINT {entry} != image {config['Entrypoint']}")
user = re.search(r"^USER (\S+)$", df, re.M).group(1)
if user != config["User"]:
    errors.append(f"USER {user} != image {config['User']}")
if f"strip --strip-debug /{name}" not in df:
    errors.append(f"the Dockerfile does not strip the debug info of /{name} as rootfs() does")
if f"COPY --from=build /{name} /usr/local/bin/{name}" not in df:
    errors.append(f"the Dockerfile does not copy the binary to /usr/local/bin/{name}")
for key in ("org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.revision"):
    if key not in df or key not in (config.get("Labels") or {}):
        errors.append(f"label {key} missing from the Dockerfile or the image")
# distroless/cc-debian12:nonroot provides what rootfs() copies: glibc, libgcc_s, CA bundle, passwd 65532.
if "gcr.io/distroless/cc-debian12:nonroot" not in df:
    errors.append("the runtime base is no longer distroless/cc-debian12:nonroot; update rootfs() to match")
for e in errors:
    print(f"build-images: {sys.argv[1]}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
}

# crane, its progress lines kept in a log that is printed only when it fails.
crane_quiet() {
  "$CRANE" "$@" 2>"$work/crane.log" || { cat "$work/crane.log" >&2; die "crane $1 failed"; }
}

start=$(date +%s)
port=$(free_port)
mkdir -p "$work/registry"
"$CRANE" registry serve --address "127.0.0.1:$port" --disk "$work/registry" >"$work/registry.log" 2>&1 &
registry_pid=$!
wait_for "crane registry on 127.0.0.1:$port" 30 port_open "$port"
reg=127.0.0.1:$port

for name in "${names[@]}"; do
  public=$registry_prefix/$name:$version
  entrypoint=/usr/local/bin/$name user=65532:65532
  if [ "$name" = pause ]; then
    # The sandbox image containerd pins (real-node.sh's containerd.toml), so nothing is pulled.
    public=$PAUSE_IMAGE entrypoint=/pause user=65535:65535
    mkdir -p "$work/pause"
    gcc -static -O2 -o "$work/pause/pause" "$here/pause.c"
    strip "$work/pause/pause"
  else
    rootfs "$name" "$work/$name"
  fi
  log "building $public ($arch)"
  # Owned by root, the same mtime for every file, sorted: the layer depends only on the files.
  tar --create --file "$work/$name-layer.tar" --directory "$work/$name" --owner=0 --group=0 \
    --numeric-owner --sort=name --mtime=@0 .
  crane_quiet append --oci-empty-base --insecure -f "$work/$name-layer.tar" -t "$reg/$name:build" >/dev/null
  crane_quiet mutate --insecure "$reg/$name:build" -t "$reg/$name:$version" \
    --set-platform "linux/$arch" --entrypoint "$entrypoint" --user "$user" \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    -l "org.opencontainers.image.source=$source_url" \
    -l "org.opencontainers.image.version=$version" \
    -l "org.opencontainers.image.revision=$revision" \
    -l "org.opencontainers.image.title=$name" >/dev/null
  crane_quiet config --insecure "$reg/$name:$version" >"$work/$name-config.json"
  [ "$name" = pause ] || check_dockerfile "$name" "$work/$name-config.json"
  # Pull under the public name so that loaders tag it as the chart expects.
  crane_quiet pull --insecure "$reg/$name:$version" "$work/$name.tar"
  python3 - "$work/$name.tar" "$public" <<'PY'
import io, json, sys, tarfile
path, tag = sys.argv[1], sys.argv[2]
with tarfile.open(path) as src:
    members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
with tarfile.open(path, "w") as dst:
    for m, data in members:
        if m.name == "manifest.json":
            manifest = json.loads(data)
            for entry in manifest:
                entry["RepoTags"] = [tag]
            data = json.dumps(manifest).encode()
            m.size = len(data)
        dst.addfile(m, io.BytesIO(data) if data is not None else None)
PY
  mv "$work/$name.tar" "$out/$name.tar"
  cp "$work/$name-config.json" "$out/$name-config.json"
  log "$out/$name.tar: $(du -h "$out/$name.tar" | cut -f1) (layer $(du -h "$work/$name-layer.tar" | cut -f1) uncompressed)"
done
log "images built in $(( $(date +%s) - start ))s in $out"
