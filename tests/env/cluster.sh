#!/usr/bin/env bash
# Starts or stops a local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) with kwok fake nodes, all built from Go modules by build-k8s.sh.
#
#   cluster.sh up DIR     start a cluster; writes DIR/kubeconfig and DIR/cluster.env
#   cluster.sh down DIR   stop it and remove its state
#
# Pods scheduled onto the fake nodes become Running, but no container is executed.
#
# REAL_NODE=1 starts instead a control plane with one real node (kubelet, containerd, runc; root
# only, one per machine) by real-node.sh, importing the image archives listed in REAL_NODE_IMAGES
# (space-separated, from `make images`); DIR/cluster.env then also exports REAL_NODE_IP, the
# bridge address that pods reach the host on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

cmd=${1:?usage: cluster.sh up|down DIR}
state=$(mkdir -p "${2:?usage: cluster.sh up|down DIR}" && cd "$2" && pwd)
name=${CLUSTER_NAME:-ko-$(printf '%s' "$state" | cksum | cut -d' ' -f1)}
nodes=${CLUSTER_NODES:-3}

export KWOK_WORKDIR=$state/kwok
export KWOK_KUBECTL_BINARY=$K8S_BIN/kubectl
kwokctl() { "$K8S_BIN/kwokctl" "$@"; }

if [ "${REAL_NODE:-}" = 1 ] || [ -f "$state/baseline/sysctl" ]; then
  # shellcheck disable=SC2086
  case "$cmd" in
    up) exec "$here/real-node.sh" up "$state" ${REAL_NODE_IMAGES:-} ;;
    down) exec "$here/real-node.sh" down "$state" ;;
  esac
fi

case "$cmd" in
  up)
    "$here/build-k8s.sh"
    log "starting cluster $name (Kubernetes $K8S_VERSION, $nodes kwok nodes); state in $state"
    kubeconfig=$state/kubeconfig
    if ! kwokctl create cluster --name "$name" --runtime binary \
        --kube-apiserver-binary "$K8S_BIN/kube-apiserver" \
        --kube-controller-manager-binary "$K8S_BIN/kube-controller-manager" \
        --kube-scheduler-binary "$K8S_BIN/kube-scheduler" \
        --kwok-controller-binary "$K8S_BIN/kwok" \
        --etcd-binary "$K8S_BIN/etcd" \
        --kubeconfig "$kubeconfig" \
        --wait 3m --quiet-pull >"$state/kwokctl.log" 2>&1; then
      tail -30 "$state/kwokctl.log" >&2
      for f in "$KWOK_WORKDIR/clusters/$name/logs/"*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -15 "$f" >&2; }
      done
      die "the cluster did not start; kwokctl's output and the component logs are above"
    fi
    kwokctl scale node --name "$name" --replicas "$nodes" >>"$state/kwokctl.log" 2>&1
    kubectl=("$K8S_BIN/kubectl" --kubeconfig "$kubeconfig")
    wait_for "$nodes Ready nodes" 120 bash -c \
      "[ \"\$(\"\$0\" --kubeconfig \"\$1\" get nodes --no-headers 2>/dev/null | grep -c ' Ready ')\" -ge $nodes ]" \
      "$K8S_BIN/kubectl" "$kubeconfig"
    # The default ServiceAccount appears once the controller-manager's token controller runs.
    wait_for "the default ServiceAccount" 120 "${kubectl[@]}" get serviceaccount default -n default >/dev/null 2>&1
    {
      echo "export KUBECONFIG=$kubeconfig"
      echo "export KWOK_CLUSTER_NAME=$name"
      echo "export PATH=$K8S_BIN:\$PATH"
    } >"$state/cluster.env"
    log "cluster $name ready: export KUBECONFIG=$kubeconfig"
    ;;
  down)
    if [ -d "$KWOK_WORKDIR/clusters/$name" ]; then
      log "stopping cluster $name"
      kwokctl delete cluster --name "$name" >>"$state/kwokctl.log" 2>&1 || log "kwokctl delete failed; see $state/kwokctl.log"
    fi
    ;;
  *) die "unknown command $cmd; use up or down" ;;
esac
