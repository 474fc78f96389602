#!/usr/bin/env bash
# A one-node cluster with a real kubelet, containerd and runc, for the tests that must run the
# project's container images (docs/real-node.md; `cluster.sh up` with REAL_NODE=1 runs this):
#
#   real-node.sh up DIR [IMAGE_ARCHIVE...]   start it; writes DIR/kubeconfig and DIR/cluster.env,
#                                            imports the archives (make images) into containerd
#   real-node.sh load DIR IMAGE_ARCHIVE...   import more image archives
#   real-node.sh down DIR                    stop everything and restore the host state
#
# Needs root, Linux, cgroup v1 or v2 controllers, and runc, the CNI plugins, iptables, gcc and
# openssl (installed from apt when missing). Every address is on a bridge this script creates
# ($REAL_NODE_BRIDGE, 10.244.0.1/24): the API server, the kubelet and the pods' gateway; the
# service range 10.96.0.0/24 lives only in kube-proxy's rules. Nothing binds the machine's own
# interfaces. One such node per machine: the kubelet hard-codes a few host paths.
#
# `up` records the host state it changes (sysctls, iptables tables, host paths) in DIR/baseline;
# `down` (also run when `up` fails) restores it: pods, containers and shims, mounts under DIR,
# the bridge, the kubelet's and kube-proxy's iptables rules, sysctls, the cgroup tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

cmd=${1:?usage: real-node.sh up|load|down DIR [IMAGE_ARCHIVE...]}
D=$(mkdir -p "${2:?usage: real-node.sh up|load|down DIR}" && cd "$2" && pwd)
shift 2
NODE=${REAL_NODE_NAME:-ko-node}
BRIDGE=${REAL_NODE_BRIDGE:-ko-br0}
NODE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
CGROUP=/$NODE
HOST_PATHS=(/var/lib/kubelet /var/lib/cni /var/log/containers /var/log/pods /run/containerd /run/mount)
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes net.ipv4.ip_forward net.ipv4.conf.all.route_localnet
  net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables)
