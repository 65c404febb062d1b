"""Nothing lost or misrouted (API.md 9): fork, aliased payloads, replies the
library cannot digest, an ERROR answering a GRAB, a server that accepts and
hangs up, falsy handlers, write back-pressure. Behaviour runs against the
real gearmand; the fake server only where the bytes are malformed or the
peer hostile (STYLE.md 5)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from gearman_ev import Gearman, GearmanError, errors, ev
from tests.conftest import ask, run_until
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res
from tests.test_protocol_errors import Recorder, connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CAN_DO, PRE_SLEEP, NOOP, GRAB_JOB, NO_JOB, JOB_ASSIGN = 1, 4, 6, 9, 10, 11
WORK_COMPLETE, ECHO_REQ, ECHO_RES, ERROR = 13, 16, 17, 19
GET_STATUS_UNIQUE, STATUS_RES_UNIQUE = 41, 42


def run_script(body, *args, timeout=60):
    """Run a Python program in a fresh interpreter; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(body), *map(str, args)],
                          cwd=ROOT, capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# ===== Fork =====

FORK_SCRIPT = """
import json, os, sys
from gearman_ev import Gearman, GearmanError, ev

host, port, fname, how = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
loop = ev.Loop()
worker = Gearman(host, port, loop=loop)
worker.register_function(fname, lambda job: b"r" + job.workload)
worker.work()
client = Gearman(host, port, loop=loop)
results, errs = {}, []

def submit(i):
    def done(result, err):
        if err is not None:
            errs.append(err)
        results[i] = result
    client.submit_job(fname, str(i).encode(), done)

echoed = []
client.echo(b"up", lambda r, e: echoed.append(r))
while not echoed:
    loop.start(ev.EVRUN_ONCE)
for i in range(100):
    submit(i)
loop.start(ev.EVRUN_NOWAIT)  # in flight: written, replies on their way
for i in range(100, 200):
    submit(i)  # queued: in the write buffer, not yet flushed at fork time

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    outcomes = []
    for call in (lambda: client.echo(b"child"), lambda: client.submit_job_bg(fname, b"c"),
                 lambda: client.submit_job(fname, b"c")):
        try:
            call()
            outcomes.append("no error")
        except GearmanError as exc:
            outcomes.append(str(exc))
    os.write(w, json.dumps(outcomes).encode())
    os.close(w)
    if how == "_exit":
        os._exit(0)
    sys.exit(0)  # normal exit: finalizers run and must leave the socket alone
os.close(w)
child_said = json.loads(os.read(r, 1000).decode())
os.waitpid(pid, 0)
guard = loop.timer(10, 0, lambda w, r: loop.stop())
guard.start()
while len(results) < 200 and guard.active:
    loop.start(ev.EVRUN_ONCE)
ok = all(results.get(i) == b"r" + str(i).encode() for i in range(200))
print(json.dumps({"child": child_said, "ok": ok, "errors": errs, "n": len(results)}))
"""


@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_fork_child_leaves_the_parents_connection_alone(gearmand, fname, how):
    out = run_script(FORK_SCRIPT, gearmand.host, gearmand.port, fname, how)
    assert out == {"child": [errors.USED_AFTER_FORK] * 3, "ok": True, "errors": [], "n": 200}


# ===== Aliased payloads =====

def test_queued_payload_is_a_snapshot(loop, new, fname):
    g = new()  # connecting: requests wait in the local queue
    assert g.waiting_count == 0
    buf = bytearray(b"first")
    view = memoryview(bytearray(b"second"))
    got = []
    g.echo(buf, lambda r, e: got.append((r, e)))
    g.echo(view, lambda r, e: got.append((r, e)))
    assert g.waiting_count == 2
    buf[:] = b"XXXXX"
    buf.extend(b" and more")  # no BufferError: nothing holds a view of it
    view[:] = b"YYYYYY"
    run_until(loop, lambda: len(got) == 2, what="two echoes")
    assert got == [(b"first", None), (b"second", None)]


# ===== Replies the library cannot digest =====

def test_bad_client_count_is_a_protocol_error_and_drains_once(loop, fake_server):
    sent = req(GET_STATUS_UNIQUE, b"u1") + req(ECHO_REQ, b"after")
    bad = res(STATUS_RES_UNIQUE, b"u1", b"1", b"0", b"0", b"0", "\u00b2".encode())
    srv = fake_server(("recv", len(sent)), ("send", bad + res(ECHO_RES, b"after")), ("eof",))
    rec = Recorder()
    g = connect(loop, srv, rec)
    g.get_status_unique("u1", rec.cb("status"))
    g.echo(b"after", rec.cb("echo"))
    run_until(loop, lambda: rec.errors, what="the protocol error")
    assert rec.fired("status") == [("status", None, "disconnected")]
    assert rec.fired("echo") == [("echo", None, "disconnected")]
    assert len(rec.errors) == 1 and rec.errors[0].startswith("protocol error: ")
    assert "client count" in rec.errors[0]
    assert g.pending_count == 0 and not g.is_connected


