"""Leak runs (issue 7; STYLE.md 5): over a bounded workload against the real
gearmand, Python objects (gc), traced Python memory (tracemalloc: in total and
in gearman_ev's own lines, from a snapshot per round), open file descriptors
and RSS stay flat. Two warm-up rounds first (caches fill, buffers and free
lists reach their size); then each metric is sampled after every round and its
growth per round, divided by the jobs (or objects) per round, must stay under a
per-job budget, twice over: the least-squares slope, and the median step
between rounds (which a one-off container resize cannot move, where a leak
moves every step). The fast variants run in the default suite; the ``slow``
ones (``make test-all``) run 100,000 jobs across the job kinds and 10,000
objects per object kind."""
from __future__ import annotations

import array
import collections
import gc
import logging
import os
import statistics
import tracemalloc
import weakref

import pytest

from gearman_ev import Gearman
from tests.conftest import round_trip, run_until

KINDS = ["complete", "fail", "timeout", "background", "disconnect", "reconnect"]
FAST_JOBS, SLOW_JOBS = 5_000, 100_000         # in total across KINDS
FAST_OBJECTS, SLOW_OBJECTS = 1_000, 10_000    # per object kind
SIZES = [pytest.param("fast", id="fast"),
         pytest.param("slow", id="slow", marks=pytest.mark.slow)]
ROUNDS = {"fast": 8, "slow": 22}
WARM_UP = 2                                   # rounds not measured
BATCH = 50                                    # connected objects alive at once

# Budgets per job (or object): (slope, median step), by run size. A real leak
# is at least one object, or a 32-byte block, per job; a leaked connection
# buffer is 16 KiB. One set or dict resize (up to tens of KiB, once) moves the
# slope of a fast run (~100 jobs a round) by up to ~20 B/job, hence the looser
# slopes; the median steps are tight everywhere. RSS moves in pages and malloc
# takes a while to settle: fast runs bound it coarsely, slow runs tightly.
BUDGET = {
    "objects": {"fast": (0.02, 0.02), "slow": (0.02, 0.02)},
    "traced": {"fast": (32.0, 2.0), "slow": (8.0, 2.0)},      # bytes
    "ours": {"fast": (32.0, 2.0), "slow": (8.0, 2.0)},        # bytes, gearman_ev lines
    "rss": {"fast": (4096.0, 1024.0), "slow": (64.0, 64.0)},  # bytes
}
FIELDS = ("objects", "traced", "ours", "fds", "rss")
OURS = [tracemalloc.Filter(True, "*gearman_ev/*")]
PAGE = os.sysconf("SC_PAGE_SIZE")


def sample(into, i):
    """Store round i's figures in place: the harness itself must not grow."""
    gc.collect()
    k = len(FIELDS) * i
    into[k + 2] = sum(s.size for s in tracemalloc.take_snapshot().filter_traces(OURS)
                      .statistics("filename"))
    with open("/proc/self/statm") as f:
        into[k + 4] = int(f.read().split()[1]) * PAGE
    into[k + 3] = len(os.listdir("/proc/self/fd"))
    into[k + 1] = tracemalloc.get_traced_memory()[0]
    into[k] = len(gc.get_objects())


def slope(ys):
    """Least-squares growth per round."""
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((x - mx) * (y - my) for x, y in enumerate(ys)) / \
        sum((x - mx) ** 2 for x in range(n))


