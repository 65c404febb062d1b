"""gearman_ev.ev: the libev binding, checked against API.md sections 1 and 9
(threads: Async, call_soon_threadsafe, the running thread; Ctrl-C; a loop
destroyed under a finalizer).

Every wait is bounded: run_until(), a guard timer, or (where a guard timer
would itself keep the loop alive) a SIGALRM that stops the loop; threads are
joined with a timeout. Timing is asserted only as generous bounds ("did not
fire early", "not held up until a 30 s timer"). Real SIGINTs go to child
processes, never to pytest itself, except where the test installs Python's
default handler around them (sigint_in).
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import weakref

import pytest

from gearman_ev import ev
from tests.conftest import run_until


def noop(w, revents):
    pass


# ===== Helpers =====

@contextlib.contextmanager
def guard(loop, seconds=5.0):
    """A timer that breaks the loop if the test's own exit never comes."""
    fired = []

    def on_guard(w, revents):
        fired.append(True)
        loop.stop(ev.EVBREAK_ALL)

    g = loop.timer(seconds, 0, on_guard)
    g.start()
    try:
        yield fired
    finally:
        g.stop()
    assert not fired, f"guard: loop still running after {seconds}s"


@contextlib.contextmanager
def alarm_guard(loop, seconds=5.0):
    """Like guard(), without an active watcher of its own: a SIGALRM whose
    handler stops the loop (it runs through the loop's wakeup fd)."""
    fired = []

    def on_alarm(signum, frame):
        fired.append(signum)
        loop.stop(ev.EVBREAK_ALL)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not fired, f"alarm guard: loop still running after {seconds}s"


@pytest.fixture
def pair():
    """A connected socketpair, closed after the test."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def reap(pid, timeout=10.0):
    """waitpid with a deadline; SIGKILL a child that overstays."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def read_child(rfd, pid, timeout=10.0):
    """Everything the child writes to rfd until it exits; bounded."""
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rfd], [], [], left)[0]:
                break
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(rfd)
    return b"".join(chunks), reap(pid)


