# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= $(shell hack/python.sh)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install build system-deps kube-tools lint test test-fast demo bench clean

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
system-deps:
	@command -v iptables >/dev/null && command -v iperf3 >/dev/null && command -v ip >/dev/null && \
	  command -v gcc >/dev/null && test -f /usr/include/openssl/ssl.h && test -f /etc/ssl/certs/ca-certificates.crt || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 iperf3 gcc libssl-dev \
	    ca-certificates)

# kube-apiserver, etcd and kubectl for the `kube` tests, built once into ~/.cache/pyambient/.
kube-tools:
	bash hack/install-kube-tools.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy --no-error-summary waypoint ztunnel xds pyambient _core tests benchmarks

test: build system-deps kube-tools lint
	$(BIN)/pytest

test-fast: build
	$(BIN)/pytest -m "not kube and not envoy and not ztunnel"

demo: build
	$(BIN)/pyambient demo

bench: build system-deps
	$(BIN)/pytest benchmarks --benchmark-enable -p no:cacheprovider
	$(BIN)/python -m benchmarks.report

clean:
	rm -rf build $(VENV) _core/*.c _core/*.so
