"""Bad input, the whole public API in one table (API.md 1-8): every Gearman
constructor argument, method and writable property, every Job method, and the
ev module's constructors. A wrong type raises TypeError, a bad value
ValueError, and both before any I/O: each Gearman call is made on an object
connected to a fake server that records every byte it receives, and an echo
round trip afterwards must be the only thing the server ever got; the same
call on an unconfigured object raises the same error (not "not connected").
Oversized payloads are views of one untouched mmap: nothing is copied."""
from __future__ import annotations

import math
import mmap
import signal
import socket
import tracemalloc

import pytest

from gearman_ev import MAX_PACKET, Gearman, Job, ev
from tests.conftest import round_trip, run_until
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res

T, V = TypeError, ValueError
NAN, INF = math.nan, math.inf
U64 = "u" * 64                      # a unique key of 64 bytes (63 is the most)
H64 = "H:" + "1" * 62               # a handle of 64 bytes (63 is the most)
_big = []


def over(fixed):
    """A payload one byte past MAX_PACKET once ``fixed`` other body bytes
    (names, NUL separators) are added: a slice of one mmap nobody touches."""
    if not _big:
        _big.append(memoryview(mmap.mmap(-1, MAX_PACKET + 1)))
    return _big[0][:MAX_PACKET + 1 - fixed]


class Over:
    """Stands for ``over(fixed)`` in a row, made when the row runs."""

    def __init__(self, fixed):
        self.fixed = fixed


def call(method, *args, **kw):
    def run(target):
        real = [over(a.fixed) if isinstance(a, Over) else a for a in args]
        return getattr(target, method)(*real, **kw)
    return run


def assign(prop, value):
    return lambda target: setattr(target, prop, value)


def rows(method, lead, cases, tail=()):
    """One row per case: ``method(*lead, *case_args, *tail, **case_kw)``."""
    return [pytest.param(call(method, *lead, *args, *tail, **kw), exc, id=f"{method}-{what}")
            for what, args, kw, exc in cases]


def _nop(*args):
    return None


# ===== The table =====

BAD_FUNCTION = [  # a function name, wherever one is taken
    ("func-empty", ("",), {}, V), ("func-513-bytes", ("x" * 513,), {}, V),
    ("func-space", ("a b",), {}, V), ("func-tab", ("a\tb",), {}, V),
    ("func-newline", ("a\nb",), {}, V), ("func-nul", ("a\0b",), {}, V),
    ("func-del", ("a\x7fb",), {}, V), ("func-int", (5,), {}, T),
    ("func-none", (None,), {}, T), ("func-list", (["f"],), {}, T),
]
BAD_SUBMISSION = [  # after a good function name, for every submit_job*
    ("unique-64-bytes", (b"w",), {"unique": U64}, V),
    ("unique-nul", (b"w",), {"unique": "a\0b"}, V),
    ("unique-int", (b"w",), {"unique": 7}, T), ("workload-int", (5,), {}, T),
    ("workload-none", (None,), {}, T), ("workload-list", ([b"w"],), {}, T),
    ("workload-float", (1.0,), {}, T), ("cb-int", (b"w", 5), {}, T),
    ("cb-str", (b"w",), {"cb": "not callable"}, T),
]
BAD_FOREGROUND = [  # only submit_job, _high and _low take these
    ("timeout-negative", (b"w",), {"timeout": -1}, V),
    ("timeout-nan", (b"w",), {"timeout": NAN}, V),
    ("timeout-inf", (b"w",), {"timeout": INF}, V), ("timeout-str", (b"w",), {"timeout": "1"}, T),
    ("timeout-bool", (b"w",), {"timeout": True}, T), ("on_data-int", (b"w",), {"on_data": 1}, T),
    ("on_warning-str", (b"w",), {"on_warning": "x"}, T),
    ("on_status-int", (b"w",), {"on_status": 2}, T),
    ("on_exception-bytes", (b"w",), {"on_exception": b"x"}, T),
    ("payload-over-max", (Over(len("fn") + 2),), {}, V),
]
NO_HANDLERS = [  # background submissions accept no per-event handlers nor timeout
    ("on_data", (b"w",), {"on_data": _nop}, T), ("timeout", (b"w",), {"timeout": 1}, T),
]
BAD_EPOCH = [
    ("epoch-2**63", (b"w", 2 ** 63), {}, V), ("epoch-below-int64", (b"w", -(2 ** 63) - 1), {}, V),
    ("epoch-float", (b"w", 1.5), {}, T), ("epoch-str", (b"w", "0"), {}, T),
    ("epoch-none", (b"w", None), {}, T), ("epoch-bool", (b"w", True), {}, T),
    ("payload-over-max", (Over(len("fn") + len("0") + 3), 0), {}, V),
]
BAD_TOKEN = [  # client ids and maxqueue's function: one word of the text protocol
    ("space", ("a b",), {}, V), ("newline", ("a\nb",), {}, V), ("cr", ("a\r",), {}, V),
    ("tab", ("a\tb",), {}, V), ("nul", ("a\0b",), {}, V), ("empty", ("",), {}, V),
    ("int", (5,), {}, T), ("none", (None,), {}, T),
]
BAD_CB = [("cb-int", (), {"cb": 5}, T)]

