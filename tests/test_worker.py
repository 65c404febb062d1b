"""The worker half (API.md 6) against the real gearmand: sync and async
callbacks, the managed GRAB loop (work / work_one / concurrency), grab_job,
sleeping and waking, job events, exceptions, job lifetime, reconnects."""
from __future__ import annotations

import gc
import logging
import os
import time
import weakref

import pytest

from gearman_ev import Gearman, GearmanError, Job
from gearman_ev import _session
from tests.conftest import ask, round_trip, run_until


# ===== Helpers =====

def status_row(loop, g, func):
    """(TOTAL, RUNNING, WORKERS) of ``func`` from the admin ``status``."""
    text, err = ask(loop, g.server_status)
    assert err is None
    for line in text.splitlines():
        fields = line.split("\t")
        if fields[0] == func:
            return tuple(int(x) for x in fields[1:4])
    return None


def submit_bg(loop, client, func, workloads):
    """Queue background jobs and wait until the server created them all."""
    created = []
    for w in workloads:
        client.submit_job_bg(func, w, lambda h, err: created.append(err))
    run_until(loop, lambda: len(created) == len(workloads), 10, what="JOB_CREATED")
    assert created == [None] * len(workloads)


def submit_fg(client, func, workload, results, **kw):
    """A foreground job whose (result, err) lands in results[workload]."""
    client.submit_job(func, workload,
                      lambda r, e: results.setdefault(workload, []).append((r, e)), **kw)


# ===== Sync worker =====

@pytest.mark.parametrize("ret, expect", [
    (b"raw\0bytes", b"raw\0bytes"),
    ("h\u00e9llo \u2603", "h\u00e9llo \u2603".encode()),
    (None, b""),
    (bytearray(b"ba"), b"ba"),
    (memoryview(b"mv"), b"mv"),
], ids=["bytes", "str", "none", "bytearray", "memoryview"])
def test_sync_return_value_reaches_client(loop, new, fname, ret, expect):
    worker, client = new(), new()
    worker.register_function(fname, lambda job: ret)
    worker.work()
    results = {}
    submit_fg(client, fname, "w", results)
    run_until(loop, lambda: results, what="the job's result")
    assert results == {"w": [(expect, None)]}


def test_job_properties(loop, new, fname):
    worker, client = new(), new()
    seen = []
    worker.register_function(fname, seen.append, async_=True)
    worker.work()
    client.submit_job(fname, b"pay\0load")
    run_until(loop, lambda: seen, what="the job")
    job = seen[0]
    assert isinstance(job, Job)
    assert isinstance(job.handle, str) and job.handle.startswith("H:t:")
    assert job.function == fname
    assert job.unique == ""
    assert job.workload == job.data == b"pay\0load"
    job.complete()


@pytest.mark.parametrize("when", ["before_connect", "while_connecting"])
def test_abilities_go_out_on_connect_ahead_of_on_connect(loop, new, gearmand, fname, when):
    # Abilities belong to the object: registered while unconfigured or
    # connecting, they are sent on connect before what on_connect submits,
    # so a `status` from on_connect already counts this worker.
    g = new(connect=False)
    if when == "before_connect":
        g.register_function(fname, lambda job: job.workload.upper())
        g.work()
    seen = []
    g.on_connect = lambda: g.server_status(lambda text, err: seen.append((text, err)))
    g.connect(gearmand.host, gearmand.port)
    if when == "while_connecting":
        assert g.is_connected
        g.register_function(fname, lambda job: job.workload.upper())
        g.work()
    run_until(loop, lambda: seen, what="status from on_connect")
    text, err = seen[0]
    assert err is None
    assert f"{fname}\t0\t0\t1\n" in text
    client, results = new(), {}
    submit_fg(client, fname, "hi", results)
    run_until(loop, lambda: results, what="the job's result")
    assert results == {"hi": [(b"HI", None)]}


