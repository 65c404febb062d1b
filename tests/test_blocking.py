"""The blocking client (API.md 12) and errors as values (API.md 16), against
the real gearmand: many threads at once, submit_jobs order and failures,
both kinds of timeout with the late reply dropped, close() with calls
waiting, fork, several servers with one killed, and the exceptions of §16.

Workers run on a loop of their own in a thread of the test process
(``serving``); every blocking call a test makes is bounded by a job timeout
or a wait timeout, and every thread is joined with a timeout.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from functools import partial

import pytest

import gearman_ev
from gearman_ev import Gearman, errors, ev
from gearman_ev.blocking import GearmanClient
from gearman_ev.errors import (CommandTimeout, ConnectionLost, GearmanError, JobException,
                               JobFailed, JobTimeout, ServerError)
from gearman_ev.testing import LocalGearmand, free_port
from tests.conftest import stop_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WAIT = 10  # seconds any one blocking call of a test may take


# ===== Helpers =====

@contextlib.contextmanager
def serving(servers, functions, **options):
    """A worker on its own loop and thread, connected to every server.
    ``functions``: name -> (callback(index, job), async_), where index is
    the server's position in ``servers``. Yields the loop."""
    loop = ev.Loop()
    conns = []
    for index, server in enumerate(servers):
        g = Gearman(server.host, server.port, loop=loop, reconnect=True,
                    reconnect_delay=0.05, **options)
        for name, (callback, async_) in functions.items():
            g.register_function(name, partial(callback, index), async_=async_)
        g.work()
        conns.append(g)
    keep = loop.timer(3600, 3600, lambda w, r: None)  # the loop runs until told
    keep.start()
    thread = threading.Thread(target=loop.start, daemon=True)
    thread.start()
    try:
        yield loop
    finally:
        def stop():
            for g in conns:
                g.disconnect()
            keep.stop()
            loop.stop()
        loop.call_soon_threadsafe(stop)
        thread.join(WAIT)
        assert not thread.is_alive(), "worker thread did not stop"


def reverse(index, job):
    return job.workload[::-1]


def later(loop, finished, index, job):
    """Async: workload ``b"<ms>:<tag>"``; after ms, a tag starting ``fail``
    fails the job, one starting ``exc`` raises WORK_EXCEPTION with the tag,
    any other completes with the tag reversed; then the tag is appended to
    ``finished``."""
    ms, _, tag = job.workload.partition(b":")

    def finish(w, r):
        if tag.startswith(b"fail"):
            job.fail()
        elif tag.startswith(b"exc"):
            job.exception(tag)
        else:
            job.complete(tag[::-1])
        finished.append(tag)
    loop.timer(int(ms) / 1000, 0, finish).start()