def in_child(body, timeout=10.0):
    """Run body() in a forked child; return (bytes it returned, wait status).

    The child always leaves through os._exit, so pytest never runs twice."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            try:
                out = body()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                out = b"child raised " + repr(exc).encode()
            os.write(wfd, out)
        finally:
            os._exit(0)
    os.close(wfd)
    return read_child(rfd, pid, timeout)


def use_loop(loop):
    """In a child: drive ``loop`` with a timer and an Io on a fresh pipe."""
    rfd, wfd = os.pipe()
    got = []

    def on_read(w, revents):
        got.append(os.read(w.fd, 1))
        w.stop()

    loop.io(rfd, ev.EV_READ, on_read).start()
    loop.timer(0.01, 0, lambda w, r: os.write(wfd, b"x")).start()
    run_until(loop, lambda: got, timeout=5, what="timer + io in the child")
    return b"ok" if got == [b"x"] else b"child got " + repr(got).encode()


# ===== Loops =====

def test_default_loop_is_a_singleton():
    assert ev.default_loop() is ev.default_loop()
    assert isinstance(ev.default_loop(), ev.Loop)


def test_loops_are_independent(loop):
    other = ev.Loop()
    assert other is not loop and other is not ev.default_loop()
    mine, theirs = [], []
    loop.timer(0, 0, lambda w, r: mine.append(r)).start()
    t = other.timer(0, 0, lambda w, r: theirs.append(r))
    t.start()
    run_until(loop, lambda: mine)
    assert theirs == []  # running one loop leaves the other's watchers alone
    assert t.active
    run_until(other, lambda: theirs)


def test_now_is_cached_until_update(loop):
    loop.start(ev.EVRUN_NOWAIT)
    before = loop.now()
    time.sleep(0.05)
    assert loop.now() == before  # cached: nothing ran
    loop.update()
    assert loop.now() >= before + 0.04


def test_start_returns_when_no_watcher_is_active(loop):
    with alarm_guard(loop):
        assert not loop.start()  # nothing to do: returns at once
        fired = []
        loop.timer(0.01, 0, lambda w, r: fired.append(r)).start()
        # The loop's internal wakeup Io must not count as a watcher.
        assert not loop.start()
    assert fired == [ev.EV_TIMER]


def test_stop_from_a_callback_returns_from_start(loop):
    calls = []

    def cb(w, revents):
        calls.append(revents)
        if len(calls) == 3:
            loop.stop()

    t = loop.timer(0.01, 0.01, cb)
    t.start()
    with guard(loop):
        assert loop.start()  # watchers are still active
    assert len(calls) == 3
    assert t.active
    t.stop()


@pytest.mark.parametrize("how, breaker_calls", [(ev.EVBREAK_ONE, 2), (ev.EVBREAK_ALL, 1)])
def test_break_one_leaves_only_the_innermost_start(loop, how, breaker_calls):
    # nested: a callback runs loop.start() again; the breaker ends the inner
    # run with `how`. EVBREAK_ONE lets the outer run go on (the breaker fires a
    # second time, from it); EVBREAK_ALL ends both.
    calls = []
    inner_returned = []

    def breaker(w, revents):
        calls.append(revents)
        loop.stop(how if len(calls) == 1 else ev.EVBREAK_ONE)

    def nest(w, revents):
        loop.start()
        inner_returned.append(True)

    b = loop.timer(0.02, 0.02, breaker)
    b.start()
    loop.timer(0, 0, nest).start()
    with guard(loop):
        loop.start()
    b.stop()
    assert inner_returned == [True]
    assert len(calls) == breaker_calls


def test_run_once_returns_after_one_event(loop):
    calls = []

    def cb(w, revents):
        calls.append(revents)
        if len(calls) == 3:  # bound: without EVRUN_ONCE start() ends here
            w.stop()

    t = loop.timer(0.01, 0.01, cb)
    t.start()
    assert loop.start(ev.EVRUN_ONCE)
    assert calls == [ev.EV_TIMER]
    t.stop()


def test_run_nowait_does_not_block(loop, pair):
    late = []

    def on_late(w, revents):  # bound: without EVRUN_NOWAIT start() waits for this
        late.append(revents)
        loop.stop(ev.EVBREAK_ALL)

    t = loop.timer(5, 0, on_late)
    t.start()
    assert loop.start(ev.EVRUN_NOWAIT)
    assert late == []
    # ...but it does run what is ready now.
    got = []
    io = loop.io(pair[0], ev.EV_WRITE, lambda w, r: got.append(r))
    io.start()
    for _ in range(10):  # the first iteration may only register the fd
        loop.start(ev.EVRUN_NOWAIT)
        if got:
            break
    io.stop()
    t.stop()
    assert got and got[0] & ev.EV_WRITE
    assert late == []


# ===== Io =====

def test_io_read_fires_when_data_arrives(loop, pair):
    a, b = pair
    got = []
    w = loop.io(a.fileno(), ev.EV_READ, lambda w, r: got.append((w, r, a.recv(100))))
    w.start()
    for _ in range(5):
        loop.start(ev.EVRUN_NOWAIT)
    assert got == []  # nothing to read yet
    b.send(b"hello")
    run_until(loop, lambda: got)
    w.stop()
    watcher, revents, data = got[0]
    assert watcher is w  # callback(watcher, revents) gets the watcher itself
    assert revents & ev.EV_READ
    assert data == b"hello"


def test_io_write_fires(loop, pair):
    got = []
    w = loop.io(pair[0].fileno(), ev.EV_WRITE, lambda w, r: got.append((w, r)))
    w.start()
    run_until(loop, lambda: got)
    w.stop()
    assert got[0][0] is w
    assert got[0][1] & ev.EV_WRITE


class _HasFileno:
    def __init__(self, fd):
        self._fd = fd

    def fileno(self):
        return self._fd


@pytest.mark.parametrize("form", ["int", "socket", "fileno-object"])
def test_io_accepts_int_or_fileno_object(loop, pair, form):
    a, b = pair
    fd = {"int": a.fileno(), "socket": a, "fileno-object": _HasFileno(a.fileno())}[form]
    got = []
    w = loop.io(fd, ev.EV_READ, lambda w, r: got.append(r))
    assert w.fd == a.fileno()
    w.start()
    b.send(b"x")
    run_until(loop, lambda: got)
    w.stop()
    assert got[0] & ev.EV_READ


def test_io_set_while_stopped_moves_the_watcher(loop, pair):
    a, b = pair
    c, d = socket.socketpair()
    try:
        got = []
        w = loop.io(a, ev.EV_READ, lambda w, r: got.append(w.fd))
        w.set(c, ev.EV_READ)
        assert (w.fd, w.events) == (c.fileno(), ev.EV_READ)
        w.start()
        b.send(b"x")  # the old fd: must not wake the watcher any more
        for _ in range(5):
            loop.start(ev.EVRUN_NOWAIT)
        assert got == []
        d.send(b"y")
        run_until(loop, lambda: got)
        w.stop()
        assert got[0] == c.fileno()
        w.set(c, ev.EV_READ | ev.EV_WRITE)
        assert w.events == ev.EV_READ | ev.EV_WRITE
    finally:
        c.close()
        d.close()


def test_set_on_an_active_watcher_raises(loop, pair):
    io = loop.io(pair[0], ev.EV_READ, noop)
    io.start()
    with pytest.raises(ev.Error):
        io.set(pair[1], ev.EV_READ)
    assert io.fd == pair[0].fileno()
    io.stop()
    t = loop.timer(1, 0, noop)
    t.start()
    with pytest.raises(ev.Error):
        t.set(2, 0)
    t.stop()
    t.set(2, 0)  # fine once stopped


def test_watcher_attributes_read_and_write(loop):
    first, second = [], []
    t = loop.timer(0, 0, lambda w, r: first.append(r), data="d1", priority=1)
    assert t.data == "d1" and t.priority == 1 and t.active is False
    t.data = {"k": 1}
    t.priority = ev.EV_MAXPRI
    assert t.data == {"k": 1} and t.priority == ev.EV_MAXPRI
    def cb(w, revents):
        second.append(w.data)

    t.callback = cb
    assert t.callback is cb
    t.start()
    assert t.active is True
    run_until(loop, lambda: second)
    assert first == [] and second == [{"k": 1}]  # the new callback ran
    assert t.active is False  # a one-shot timer stops when it fires
    with pytest.raises(TypeError):
        t.callback = "not callable"


def test_io_stop_inside_its_own_callback(loop, pair):
    a, b = pair
    calls = []

    def cb(w, revents):
        calls.append(revents)
        w.stop()  # the data stays unread: a live watcher would fire again

    w = loop.io(a, ev.EV_READ, cb)
    w.start()
    b.send(b"x")
    run_until(loop, lambda: calls)
    for _ in range(5):
        loop.start(ev.EVRUN_NOWAIT)
    assert len(calls) == 1
    assert not w.active


def test_stop_drops_an_event_already_pending(loop, pair):
    # The classic "reply and timeout in the same iteration": the reply's
    # callback runs first (priority), cancels the expired one-shot timeout and
    # re-arms it. The old expiry must not be delivered.
    a, b = pair
    fired, seen = [], []
    t = loop.timer(0.02, 0, lambda w, r: fired.append(r))

    def on_reply(w, revents):
        a.recv(10)
        w.stop()
        seen.append((t.pending, t.active))
        t.stop()
        t.set(10, 0)
        t.start()

    loop.io(a, ev.EV_READ, on_reply, priority=ev.EV_MAXPRI).start()
    t.start()
    b.send(b"reply")
    time.sleep(0.1)  # both are due before the loop first polls
    for _ in range(5):
        loop.start(ev.EVRUN_NOWAIT)
    assert seen == [(True, False)]  # the timeout expired in the reply's iteration
    assert fired == []
    assert t.active
    t.stop()


# ===== Timers =====

def test_timers_fire_in_order_and_not_early(loop):
    order = []
    t0 = time.monotonic()
    loop.timer(0.1, 0, lambda w, r: order.append(("late", w, r, time.monotonic()))).start()
    loop.timer(0.01, 0, lambda w, r: order.append(("early", w, r, time.monotonic()))).start()
    run_until(loop, lambda: len(order) == 2)
    assert [o[0] for o in order] == ["early", "late"]
    assert all(o[2] & ev.EV_TIMER and isinstance(o[1], ev.Timer) for o in order)
    assert order[1][3] - t0 >= 0.08  # generous lower bound for after=0.1


def test_timer_repeat(loop):
    calls = []
    t = loop.timer(0.01, 0.01, lambda w, r: calls.append(r))
    t.start()
    run_until(loop, lambda: len(calls) >= 3)
    assert t.active  # a repeating timer stays started
    assert t.repeat == 0.01
    t.stop()
    assert not t.active


def test_timer_again_restarts_the_countdown(loop):
    # A would fire at 0.2 and C at 0.25; B restarts A at 0.1, which moves A to 0.3.
    order = []
    a = loop.timer(0.2, 0.2, lambda w, r: (order.append("A"), w.stop()))
    a.start()
    loop.timer(0.1, 0, lambda w, r: (order.append("B"), a.again())).start()
    loop.timer(0.25, 0, lambda w, r: order.append("C")).start()
    run_until(loop, lambda: "A" in order)
    assert order == ["B", "C", "A"]


def test_timer_again_starts_a_stopped_timer_with_repeat(loop):
    calls = []
    t = loop.timer(30, 0.01, lambda w, r: calls.append(r))
    t.again()  # uses repeat (0.01), not after (30)
    assert t.active
    run_until(loop, lambda: calls, timeout=5)
    t.stop()
    # again() on a timer whose repeat is 0 stops it.
    t.set(30, 0)
    t.start()
    t.again()
    assert not t.active


def test_timer_remaining(loop):
    fired = []
    t = loop.timer(0.3, 0, lambda w, r: fired.append(w.remaining))
    assert t.remaining == 0.0  # never started
    t.start()
    assert 0 < t.remaining <= 0.3 + 1e-9  # float slack: (now + after) - now
    t.stop()
    assert t.remaining == 0.0
    t.set(0.01, 0)
    t.start()
    run_until(loop, lambda: fired)
    assert fired == [0.0]  # inactive by the time its callback runs
    assert t.remaining == 0.0


@pytest.mark.parametrize("how", ["start", "again"])
def test_timer_started_while_idle_measures_from_now(loop, how):
    # One iteration caches the loop's time; then the loop sits idle. Plain libev
    # would measure a timer started now from that stale time and fire at once.
    loop.start(ev.EVRUN_NOWAIT)
    time.sleep(0.3)
    fired = []

    def cb(w, revents):
        fired.append((loop.now(), time.monotonic()))
        w.stop()

    t = loop.timer(0.2, 0, cb) if how == "start" else loop.timer(30, 0.2, cb)
    wall0, mono0 = time.time(), time.monotonic()  # ev_now() is wall-clock time
    getattr(t, how)()
    run_until(loop, lambda: fired)
    now_at_fire, mono_at_fire = fired[0]
    assert now_at_fire - wall0 >= 0.15
    assert mono_at_fire - mono0 >= 0.15


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan, float("-inf")])
def test_timer_negative_or_nan_is_value_error(loop, bad):
    with pytest.raises(ValueError):
        loop.timer(bad, 0, noop)
    with pytest.raises(ValueError):
        loop.timer(0, bad, noop)
    t = loop.timer(1, 0, noop)
    with pytest.raises(ValueError):
        t.set(bad, 0)
    with pytest.raises(ValueError):
        t.set(0, bad)


@pytest.mark.parametrize("bad", ["1", None, [1], b"1"])
def test_timer_non_number_is_type_error(loop, bad):
    with pytest.raises(TypeError):
        loop.timer(bad, 0, noop)
    with pytest.raises(TypeError):
        loop.timer(0, bad, noop)


@pytest.mark.parametrize("bad", [ev.EV_MINPRI - 1, ev.EV_MAXPRI + 1])
def test_priority_out_of_range_is_value_error(loop, bad):
    with pytest.raises(ValueError):
        loop.timer(1, 0, noop, priority=bad)
    t = loop.timer(1, 0, noop)
    with pytest.raises(ValueError):
        t.priority = bad
    assert t.priority == 0


def test_setting_priority_on_an_active_watcher_raises(loop):
    t = loop.timer(1, 0, noop, priority=1)
    t.start()
    with pytest.raises(ev.Error):
        t.priority = 2
    assert t.priority == 1
    t.stop()
    t.priority = 2
    assert t.priority == 2


# ===== Watcher lifetime =====

def test_unreferenced_timer_still_fires(loop):
    fired = []
    loop.timer(0.01, 0, lambda w, r: fired.append(r)).start()
    gc.collect()
    run_until(loop, lambda: fired)
    assert fired == [ev.EV_TIMER]


def test_unreferenced_io_still_fires(loop, pair):
    a, b = pair
    got = []

    def cb(w, revents):
        got.append(a.recv(10))
        w.stop()

    loop.io(a.fileno(), ev.EV_READ, cb).start()
    gc.collect()
    b.send(b"x")
    run_until(loop, lambda: got)
    assert got == [b"x"]


def test_fired_one_shot_timer_is_released(loop):
    fired = []
    t = loop.timer(0.01, 0, lambda w, r: fired.append(r))
    t.start()
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is not None  # held by the loop while active
    run_until(loop, lambda: fired)
    gc.collect()
    assert ref() is None


def test_one_shot_timer_restarted_by_its_callback_stays_held(loop):
    fired = []

    def cb(w, revents):
        fired.append(revents)
        if len(fired) == 1:
            w.start()

    t = loop.timer(0.01, 0, cb)
    t.start()
    ref = weakref.ref(t)
    del t
    run_until(loop, lambda: fired)
    gc.collect()
    assert ref() is not None and ref().active
    run_until(loop, lambda: len(fired) == 2)
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", ["io", "timer", "signal"])
def test_stopped_watcher_is_released(loop, pair, kind):
    make = {
        "io": lambda: loop.io(pair[0], ev.EV_READ, noop),
        "timer": lambda: loop.timer(10, 10, noop),
        "signal": lambda: loop.signal(signal.SIGUSR2, noop),
    }[kind]
    w = make()
    w.start()
    ref = weakref.ref(w)
    del w
    gc.collect()
    assert ref() is not None and ref().active
    ref().stop()
    gc.collect()
    assert ref() is None


def test_dropped_loop_with_active_watchers_is_collected():
    # loop <-> watcher is a cycle (loop._active, watcher.loop); gc must free it.
    lp = ev.Loop()
    a, b = socket.socketpair()
    try:
        lp.timer(10, 0, noop).start()
        lp.io(a, ev.EV_READ, noop).start()
        lp.start(ev.EVRUN_NOWAIT)
        ref = weakref.ref(lp)
        del lp
        gc.collect()
        assert ref() is None
    finally:
        a.close()
        b.close()


# ===== Priorities =====

@pytest.mark.parametrize("high_first", [True, False], ids=["high-started-first", "low-started-first"])
def test_higher_priority_timer_runs_first(loop, high_first):
    order = []
    high = loop.timer(0, 0, lambda w, r: order.append("high"), priority=ev.EV_MAXPRI)
    low = loop.timer(0, 0, lambda w, r: order.append("low"), priority=ev.EV_MINPRI)
    for w in ((high, low) if high_first else (low, high)):
        w.start()
    run_until(loop, lambda: len(order) == 2)
    assert order == ["high", "low"]


@pytest.mark.parametrize("high_is_first_pair", [True, False])
def test_higher_priority_io_runs_first(loop, pair, high_is_first_pair):
    c, d = socket.socketpair()
    try:
        order = []
        (ha, hb), (la, lb) = (pair, (c, d)) if high_is_first_pair else ((c, d), pair)
        h = loop.io(ha, ev.EV_READ, lambda w, r: (order.append("high"), w.stop()), priority=1)
        lo = loop.io(la, ev.EV_READ, lambda w, r: (order.append("low"), w.stop()), priority=-1)
        h.start()
        lo.start()
        hb.send(b"x")
        lb.send(b"x")  # both ready before the loop polls: one iteration
        run_until(loop, lambda: len(order) == 2)
        assert order == ["high", "low"]
    finally:
        c.close()
        d.close()


# ===== Exceptions =====

def test_callback_exception_is_logged_and_the_loop_goes_on(loop, caplog):
    caplog.set_level(logging.ERROR, logger="gearman_ev")
    later = []

    def boom(w, revents):
        raise ValueError("boom from a callback")

    loop.timer(0, 0, boom).start()
    loop.timer(0.05, 0, lambda w, r: later.append(r)).start()
    run_until(loop, lambda: later)  # would raise if the ValueError escaped
    records = [r for r in caplog.records if r.name == "gearman_ev" and r.exc_info]
    assert len(records) == 1
    exc_type, exc, tb = records[0].exc_info
    assert exc_type is ValueError and str(exc) == "boom from a callback"
    assert tb is not None
    assert "in boom" in caplog.text  # the traceback reaches the log


def test_io_callback_exception_is_logged(loop, pair, caplog):
    caplog.set_level(logging.ERROR, logger="gearman_ev")
    calls = []

    def boom(w, revents):
        calls.append(revents)
        w.stop()
        raise RuntimeError("io boom")

    loop.io(pair[0], ev.EV_WRITE, boom).start()
    run_until(loop, lambda: calls)
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_a_callback_stops_the_loop_and_propagates(loop, exc_type):
    calls = []

    def cb(w, revents):
        calls.append(revents)
        raise exc_type()

    t = loop.timer(0.01, 0.01, cb)  # repeating: alone it keeps the loop running
    t.start()
    with guard(loop), pytest.raises(exc_type):
        loop.start()
    assert len(calls) == 1
    t.stop()
    # Nothing stays parked: the next run is a normal one.
    done = []
    loop.timer(0, 0, lambda w, r: done.append(r)).start()
    with alarm_guard(loop):
        assert not loop.start()
    assert done == [ev.EV_TIMER]


@contextlib.contextmanager
def sigint_in(seconds):
    """Send the process a real SIGINT from another thread after `seconds`."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    killer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    killer.start()
    try:
        yield
    finally:
        killer.cancel()
        killer.join()
        signal.signal(signal.SIGINT, previous)


