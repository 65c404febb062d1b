"""The client half (API.md 2-5, 8) against the real gearmand: connecting and
its failures, echo, every submit variant with per-event handlers, priorities,
pipelining, coalescing, status, job timeouts, exceptions, the packet cap,
argument checks, and command_timeout."""
from __future__ import annotations

import array
import socket
import struct
import threading
import time

import pytest

from gearman_ev import MAX_PACKET, Gearman, GearmanError, ev
from gearman_ev._gearmand import LocalGearmand
from tests.conftest import ask, round_trip, run_until

# ===== Helpers =====

def connected(loop, g):
    """Wait until g's connection is established (an echo got through)."""
    round_trip(loop, g)


def collector():
    """A cb that records every call, for exactly-once checks."""
    calls = []

    def cb(result, err):
        calls.append((result, err))
    cb.calls = calls
    return cb


def upper_worker(new, fname, seen=None):
    """A sync worker (on the same loop) returning the workload upper-cased."""
    worker = new()

    def run(job):
        if seen is not None:
            seen.append(job)
        return job.workload.upper()
    worker.register_function(fname, run)
    worker.work()
    return worker


def held_worker(new, fname, seen):
    """An async worker that keeps each job in ``seen`` until the test ends it."""
    worker = new()
    worker.register_function(fname, seen.append, async_=True)
    worker.work()
    return worker


def unused_port():
    """A loopback port nothing listens on (bound then closed at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_peer():
    """A listening socket that never accepts nor answers: the kernel completes
    the handshake and takes the request bytes, no reply ever comes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    yield srv.getsockname()[1]
    srv.close()


# ===== Connecting =====

def test_on_connect_fires_and_is_connected_while_connecting(loop, gearmand):
    ups = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop, on_connect=lambda: ups.append(1))
    # The non-blocking connect has only started: connecting counts as connected.
    assert g.is_connected
    run_until(loop, lambda: ups, what="on_connect")
    assert ups == [1]
    assert g.is_connected
    assert ask(loop, g.echo, b"x") == (b"x", None)
    g.disconnect()
    assert not g.is_connected
    assert ups == [1]


def test_connection_refused(loop):
    errors, downs = [], []
    g = Gearman("127.0.0.1", unused_port(), loop=loop, on_error=errors.append,
                on_disconnect=lambda: downs.append(1))
    queued = collector()
    g.echo(b"x", queued)           # made while connecting: waits, then drains
    g.submit_job("f", b"w", queued)
    run_until(loop, lambda: errors, what="on_error")
    assert errors == ["connect: Connection refused"]
    assert queued.calls == [(None, "disconnected")] * 2
    assert not g.is_connected
    assert downs == []             # never established: no on_disconnect
    with pytest.raises(GearmanError, match="^not connected$"):
        g.echo(b"x")


def test_connect_timeout(loop):
    # listen(0) takes one connection into its accept queue; while that queue
    # is full Linux drops further SYNs, so our connect neither succeeds nor fails.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        errors = []
        g = Gearman("127.0.0.1", port, loop=loop, connect_timeout=0.3, on_error=errors.append)
        queued = collector()
        g.echo(b"x", queued)
        run_until(loop, lambda: errors, what="connect timeout")
        assert errors == ["connect timeout"]
        assert queued.calls == [(None, "disconnected")]
        assert not g.is_connected
    finally:
        for s in fillers:
            s.close()
        srv.close()


def test_getaddrinfo_failure(loop):
    errors = []
    g = Gearman("no-such-host.invalid", 4730, loop=loop, on_error=errors.append)
    run_until(loop, lambda: errors, what="on_error")
    assert len(errors) == 1 and errors[0].startswith("getaddrinfo: ")
    assert len(errors[0]) > len("getaddrinfo: ")
    assert not g.is_connected


@pytest.mark.parametrize("call", [
    lambda g: g.echo(b"x"),
    lambda g: g.submit_job("f", b"w"),
    lambda g: g.submit_job_high("f", b"w"),
    lambda g: g.submit_job_low("f", b"w"),
    lambda g: g.submit_job_bg("f", b"w"),
    lambda g: g.submit_job_high_bg("f", b"w"),
    lambda g: g.submit_job_low_bg("f", b"w"),
    lambda g: g.submit_job_epoch("f", b"w", 0),
    lambda g: g.get_status("H:t:1", print),
    lambda g: g.get_status_unique("u", print),
    lambda g: g.option("exceptions"),
    lambda g: g.admin("version"),
    lambda g: g.server_status(),
    lambda g: g.server_workers(),
    lambda g: g.server_version(),
    lambda g: g.maxqueue("f", 1),
    lambda g: g.shutdown_server(),
    lambda g: g.grab_job(print),
    lambda g: g.all_yours(),
], ids=["echo", "submit_job", "submit_job_high", "submit_job_low", "submit_job_bg",
        "submit_job_high_bg", "submit_job_low_bg", "submit_job_epoch", "get_status",
        "get_status_unique", "option", "admin", "server_status", "server_workers",
        "server_version", "maxqueue", "shutdown_server", "grab_job", "all_yours"])