FOREGROUND = ["submit_job", "submit_job_high", "submit_job_low"]
BACKGROUND = ["submit_job_bg", "submit_job_high_bg", "submit_job_low_bg"]

GEARMAN_CALLS = [
    # 4. connection: methods and writable properties
    *rows("connect", (), [("host-int", (5,), {}, T), ("host-none", (None,), {}, T),
                          ("host-empty", ("",), {}, V), ("port-str", ("127.0.0.1", "4730"), {}, T),
                          ("port-float", ("127.0.0.1", 4730.0), {}, T),
                          ("port-bool", ("127.0.0.1", True), {}, T),
                          ("port-0", ("127.0.0.1", 0), {}, V),
                          ("port-65536", ("127.0.0.1", 65536), {}, V)]),
    *rows("connect_unix", (), [("path-int", (5,), {}, T), ("path-none", (None,), {}, T),
                               ("path-empty", ("",), {}, V), ("path-nul", ("/tmp/a\0b",), {}, V)]),
    *rows("disconnect", (), [("extra-arg", (1,), {}, T)]),
    *rows("reconnect", (), [("no-args", (), {}, T),
                            ("delay-negative", (True,), {"delay": -1}, V),
                            ("delay-nan", (True,), {"delay": NAN}, V),
                            ("delay-str", (True,), {"delay": "1"}, T),
                            ("max_attempts-negative", (True,), {"max_attempts": -1}, V),
                            ("max_attempts-float", (True,), {"max_attempts": 1.5}, T)]),
    *[pytest.param(assign(prop, value), exc, id=f"set-{prop}-{what}")
      for prop, what, value, exc in [
        ("connect_timeout", "negative", -1, V), ("connect_timeout", "str", "1", T),
        ("connect_timeout", "inf", INF, V), ("command_timeout", "nan", NAN, V),
        ("command_timeout", "none", None, T), ("keepalive", "negative", -0.5, V),
        ("keepalive", "bool", True, T), ("priority", "above-max", ev.EV_MAXPRI + 1, V),
        ("priority", "below-min", ev.EV_MINPRI - 1, V), ("priority", "str", "0", T),
        ("on_error", "int", 5, T), ("on_connect", "str", "x", T),
        ("on_disconnect", "bytes", b"", T), ("on_drain", "zero", 0, T),
        ("high_water", "negative", -1, V), ("high_water", "float", 1.5, T)]],
    # 5. client
    *rows("echo", (), [("int", (5,), {}, T), ("none", (None,), {}, T), ("list", ([b"x"],), {}, T),
                       ("cb-int", (b"x", 5), {}, T), ("payload-over-max", (Over(0),), {}, V)]),
    *[r for m in FOREGROUND for r in rows(m, (), BAD_FUNCTION, (b"w",))
      + rows(m, ("fn",), BAD_SUBMISSION + BAD_FOREGROUND)],
    *[r for m in BACKGROUND for r in rows(m, (), BAD_FUNCTION, (b"w",))
      + rows(m, ("fn",), BAD_SUBMISSION + NO_HANDLERS
             + [("payload-over-max", (Over(len("fn") + 2),), {}, V)])],
    *rows("submit_job_epoch", (), BAD_FUNCTION, (b"w", 0)),
    *rows("submit_job_epoch", ("fn",), BAD_EPOCH + [
        ("unique-64-bytes", (b"w", 0), {"unique": U64}, V),
        ("unique-nul", (b"w", 0), {"unique": "\0"}, V),
        ("workload-int", (5, 0), {}, T), ("cb-int", (b"w", 0, 5), {}, T),
        ("on_data", (b"w", 0), {"on_data": _nop}, T), ("timeout", (b"w", 0), {"timeout": 1}, T)]),
    *rows("get_status", (), [("handle-64-bytes", (H64, _nop), {}, V),
                             ("handle-empty", ("", _nop), {}, V),
                             ("handle-nul", ("H:t\0:1", _nop), {}, V),
                             ("handle-int", (5, _nop), {}, T),
                             ("cb-int", ("H:t:1", 5), {}, T), ("no-cb", ("H:t:1",), {}, T)]),
    *rows("get_status_unique", (), [("unique-64-bytes", (U64, _nop), {}, V),
                                    ("unique-empty", ("", _nop), {}, V),
                                    ("unique-nul", ("a\0b", _nop), {}, V),
                                    ("unique-int", (5, _nop), {}, T), ("cb-int", ("u", 5), {}, T)]),
    *rows("option", (), [("empty", ("",), {}, V), ("space", ("a b",), {}, V),
                         ("64-bytes", ("x" * 64,), {}, V), ("nul", ("a\0b",), {}, V),
                         ("int", (5,), {}, T), ("cb-int", ("exceptions", 5), {}, T)]),
    # 6. worker
    *rows("register_function", (), BAD_FUNCTION, (_nop,)),
    *rows("register_function", ("fn",), [("callback-none", (None,), {}, T),
                                         ("callback-int", (5,), {}, T),
                                         ("timeout-negative", (_nop,), {"timeout": -1}, V),
                                         ("timeout-nan", (_nop,), {"timeout": NAN}, V),
                                         ("timeout-str", (_nop,), {"timeout": "1"}, T)]),
    *rows("can_do", (), BAD_FUNCTION),
    *rows("can_do", ("fn",), [("timeout-negative", (), {"timeout": -1}, V),
                              ("timeout-str", (), {"timeout": "x"}, T)]),
    *rows("cant_do", (), BAD_FUNCTION),
    *rows("unregister_function", (), BAD_FUNCTION),
    *rows("reset_abilities", (), [("extra-arg", (1,), {}, T)]),
    *rows("set_client_id", (), BAD_TOKEN),
    *rows("work", (), [("on_idle-int", (5,), {}, T), ("concurrency-0", (), {"concurrency": 0}, V),
                       ("concurrency-negative", (), {"concurrency": -1}, V),
                       ("concurrency-str", (), {"concurrency": "2"}, T),
                       ("concurrency-float", (), {"concurrency": 2.0}, T),
                       ("concurrency-bool", (), {"concurrency": True}, T)]),
    *rows("work_one", (), [("on_idle-int", (5,), {}, T)]),
    *rows("work_stop", (), [("extra-arg", (1,), {}, T)]),
    *rows("grab_job", (), [("cb-none", (None,), {}, T), ("cb-int", (5,), {}, T),
                           ("no-cb", (), {}, T)]),
    *rows("all_yours", (), BAD_CB),
    # 7. admin
    *rows("admin", (), [("int", (5,), {}, T), ("none", (None,), {}, T),
                        ("lf", ("version\n",), {}, V),
                        ("cr", ("a\rb",), {}, V), ("nul", ("a\0b",), {}, V),
                        ("cb-int", ("version", 5), {}, T)]),
    *rows("server_status", (), BAD_CB),
    *rows("server_workers", (), BAD_CB),
    *rows("server_version", (), BAD_CB),
    *rows("shutdown_server", (), BAD_CB),
    *rows("maxqueue", (), [(f"func-{w}", a, kw, e) for w, a, kw, e in BAD_TOKEN], (1,)),
    *rows("maxqueue", ("fn",), [("size-negative", (-1,), {}, V), ("size-str", ("1",), {}, T),
                                ("size-float", (1.5,), {}, T), ("size-bool", (True,), {}, T),
                                ("size-none", (None,), {}, T), ("cb-int", (1, 5), {}, T)]),
]