def test_real_sigint_interrupts_a_blocked_loop(loop):
    long = loop.timer(30, 0, noop)
    long.start()
    try:
        t0 = time.monotonic()
        with sigint_in(0.2), pytest.raises(KeyboardInterrupt):
            loop.start()
        assert time.monotonic() - t0 < 5  # not held up until the 30 s timer
    finally:
        long.stop()


def test_real_sigint_after_a_nested_start(loop):
    # A nested start() must not take the outer run's Ctrl-C wakeup with it.
    def nest(w, revents):
        loop.timer(0.01, 0, lambda w, r: loop.stop()).start()
        loop.start()

    long = loop.timer(30, 0, noop)
    long.start()
    loop.timer(0, 0, nest).start()
    try:
        t0 = time.monotonic()
        with sigint_in(0.3), pytest.raises(KeyboardInterrupt):
            loop.start()
        assert time.monotonic() - t0 < 5
    finally:
        long.stop()


# ===== Ctrl-C: raised from start() only between events (API.md 9) =====

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every child starts from Python's default SIGINT handler, whatever the test
# run inherited (a run under nohup, or in the background, ignores SIGINT).
CHILD_PRELUDE = """
import json, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from gearman_ev import ev

def pending():
    return getattr(ev, "_sigint_since", None) is not None

def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()

def sigint():
    os.kill(os.getpid(), signal.SIGINT)
"""