@pytest.mark.parametrize("withdraw", ["unregister_function", "cant_do", "reset_abilities"])
def test_withdrawn_ability_gets_no_jobs(loop, new, fname, withdraw, monkeypatch):
    # No re-grab timer within the test: re-registering must wake the worker.
    monkeypatch.setattr(_session, "REGRAB_INTERVAL", 3600.0)
    worker, client = new(), new()
    ran = []
    other = fname + "_other"
    worker.register_function(fname, lambda job: ran.append(job.workload))
    worker.register_function(other, lambda job: None)
    worker.work()
    # Same connection as the CAN_DOs: the server has seen them.
    assert status_row(loop, worker, fname)[2] == 1
    if withdraw == "reset_abilities":
        worker.reset_abilities()
    else:
        getattr(worker, withdraw)(fname)
    assert status_row(loop, worker, fname)[2] == 0
    assert status_row(loop, worker, other)[2] == (0 if withdraw == "reset_abilities" else 1)
    submit_bg(loop, client, fname, ["queued"])
    # A NOOP for the job and the GRAB it triggers would be answered by now.
    round_trip(loop, worker)
    round_trip(loop, worker)
    assert ran == []
    assert status_row(loop, client, fname) == (1, 0, 0)
    # Registering again brings the queued job in at once (gearmand sends no
    # NOOP for it: the sleeping worker must grab by itself).
    worker.register_function(fname, lambda job: ran.append(job.workload))
    run_until(loop, lambda: ran, what="the job after re-registering")
    assert ran == [b"queued"]


@pytest.mark.parametrize("how", ["set_client_id", "constructor"])
def test_client_id_shows_in_workers_listing(loop, new, fname, how):
    cid = f"wid-{os.getpid()}-{how}"
    worker = new(client_id=cid) if how == "constructor" else new()
    worker.register_function(fname, lambda job: None)
    if how == "set_client_id":
        worker.set_client_id(cid)
    text, err = ask(loop, worker.server_workers)
    assert err is None
    # "FD IP CLIENT_ID : FUNC ..." (PROTOCOL.md 7)
    mine = [line.split() for line in text.splitlines() if line.split()[2:3] == [cid]]
    assert len(mine) == 1
    assert mine[0][3] == ":" and mine[0][4:] == [fname]


# ===== Async worker =====

def test_async_job_finished_from_timer(loop, new, fname):
    worker, client = new(), new()

    def upper_later(job):
        loop.timer(0.05, 0, lambda w, r: job.complete(job.workload.upper())).start()
        return b"ignored"  # async: the return value is not the result
    worker.register_function(fname, upper_later, async_=True)
    worker.work()
    results = {}
    submit_fg(client, fname, "slow", results)
    run_until(loop, lambda: results, what="the job's result")
    assert results == {"slow": [(b"SLOW", None)]}


def test_200_async_jobs_in_flight_on_one_worker(loop, new, fname):
    worker, client = new(), new()
    held = []
    worker.register_function(fname, held.append, async_=True)
    worker.work()
    results = {}
    for i in range(200):
        submit_fg(client, fname, str(i), results)
    run_until(loop, lambda: len(held) == 200, 10, what="200 jobs dispatched")
    assert results == {}  # every job was dispatched before any finished
    assert sorted(int(job.workload) for job in held) == list(range(200))
    for job in held:
        job.complete(b"r" + job.workload)
    run_until(loop, lambda: len(results) == 200, 10, what="200 results")
    round_trip(loop, client)  # a duplicate would have arrived by now
    assert results == {str(i): [(b"r%d" % i, None)] for i in range(200)}


# ===== Concurrency =====

def test_work_concurrency_caps_jobs_in_flight(loop, new, fname):
    n, total = 3, 10
    worker, client = new(), new()
    held, peak = [], [0]

    def hold(job):
        held.append(job)
        peak[0] = max(peak[0], len(held))
    worker.register_function(fname, hold, async_=True)
    submit_bg(loop, client, fname, [str(i) for i in range(total)])
    worker.work(concurrency=n)
    done = 0
    while done < total:
        expect = min(n, total - done)
        run_until(loop, lambda: len(held) == expect, what=f"{expect} jobs in flight")
        round_trip(loop, worker)  # an extra GRAB would have been answered by now
        assert len(held) == expect
        # The server agrees: RUNNING is what the worker holds.
        assert status_row(loop, client, fname) == (total - done, expect, 1)
        held.pop(0).complete()
        done += 1
    assert peak[0] == n


