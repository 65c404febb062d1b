"""mypy --strict on the package and on tests/typing_program.py, a user
program over the whole public API (issue 16).

The program's ``# type: ignore[code]`` lines are mistakes the types must
catch: --strict reports an ignore that is not needed (warn_unused_ignores),
so a signature that goes loose fails here too.

What must stay true: without mypy this skips on a developer's machine only;
with CI set it fails, since a skipped check is no green (mypy is in the
``test`` extra).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = os.path.join("tests", "typing_program.py")


@pytest.fixture(scope="module")
def mypy(tmp_path_factory):
    """Run ``mypy --strict`` on the given paths from the source tree, with a
    cache shared by this module's tests; returns (exit status, output)."""
    if importlib.util.find_spec("mypy") is None:
        message = "mypy is not installed (pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cache = tmp_path_factory.mktemp("mypy_cache")

    def run(*paths):
        # From ROOT, so that `import gearman_ev` is this tree's package
        # whatever is installed (an editable install is invisible to mypy).
        proc = subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--warn-unused-ignores",
             "--cache-dir", str(cache), "--no-color-output", "--no-error-summary", *paths],
            cwd=ROOT, capture_output=True, text=True, timeout=600)
        return proc.returncode, proc.stdout + proc.stderr
    return run


def test_package_passes_mypy_strict(mypy):
    status, output = mypy("gearman_ev")
    assert (status, output) == (0, "")


def test_user_program_passes_mypy_strict(mypy):
    status, output = mypy(PROGRAM)
    assert (status, output) == (0, "")