def run_child(body, timeout=30):
    """Run CHILD_PRELUDE + body in a fresh Python; return the JSON it prints
    last. Real SIGINTs, so never in the pytest process itself."""
    proc = subprocess.run([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(body)],
                          env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"child exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.splitlines()[-1])


def test_ctrl_c_mid_callback_waits_for_the_callback_to_finish():
    out = run_child("""
        loop = ev.Loop()
        flags, fired = [], []
        started = threading.Event()

        def killer():
            if started.wait(10):
                sigint()

        def busy(w, revents):
            flags.append("start")
            started.set()
            t0 = time.monotonic()
            n = 0
            # ~200 ms of pure-Python work, and on until the SIGINT has been
            # seen, so that it surely arrives mid-callback (bounded: 10 s).
            while time.monotonic() - t0 < 0.2 or (not pending() and time.monotonic() - t0 < 10):
                n += 1
            flags.append("seen" if pending() else "not seen")
            flags.append("end")

        threading.Thread(target=killer, daemon=True).start()
        loop.timer(0.01, 0, busy).start()
        for name, after in (("t1", 0.05), ("t2", 0.1), ("t3", 0.15)):
            loop.timer(after, 0, lambda w, r, name=name: fired.append(name)).start()
        out = {}
        try:
            loop.start()
            out["first run"] = "returned"
        except KeyboardInterrupt:
            out["first run"] = "KeyboardInterrupt"
        out["flags then"], out["fired then"] = list(flags), list(fired)
        out["resumed"] = loop.start()  # the timers left; returns once none is active
        out["flags"], out["fired"] = flags, fired
        print(json.dumps(out))
    """)
    assert out["first run"] == "KeyboardInterrupt"
    # The interrupt arrived mid-callback and came out only after its last line.
    assert out["flags then"] == ["start", "seen", "end"]
    # Resuming runs what is left, each exactly once; the busy timer not again.
    assert out["resumed"] is False
    assert out["flags"] == ["start", "seen", "end"]
    assert sorted(out["fired"]) == ["t1", "t2", "t3"]
    assert out["fired then"] == [name for name in out["fired"] if name in out["fired then"]]


def test_ctrl_c_while_idle_ends_start_promptly():
    out = run_child("""
        loop = ev.Loop()
        long = loop.timer(30, 0, lambda w, r: None)
        long.start()
        threading.Timer(0.2, sigint).start()
        t0 = time.monotonic()
        try:
            loop.start()
            outcome = "returned"
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - t0,
                          "long active": long.active, "pending after": pending()}))
    """)
    assert out["outcome"] == "KeyboardInterrupt"
    assert out["seconds"] < 10  # generous: the 30 s timer did not end it
    assert out["long active"] is True and out["pending after"] is False


def test_ctrl_c_handler_is_installed_while_start_runs_and_restored_after():
    out = run_child("""
        loop = ev.Loop()
        default = signal.default_int_handler
        during = []

        def peek(w, revents):
            during.append(signal.getsignal(signal.SIGINT) is not default)

        def nest(w, revents):
            loop.timer(0, 0, peek).start()
            loop.start(ev.EVRUN_ONCE)  # nested: must not restore on its way out
            peek(w, revents)

        out = {}
        loop.timer(0, 0, nest).start()
        loop.start()
        out["during"], out["after run"] = list(during), signal.getsignal(signal.SIGINT) is default

        def raise_it(w, revents):
            raise KeyboardInterrupt
        loop.timer(0, 0, raise_it).start()
        try:
            loop.start()
        except KeyboardInterrupt:
            pass
        out["after a raised interrupt"] = signal.getsignal(signal.SIGINT) is default

        loop.timer(30, 0, lambda w, r: None).start()
        loop.timer(0.05, 0, lambda w, r: sigint()).start()
        try:
            loop.start()
        except KeyboardInterrupt:
            pass
        out["after Ctrl-C"] = signal.getsignal(signal.SIGINT) is default
        # A loop in another thread leaves SIGINT alone (only the main thread may).
        other = ev.Loop()
        other.timer(0, 0, lambda w, r: during.append(
            signal.getsignal(signal.SIGINT) is not default)).start()
        t = threading.Thread(target=other.start)
        t.start()
        t.join(10)
        out["in a thread"] = during[-1]
        print(json.dumps(out))
    """)
    assert out == {"during": [True, True], "after run": True, "after a raised interrupt": True,
                   "after Ctrl-C": True, "in a thread": False}


def test_ctrl_c_handler_left_behind_is_taken_back_by_the_next_start():
    # A forced KeyboardInterrupt (the escape hatch) may land in start()'s
    # last lines, before the default handler is back. The next start() finds
    # its own handler with no loop running and restores the default on exit.
    out = run_child("""
        signal.signal(signal.SIGINT, ev._on_sigint)  # as such a start() leaves it
        loop = ev.Loop()
        loop.timer(0, 0, lambda w, r: None).start()
        loop.start()
        print(json.dumps(signal.getsignal(signal.SIGINT) is signal.default_int_handler))
    """)
    assert out is True


@pytest.mark.parametrize("owner", ["user handler", "ignored", "libev watcher"])
def test_ctrl_c_leaves_a_sigint_handler_it_did_not_install_alone(owner):
    out = run_child(f"""
        owner = {owner!r}
        loop = ev.Loop()
        caught = []
        if owner == "user handler":
            def mine(signum, frame):
                caught.append(signum)
            signal.signal(signal.SIGINT, mine)
        elif owner == "ignored":
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            watcher = loop.signal(signal.SIGINT, lambda w, r: caught.append(signal.SIGINT))
            watcher.start()
        before = signal.getsignal(signal.SIGINT)
        out = {{}}

        def cb(w, revents):
            out["during"] = signal.getsignal(signal.SIGINT) is before
            sigint()
            out["pending"] = pending()

        fired = []
        loop.timer(0, 0, cb).start()
        loop.timer(0.1, 0, lambda w, r: fired.append(True)).start()
        try:
            while not fired:  # the SIGINT must not break or raise
                loop.start(ev.EVRUN_ONCE)
            out["outcome"] = "ran on"
        except KeyboardInterrupt:
            out["outcome"] = "KeyboardInterrupt"
        if owner == "libev watcher":
            loop.start(ev.EVRUN_NOWAIT)
            watcher.stop()
        out["after"] = signal.getsignal(signal.SIGINT) is before
        out["caught"] = caught
        print(json.dumps(out))
    """)
    assert out["during"] is True and out["after"] is True
    assert out["outcome"] == "ran on" and out["pending"] is False
    assert out["caught"] == ([] if owner == "ignored" else [signal.SIGINT])


def test_second_ctrl_c_after_a_second_breaks_a_hung_callback():
    out = run_child("""
        loop = ev.Loop()
        flags = []
        started = threading.Event()

        def killer():
            if not started.wait(10):
                return
            sigint()
            if wait_for(pending):
                time.sleep(1.1)  # the escape hatch opens 1 s after the first
                sigint()

        def hang(w, revents):
            flags.append("start")
            started.set()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20:  # "hangs" (bounded for the test)
                time.sleep(0.01)
                if pending() and "first recorded" not in flags:
                    flags.append("first recorded")  # the first SIGINT did not raise
            flags.append("end")

        threading.Thread(target=killer, daemon=True).start()
        loop.timer(0, 0, hang).start()
        t0 = time.monotonic()
        try:
            loop.start()
            outcome = "returned"
        except KeyboardInterrupt:
            outcome = "KeyboardInterrupt"
        seconds = time.monotonic() - t0
        # One interrupt, raised once: the loop runs normally afterwards.
        after = []
        loop.timer(0.01, 0, lambda w, r: after.append(True)).start()
        loop.start()
        print(json.dumps({"outcome": outcome, "flags": flags, "seconds": seconds,
                          "pending after": pending(), "after": after}))
    """)
    assert out["outcome"] == "KeyboardInterrupt"
    assert out["flags"] == ["start", "first recorded"]  # cut short by the second
    assert out["seconds"] < 15  # generous: the callback alone would take 20 s
    assert out["pending after"] is False and out["after"] == [True]


def test_start_with_a_ctrl_c_pending_raises_without_running():
    # A callback that runs the loop itself (nested start()) after a Ctrl-C
    # was recorded: the nested start() raises at once (ev_run would have
    # cleared the break), the callback may catch it, and the outer start()
    # then ends normally without a second KeyboardInterrupt.
    out = run_child("""
        loop = ev.Loop()
        ran, notes = [], []

        def nest(w, revents):
            sigint()
            notes.append(wait_for(pending))
            loop.timer(0, 0, lambda w, r: ran.append("inner timer")).start()
            try:
                loop.start()
                notes.append("nested returned")
            except KeyboardInterrupt:
                notes.append("nested raised")

        loop.timer(0, 0, nest).start()
        try:
            loop.start()
            notes.append("outer returned")
        except KeyboardInterrupt:
            notes.append("outer raised")
        print(json.dumps({"notes": notes, "ran": ran}))
    """)
    assert out["notes"] == [True, "nested raised", "outer returned"]
    # The timer started in the callback was not run by the refused nested
    # start(); the outer run's iteration ran it before returning, or not.
    assert out["ran"] in ([], ["inner timer"])


# ===== Signals =====

@contextlib.contextmanager
def python_handler(signum):
    """A Python handler for signum (instead of its default action, which could
    kill the test run), restored afterwards. Yields the signals it caught."""
    caught = []
    previous = signal.signal(signum, lambda s, f: caught.append(s))
    try:
        yield caught
    finally:
        signal.signal(signum, previous)


def test_signal_watcher_fires(loop):
    with python_handler(signal.SIGUSR1) as caught:
        got = []
        w = loop.signal(signal.SIGUSR1, lambda w, r: got.append((w, r)))
        assert w.signum == signal.SIGUSR1
        w.start()
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            run_until(loop, lambda: got)
        finally:
            w.stop()
        assert got[0][0] is w and got[0][1] & ev.EV_SIGNAL
        assert caught == []  # libev had the signal, not Python


def test_signal_stop_restores_the_python_handler():
    # In a child: if the restore were missing, SIGUSR1 would fall back to its
    # default action and kill the process.
    def body():
        caught = []
        signal.signal(signal.SIGUSR1, lambda s, f: caught.append(s))
        lp = ev.Loop()
        got = []
        w = lp.signal(signal.SIGUSR1, lambda w, r: got.append(r))
        w.start()
        os.kill(os.getpid(), signal.SIGUSR1)
        run_until(lp, lambda: got, timeout=5)
        w.stop()
        if caught:
            return b"python handler ran while libev owned the signal"
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not caught and time.monotonic() < deadline:
            time.sleep(0.01)
        return b"ok" if caught == [signal.SIGUSR1] and len(got) == 1 else b"not restored"

    out, status = in_child(body)
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}"
    assert out == b"ok"