def test_work_concurrency_serves_1000_jobs(loop, new, fname):
    n, total = 8, 1000
    worker, client = new(), new()
    served, in_flight, peak = [], [0], [0]

    def finish(job):
        in_flight[0] -= 1
        served.append(job.workload)
        job.complete()

    def run(job):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        if int(job.workload) % 2:
            finish(job)  # finished inside the callback
        else:
            loop.timer(0.001, 0, lambda w, r: finish(job)).start()
    worker.register_function(fname, run, async_=True)
    submit_bg(loop, client, fname, [str(i) for i in range(total)])
    worker.work(concurrency=n)
    run_until(loop, lambda: len(served) == total, 20, what="1000 jobs served")
    assert sorted(int(w) for w in served) == list(range(total))
    assert 1 < peak[0] <= n
    assert status_row(loop, worker, fname) == (0, 0, 1)


def test_work_stop_and_work_cap_concurrency(loop, new, fname):
    # eg/worker_pool pattern: stop grabbing at N in flight, resume as one ends.
    n, total = 4, 24
    worker, client = new(), new()
    in_flight, peak, served, running_seen = [0], [0], [], []

    def finish(job):
        job.complete()
        served.append(job.workload)
        in_flight[0] -= 1
        worker.work()

    def run(job):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        if in_flight[0] >= n:
            worker.work_stop()
        loop.timer(0.02, 0, lambda w, r: finish(job)).start()
    worker.register_function(fname, run, async_=True)
    submit_bg(loop, client, fname, [str(i) for i in range(total)])

    def sample(w, r):
        client.server_status(lambda text, err: running_seen.extend(
            int(line.split("\t")[2]) for line in text.splitlines()
            if line.split("\t")[0] == fname))
    sampler = loop.timer(0.005, 0.005, sample)
    sampler.start()
    worker.work()
    try:
        run_until(loop, lambda: len(served) == total, 10, what="all jobs served")
    finally:
        sampler.stop()
    assert sorted(int(w) for w in served) == list(range(total))
    assert peak[0] == n
    assert running_seen and max(running_seen) <= n


# ===== work_one =====

def test_work_one_runs_one_queued_job_then_stops(loop, new, fname):
    worker, client = new(), new()
    ran = []
    worker.register_function(fname, lambda job: ran.append(job.workload))
    submit_bg(loop, client, fname, ["first", "second"])
    worker.work_one()
    run_until(loop, lambda: ran, what="one job")
    round_trip(loop, worker)
    round_trip(loop, worker)
    assert ran == [b"first"]
    assert status_row(loop, worker, fname) == (1, 0, 1)  # the second stays queued


def test_work_one_waits_for_a_job(loop, new, fname):
    worker, client = new(), new()
    ran, idle = [], []
    worker.register_function(fname, lambda job: ran.append(job.workload) or b"done")
    worker.work_one(on_idle=lambda: idle.append(len(ran)))
    run_until(loop, lambda: idle, what="on_idle")
    assert idle == [0] and ran == []
    results = {}
    submit_fg(client, fname, "late", results)
    run_until(loop, lambda: results, what="the late job's result")
    assert results == {"late": [(b"done", None)]}
    # Stopped after one job: a further job stays queued.
    submit_bg(loop, client, fname, ["after"])
    round_trip(loop, worker)
    round_trip(loop, worker)
    assert ran == [b"late"]
    assert status_row(loop, worker, fname) == (1, 0, 1)


# ===== grab_job =====

def test_grab_job_on_empty_queue(loop, new, fname):
    worker = new()
    worker.can_do(fname)
    assert ask(loop, worker.grab_job) == (None, "no job")
    assert worker.pending_count == 0
    round_trip(loop, worker)