# exceptions, grab_unique and reconnect take any truth value, as flags do.
CONSTRUCTOR = [pytest.param(kw, exc, id="-".join(f"{k}={v!r}" for k, v in kw.items())[:60])
               for kw, exc in [
    ({"host": 5}, T), ({"host": ""}, V), ({"port": "4730"}, T), ({"port": True}, T),
    ({"port": 0}, V), ({"port": 65536}, V),
    ({"host": None, "port": "4730"}, T), ({"host": None, "port": -1}, V),  # unused, still checked
    ({"host": None, "path": 5}, T), ({"host": None, "path": ""}, V),
    ({"host": None, "path": "/tmp/a\0b"}, V), ({"path": "/tmp/x.sock"}, V),  # host and path
    ({"loop": "default"}, T), ({"loop": object()}, T),
    ({"priority": ev.EV_MAXPRI + 1}, V), ({"priority": ev.EV_MINPRI - 1}, V),
    ({"priority": 1.0}, T),
    ({"keepalive": -1}, V), ({"keepalive": "1"}, T),
    ({"connect_timeout": -1}, V), ({"connect_timeout": NAN}, V), ({"connect_timeout": INF}, V),
    ({"connect_timeout": "1"}, T), ({"connect_timeout": True}, T),
    ({"command_timeout": -0.5}, V), ({"command_timeout": None}, T),
    ({"reconnect_delay": -1}, V), ({"reconnect_delay": "1"}, T),
    ({"max_reconnect_attempts": -1}, V), ({"max_reconnect_attempts": 1.5}, T),
    ({"client_id": "a b"}, V), ({"client_id": "a\nb"}, V), ({"client_id": "a\0b"}, V),
    ({"client_id": ""}, V), ({"client_id": 5}, T),
    ({"on_error": 5}, T), ({"on_connect": "x"}, T), ({"on_disconnect": b""}, T),
    ({"bogus": 1}, T),
]]