def test_signal_on_a_second_loop_is_refused(loop):
    other = ev.Loop()
    with python_handler(signal.SIGUSR1):
        a = loop.signal(signal.SIGUSR1, noop)
        a.start()
        b = other.signal(signal.SIGUSR1, noop)
        try:
            with pytest.raises(ev.Error):
                b.start()
            assert not b.active
            c = loop.signal(signal.SIGUSR1, noop)  # the same loop may add more
            c.start()
            c.stop()
        finally:
            a.stop()
        b.start()  # once the first loop let go, another may take the signal
        assert b.active
        b.stop()


# ===== Fork =====

@pytest.mark.parametrize("which", ["new", "default"])
def test_child_goes_on_using_a_loop_made_before_fork(which):
    lp = ev.Loop() if which == "new" else ev.default_loop()
    # Give the loop real backend state before the fork: an active Io, polled.
    prd, pwr = os.pipe()
    inherited = lp.io(prd, ev.EV_READ, lambda w, r: (os.read(w.fd, 1), w.stop()))
    inherited.start()
    lp.start(ev.EVRUN_NOWAIT)
    try:
        def body():
            os.write(pwr, b"p")  # the watcher inherited from the parent fires too
            result = use_loop(lp)
            run_until(lp, lambda: not inherited.active, timeout=5, what="inherited io")
            return result

        out, status = in_child(body)
        assert out == b"ok"
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        inherited.stop()
        os.close(prd)
        os.close(pwr)


