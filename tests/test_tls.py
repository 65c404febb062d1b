"""TLS to gearmand through a real terminator (API.md 15): a CA and server
certificate made by the openssl command, socat OPENSSL-LISTEN in front of
the real gearmand (tests/fix_tls.py)."""
from __future__ import annotations

import gc
import os
import socket
import ssl
import subprocess
import threading
import time
import weakref

import pytest

from gearman_ev import Gearman, GearmanError, errors, ev
from tests.conftest import ask, run_until
from tests.fix_tls import TLSTerminator, client_context


@pytest.fixture
def tls(tls_gearmand, loop):
    """Make TLS Gearman objects on the terminator; disconnected at teardown."""
    made = []

    def make(**kw):
        kw.setdefault("ssl", tls_gearmand.context())
        g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, **kw)
        made.append(g)
        return g
    yield make
    for g in made:
        g.disconnect()


def serve(g, fname, transform=lambda w: w[::-1]):
    g.register_function(fname, lambda job: transform(job.workload))
    g.work()


# ===== Round trips =====

def test_round_trip(tls, new, loop, fname):
    connected = []
    g = tls(on_connect=lambda: connected.append(True))
    serve(new(), fname)
    assert ask(loop, g.echo, b"over\0tls") == (b"over\0tls", None)
    assert connected == [True]
    assert ask(loop, g.submit_job, fname, b"secret") == (b"terces", None)
    version, err = ask(loop, g.server_version)
    assert err is None and version.startswith("OK ")
    status, err = ask(loop, g.server_status)
    assert err is None and f"{fname}\t0\t0\t1" in status.splitlines()


def test_ten_thousand_pipelined_jobs(tls, new, loop, fname):
    g = tls()
    serve(new(), fname, lambda w: b"r" + w)
    results = {}
    for i in range(10_000):
        w = str(i).encode()
        g.submit_job(fname, w, lambda r, e, i=i: results.__setitem__(i, (r, e)))
    run_until(loop, lambda: len(results) == 10_000, timeout=60, what="10,000 results")
    assert all(results[i] == (b"r" + str(i).encode(), None) for i in range(10_000))
    assert g.pending_count == 0 and g.active_count == 0


def test_large_payloads_both_ways(tls, new, loop, fname):
    # Many TLS records per packet, and writes the kernel takes in parts.
    g = tls()
    serve(new(), fname, lambda w: w.upper())
    big = os.urandom(3 * 1024 * 1024).hex().encode()  # 6 MiB of [0-9a-f]
    results = []
    for _ in range(3):
        g.submit_job(fname, big, lambda r, e: results.append((r, e)))
    run_until(loop, lambda: len(results) == 3, timeout=60, what="large results")
    assert results == [(big.upper(), None)] * 3


def test_a_worker_over_tls(tls, new, loop, fname):
    worker = tls(client_id="tls-worker", exceptions=True)
    serve(worker, fname)
    client = new()
    results = {}
    for w in (b"one", b"two", b"three"):
        client.submit_job(fname, w, lambda r, e, w=w: results.__setitem__(w, (r, e)))
    run_until(loop, lambda: len(results) == 3, what="jobs served over TLS")
    assert results == {w: (w[::-1], None) for w in (b"one", b"two", b"three")}
    workers, err = ask(loop, client.server_workers)
    assert err is None
    assert any(line.endswith(f" tls-worker : {fname}") for line in workers.splitlines())