def test_unconfigured_object_refuses_requests(loop, call):
    g = Gearman(loop=loop)
    assert not g.is_connected
    with pytest.raises(GearmanError, match="^not connected$"):
        call(g)
    assert g.waiting_count == 0 and g.pending_count == 0


@pytest.mark.parametrize("call, exc", [
    (lambda g: g.echo(123), TypeError),
    (lambda g: g.echo(b"x", cb=1), TypeError),
    (lambda g: g.submit_job("f", 123), TypeError),
    (lambda g: g.submit_job("", b"w"), ValueError),
    (lambda g: g.submit_job_bg(["f"], b"w"), TypeError),
    (lambda g: g.submit_job_epoch("f", b"w", "now"), TypeError),
    (lambda g: g.get_status("x" * 64, print), ValueError),
    (lambda g: g.admin("a\nb"), ValueError),
    (lambda g: g.maxqueue("f", -1), ValueError),
], ids=["echo-type", "echo-cb", "submit-type", "submit-empty-func", "bg-type",
        "epoch-type", "status-long", "admin-lf", "maxqueue-neg"])
def test_argument_errors_win_over_not_connected(loop, call, exc):
    # Arguments are checked first, so a bad call fails the same way in every state.
    with pytest.raises(exc):
        call(Gearman(loop=loop))


def test_not_connected_after_disconnect_then_reconnect_by_hand(loop, new, gearmand):
    g = new()
    connected(loop, g)
    g.disconnect()
    with pytest.raises(GearmanError, match="^not connected$"):
        g.submit_job("f", b"w")
    g.connect(gearmand.host, gearmand.port)  # the same object connects again
    assert ask(loop, g.echo, b"again") == (b"again", None)


def test_on_connect_submissions_follow_session_setup(loop, new, fname, caplog):
    # OPTION_REQ exceptions is queued ahead of what on_connect submits, so a
    # job submitted from on_connect already gets WORK_EXCEPTION.
    worker = new(exceptions=True)
    worker.register_function(fname, boom)
    worker.work()
    out = []
    client = new(exceptions=True, on_connect=lambda: client.submit_job(
        fname, b"w", lambda r, e: out.append((r, e))))
    run_until(loop, lambda: out, what="the job from on_connect")
    assert out == [(None, "exception")]


def test_already_connected(loop, new, gearmand):
    g = new()
    assert g.is_connected  # still connecting
    with pytest.raises(GearmanError, match="^already connected$"):
        g.connect(gearmand.host, gearmand.port)
    connected(loop, g)
    with pytest.raises(GearmanError, match="^already connected$"):
        g.connect(gearmand.host, gearmand.port)
    with pytest.raises(GearmanError, match="^already connected$"):
        g.connect_unix("/nonexistent.sock")
    assert ask(loop, g.echo, b"still") == (b"still", None)


def test_connect_later_on_unconfigured_object(loop, gearmand):
    g = Gearman(loop=loop)
    g.connect(gearmand.host, gearmand.port)
    assert ask(loop, g.echo, b"late") == (b"late", None)
    g.disconnect()


def test_host_and_path_together(loop):
    with pytest.raises(ValueError, match=r"^cannot specify both 'host' and 'path'$"):
        Gearman("127.0.0.1", path="/tmp/x.sock", loop=loop)


@pytest.mark.parametrize("kw", [
    {"connect_timeout": -1}, {"command_timeout": -0.5}, {"keepalive": -1},
    {"reconnect_delay": -1.0}, {"max_reconnect_attempts": -1},
])
def test_negative_times_and_counts(loop, kw):
    with pytest.raises(ValueError):
        Gearman(loop=loop, **kw)


@pytest.mark.parametrize("prop", ["connect_timeout", "command_timeout", "keepalive"])
def test_negative_timeout_properties(loop, prop):
    g = Gearman(loop=loop)
    with pytest.raises(ValueError):
        setattr(g, prop, -0.1)
    setattr(g, prop, 1.5)  # seconds, as a float
    assert getattr(g, prop) == 1.5


def test_negative_reconnect_values(loop):
    g = Gearman(loop=loop)
    with pytest.raises(ValueError):
        g.reconnect(True, delay=-1)
    with pytest.raises(ValueError):
        g.reconnect(True, max_attempts=-1)