class _ForkSpy:
    """Stands in for ev's `lib`, noting which loops got ev_loop_fork."""

    def __init__(self, real):
        self._real = real
        self.forked = []

    def ev_loop_fork(self, ptr):
        self.forked.append(ptr)
        self._real.ev_loop_fork(ptr)

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_fork_runs_ev_loop_fork_on_every_loop(monkeypatch):
    # libev on epoll often limps along without ev_loop_fork, so check the call.
    lp = ev.Loop()
    dflt = ev.default_loop()
    spy = _ForkSpy(ev.lib)
    monkeypatch.setattr(ev, "lib", spy)

    def body():
        missing = [name for name, loop in (("new", lp), ("default", dflt))
                   if not any(p == loop._ptr for p in spy.forked)]
        return b"ok" if not missing else f"no ev_loop_fork: {missing}".encode()

    out, _ = in_child(body)
    assert out == b"ok"


def test_fork_inside_a_callback(loop):
    # The child returns from the callback into the running loop, leaves
    # start() normally and keeps using the loop.
    parent = os.getpid()
    rfd, wfd = os.pipe()
    pids = []

    def forker(w, revents):
        pid = os.fork()
        if pid:
            pids.append(pid)
        loop.stop()

    loop.timer(0, 0, forker).start()
    out = b"child did not report"
    try:
        with guard(loop):
            loop.start()
        if os.getpid() != parent:
            out = use_loop(loop)
    except BaseException as exc:  # in the child: reported to the parent
        if os.getpid() == parent:
            raise
        out = b"child raised " + repr(exc).encode()
    finally:
        if os.getpid() != parent:
            try:
                os.write(wfd, out)
            finally:
                os._exit(0)
    os.close(wfd)
    assert pids, "fork did not happen"
    out, status = read_child(rfd, pids[0])
    assert out == b"ok"
    assert os.WIFEXITED(status)


# ===== Bad arguments =====

def test_io_negative_fd_is_value_error(loop):
    with pytest.raises(ValueError):
        loop.io(-1, ev.EV_READ, noop)
    with pytest.raises(ValueError):
        loop.io(_HasFileno(-1), ev.EV_READ, noop)


@pytest.mark.parametrize("events", [0, ev.EV_TIMER, ev.EV_READ | ev.EV_SIGNAL, 0x80, -1])
def test_io_bad_events_is_value_error(loop, pair, events):
    with pytest.raises(ValueError):
        loop.io(pair[0], events, noop)
    w = loop.io(pair[0], ev.EV_READ, noop)
    with pytest.raises(ValueError):
        w.set(pair[0], events)


@pytest.mark.parametrize("kind", ["io", "timer", "signal"])
@pytest.mark.parametrize("callback", [None, 42, "cb"])
def test_non_callable_callback_is_type_error(loop, pair, kind, callback):
    with pytest.raises(TypeError):
        if kind == "io":
            loop.io(pair[0], ev.EV_READ, callback)
        elif kind == "timer":
            loop.timer(1, 0, callback)
        else:
            loop.signal(signal.SIGUSR1, callback)


@pytest.mark.parametrize("signum", [0, -1, signal.NSIG, signal.NSIG + 100])
def test_signal_bad_signum_is_value_error(loop, signum):
    with pytest.raises(ValueError):
        loop.signal(signum, noop)


def test_prepare_runs_before_the_loop_polls_once_per_iteration(loop):
    # A Prepare watcher runs before the loop blocks, every iteration while
    # active; gearman_ev flushes queued requests from one.
    order = []
    prep = loop.prepare(lambda w, r: order.append(("prepare", r)))
    prep.start()
    loop.timer(0.01, 0, lambda w, r: order.append(("timer", r))).start()
    loop.start(ev.EVRUN_ONCE)
    prep.stop()
    assert order[0] == ("prepare", ev.EV_PREPARE)
    assert ("timer", ev.EV_TIMER) in order
    assert order.index(("timer", ev.EV_TIMER)) > 0


def test_prepare_stopped_in_its_callback_fires_once(loop):
    calls = []

    def once(w, r):
        calls.append(r)
        w.stop()
    loop.prepare(once).start()
    loop.start()  # returns: nothing is active once the prepare stopped
    assert calls == [ev.EV_PREPARE]
    assert not loop._active


# ===== Async (threads) =====

def test_async_send_from_another_thread_wakes_a_blocked_loop(loop):
    # The loop has nothing else to do: without the send it would sleep until
    # the alarm guard (the Async itself keeps start() running).
    got = []

    def cb(w, revents):
        got.append((w, revents, threading.get_ident()))
        w.stop()

    a = loop.async_(cb)
    assert isinstance(a, ev.Async)
    a.start()
    sender = threading.Timer(0.1, a.send)
    sender.start()
    try:
        with alarm_guard(loop):
            assert not loop.start()  # returns once the callback stopped the watcher
    finally:
        sender.cancel()
        sender.join()
    assert got == [(a, ev.EV_ASYNC, threading.get_ident())]  # in the loop's thread


