# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= $(shell hack/python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install build system-deps kube-tools node-tools images h2spec lint test test-fast fuzz demo demo-cluster bench clean

$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

# Re-cythonize when a .pyx/.pxd changed (the editable install built it once).
build: install
	$(BIN)/python setup.py -q build_ext --inplace

# Debian tools the ztunnel tests and benchmarks drive: iptables (capture in network namespaces),
# iproute2 (`ip netns`), iperf3 (throughput anchor), gcc + OpenSSL headers (the benchmarks' C load generator
# and ceiling relays), ca-certificates (the OS bundle https JWKS servers are checked against). Installed once;
# needs root, as CI has.
# The `node` tests' real node adds containerd, runc, the CNI plugins, conntrack, nft (the host-state check),
# nsenter (util-linux), and umoci + mmdebstrap to build its images without a registry.
NODE_DEBS := containerd runc containernetworking-plugins conntrack nftables util-linux umoci mmdebstrap
system-deps:
	@command -v iptables >/dev/null && command -v iperf3 >/dev/null && command -v ip >/dev/null && \
	  command -v gcc >/dev/null && test -f /usr/include/openssl/ssl.h && test -f /etc/ssl/certs/ca-certificates.crt && \
	  command -v containerd >/dev/null && command -v runc >/dev/null && test -x /usr/lib/cni/bridge && \
	  command -v conntrack >/dev/null && command -v nft >/dev/null && command -v nsenter >/dev/null && \
	  command -v umoci >/dev/null && command -v mmdebstrap >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    iptables iproute2 iperf3 gcc libssl-dev ca-certificates $(NODE_DEBS))

# kube-apiserver, etcd and kubectl for the `kube` tests, built once into ~/.cache/pyambient/.
kube-tools:
	bash hack/install-kube-tools.sh

# kubelet, kube-proxy, kube-controller-manager, kube-scheduler and CoreDNS for the `node` tests (after
# kube-tools, in its Go module and build cache).
node-tools: kube-tools
	bash hack/install-node-tools.sh

# The node's images (pause, base, pyambient, waypoint, app) as OCI archives, rebuilt only when an input changed.
images: build system-deps
	bash hack/build-images.sh

# h2spec (HTTP/2 conformance) for the `hardening` tests, built once into ~/.cache/pyambient/bin/.
h2spec:
	bash hack/install-h2spec.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy --no-error-summary waypoint ztunnel xds pyambient _core tests benchmarks

test: build system-deps kube-tools node-tools images h2spec lint
	$(BIN)/pytest

test-fast: build
	$(BIN)/pytest -m "not kube and not envoy and not ztunnel and not node"

# Every fuzz target of tests/hardening/fuzz_targets.py for FUZZ_SECONDS each, corpus kept in ~/.cache/pyambient/fuzz/.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := pump_frames h2streams socks5 ztunnel_config mesh_objects mesh_file
fuzz: build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(HOME)/.cache/pyambient/fuzz/$$t/artifacts && \
	  $(BIN)/python -m tests.hardening.fuzz $$t -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(HOME)/.cache/pyambient/fuzz/$$t/artifacts/ $(HOME)/.cache/pyambient/fuzz/$$t/corpus || exit 1; \
	done

demo: build
	$(BIN)/pyambient demo

# The same control plane on a real single-node Kubernetes (the `node` tests' node): deploy/ applied as a user
# would, a waypoint Gateway programmed, its Envoy's listeners shown. Needs root.
demo-cluster: build system-deps node-tools images
	$(BIN)/python -m tests.node.demo

bench: build system-deps
	$(BIN)/pytest benchmarks --benchmark-enable -p no:cacheprovider
	$(BIN)/python -m benchmarks.report

clean:
	rm -rf build $(VENV) _core/*.c _core/*.so
