# nodehealer — everything a developer or CI runs.
#
#   make testbed   build the test bed's control plane, etcd, kwok and helm (only what is missing)
#   make openstack install the real OpenStack (2025.2) that e2e/openstack/start.sh runs (only what is missing)
#   make test      lint, then every test: unit, simulator, test bed, operator scenarios and the
#                  conformance suite against the simulator and a real OpenStack it starts
#   make demo      the whole story on this machine (SCENARIO=... for the other stories)
#   make generate  regenerate crds/ from the Rust types
#   make lint      rustfmt and clippy, warnings are errors
#   make bench     benchmarks (see README)
#   make static    the container image's binary: static, for musl (as the Dockerfile builds it)

SHELL := /bin/bash
CARGO ?= cargo
# The e2e scenarios mostly wait on the control plane: run many side by side.
TEST_THREADS ?= 24
# The story `make demo` tells: power-cycle, kubelet-hang, replace, storm, control-plane,
# reserved-host.
SCENARIO ?= power-cycle
# The real OpenStack `make test` starts for the conformance suite (its run folder, and an
# offset for its ports when another cloud on this machine uses the default ones).
OPENSTACK_RUN ?= target/openstack-run
OPENSTACK_PORT_OFFSET ?= 0

.PHONY: all testbed openstack test unit lint generate demo bench static clean-runs

all: test

testbed:
	@e2e/testbed/build.sh >/dev/null

openstack:
	@e2e/openstack/build.sh >/dev/null

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked --lib --bins

test: testbed openstack lint
	@rm -rf target/test-timings.txt target/test-timelines
	@if [ -d $(OPENSTACK_RUN)/pids ]; then e2e/openstack/stop.sh --run-dir $(OPENSTACK_RUN) || true; fi
	@rm -rf $(OPENSTACK_RUN)
	@start=$$SECONDS; e2e/openstack/start.sh --run-dir $(OPENSTACK_RUN) --port-offset $(OPENSTACK_PORT_OFFSET) >/dev/null \
	  && echo "=== the real OpenStack started in $$((SECONDS - start)) s (logs: $(OPENSTACK_RUN)/logs)"
	NODEHEALER_OPENSTACK=$(CURDIR)/$(OPENSTACK_RUN)/cloud.json \
	NODEHEALER_TESTBED_BIN=$$(e2e/testbed/build.sh --dir) \
	  $(CARGO) test --workspace --locked -- --test-threads=$(TEST_THREADS); \
	  rc=$$?; e2e/openstack/stop.sh --run-dir $(OPENSTACK_RUN) >/dev/null; exit $$rc
	@for f in target/test-timelines/*.txt; do [ -f "$$f" ] && { echo "=== timeline: $$(basename $$f .txt)"; cat "$$f"; }; done; true
	@echo "=== timings measured by the tests"; cat target/test-timings.txt 2>/dev/null || true

# The image's binary, built as the Dockerfile builds it, and checked to need no C library.
static:
	rustup target add x86_64-unknown-linux-musl
	command -v musl-gcc >/dev/null || { apt-get update -qq && apt-get install -y -qq musl-tools; }
	$(CARGO) build --release --locked --target x86_64-unknown-linux-musl --bin nodehealer
	@ldd target/x86_64-unknown-linux-musl/release/nodehealer 2>&1 | grep -Eq 'statically linked|not a dynamic executable' \
	  || { echo "target/x86_64-unknown-linux-musl/release/nodehealer is not static"; exit 1; }
	target/x86_64-unknown-linux-musl/release/nodehealer --version
	@echo "static binary: target/x86_64-unknown-linux-musl/release/nodehealer"

generate:
	$(CARGO) run --locked --quiet --bin crdgen -- --out-dir crds
	rm -f charts/nodehealer/crds/*.yaml
	cp crds/*.yaml charts/nodehealer/crds/

demo: testbed
	$(CARGO) build --locked -p nodehealer --bin nodehealer -p nodehealer-testbed --bin nodehealer-demo
	NODEHEALER_TESTBED_BIN=$$(e2e/testbed/build.sh --dir) TESTBED_LOG=off \
	  target/debug/nodehealer-demo --scenario $(SCENARIO) --operator target/debug/nodehealer --repo .

# Benchmarks on the test bed with a release build of the operator; BENCH_SIZES=100,1000,5000
# for the large run (the 5,000-node cluster takes several minutes to register).
bench: testbed
	$(CARGO) build --locked --release -p nodehealer --bin nodehealer
	$(CARGO) build --locked -p nodehealer-testbed --bin nodehealer-bench
	NODEHEALER_TESTBED_BIN=$$(e2e/testbed/build.sh --dir) TESTBED_LOG=off \
	  target/debug/nodehealer-bench --operator target/release/nodehealer --repo .

clean-runs:
	rm -rf target/testbed-runs
