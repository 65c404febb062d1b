"""Object lifecycle against the real gearmand (API.md 3, 8): counters and
buffer sizes, garbage collection (drain, socket closed, no on_disconnect,
cycles), re-entrancy from callbacks (dropping the last reference,
disconnect(), new work), exceptions in callbacks, and fork()."""
from __future__ import annotations

import gc
import logging
import os
import select
import weakref

import pytest

from gearman_ev import Gearman, ev
from tests.conftest import ask, run_until

REST = (16 * 1024, 16 * 1024)
MIB = 1024 * 1024


class Log:
    def __init__(self):
        self.calls = []

    def cb(self, name):
        return lambda result, err: self.calls.append((name, result, err))

    def of(self, name):
        return [c for c in self.calls if c[0] == name]


def counts(g):
    return g.pending_count, g.waiting_count, g.active_count


def echo(loop, g, data=b"x"):
    out = []
    g.echo(data, lambda r, e: out.append((r, e)))
    run_until(loop, lambda: out, what="echo reply")
    return out[0]


def wait_active(loop, g):
    run_until(loop, lambda: g.active_count == 1, what="JOB_CREATED")


def client_ids(loop, observer):
    """The client ids the server lists in ``workers`` (one per connection)."""
    out = []
    observer.server_workers(lambda r, e: out.append((r, e)))
    run_until(loop, lambda: out, what="workers listing")
    text, err = out[0]
    assert err is None
    return [line.split()[2] for line in text.splitlines() if line]


# ===== Counters and buffers =====

def test_counts_and_buffers(loop, gearmand, fname):
    log = Log()
    g = Gearman(loop=loop)
    assert counts(g) == (0, 0, 0) and g.buffer_sizes == REST
    at_connect = []
    g.on_connect = lambda: at_connect.append(counts(g))
    g.connect(gearmand.host, gearmand.port)
    g.echo(b"a", log.cb("echo"))
    assert counts(g) == (0, 1, 0)  # held until the connection is up
    run_until(loop, lambda: log.of("echo"), what="echo reply")
    assert at_connect == [(1, 0, 0)]  # sent when the connection came up
    assert counts(g) == (0, 0, 0) and g.buffer_sizes == REST
    g.submit_job(fname, b"w", log.cb("job"))  # no worker: stays active
    assert counts(g) == (1, 0, 0)
    run_until(loop, lambda: g.active_count, what="JOB_CREATED")
    assert counts(g) == (0, 0, 1)
    g.disconnect()
    assert log.of("job") == [("job", None, "disconnected")]
    assert counts(g) == (0, 0, 0) and g.buffer_sizes == REST


def test_big_echo_buffers_shrink_back(loop, gearmand):
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    assert echo(loop, g) == (b"x", None)
    payload = os.urandom(2 * MIB)
    out = []
    g.echo(payload, lambda r, e: out.append((r, e, g.buffer_sizes)))
    # Past FIRST_PIECE, the request went out at once: a buffer the kernel
    # drained is back at rest, else the rest of the request waits in it.
    assert g.buffer_sizes[1] == REST[1] or g.buffer_sizes[1] > MIB
    run_until(loop, lambda: out, timeout=10, what="2 MiB echo")
    result, err, during = out[0]
    assert (result == payload, err) == (True, None)
    assert during[0] > MIB  # the reply was held whole for the callback
    assert g.buffer_sizes == REST  # both drained, so both went back to 16 KiB
    assert echo(loop, g) == (b"x", None) and g.buffer_sizes == REST
    g.disconnect()


# ===== Garbage collection =====

def test_gc_drains_and_closes(loop, gearmand, fname):
    observer = Gearman(gearmand.host, gearmand.port, loop=loop)
    cid = "gc-" + fname[-40:]
    log = Log()
    events = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop, client_id=cid,
                on_disconnect=lambda: events.append("disconnect"),
                on_error=lambda e: events.append(("error", e)))
    g.submit_job(fname, b"w", log.cb("job"))  # no worker: stays active
    wait_active(loop, g)
    assert cid in client_ids(loop, observer)
    g.echo(b"p", log.cb("echo"))  # pending, not even written yet
    ref = weakref.ref(g)
    del g
    gc.collect()
    assert ref() is None
    assert sorted(log.calls) == [("echo", None, "disconnected"), ("job", None, "disconnected")]
    assert events == []  # neither on_disconnect nor on_error on GC (API.md 8)
    # The socket is closed: the server drops the connection from its listing.
    gone = []
    run_until(loop, lambda: gone.append(cid not in client_ids(loop, observer)) or gone[-1],
              what="the server to see the connection closed")
    assert len(log.calls) == 2
    observer.disconnect()


