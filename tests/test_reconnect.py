"""Reconnection against a real gearmand of the test's own that is killed and
restarted on the same port (API.md 2, 4, 8; PROTOCOL.md 8.7): the drop's
order of events, queued requests, the attempt cap, cancelling, a manual
connect, session state re-sent, exactly-once callbacks under load; and
command_timeout's reset on every byte."""
from __future__ import annotations

import pytest

from gearman_ev import Gearman, GearmanError
from tests.conftest import run_until
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res

CLOSED = "connection closed by server"


class Events:
    """on_connect / on_disconnect / on_error and callbacks, in firing order."""

    def __init__(self):
        self.log = []

    def on_connect(self):
        self.log.append(("connect",))

    def on_disconnect(self):
        self.log.append(("disconnect",))

    def on_error(self, err):
        self.log.append(("error", err))

    def cb(self, name):
        return lambda result, err: self.log.append((name, result, err))

    def count(self, kind):
        return sum(1 for e in self.log if e[0] == kind)

    def errors(self):
        return [e[1] for e in self.log if e[0] == "error"]


def reconnecting(loop, server, ev, **kw):
    kw.setdefault("reconnect_delay", 0.1)
    return Gearman(server.host, server.port, loop=loop, reconnect=True,
                   on_connect=ev.on_connect, on_disconnect=ev.on_disconnect,
                   on_error=ev.on_error, **kw)


def echo(loop, g, data=b"x"):
    out = []
    g.echo(data, lambda r, e: out.append((r, e)))
    run_until(loop, lambda: out, what="echo reply")
    return out[0]


def kill(loop, g, server):
    """Kill the server once it surely accepted g: a connection still in the
    listen backlog would be reset (RST) instead of closed."""
    assert echo(loop, g) == (b"x", None)
    server.kill()


def settle(loop, seconds):
    """Run the loop for a while: later events, if any, would show up by then."""
    done = []
    loop.timer(seconds, 0, lambda w, r: done.append(1)).start()
    run_until(loop, lambda: done, timeout=seconds + 5)


def test_kill_then_restart(loop, own_gearmand, fname):
    ev = Events()
    g = reconnecting(loop, own_gearmand, ev)
    run_until(loop, lambda: ev.count("connect") == 1, what="first connect")
    g.submit_job(fname, b"w", ev.cb("job"))  # no worker: stays active
    run_until(loop, lambda: g.active_count == 1, what="JOB_CREATED")
    ev.log.clear()
    kill(loop, g, own_gearmand)
    run_until(loop, lambda: ev.errors(), what="on_error after the kill")
    assert ev.log == [("job", None, "disconnected"), ("disconnect",), ("error", CLOSED)]
    assert not g.is_connected and g.reconnect_enabled
    # Waiting for the server: requests queue instead of failing.
    g.echo(b"queued", ev.cb("echo"))
    assert g.waiting_count == 1 and g.pending_count == 0
    own_gearmand.start()
    run_until(loop, lambda: ev.count("echo"), what="the queued echo")
    assert ev.count("connect") == 1
    assert [e for e in ev.log if e[0] == "echo"] == [("echo", b"queued", None)]
    # Failed attempts while the server was down are reported, but they were no
    # established connections: no extra on_disconnect.
    assert ev.count("disconnect") == 1
    assert all(e.startswith("connect: ") for e in ev.errors()[1:])
    assert g.waiting_count == 0 and g.is_connected
    g.disconnect()


@pytest.mark.parametrize("delay", [0, 0.05])
def test_reconnect_goes_through_the_loop(loop, own_gearmand, delay):
    where = {"in_on_error": False}
    seen = []

    def on_error(err):
        where["in_on_error"] = True
        try:
            seen.append(("error", err, loop.iteration))
            if err == CLOSED:
                own_gearmand.start()  # up again before any attempt can run
        finally:
            where["in_on_error"] = False

    def on_connect():
        seen.append(("connect", where["in_on_error"], loop.iteration))

    g = Gearman(own_gearmand.host, own_gearmand.port, loop=loop, reconnect=True,
                reconnect_delay=delay, on_error=on_error, on_connect=on_connect)
    run_until(loop, lambda: seen, what="first connect")
    kill(loop, g, own_gearmand)
    run_until(loop, lambda: len(seen) == 3, what="error, then the new connect")
    (_, err, error_iteration), (kind, inside, connect_iteration) = seen[1:]
    assert (err, kind, inside) == (CLOSED, "connect", False)
    assert connect_iteration > error_iteration  # a later loop iteration, not a re-entry
    assert echo(loop, g) == (b"x", None)
    g.disconnect()