def test_disconnect_drains_pending_and_fires_on_disconnect_only(loop, gearmand, fname):
    events = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop,
                on_error=lambda e: events.append(("error", e)),
                on_disconnect=lambda: events.append(("on_disconnect",)))
    connected(loop, g)
    # An active foreground job (no worker: it has a handle but no result) ...
    g.submit_job(fname, b"w", lambda r, e: events.append(("job", r, e)))
    run_until(loop, lambda: g.active_count == 1, what="JOB_CREATED")
    # ... and requests sent but unanswered (disconnect before the loop runs).
    g.echo(b"x", lambda r, e: events.append(("echo", r, e)))
    g.get_status("H:t:1", lambda r, e: events.append(("status", r, e)))
    assert g.pending_count == 2
    g.disconnect()
    assert sorted(events[:3]) == sorted([("job", None, "disconnected"),
                                         ("echo", None, "disconnected"),
                                         ("status", None, "disconnected")])
    assert events[3:] == [("on_disconnect",)]
    assert not g.is_connected
    assert (g.pending_count, g.active_count, g.waiting_count) == (0, 0, 0)
    loop.start(ev.EVRUN_NOWAIT)  # nothing else may fire later
    assert len(events) == 4


def test_disconnect_while_connecting_drains_waiting(loop, gearmand):
    events = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop,
                on_error=lambda e: events.append(("error", e)),
                on_disconnect=lambda: events.append(("on_disconnect",)))
    g.echo(b"x", lambda r, e: events.append(("echo", r, e)))
    assert g.waiting_count == 1
    g.disconnect()
    assert events == [("echo", None, "disconnected")]
    assert g.waiting_count == 0 and not g.is_connected


def test_context_manager_disconnects(loop, gearmand, fname):
    job = collector()
    downs = []
    with Gearman(gearmand.host, gearmand.port, loop=loop,
                 on_disconnect=lambda: downs.append(1)) as g:
        connected(loop, g)
        g.submit_job(fname, b"w", job)
        run_until(loop, lambda: g.active_count == 1, what="JOB_CREATED")
    assert job.calls == [(None, "disconnected")]
    assert downs == [1]
    assert not g.is_connected


def test_ipv6_literal(loop):
    # The session server listens on 127.0.0.1 only: start one that listens on
    # ::1 only, so an answer proves the IPv6 path.
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    with LocalGearmand(host="::1", port=port) as server:
        g = Gearman("::1", server.port, loop=loop)
        assert ask(loop, g.echo, b"v6") == (b"v6", None)
        g.disconnect()


def test_localhost_name_resolves(loop, gearmand):
    g = Gearman("localhost", gearmand.port, loop=loop)
    # localhost may resolve to ::1 first: the next address is tried after a refusal.
    assert ask(loop, g.echo, b"name") == (b"name", None)
    g.disconnect()


# ===== Echo and payload types =====

@pytest.mark.parametrize("payload, expect", [
    (bytes(range(256)) * 4, bytes(range(256)) * 4),
    (b"\0\0\0", b"\0\0\0"),
    (b"", b""),
    ("h\u00e9llo \u2603 \0", "h\u00e9llo \u2603 \0".encode()),
    (bytearray(b"ba\0rr"), b"ba\0rr"),
    (memoryview(b"xxmemviewxx")[2:-2], b"memview"),
    (memoryview(b"a-b-c-")[::2], b"abc"),
    # A view of 4-byte items: what is sent is its bytes, not its item count.
    (memoryview(array.array("i", [1, 2, 3])), array.array("i", [1, 2, 3]).tobytes()),
], ids=["all-bytes", "nuls", "empty", "str", "bytearray", "memoryview", "strided", "int-items"])
def test_echo_round_trip(loop, new, payload, expect):
    g = new()
    result, err = ask(loop, g.echo, payload)
    assert err is None
    assert type(result) is bytes
    assert result == expect


def test_types_handed_back(loop, new, fname):
    client = new()
    seen = []
    upper_worker(new, fname, seen)
    handle, err = ask(loop, client.submit_job_bg, fname.encode(), bytearray(b"ab"))
    assert err is None and type(handle) is str
    run_until(loop, lambda: seen, what="the job")
    assert type(seen[0].function) is str and seen[0].function == fname
    assert type(seen[0].handle) is str and seen[0].handle == handle
    assert type(seen[0].workload) is bytes and seen[0].workload == b"ab"
    result, err = ask(loop, client.submit_job, fname, memoryview(b"mv\0"))
    assert (type(result), result, err) == (bytes, b"MV\0", None)


def test_non_ascii_function_name(loop, new, fname):
    name = f"\u00fc\u2603_{fname}"
    client, seen = new(), []
    upper_worker(new, name, seen)
    assert ask(loop, client.submit_job, name, b"x") == (b"X", None)
    assert seen[0].function == name


# ===== Submit variants =====

@pytest.mark.parametrize("method", ["submit_job", "submit_job_high", "submit_job_low"])
def test_foreground_variants(loop, new, fname, method):
    client = new()
    upper_worker(new, fname)
    assert ask(loop, getattr(client, method), fname, b"hello\0") == (b"HELLO\0", None)
    assert client.active_count == 0 and client.pending_count == 0


