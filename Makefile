# quayctl-controller — see README.md.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TARGET     ?= $(shell uname -m)-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release
IMAGE      ?= quayctl-controller:0.1.0
CACHE      := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/quayctl-controller

# Which Kubernetes of hack/versions.env the e2e suites, demo and bench use: newest (default) or oldest.
K8S        ?= newest
export K8S

.PHONY: help deps build noop test unit e2e e2e-matrix e2e-real leak-check lint image deploy demo bench bench-join heap control-plane clean

help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: noop ## fully static release binaries (controller + no-op), sizes printed
	RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target $(TARGET) --bins
	@for b in $(STATIC_BIN)/quayctl-controller $(STATIC_BIN)/quayctl-noop $(NOOP_ARM64); do \
	  printf '%-54s %6d KiB  %s\n' $$b $$(( $$(stat -c %s $$b) / 1024 )) "$$(file -b $$b | cut -d, -f1-2,4)"; \
	done

# The no-op of the kubelet strategy, static, for each architecture of the helper image's index: one C
# source, Debian's gcc and gcc-aarch64-linux-gnu (no aarch64 Rust standard library is needed).
NOOP_SRC   := src/noop/quayctl-noop.c
NOOP_ARM64 := target/aarch64-unknown-linux-gnu/release/quayctl-noop
NOOP_CFLAGS := -static -Os -s -Wall -Wextra -Werror
noop: $(STATIC_BIN)/quayctl-noop $(NOOP_ARM64) ## the static no-op for amd64 and arm64 (gcc, gcc-aarch64-linux-gnu)
$(STATIC_BIN)/quayctl-noop: $(NOOP_SRC)
	@mkdir -p $(@D)
	gcc $(NOOP_CFLAGS) -o $@ $<
$(NOOP_ARM64): $(NOOP_SRC)
	@mkdir -p $(@D)
	aarch64-linux-gnu-gcc $(NOOP_CFLAGS) -o $@ $<

test: deps unit e2e-matrix e2e-real ## THE test command: installs what is missing, unit + mock-API, kwok e2e on oldest and newest Kubernetes, real nodes

deps: ## install the Debian packages the suites need (root), or say what to install and why
	hack/install-deps.sh

unit: ## unit and mock-API scenario tests (no cluster)
	cargo test --locked

e2e: ## e2e suite on Kubernetes $(K8S): builds the static binary, starts a local cluster, runs tests/e2e.rs
	hack/e2e.sh

e2e-matrix: ## the e2e suite against the oldest and the newest Kubernetes of hack/versions.env
	$(MAKE) --no-print-directory e2e K8S=oldest
	$(MAKE) --no-print-directory e2e K8S=newest

e2e-real: leak-check ## real nodes on Kubernetes $(K8S) (kubelet, containerd, registry; root): CronJob, docker run, pull errors
	tests/e2e-real.sh

leak-check: ## the real-node leak check on a freshly booted host's /run (root)
	tests/leak-check.sh

control-plane: ## build (once per version, cached in ~/.cache) kube-apiserver, KCM, scheduler, kubectl, etcd, kwok, kubelet, kube-proxy
	hack/build-control-plane.sh >/dev/null

lint: ## rustfmt, clippy (-D warnings), shellcheck on the scripts, actionlint on the GitHub workflow
	cargo fmt --all -- --check
	cargo clippy --locked --all-targets -- -D warnings
	shellcheck -x hack/*.sh tests/*.sh .ci/run
	hack/chart-schema.py --check
	hack/actionlint.sh

image: ## docker build (needs a Docker engine)
	docker build -t $(IMAGE) .

deploy: ## kubectl apply -k k8s/deploy to the current kubectl context
	kubectl apply -k k8s/deploy

demo: ## build what is missing, run the controller on ~20 simulated nodes, tear down
	hack/demo.sh

bench: ## figures: run time, peak memory, API requests at N simulated nodes; IMAGES_FROM at 5,000 nodes; real-node pulls
	hack/bench.sh
	hack/bench-images-from.sh
	hack/bench-real.sh

bench-join: ## figures: how long a joining node waits for its release (before/after the watch window), and what the node watch costs
	hack/bench-join.sh

heap: ## heap profile (heaptrack) and peak RSS of a run at HEAP_NODES (5000) kwok nodes with IMAGES_FROM over HEAP_WORKLOADS (10000)
	hack/heap.sh

clean: ## remove build output (the control-plane cache in ~/.cache stays)
	cargo clean