def test_a_loop_waiting_for_io_lets_other_threads_run_python(loop):
    # Only ev_run gives the GIL up (every other C call keeps it, see
    # csrc/ffi_source.c). While the loop sleeps for 0.3 s, another thread
    # runs all along: it marks every 10 ms slot it ran in. (With the GIL
    # held it would run only in the moments the loop's thread runs Python.)
    slots, stop = set(), threading.Event()

    def mark():
        while not stop.is_set():
            slots.add(int(time.monotonic() * 100))
    t = threading.Thread(target=mark)
    loop.timer(0.3, 0, lambda w, r: None).start()
    t.start()
    try:
        time.sleep(0.02)
        start = time.monotonic()
        with alarm_guard(loop):
            loop.start()  # asleep in epoll until the timer
        end = time.monotonic()
    finally:
        stop.set()
        t.join(5)
    during = [s for s in slots if start * 100 + 1 < s < end * 100 - 1]
    assert len(during) >= 10, sorted(during)  # of 28; a held GIL leaves none or two


def test_async_sends_before_the_loop_runs_merge_into_one_call(loop):
    calls = []
    a = ev.Async(loop, lambda w, r: calls.append(r), data="d", priority=1)
    assert (a.data, a.priority) == ("d", 1)
    a.start()
    assert not a.sent
    for _ in range(3):
        a.send()
    assert a.sent
    for _ in range(5):
        loop.start(ev.EVRUN_NOWAIT)
    assert calls == [ev.EV_ASYNC]  # libev delivers pending sends once
    assert not a.sent
    a.send()
    run_until(loop, lambda: len(calls) == 2)
    a.stop()
    assert not a.active


def test_async_send_to_a_stopped_watcher_is_dropped(loop):
    calls = []
    a = loop.async_(lambda w, r: calls.append(r))
    a.send()  # never started: nothing to wake
    a.start()
    keep = loop.timer(0.05, 0, noop)
    keep.start()
    run_until(loop, lambda: not keep.active)
    assert calls == []
    a.stop()


def test_async_many_threads_sending_while_the_loop_runs(loop):
    # 8 threads hammer send() while the loop thread runs ev_run (cffi releases
    # the GIL around both): no crash, no lost wake-up. Each callback notes how
    # many threads had finished; once all have, a last send must still come
    # through and be seen.
    nthreads, nsends = 8, 2000
    finished = []
    seen = []

    def cb(w, revents):
        seen.append(len(finished))
        if len(finished) == nthreads:
            w.stop()

    a = loop.async_(cb)
    a.start()

    def sender():
        for _ in range(nsends):
            a.send()
        finished.append(True)  # list.append is atomic
        a.send()

    threads = [threading.Thread(target=sender) for _ in range(nthreads)]
    for t in threads:
        t.start()
    try:
        with alarm_guard(loop, 20):
            loop.start()
    finally:
        for t in threads:
            t.join(10)
    assert seen and seen[-1] == nthreads
    assert 1 <= len(seen) <= nthreads * (nsends + 1)
    assert not a.active


# ===== call_soon_threadsafe =====

def test_call_soon_threadsafe_many_threads(loop):
    # 8 threads x 10,000 calls while the loop runs: every call runs exactly
    # once, in the loop's thread, and each thread's calls in the order made.
    nthreads, ncalls = 8, 10_000
    ran = []  # (thread number, sequence, thread that ran it)

    def record(n, seq):
        ran.append((n, seq, threading.get_ident()))
        if len(ran) == nthreads * ncalls:
            loop.stop()

    def caller(n):
        for seq in range(ncalls):
            loop.call_soon_threadsafe(record, n, seq)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(nthreads)]
    for t in threads:
        t.start()
    try:
        with guard(loop, 60):  # an active watcher: the queue alone does not hold the loop
            loop.start()
    finally:
        for t in threads:
            t.join(30)
    assert len(ran) == nthreads * ncalls
    assert {who for _, _, who in ran} == {threading.get_ident()}
    for n in range(nthreads):
        assert [seq for m, seq, _ in ran if m == n] == list(range(ncalls))


def test_calls_queued_before_start_run_in_its_first_iteration(loop):
    ran = []
    loop.call_soon_threadsafe(ran.append, 1)
    t = threading.Thread(target=loop.call_soon_threadsafe, args=(ran.append, 2))
    t.start()
    t.join(10)
    with alarm_guard(loop):
        # Nothing else is active: start() runs the queue once and returns
        # (the queue does not keep the loop running).
        assert not loop.start()
    assert ran == [1, 2]
    with alarm_guard(loop):
        assert not loop.start()
    assert ran == [1, 2]  # exactly once


def test_call_soon_threadsafe_stops_a_blocked_loop_from_another_thread(loop):
    long = loop.timer(30, 0, noop)
    long.start()
    stopper = threading.Timer(0.1, loop.call_soon_threadsafe, (loop.stop,))
    stopper.start()
    try:
        with alarm_guard(loop):
            assert loop.start()  # stopped: the 30 s timer is still active
    finally:
        stopper.cancel()
        stopper.join()
        long.stop()


def test_call_made_by_a_callback_runs_at_the_next_iteration(loop):
    # From the loop's own thread too, a call never runs inside the callback
    # that made it, nor in the drain that is running: at the next iteration.
    order = []

    def note(name):
        order.append((name, loop.iteration))

    def first(w, revents):
        loop.call_soon_threadsafe(note, "call")
        loop.call_soon_threadsafe(note, "second call")
        note("callback end")

    def chained():
        note("chain 1")
        loop.call_soon_threadsafe(note, "chain 2")

    loop.timer(0, 0, first).start()
    loop.call_soon_threadsafe(chained)
    run_until(loop, lambda: len(order) == 5)
    when = dict(order)
    names = [name for name, _ in order]
    assert names.index("callback end") < names.index("call") < names.index("second call")
    assert when["call"] > when["callback end"]
    assert when["chain 2"] > when["chain 1"]


def test_a_call_that_runs_the_loop_itself(loop, caplog):
    # A queued call runs a nested start(), whose drain takes the calls queued
    # behind it: each still runs once, and the outer drain copes.
    ran = []

    def nest():
        ran.append("nest")
        loop.call_soon_threadsafe(ran.append, "from nest")  # wakes the nested run
        loop.start(ev.EVRUN_NOWAIT)
        ran.append("nest end")

    loop.call_soon_threadsafe(nest)
    for n in range(3):
        loop.call_soon_threadsafe(ran.append, n)
    with alarm_guard(loop):
        loop.start()
    assert ran == ["nest", 0, 1, 2, "from nest", "nest end"]
    assert not [r for r in caplog.records if r.name == "gearman_ev"]


