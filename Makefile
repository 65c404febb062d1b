# The commands README.rst quotes. Each target installs what it needs:
# the system packages (apt, when missing) and a virtualenv with the package.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CSRC   := $(wildcard csrc/*.c csrc/*.h csrc/*.py)

.PHONY: all deps demo test test-all test-packaging test-pythons sdist wheel docs \
        fresh-debian-check bench clean fuzz sanitize valgrind

all: $(VENV)/.built

# System packages (apt), only those missing: see .ci/install-deps.
deps:
	@PYTHON=$(PYTHON) bash .ci/install-deps

$(VENV)/.installed: pyproject.toml setup.py | deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.extra-*
	touch $@

# An optional-dependencies extra of pyproject.toml (docs, packaging, bench),
# installed into .venv the first time a target needs it.
$(VENV)/.extra-%: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,$*]'
	touch $@

# Rebuild the extension in place whenever the C core changes.
$(VENV)/.built: $(VENV)/.installed $(CSRC)
	$(PY) csrc/ffi_build.py >/dev/null
	touch $@

demo: deps $(VENV)/.built
	$(PY) eg/demo.py

test: deps $(VENV)/.built
	$(PY) -m pytest -q

test-all: deps $(VENV)/.built $(VENV)/.extra-packaging
	$(PY) -m pytest -q -m ''

# tests/test_packaging.py (about 2 minutes, so outside `make test`): the sdist
# is complete and installs in a fresh venv; the wheel, with libev bundled,
# installs and runs where the system libev cannot be found.
test-packaging: deps $(VENV)/.built $(VENV)/.extra-packaging
	$(PY) -m pytest -q -m packaging tests/test_packaging.py

# The suite's fast subset under each Python 3.9-3.13 found, each in its own
# venv under .venvs/ (PYTHONS="3.9 3.13" to choose).
PYTHONS ?=
test-pythons: deps
	bash tools/test-pythons $(PYTHONS)

sdist: deps $(VENV)/.extra-packaging
	$(PY) -m build --sdist -o dist .

# A binary wheel with libev inside (auditwheel repair), into wheelhouse/.
wheel: deps $(VENV)/.extra-packaging
	$(PY) tools/build_wheel.py -o wheelhouse

# The documentation site (Sphinx) into docs/_build/html; every warning is an
# error, and every page is read again each time so none is hidden.
docs: deps $(VENV)/.built $(VENV)/.extra-docs
	$(PY) -m sphinx -E -a -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# README's set-up on a minimal Debian 12 (debootstrap, chroot): needs root.
fresh-debian-check:
	bash tools/fresh-debian-check

# Our own figures, then side by side with the other Python clients (the
# `bench` extra installs them) and, when perl and libev-perl are there, the
# Perl module EV::Gearman (clients, then one worker of each), on a throwaway
# gearmand.
bench: deps $(VENV)/.built $(VENV)/.extra-bench
	$(PY) bench/benchmark.py
	$(PY) bench/benchmark.py --worker
	$(PY) bench/benchmark.py --memory
	$(PY) bench/benchmark.py --deadlines
	$(PY) bench/vs.py
	$(PY) bench/vs.py --worker
	$(PY) bench/blocking.py

# --- C reliability checks (issue 7): by hand, not in CI ---

# libFuzzer on the decoder and the encoder/buffer (fuzz/Makefile; needs clang:
# apt-get install clang). Each target runs FUZZ_RUNS inputs (default 10
# million), or FUZZ_SECONDS seconds when that is set; `make -j2 fuzz` runs
# both at once.
fuzz:
	@command -v $${CLANG:-clang} >/dev/null || { echo "make fuzz needs clang (apt-get install clang)"; exit 1; }
	$(MAKE) -C fuzz run

# The C-facing tests against an AddressSanitizer+UBSan build of the extension,
# then the normal build again whatever the outcome. gcc's libasan must be the
# first library a process loads, so it is preloaded (into the test's Python
# subprocesses and gearmand too, where it only intercepts malloc);
# detect_leaks=0 because CPython does not free everything at exit;
# allocator_may_return_null=1 lets the tests see malloc fail (test_buf asks
# for 8 EiB); PYTHONMALLOC=malloc gives every Python buffer its own block, so
# that a C read past one is caught. --capture=sys leaves fd 2 alone, so a
# sanitizer report is printed before the abort (fd capture would swallow it).
SAN_TESTS := $(wildcard $(addprefix tests/,test_parse.py test_pack.py test_buf.py \
                 test_conn.py test_client.py test_protocol_errors.py test_session.py \
                 test_reliability.py test_interrupts.py))
sanitize: deps $(VENV)/.installed
	rm -f $(VENV)/.built
	GEARMAN_EV_SANITIZE=1 $(PY) csrc/ffi_build.py >/dev/null
	@rc=0; LD_PRELOAD="$$(gcc -print-file-name=libasan.so)" PYTHONMALLOC=malloc \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(PY) -m pytest -q -p no:cacheprovider --capture=sys $(SAN_TESTS) || rc=$$?; \
	echo "rebuilding the normal extension"; \
	$(PY) csrc/ffi_build.py >/dev/null && touch $(VENV)/.built; exit $$rc

# A bounded client+worker workload (bench/valgrind_workload.py) under
# valgrind's memcheck: fails on any memory error, and on any "definitely lost"
# block; fuzz/valgrind-python.supp holds the CPython/cffi suppressions, each
# explained. Needs valgrind (apt-get install valgrind).
VALGRIND_FLAGS ?= --error-exitcode=1 --leak-check=full --show-leak-kinds=definite \
                  --errors-for-leak-kinds=definite --num-callers=30 \
                  --suppressions=fuzz/valgrind-python.supp
valgrind: deps $(VENV)/.built
	@command -v valgrind >/dev/null || { echo "make valgrind needs valgrind (apt-get install valgrind)"; exit 1; }
	PYTHONMALLOC=malloc valgrind $(VALGRIND_FLAGS) $(PY) bench/valgrind_workload.py

clean:
	rm -rf $(VENV) .venvs build dist wheelhouse docs/_build *.egg-info .pytest_cache .hypothesis fuzz/build
	rm -f gearman_ev/_ffi.c gearman_ev/_ffi.o gearman_ev/_ffi*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