def run_threads(n, target):
    """Run ``target(i)`` in n threads at once; return what each returned."""
    out = [None] * n
    failures = []

    def body(i):
        try:
            out[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread is still waiting"
    assert not failures, failures
    return out


def queued(client, func):
    """TOTAL of ``func`` in the server's status (0 when not listed)."""
    for line in client.server_status(timeout=WAIT).splitlines():
        name, total, _running, _workers = line.split("\t")
        if name == func:
            return int(total)
    return 0


def wait_for(predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@contextlib.contextmanager
def frozen(server):
    """The server stopped (SIGSTOP) for the block: it takes requests and
    answers none (see conftest.stop_server)."""
    stop_server(server)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def client(gearmand):
    c = GearmanClient(gearmand.address)
    yield c
    c.close()


@pytest.fixture
def rev(gearmand, fname):
    """A function name served by a reversing worker."""
    with serving([gearmand], {fname: (reverse, False)}):
        yield fname


@pytest.fixture
def finished():
    """The tags of the jobs ``slow`` has finished, in order."""
    return []


@pytest.fixture
def slow(gearmand, fname, finished):
    """A function name served by ``later`` (async, timed completions)."""
    loop_box = []

    def call_later(index, job):
        later(loop_box[0], finished, index, job)
    with serving([gearmand], {fname + "_later": (call_later, True)},
                 exceptions=True) as loop:
        loop_box.append(loop)
        yield fname + "_later"


# ===== Basics =====

def test_every_call_returns_its_reply(client, rev, gearmand):
    assert client.submit_job(rev, b"hello", timeout=WAIT) == b"olleh"
    assert client.submit_job(rev, "héllo", timeout=WAIT) == "héllo".encode()[::-1]
    assert client.submit_job(rev, bytearray(b"ab"), priority="high", timeout=WAIT) == b"ba"
    assert client.submit_job_high(rev, b"hi", timeout=WAIT) == b"ih"
    assert client.submit_job_low(rev, b"lo", unique="u-low", timeout=WAIT) == b"ol"
    assert client.echo(b"ping\0pong", timeout=WAIT) == b"ping\0pong"
    assert client.server_version(timeout=WAIT).startswith("OK ")
    assert f"{rev}\t0\t0\t1\n" in client.server_status(timeout=WAIT)
    assert client.admin("status", timeout=WAIT) == client.server_status(timeout=WAIT)
    assert client.maxqueue(rev + "_q", 10, timeout=WAIT) == "OK"
    assert client.server_workers(timeout=WAIT).endswith("\n")
    assert client.servers == (gearmand.address,)
    assert not client.closed and repr(client) == f"<GearmanClient {gearmand.address} open>"


def test_background_jobs_and_status(client, fname):
    # No worker serves fname: the jobs stay queued.
    handle = client.submit_job_bg(fname, b"x", unique="bg-u1", timeout=WAIT)
    assert isinstance(handle, str) and handle.startswith("H:")
    assert client.get_status(handle, timeout=WAIT) == {
        "handle": handle, "known": True, "running": False, "numerator": "0",
        "denominator": "0"}
    status = client.get_status_unique("bg-u1", timeout=WAIT)
    assert status["known"] and status["client_count"] == 0
    assert client.submit_job_high_bg(fname, b"y", timeout=WAIT).startswith("H:")
    assert client.submit_job_low_bg(fname, b"z", timeout=WAIT).startswith("H:")
    assert client.submit_job_bg(fname, b"w", priority="low", timeout=WAIT).startswith("H:")
    assert client.submit_job_epoch(fname, b"e", int(time.time()) + 3600,
                                   timeout=WAIT).startswith("H:")
    assert queued(client, fname) == 5
    assert client.get_status("H:nobody:1", timeout=WAIT)["known"] is False


def test_future(client, rev, slow):
    future = client.submit_job_future(rev, b"abc", timeout=WAIT)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(WAIT) == b"cba"
    failed = client.submit_job_future(slow, b"0:fail", timeout=WAIT)
    assert isinstance(failed.exception(WAIT), JobFailed)
    # A payload the caller changes right after the call: the job has its own copy.
    buf = bytearray(b"0:mine")
    copied = client.submit_job_future(slow, buf, timeout=WAIT)
    buf[:] = b"0:XXXX"
    assert copied.result(WAIT) == b"enim"
    # Cancelled while the job runs: the result is dropped, nothing breaks.
    dropped = client.submit_job_future(slow, b"100:late", timeout=WAIT)
    assert dropped.cancel()
    assert client.submit_job(slow, b"200:after", timeout=WAIT) == b"retfa"
    assert dropped.cancelled()


def test_arguments_are_checked_first_in_every_state(client, rev):
    with pytest.raises(TypeError, match="workload must be"):
        client.submit_job(rev, 5)
    with pytest.raises(ValueError, match="whitespace"):
        client.submit_job("no spaces", b"x")
    with pytest.raises(ValueError, match="priority"):
        client.submit_job(rev, b"x", priority="urgent")
    with pytest.raises(TypeError, match="priority"):
        client.submit_job_bg(rev, b"x", priority=1)
    with pytest.raises(ValueError, match="timeout"):
        client.submit_job(rev, b"x", timeout=-1)
    with pytest.raises(ValueError, match="unique too long"):
        client.submit_job_future(rev, b"x", unique="u" * 64)
    with pytest.raises(ValueError, match="must not be empty"):
        client.get_status_unique("")
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        client.admin("status\r\nversion", timeout=WAIT)
    with pytest.raises(ValueError, match="size"):
        client.maxqueue(rev, -1)
    with pytest.raises(TypeError, match="each job"):
        client.submit_jobs([(rev,)])
    assert client.submit_job(rev, b"still fine", timeout=WAIT) == b"enif llits"
    client.close()
    with pytest.raises(TypeError):  # the argument first, then "client closed"
        client.submit_job(rev, 5)
    with pytest.raises(GearmanError, match="^client closed$"):
        client.submit_job(rev, b"x")


@pytest.mark.parametrize("servers, names", [
    ("example.org", ("example.org:4730",)),
    ("example.org:4731", ("example.org:4731",)),
    ("[::1]:4732", ("[::1]:4732",)),
    ("[::1]", ("[::1]:4730",)),
    ("unix:/run/gearmand.sock", ("unix:/run/gearmand.sock",)),
    (("10.0.0.1", 4733), ("10.0.0.1:4733",)),
    (["a:1", ("b", 2), "unix:/c"], ("a:1", "b:2", "unix:/c")),
])
def test_server_specs(servers, names):
    from gearman_ev.blocking import _server_list
    assert tuple(spec.name for spec in _server_list(servers)) == names


@pytest.mark.parametrize("servers, exc", [
    ([], ValueError), ("host:0", ValueError), ("host:x", ValueError), (":4730", ValueError),
    ("[::1", ValueError), ("::1", ValueError), ("unix:", ValueError), (b"host", TypeError),
    (4730, TypeError), ([("host", "4730")], TypeError), ([None], TypeError),
    (["a:1", "a:1"], ValueError),
])
def test_bad_servers(servers, exc):
    with pytest.raises(exc):
        GearmanClient(servers)


@pytest.mark.parametrize("options, exc", [
    ({"connect_timeout": -1}, ValueError), ({"command_timeout": "1"}, TypeError),
    ({"client_id": "two words"}, ValueError), ({"max_reconnect_attempts": 1.5}, TypeError),
])
def test_bad_options(gearmand, options, exc):
    with pytest.raises(exc):
        GearmanClient(gearmand.address, **options)
    with pytest.raises(exc):
        GearmanClient([gearmand.address, f"127.0.0.1:{free_port()}"], **options)


def test_tuple_and_list_specs_reach_the_server(gearmand):
    for servers in ((gearmand.host, gearmand.port), [(gearmand.host, gearmand.port)],
                    [gearmand.address]):
        with GearmanClient(servers) as c:
            assert c.echo(b"up", timeout=WAIT) == b"up"


# ===== Many threads at once =====

def test_eight_threads_500_jobs_each(client, rev):
    def handler(t):
        got = []
        for i in range(500):
            mine = f"{t}:{i}:{'x' * (i % 7)}".encode()
            got.append(client.submit_job(rev, mine, timeout=WAIT) == mine[::-1])
        return got
    results = run_threads(8, handler)
    assert [all(r) and len(r) for r in results] == [500] * 8


def test_threads_mix_every_kind_of_call(client, rev, fname):
    def handler(t):
        return (client.submit_jobs([(rev, f"{t}-{i}".encode()) for i in range(50)],
                                   timeout=WAIT),
                client.echo(str(t), timeout=WAIT),
                client.submit_job_future(rev, f"f{t}").result(WAIT),
                client.get_status(client.submit_job_bg(fname + "_idle", b"x", timeout=WAIT),
                                  timeout=WAIT)["known"])
    for t, (batch, echoed, fut, known) in enumerate(run_threads(6, handler)):
        assert batch == [f"{t}-{i}".encode()[::-1] for i in range(50)]
        assert (echoed, fut, known) == (str(t).encode(), f"f{t}".encode()[::-1], True)


# ===== submit_jobs =====

@pytest.fixture
def exc_client(gearmand):
    c = GearmanClient(gearmand.address, exceptions=True)
    yield c
    c.close()


def test_submit_jobs_order_with_failures(exc_client, slow):
    # Finishing out of input order: the later jobs are the quicker ones.
    jobs = [(slow, b"120:a"), (slow, b"90:exc-first"), (slow, b"60:b", "batch-u-b"),
            (slow, b"0:fail"), (slow, b"30:c"), (slow, b"0:d")]
    got = exc_client.submit_jobs(jobs, timeout=WAIT, return_exceptions=True)
    assert got[0::2] == [b"a", b"b", b"c"] and got[5] == b"d"
    assert type(got[1]) is JobException and got[1].data == b"exc-first"
    assert type(got[3]) is JobFailed and got[3].err == errors.JOB_FAILED
    # Raising: the first failure in input order, though JobFailed came first.
    with pytest.raises(JobException) as info:
        exc_client.submit_jobs(jobs, timeout=WAIT)
    assert info.value.data == b"exc-first"
    assert exc_client.submit_jobs([(slow, b"0:x"), (slow, b"0:y")], priority="low",
                                  timeout=WAIT) == [b"x", b"y"]
    assert exc_client.submit_jobs([]) == []


def test_submit_jobs_pipelined_batch(client, rev):
    jobs = [(rev, str(i).encode()) for i in range(3000)]
    assert client.submit_jobs(jobs, timeout=WAIT) == [str(i).encode()[::-1] for i in range(3000)]


def test_submit_jobs_job_timeout_in_place(client, slow):
    got = client.submit_jobs([(slow, b"0:quick"), (slow, b"2000:slow")], timeout=0.2,
                             return_exceptions=True)
    assert got[0] == b"kciuq" and type(got[1]) is JobTimeout


# ===== Timeouts =====

def test_job_timeout_raises_and_the_late_result_is_dropped(client, slow, rev, finished,
                                                           caplog):
    caplog.set_level(logging.WARNING, logger="gearman_ev")
    with pytest.raises(JobTimeout) as info:
        client.submit_job(slow, b"300:late", timeout=0.05)
    assert isinstance(info.value, TimeoutError) and info.value.err == errors.JOB_TIMEOUT
    wait_for(lambda: finished == [b"late"], "the worker to finish the job")
    # The server sent the late WORK_COMPLETE before it answers this echo
    # (one connection keeps order): the client has read it, and dropped it.
    assert client.echo(b"sync", timeout=WAIT) == b"sync"
    assert client.submit_job(rev, b"mine", timeout=WAIT) == b"enim"
    assert client.submit_job(slow, b"0:next", timeout=WAIT) == b"txen"
    assert not caplog.records


def test_wait_timeout_raises_timeouterror_and_the_late_reply_is_dropped(own_gearmand):
    with GearmanClient(own_gearmand.address) as c:
        assert c.echo(b"up", timeout=WAIT) == b"up"
        with frozen(own_gearmand):  # the server hears, never answers
            for call in (lambda: c.echo(b"first", timeout=0.1),
                         lambda: c.submit_job_bg("t_stopped", b"x", timeout=0.1),
                         lambda: c.server_version(timeout=0.1)):
                with pytest.raises(TimeoutError) as info:
                    call()
                assert not isinstance(info.value, GearmanError)  # the wait's, not the job's
        # The three late replies come now, and go nowhere.
        assert c.echo(b"second", timeout=WAIT) == b"second"
        assert c.server_version(timeout=WAIT).startswith("OK ")


def test_command_timeout(own_gearmand):
    with GearmanClient(own_gearmand.address, command_timeout=0.1, reconnect=False) as c:
        assert c.echo(b"up", timeout=WAIT) == b"up"
        with frozen(own_gearmand), pytest.raises(CommandTimeout) as info:
            c.echo(b"x", timeout=WAIT)
        assert isinstance(info.value, TimeoutError) and info.value.err == errors.COMMAND_TIMEOUT


# ===== close() =====

def test_close_with_calls_waiting_in_other_threads(gearmand, fname):
    c = GearmanClient(gearmand.address)
    raised = [[] for _ in range(5)]
    futures = []

    def waiter(i):
        # No worker serves fname: each call waits until close().
        try:
            if i == 4:
                c.submit_jobs([(fname, b"a"), (fname, b"b")], timeout=30)
            else:
                c.submit_job(fname, str(i), timeout=30)
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            raised[i].append(exc)
    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    futures.append(c.submit_job_future(fname, b"f", timeout=30))
    wait_for(lambda: queued(c, fname) == 7, "7 jobs queued at the server")
    c.close()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    for exc_list in raised:
        assert len(exc_list) == 1 and type(exc_list[0]) is ConnectionLost, raised
        assert exc_list[0].err == errors.DISCONNECTED
    assert isinstance(futures[0].exception(WAIT), ConnectionLost)
    assert c.closed and "closed" in repr(c)
    for call in (lambda: c.echo(b"x"), lambda: c.submit_job_future(fname, b"x"),
                 lambda: c.submit_jobs([(fname, b"x")]), lambda: c.server_status()):
        with pytest.raises(GearmanError) as info:
            call()
        assert info.value.err == errors.CLIENT_CLOSED and type(info.value) is GearmanError
    c.close()  # twice: nothing happens


def test_dropped_client_stops_its_thread(gearmand):
    before = set(threading.enumerate())
    c = GearmanClient(gearmand.address)
    assert c.echo(b"x", timeout=WAIT) == b"x"
    (thread,) = set(threading.enumerate()) - before
    assert thread.daemon and thread.name == "gearman_ev-blocking"
    del c
    gc.collect()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_program_that_never_closes_exits_cleanly(gearmand):
    script = ("import sys\n"
              "from gearman_ev.blocking import GearmanClient\n"
              "client = GearmanClient(sys.argv[1])\n"
              "print(client.echo(b'bye', timeout=10).decode())\n")
    proc = subprocess.run([sys.executable, "-c", script, gearmand.address], capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "bye\n", "")


def test_blocking_call_from_the_loop_thread_is_refused(client, slow):
    seen = []

    def done(future):
        try:
            client.echo(b"x", timeout=1)
        except GearmanError as exc:
            seen.append((threading.current_thread().name, exc.err))
        # Not blocking: allowed here.
        seen.append(client.submit_job_future(slow, b"0:ok"))
    future = client.submit_job_future(slow, b"100:x", timeout=WAIT)
    future.add_done_callback(done)
    assert future.result(WAIT) == b"x"
    wait_for(lambda: len(seen) == 2, "the done-callback")
    assert seen[0] == ("gearman_ev-blocking", errors.WRONG_THREAD)
    assert seen[1].result(WAIT) == b"ko"


def test_done_callback_raising_systemexit_leaves_the_client_working(client, slow, caplog):
    def leave(future):
        if threading.current_thread().name == "gearman_ev-blocking":
            raise SystemExit(3)
    future = client.submit_job_future(slow, b"300:x", timeout=WAIT)
    future.add_done_callback(leave)
    assert future.result(WAIT) == b"x"
    assert client.submit_job(slow, b"0:still here", timeout=WAIT) == b"ereh llits"
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [SystemExit]


# ===== Reconnect =====

def test_reconnects_by_default_after_a_server_restart(own_gearmand, fname):
    with GearmanClient(own_gearmand.address, reconnect_delay=0.05, client_id=fname) as c:
        assert c.echo(b"before", timeout=WAIT) == b"before"
        own_gearmand.restart()
        # No call meanwhile: the client notices the drop and reconnects by
        # itself (its id shows in the new server's list of connections)...
        with GearmanClient(own_gearmand.address) as observer:
            wait_for(lambda: fname in observer.server_workers(timeout=WAIT),
                     "the client back on the restarted server")
        # ...so the next call goes straight through.
        assert c.echo(b"after", timeout=WAIT) == b"after"
        # A call right after a restart: the client first sees that the old
        # connection is gone, so the request waits for the new one.
        own_gearmand.restart()
        assert c.echo(b"again", timeout=WAIT) == b"again"
        own_gearmand.restart()  # the same from a thread that runs the loop itself
        assert run_threads(1, lambda i: c.echo(b"and again", timeout=WAIT)) == [b"and again"]


def test_without_reconnect_a_dead_server_fails_calls(own_gearmand):
    with GearmanClient(own_gearmand.address, reconnect=False) as c:
        assert c.echo(b"up", timeout=WAIT) == b"up"
        own_gearmand.stop()
        with pytest.raises(GearmanError) as info:
            for _ in range(3):  # the first may still find the connection open
                c.echo(b"x", timeout=WAIT)
        assert info.value.err in (errors.DISCONNECTED, errors.NOT_CONNECTED)


# ===== Fork =====

FORK_SCRIPT = """
import json, os, sys, threading
from gearman_ev import GearmanError
from gearman_ev.blocking import GearmanClient

address, func, how = sys.argv[1], sys.argv[2], sys.argv[3]
client = GearmanClient(address)
assert client.submit_job(func, b"parent", timeout=10) == b"tnerap"
closed = GearmanClient(address)
closed.close()

def child():
    said = {}
    said["job"] = client.submit_job(func, b"child", timeout=10).decode()
    said["threads"] = [t.name for t in threading.enumerate()]
    said["batch"] = [r.decode() for r in client.submit_jobs([(func, b"ab"), (func, b"cd")],
                                                            timeout=10)]
    try:
        closed.echo(b"x")
    except GearmanError as exc:
        said["closed"] = str(exc)
    return said

r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    try:
        said = child()
    except BaseException as exc:
        said = {"error": repr(exc)}
    os.write(w, json.dumps(said).encode())
    os.close(w)
    if how == "_exit":
        client.close()
        os._exit(0)
    sys.exit(0)  # normal exit: the finalizer closes the child's own connection
os.close(w)
child_said = json.loads(os.read(r, 10000).decode())
_, status = os.waitpid(pid, 0)
parent = [client.submit_job(func, str(i), timeout=10).decode() for i in range(20)]
client.close()
print(json.dumps({"child": child_said, "status": status, "parent": parent}))
"""


@pytest.mark.parametrize("how", ["exit", "_exit"])
def test_fork_child_gets_its_own_connection(gearmand, rev, how):
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT, gearmand.address, rev, how],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout)
    assert out["child"] == {"job": "dlihc", "threads": ["MainThread", "gearman_ev-blocking"],
                            "batch": ["ba", "dc"], "closed": errors.CLIENT_CLOSED}
    assert out["status"] == 0
    assert out["parent"] == [str(i)[::-1] for i in range(20)]