@pytest.mark.parametrize("method", ["submit_job_bg", "submit_job_high_bg", "submit_job_low_bg"])
def test_background_variants_run_on_worker(loop, new, fname, method):
    client, seen = new(), []
    handle, err = ask(loop, getattr(client, method), fname, b"bg work")
    assert err is None
    assert isinstance(handle, str) and handle.startswith("H:t:")
    assert client.active_count == 0  # background: nothing to wait for
    upper_worker(new, fname, seen)
    run_until(loop, lambda: seen, what="the background job on the worker")
    assert [(j.handle, j.workload) for j in seen] == [(handle, b"bg work")]


def test_epoch_in_the_past_runs_at_once(loop, new, fname):
    client, seen = new(), []
    upper_worker(new, fname, seen)
    connected(loop, client)
    handle, err = ask(loop, client.submit_job_epoch, fname, b"due", int(time.time()) - 1)
    assert err is None
    assert isinstance(handle, str) and handle.startswith("H:t:")
    # Well within the worker's 5 s re-grab: gearmand's NOOP wakes it for a due job.
    run_until(loop, lambda: seen, timeout=8, what="the epoch job on the worker")
    assert [(j.handle, j.workload) for j in seen] == [(handle, b"due")]


def test_per_event_handlers_in_order(loop, new, fname):
    client, jobs, events = new(), [], []
    held_worker(new, fname, jobs)

    client.submit_job(
        fname, b"w", lambda r, e: events.append(("cb", r, e)),
        on_data=lambda d: events.append(("data", d)),
        on_warning=lambda d: events.append(("warning", d)),
        on_status=lambda n, d: events.append(("status", n, d)),
        on_exception=lambda d: events.append(("exception", d)))
    run_until(loop, lambda: jobs, what="the job")
    job = jobs[0]
    job.send_data(b"d\0one")
    job.warning("careful")
    job.status(1, 3)
    job.send_data(bytearray(b"two"))
    job.status("2", "3")
    job.complete(b"result")
    run_until(loop, lambda: any(ev[0] == "cb" for ev in events), what="the result")
    assert events == [
        ("data", b"d\0one"),
        ("warning", b"careful"),
        ("status", "1", "3"),
        ("data", b"two"),
        ("status", "2", "3"),
        ("cb", b"result", None),
    ]


@pytest.mark.parametrize("method", ["submit_job_bg", "submit_job_high_bg",
                                    "submit_job_low_bg", "submit_job_epoch"])
@pytest.mark.parametrize("handler", ["on_data", "on_warning", "on_status", "on_exception",
                                     "timeout"])
def test_background_rejects_per_event_handlers(loop, method, handler):
    g = Gearman(loop=loop)
    args = ("f", b"w", 0) if method == "submit_job_epoch" else ("f", b"w")
    value = 1.0 if handler == "timeout" else print
    with pytest.raises(TypeError):
        getattr(g, method)(*args, None, **{handler: value})


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_priority_order(loop, new, fname, background):
    client = new()
    connected(loop, client)
    done = []
    if background:
        for method, w in (("submit_job_low_bg", b"low"), ("submit_job_bg", b"normal"),
                          ("submit_job_high_bg", b"high")):
            getattr(client, method)(fname, w, lambda h, e: done.append(e))
        run_until(loop, lambda: len(done) == 3, what="JOB_CREATED x3")
        assert done == [None] * 3
    else:
        for method, w in (("submit_job_low", b"low"), ("submit_job", b"normal"),
                          ("submit_job_high", b"high")):
            getattr(client, method)(fname, w, lambda r, e: done.append((r, e)))
        run_until(loop, lambda: client.active_count == 3, what="three handles")
    seen = []
    upper_worker(new, fname, seen)  # a sync worker takes one job at a time
    run_until(loop, lambda: len(seen) == 3, what="three jobs on the worker")
    assert [j.workload for j in seen] == [b"high", b"normal", b"low"]
    if not background:
        run_until(loop, lambda: len(done) == 3, what="three results")
        assert done == [(b"HIGH", None), (b"NORMAL", None), (b"LOW", None)]


# ===== Pipelining, event routing, counters =====

@pytest.mark.parametrize("when", ["connected", "connecting"])
def test_thousand_pipelined_jobs(loop, new, fname, when):
    upper_worker(new, fname)
    client = new()
    if when == "connected":
        connected(loop, client)
    results = {}
    n = 1000
    for i in range(n):
        w = f"job-{i}".encode()
        client.submit_job(fname, w, lambda r, e, w=w: results.setdefault(w, []).append((r, e)))
    if when == "connected":
        # All packed for one batched write, none answered yet.
        assert (client.pending_count, client.waiting_count, client.active_count) == (n, 0, 0)
    else:
        # Held until the connection is up.
        assert (client.pending_count, client.waiting_count, client.active_count) == (0, n, 0)
    run_until(loop, lambda: len(results) == n, timeout=20, what=f"{n} results")
    round_trip(loop, client)  # a duplicate would have arrived by now
    assert all(results[f"job-{i}".encode()] == [(f"JOB-{i}".encode(), None)] for i in range(n))
    assert (client.pending_count, client.active_count, client.waiting_count) == (0, 0, 0)