def test_grab_job_with_a_queued_job(loop, new, fname):
    worker, client = new(), new()
    results = {}
    submit_fg(client, fname, "payload", results)
    run_until(loop, lambda: client.active_count == 1, what="JOB_CREATED")
    worker.can_do(fname)
    job, err = ask(loop, worker.grab_job)
    assert err is None and isinstance(job, Job)
    assert job.function == fname and job.workload == b"payload" and job.unique == ""
    job.complete(b"answer")
    run_until(loop, lambda: results, what="the job's result")
    assert results == {"payload": [(b"answer", None)]}


# ===== Sleeping and waking =====

def test_sleeping_worker_wakes_on_noop(loop, new, fname, monkeypatch):
    # No re-grab timer within the test: only the NOOP can wake the worker.
    monkeypatch.setattr(_session, "REGRAB_INTERVAL", 3600.0)
    worker, client = new(), new()
    ran, idle = [], []
    worker.register_function(fname, lambda job: ran.append(job.workload))
    worker.work(on_idle=lambda: idle.append(len(ran)))
    run_until(loop, lambda: idle, what="on_idle")
    assert idle == [0]
    for i in range(1, 4):
        results = {}
        submit_fg(client, fname, str(i), results)
        run_until(loop, lambda: results, what=f"job {i}")
        # Back to sleep after the job: on_idle fires again.
        run_until(loop, lambda: idle[-1] == i, what=f"on_idle after job {i}")
    assert ran == [b"1", b"2", b"3"]


def test_epoch_job_runs_when_due(loop, new, fname):
    # gearmand 1.1 sends no NOOP when an epoch job comes due: the worker's
    # re-grab timer must find it (PROTOCOL.md 8.4).
    worker, client = new(), new()
    ran, idle = [], []
    worker.register_function(fname, lambda job: ran.append(job.workload))
    worker.work(on_idle=lambda: idle.append(1))
    run_until(loop, lambda: idle, what="the worker asleep")
    created = []
    client.submit_job_epoch(fname, b"due", int(time.time()) + 2,
                            lambda handle, err: created.append((handle, err)))
    run_until(loop, lambda: created, what="JOB_CREATED")
    assert created[0][1] is None
    run_until(loop, lambda: ran, 12, what="the epoch job")
    assert ran == [b"due"]


# ===== Options =====

def test_can_do_timeout_job_runs(loop, new, fname):
    # CAN_DO_TIMEOUT is unreliable on gearmand 1.1 (PROTOCOL.md 8.6): only
    # the basic path, on a fresh connection.
    worker, client = new(), new()
    worker.register_function(fname, lambda job: b"done:" + job.workload, timeout=1)
    worker.work()
    assert status_row(loop, worker, fname)[2] == 1
    results = {}
    submit_fg(client, fname, "t", results)
    run_until(loop, lambda: results, what="the job's result")
    assert results == {"t": [(b"done:t", None)]}


@pytest.mark.parametrize("how", ["work", "grab_job"])
@pytest.mark.parametrize("grab_unique", [True, False])
def test_grab_unique(loop, new, fname, grab_unique, how):
    worker, client = new(grab_unique=grab_unique), new()
    jobs = []
    client.submit_job_bg(fname, "w", unique="uniq-key-1")
    if how == "work":
        worker.register_function(fname, jobs.append, async_=True)
        worker.work()
        run_until(loop, lambda: jobs, what="the job")
    else:
        round_trip(loop, client)  # the job exists before the GRAB
        worker.can_do(fname)
        job, err = ask(loop, worker.grab_job)
        assert err is None
        jobs.append(job)
    assert jobs[0].unique == ("uniq-key-1" if grab_unique else "")
    assert jobs[0].workload == b"w"
    jobs[0].complete()


# ===== Events =====

