# Every target that needs the environment depends on `setup`, which is quick when nothing changed.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
EXTRAS := lambda,agent,runtime,infra,cli,plan,dev
STAMP := $(VENV)/.installed
# `make demo` needs only Python: the packages the local stack runs (no Node.js, no Chromium, no CDK).
DEMO_EXTRAS := lambda,agent,runtime,cli,local
DEMO_STAMP := $(VENV)/.installed-demo
TOOLS := .tools/bin
# checkov pins an older boto3 than ours, so it gets a venv of its own (scripts/checkov-requirements.txt).
CHECKOV_VENV := .tools/checkov-venv
CHECKOV := $(CHECKOV_VENV)/bin/checkov
export OMP_NUM_THREADS ?= 1
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION ?= 1
CHROMIUM ?= /usr/bin/chromium
export PATH := $(CURDIR)/$(TOOLS):$(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: setup setup-demo test lint demo synth bench clean help

help:
	@echo "make demo   - set up (Python only) and run the whole pipeline locally (no AWS account)"
	@echo "make test   - set up and run the test suite"
	@echo "make lint   - ruff, mypy, helm lint, image dependency resolution, checkov"
	@echo "make synth  - synthesise the CDK app into cdk.out"
	@echo "make bench  - run the benchmarks, results in benchmarks/RESULTS.md"

setup: $(STAMP) node_modules/.installed $(TOOLS)/helm $(CHECKOV) $(CHROMIUM)

setup-demo: $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt scripts/install_torch.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned; on Linux without an NVIDIA GPU from PyTorch's CPU index (default index if unreachable).
	$(PY) scripts/install_torch.py
	$(PIP) install -q -c constraints.txt -e '.[$(DEMO_EXTRAS)]'
	# The CLIP vocabulary's package, without its torchvision (see the clip-vocab extra in pyproject.toml).
	$(PIP) install -q --no-deps -c constraints.txt clip-anytorch
	touch $@

$(STAMP): $(DEMO_STAMP)
	$(PIP) install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV): scripts/checkov-requirements.txt | $(STAMP)
	test -x $(CHECKOV_VENV)/bin/pip || $(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q -r scripts/checkov-requirements.txt
	touch $@

$(TOOLS)/helm: $(STAMP)
	$(PY) scripts/install_k8s_tools.py $(TOOLS)

# Debian's Chromium drives the web page's browser test (never a browser download at test time).
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "install Chromium and set CHROMIUM=/path/to/chromium"; exit 1; }
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium >/dev/null

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy contract queue_agent inference_api infra sdq local_stack planner lambda/task_api lambda/karpenter_cleanup
	helm lint --strict charts/sd-on-eks
	# Each image's pinned dependency set resolves for its Python and platform (needs PyPI).
	$(PY) scripts/check_image_pins.py
	# The synthesized templates, the chart rendered with every test value set, the Dockerfiles: 0 failed checks.
	$(PY) scripts/checkov_lint.py --checkov $(CHECKOV)

demo: $(DEMO_STAMP)
	$(PY) -m local_stack demo

synth: setup
	cdk synth --quiet

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache outputs .local-stack