def test_call_soon_threadsafe_exceptions_are_logged_and_the_queue_goes_on(loop, caplog):
    caplog.set_level(logging.ERROR, logger="gearman_ev")
    ran = []

    def boom():
        raise ValueError("boom from a call")

    loop.call_soon_threadsafe(ran.append, 1)
    loop.call_soon_threadsafe(boom)
    loop.call_soon_threadsafe(ran.append, 2)
    run_until(loop, lambda: len(ran) == 2)
    assert ran == [1, 2]
    records = [r for r in caplog.records if r.name == "gearman_ev" and r.exc_info]
    assert len(records) == 1 and records[0].exc_info[0] is ValueError


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_call_soon_threadsafe_interrupt_propagates_and_the_rest_run_later(loop, exc_type):
    ran = []

    def interrupt():
        ran.append("interrupt")
        raise exc_type()

    for item in (1, interrupt, 2, 3):
        if callable(item):
            loop.call_soon_threadsafe(item)
        else:
            loop.call_soon_threadsafe(ran.append, item)
    keep = loop.timer(30, 0, noop)
    keep.start()
    try:
        with alarm_guard(loop), pytest.raises(exc_type):
            loop.start()
        assert ran == [1, "interrupt"]  # raised before the next call ran
        run_until(loop, lambda: len(ran) == 4)
        assert ran == [1, "interrupt", 2, 3]  # each exactly once, in order
    finally:
        keep.stop()


def test_call_soon_threadsafe_refuses_a_non_callable(loop):
    with pytest.raises(TypeError):
        loop.call_soon_threadsafe("not callable")


def test_an_unreferenced_loop_is_freed_without_gc():
    # The call queue's Async must not tie the loop into a reference cycle.
    gc.disable()
    try:
        lp = ev.Loop()
        lp.call_soon_threadsafe(noop)
        ref = weakref.ref(lp)
        del lp
        assert ref() is None
    finally:
        gc.enable()


# ===== Which thread runs the loop =====

def test_running_thread_is_the_thread_inside_start(loop):
    assert loop._running_thread is None
    seen = []

    def cb(w, revents):
        seen.append(loop._running_thread)
        if len(seen) == 1:
            loop.timer(0, 0, cb).start()
            loop.start(ev.EVRUN_ONCE)  # nested: the same thread, still running
            seen.append(loop._running_thread)

    loop.timer(0, 0, cb).start()
    with alarm_guard(loop):
        loop.start()
    me = threading.get_ident()
    assert seen == [me, me, me]
    assert loop._running_thread is None

    def interrupted(w, revents):
        raise KeyboardInterrupt

    loop.timer(0, 0, interrupted).start()
    with pytest.raises(KeyboardInterrupt):
        loop.start()
    assert loop._running_thread is None


def test_running_thread_of_a_loop_run_by_another_thread(loop):
    seen = []
    started = threading.Event()

    def body():
        loop.timer(0, 0, lambda w, r: started.set()).start()
        long = loop.timer(30, 0, noop)
        long.start()
        loop.start()  # until the stop below
        long.stop()
        seen.append(threading.get_ident())

    t = threading.Thread(target=body)
    t.start()
    try:
        assert started.wait(10)
        assert loop._running_thread == t.ident  # read from the main thread
        # A second thread may not run the same libev loop at the same time.
        with pytest.raises(ev.Error, match="loop already running in another thread"):
            loop.start(ev.EVRUN_NOWAIT)
        assert loop._running_thread == t.ident  # the refused start changed nothing
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(10)
    assert seen == [t.ident]
    assert loop._running_thread is None


# ===== A destroyed loop =====

NEEDS_THE_LOOP = [
    "loop.start", "loop.stop", "loop.now", "loop.update", "loop.iteration", "loop.backend",
    "timer.start", "timer.again", "timer.remaining", "timer.set", "io.start", "io.set",
    "signal.start", "prepare.start", "async.start", "async.send", "loop.call_soon_threadsafe",
]
# Teardown: already done by the loop's own finalizer, so these return quietly.
STOPS = ["timer.stop", "io.stop", "signal.stop", "prepare.stop", "async.stop"]


def _calls_on(lp, watchers, fd):
    """Every entry point of NEEDS_THE_LOOP and STOPS, as (name, call)."""
    t, io, sig, prep, asy = watchers
    calls = [
        lp.start, lp.stop, lp.now, lp.update, lambda: lp.iteration, lambda: lp.backend,
        t.start, t.again, lambda: t.remaining, lambda: t.set(1, 0), io.start,
        lambda: io.set(fd, ev.EV_READ), sig.start, prep.start, asy.start, asy.send,
        lambda: lp.call_soon_threadsafe(noop), t.stop, io.stop, sig.stop, prep.stop, asy.stop,
    ]
    assert len(calls) == len(NEEDS_THE_LOOP) + len(STOPS)
    return zip(NEEDS_THE_LOOP + STOPS, calls)


def test_loop_destroyed_in_a_garbage_cycle_raises_error():
    # A loop, its active watchers and an object with a finalizer form one
    # garbage cycle. gc finalizes the loop first (it is the older object), so
    # the later finalizer meets a destroyed loop: every call that needs it
    # must raise ev.Error("loop destroyed"), never reach libev with a NULL
    # loop (a crash) or fail inside cffi; stopping a watcher, already done,
    # returns quietly. In a child, so that a crash cannot take pytest down.
    def body():
        a, b = socket.socketpair()
        outcomes = {}

        class Late:
            def __del__(self):
                outcomes["loop destroyed first"] = self.loop._ptr is None
                for name, call in _calls_on(self.loop, self.watchers, a.fileno()):
                    try:
                        call()
                        outcomes[name] = "returned"
                    except ev.Error as exc:
                        outcomes[name] = str(exc)
                    except BaseException as exc:  # noqa: BLE001 - reported
                        outcomes[name] = repr(exc)
                outcomes["still active"] = [w.active for w in self.watchers]

        def make_cycle():
            lp = ev.Loop()
            late = Late()
            late.loop = lp
            late.watchers = (lp.timer(10, 0, lambda w, r: late), lp.io(a, ev.EV_READ, noop),
                             lp.signal(signal.SIGUSR2, noop), lp.prepare(noop), lp.async_(noop))
            for w in late.watchers[:2]:
                w.start()  # the loop holds these, and through them `late`
            lp.start(ev.EVRUN_NOWAIT)
            return weakref.ref(lp)

        gc.collect()
        gc.disable()  # objects stay in creation order until the collection below
        try:
            ref = make_cycle()
            if ref() is None or outcomes:
                return b"the cycle was collected too early"
            gc.collect()
        finally:
            gc.enable()
        return json.dumps(outcomes).encode()

    out, status = in_child(body)
    assert os.WIFEXITED(status), f"child killed by signal {os.WTERMSIG(status)}"
    outcomes = json.loads(out)
    assert outcomes.pop("loop destroyed first") is True
    assert outcomes.pop("still active") == [False] * 5
    assert outcomes == {**dict.fromkeys(NEEDS_THE_LOOP, "loop destroyed"),
                        **dict.fromkeys(STOPS, "returned")}