# ===== Several servers: a GearmanPool behind the client =====

def test_several_servers_one_killed(own_gearmand, fname):
    a = own_gearmand
    b = LocalGearmand().start()
    served = [0, 0]

    def counted(index, job):
        served[index] += 1
        return job.workload[::-1]
    try:
        with serving([a, b], {fname: (counted, False)}), \
                GearmanClient([a.address, (b.host, b.port)], reconnect_delay=0.05) as c:
            assert c.servers == (a.address, b.address)
            wait_for(lambda: _all_up(c), "both servers connected")
            versions = c.server_version(timeout=WAIT)
            assert list(versions) == [a.address, b.address]
            assert all(v.startswith("OK ") for v in versions.values())
            for i in range(20):
                assert c.submit_job(fname, str(i), timeout=WAIT) == str(i)[::-1].encode()
            assert served[0] >= 5 and served[1] >= 5, served  # round-robin
            # A unique key always reaches the same server.
            before = list(served)
            for i in range(6):
                assert c.submit_job(fname, b"k", unique="same-key", timeout=WAIT) == b"k"
            assert sorted(n - m for n, m in zip(served, before)) == [0, 6]

            b.kill()
            outcomes = []
            while outcomes[-10:] != ["ok"] * 10:
                assert len(outcomes) < 50, outcomes
                try:
                    assert c.submit_job(fname, b"on", timeout=WAIT) == b"no"
                    outcomes.append("ok")
                except ConnectionLost:  # sent to b just before it died: once, not re-sent
                    outcomes.append("lost")
            assert outcomes.count("lost") <= 1
            assert c.submit_jobs([(fname, str(i)) for i in range(100)], timeout=WAIT) \
                == [str(i)[::-1].encode() for i in range(100)]
            with pytest.raises(ConnectionLost):  # admin asks every server: b is down
                c.server_status(timeout=WAIT)

            b.start()  # same port: the client reconnects
            wait_for(lambda: _all_up(c), "b back")
            before = list(served)
            for i in range(20):
                assert c.submit_job(fname, b"back", timeout=WAIT) == b"kcab"
            assert served[1] > before[1]
    finally:
        b.close()


