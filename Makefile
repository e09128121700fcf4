# knn-operator developer entry points. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS := serving,operator,dev
TOOLS_BIN := $(shell $(PYTHON) -c 'import os;print(os.environ.get("KNN_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),"knn-operator"))')/bin
export PATH := $(TOOLS_BIN):$(PATH)

.PHONY: help
help: ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

.PHONY: install
install: $(STAMP) system-deps tools ## create .venv, install Python packages, Debian packages and Go-built tools (idempotent)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

.PHONY: system-deps
system-deps: ## install Debian packages used by tests, lint and the local cluster (prometheus, wrk, iptables, libseccomp-dev, mmdebstrap, shellcheck)
	hack/install-system-deps.sh

.PHONY: tools
tools: ## build the control plane, node (kubelet, containerd, runc, CNI), CoreDNS, BuildKit, etcd, kubectl, helm, kubeconform from Go modules (cached)
	hack/build-tools.sh >/dev/null

.PHONY: test
test: install ## run every test tier that CI runs
	$(PY) -m pytest

.PHONY: test-unit
test-unit: $(STAMP) ## only the fast, pure tests
	$(PY) -m pytest tests/unit

.PHONY: lint
lint: $(STAMP) shellcheck ## ruff, mypy and shellcheck
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Every script with a sh/bash shebang under hack/ and .ci/, so a new one is linted
# without being listed; -x follows what they source (hack/versions.env).
SHELL_SCRIPTS = $(shell grep -rlE '^\#!.*\b(ba|da)?sh\b' hack .ci)

.PHONY: shellcheck
shellcheck: ## lint the shell scripts under hack/ and .ci/
	@command -v shellcheck >/dev/null || { echo "shellcheck is not installed; make install (hack/install-system-deps.sh) installs it" >&2; exit 2; }
	shellcheck -x $(SHELL_SCRIPTS)

.PHONY: fmt
fmt: $(STAMP) ## format the code
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: bench
bench: install ## run benchmarks; prints ratios against in-process baselines (BENCH_ARGS=--help)
	$(PY) -m bench $(BENCH_ARGS)

.PHONY: demo
demo: install ## main job: the local cluster, a KnnIndex built, served, queried and replaced (DEMO_ARGS=--local: data plane only)
	$(PY) -m knn_devtools.demo $(DEMO_ARGS)

.PHONY: controlplane-up
controlplane-up: install ## start etcd + kube-apiserver in the background; writes .local/kubeconfig
	$(PY) -m knn_devtools.controlplane up --dir .local

.PHONY: controlplane-down
controlplane-down: $(STAMP) ## stop what controlplane-up started
	$(PY) -m knn_devtools.controlplane down --dir .local

.PHONY: up
up: install ## start the local cluster (control plane, node, DNS) in the background; .local/kubeconfig
	$(PY) -m knn_devtools.cluster up --dir .local

.PHONY: down
down: $(STAMP) ## stop the local cluster and remove everything it made on this machine
	$(PY) -m knn_devtools.cluster down --dir .local

.PHONY: e2e-kind
e2e-kind: $(STAMP) ## with Docker: the e2e scenarios on a kind cluster, images built by docker build (KIND_KEEP=1 keeps it)
	hack/e2e-kind.sh

.PHONY: generate
generate: $(STAMP) ## regenerate crds/, rbac/, the chart's copies and gitops/ from the models, rbac rules and contracts
	$(PY) -m knn_operator.crdgen

.PHONY: clean
clean: ## stop the local cluster if one runs; remove the virtual environment and caches (not the Go-built tools)
	if [ -x $(PY) ]; then $(PY) -m knn_devtools.cluster down --dir .local; fi
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .local