def test_waiting_requests_go_out_in_order(loop, gearmand, fname):
    order = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    assert g.is_connected and g.pending_count == 0
    g.echo(b"1", lambda r, e: order.append(("echo", r, e)))
    g.submit_job_bg(fname, b"w", lambda h, e: order.append(("bg", e)))
    g.get_status_unique("nope-" + fname[-40:], lambda r, e: order.append(("su", r["known"], e)))
    g.admin("version", lambda r, e: order.append(("version", e)))
    g.echo(b"2", lambda r, e: order.append(("echo", r, e)))
    assert g.waiting_count == 5 and g.pending_count == 0
    run_until(loop, lambda: len(order) == 5, what="five replies")
    assert order == [("echo", b"1", None), ("bg", None), ("su", False, None),
                     ("version", None), ("echo", b"2", None)]
    assert g.waiting_count == 0 and g.pending_count == 0
    g.disconnect()


def test_counters_follow_a_job(loop, new, fname):
    client, jobs = new(), []
    held_worker(new, fname, jobs)
    connected(loop, client)
    cb = collector()
    client.submit_job(fname, b"w", cb)
    # Sent, awaiting JOB_CREATED: pending, not yet active.
    assert (client.pending_count, client.active_count) == (1, 0)
    run_until(loop, lambda: jobs, what="the job")
    round_trip(loop, client)  # JOB_CREATED came before the echo reply
    assert (client.pending_count, client.active_count) == (0, 1)
    jobs[0].complete(b"r")
    run_until(loop, lambda: cb.calls, what="the result")
    assert cb.calls == [(b"r", None)]
    assert (client.pending_count, client.active_count, client.waiting_count) == (0, 0, 0)


# ===== Coalescing and status =====

def test_unique_coalescing_on_one_connection(loop, new, fname):
    client = new()
    connected(loop, client)
    a, b = collector(), collector()
    unique = "u-" + fname[-60:]
    unique = unique[:63]
    data_a, data_b = [], []
    client.submit_job(fname, b"first", a, unique=unique, on_data=data_a.append)
    client.submit_job(fname, b"second", b, unique=unique, on_data=data_b.append)
    run_until(loop, lambda: client.active_count == 2, what="two JOB_CREATED")
    st, err = ask(loop, client.get_status_unique, unique)
    assert err is None
    assert st["unique"] == unique and st["known"] is True and st["running"] is False
    assert st["client_count"] == 2 and type(st["client_count"]) is int

    jobs = []
    worker = held_worker(new, fname, jobs)
    run_until(loop, lambda: jobs, what="the coalesced job")
    job = jobs[0]
    assert job.workload == b"first"  # the second workload was discarded
    # gearmand sends each event once per attached submission; each gets its own.
    job.send_data(b"d")
    round_trip(loop, worker)
    round_trip(loop, client)
    assert data_a == [b"d"] and data_b == [b"d"]
    st, err = ask(loop, client.get_status, job.handle)
    assert err is None
    assert st == {"handle": job.handle, "known": True, "running": True,
                  "numerator": "0", "denominator": "0"}
    job.status(3, 7)
    round_trip(loop, worker)  # the server has taken the WORK_STATUS
    st, err = ask(loop, client.get_status, job.handle)
    assert (st["numerator"], st["denominator"]) == ("3", "7")
    job.complete(b"shared")
    run_until(loop, lambda: a.calls and b.calls, what="both results")
    round_trip(loop, client)
    assert a.calls == [(b"shared", None)] and b.calls == [(b"shared", None)]
    assert client.active_count == 0
    assert len(jobs) == 1
    st, err = ask(loop, client.get_status, job.handle)
    assert (st["known"], st["running"]) == (False, False)


def test_coalesced_submission_that_timed_out(loop, new, fname):
    # The first of two coalesced submissions times out; the second still gets
    # the result once, and the first's copy of it is dropped.
    client = new()
    connected(loop, client)
    a, b = collector(), collector()
    unique = ("ct-" + fname)[:63]
    client.submit_job(fname, b"w", a, unique=unique, timeout=0.2)
    client.submit_job(fname, b"w", b, unique=unique)
    run_until(loop, lambda: a.calls, what="job timeout")
    assert a.calls == [(None, "job timeout")]
    assert client.active_count == 1
    jobs = []
    held_worker(new, fname, jobs)
    run_until(loop, lambda: jobs, what="the job")
    jobs[0].complete(b"r")
    run_until(loop, lambda: b.calls, what="the result")
    round_trip(loop, client)
    assert a.calls == [(None, "job timeout")] and b.calls == [(b"r", None)]
    assert client.active_count == 0