JOB_CALLS = [
    *rows("complete", (), [("int", (5,), {}, T), ("list", ([b"x"],), {}, T),
                           ("payload-over-max", (Over(len("H:t:1") + 1),), {}, V)]),
    *rows("exception", (), [("none", (None,), {}, T), ("int", (5,), {}, T), ("no-arg", (), {}, T),
                            ("payload-over-max", (Over(len("H:t:1") + 1),), {}, V)]),
    *rows("send_data", (), [("int", (5,), {}, T), ("none", (None,), {}, T),
                            ("payload-over-max", (Over(len("H:t:1") + 1),), {}, V)]),
    *rows("warning", (), [("float", (5.0,), {}, T),
                          ("payload-over-max", (Over(len("H:t:1") + 1),), {}, V)]),
    *rows("status", (), [("numerator-nul", ("1\0", 2), {}, V), ("one-arg", (1,), {}, T)]),
    *rows("fail", (), [("extra-arg", (1,), {}, T)]),
]

SIG = signal.SIGUSR1
EV_CALLS = [pytest.param(fn, exc, id=name) for name, fn, exc in [
    ("Loop-flags-str", lambda loop: ev.Loop("x"), T),
    ("Loop-flags-float", lambda loop: ev.Loop(1.5), T),
    ("io-fd-str", lambda loop: loop.io("x", ev.EV_READ, _nop), T),
    ("io-fd-negative", lambda loop: loop.io(-1, ev.EV_READ, _nop), V),
    ("io-events-str", lambda loop: loop.io(0, "r", _nop), T),
    ("io-events-0", lambda loop: loop.io(0, 0, _nop), V),
    ("io-events-unknown", lambda loop: loop.io(0, 0x100, _nop), V),
    ("io-callback-none", lambda loop: loop.io(0, ev.EV_READ, None), T),
    ("io-priority-above-max",
     lambda loop: loop.io(0, ev.EV_READ, _nop, priority=ev.EV_MAXPRI + 1), V),
    ("io-priority-str", lambda loop: loop.io(0, ev.EV_READ, _nop, priority="0"), T),
    ("timer-after-str", lambda loop: loop.timer("1", 0, _nop), T),
    ("timer-after-negative", lambda loop: loop.timer(-1, 0, _nop), V),
    ("timer-after-nan", lambda loop: loop.timer(NAN, 0, _nop), V),
    ("timer-after-inf", lambda loop: loop.timer(INF, 0, _nop), V),
    ("timer-repeat-negative", lambda loop: loop.timer(1, -1, _nop), V),
    ("timer-repeat-none", lambda loop: loop.timer(1, None, _nop), T),
    ("timer-callback-int", lambda loop: loop.timer(1, 0, 5), T),
    ("timer-priority-below-min", lambda loop: loop.timer(1, 0, _nop, priority=ev.EV_MINPRI - 1), V),
    ("signal-signum-str", lambda loop: loop.signal("10", _nop), T),
    ("signal-signum-0", lambda loop: loop.signal(0, _nop), V),
    ("signal-signum-NSIG", lambda loop: loop.signal(signal.NSIG, _nop), V),
    ("signal-callback-none", lambda loop: loop.signal(SIG, None), T),
    ("prepare-callback-none", lambda loop: loop.prepare(None), T),
    ("Io-loop-str", lambda loop: ev.Io(0, ev.EV_READ, "loop", _nop), T),
    ("Timer-loop-none", lambda loop: ev.Timer(1, 0, None, _nop), T),
    ("Signal-loop-object", lambda loop: ev.Signal(SIG, object(), _nop), T),
    ("Prepare-loop-none", lambda loop: ev.Prepare(None, _nop), T),
    ("timer.set-after-negative", lambda loop: loop.timer(1, 0, _nop).set(-1, 0), V),
    ("timer.set-repeat-str", lambda loop: loop.timer(1, 0, _nop).set(1, "0"), T),
    ("timer.repeat-negative", lambda loop: setattr(loop.timer(1, 0, _nop), "repeat", -1), V),
    ("io.set-fd-negative", lambda loop: loop.io(0, ev.EV_READ, _nop).set(-1, ev.EV_READ), V),
    ("io.set-events-0", lambda loop: loop.io(0, ev.EV_READ, _nop).set(0, 0), V),
    ("watcher.priority-above-max",
     lambda loop: setattr(loop.timer(1, 0, _nop), "priority", ev.EV_MAXPRI + 1), V),
    ("watcher.priority-str", lambda loop: setattr(loop.timer(1, 0, _nop), "priority", "0"), T),
    ("watcher.callback-int", lambda loop: setattr(loop.timer(1, 0, _nop), "callback", 5), T),
]]