def test_max_reconnect_attempts(loop, own_gearmand):
    ev = Events()
    g = reconnecting(loop, own_gearmand, ev, reconnect_delay=0.05, max_reconnect_attempts=2)
    run_until(loop, lambda: ev.count("connect"), what="first connect")
    kill(loop, g, own_gearmand)
    run_until(loop, lambda: ev.errors(), what="the drop")
    g.echo(b"a", ev.cb("echo1"))
    g.echo(b"b", ev.cb("echo2"))
    assert g.waiting_count == 2
    run_until(loop, lambda: "max reconnect attempts reached" in ev.errors(), what="giving up")
    settle(loop, 0.3)  # no further attempt, no second report
    errors = ev.errors()
    assert errors[0] == CLOSED and errors[-1] == "max reconnect attempts reached"
    assert errors.count("max reconnect attempts reached") == 1
    assert len(errors) == 4 and all(e.startswith("connect: ") for e in errors[1:3])
    # The waiting requests were answered before the final report.
    tail = ev.log[-3:]
    assert tail == [("echo1", None, "disconnected"), ("echo2", None, "disconnected"),
                    ("error", "max reconnect attempts reached")]
    assert not g.is_connected and g.waiting_count == 0
    with pytest.raises(GearmanError, match="^not connected$"):
        g.echo(b"c")


def test_reconnect_false_cancels(loop, own_gearmand):
    ev = Events()
    g = reconnecting(loop, own_gearmand, ev, reconnect_delay=0.2)
    run_until(loop, lambda: ev.count("connect"), what="first connect")
    kill(loop, g, own_gearmand)
    run_until(loop, lambda: ev.errors(), what="the drop")
    g.echo(b"a", ev.cb("echo"))
    assert g.waiting_count == 1
    g.reconnect(False)
    assert not g.reconnect_enabled
    # No reconnect is pending any more: what waited for it is answered now,
    # and new requests are refused (API.md 2).
    assert [e for e in ev.log if e[0] == "echo"] == [("echo", None, "disconnected")]
    assert g.waiting_count == 0 and not g.is_connected
    with pytest.raises(GearmanError, match="^not connected$"):
        g.echo(b"b")
    own_gearmand.start()
    settle(loop, 0.5)
    assert ev.count("connect") == 1 and ev.count("echo") == 1


def test_connect_during_pending_reconnect(loop, own_gearmand):
    ev = Events()
    g = reconnecting(loop, own_gearmand, ev, reconnect_delay=30)  # would not fire in time
    run_until(loop, lambda: ev.count("connect"), what="first connect")
    kill(loop, g, own_gearmand)
    run_until(loop, lambda: ev.errors(), what="the drop")
    g.echo(b"queued", ev.cb("echo"))
    own_gearmand.start()
    g.connect(own_gearmand.host, own_gearmand.port)
    assert g.is_connected
    run_until(loop, lambda: ev.count("echo"), what="the queued echo")
    assert ev.count("connect") == 2
    assert [e for e in ev.log if e[0] == "echo"] == [("echo", b"queued", None)]
    assert g.reconnect_enabled  # connect() cancels the pending attempt, not the setting
    settle(loop, 0.2)
    assert ev.count("connect") == 2 and ev.errors() == [CLOSED]
    g.disconnect()


