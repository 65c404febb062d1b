"""gearman_ev.testing (API.md 14): LocalGearmand, and the pytest plugin as a
user gets it: a pytest run in a subprocess, in a directory of its own, that
finds the ``gearmand`` fixture through the package's ``pytest11`` entry point.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gearman_ev.testing import (MISSING_MESSAGE, SBIN_CANDIDATES, GearmandMissing,
                                LocalGearmand, find_gearmand)

ROOT = Path(__file__).resolve().parent.parent

USES_THE_FIXTURE = """\
import socket

import pytest

stopped = []


def refused(server):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=5)


def test_address_restart_stop(gearmand):
    assert gearmand.address == f"{gearmand.host}:{gearmand.port}"
    assert gearmand.host == "127.0.0.1"
    port = gearmand.port
    socket.create_connection((gearmand.host, port), timeout=5).close()
    gearmand.restart()
    assert gearmand.port == port
    socket.create_connection((gearmand.host, port), timeout=5).close()
    gearmand.stop()
    refused(gearmand)


def test_one_server_per_test(gearmand):
    stopped.append(gearmand.proc)
    assert gearmand.proc.poll() is None


def test_stopped_after_its_test(gearmand):
    # the previous test's server is gone; this one is a new one
    assert stopped[0].poll() is not None
    assert gearmand.proc is not stopped[0]
"""

SHARED_FIXTURE = """\
from gearman_ev.testing import gearmand_fixture

shared = gearmand_fixture(scope="module")
must_have = gearmand_fixture(missing="fail")
seen = []


def test_first(shared):
    seen.append(shared.proc)


def test_second(shared):
    assert seen == [shared.proc]  # one server for the module


def test_must_have(must_have):
    assert must_have.proc.poll() is None
"""


def pytest_in(tmp_path, files, *args, env_changes=None):
    """Run pytest in a fresh directory holding ``files``; (exit code, output)."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = dict(os.environ)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)  # the entry point must load
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("GEARMAND", None)
    env.update(env_changes or {})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-rs", "-q", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def no_gearmand(tmp_path):
    """An environment where gearmand cannot be found: PATH without it (just
    this Python's directory) and GEARMAND naming nothing, since the lookup
    also tries /usr/sbin, which PATH cannot hide."""
    return {"PATH": os.path.dirname(sys.executable),
            "GEARMAND": str(tmp_path / "no-such-gearmand")}


def test_plugin_fixture_through_the_entry_point(tmp_path):
    code, out = pytest_in(tmp_path, {"test_user.py": USES_THE_FIXTURE})
    assert code == 0, out
    assert re.search(r"\b3 passed\b", out), out


def test_plugin_skips_naming_the_package(tmp_path):
    code, out = pytest_in(tmp_path, {"test_user.py": USES_THE_FIXTURE},
                          env_changes=no_gearmand(tmp_path))
    assert code == 0, out  # skipped, not failed
    assert re.search(r"\b3 skipped\b", out), out
    assert "SKIPPED" in out and "install the Debian package gearman-job-server" in out, out


def test_plugin_with_path_hiding_gearmand(tmp_path):
    # With only PATH hiding it, the lookup still finds a Debian gearmand in
    # /usr/sbin (not on a user's PATH there); elsewhere the tests skip.
    env = {"PATH": os.path.dirname(sys.executable)}
    code, out = pytest_in(tmp_path, {"test_user.py": USES_THE_FIXTURE}, env_changes=env)
    assert code == 0, out
    if any(os.access(path, os.X_OK) for path in SBIN_CANDIDATES):
        assert re.search(r"\b3 passed\b", out), out
    else:
        assert re.search(r"\b3 skipped\b", out) and "gearman-job-server" in out, out


def test_fixture_factory_scope_and_missing_fail(tmp_path):
    code, out = pytest_in(tmp_path, {"test_shared.py": SHARED_FIXTURE})
    assert code == 0, out
    assert re.search(r"\b3 passed\b", out), out
    # missing="fail": a CI that must not go green without gearmand.
    code, out = pytest_in(tmp_path, {"test_shared.py": SHARED_FIXTURE},
                          env_changes=no_gearmand(tmp_path))
    assert code == 1, out
    assert re.search(r"\b1 error\b", out) and re.search(r"\b2 skipped\b", out), out
    assert "gearman-job-server" in out


def test_plugin_can_be_disabled(tmp_path):
    code, out = pytest_in(tmp_path, {"test_user.py": USES_THE_FIXTURE},
                          "-p", "no:gearman_ev")
    assert code == 1, out
    assert "fixture 'gearmand' not found" in out, out


def test_readme_example_runs_as_written(tmp_path):
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    section = text.split("Testing your workers\n", 1)[1]
    block = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section).group(1)
    code = re.sub(r"^    ", "", block, flags=re.M)
    assert "def test_" in code and "(gearmand)" in code
    rc, out = pytest_in(tmp_path, {"test_reverse.py": code})
    assert rc == 0, out
    assert re.search(r"\b1 passed\b", out), out


def test_local_gearmand_outside_pytest():
    with LocalGearmand() as server:
        assert server.running
        assert server.address == f"127.0.0.1:{server.port}"
        port = server.port
        server.stop()
        assert not server.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, port), timeout=5)
        server.start()  # back on the same port
        assert server.port == port
        socket.create_connection((server.host, port), timeout=5).close()
        server.restart()
        assert server.port == port and server.running
    assert not server.running


def test_ipv6_address_is_bracketed():
    assert LocalGearmand(port=4730, host="::1").address == "[::1]:4730"


def test_find_gearmand_refuses_a_bad_gearmand_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("GEARMAND", str(tmp_path))  # a directory, not a program
    with pytest.raises(GearmandMissing) as info:
        find_gearmand()
    assert str(info.value) == f"GEARMAND={tmp_path} is not an executable file; {MISSING_MESSAGE}"
    assert "gearman-job-server" in MISSING_MESSAGE


def test_private_name_still_imports():
    from gearman_ev import _gearmand
    assert _gearmand.LocalGearmand is LocalGearmand
