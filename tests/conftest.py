"""Shared fixtures: the real gearmand, a fresh loop per test, bounded waits."""
from __future__ import annotations

import os
import time

import pytest

from gearman_ev import ev

pytest_plugins = ["tests.fix_gearmand"]


@pytest.fixture
def loop():
    """A fresh loop per test, so a test's leftovers cannot leak into the next."""
    return ev.Loop()


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
def fname(request):
    """A function name of this test's own (EV::Gearman uses $$ the same way)."""
    return f"t_{request.node.name}_{os.getpid()}"[:120].replace("[", "_").replace("]", "_")