def test_options_and_client_id_resent(loop, own_gearmand, fname):
    ev = Events()
    client_id = "cid-" + fname[-40:]
    client = reconnecting(loop, own_gearmand, ev, exceptions=True, client_id=client_id)
    run_until(loop, lambda: ev.count("connect"), what="first connect")
    kill(loop, client, own_gearmand)
    run_until(loop, lambda: ev.errors(), what="the drop")
    own_gearmand.start()
    run_until(loop, lambda: ev.count("connect") == 2, what="the reconnect")
    # A fresh server knows nothing of the old session: it can only have
    # learned the client id and the option from the re-sent packets.
    workers = []
    client.server_workers(lambda r, e: workers.append((r, e)))
    run_until(loop, lambda: workers, what="workers listing")
    assert workers[0][1] is None and f" {client_id} :" in workers[0][0]

    def boom(job):
        raise RuntimeError("boom")
    worker = Gearman(own_gearmand.host, own_gearmand.port, loop=loop, exceptions=True)
    worker.register_function(fname, boom)
    worker.work()
    got = []
    client.submit_job(fname, b"w", lambda r, e: got.append(("cb", r, e)),
                      on_exception=lambda d: got.append(("exception", d)))
    run_until(loop, lambda: any(e[0] == "cb" for e in got), what="the job's end")
    # Without the re-sent OPTION_REQ gearmand would send a plain WORK_FAIL.
    assert got == [("exception", b"boom"), ("cb", None, "exception")]
    client.disconnect()
    worker.disconnect()


def test_kill_under_load_every_callback_once(loop, own_gearmand, fname):
    host, port = own_gearmand.host, own_gearmand.port
    worker = Gearman(host, port, loop=loop, reconnect=True, reconnect_delay=0.1,
                     on_error=lambda e: None)
    worker.register_function(fname, lambda job: job.workload.upper())
    worker.work()
    ev = Events()
    client = reconnecting(loop, own_gearmand, ev)
    n = 1000
    calls = {}
    killed = []

    def cb(i):
        def done(result, err):
            calls.setdefault(i, []).append((result, err))
            if len(calls) == 100 and not killed:
                killed.append(1)
                own_gearmand.kill()  # mid-load, from inside a result callback
        return done
    for i in range(n):
        client.submit_job(fname, f"job-{i}".encode(), cb(i))
    run_until(loop, lambda: len(calls) == n, timeout=20, what=f"{n} callbacks")
    assert killed
    own_gearmand.start()
    run_until(loop, lambda: ev.count("connect") == 2, what="the client's reconnect")
    # After the restart the worker's loop resumes and the client works again.
    after = []
    client.submit_job(fname, b"again", lambda r, e: after.append((r, e)))
    run_until(loop, lambda: after, timeout=10, what="a job after the restart")
    assert after == [(b"AGAIN", None)]
    assert echo(loop, client) == (b"x", None)  # any late duplicate would be in by now
    assert sorted(calls) == list(range(n))
    assert all(len(c) == 1 for c in calls.values()), "a callback fired twice"
    for i, [(result, err)] in calls.items():
        assert (result, err) in ((f"JOB-{i}".encode(), None), (None, "disconnected"))
    results = sum(1 for [(r, _)] in calls.values() if r is not None)
    assert 100 <= results < n
    client.disconnect()
    worker.disconnect()


def test_command_timeout_resets_on_every_byte(loop, fake_server):  # noqa: F811
    # gearmand answers every request at once, so only a scripted peer can hold
    # a well-formed reply back and dribble it: 16 bytes 0.05 s apart take
    # 0.75 s, well past the 0.3 s command_timeout, yet no gap reaches it.
    reply = res(17, b"ping")
    drip = [s for i in range(len(reply)) for s in (("sleep", 0.05), ("send", reply[i:i + 1]))]
    srv = fake_server(("recv", len(req(16, b"ping"))), *drip, ("eof",))
    ev = Events()
    g = Gearman(srv.host, srv.port, loop=loop, command_timeout=0.3, on_error=ev.on_error)
    g.echo(b"ping", ev.cb("echo"))
    run_until(loop, lambda: ev.log, what="the echo reply")
    assert ev.log == [("echo", b"ping", None)]
    assert g.is_connected
    g.disconnect()
    assert srv.finished.wait(5) and not srv.errors