# ===== The checks =====

def state(g):
    """Everything a refused call must leave as it was."""
    return (g.is_connected, g.reconnect_enabled, g.connect_timeout, g.command_timeout,
            g.keepalive, g.priority, g.on_error, g.on_connect, g.on_disconnect,
            g.pending_count, g.waiting_count, g.active_count, g.buffer_sizes)


def raises_without_copying(exc, fn, target):
    tracemalloc.start()
    try:
        with pytest.raises(exc):
            fn(target)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024, f"{peak} bytes allocated: a payload was copied"


ECHO = (req(16, b"sync"), res(17, b"sync"))


def connected_to(loop, srv, **kw):
    ups = []
    g = Gearman(srv.host, srv.port, loop=loop, on_connect=lambda: ups.append(1), **kw)
    run_until(loop, lambda: ups, what="the connection to the fake server")
    return g


@pytest.mark.parametrize("fn, exc", GEARMAN_CALLS)
def test_gearman_call(loop, fake_server, fn, exc):
    srv = fake_server(("recv", len(ECHO[0])), ("send", ECHO[1]), ("eof",))
    g = connected_to(loop, srv)
    before = state(g)
    raises_without_copying(exc, fn, g)
    assert state(g) == before
    round_trip(loop, g)
    g.disconnect()
    assert srv.finished.wait(5) and not srv.errors, srv.errors
    assert srv.received == ECHO[0]  # the echo, and nothing before it
    # Arguments are checked before the state: the same error unconnected.
    with pytest.raises(exc):
        fn(Gearman(loop=loop))