export KUBECACHEDIR=$D/kube-cache
kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$D/kubeconfig" "$@"; }
ctr() { "$CONTAINERD_BIN/ctr" -a "$D/containerd.sock" -n k8s.io "$@"; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step() { log "[$(elapsed)s] $*"; }

alive() { [ -f "$D/pids/$1.pid" ] && kill -0 "$(cat "$D/pids/$1.pid")" 2>/dev/null; }
start() { # start NAME COMMAND...: runs in the background, logs in DIR/logs, pid in DIR/pids
  local name=$1; shift
  nohup "$@" >"$D/logs/$name.log" 2>&1 &
  echo $! >"$D/pids/$name.pid"
}
stop() { # stop NAME: SIGTERM, up to 10 s, then SIGKILL
  alive "$1" || { rm -f "$D/pids/$1.pid"; return 0; }
  local p; p=$(cat "$D/pids/$1.pid")
  kill "$p" 2>/dev/null || true
  local deadline=$(( $(date +%s) + 10 ))
  while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$D/pids/$1.pid"
}

need_tools() {
  local pkgs=()
  command -v runc >/dev/null || pkgs+=(runc)
  [ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
  command -v iptables >/dev/null || pkgs+=(iptables)
  command -v nft >/dev/null || pkgs+=(nftables)
  command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)
  command -v openssl >/dev/null || pkgs+=(openssl)
  if [ ${#pkgs[@]} -gt 0 ]; then
    command -v apt-get >/dev/null || die "missing ${pkgs[*]}: install them"
    log "installing ${pkgs[*]} from apt"
    apt-get install -y --no-install-recommends "${pkgs[@]}" >"$D/logs/apt.log" 2>&1 ||
      { apt-get update >>"$D/logs/apt.log" 2>&1 && apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$D/logs/apt.log" 2>&1; } ||
      die "apt-get install ${pkgs[*]} failed; see $D/logs/apt.log"
  fi
  "$here/build-k8s.sh" node
  "$here/build-go-tool.sh" containerd
}

# Certificates: a CA, the API server's serving cert, and one client cert per component.
pki() {
  local p=$D/pki; mkdir -p "$p"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$p/ca.key" -out "$p/ca.crt" -days 7 \
    -subj "/CN=$NODE-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  cert() { # cert NAME SUBJECT [SAN]
    local ext=$p/$1.ext
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' >"$ext"
    if [ -n "${3:-}" ]; then printf 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$3" >>"$ext"
    else printf 'extendedKeyUsage=clientAuth\n' >>"$ext"; fi
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$p/$1.key" -out "$p/$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$p/$1.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
      -out "$p/$1.crt" -days 7 -extfile "$ext" 2>/dev/null
    rm -f "$p/$1.csr" "$ext"
  }
  cert apiserver /CN=kube-apiserver \
    "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$NODE_IP,IP:10.96.0.1"
  cert admin /O=system:masters/CN=admin
  cert apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client
  cert kubelet "/O=system:nodes/CN=system:node:$NODE" "DNS:$NODE,IP:$NODE_IP"
  cert kube-proxy /CN=system:kube-proxy
  cert controller-manager /CN=system:kube-controller-manager
  cert scheduler /CN=system:kube-scheduler
  openssl ecparam -name prime256v1 -genkey -noout -out "$p/sa.key" 2>/dev/null
  openssl ec -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  local n
  for n in admin kubelet kube-proxy controller-manager scheduler; do
    local kc=$D/$n.kubeconfig
    [ "$n" = admin ] && kc=$D/kubeconfig
    "$K8S_BIN/kubectl" config set-cluster "$NODE" --server "https://$NODE_IP:6443" \
      --certificate-authority "$p/ca.crt" --embed-certs --kubeconfig "$kc" >/dev/null
    "$K8S_BIN/kubectl" config set-credentials "$n" --client-certificate "$p/$n.crt" \
      --client-key "$p/$n.key" --embed-certs --kubeconfig "$kc" >/dev/null
    "$K8S_BIN/kubectl" config set-context default --cluster "$NODE" --user "$n" --kubeconfig "$kc" >/dev/null
    "$K8S_BIN/kubectl" config use-context default --kubeconfig "$kc" >/dev/null
  done
}

configs() {
  mkdir -p "$D/cni" "$D/certs.d"
  : >"$D/resolv.conf"
  cat >"$D/cni/10-$NODE.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$NODE", "plugins": [{
  "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
  "ipam": {"type": "host-local", "dataDir": "$D/cni-data",
           "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
  cat >"$D/containerd.toml" <<EOF
version = 3
root = "$D/containerd/root"
state = "$D/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.blockfile", "io.containerd.internal.v1.opt", "io.containerd.nri.v1.nri",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  "io.containerd.image-verifier.v1.bindir", "io.containerd.differ.v1.erofs", "io.containerd.mount-handler.v1.erofs"]
[grpc]
  address = "$D/containerd.sock"
[ttrpc]
  address = "$D/containerd.sock.ttrpc"
[debug]
  address = "$D/containerd-debug.sock"
[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "$D/s"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "$D/certs.d"
[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  # Machines without CAP_SYS_RESOURCE cannot lower oom_score_adj (the sandbox asks for -998).
  restrict_oom_score_adj = true
  tolerate_missing_hugetlb_controller = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$(command -v runc)"
        Root = "$D/runc"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$D/cni"
    max_conf_num = 1
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
  cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP
containerRuntimeEndpoint: unix://$D/containerd.sock
imageServiceEndpoint: unix://$D/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
tlsCertFile: $D/pki/kubelet.crt
tlsPrivateKeyFile: $D/pki/kubelet.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: true}, x509: {clientCAFile: $D/pki/ca.crt}}
authorization: {mode: Webhook}
podLogsDir: $D/pod-logs
volumePluginDir: $D/kubelet/volume-plugins
resolvConf: $D/resolv.conf
clusterDomain: cluster.local
registerNode: true
# The disk is shared: evict only when it is really full.
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
oomScoreAdj: 0
EOF
  cat >"$D/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $D/kube-proxy.kubeconfig}
hostnameOverride: $NODE
mode: iptables
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
oomScoreAdj: 0
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

baseline() {
  mkdir -p "$D/baseline"
  local s
  for s in "${SYSCTLS[@]}"; do
    sysctl -n "$s" >/dev/null 2>&1 && echo "$s $(sysctl -n "$s")"
  done >"$D/baseline/sysctl"
  nft list tables 2>/dev/null >"$D/baseline/nft-tables" || true
  for s in "${HOST_PATHS[@]}"; do [ -e "$s" ] && echo "$s"; done >"$D/baseline/host-paths" || true
}

load() { # load ARCHIVE...: imports image archives into containerd's k8s.io namespace
  local a s
  for a in "$@"; do
    s=$(date +%s.%N)
    ctr images import "$a" >/dev/null 2>"$D/logs/import.log" ||
      { cat "$D/logs/import.log" >&2; die "importing $a failed"; }
    s=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "$(basename "$a") $s" >>"$D/image-load-seconds"
    log "imported $(basename "$a") ($(du -h "$a" | cut -f1)) in ${s}s"
  done
}

up() {
  mkdir -p "$D/pids" "$D/logs"
  [ "$(id -u)" = 0 ] || die "the real node needs root (the kubelet, containerd and runc)"
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    die "bridge $BRIDGE exists: another real node runs on this machine (one per machine; see real-node.sh down)"
  fi
  need_tools
  [ -s "$D/images/pause.tar" ] || "$here/build-images.sh" --pause "$D/images" >/dev/null
  started=0
  trap '[ "$started" = 1 ] || { log "start-up failed; tearing down (logs in $D/logs)"; down; }' EXIT
  step "recording host state; starting node $NODE on $BRIDGE $NODE_IP"
  baseline
  rm -rf "$D/etcd" "$D/containerd" "$D/kubelet" "$D/cni-data" "$D/pod-logs" "$D/runc" "$D/s"
  mkdir -p "$D/etcd" "$D/containerd" "$D/kubelet" "$D/cni-data" "$D/pod-logs" "$D/runc" "$D/s"
  pki
  configs
  ip link add "$BRIDGE" type bridge
  ip addr add "$NODE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  # The bridge plugin turns on ip_forward: nothing from the pods may be forwarded off the bridge
  # (an SDK probing 169.254.169.254, say). They reach the host and each other, nothing else.
  iptables -w -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP -m comment --comment "$NODE-off-bridge"
  # The kubelet's cgroupRoot, in every v1 hierarchy (cpuset needs its cpus and mems copied).
  local h
  if [ -d /sys/fs/cgroup/memory ]; then
    for h in /sys/fs/cgroup/*/; do
      [ "$(basename "$h")" = unified ] || mkdir -p "$h$CGROUP"
    done
  fi
  if [ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset$CGROUP/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset$CGROUP/cpuset.mems"
  fi

  PATH=$CONTAINERD_BIN:$PATH start containerd "$CONTAINERD_BIN/containerd" --config "$D/containerd.toml"
  wait_for "containerd's socket" 30 test -S "$D/containerd.sock"
  step "containerd up"
  load "$D/images/pause.tar" "$@"
  step "images imported"

  local etcd_client etcd_peer
  etcd_client=$(free_port); etcd_peer=$(free_port)
  start etcd "$K8S_BIN/etcd" --name "$NODE" --data-dir "$D/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "$NODE=http://127.0.0.1:$etcd_peer" --listen-metrics-urls=
  wait_for "etcd" 30 port_open "$etcd_client"
  local p=$D/pki
  start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_client" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port 6443 \
    --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction \
    --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" --kubelet-client-key "$p/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP
  wait_for "the API server" 120 kubectl get --raw /readyz >/dev/null 2>&1
  step "API server ready on https://$NODE_IP:6443"
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig "$D/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$D/controller-manager.kubeconfig" --authorization-kubeconfig "$D/controller-manager.kubeconfig" \
    --bind-address "$NODE_IP" --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt"
  start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig "$D/scheduler.kubeconfig" \
    --authentication-kubeconfig "$D/scheduler.kubeconfig" --authorization-kubeconfig "$D/scheduler.kubeconfig" \
    --bind-address "$NODE_IP" --leader-elect=false
  PATH=$CONTAINERD_BIN:$PATH start kubelet "$K8S_BIN/kubelet" --config "$D/kubelet.yaml" \
    --kubeconfig "$D/kubelet.kubeconfig" --root-dir "$D/kubelet" --cert-dir "$D/kubelet/pki" \
    --node-ip "$NODE_IP" --hostname-override "$NODE" --v=1
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$D/kube-proxy.yaml" --v=1
  wait_for "node $NODE Ready" 180 bash -c "[ \"\$(\"\$0\" --kubeconfig \"\$1\" get node $NODE \
    -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' 2>/dev/null)\" = True ]" "$K8S_BIN/kubectl" "$D/kubeconfig"
  wait_for "the default ServiceAccount" 120 kubectl get serviceaccount default -n default >/dev/null 2>&1
  {
    echo "export KUBECONFIG=$D/kubeconfig"
    echo "export KUBECACHEDIR=$D/kube-cache"
    echo "export PATH=$K8S_BIN:\$PATH"
    echo "export REAL_NODE=$NODE"
    echo "export REAL_NODE_IP=$NODE_IP"
    echo "export REAL_NODE_DIR=$D"
    echo "export CONTAINERD_CTR=$CONTAINERD_BIN/ctr"
  } >"$D/cluster.env"
  started=1
  step "node $NODE Ready: export KUBECONFIG=$D/kubeconfig"
  echo "$(elapsed)" >"$D/start-seconds"
}

down() {
  set +e
  mkdir -p "$D/pids"
  step "stopping node $NODE and restoring the host state"
  # 1. No new pods (controllers stopped); let the kubelet stop the others: CRI StopPodSandbox
  # runs CNI DEL (veths, IPs).
  stop kube-scheduler
  stop kube-controller-manager
  if alive kubelet && alive kube-apiserver; then
    kubectl delete pods --all --all-namespaces --grace-period=5 --wait --timeout=60s >/dev/null 2>&1
  fi
  # 2. kube-proxy and its rules, then the kubelet.
  if [ -f "$D/pids/kube-proxy.pid" ]; then
    stop kube-proxy
    "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1
  fi
  stop kubelet
  # 3. Containers left, then containerd; shims outlive it: stop them by the PIDs in its state.
  if alive containerd; then
    local t
    for t in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
    for t in $(ctr tasks ls -q 2>/dev/null); do ctr tasks rm -f "$t" >/dev/null 2>&1; done
  fi
  stop containerd
  local f p
  for f in "$D"/containerd/state/io.containerd.runtime.v2.task/*/*/{init,shim}.pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$CONTAINERD_BIN/containerd-shim-runc-v2" ] ||
       grep -q ":$CGROUP/" "/proc/$p/cgroup" 2>/dev/null; then
      kill -9 "$p" 2>/dev/null
    fi
  done
  stop kube-apiserver
  stop etcd
  # 4. Mounts under DIR (overlay rootfs, shm, netns, tmpfs volumes, the kubelet's), deepest first.
  local m
  for m in $(awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  # 5. The bridge (veth peers went with their network namespaces).
  ip link del "$BRIDGE" 2>/dev/null
  # 6. Our FORWARD rule (saying how often it dropped), the kubelet's chains, then the nft tables
  # iptables-nft created for us.
  local fam t c dropped
  if command -v iptables >/dev/null; then
    dropped=$(iptables -w -nvx -L FORWARD 2>/dev/null | awk -v c="$NODE-off-bridge" '$0 ~ c {print $1}')
    [ -n "$dropped" ] && log "dropped $dropped packets that pods sent off the bridge"
    iptables -w -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP -m comment --comment "$NODE-off-bridge" 2>/dev/null
  fi
  for fam in iptables ip6tables; do
    command -v $fam >/dev/null || continue
    for t in filter nat mangle; do
      $fam -w -t $t -D INPUT -j KUBE-FIREWALL 2>/dev/null; $fam -w -t $t -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
      for c in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT KUBE-PROXY-CANARY; do
        $fam -w -t $t -F $c 2>/dev/null; $fam -w -t $t -X $c 2>/dev/null
      done
    done
  done
  if [ -f "$D/baseline/nft-tables" ] && command -v nft >/dev/null; then
    nft list tables 2>/dev/null | while read -r _ fam t; do
      grep -qx "table $fam $t" "$D/baseline/nft-tables" || nft delete table "$fam" "$t"
    done
  fi
  # 7. sysctls the kubelet (overcommit, panic) and the bridge plugin (ip_forward) changed.
  local s v
  if [ -f "$D/baseline/sysctl" ]; then
    while read -r s v; do
      [ "$(sysctl -n "$s" 2>/dev/null)" = "$v" ] || sysctl -q -w "$s=$v"
    done <"$D/baseline/sysctl"
  fi
  # 8. The cgroup tree, deepest first.
  for m in /sys/fs/cgroup/*"$CGROUP" "/sys/fs/cgroup$CGROUP"; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # 9. Host paths the kubelet and containerd hard-code, when they were absent before.
  if [ -f "$D/baseline/host-paths" ]; then
    for m in "${HOST_PATHS[@]}"; do
      grep -qx "$m" "$D/baseline/host-paths" || rm -rf "$m"
    done
  fi
  rm -f "$D/cluster.env"
  step "node $NODE stopped"
  return 0
}

case "$cmd" in
  up) up "$@" ;;
  load) load "$@" ;;
  down) down ;;
  *) die "usage: real-node.sh up|load|down DIR [IMAGE_ARCHIVE...]" ;;
esac