def test_events_reach_their_own_submission(loop, new, fname):
    # 50 jobs held at once, their events interleaved on the wire: each
    # submission must see only the events of its own handle, in order.
    k = 50
    worker, client = new(), new()
    held = []
    worker.register_function(fname, held.append, async_=True)
    worker.work()
    seen = {i: [] for i in range(k)}
    for i in range(k):
        log = seen[i].append
        client.submit_job(fname, str(i),
                          lambda r, e, log=log: log(("done", r, e)),
                          on_data=lambda d, log=log: log(("data", d)),
                          on_warning=lambda d, log=log: log(("warning", d)),
                          on_status=lambda n, d, log=log: log(("status", n, d)))
    run_until(loop, lambda: len(held) == k, what="50 jobs in flight")
    assert len({job.handle for job in held}) == k
    for job in held:
        job.send_data(job.workload)
    for job in reversed(held):
        job.warning(b"w" + job.workload)
    for job in held:
        job.status(int(job.workload), k)
    for job in reversed(held):
        job.complete(b"r" + job.workload)
    run_until(loop, lambda: all(s and s[-1][0] == "done" for s in seen.values()),
              what="every result")
    round_trip(loop, client)
    for i in range(k):
        b = str(i).encode()
        assert seen[i] == [("data", b), ("warning", b"w" + b), ("status", str(i), str(k)),
                           ("done", b"r" + b, None)]


# ===== Exceptions =====