def test_error_answering_a_managed_grab_keeps_the_worker_going(loop, fake_server):
    hello = req(CAN_DO, b"fn") + req(GRAB_JOB)
    srv = fake_server(
        ("recv", len(hello)), ("send", res(ERROR, b"SERVER_BUSY", b"try+later")),
        ("recv", len(req(PRE_SLEEP))), ("send", res(NOOP)),
        ("recv", len(req(GRAB_JOB))), ("send", res(JOB_ASSIGN, b"H:1", b"fn", b"w")),
        ("recv", len(req(WORK_COMPLETE, b"H:1", b"done:w") + req(GRAB_JOB))),
        ("send", res(NO_JOB)), ("recv", len(req(PRE_SLEEP))), ("eof",))
    rec = Recorder()
    g = connect(loop, srv, rec)
    ran = []
    g.register_function("fn", lambda job: ran.append(job.workload) or b"done:" + job.workload)
    g.work()
    run_until(loop, lambda: ran and g.pending_count == 0 and len(srv.received) >= len(
        hello) + 12 * 3 + len(req(WORK_COMPLETE, b"H:1", b"done:w")), what="the job after ERROR")
    assert rec.errors == ["SERVER_BUSY: try+later"]
    assert ran == [b"w"]
    g.disconnect()
    assert srv.finished.wait(5) and not srv.errors, srv.errors


# ===== A server that accepts and hangs up =====

class HangUpServer:
    """Accepts every connection and closes it at once, counting them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_max_reconnect_attempts_bounds_accept_and_close(loop):
    srv = HangUpServer()
    try:
        rec = Recorder()
        g = Gearman("127.0.0.1", srv.port, loop=loop, reconnect=True, reconnect_delay=0,
                    max_reconnect_attempts=3, on_error=rec.on_error)
        g.echo(b"x", rec.cb("echo"))
        run_until(loop, lambda: errors.MAX_RECONNECTS in rec.errors, timeout=10,
                  what="max reconnect attempts")
        assert srv.accepted == 4  # the first connect and three reconnects
        assert rec.fired("echo") == [("echo", None, "disconnected")]
        assert not g.is_connected
    finally:
        srv.close()


# ===== Handlers =====

@pytest.mark.parametrize("name", ["on_data", "on_warning", "on_status", "on_exception"])
@pytest.mark.parametrize("value", [0, "", b"", False])
def test_falsy_non_callable_handler_is_refused(loop, name, value):
    g = Gearman(loop=loop)
    with pytest.raises(TypeError, match=name):
        g.submit_job("f", b"w", **{name: value})


@pytest.mark.parametrize("name", ["on_error", "on_connect", "on_disconnect"])
def test_falsy_non_callable_constructor_callback_is_refused(loop, name):
    with pytest.raises(TypeError, match=name):
        Gearman(loop=loop, **{name: 0})


# ===== Write back-pressure =====

class SilentServer:
    """Accepts one connection and reads nothing until ``drain()``."""

    def __init__(self):
        self.sock = socket.socket()
        # Small before listen(): the window is set at the handshake.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.conn = None
        self.read = 0
        self.accepted = threading.Event()
        self.draining = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(10)
        self.conn, _ = self.sock.accept()
        self.accepted.set()
        self.draining.wait(30)
        self.conn.settimeout(0.5)
        while True:
            try:
                chunk = self.conn.recv(1 << 20)
            except OSError:
                break
            if not chunk:
                break
            self.read += len(chunk)

    def close(self):
        self.draining.set()
        for s in (self.conn, self.sock):
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
        self.thread.join(5)


def test_high_water_refuses_then_drains(loop):
    srv = SilentServer()
    try:
        drained, up = [], []
        hw = 1 << 20
        g = Gearman("127.0.0.1", srv.port, loop=loop, high_water=hw,
                    on_connect=lambda: up.append(1))
        g.on_drain = lambda: drained.append(True)
        run_until(loop, lambda: up and srv.accepted.is_set(), what="connected")
        payload = b"x" * 65536
        refused_in_a_row = 0
        for i in range(5000):  # bounded; the kernel's buffers fill first, then ours
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
        assert g.buffer_sizes[1] <= 4 * hw  # bounded, however many were tried
        drained.clear()  # the kernel's buffers drained ours earlier: that counted
        srv.draining.set()
        run_until(loop, lambda: drained, timeout=20, what="on_drain")
        assert drained == [True] and g.writable
        g.submit_job_bg("f", b"after")  # accepted again
    finally:
        srv.close()


# ===== Admin text that looks like framing =====

@pytest.mark.parametrize("keys", [[".", "plain"], ["ERR x", "plain"], ["plain", ".", "ERR y"]])
def test_show_unique_jobs_with_keys_that_look_like_framing(loop, new, fname, keys):
    g = new()
    for i, key in enumerate(keys):
        key = f"{key}" if key in (".", "ERR x", "ERR y") else f"{key}-{fname[-40:]}"
        assert ask(loop, g.submit_job_bg, fname, b"w", unique=key)[1] is None
    text, err = ask(loop, g.admin, "show unique jobs")
    assert err is None
    lines = text.split("\n")
    for key in keys:
        want = key if key in (".", "ERR x", "ERR y") else f"{key}-{fname[-40:]}"
        assert want in lines, (want, text)
    assert ask(loop, g.echo, b"still in sync") == (b"still in sync", None)
    assert g.is_connected