def measure(size, per_round, one_round, what):
    """Run ``one_round(i)`` for ROUNDS[size] rounds under tracemalloc, and
    check every metric's growth per job after the warm-up."""
    rounds = ROUNDS[size]
    samples = array.array("q", bytes(8 * len(FIELDS) * rounds))
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        for i in range(WARM_UP):
            one_round(i)
        warm = tracemalloc.take_snapshot().filter_traces(OURS)
        for _ in range(4):
            # A snapshot is nested tuples; each collection untracks one level
            # of them, which would show as a drop in the first samples.
            gc.collect()
        for i in range(WARM_UP, rounds):
            one_round(i)
            sample(samples, i)
        # Which of the library's lines grew, for the failure message.
        grew = tracemalloc.take_snapshot().filter_traces(OURS).compare_to(warm, "lineno")
    finally:
        if started:
            tracemalloc.stop()
    series = {f: samples[len(FIELDS) * WARM_UP + k::len(FIELDS)] for k, f in enumerate(FIELDS)}
    growth = {f: (slope(series[f]) / per_round,
                  statistics.median(b - a for a, b in zip(series[f], series[f][1:])) / per_round)
              for f in BUDGET}
    report = f"{what}: " + ", ".join(
        f"{f} {g[0]:+.3f} (median step {g[1]:+.3f})" for f, g in growth.items()) + \
        f" per unit; fds {sorted(set(series['fds']))}"
    print(report)
    lines = "\n".join(str(d) for d in grew[:5] if d.size_diff > 0)
    for f, (fit, step) in growth.items():
        max_fit, max_step = BUDGET[f][size]
        assert fit < max_fit and step < max_step, f"{f} grows: {report}\n{lines}"
    assert len(set(series["fds"])) == 1, report  # not one descriptor more
    return growth


@pytest.fixture
def quiet(caplog):
    # A failing job is logged with its traceback; pytest keeps every record
    # for the report, which would grow with the job count and look like ours.
    caplog.set_level(logging.CRITICAL + 1, logger="gearman_ev")


class Tally:
    """Outcomes counted by (result, err): bounded whatever the job count."""

    def __init__(self):
        self.counts = collections.Counter()
        self.n = 0

    def cb(self, result, err):
        self.counts[(result, err)] += 1
        self.n += 1

    def reset(self):
        self.counts.clear()
        self.n = 0


# ===== Jobs of every kind =====

def kind_complete(loop, new, fname, tally, **_):
    worker = new()
    worker.register_function(fname, lambda job: job.workload)
    worker.work()
    client = new()

    def one_round(n):
        for _ in range(n):
            client.submit_job(fname, b"job", tally.cb)
        run_until(loop, lambda: tally.n == n, timeout=60, what=f"{n} results")
        return {(b"job", None): n}
    return one_round


def kind_fail(loop, new, fname, tally, **_):
    def boom(job):
        raise RuntimeError("worker raises")
    worker = new()
    worker.register_function(fname, boom)
    worker.work()
    client = new()

    def one_round(n):
        for _ in range(n):
            client.submit_job(fname, b"job", tally.cb)
        run_until(loop, lambda: tally.n == n, timeout=60, what=f"{n} failures")
        return {(None, "job failed"): n}
    return one_round


def kind_timeout(loop, new, fname, tally, **_):
    client = new()  # no worker: each job stays queued at the server

    def one_round(n):
        for i in range(n):
            # Some time out before their JOB_CREATED arrives, most after it.
            client.submit_job(fname, b"job", tally.cb, timeout=1e-6 if i % 4 == 0 else 0.02)
        run_until(loop, lambda: tally.n == n, timeout=60, what=f"{n} job timeouts")
        assert client.active_count == 0
        return {(None, "job timeout"): n}
    return one_round


def kind_background(loop, new, fname, tally, **_):
    ran = [0]

    def run(job):
        ran[0] += 1
    worker = new()
    worker.register_function(fname, run)
    worker.work()
    client = new()

    def created(handle, err):  # every handle is new: count their type only
        tally.cb(type(handle), err)

    def one_round(n):
        ran[0] = 0
        for _ in range(n):
            client.submit_job_bg(fname, b"job", created)
        run_until(loop, lambda: tally.n == n and ran[0] == n, timeout=60,
                  what=f"{n} background jobs created and run")
        return {(str, None): n}
    return one_round


