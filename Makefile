# The commands README.rst quotes. Each target installs what it needs:
# the system packages (apt, when missing) and a virtualenv with the package.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CSRC   := $(wildcard csrc/*.c csrc/*.h csrc/*.py)

.PHONY: all deps demo test test-all bench clean fuzz sanitize valgrind

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
                 test_conn.py test_client.py test_protocol_errors.py))
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
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis fuzz/build
	rm -f gearman_ev/_ffi.c gearman_ev/_ffi.o gearman_ev/_ffi*.so
	find . -name __pycache__ -prune -exec rm -rf {} +