def test_get_status_unknown_handle(loop, new):
    g = new()
    st, err = ask(loop, g.get_status, "H:t:987654321")
    assert err is None
    assert st == {"handle": "H:t:987654321", "known": False, "running": False,
                  "numerator": "0", "denominator": "0"}
    st, err = ask(loop, g.get_status_unique, b"never-submitted")
    assert err is None
    assert st == {"unique": "never-submitted", "known": False, "running": False,
                  "numerator": "0", "denominator": "0", "client_count": 0}


def test_get_status_of_queued_background_job(loop, new, fname):
    g = new()
    handle, err = ask(loop, g.submit_job_bg, fname, b"w")
    st, err = ask(loop, g.get_status, handle.encode())
    assert err is None
    assert st == {"handle": handle, "known": True, "running": False,
                  "numerator": "0", "denominator": "0"}


# ===== Job timeout =====

def test_job_timeout(loop, new, fname):
    client = new()
    connected(loop, client)
    cb = collector()
    client.submit_job(fname, b"late", cb, timeout=0.3)
    run_until(loop, lambda: client.active_count == 1, what="JOB_CREATED")
    run_until(loop, lambda: cb.calls, what="job timeout")
    assert cb.calls == [(None, "job timeout")]
    assert client.active_count == 0
    # The job is still queued at the server: a worker now runs it, and its
    # completion reaches the client but must not fire the callback again.
    seen = []
    worker = upper_worker(new, fname, seen)
    run_until(loop, lambda: seen, what="the late job")
    round_trip(loop, worker)  # its WORK_COMPLETE was processed ...
    round_trip(loop, client)  # ... and forwarded to the client before this reply
    assert cb.calls == [(None, "job timeout")]
    assert client.active_count == 0 and client.pending_count == 0


def test_job_timeout_before_job_created(loop, silent_peer):
    # The silent peer never answers SUBMIT_JOB: the deadline passes while the
    # request is still pending; the later drop must not fire the cb again.
    g = Gearman("127.0.0.1", silent_peer, loop=loop)
    cb = collector()
    g.submit_job("f", b"w", cb, timeout=0.2)
    run_until(loop, lambda: cb.calls, what="job timeout")
    assert cb.calls == [(None, "job timeout")]
    assert g.active_count == 0 and g.pending_count == 1
    g.disconnect()
    assert cb.calls == [(None, "job timeout")]
    assert g.pending_count == 0


def test_job_timeout_not_hit_by_a_fast_job(loop, new, fname):
    client = new()
    upper_worker(new, fname)
    cb = collector()
    client.submit_job(fname, b"quick", cb, timeout=30)
    run_until(loop, lambda: cb.calls, what="the result")
    assert cb.calls == [(b"QUICK", None)]


# ===== Exceptions =====

def boom(job):
    raise ValueError("boom \u2603")


def test_exception_with_option(loop, new, fname, caplog):
    client = new(exceptions=True)
    worker = new(exceptions=True)
    worker.register_function(fname, boom)
    worker.work()
    events = []
    client.submit_job(fname, b"w", lambda r, e: events.append(("cb", r, e)),
                      on_exception=lambda d: events.append(("exception", d)))
    run_until(loop, lambda: any(ev[0] == "cb" for ev in events), what="the exception")
    assert events == [("exception", "boom \u2603".encode()), ("cb", None, "exception")]
    round_trip(loop, client)
    assert len(events) == 2 and client.active_count == 0


def test_exception_without_client_option_is_job_failed(loop, new, fname, caplog):
    client = new()
    worker = new(exceptions=True)
    worker.register_function(fname, boom)
    worker.work()
    events = []
    client.submit_job(fname, b"w", lambda r, e: events.append(("cb", r, e)),
                      on_exception=lambda d: events.append(("exception", d)))
    run_until(loop, lambda: events, what="the failure")
    round_trip(loop, client)
    assert events == [("cb", None, "job failed")]
    assert client.active_count == 0


def test_option_exceptions_at_run_time(loop, new, fname, caplog):
    client = new()
    assert ask(loop, client.option, "exceptions") == (True, None)
    assert ask(loop, client.option, "no-such-option")[1].startswith("UNKNOWN_OPTION: ")
    worker = new(exceptions=True)
    worker.register_function(fname, boom)
    worker.work()
    assert ask(loop, client.submit_job, fname, b"w") == (None, "exception")


# ===== The packet cap =====

@pytest.fixture(scope="module")
def big():
    """One buffer of MAX_PACKET + 1 bytes, sliced by memoryview (no copies)."""
    return memoryview(bytes(MAX_PACKET + 1))


