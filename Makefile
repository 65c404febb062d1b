# The commands README.rst quotes. Each target installs what it needs:
# the system packages (apt, when missing) and a virtualenv with the package.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CSRC   := $(wildcard csrc/*.c csrc/*.h csrc/*.py)

.PHONY: all deps demo test test-all bench clean

all: $(VENV)/.built

# System packages (apt), only those missing: see .ci/install-deps.
deps:
	@bash .ci/install-deps

$(VENV)/.installed: pyproject.toml setup.py | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Rebuild the extension in place whenever the C core changes.
$(VENV)/.built: $(VENV)/.installed $(CSRC)
	$(PY) csrc/ffi_build.py >/dev/null
	touch $@

demo: deps $(VENV)/.built
	$(PY) eg/demo.py

test: deps $(VENV)/.built
	$(PY) -m pytest -q

test-all: deps $(VENV)/.built
	$(PY) -m pytest -q -m ''

# Our own figures, then side by side with the other Python clients (the
# `bench` extra installs them), on a throwaway gearmand.
bench: deps $(VENV)/.built
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/benchmark.py
	$(PY) bench/benchmark.py --worker
	$(PY) bench/benchmark.py --memory
	$(PY) bench/vs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
	rm -f gearman_ev/_ffi.c gearman_ev/_ffi.o gearman_ev/_ffi*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
