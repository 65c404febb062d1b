"""The build's libev lookup: a machine without libev gets a message that
names the package to install, not a compiler error."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_libev_names_the_package(tmp_path):
    # An empty prefix stands in for a machine without libev.
    env = dict(os.environ, GEARMAN_EV_LIBEV_PREFIX=str(tmp_path))
    code = "import runpy; runpy.run_path('csrc/ffi_build.py', run_name='not_main')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "libev-dev" in proc.stderr
    assert "libev-devel" in proc.stderr
    assert "brew install libev" in proc.stderr


def test_libev_found_under_a_named_prefix():
    env = dict(os.environ, GEARMAN_EV_LIBEV_PREFIX="/usr")
    code = ("import runpy; ns = runpy.run_path('csrc/ffi_build.py', run_name='not_main');"
            "print(ns['include_dirs'], ns['library_dirs'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # /usr/include is the compiler's default: nothing extra is passed.
    assert proc.stdout.strip() == "[] []"
