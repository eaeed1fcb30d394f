# dfs: `make up` starts a local cluster and mounts it; `make test` runs the tests.
# Both install what is missing first (Debian packages, then .venv), and a second
# run installs nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# fuse3 + libfuse3-dev + pkg-config + gcc + python3-dev: pyfuse3 builds from source.
# python3-venv: the virtual environment. openssl: the local CA for mutual TLS
# (scripts/make_ca, dfs up --tls). iproute2, iptables, nftables: the fault
# suite's network namespaces, veth pairs, partitions and tc netem.
SYSTEM_PACKAGES := fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv openssl \
                   iproute2 iptables nftables
PYTEST_ARGS ?=

.PHONY: deps system-deps venv test test-long lint check-proto proto up down clean faults-cleanup

deps: system-deps venv

system-deps:
	@scripts/install_system_deps $(SYSTEM_PACKAGES)

venv: system-deps
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
		"dfs needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

check-proto: deps
	$(VPY) scripts/gen_proto --check

proto: deps
	$(VPY) scripts/gen_proto

lint: deps
	$(VENV)/bin/ruff check dfs tests scripts
	$(VENV)/bin/mypy

test: deps check-proto lint
	$(VPY) -m pytest -m "not long" $(PYTEST_ARGS)

# The long variants (more simulation seeds, longer fault runs); exit 5 means
# no long variant exists yet, which is not a failure.
test-long: deps
	$(VPY) -m pytest -m long $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Remove what a killed fault run left behind (namespaces, links, mounts, processes),
# found by the names its ledger recorded.
faults-cleanup: deps
	$(VPY) scripts/faults.py --cleanup

up: deps
	$(VENV)/bin/dfs up --dir .dfs

down: deps
	$(VENV)/bin/dfs down --dir .dfs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
