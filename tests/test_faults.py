"""Faults under load (issue 7): gearmand killed with SIGKILL and restarted
again and again while a client pipelines jobs and a worker serves them, and a
server that stops reading while the client queues 64 MiB. (A blackholed
connect honouring connect_timeout is test_client.py::test_connect_timeout.)"""
from __future__ import annotations

import collections
import socket
import tracemalloc

import pytest

from gearman_ev import Gearman
from tests.conftest import round_trip, run_until
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res

KiB, MiB = 1024, 1024 * 1024
REST = (16 * KiB, 16 * KiB)
# What a drop may look like from either side, and the failed attempts while down.
DROP_ERRORS = {"connection closed by server", "read error: Connection reset by peer",
               "write error: Connection reset by peer", "write error: Broken pipe",
               "connect: Connection refused"}


# ===== SIGKILL and restart under load =====

@pytest.mark.parametrize("kills", [pytest.param(2, id="fast"),
                                   pytest.param(10, id="slow", marks=pytest.mark.slow)])
def test_sigkill_and_restart_under_load(loop, own_gearmand, fname, kills):
    server = own_gearmand
    errors = collections.Counter()
    ups, downs = [0], [0]

    def make(**kw):
        return Gearman(server.host, server.port, loop=loop, reconnect=True,
                       reconnect_delay=0.02, on_error=lambda e: errors.update((e,)), **kw)
    worker = make()
    worker.register_function(fname, lambda job: job.workload.upper())
    worker.work()
    client = make(on_connect=lambda: ups.__setitem__(0, ups[0] + 1),
                  on_disconnect=lambda: downs.__setitem__(0, downs[0] + 1))
    calls = []            # one list of (result, err) per submission
    state = {"results": 0, "killed": 0, "restarted": 0, "feed": True}
    in_flight_at_kill = []

    def submit():
        i = len(calls)
        calls.append([])

        def cb(result, err):
            calls[i].append((result, err))
            if err is None:
                state["results"] += 1
        client.submit_job(fname, b"job-%d" % i, cb)

    def outstanding():
        return sum(1 for c in calls if not c)

    def feed(w, revents):
        # Keep a few hundred jobs in flight; while the server is down they
        # wait in the client's queue and go out on reconnect.
        if state["feed"]:
            for _ in range(min(20, 400 - outstanding())):
                submit()

    def restart(w, revents):
        server.start()
        state["restarted"] += 1

    def maybe_kill(w, revents):
        # Once the worker has served a fair share since the last restart,
        # kill gearmand with the pipeline full, from inside the loop.
        if state["killed"] == state["restarted"] < kills and state["results"] >= 100:
            in_flight_at_kill.append(client.pending_count + client.active_count)
            server.kill()
            state["killed"] += 1
            state["results"] = 0
            loop.timer(0.05, 0, restart).start()
    feeder = loop.timer(0.001, 0.001, feed)
    killer = loop.timer(0.005, 0.005, maybe_kill)
    feeder.start()
    killer.start()
    try:
        for k in range(1, kills + 1):
            run_until(loop, lambda k=k: state["restarted"] == k, timeout=20,
                      what=f"kill and restart #{k} (the worker serving again before it)")
        # After the last restart the worker resumes by itself and new jobs complete.
        run_until(loop, lambda: state["results"] >= 100, timeout=20,
                  what="results after the last restart")
    finally:
        feeder.stop()
        killer.stop()
    state["feed"] = False
    final = len(calls)
    for _ in range(50):
        submit()
    run_until(loop, lambda: outstanding() == 0, timeout=20, what="every callback")
    round_trip(loop, client)  # a late duplicate would have arrived by now

    assert state["killed"] == kills and all(n > 0 for n in in_flight_at_kill), in_flight_at_kill
    assert all(len(c) == 1 for c in calls), "a callback fired twice"
    outcomes = collections.Counter()
    for i, [(result, err)] in enumerate(calls):
        assert (result, err) in ((b"JOB-%d" % i, None), (None, "disconnected")), (i, result, err)
        outcomes[err] += 1
    assert all(c == [(b"JOB-%d" % i, None)] for i, c in enumerate(calls[final:], final))
    assert outcomes["disconnected"] >= 1
    assert (ups[0], downs[0]) == (kills + 1, kills)
    assert set(errors) <= DROP_ERRORS, errors
    print(f"{kills} kills survived: {len(calls)} jobs, {outcomes[None]} results, "
          f"{outcomes['disconnected']} disconnected, in flight at each kill {in_flight_at_kill}")
    client.disconnect()
    worker.disconnect()


# ===== A server that stops reading =====

@pytest.fixture
def stalled_peer():
    """A listener whose one connection answers one echo, then reads no more."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    peer = {"listener": listener, "conn": None}
    yield peer
    if peer["conn"] is not None:
        peer["conn"].close()
    listener.close()


def test_server_that_stops_reading(loop, stalled_peer):
    listener = stalled_peer["listener"]
    g = Gearman(*listener.getsockname(), loop=loop, on_error=lambda e: None)
    first = []
    g.echo(b"hello", lambda r, e: first.append((r, e)))

    def accepted():
        try:
            stalled_peer["conn"] = listener.accept()[0]
        except BlockingIOError:
            return False
        return True
    run_until(loop, accepted, what="the connection")
    conn = stalled_peer["conn"]
    conn.setblocking(False)
    got = bytearray()

    def request_in():
        try:
            got.extend(conn.recv(64))
        except BlockingIOError:
            pass
        return len(got) >= len(req(16, b"hello"))
    run_until(loop, request_in, what="the first echo request")
    assert got == req(16, b"hello")  # the peer works, once
    conn.sendall(res(17, b"hello"))
    run_until(loop, lambda: first, what="the first echo")
    assert first == [(b"hello", None)]

    # 64 echoes of 1 MiB, each a view of one buffer: half queued at once, the
    # rest from a loop timer while the kernel pushes back.
    payload = memoryview(bytes(range(256)) * (MiB // 256))
    count, calls = 64, []
    wire = count * len(req(16, b"")) + count * MiB
    limit = 16 * KiB
    while limit < wire:  # the buffer grows by doubling: at most this
        limit *= 2

    def echo():
        i = len(calls)
        calls.append([])
        g.echo(payload, lambda r, e: calls[i].append((r, e)))
    tracemalloc.start()
    try:
        for _ in range(count // 2):
            echo()

        def more(w, revents):
            echo()
            if len(calls) == count:
                w.stop()
        loop.timer(0.001, 0.001, more).start()
        run_until(loop, lambda: len(calls) == count, what="the rest queued")
        copied = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    queued = g.buffer_sizes
    # Run on against the stalled peer: nothing grows any further.
    ticks = []
    loop.timer(0.01, 0.01, lambda w, r: ticks.append(1) if len(ticks) < 20 else w.stop()).start()
    run_until(loop, lambda: len(ticks) == 20, what="20 ticks against a stalled peer")
    print(f"stalled peer: write capacity {queued[1] // MiB} MiB for {wire / MiB:.3f} MiB queued"
          f" (limit {limit // MiB} MiB), Python peak while queuing {copied // KiB} KiB")
    assert 16 * KiB < queued[1] <= limit
    assert g.buffer_sizes == queued
    assert queued[0] == 16 * KiB  # reads stay bounded: nothing arrives
    assert copied < MiB  # the payload went to the C buffer, never copied in Python
    assert g.pending_count == count and all(c == [] for c in calls)

    g.disconnect()
    assert calls == [[(None, "disconnected")]] * count
    assert g.buffer_sizes == REST
    assert not g.is_connected