def _all_up(c):
    try:
        c.server_version(timeout=WAIT)
        return True
    except ConnectionLost:
        return False


def test_several_servers_none_up(gearmand):
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with GearmanClient(dead, connect_timeout=0.2, reconnect_delay=0.05) as c:
        with pytest.raises(ConnectionLost) as info:
            c.echo(b"x", timeout=WAIT)
        assert info.value.err == errors.NO_SERVER
    with GearmanClient(dead + [gearmand.address], connect_timeout=5) as c:
        assert c.echo(b"through the live one", timeout=WAIT) == b"through the live one"
    with GearmanClient(dead, reconnect=False) as c:
        with pytest.raises(GearmanError) as info:  # refused now, or held until both failed
            c.echo(b"x", timeout=WAIT)
        assert info.value.err in (errors.NOT_CONNECTED, errors.NO_SERVER, errors.DISCONNECTED)


# ===== Errors as values (API.md 16) =====

@pytest.mark.parametrize("err, cls", [
    ("job failed", JobFailed), ("exception", JobException), ("job timeout", JobTimeout),
    ("command timeout", CommandTimeout), ("disconnected", ConnectionLost),
    ("no server available", ConnectionLost),
    ("INVALID_FUNCTION_NAME: Function name is empty", ServerError),
    ("ERR UNKNOWN_COMMAND Unknown+server+command", ServerError),
    ("not connected", GearmanError), ("no job", GearmanError),
])
def test_exception_for_each_err(err, cls):
    exc = errors.exception_for(err, b"data" if cls is JobException else None)
    assert type(exc) is cls and exc.err == err and str(exc) == err
    assert isinstance(exc, GearmanError) and getattr(gearman_ev, cls.__name__) is cls
    if cls is JobException:
        assert exc.data == b"data"
    if cls is ServerError:
        assert exc.code == ("INVALID_FUNCTION_NAME" if ":" in err else "UNKNOWN_COMMAND")
    assert isinstance(exc, TimeoutError) == (cls in (JobTimeout, CommandTimeout))
    assert isinstance(exc, ConnectionError) == (cls is ConnectionLost)