@pytest.mark.parametrize("worker_exceptions", [True, False])
def test_sync_callback_raising(loop, new, fname, caplog, worker_exceptions):
    worker_errors = []
    worker = new(exceptions=worker_exceptions, on_error=worker_errors.append)
    client = new(exceptions=True)

    def boom(job):
        raise RuntimeError("boom 42")
    worker.register_function(fname, boom)
    worker.work()
    events = []
    with caplog.at_level(logging.ERROR, logger="gearman_ev"):
        client.submit_job(fname, "x", lambda r, e: events.append(("cb", r, e)),
                          on_exception=lambda d: events.append(("exception", d)))
        run_until(loop, lambda: any(e[0] == "cb" for e in events), what="the job's end")
    if worker_exceptions:
        assert events == [("exception", b"boom 42"), ("cb", None, "exception")]
    else:
        assert events == [("cb", None, "job failed")]
    round_trip(loop, worker)
    assert worker_errors == []  # one terminal packet: no JOB_NOT_FOUND for a second
    logged = [r for r in caplog.records if r.name == "gearman_ev" and r.exc_info
              and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 1 and str(logged[0].exc_info[1]) == "boom 42"


# ===== One connection =====

def test_worker_and_client_on_one_connection(loop, new, fname):
    g = new()
    g.register_function(fname, lambda job: job.workload[::-1])
    g.work()
    results = {}
    for i in range(20):
        submit_fg(g, fname, f"job{i}", results)
    created = []
    g.submit_job_bg(fname, "bg", lambda h, err: created.append(err))
    run_until(loop, lambda: len(results) == 20 and created, what="every result")
    assert results == {f"job{i}": [(f"job{i}"[::-1].encode(), None)] for i in range(20)}
    assert created == [None]


# ===== Job lifetime =====

@pytest.mark.parametrize("second", ["complete", "fail", "exception"])
def test_second_terminal_call_is_refused(loop, new, fname, second):
    worker_errors = []
    worker, client = new(on_error=worker_errors.append), new()
    held = []
    worker.register_function(fname, held.append, async_=True)
    worker.work()
    results = {}
    submit_fg(client, fname, "j", results)
    run_until(loop, lambda: held, what="the job")
    job = held[0]
    assert not job.finished
    job.complete(b"first")
    assert job.finished
    call = {"complete": lambda: job.complete(b"again"), "fail": job.fail,
            "exception": lambda: job.exception(b"late")}[second]
    with pytest.raises(GearmanError, match="^job already finished$"):
        call()
    run_until(loop, lambda: results, what="the job's result")
    # Had the second packet been sent, gearmand would answer JOB_NOT_FOUND.
    round_trip(loop, worker)
    round_trip(loop, client)
    assert results == {"j": [(b"first", None)]}
    assert worker_errors == []


def test_sync_callback_that_completes_itself(loop, new, fname, caplog):
    worker_errors = []
    worker, client = new(on_error=worker_errors.append), new()

    def explicit(job):
        job.complete(b"explicit")
        return b"ignored"
    worker.register_function(fname, explicit)
    worker.work()
    results = {}
    submit_fg(client, fname, "j", results)
    run_until(loop, lambda: results, what="the job's result")
    round_trip(loop, worker)
    round_trip(loop, client)
    assert results == {"j": [(b"explicit", None)]}
    assert worker_errors == []
    # The ignored return value is not an error either.
    assert [r for r in caplog.records if r.name == "gearman_ev"] == []


def test_job_after_its_connection_dropped_is_stale(loop, new, gearmand, fname):
    worker, client = new(), new()
    held = []
    worker.register_function(fname, held.append, async_=True)
    worker.work()
    results = {}
    submit_fg(client, fname, "j", results)
    run_until(loop, lambda: held, what="the job")
    old = held[0]
    worker.disconnect()
    with pytest.raises(GearmanError, match="^stale job$"):
        old.complete(b"x")
    with pytest.raises(GearmanError, match="^stale job$"):
        old.send_data(b"x")
    # Reconnected, the server hands the requeued job out again under the
    # same handle; the old Job still belongs to the dead connection.
    worker.connect(gearmand.host, gearmand.port)
    run_until(loop, lambda: len(held) == 2, what="the requeued job")
    assert held[1].handle == old.handle
    with pytest.raises(GearmanError, match="^stale job$"):
        old.complete(b"x")
    held[1].complete(b"fresh")
    run_until(loop, lambda: results, what="the job's result")
    assert results == {"j": [(b"fresh", None)]}


def test_job_outliving_its_gearman_object(loop, gearmand, new, fname):
    worker = Gearman(gearmand.host, gearmand.port, loop=loop)
    client = new()
    held = []
    worker.register_function(fname, held.append, async_=True)
    worker.work()
    client.submit_job_bg(fname, "j")
    run_until(loop, lambda: held, what="the job")
    job = held[0]
    ref = weakref.ref(worker)
    del worker
    gc.collect()
    assert ref() is None  # the Job holds its Gearman object only weakly
    with pytest.raises(GearmanError, match="^client destroyed$"):
        job.complete(b"x")
    with pytest.raises(GearmanError, match="^client destroyed$"):
        job.status(1, 2)


# ===== ALL_YOURS =====

def test_all_yours_on_gearmand_1_1(loop, new):
    g = new()
    out = []
    g.echo(b"before", lambda r, e: out.append(("echo", r, e)))
    g.all_yours(lambda r, e: out.append(("all_yours", r, e)))
    g.all_yours()  # no callback: the ERROR is still matched to it
    g.echo(b"after", lambda r, e: out.append(("echo", r, e)))
    run_until(loop, lambda: len(out) == 3, what="three replies")
    assert out == [("echo", b"before", None),
                   ("all_yours", None, "INVALID_COMMAND: Command not expected"),
                   ("echo", b"after", None)]
    assert g.pending_count == 0
    round_trip(loop, g)


# ===== Reconnect =====

def test_worker_reregisters_after_server_restart(loop, own_gearmand, fname):
    host, port = own_gearmand.host, own_gearmand.port
    errors = []
    worker = Gearman(host, port, loop=loop, reconnect=True, reconnect_delay=0.1,
                     on_error=errors.append)
    served = []
    worker.register_function(fname, lambda job: served.append(job.workload))
    worker.work()
    assert status_row(loop, worker, fname)[2] == 1
    own_gearmand.restart()  # same port, no registrations, no jobs
    client = Gearman(host, port, loop=loop, on_error=errors.append)
    try:
        submit_bg(loop, client, fname, [str(i) for i in range(100)])
        run_until(loop, lambda: len(served) == 100, 10, what="100 jobs after the restart")
        assert sorted(int(w) for w in served) == list(range(100))
        # Asked on the worker's connection, behind its last WORK_COMPLETE.
        assert status_row(loop, worker, fname) == (0, 0, 1)
        assert "connection closed by server" in errors
    finally:
        worker.disconnect()
        client.disconnect()


# ===== Bad input =====

def _cb(job):
    return None


@pytest.mark.parametrize("call, exc", [
    (lambda g, f: g.register_function(f, "not callable"), TypeError),
    (lambda g, f: g.register_function(f, None), TypeError),
    (lambda g, f: g.register_function("has space", _cb), ValueError),
    (lambda g, f: g.register_function("", _cb), ValueError),
    (lambda g, f: g.register_function("nul\0byte", _cb), ValueError),
    (lambda g, f: g.register_function("x" * 513, _cb), ValueError),
    (lambda g, f: g.register_function(42, _cb), TypeError),
    (lambda g, f: g.register_function(f, _cb, timeout=-1), ValueError),
    (lambda g, f: g.register_function(f, _cb, timeout="1"), TypeError),
    (lambda g, f: g.can_do("tab\tname"), ValueError),
    (lambda g, f: g.cant_do(""), ValueError),
    (lambda g, f: g.set_client_id("has space"), ValueError),
    (lambda g, f: g.work(concurrency=0), ValueError),
    (lambda g, f: g.work(concurrency=-2), ValueError),
    (lambda g, f: g.work(concurrency="x"), TypeError),
    (lambda g, f: g.work(concurrency=2.0), TypeError),
    (lambda g, f: g.work(on_idle="x"), TypeError),
    (lambda g, f: g.work_one(on_idle=5), TypeError),
    (lambda g, f: g.grab_job("x"), TypeError),
])
def test_bad_input(loop, fname, call, exc):
    # Refused before any I/O: on an unconfigured object too, not "not connected".
    g = Gearman(loop=loop)
    with pytest.raises(exc):
        call(g, fname)


def test_timeout_zero_means_a_plain_can_do(gearmand, loop, fname):
    # API.md 2: 0 means "no timeout" everywhere, so timeout=0 is CAN_DO, not an error.
    worker = Gearman(gearmand.host, gearmand.port, loop=loop)
    worker.register_function(fname, lambda job: b"ok:" + job.workload, timeout=0)
    worker.work()
    client = Gearman(gearmand.host, gearmand.port, loop=loop)
    got = []
    client.submit_job(fname, b"x", lambda r, e: got.append((r, e)))
    run_until(loop, lambda: got)
    assert got == [(b"ok:x", None)]


def test_disconnect_sends_what_was_already_queued(gearmand, loop, fname, new):
    # job.complete() then disconnect() at once: the result is not thrown away
    # (a best-effort write before the socket closes).
    worker = new()

    def finish_and_leave(job):
        job.complete(b"done:" + job.workload)
        worker.disconnect()
    worker.register_function(fname, finish_and_leave, async_=True)
    worker.work()
    client = new()
    assert ask(loop, client.submit_job, fname, b"x", timeout=5) == (b"done:x", None)


def test_no_busy_spin_when_gearmand_answers_pre_sleep_at_once(gearmand, loop, fname, new):
    # gearmand 1.1: a not-yet-due epoch job hides a LOW job of the same
    # function from GRAB while PRE_SLEEP still sees it, so PRE_SLEEP gets an
    # immediate NOOP and GRAB gets NO_JOB, over and over (PROTOCOL.md 8.4).
    client = new()
    assert ask(loop, client.submit_job_epoch, fname, b"later", int(time.time()) + 60)[1] is None
    assert ask(loop, client.submit_job_low_bg, fname, b"low")[1] is None
    sleeps = []
    worker = new()
    worker.register_function(fname, lambda job: b"")
    worker.work(on_idle=lambda: sleeps.append(loop.now()))
    end = time.monotonic() + 1.0
    run_until(loop, lambda: time.monotonic() > end, timeout=5)
    # Backing off, the worker sleeps a few dozen times in that second, not
    # thousands (each sleep is a GRAB, a NO_JOB, a PRE_SLEEP and a NOOP).
    assert 3 <= len(sleeps) <= 60, f"{len(sleeps)} sleeps in one second"
    worker.disconnect()
    # Leave no due-in-a-minute job behind for the next tests' workers.
    admin_client = new()
    ask(loop, admin_client.admin, f"drop function {fname}")