def test_over_a_unix_socket_bridge(tls_gearmand, loop, tmp_path):
    # TLS end to end through a local socket that leads to the terminator.
    path = str(tmp_path / "tls.sock")
    bridge = subprocess.Popen(["socat", f"UNIX-LISTEN:{path},fork",
                               f"TCP:{tls_gearmand.host}:{tls_gearmand.port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not os.path.exists(path):
            assert time.monotonic() < deadline, "socat did not create its socket"
            time.sleep(0.01)
        g = Gearman(path=path, loop=loop, ssl=tls_gearmand.context(),
                    server_hostname="localhost")
        assert ask(loop, g.echo, b"unix+tls") == (b"unix+tls", None)
        g.disconnect()
    finally:
        bridge.terminate()
        bridge.wait(timeout=5)


# ===== Failures =====

@pytest.mark.parametrize("make_ctx, hostname, want", [
    (lambda pki: client_context(pki.other_ca), None,
     "tls: certificate verify failed: unable to get local issuer certificate"),
    (lambda pki: client_context(pki.ca), "wrong.example",
     "tls: certificate verify failed: Hostname mismatch, certificate is not valid for "
     "'wrong.example'."),
], ids=["wrong-ca", "wrong-name"])
def test_certificate_failures(tls_gearmand, pki, loop, make_ctx, hostname, want):
    errors, replies, connected = [], [], []
    g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, ssl=make_ctx(pki),
                server_hostname=hostname, on_error=errors.append,
                on_connect=lambda: connected.append(True))
    g.echo(b"x", lambda r, e: replies.append(e))
    run_until(loop, lambda: errors and replies, what="the certificate failure")
    assert errors == [want]
    assert replies == ["disconnected"] and connected == []
    assert not g.is_connected


@pytest.mark.parametrize("make_ctx, hostname, want", [
    (lambda pki: client_context(pki.other_ca), None,
     "tls: certificate verify failed: unable to get local issuer certificate"),
    (lambda pki: client_context(pki.ca), "wrong.example",
     "tls: certificate verify failed: Hostname mismatch, certificate is not valid for "
     "'wrong.example'."),
], ids=["wrong-ca", "wrong-name"])
def test_certificate_failures_read_the_same_on_asyncio(tls_gearmand, pki, make_ctx, hostname,
                                                       want):
    import asyncio

    from gearman_ev.aio import AsyncGearman
    errors = []

    async def main():
        g = AsyncGearman(tls_gearmand.host, tls_gearmand.port, ssl=make_ctx(pki),
                         server_hostname=hostname, on_error=errors.append)
        deadline = asyncio.get_running_loop().time() + 10
        while not errors and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await g.close()
    asyncio.run(main())
    assert errors[:1] == [want]  # word for word as Gearman's (test_certificate_failures)


def test_the_default_context_checks_against_the_system_cas(tls_gearmand, loop):
    errors = []
    g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, ssl=True,
                on_error=errors.append)
    run_until(loop, lambda: errors, what="the certificate failure")
    assert errors[0].startswith("tls: certificate verify failed: ")
    assert not g.is_connected


def test_a_plaintext_client_on_the_tls_port_fails_within_its_timeouts(tls_gearmand, loop):
    errors, replies = [], []
    g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, connect_timeout=2,
                command_timeout=2, on_error=errors.append)
    g.echo(b"x", lambda r, e: replies.append(e))
    run_until(loop, lambda: errors, timeout=5, what="an error")
    # socat's OpenSSL gives up on what is no handshake and drops the
    # connection: a reset here (a FIN where the request was read whole).
    assert errors in (["read error: Connection reset by peer"],
                      ["connection closed by server"])
    assert replies == ["disconnected"]
    assert not g.is_connected


def test_a_tls_client_on_a_plain_port_fails_with_tls(gearmand, pki, loop):
    errors = []
    g = Gearman(gearmand.host, gearmand.port, loop=loop, ssl=client_context(pki.ca),
                server_hostname="localhost", on_error=errors.append)
    run_until(loop, lambda: errors, what="an error")
    # gearmand closes on the ClientHello's bad magic, mid-handshake.
    assert errors == ["tls: connection closed during handshake"]
    assert not g.is_connected


def test_connect_timeout_bounds_the_handshake(pki, loop):
    # A server that accepts and never answers the ClientHello.
    srv = socket.create_server(("127.0.0.1", 0))
    try:
        errors = []
        start = time.monotonic()
        g = Gearman("127.0.0.1", srv.getsockname()[1], loop=loop,
                    ssl=client_context(pki.ca), connect_timeout=0.3, on_error=errors.append)
        run_until(loop, lambda: errors, what="connect timeout")
        assert errors == ["connect timeout"]
        assert not g.is_connected
        assert time.monotonic() - start < 5
    finally:
        srv.close()


