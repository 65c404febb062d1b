"""Unix-socket connections. gearmand listens on TCP only, so socat bridges a
Unix socket to the test server (PROTOCOL.md 1)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from gearman_ev import Gearman, GearmanError
from tests.conftest import run_until


@pytest.fixture
def unix_bridge(gearmand, tmp_path):
    socat = shutil.which("socat")
    assert socat, "socat is missing: run .ci/install-deps"
    path = str(tmp_path / "gearmand.sock")
    proc = subprocess.Popen([socat, f"UNIX-LISTEN:{path},fork",
                             f"TCP:{gearmand.host}:{gearmand.port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 5
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "socat did not create its socket"
        time.sleep(0.01)
    yield path
    proc.terminate()
    proc.wait(timeout=5)


def test_echo_and_admin_over_a_unix_socket(loop, unix_bridge):
    got = []
    g = Gearman(path=unix_bridge, loop=loop)
    g.echo(b"over\0unix", lambda r, e: got.append((r, e)))
    g.server_version(lambda r, e: got.append((r, e)))
    run_until(loop, lambda: len(got) == 2)
    assert got[0] == (b"over\0unix", None)
    assert got[1][0].startswith("OK ")
    g.disconnect()


def test_connect_unix_after_construction(loop, unix_bridge):
    connected = []
    g = Gearman(loop=loop, on_connect=lambda: connected.append(True))
    g.connect_unix(unix_bridge)
    run_until(loop, lambda: connected)
    with pytest.raises(GearmanError, match="already connected"):
        g.connect_unix(unix_bridge)
    g.disconnect()


def test_path_too_long_goes_to_on_error(loop, tmp_path):
    errors, replies = [], []
    g = Gearman(loop=loop, on_error=errors.append)
    g.connect_unix("/tmp/" + "x" * 200)
    # Reported from the loop, like every connect outcome; what was queued
    # meanwhile is drained.
    assert errors == []
    g.echo(b"x", lambda r, e: replies.append(e))
    run_until(loop, lambda: errors and replies)
    assert errors == ["unix socket path too long"]
    assert replies == ["disconnected"]
    with pytest.raises(GearmanError, match="not connected"):
        g.echo(b"x")


def test_missing_socket_reports_connect_error(loop, tmp_path):
    errors = []
    g = Gearman(path=str(tmp_path / "absent.sock"), loop=loop, on_error=errors.append)
    assert errors == [] and g.is_connected
    run_until(loop, lambda: errors)
    assert errors == ["connect: No such file or directory"]


@pytest.mark.parametrize("bad, exc", [(b"", ValueError), (b"a\0b", ValueError), (42, TypeError)])
def test_bad_paths_are_refused_before_io(loop, bad, exc):
    with pytest.raises(exc):
        Gearman(loop=loop).connect_unix(bad)


def test_on_connect_never_runs_inside_the_constructor(loop, unix_bridge):
    # A Unix socket connects at once; on_connect must still come from the
    # loop, when the caller already holds the object.
    seen = []
    holder = {}
    holder["g"] = Gearman(path=unix_bridge, loop=loop,
                          on_connect=lambda: seen.append(holder.get("g")))
    assert seen == []
    run_until(loop, lambda: seen)
    assert seen == [holder["g"]]
    holder["g"].disconnect()