def _cyclic(loop, gearmand, fname, kind, fired):
    """A Gearman whose callbacks reference it; only a weakref leaves here."""
    g = Gearman(loop=loop, on_error=lambda e: g, on_disconnect=lambda: g)
    if kind == "unconfigured":
        return weakref.ref(g)
    g.on_connect = lambda: fired.append(("connect", g is not None))
    g.connect(gearmand.host, gearmand.port)
    run_until(loop, lambda: fired, what="connect")
    if kind == "pending":
        g.echo(b"p", lambda r, e: fired.append(("echo", e, g is not None)))
    elif kind == "worker":
        g.register_function(fname, lambda job: g and job.workload)
        g.work(on_idle=lambda: fired.append(("idle", g is not None)))
        run_until(loop, lambda: fired[-1][0] == "idle", what="the worker to sleep")
    return weakref.ref(g)


@pytest.mark.parametrize("kind", ["unconfigured", "connected", "pending", "worker"])
def test_gc_collects_cycles(loop, gearmand, fname, kind):
    fired = []
    ref = _cyclic(loop, gearmand, fname, kind, fired)
    gc.collect()
    assert ref() is None
    if kind == "pending":
        assert fired[1:] == [("echo", "disconnected", True)]
    # The loop holds nothing of it any more: running it does not revive it.
    loop.start(ev.EVRUN_NOWAIT)
    assert ref() is None


# ===== Re-entrancy from callbacks =====

def test_last_reference_dropped_in_own_callback(loop, gearmand, fname):
    log = Log()
    holder = {"g": Gearman(gearmand.host, gearmand.port, loop=loop)}
    ref = weakref.ref(holder["g"])
    holder["g"].submit_job(fname, b"w", log.cb("job"))  # no worker: stays active
    run_until(loop, lambda: ref().active_count == 1, what="JOB_CREATED")

    def first(result, err):
        log.calls.append(("first", result, err))
        del holder["g"]  # the program's last reference
    ref().echo(b"1", first)
    ref().echo(b"2", log.cb("second"))
    run_until(loop, lambda: log.of("first"), what="first echo")
    gc.collect()
    assert ref() is None
    assert log.of("first") == [("first", b"1", None)]
    # The second reply may have been read already; either way, exactly once.
    assert log.of("second") in ([("second", b"2", None)], [("second", None, "disconnected")])
    assert log.of("job") == [("job", None, "disconnected")]
    # The loop goes on.
    other = Gearman(gearmand.host, gearmand.port, loop=loop)
    assert echo(loop, other) == (b"x", None)
    assert len(log.calls) == 3
    other.disconnect()


def test_disconnect_inside_callback(loop, gearmand, fname):
    log = Log()
    events = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop,
                on_disconnect=lambda: events.append("disconnect"),
                on_error=lambda e: events.append(("error", e)))
    g.submit_job(fname, b"w", log.cb("job"))
    run_until(loop, lambda: g.active_count == 1, what="JOB_CREATED")

    def first(result, err):
        log.calls.append(("first", result, err))
        g.disconnect()
    g.echo(b"1", first)
    g.echo(b"2", log.cb("second"))
    g.echo(b"3", log.cb("third"))
    run_until(loop, lambda: len(log.calls) == 4, what="every callback")
    assert log.calls[0] == ("first", b"1", None)
    assert sorted(log.calls[1:]) == [("job", None, "disconnected"),
                                     ("second", None, "disconnected"),
                                     ("third", None, "disconnected")]
    assert events == ["disconnect"]
    assert not g.is_connected and counts(g) == (0, 0, 0)
    # The replies already read are not delivered late; the object is reusable.
    g.connect(gearmand.host, gearmand.port)
    assert echo(loop, g) == (b"x", None)
    assert len(log.calls) == 4 and events == ["disconnect"]
    g.disconnect()


def test_more_work_from_inside_callbacks(loop, gearmand, fname):
    worker = Gearman(gearmand.host, gearmand.port, loop=loop)
    worker.register_function(fname, lambda job: job.workload[::-1])
    worker.work()
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    out = []

    def chain(i):
        def cb(result, err):
            out.append((result, err))
            if i < 5:
                g.echo(b"%d" % (i + 1), chain(i + 1))
            else:  # a job, and from its callback a background job
                g.submit_job(fname, b"abc", job_done)
        return cb

    def job_done(result, err):
        out.append((result, err))
        g.submit_job_bg(fname, b"bg", lambda h, e: out.append((e, h.startswith("H:"))))
    g.echo(b"1", chain(1))
    run_until(loop, lambda: len(out) == 7, what="the chain")
    assert out == [(b"%d" % i, None) for i in range(1, 6)] + [(b"cba", None), (None, True)]
    g.disconnect()
    worker.disconnect()