@pytest.mark.parametrize("method, fixed, nargs", [
    ("echo", (), 1),
    ("submit_job", ("f",), 3),
    ("submit_job_bg", ("f",), 3),
    ("submit_job_epoch", ("f",), 4),
])
def test_payload_cap(loop, big, method, fixed, nargs):
    g = Gearman(loop=loop)
    overhead = sum(len(a) for a in fixed) + (nargs - 1)
    if method == "submit_job_epoch":
        overhead += len("0")
    call = getattr(g, method)

    def submit(workload):
        if method == "submit_job_epoch":
            call(*fixed, workload, 0)
        else:
            call(*fixed, workload)
    # Exactly at the cap: passes the size check, then meets "not connected".
    with pytest.raises(GearmanError, match="^not connected$"):
        submit(big[:MAX_PACKET - overhead])
    with pytest.raises(ValueError) as info:
        submit(big[:MAX_PACKET - overhead + 1])
    assert str(info.value) == f"payload too large ({MAX_PACKET + 1} bytes, max {MAX_PACKET})"


def test_too_large_checked_before_io_when_connected(loop, new, big):
    g = new()
    connected(loop, g)
    with pytest.raises(ValueError, match=r"^payload too large \("):
        g.submit_job("f", big, unique="u")
    assert g.pending_count == 0
    assert ask(loop, g.echo, b"fine") == (b"fine", None)