def test_err_constants():
    # Every err string a callback or on_error gets (API.md 3, 9, 11) is a constant.
    for name, value in [("DISCONNECTED", "disconnected"), ("JOB_FAILED", "job failed"),
                        ("EXCEPTION", "exception"), ("COMMAND_TIMEOUT", "command timeout"),
                        ("JOB_TIMEOUT", "job timeout"), ("NO_JOB", "no job"),
                        ("NO_SERVER", "no server available"),
                        ("CONNECT_TIMEOUT", "connect timeout"),
                        ("CONNECT_ERROR", "connect"), ("GETADDRINFO", "getaddrinfo"),
                        ("READ_ERROR", "read error"), ("WRITE_ERROR", "write error"),
                        ("CONNECTION_CLOSED", "connection closed by server"),
                        ("INVALID_MAGIC", "invalid response magic"),
                        ("PACKET_TOO_LARGE", "response packet too large"),
                        ("UNEXPECTED_ADMIN", "unexpected admin response"),
                        ("UNIX_PATH_TOO_LONG", "unix socket path too long"),
                        ("MAX_RECONNECTS", "max reconnect attempts reached"),
                        ("PROTOCOL_ERROR", "protocol error"),
                        ("USED_AFTER_FORK", "used after fork"), ("WRONG_THREAD", "wrong thread"),
                        ("WRITE_BUFFER_FULL", "write buffer full"),
                        ("CLIENT_CLOSED", "client closed")]:
        assert getattr(errors, name) == value and name in errors.__all__


def test_server_errors_from_the_real_server(client):
    with pytest.raises(ServerError) as info:
        client.admin("frobnicate", timeout=WAIT)
    assert info.value.code == "UNKNOWN_COMMAND"
    assert info.value.err.startswith("ERR UNKNOWN_COMMAND")


def test_job_exception_carries_its_data(exc_client, client, slow):
    with pytest.raises(JobException) as info:
        exc_client.submit_job(slow, b"0:exc-data\0bytes", timeout=WAIT)
    assert info.value.data == b"exc-data\0bytes" and info.value.err == errors.EXCEPTION
    # A client that did not ask for exceptions sees a plain failure.
    with pytest.raises(JobFailed):
        client.submit_job(slow, b"0:exc-data", timeout=WAIT)