def kind_disconnect(loop, new, fname, tally, gearmand, **_):
    client = new(connect=False)

    def one_round(n):
        client.connect(gearmand.host, gearmand.port)
        half = n // 2
        for _ in range(half):  # no worker: these become active
            client.submit_job(fname, b"job", tally.cb)
        run_until(loop, lambda: client.active_count == half, timeout=60, what="JOB_CREATED")
        for _ in range(n - half - 1):  # and these stay pending
            client.submit_job(fname, b"job", tally.cb)
        client.echo(b"x", tally.cb)
        client.disconnect()
        assert tally.n == n  # drained at once, inside disconnect()
        return {(None, "disconnected"): n}
    return one_round


def kind_reconnect(loop, fname, tally, request, **_):
    server = request.getfixturevalue("own_gearmand")
    errors = collections.Counter()

    def make():
        g = Gearman(server.host, server.port, loop=loop, reconnect=True,
                    reconnect_delay=0.01, on_error=lambda e: errors.update((e,)))
        request.addfinalizer(g.disconnect)
        return g
    worker = make()
    worker.register_function(fname, lambda job: job.workload)
    worker.work()
    client = make()

    def one_round(n):
        for _ in range(n - 1):
            client.submit_job(fname, b"job", tally.cb)
        run_until(loop, lambda: tally.n >= (n - 1) // 2, timeout=60, what="half the results")
        server.kill()  # the rest is in flight
        run_until(loop, lambda: tally.n == n - 1, timeout=10, what="every callback")
        server.start()
        # One more job: back only when both have reconnected and the worker
        # resumed grabbing by itself.
        client.submit_job(fname, b"job", tally.cb)
        run_until(loop, lambda: tally.n == n, timeout=10, what="a job after the restart")
    return one_round  # no fixed outcome: results and "disconnected" vary


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_jobs_leave_nothing_behind(kind, size, loop, new, fname, gearmand, request, quiet):
    rounds = ROUNDS[size]
    n = (FAST_JOBS if size == "fast" else SLOW_JOBS) // len(KINDS) // rounds
    tally = Tally()
    one_round = globals()[f"kind_{kind}"](loop=loop, new=new, fname=fname, tally=tally,
                                          gearmand=gearmand, request=request)

    def checked_round(i):
        tally.reset()
        expected = one_round(n)
        if expected is not None:
            assert dict(tally.counts) == expected
        else:
            assert set(tally.counts) <= {(b"job", None), (None, "disconnected")}
            assert tally.counts[(b"job", None)] >= 1
    measure(size, n, checked_round, f"{kind} x{n * rounds}")


# ===== Gearman objects made and dropped =====

@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("how", ["unconfigured", "connected-disconnected", "connected-dropped"])
def test_objects_leave_nothing_behind(how, size, loop, gearmand, quiet):
    rounds = ROUNDS[size]
    n = -(-(FAST_OBJECTS if size == "fast" else SLOW_OBJECTS) // rounds)  # per round
    alive = weakref.WeakSet()
    ups = [0]

    def up():
        ups[0] += 1

    def one_batch(size):
        # A function of its own, so no local name keeps an object alive.
        ups[0] = 0
        batch = [Gearman(gearmand.host, gearmand.port, loop=loop, on_connect=up)
                 for _ in range(size)]
        alive.update(batch)
        run_until(loop, lambda: ups[0] == size, what=f"{size} connects")
        round_trip(loop, batch[-1])
        if how == "connected-disconnected":
            for g in batch:
                g.disconnect()
        # else dropped: collected, its socket closed by the finalizer

    def one_round(i):
        if how == "unconfigured":
            for _ in range(n):
                alive.add(Gearman(loop=loop))
        else:
            for start in range(0, n, BATCH):
                one_batch(min(BATCH, n - start))
        gc.collect()
        assert len(alive) == 0, f"{len(alive)} Gearman objects still alive"
    measure(size, n, one_round, f"{how} x{n * rounds}")