# ===== Exceptions in user callbacks =====

class Oops(Exception):
    pass


def oops(*args):
    raise Oops("raised by a user callback")


@pytest.mark.parametrize("where", ["reply", "drain", "on_connect", "on_disconnect"])
def test_exceptions_in_callbacks_are_logged(loop, gearmand, where, caplog):
    caplog.set_level(logging.ERROR, logger="gearman_ev")
    log = Log()
    g = Gearman(gearmand.host, gearmand.port, loop=loop,
                on_connect=oops if where == "on_connect" else None,
                on_disconnect=oops if where == "on_disconnect" else None)
    g.echo(b"1", oops if where in ("reply", "drain") else log.cb("first"))
    g.echo(b"2", log.cb("second"))
    if where == "drain":
        g.disconnect()  # every pending callback runs, even after one raised
        assert log.calls == [("second", None, "disconnected")]
    else:
        run_until(loop, lambda: log.of("second"), what="the second echo")
        assert log.of("second") == [("second", b"2", None)]
        if where == "on_disconnect":
            g.disconnect()
    raised = [r for r in caplog.records if r.exc_info and r.exc_info[0] is Oops]
    assert len(raised) == 1 and raised[0].name == "gearman_ev"
    if g.is_connected:  # the connection survives its user's mistakes
        assert echo(loop, g, b"3") == (b"3", None)
        g.disconnect()


# ===== fork =====

@pytest.mark.parametrize("child_loop", ["fresh", "default"])
def test_fork_child_uses_its_own_connection(loop, gearmand, child_loop):
    # The parent's connection is on the test's own loop; the child must not
    # run that loop (its watchers would read the parent's socket).
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    assert echo(loop, g, b"before") == (b"before", None)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            os.close(r)
            mine = ev.Loop() if child_loop == "fresh" else ev.default_loop()
            got = []
            c = Gearman(gearmand.host, gearmand.port, loop=mine)

            def done(result, err):
                got.append((result, err))
                mine.stop()
            c.echo(b"child %d" % os.getpid(), done)
            guard = mine.timer(5, 0, lambda w_, r_: mine.stop())
            guard.start()
            mine.start()
            os.write(w, repr(got).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    try:
        # The parent keeps working while the child runs.
        for i in range(5):
            assert echo(loop, g, b"parent %d" % i) == (b"parent %d" % i, None)
        ready, _, _ = select.select([r], [], [], 10)
        assert ready, "no report from the child"
        report = os.read(r, 4096).decode()
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report == repr([(b"child %d" % pid, None)])
    assert echo(loop, g, b"after") == (b"after", None)
    g.disconnect()


def test_priority_applies_to_every_watcher_and_can_change_while_connected(loop, gearmand):
    g = Gearman(gearmand.host, gearmand.port, loop=loop, priority=2)
    assert g.priority == 2
    assert {w.priority for w in g._watchers()} == {2}
    assert ask(loop, g.echo, b"a") == (b"a", None)
    g.priority = -1  # active watchers are restarted at the new priority
    assert {w.priority for w in g._watchers()} == {-1}
    assert ask(loop, g.echo, b"b") == (b"b", None)
    g.disconnect()


@pytest.mark.parametrize("bad, exc", [(3, ValueError), (-3, ValueError), ("1", TypeError),
                                      (True, TypeError)])
def test_priority_out_of_range_is_refused(loop, bad, exc):
    with pytest.raises(exc):
        Gearman(loop=loop, priority=bad)
    g = Gearman(loop=loop)
    with pytest.raises(exc):
        g.priority = bad
    assert g.priority == 0


# ===== A loop and its Gearman in one garbage cycle =====

def test_gc_cycle_with_the_loop_still_drains(gearmand):
    # The loop's timer holds a closure that holds the Gearman: loop, watchers
    # and Gearman become garbage together. gc finalizes the loop first (it is
    # older), so the Gearman's finalizer meets a destroyed loop; stopping its
    # watchers there must not stop it from draining its callbacks (API.md 8).
    fired = []

    def make_cycle():
        lp = ev.Loop()
        g = Gearman(gearmand.host, gearmand.port, loop=lp)
        assert echo(lp, g) == (b"x", None)
        g.echo(b"p", lambda r, e: fired.append(e))  # pending when collected
        lp.timer(10, 0, lambda w, r: g).start()
        return weakref.ref(lp), weakref.ref(g)

    gc.collect()
    gc.disable()  # objects stay in creation order until the collection below
    try:
        refs = make_cycle()
        assert all(ref() is not None for ref in refs) and fired == []
        gc.collect()
    finally:
        gc.enable()
    assert [ref() for ref in refs] == [None, None]
    assert fired == ["disconnected"]