@pytest.mark.parametrize("kw, exc", CONSTRUCTOR)
def test_constructor(loop, kw, exc):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        args = {"host": "127.0.0.1", "port": listener.getsockname()[1], "loop": loop, **kw}
        with pytest.raises(exc):
            Gearman(**args)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection was even attempted


@pytest.mark.parametrize("fn, exc", JOB_CALLS)
def test_job_call(loop, fake_server, fn, exc):
    grab = req(9)
    done = req(13, b"H:t:1", b"ok")
    srv = fake_server(("recv", len(grab)), ("send", res(11, b"H:t:1", b"fn", b"work")),
                      ("recv", len(done)), ("eof",))
    g = connected_to(loop, srv)
    got = []
    g.grab_job(lambda job, err: got.append((job, err)))
    run_until(loop, lambda: got, what="JOB_ASSIGN")
    job, err = got[0]
    assert err is None and job.workload == b"work"
    raises_without_copying(exc, fn, job)
    assert not job.finished
    job.complete(b"ok")  # the job still works, and this is the only packet it sent
    run_until(loop, lambda: len(srv.received) >= len(grab + done), what="WORK_COMPLETE")
    g.disconnect()
    assert srv.finished.wait(5) and not srv.errors, srv.errors
    assert srv.received == grab + done


@pytest.mark.parametrize("fn, exc", EV_CALLS)
def test_ev_call(loop, fn, exc):
    with pytest.raises(exc):
        fn(loop)
    assert loop.start(ev.EVRUN_NOWAIT) is False  # no watcher was left started


def test_table_covers_every_entry_point():
    # The table is the point of this file: every public method has rows, and
    # so does every writable property.
    named = {p.id.split("-")[0] for p in GEARMAN_CALLS}
    props = {p.id.split("-")[1] for p in GEARMAN_CALLS if p.id.startswith("set-")}
    methods = {n for n in dir(Gearman) if not n.startswith("_") and callable(getattr(Gearman, n))}
    writable = {n for n in dir(Gearman) if isinstance(getattr(Gearman, n), property)
                and getattr(Gearman, n).fset is not None}
    assert methods - named == set() and writable - props == set()
    job_methods = {n for n in dir(Job) if not n.startswith("_") and callable(getattr(Job, n))}
    assert job_methods - {p.id.split("-")[0] for p in JOB_CALLS} == set()
    print(f"bad-input table: {len(GEARMAN_CALLS)} Gearman calls, {len(CONSTRUCTOR)} constructor"
          f" cases, {len(JOB_CALLS)} Job calls, {len(EV_CALLS)} ev calls")
