# shellcheck shell=bash
# Pinned versions of every tool the test environment builds. Sourced by the other scripts.
# Kubernetes must match the k8s-openapi feature in Cargo.toml (v1_37).
K8S_VERSION=${K8S_VERSION:-v1.37.2}
# The etcd that k8s.io/kubernetes v1.37.2's go.mod requires.
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
KWOK_VERSION=${KWOK_VERSION:-v0.7.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
KINESIS_LOCAL_VERSION=${KINESIS_LOCAL_VERSION:-0.6.2}
CACHE_ROOT=${KINESIS_OPERATOR_CACHE:-$HOME/.cache/kinesis-operator}
K8S_BIN=$CACHE_ROOT/k8s/$K8S_VERSION-etcd$ETCD_VERSION-kwok$KWOK_VERSION-helm$HELM_VERSION/bin
KINESIS_LOCAL_DIR=$CACHE_ROOT/kinesis-local/$KINESIS_LOCAL_VERSION
export GOTOOLCHAIN=local
# promtool checks the chart's PrometheusRule (`promtool check rules`, `promtool test rules`).
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-v0.316.0}
PROMTOOL=$CACHE_ROOT/promtool/$PROMETHEUS_VERSION/promtool
# Toxiproxy, put between one worker and the API server, Kinesis and its sink by the fault tests.
TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.5.0}
TOXIPROXY_BIN=$CACHE_ROOT/toxiproxy-$TOXIPROXY_VERSION
# tinyproxy, the forward proxy of the spec.network tests, from Debian's package.
TINYPROXY_VERSION=${TINYPROXY_VERSION:-1.11.1-2.1+deb12u1}
TINYPROXY=$CACHE_ROOT/tinyproxy-$TINYPROXY_VERSION/tinyproxy
# go-containerregistry's crane: `make images` assembles the OCI images with it, no Docker engine.
CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
CRANE=$CACHE_ROOT/crane-$CRANE_VERSION/crane
# actionlint checks .github/workflows (`make lint-workflows`).
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}
ACTIONLINT=$CACHE_ROOT/actionlint-$ACTIONLINT_VERSION/actionlint
# The real node (real-node.sh): containerd, ctr and the runc shim; kubelet and kube-proxy come from
# build-k8s.sh (`build-k8s.sh node`).
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CONTAINERD_BIN=$CACHE_ROOT/containerd-$CONTAINERD_VERSION
# The sandbox image the real node pins; built from tests/env/pause.c, never pulled.
PAUSE_IMAGE=registry.k8s.io/pause:3.10.2
# The OpenSearch node of the `_bulk` sink tests (opensearch.sh): Maven Central artifacts and our own
# launcher (tests/env/opensearch/), built with Maven; 2.19 is the newest line that runs on Java 17.
OPENSEARCH_VERSION=${OPENSEARCH_VERSION:-2.19.6}
OPENSEARCH_DIR=$CACHE_ROOT/opensearch-$OPENSEARCH_VERSION
# SeaweedFS's S3 gateway (`weed`), the S3-compatible store the S3 sink tests write to; the module
# proxy serves the repository only at pseudo-versions.
SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
WEED=$CACHE_ROOT/seaweedfs-$SEAWEEDFS_VERSION/weed