def test_failed_handshakes_count_as_attempts(tls_gearmand, pki, loop):
    errors = []
    g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop,
                ssl=client_context(pki.other_ca), reconnect=True, reconnect_delay=0.01,
                max_reconnect_attempts=2, on_error=errors.append)
    run_until(loop, lambda: "max reconnect attempts reached" in errors, what="give-up")
    assert errors[:3] == ["tls: certificate verify failed: unable to get local issuer "
                          "certificate"] * 3
    assert errors[3:] == ["max reconnect attempts reached"]
    assert not g.is_connected


# ===== Reconnect and close =====

def test_terminator_restart_reconnects_and_handshakes_again(own_gearmand, pki, loop, fname):
    term = TLSTerminator(pki, own_gearmand.host, own_gearmand.port).start()
    try:
        events = []
        g = Gearman(term.host, term.port, loop=loop, ssl=term.context(), reconnect=True,
                    reconnect_delay=0.1, on_connect=lambda: events.append("connect"),
                    on_disconnect=lambda: events.append("disconnect"),
                    on_error=lambda e: events.append(e))
        worker_up = []
        worker = Gearman(term.host, term.port, loop=loop, ssl=term.context(), reconnect=True,
                         reconnect_delay=0.1, on_connect=lambda: worker_up.append(True))
        serve(worker, fname)
        assert ask(loop, g.echo, b"before") == (b"before", None)
        assert ask(loop, g.submit_job, fname, b"one") == (b"eno", None)
        term.stop()
        run_until(loop, lambda: "disconnect" in events, what="the drop")
        # Asked while there is no connection: waits for the next one.
        later = []
        g.submit_job(fname, b"two", lambda r, e: later.append((r, e)))
        term.start()
        run_until(loop, lambda: later, timeout=10, what="the job queued across the restart")
        assert later == [(b"owt", None)]       # the worker re-registered over its new TLS
        assert len(worker_up) == 2
        assert ask(loop, g.echo, b"after") == (b"after", None)
        assert events.count("connect") == 2
        assert events[0] == "connect" and events[1] == "disconnect"
        assert events[2] in ("connection closed by server", "read error: Connection reset by peer")
        assert events[-1] == "connect"
        # Attempts while socat was down were refused connects, never half handshakes.
        assert set(events[3:-1]) <= {"connect: Connection refused"}
        g.disconnect()
        worker.disconnect()
    finally:
        term.stop()


class CloseWatcher:
    """A TLS server of OpenSSL (Python's ssl) that takes one connection and
    records what arrived before it ended, and whether it ended with
    close_notify."""

    def __init__(self, pki):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.cert), str(pki.key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ctx = ctx
        self.data = b""
        self.ending = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        with self.ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False) as s:
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        self.ending = "close_notify"
                        return
                    self.data += chunk
            except ssl.SSLEOFError:
                self.ending = "eof without close_notify"
            except OSError as exc:
                self.ending = repr(exc)

    def close(self):
        self.thread.join(10)
        self.sock.close()


def test_disconnect_flushes_then_sends_close_notify(pki, loop):
    server = CloseWatcher(pki)
    try:
        g = Gearman("127.0.0.1", server.port, loop=loop, ssl=client_context(pki.ca))
        connected = []
        g.on_connect = lambda: connected.append(True)
        run_until(loop, lambda: connected, what="handshake")
        replies = []
        g.echo(b"last words", lambda r, e: replies.append(e))
        g.disconnect()          # before the loop ran: the echo is only queued
        assert replies == ["disconnected"]
        server.close()
        assert server.ending == "close_notify"
        assert b"last words" in server.data
    finally:
        server.sock.close()


def test_a_collected_tls_object_drains_and_closes(tls_gearmand, loop):
    replies = []
    g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, ssl=tls_gearmand.context())
    assert ask(loop, g.echo, b"x") == (b"x", None)
    g.echo(b"y", lambda r, e: replies.append(e))
    ref = weakref.ref(g)
    del g
    gc.collect()
    assert ref() is None
    assert replies == ["disconnected"]


