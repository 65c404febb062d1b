"""A burst of requests made between two loop iterations (a for loop of
submits) reaches the server while the caller is still making it: the
session writes once the burst passes FIRST_PIECE bytes, then every
EARLY_WRITE bytes as it grows, so that the
server works in parallel with the caller (issue 17), and the rest goes out
before the loop polls as always. Checked against a real gearmand, whose
status counts the jobs it has, on the libev and asyncio front-ends, and in
memory for how often the session asks for an early write."""
from __future__ import annotations

import asyncio
import socket
import time

from gearman_ev import Gearman, aio, errors
from gearman_ev._codec import CMD
from gearman_ev._session import EARLY_WRITE, FIRST_PIECE, K_SUBMIT_BG, Entry
from tests.conftest import round_trip, run_until
from tests.test_session import new_session

BURST = 4000            # background jobs in one burst
PAYLOAD = b"p" * 100    # 4000 x ~140 bytes: about 8 x EARLY_WRITE


def queued(address, func):
    """The server's count of ``func`` jobs, asked on a connection of its own
    (not through the loop under test, which is not running)."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"status\n")
        reply = b""
        while not (reply == b".\n" or reply.endswith(b"\n.\n")):
            chunk = sock.recv(65536)
            assert chunk, "server closed the admin connection"
            reply += chunk
    for line in reply.decode().splitlines():
        fields = line.split("\t")
        if fields[0] == func and len(fields) == 4:
            return int(fields[1])
    return 0


def wait_for_queued(address, func, at_least, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = queued(address, func)
        if got >= at_least or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def test_burst_reaches_gearmand_before_the_loop_runs(loop, new, gearmand, fname):
    g = new()
    round_trip(loop, g)  # connected: requests go to the codec, not the wait list
    handles = []
    for _ in range(BURST):
        g.submit_job_bg(fname, PAYLOAD, lambda handle, err: handles.append((handle, err)))
    # The loop has not run since the burst began: only early writes can
    # have taken these jobs to the server. Most of the burst is there (the
    # last piece, under EARLY_WRITE bytes, waits for the loop).
    early = wait_for_queued((gearmand.host, gearmand.port), fname, BURST // 2)
    assert BURST // 2 <= early <= BURST
    assert not handles  # replies wait for the loop, as always
    run_until(loop, lambda: len(handles) == BURST, timeout=20, what="every JOB_CREATED")
    assert all(err is None and handle for handle, err in handles)
    assert len(set(h for h, _ in handles)) == BURST
    assert queued((gearmand.host, gearmand.port), fname) == BURST


def test_burst_on_asyncio_reaches_gearmand_before_the_loop_runs(gearmand, fname):
    address = (gearmand.host, gearmand.port)

    async def main():
        g = aio.AsyncGearman(gearmand.host, gearmand.port)
        await asyncio.wait_for(g.wait_connected(), 10)
        try:
            # Sent at the call: the loop does not run until the gather.
            replies = [g.submit_job_bg(fname, PAYLOAD) for _ in range(BURST)]
            early = wait_for_queued(address, fname, BURST // 2)
            handles = await asyncio.wait_for(asyncio.gather(*replies), 20)
            return early, handles
        finally:
            await g.close()
    early, handles = asyncio.run(main())
    assert BURST // 2 <= early <= BURST
    assert len(set(handles)) == BURST
    assert queued(address, fname) == BURST


def test_session_asks_for_an_early_write_once_per_piece():
    s, driver, _log = new_session()
    size = 14 + len(b"f") + len(PAYLOAD)  # one SUBMIT_JOB_BG packet
    for _ in range(BURST):
        s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", PAYLOAD, Entry(K_SUBMIT_BG, None))
    # The memory driver writes nothing, so the session asked once past
    # FIRST_PIECE, then once per EARLY_WRITE bytes more: not once per request.
    total = BURST * size
    assert driver.early_writes == 1 + (total - FIRST_PIECE - 1) // EARLY_WRITE
    s.take_output()
    s.written(0)  # all written: the next burst starts with a first piece again
    driver.early_writes = 0
    for _ in range(FIRST_PIECE // size):  # under the first piece: no early write
        s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", PAYLOAD, Entry(K_SUBMIT_BG, None))
    assert driver.early_writes == 0
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", PAYLOAD, Entry(K_SUBMIT_BG, None))
    assert driver.early_writes == 1


def test_an_early_write_that_fails_is_reported_from_the_loop(loop, own_gearmand, fname):
    # An early write runs inside the caller's submit: a failure there must
    # not drop the connection under the caller (callbacks running inside
    # its call, later calls refused); the loop reports it, as before.
    events = []
    g = Gearman(own_gearmand.host, own_gearmand.port, loop=loop,
                on_error=lambda err: events.append(("error", err)))
    try:
        round_trip(loop, g)
        own_gearmand.proc.kill()  # the server is gone: writes meet a reset
        own_gearmand.proc.wait(10)
        for i in range(200):  # 200 KiB: early writes at 8 KiB, 72 KiB, 136 KiB...
            g.submit_job_bg(fname, b"k" * 1024, lambda handle, err, i=i: events.append((i, err)))
        assert events == []  # nothing ran inside the calls, none was refused
        run_until(loop, lambda: len(events) >= 201, timeout=10, what="the drop")
        assert sorted(e for e in events if e[0] != "error") == \
            [(i, errors.DISCONNECTED) for i in range(200)]
        assert [e[0] for e in events].count("error") == 1
    finally:
        g.disconnect()
