# kinesis-operator: `make help` lists the targets.
SHELL := bash
.DEFAULT_GOAL := help
CARGO ?= cargo
CLUSTER_DIR ?= $(CURDIR)/.cache/cluster
FUZZ_SECONDS ?= 600
# Tests run this many at a time inside each test binary: the integration tests mostly wait on
# processes and the API server, so more than the 2 cores of a small machine pays (e2e: 126 s with
# 2, 72 s with 4).
TEST_THREADS ?= 4

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: test
test: crds-check tools ## Run every test: unit, CRD sync, and integration tests on a local cluster and Kinesis emulator
	$(CARGO) build --workspace --bins --locked
	RUST_TEST_THREADS=$(TEST_THREADS) tests/env/with-env.sh $(CARGO) test --workspace --locked

.PHONY: unit
unit: ## Run the tests that need neither a cluster nor an emulator
	$(CARGO) test --workspace --locked --lib --bins

.PHONY: model-check
model-check: ## Model-check the shard handoff protocol (stateright, release build; docs/model-check.md): prints the states explored and the time
	$(CARGO) test --release --locked -p kinesis-protocol --test model -- --ignored --nocapture --test-threads 1 --skip explore

.PHONY: lint
lint: lint-workflows ## cargo fmt --check, clippy with warnings denied, actionlint on the workflows
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: lint-workflows
lint-workflows: ## Check .github/workflows with actionlint (built from its Go module, cached)
	tests/env/build-go-tool.sh actionlint
	source tests/env/versions.sh && "$$ACTIONLINT" -no-color .github/workflows/*.yml

IMAGES_DIR ?= $(or $(CARGO_TARGET_DIR),target)/images
# The binaries the images hold: release (what ships), or debug (CI's real-node step: built anyway
# by `make test`, where a release build would add half an hour to a cold run). The debug build
# and the tests below use `--workspace`, as `make test` does: the same features, so nothing is
# compiled again.
IMAGES_PROFILE ?= release

.PHONY: images
images: ## Build the operator and ingester images without Docker (release binaries + crane) into $(IMAGES_DIR); IMAGES_PROFILE=debug from the debug build
	$(CARGO) build --locked $(if $(filter release,$(IMAGES_PROFILE)),--release -p kinesis-ingester -p kinesis-operator --bin kinesis-ingester --bin kinesis-operator,--workspace --bins)
	tests/env/build-images.sh $(IMAGES_DIR) $(or $(CARGO_TARGET_DIR),target)/$(IMAGES_PROFILE)
	@source tests/env/versions.sh && for i in kinesis-ingester kinesis-operator; do \
	  echo "$(IMAGES_DIR)/$$i.tar: $$(du -h $(IMAGES_DIR)/$$i.tar | cut -f1)"; cat $(IMAGES_DIR)/$$i-config.json; echo; done

# The arm64 images are cross-built on an amd64 machine: rustup's aarch64 target (added here when
# missing) and Debian's cross toolchain (gcc-aarch64-linux-gnu libc6-dev-arm64-cross; qemu-user
# to start each binary from the image's own files before it is packed).
ARM64_ENV = CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

.PHONY: images-arm64
images-arm64: ## The same images for linux/arm64, cross-built from release binaries, into $(IMAGES_DIR)/arm64 (needs gcc-aarch64-linux-gnu and libc6-dev-arm64-cross from apt)
	@command -v aarch64-linux-gnu-gcc >/dev/null || { echo "images-arm64: no aarch64-linux-gnu-gcc: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user" >&2; exit 1; }
	rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
	$(ARM64_ENV) $(CARGO) build --release --locked --target aarch64-unknown-linux-gnu -p kinesis-ingester -p kinesis-operator --bin kinesis-ingester --bin kinesis-operator
	IMAGE_ARCH=arm64 tests/env/build-images.sh $(IMAGES_DIR)/arm64 $(or $(CARGO_TARGET_DIR),target)/aarch64-unknown-linux-gnu/release
	@for i in kinesis-ingester kinesis-operator; do \
	  echo "$(IMAGES_DIR)/arm64/$$i.tar: $$(du -h $(IMAGES_DIR)/arm64/$$i.tar | cut -f1)"; cat $(IMAGES_DIR)/arm64/$$i-config.json; echo; done

.PHONY: crds
crds: ## Regenerate crds/ and the chart's crds/ from the Rust types
	$(CARGO) run --quiet --locked -p kinesis-ingester-api --bin crdgen -- crds charts/kinesis-operator/crds

.PHONY: crds-check
crds-check: ## Fail when crds/ or the chart's crds/ is stale
	$(CARGO) test --quiet --locked -p kinesis-ingester-api --test crd

.PHONY: tools
tools: ## Build the Kubernetes binaries, kwok, helm, promtool, Toxiproxy, tinyproxy, SeaweedFS and the OpenSearch node (cached by version) and install kinesis-local
	tests/env/build-k8s.sh
	tests/env/build-promtool.sh
	tests/env/build-toxiproxy.sh
	tests/env/tinyproxy.sh
	tests/env/build-seaweedfs.sh
	tests/env/kinesis-local.sh install
	tests/env/opensearch.sh build >/dev/null

.PHONY: cluster-up
cluster-up: ## Start a local control plane with kwok nodes; prints the KUBECONFIG to use
	tests/env/cluster.sh up $(CLUSTER_DIR)
	@echo "export KUBECONFIG=$(CLUSTER_DIR)/kubeconfig"

.PHONY: cluster-down
cluster-down: ## Stop the control plane started by cluster-up
	tests/env/cluster.sh down $(CLUSTER_DIR)

.PHONY: kinesis-up
kinesis-up: ## Start kinesis-local on a free loopback port
	tests/env/kinesis-local.sh start $(CLUSTER_DIR)
	@cat $(CLUSTER_DIR)/kinesis.env

.PHONY: kinesis-down
kinesis-down: ## Stop kinesis-local started by kinesis-up
	tests/env/kinesis-local.sh stop $(CLUSTER_DIR)

.PHONY: demo
demo: tools $(if $(filter 1,$(REAL_NODE)),images) ## Local demo, no cloud account: control plane + Kinesis emulator + Helm chart + operator + workers; Ctrl-C stops it. REAL_NODE=1 (root): in containers on a real node
	$(CARGO) build --workspace --bins --locked
	REAL_NODE_IMAGES="$(abspath $(IMAGES_DIR))/kinesis-operator.tar $(abspath $(IMAGES_DIR))/kinesis-ingester.tar" \
	  tests/env/with-env.sh "$${CARGO_TARGET_DIR:-target}/debug/kinesis-demo"

.PHONY: test-real-node
test-real-node: images ## The fleet in containers on a real kubelet node (root; one per machine): chart, images, delete-pod handoff, OOM kill; prints figures
	REAL_NODE=1 REAL_NODE_IMAGES="$(abspath $(IMAGES_DIR))/kinesis-operator.tar $(abspath $(IMAGES_DIR))/kinesis-ingester.tar" \
	  tests/env/with-env.sh $(CARGO) test --workspace --locked --test real_node -- --ignored --nocapture

.PHONY: bench-fleet
bench-fleet: tools ## Fleet figures on the local control plane: SplitShard->children read, worker kill->shards read again, API writes/s per worker, object sizes
	$(CARGO) build --workspace --bins --locked
	$(CARGO) test --locked -p kinesis-operator --lib budget -- --nocapture 2>&1 | grep FIGURE
	tests/env/with-env.sh $(CARGO) test --locked -p kinesis-operator --test e2e -- --nocapture --test-threads 1 s1_ s2_ s3_ s5_ 2>&1 | grep -A3 FIGURE

.PHONY: bench-scale bench-scale-short
bench-scale: tools ## One ingester over 10, 100 and 1,000 idle shards (replay server) and 1, 10 and 100 worker processes, release build: apply->all read, operator CPU and RSS, API requests/s by verb at rest and in a rebalance, largest object, SplitShard of 100 shards at once (SCALE_STEPS, SCALE_REST_SECONDS)
	$(CARGO) build --release --locked -p kinesis-operator -p kinesis-ingester --bins
	tests/env/with-env.sh $(CARGO) test --release --locked -p kinesis-operator --test scale -- --ignored --nocapture

bench-scale-short: ## The scale benchmark's 10- and 100-shard steps with 15 s at rest, debug build (CI)
	$(CARGO) build --workspace --bins --locked
	SCALE_STEPS=10,100 SCALE_REST_SECONDS=15 tests/env/with-env.sh $(CARGO) test --locked -p kinesis-operator --test scale -- --ignored --nocapture

.PHONY: bench
bench: ## Release-build benchmarks: decode MB/s, transform µs per record (VRL, HTTP), routing µs per record, end-to-end MB/s per core and RSS (stdout, and S3 into SeaweedFS), 1,000 idle shards, _bulk into a real OpenSearch node (prints figures)
	$(CARGO) bench --locked -p kinesis-ingester --bench decode
	$(CARGO) bench --locked -p kinesis-ingester --bench transform
	$(CARGO) bench --locked -p kinesis-ingester --bench route
	$(CARGO) build --release --locked -p kinesis-ingester -p kinesis-operator-tests --bin kinesis-ingester --bin ingester-bench
	tests/env/build-seaweedfs.sh
	st=$$(mktemp -d) && tests/env/seaweedfs.sh start $$st && . $$st/seaweedfs.env && \
	  curl -fsS -o /dev/null -X PUT "$$S3_ENDPOINT/kinesis-bench" && rc=0 && \
	  $(or $(CARGO_TARGET_DIR),target)/release/ingester-bench $(or $(CARGO_TARGET_DIR),target)/release/kinesis-ingester || rc=$$?; \
	  tests/env/seaweedfs.sh stop $$st; rm -rf $$st; exit $$rc

BENCH_TARGET = $(or $(CARGO_TARGET_DIR),target)

.PHONY: bench-peers
bench-peers: ## Side by side with a KCL 3 consumer (docs/benchmarks.md): throughput per core, RSS, idle memory, latency, failover, split/merge correctness (BENCH_PEERS_ONLY=failover,... for some); writes the table to bench-peers.md in the target dir
	$(CARGO) build --release --locked -p kinesis-ingester -p kinesis-operator -p kinesis-operator-tests --bin kinesis-ingester --bin kinesis-operator --bin peers-bench
	eval "$$(bench/peers/setup.sh)" && $(BENCH_TARGET)/release/peers-bench $(BENCH_TARGET)/release/kinesis-ingester --out $(BENCH_TARGET)/bench-peers.md $(if $(BENCH_PEERS_ONLY),--only $(BENCH_PEERS_ONLY))

.PHONY: bench-peers-short
bench-peers-short: ## One small run per consumer (ours, KCL 3) that fails unless both read every record exactly once (debug build: a smoke, not figures)
	$(CARGO) build --locked -p kinesis-ingester -p kinesis-operator-tests --bin kinesis-ingester --bin peers-bench
	@echo "bench-peers-short: a smoke on the debug build; it checks that both read every record, and its figures are not comparable (make bench-peers measures)"
	eval "$$(bench/peers/setup.sh)" && $(BENCH_TARGET)/debug/peers-bench $(BENCH_TARGET)/debug/kinesis-ingester --short

SOAK_SECONDS ?= 600

.PHONY: soak
soak: tools ## Chaos soak on the local stack, SOAK_SECONDS (default 600; SOAK_SEED replays a schedule); prints the ledger figures
	$(CARGO) build --workspace --bins --locked
	SOAK_SECONDS=$(SOAK_SECONDS) tests/env/with-env.sh $(CARGO) test --workspace --locked --test soak -- --ignored --nocapture

.PHONY: soak-short
soak-short: ## The 2-minute chaos soak that CI runs (6 faults)
	$(MAKE) soak SOAK_SECONDS=120

.PHONY: fuzz
fuzz: ## Run every cargo-fuzz target FUZZ_SECONDS (default 600) each, one at a time; prints executions per target (needs nightly and cargo-fuzz)
	fuzz/run.sh $(FUZZ_SECONDS)

.PHONY: fuzz-10m
fuzz-10m: ## Run every cargo-fuzz target for 10 million executions each (issue 10's bar; hours for the slow targets), one at a time
	FUZZ_RUNS=10000000 fuzz/run.sh 86400 $(FUZZ_TARGETS)

.PHONY: fuzz-smoke
fuzz-smoke: ## Run every cargo-fuzz target for 15 s (CI)
	fuzz/run.sh 15
