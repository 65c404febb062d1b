"""Shared fixtures: the real gearmand, a fresh loop per test, bounded waits."""
from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from gearman_ev import Gearman, ev
from gearman_ev._ffi import ffi, lib

pytest_plugins = ["tests.fix_gearmand", "tests.fix_fakeserver", "tests.fix_tls"]


@pytest.fixture
def loop():
    """A fresh loop per test, so a test's leftovers cannot leak into the next."""
    return ev.Loop()


def stop_server(server, timeout=10.0):
    """SIGSTOP a server (a LocalGearmand) and wait until it is stopped: it
    takes requests and answers none. The signal is asynchronous for a
    threaded process (each thread stops when it next runs), so without the
    wait a request sent at once may still be answered. SIGCONT resumes it."""
    server.proc.send_signal(signal.SIGSTOP)
    tasks = f"/proc/{server.proc.pid}/task"
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for tid in os.listdir(tasks):
            with open(f"{tasks}/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if all(state in "tT" for state in states):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"gearmand's threads did not stop within {timeout}s")
        time.sleep(0.005)


def run_until(loop, predicate, timeout=5.0, what=None):
    """Run ``loop`` until ``predicate()`` is true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    guard = loop.timer(0.01, 0.01, lambda w, r: None)  # wakes the loop to re-check
    guard.start()
    try:
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
            loop.start(ev.EVRUN_ONCE)
    finally:
        guard.stop()


@pytest.fixture
def new(loop, gearmand):
    """Make Gearman objects on the session server (or unconfigured, with
    connect=False); every one is disconnected at teardown."""
    made = []

    def make(connect=True, **kw):
        g = Gearman(gearmand.host, gearmand.port, loop=loop, **kw) if connect \
            else Gearman(loop=loop, **kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.disconnect()


def ask(loop, method, *args, timeout=5.0, **kw):
    """Call ``method(*args, cb, **kw)`` and wait for its one ``(result, err)``."""
    out = []
    method(*args, lambda result, err: out.append((result, err)), **kw)
    run_until(loop, lambda: out, timeout, what=f"reply to {method.__name__}")
    return out[0]


def round_trip(loop, g):
    """An ECHO on g's connection: whatever the server sent g before it has
    been handled (gearmand keeps per-connection order)."""
    assert ask(loop, g.echo, b"sync") == (b"sync", None)


@pytest.fixture
def fname(request):
    """A function name of this test's own (EV::Gearman uses $$ the same way)."""
    return f"t_{request.node.name}_{os.getpid()}"[:120].replace("[", "_").replace("]", "_")


@contextlib.contextmanager
def new_buf():
    """A gm_buf for the C-core tests, freed on exit."""
    b = ffi.new("gm_buf_t *")
    assert lib.gm_buf_init(b) == lib.GM_OK
    try:
        yield b
    finally:
        lib.gm_buf_free(b)


def contents(b):
    """The bytes a gm_buf holds."""
    return ffi.buffer(b.data + b.start, b.end - b.start)[:]