class StalledTLSServer:
    """Handshakes (OpenSSL, Python's ssl), then reads nothing until
    ``draining`` is set: the client's kernel buffers fill, then its own."""

    def __init__(self, pki):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(pki.cert), str(pki.key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.read = 0
        self.draining = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(10)
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        with self.ctx.wrap_socket(conn, server_side=True) as s:
            self.draining.wait(30)
            s.settimeout(0.5)
            while True:
                try:
                    chunk = s.recv(1 << 20)
                except OSError:
                    return
                if not chunk:
                    return
                self.read += len(chunk)

    def close(self):
        self.draining.set()
        self.thread.join(10)
        self.sock.close()


def test_high_water_refuses_then_drains_over_tls(pki, loop):
    srv = StalledTLSServer(pki)
    try:
        drained, up = [], []
        hw = 1 << 20
        g = Gearman("127.0.0.1", srv.port, loop=loop, ssl=client_context(pki.ca),
                    high_water=hw, on_connect=lambda: up.append(1))
        g.on_drain = lambda: drained.append(True)
        run_until(loop, lambda: up, what="handshake")
        payload = b"x" * 65536
        refused_in_a_row = 0
        for _ in range(5000):  # bounded; the kernel's buffers fill first, then ours
            try:
                g.submit_job_bg("f", payload)
                refused_in_a_row = 0
            except GearmanError as exc:
                assert str(exc) == errors.WRITE_BUFFER_FULL
                assert not g.writable
                refused_in_a_row += 1
                if refused_in_a_row >= 20:
                    break  # the loop ran between these: nothing more drains
                loop.start(ev.EVRUN_NOWAIT)  # let the loop write what the kernel takes
        assert refused_in_a_row >= 20
        # Held back in the codec, not encrypted ahead of the kernel: at most
        # one chunk of ciphertext waits beside it.
        assert g.buffer_sizes[1] <= 4 * hw
        assert len(g._driver._cipher) <= 256 * 1024 + 16 * 1024
        drained.clear()
        srv.draining.set()
        run_until(loop, lambda: drained, timeout=20, what="on_drain")
        assert drained == [True] and g.writable
        g.submit_job_bg("f", b"after")  # accepted again
    finally:
        srv.close()


# ===== Arguments =====

def test_argument_checks(pki, loop, tmp_path):
    with pytest.raises(TypeError, match="ssl must be"):
        Gearman(loop=loop, ssl="yes")
    with pytest.raises(ValueError, match="client context"):
        Gearman(loop=loop, ssl=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    with pytest.raises(ValueError, match="only meaningful with ssl"):
        Gearman(loop=loop, server_hostname="localhost")
    with pytest.raises(TypeError, match="server_hostname must be a str"):
        Gearman(loop=loop, ssl=True, server_hostname=b"localhost")
    with pytest.raises(ValueError, match="needs server_hostname"):
        Gearman(path=str(tmp_path / "s"), loop=loop, ssl=client_context(pki.ca))
    g = Gearman(loop=loop, ssl=False)           # False: plain TCP
    with pytest.raises(GearmanError, match="not connected"):
        g.echo(b"x")
    no_names = client_context(pki.ca)
    no_names.check_hostname = False
    Gearman(loop=loop, ssl=no_names).connect_unix(str(tmp_path / "absent.sock"))


def test_ten_handshakes_at_once_on_one_loop(tls_gearmand, loop):
    gs = [Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, ssl=tls_gearmand.context())
          for _ in range(10)]
    got = []
    for n, g in enumerate(gs):
        g.echo(str(n), lambda r, e: got.append((r, e)))
    run_until(loop, lambda: len(got) == 10, what="ten echoes")
    assert sorted(got) == sorted((str(n).encode(), None) for n in range(10))
    for g in gs:
        g.disconnect()


def test_start_returns_once_a_tls_object_disconnected(tls_gearmand):
    # No watcher of the TLS layer outlives the connection.
    loop = ev.Loop()
    out = []
    g = Gearman(tls_gearmand.host, tls_gearmand.port, loop=loop, ssl=tls_gearmand.context())
    g.echo(b"z", lambda r, e: (out.append((r, e)), g.disconnect()))
    loop.start()            # returns once nothing is left to watch
    assert out == [(b"z", None)]


# ===== The command line's TLS flags =====

def _cli(*args):
    import sys
    return subprocess.run([sys.executable, "-m", "gearman_ev", *args], capture_output=True,
                          timeout=60, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_cli_over_tls(tls_gearmand, pki, fname):
    where = ["-s", f"{tls_gearmand.host}:{tls_gearmand.port}", "--ssl-ca", str(pki.ca)]
    proc = _cli(*where, "version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"1.")
    proc = _cli(*where, "submit", "--bg", fname, "over tls")
    assert proc.returncode == 0 and proc.stdout.startswith(b"H:"), proc.stderr
    # A certificate from a CA the client does not trust: exit 1, the tls reason said.
    proc = _cli("-s", f"{tls_gearmand.host}:{tls_gearmand.port}", "--ssl-ca", str(pki.other_ca),
                "version")
    assert proc.returncode == 1 and b"tls: " in proc.stderr, proc.stderr
    # The per-command spelling and --server-hostname.
    proc = _cli("version", "-s", f"127.0.0.1:{tls_gearmand.port}", "--ssl-ca", str(pki.ca),
                "--server-hostname", "localhost")
    assert proc.returncode == 0 and proc.stdout.startswith(b"1."), proc.stderr
    proc = _cli(*where, "--ssl-ca", "/nonexistent/ca.pem", "version")
    assert proc.returncode == 2 and b"usage:" in proc.stderr


def test_pool_over_tls(tls_gearmand, loop, new, fname):
    from gearman_ev import GearmanPool
    serve(new(), fname)
    pool = GearmanPool([f"{tls_gearmand.host}:{tls_gearmand.port}"], loop=loop,
                       ssl=tls_gearmand.context())
    try:
        assert ask(loop, pool.submit_job, fname, b"pooled") == (b"deloop", None)
        assert all(g.is_connected for g in pool.servers)
    finally:
        pool.disconnect()
    bad = GearmanPool([f"{tls_gearmand.host}:{tls_gearmand.port}"], loop=loop,
                      ssl=tls_gearmand.context(), server_hostname="not-the-name",
                      reconnect=False)
    errs = []
    bad.servers[0].on_error = errs.append
    run_until(loop, lambda: errs, what="tls error")
    assert errs[0].startswith("tls: ")
    bad.disconnect()


@pytest.mark.parametrize("kw, exc, match", [
    (dict(ssl=ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)), ValueError, "client context"),
    (dict(ssl=True, server_hostname=""), ValueError, "must not be empty"),
    (dict(server_hostname="x"), ValueError, "only meaningful with ssl"),
    (dict(ssl="yes"), TypeError, "ssl must be"),
    (dict(ssl=True, server_hostname=3), TypeError, "server_hostname must be a str"),
], ids=["server-context", "empty-name", "name-without-ssl", "not-a-context", "name-not-str"])
def test_tls_options_are_checked_alike_on_both_front_ends(loop, kw, exc, match):
    import asyncio

    from gearman_ev.aio import AsyncGearman
    with pytest.raises(exc, match=match):
        Gearman("127.0.0.1", 1, loop=loop, **kw)

    async def make():
        AsyncGearman("127.0.0.1", 1, **kw)
    with pytest.raises(exc, match=match):
        asyncio.run(make())


def test_pool_refuses_tls_over_unix_without_a_name_before_any_connect(loop, tls_gearmand):
    from gearman_ev import GearmanPool
    accepted = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        with pytest.raises(ValueError, match="needs server_hostname"):
            GearmanPool([f"127.0.0.1:{listener.getsockname()[1]}", "unix:/tmp/nowhere.sock"],
                        loop=loop, ssl=tls_gearmand.context())
        loop.start(ev.EVRUN_NOWAIT)
        time.sleep(0.05)
        try:
            accepted.append(listener.accept())
        except BlockingIOError:
            pass
        assert accepted == []  # the TCP server was never connected to
    finally:
        for conn, _ in accepted:
            conn.close()
        listener.close()
