#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok, kwokctl and
# helm from Go modules into a cache directory keyed by version. Does nothing for binaries already
# built. A cold build takes 15-30 minutes on 2 cores; progress is printed as packages compile.
# `build-k8s.sh node` also builds kubelet and kube-proxy for the real node (real-node.sh), from the
# same module (24 min cold on 2 cores shared with other builds, 1,567 packages; under a minute
# with the control plane's Go build cache warm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"

all=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl helm)
[ "${1:-}" = node ] && all+=(kubelet kube-proxy)
missing=()
for b in "${all[@]}"; do [ -x "$K8S_BIN/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "build-k8s: all binaries present in $K8S_BIN"
  exit 0
fi
command -v go >/dev/null || { echo "build-k8s: Go is required (https://go.dev/dl); none found on PATH" >&2; exit 1; }
echo "build-k8s: building ${missing[*]} into $K8S_BIN (cold: 15-30 min on 2 cores)"
mkdir -p "$K8S_BIN"
start=$(date +%s)

# Prints "[label] N packages compiled (Ms elapsed)" every 100 packages of `go build -v` output,
# and passes every other line (compiler errors) through.
progress() {
  awk -v label="$1" -v start="$start" '
    / |:/ { print; fflush(); next }
    { n++; if (n % 100 == 0) { cmd = "date +%s"; cmd | getline now; close(cmd);
      printf "build-k8s: [%s] %d packages compiled (%ds elapsed)\n", label, n, now - start; fflush() } }
    END { printf "build-k8s: [%s] done, %d packages\n", label, n }'
}

need() { for m in "${missing[@]}"; do [ "$m" = "$1" ] && return 0; done; return 1; }

# Kubernetes' own go.mod points every k8s.io staging module at ./staging, so `go install` refuses
# it. A small module of our own requires k8s.io/kubernetes and replaces each staging module with
# its published v0.Y.Z twin (see ../shared/docs/local-cluster.md).
if need kube-apiserver || need kube-controller-manager || need kube-scheduler || need kubectl || need etcd ||
   need kubelet || need kube-proxy; then
  mod=$CACHE_ROOT/k8s/src-$K8S_VERSION
  # .resolved-node: the module also lists kubelet's and kube-proxy's packages (older caches lack them).
  if [ ! -f "$mod/.resolved-node" ]; then
    rm -rf "$mod"; mkdir -p "$mod"
    (
      cd "$mod"
      go mod init kinesis-operator.local/k8s-build >/dev/null 2>&1
      kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
      staging_version="v0.${K8S_VERSION#v1.}"
      goline=$(grep -m1 '^go ' "$kmod")
      go mod edit -go="${goline#go }"
      if grep -q '^godebug ' "$kmod"; then
        grep '^godebug ' "$kmod" | while read -r _ kv; do go mod edit -godebug="$kv"; done
      fi
      grep '=> ./staging/' "$kmod" | awk '{print $1}' | while read -r m; do
        go mod edit -replace="$m=$m@$staging_version"
      done
      go mod edit -require="k8s.io/kubernetes@$K8S_VERSION" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
      # Every package the binaries need, so that `go mod tidy` records all their modules.
      {
        printf '//go:build tools\n\npackage tools\n\nimport (\n'
        for p in k8s.io/kubernetes/cmd/kube-apiserver/app k8s.io/kubernetes/cmd/kube-controller-manager/app \
                 k8s.io/kubernetes/cmd/kube-scheduler/app k8s.io/kubectl/pkg/cmd go.etcd.io/etcd/server/v3/etcdmain \
                 k8s.io/kubernetes/cmd/kubelet/app k8s.io/kubernetes/cmd/kube-proxy/app; do
          printf '\t_ "%s"\n' "$p"
        done
        printf ')\n'
      } > tools.go
      echo "build-k8s: resolving modules (downloads a few hundred MB the first time)"
      go mod tidy
      touch .resolved .resolved-node
    )
  fi
  pkg_ver="k8s.io/component-base/version"
  cgo_ver="k8s.io/client-go/pkg/version"
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  ld=""
  for p in "$pkg_ver" "$cgo_ver"; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    need "$b" || continue
    echo "build-k8s: building $b $K8S_VERSION"
    (cd "$mod" && CGO_ENABLED=0 go build -v -trimpath -ldflags "-s -w $ld" -o "$K8S_BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b" 2>&1 | progress "$b")
    mv "$K8S_BIN/$b.tmp" "$K8S_BIN/$b"
  done
  if need etcd; then
    echo "build-k8s: building etcd $ETCD_VERSION"
    (cd "$mod" && CGO_ENABLED=0 go build -v -trimpath -ldflags "-s -w" -o "$K8S_BIN/etcd.tmp" go.etcd.io/etcd/server/v3 2>&1 | progress etcd)
    mv "$K8S_BIN/etcd.tmp" "$K8S_BIN/etcd"
  fi
fi

if need kwok || need kwokctl; then
  echo "build-k8s: building kwok and kwokctl $KWOK_VERSION"
  v=$KWOK_VERSION
  ld="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$K8S_VERSION"
  CGO_ENABLED=0 GOBIN="$K8S_BIN" go install -v -trimpath -ldflags "$ld" \
    "sigs.k8s.io/kwok/cmd/kwok@$v" "sigs.k8s.io/kwok/cmd/kwokctl@$v" 2>&1 | progress kwok
fi

if need helm; then
  echo "build-k8s: building helm $HELM_VERSION"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  CGO_ENABLED=0 GOBIN="$K8S_BIN" go install -v -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" 2>&1 | progress helm
fi

for b in "${all[@]}"; do
  [ -x "$K8S_BIN/$b" ] || { echo "build-k8s: $b was not built; see the output above" >&2; exit 1; }
done
echo "build-k8s: done in $(( $(date +%s) - start ))s; $(du -sh "$K8S_BIN" | cut -f1) in $K8S_BIN"
