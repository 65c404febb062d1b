"""What a new user tripped over (issue 16), each checked against the real
thing: keepalive in fractions of a second, the log line of a refused
connect, an ``async def`` handed to the libev worker."""
from __future__ import annotations

import logging
import socket

import pytest

from gearman_ev import Gearman
from tests.conftest import round_trip, run_until


@pytest.mark.parametrize("seconds, idle", [(0.5, 1), (1.4, 1), (2.6, 3)])
def test_fractional_keepalive_turns_keepalive_on(loop, gearmand, seconds, idle):
    g = Gearman(gearmand.host, gearmand.port, loop=loop, keepalive=seconds)
    round_trip(loop, g)
    sock = g._driver._sock  # the kernel's view is the only one that matters here
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == idle
    assert g.keepalive == seconds
    g.keepalive = 0
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    g.disconnect()


def test_refused_connect_is_logged_once_with_the_server(loop, caplog):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    got = []
    g = Gearman("127.0.0.1", port, loop=loop)
    g.echo(b"x", lambda r, e: got.append(e))
    with caplog.at_level(logging.WARNING, logger="gearman_ev"):
        run_until(loop, lambda: got, what="the refusal")
    assert got == ["disconnected"]
    messages = [r.getMessage() for r in caplog.records if r.name == "gearman_ev"]
    assert messages == [f"127.0.0.1:{port}: connect: Connection refused"]


def test_async_def_worker_is_refused_with_a_pointer(loop):
    async def work(job):
        return b""

    g = Gearman(loop=loop)
    with pytest.raises(TypeError, match="gearman_ev.aio"):
        g.register_function("f", work)
    assert g.waiting_count == 0