def test_64_mib_round_trip(loop, new, fname):
    client = new()
    worker = new()
    worker.register_function(fname, lambda job: job.workload)
    worker.work()
    payload = bytes(range(256)) * (64 * 1024 * 1024 // 256)
    result, err = ask(loop, client.submit_job, fname, payload, timeout=30)
    assert err is None and len(result) == len(payload) and result == payload
    # Buffers that grew past 1 MiB go back to 16 KiB once drained (API.md 8).
    round_trip(loop, client)
    round_trip(loop, worker)
    assert client.buffer_sizes == (16384, 16384)
    assert worker.buffer_sizes == (16384, 16384)


# ===== Argument validation =====

GOOD = "fn"
U63, U64 = "u" * 63, "u" * 64
H63, H64 = "H:" + "1" * 61, "H:" + "1" * 62


@pytest.mark.parametrize("call, exc", [
    # function names
    (lambda g: g.submit_job("", b"w"), ValueError),
    (lambda g: g.submit_job(b"x" * 513, b"w"), ValueError),
    (lambda g: g.submit_job(b"x" * 512, b"w"), None),
    (lambda g: g.submit_job("a b", b"w"), ValueError),
    (lambda g: g.submit_job("a\tb", b"w"), ValueError),
    (lambda g: g.submit_job("a\nb", b"w"), ValueError),
    (lambda g: g.submit_job("a\0b", b"w"), ValueError),
    (lambda g: g.submit_job_bg("a b", b"w"), ValueError),
    (lambda g: g.submit_job_epoch("a\0b", b"w", 0), ValueError),
    (lambda g: g.submit_job(["f"], b"w"), TypeError),
    (lambda g: g.submit_job(5, b"w"), TypeError),
    # unique keys
    (lambda g: g.submit_job(GOOD, b"w", unique=U64), ValueError),
    (lambda g: g.submit_job(GOOD, b"w", unique=U63), None),
    (lambda g: g.submit_job_bg(GOOD, b"w", unique=U64), ValueError),
    (lambda g: g.submit_job_bg(GOOD, b"w", unique=U63.encode()), None),
    (lambda g: g.get_status_unique(U64, print), ValueError),
    (lambda g: g.get_status_unique(U63, print), None),
    (lambda g: g.submit_job(GOOD, b"w", unique=7), TypeError),
    # handles
    (lambda g: g.get_status(H64, print), ValueError),
    (lambda g: g.get_status(H63, print), None),
    (lambda g: g.get_status(5, print), TypeError),
    # epochs
    (lambda g: g.submit_job_epoch(GOOD, b"w", 2 ** 63), ValueError),
    (lambda g: g.submit_job_epoch(GOOD, b"w", -(2 ** 63) - 1), ValueError),
    (lambda g: g.submit_job_epoch(GOOD, b"w", 2 ** 63 - 1), None),
    (lambda g: g.submit_job_epoch(GOOD, b"w", -(2 ** 63)), None),
    (lambda g: g.submit_job_epoch(GOOD, b"w", 1.5), TypeError),
    (lambda g: g.submit_job_epoch(GOOD, b"w", "0"), TypeError),
    (lambda g: g.submit_job_epoch(GOOD, b"w", None), TypeError),
    # payloads and callbacks
    (lambda g: g.submit_job(GOOD, 123), TypeError),
    (lambda g: g.submit_job(GOOD, None), TypeError),
    (lambda g: g.submit_job(GOOD, [b"w"]), TypeError),
    (lambda g: g.submit_job_bg(GOOD, 1.0), TypeError),
    (lambda g: g.echo(None), TypeError),
    (lambda g: g.submit_job(GOOD, b"w", "not callable"), TypeError),
    (lambda g: g.submit_job_bg(GOOD, b"w", 42), TypeError),
    (lambda g: g.submit_job(GOOD, b"w", on_data=1), TypeError),
    (lambda g: g.submit_job(GOOD, b"w", on_status="x"), TypeError),
    (lambda g: g.get_status("H:t:1", 3), TypeError),
    (lambda g: g.echo(b"x", object()), TypeError),
    # job timeouts
    (lambda g: g.submit_job(GOOD, b"w", timeout=-1), ValueError),
    (lambda g: g.submit_job(GOOD, b"w", timeout="1"), TypeError),
    (lambda g: g.submit_job(GOOD, b"w", timeout=0.5), None),
    # client ids
    (lambda g: g.set_client_id("a b"), ValueError),
    (lambda g: g.set_client_id("a\tb"), ValueError),
    (lambda g: g.set_client_id(""), ValueError),
    (lambda g: g.set_client_id(5), TypeError),
])
def test_argument_validation(loop, call, exc):
    g = Gearman(loop=loop)
    # On an unconfigured object a call that passes every check meets
    # "not connected" (set_client_id needs no wire and just succeeds).
    if exc is None:
        with pytest.raises(GearmanError, match="^not connected$"):
            call(g)
    else:
        with pytest.raises(exc):
            call(g)


@pytest.mark.parametrize("client_id, exc", [
    ("a b", ValueError), ("a\nb", ValueError), ("tab\t", ValueError), (["x"], TypeError),
])
def test_client_id_in_constructor(loop, client_id, exc):
    with pytest.raises(exc):
        Gearman(loop=loop, client_id=client_id)


# ===== command_timeout =====

def test_command_timeout(loop, silent_peer):
    events = []
    g = Gearman("127.0.0.1", silent_peer, loop=loop, command_timeout=0.3,
                on_error=lambda e: events.append(("error", e)),
                on_disconnect=lambda: events.append(("on_disconnect",)))
    g.echo(b"x", lambda r, e: events.append(("echo", r, e)))
    g.submit_job("f", b"w", lambda r, e: events.append(("job", r, e)))
    g.admin("version", lambda r, e: events.append(("version", r, e)))
    run_until(loop, lambda: any(ev[0] == "error" for ev in events), what="command timeout")
    assert events == [
        ("echo", None, "command timeout"),
        ("job", None, "command timeout"),
        ("version", None, "command timeout"),
        ("on_disconnect",),
        ("error", "command timeout"),
    ]
    assert not g.is_connected


@pytest.fixture
def created_then_silent():
    """A peer that answers the first SUBMIT_JOB with JOB_CREATED "H:fake:1"
    and then never replies again (a client's timer is under test here)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def serve():
        srv.settimeout(5)
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            head = b""
            while len(head) < 12:
                head += conn.recv(12 - len(head))
            _magic, _cmd, size = struct.unpack(">4sII", head)
            body = b""
            while len(body) < size:
                body += conn.recv(size - len(body))
            handle = b"H:fake:1"
            conn.sendall(struct.pack(">4sII", b"\0RES", 8, len(handle)) + handle)
            stop.wait(10)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join(10)
    srv.close()


def test_command_timeout_fails_active_jobs_too(loop, created_then_silent):
    events = []
    g = Gearman("127.0.0.1", created_then_silent, loop=loop, command_timeout=0.3,
                on_error=lambda e: events.append(("error", e)))
    g.submit_job("f", b"w", lambda r, e: events.append(("job", r, e)))
    run_until(loop, lambda: g.active_count == 1, what="JOB_CREATED")
    # A running job alone is not bounded by command_timeout ...
    assert g.pending_count == 0
    # ... but once a request awaits its reply, the silence fails everything.
    g.echo(b"x", lambda r, e: events.append(("echo", r, e)))
    run_until(loop, lambda: any(ev[0] == "error" for ev in events), what="command timeout")
    assert sorted(events[:2]) == [("echo", None, "command timeout"),
                                  ("job", None, "command timeout")]
    assert events[2:] == [("error", "command timeout")]
    assert (g.active_count, g.pending_count) == (0, 0)


def test_command_timeout_idle_connection_stays_up(loop, silent_peer):
    # Nothing awaits a reply: silence is fine.
    errors = []
    g = Gearman("127.0.0.1", silent_peer, loop=loop, command_timeout=0.1,
                on_error=errors.append)
    done = []
    loop.timer(0.4, 0, lambda w, r: done.append(1)).start()
    run_until(loop, lambda: done, what="0.4 s of idleness")
    assert errors == [] and g.is_connected
    g.disconnect()
