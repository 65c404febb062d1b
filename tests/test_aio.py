"""gearman_ev.aio against the real gearmand, every test on both the default
asyncio loop and uvloop (the ``run`` fixture). Each test body is one
coroutine bounded by asyncio.wait_for, and so is every wait inside it."""
from __future__ import annotations

import asyncio
import gc
import random
import signal
import threading
import weakref

import pytest
import uvloop  # the `test` extra: never skipped

from gearman_ev import (CommandTimeout, ConnectionLost, GearmanError, JobException, JobFailed,
                        JobTimeout, ServerError, errors)
from gearman_ev._gearmand import free_port
from gearman_ev.aio import AsyncGearman, JobEvent, JobRun
from tests.conftest import stop_server
from tests.test_unix import unix_bridge  # noqa: F401  (a fixture)

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """``run(coro, timeout)``: run one test body on a fresh loop of the kind
    under test, bounded; the loop is closed after."""
    def run_on_loop(coro, timeout=30.0):
        loop = LOOPS[request.param]()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    run_on_loop.kind = request.param
    return run_on_loop


async def bounded(aw, timeout=10.0):
    return await asyncio.wait_for(aw, timeout)


async def connected(server, **kw):
    g = AsyncGearman(server.host, server.port, **kw)
    await bounded(g.wait_connected())
    return g


async def start_worker(server, functions, concurrency=1, **kw):
    """A worker serving ``functions`` ({name: func}); returns (g, work task).
    A round trip after the CAN_DOs makes sure gearmand has them."""
    w = await connected(server, **kw)
    for name, func in functions.items():
        w.register_function(name, func)
    task = asyncio.ensure_future(w.work(concurrency=concurrency))
    await bounded(w.echo(b"abilities sent"))
    return w, task


async def stop_worker(w, task):
    w.work_stop()
    await bounded(task)
    await w.close()


# ===== Construction and connection =====

def test_must_be_created_inside_a_running_loop():
    with pytest.raises(RuntimeError, match="running asyncio loop"):
        AsyncGearman("127.0.0.1", 4730)


def test_no_loop_or_priority_arguments(run, gearmand):
    async def main():
        for kw in ({"loop": None}, {"priority": 0}):
            with pytest.raises(TypeError):
                AsyncGearman(gearmand.host, gearmand.port, **kw)
        with pytest.raises(ValueError, match="both 'host' and 'path'"):
            AsyncGearman("h", path="/p")
        with pytest.raises(ValueError):
            AsyncGearman(gearmand.host, gearmand.port, connect_timeout=-1)
    run(main())


def test_async_with_waits_for_the_connection_and_closes(run, gearmand):
    async def main():
        async with AsyncGearman(gearmand.host, gearmand.port) as g:
            assert g.is_connected and g.pending_count == 0
            assert await bounded(g.echo(b"x")) == b"x"
        assert not g.is_connected
        with pytest.raises(GearmanError, match="not connected"):
            g.echo(b"after close")
    run(main())


def test_wait_connected_on_a_refused_port(run):
    async def main():
        errs = []
        g = AsyncGearman("127.0.0.1", free_port(), on_error=errs.append)
        with pytest.raises(ConnectionLost):
            await bounded(g.wait_connected())
        assert errs == ["connect: Connection refused"]
        r = AsyncGearman("127.0.0.1", free_port(), reconnect=True, reconnect_delay=0.05,
                         on_error=errs.append)
        with pytest.raises(asyncio.TimeoutError):
            await r.wait_connected(timeout=0.3)  # still retrying: the caller's bound
        await r.close()
    run(main())


def test_connect_timeout(run):
    import socket
    # A listener whose accept queue is full: the kernel drops further SYNs,
    # so a connect neither succeeds nor fails.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)

    async def main():
        errs = []
        g = AsyncGearman("127.0.0.1", port, connect_timeout=0.2, on_error=errs.append)
        with pytest.raises(ConnectionLost):
            await bounded(g.wait_connected())
        assert errs == ["connect timeout"]
        assert not g.is_connected
    try:
        run(main())
    finally:
        for s in fillers + [listener]:
            s.close()


def test_getaddrinfo_error_is_reported(run):
    async def main():
        errs = []
        g = AsyncGearman("name.that.does.not.exist.invalid", 4730, on_error=errs.append)
        with pytest.raises(ConnectionLost):
            await bounded(g.wait_connected())
        assert len(errs) == 1 and errs[0].startswith("getaddrinfo: "), errs
    run(main())


def test_unconfigured_then_connect(run, gearmand):
    async def main():
        g = AsyncGearman()
        with pytest.raises(GearmanError, match="not connected"):
            g.echo(b"x")
        with pytest.raises(ConnectionLost):
            await g.wait_connected()
        g.connect(gearmand.host, gearmand.port)
        with pytest.raises(GearmanError, match="already connected"):
            g.connect(gearmand.host, gearmand.port)
        reply = g.echo(b"queued while connecting")  # waits in the local queue
        assert g.waiting_count == 1
        assert await bounded(reply) == b"queued while connecting"
        await g.close()
    run(main())


def test_unix_socket(run, unix_bridge):  # noqa: F811
    async def main():
        async with AsyncGearman(path=unix_bridge) as g:
            assert await bounded(g.echo(b"over\0unix")) == b"over\0unix"
            assert (await bounded(g.server_version())).startswith("OK ")
    run(main())


def test_wrong_thread(run, gearmand):
    async def main():
        g = await connected(gearmand)
        got = []

        def other():
            try:
                g.echo(b"x")
            except GearmanError as exc:
                got.append(str(exc))
        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert got == ["wrong thread"]
        await g.close()
    run(main())


# ===== Client requests (API.md 5) =====

def test_echo_and_payload_types(run, gearmand):
    async def main():
        async with AsyncGearman(gearmand.host, gearmand.port) as g:
            buf = bytearray(b"mutable")
            replies = [g.echo(b"a\0b"), g.echo("ünï"), g.echo(buf), g.echo(memoryview(b"mv"))]
            buf[:] = b"changed"  # a request queued the bytes when it was made
            assert await bounded(asyncio.gather(*replies)) == [
                b"a\0b", "ünï".encode(), b"mutable", b"mv"]
            with pytest.raises(TypeError):
                g.echo(12)
    run(main())


def test_foreground_jobs_at_each_priority_with_handlers(run, gearmand, fname):
    async def main():
        def work(job):
            job.send_data(b"d:" + job.workload)
            job.warning(b"w")
            job.status(1, 2)
            return job.workload.upper()
        w, task = await start_worker(gearmand, {fname: work})
        g = await connected(gearmand)
        events = []
        results = await bounded(asyncio.gather(
            g.submit_job(fname, b"normal", on_data=events.append, on_warning=events.append,
                         on_status=lambda n, d: events.append((n, d))),
            g.submit_job_high(fname, b"high"),
            g.submit_job_low(fname, "low", unique="u-low")))
        assert results == [b"NORMAL", b"HIGH", b"LOW"]
        assert events == [b"d:normal", b"w", ("1", "2")]
        await g.close()
        await stop_worker(w, task)
    run(main())


def test_background_epoch_and_status(run, gearmand, fname):
    async def main():
        g = await connected(gearmand)
        handles = await bounded(asyncio.gather(
            g.submit_job_bg(fname, b"1"), g.submit_job_high_bg(fname, b"2"),
            g.submit_job_low_bg(fname, b"3", unique=f"{fname}-u"),
            g.submit_job_epoch(fname, b"4", 2 ** 31)))
        assert all(isinstance(h, str) and h.startswith("H:") for h in handles)
        assert len(set(handles)) == 4
        status = await bounded(g.get_status(handles[0]))
        assert status == {"handle": handles[0], "known": True, "running": False,
                          "numerator": "0", "denominator": "0"}
        unique = await bounded(g.get_status_unique(f"{fname}-u"))
        assert unique["known"] is True and unique["client_count"] == 0
        assert unique["unique"] == f"{fname}-u"
        assert (await bounded(g.get_status("H:none:1")))["known"] is False
        with pytest.raises(ValueError):
            g.get_status_unique("")
        await g.close()
    run(main())


def test_option_admin_and_helpers(run, own_gearmand, fname):
    async def main():
        g = await connected(own_gearmand)
        assert await bounded(g.option("exceptions")) is True
        with pytest.raises(ServerError) as info:
            await bounded(g.option("no_such_option"))
        assert info.value.code == "UNKNOWN_OPTION"
        assert (await bounded(g.server_version())).startswith("OK ")
        assert await bounded(g.maxqueue(fname, 5)) == "OK"
        await bounded(g.submit_job_bg(fname, b"x"))
        status = await bounded(g.server_status())
        assert f"{fname}\t1\t0\t0\n" in status
        assert status.endswith("\n")
        assert "\n" in await bounded(g.server_workers())
        assert (await bounded(g.admin("show unique jobs"))) is not None
        with pytest.raises(ServerError) as info:
            await bounded(g.admin("no_such_command"))
        assert info.value.code == "UNKNOWN_COMMAND" and info.value.err.startswith("ERR ")
        with pytest.raises(ServerError):  # gearmand >= 1.1.15 has no "shutdown"
            await bounded(g.shutdown_server())
        with pytest.raises(ServerError) as info:
            await bounded(g.all_yours())
        assert info.value.code == "INVALID_COMMAND"
        with pytest.raises(ValueError):
            g.admin("status\r\nversion")
        with pytest.raises(ValueError):
            g.maxqueue("two words", 1)
        assert await bounded(g.echo(b"still in step")) == b"still in step"
        await g.close()
    run(main())


def test_failures_raise_the_errors_exceptions(run, gearmand, fname):
    async def main():
        def fail(job):
            raise RuntimeError("broken: " + job.workload.decode())
        w, task = await start_worker(gearmand, {fname: fail, fname + "x": fail},
                                     exceptions=True)
        plain = await connected(gearmand)
        with pytest.raises(JobFailed):  # gearmand turns WORK_EXCEPTION into a fail for
            await bounded(plain.submit_job(fname, b"a"))  # a client without the option
        await plain.close()
        g = await connected(gearmand, exceptions=True)
        seen = []
        with pytest.raises(JobException) as info:
            await bounded(g.submit_job(fname, b"b", on_exception=seen.append))
        assert info.value.data == b"broken: b" and seen == [b"broken: b"]
        assert info.value.err == errors.EXCEPTION
        with pytest.raises(JobTimeout):
            await bounded(g.submit_job(fname + "_nobody", b"c", timeout=0.2))
        await g.close()
        await stop_worker(w, task)
    run(main())


def test_job_failed_without_exceptions(run, gearmand, fname):
    async def main():
        def fail(job):
            raise ValueError("no")
        w, task = await start_worker(gearmand, {fname: fail})
        g = await connected(gearmand)
        with pytest.raises(JobFailed) as info:
            await bounded(g.submit_job(fname, b"x"))
        assert info.value.err == "job failed"
        await g.close()
        await stop_worker(w, task)
    run(main())


def test_command_timeout(run, own_gearmand):
    async def main():
        errs = []
        g = await connected(own_gearmand, command_timeout=0.2, on_error=errs.append)
        stop_server(own_gearmand)  # it reads nothing, answers nothing
        try:
            replies = [g.echo(b"1"), g.server_status()]
            for reply in replies:
                with pytest.raises(CommandTimeout):
                    await bounded(reply)
        finally:
            own_gearmand.proc.send_signal(signal.SIGCONT)
        assert errs == ["command timeout"]
        await g.close()
    run(main())


# ===== submit() and JobRun =====

def test_job_run_events_by_async_iteration(run, gearmand, fname):
    async def main():
        gate = asyncio.Event()

        async def work(job):
            job.send_data(b"first")
            await gate.wait()
            job.warning(b"careful")
            job.status(3, 4)
            job.send_data(b"last")
            return b"result"
        w, task = await start_worker(gearmand, {fname: work})
        g = await connected(gearmand)
        run_ = g.submit(fname, b"x", priority="high")
        assert isinstance(run_, JobRun) and run_.handle is None
        handle = await bounded(run_.created())
        assert handle == run_.handle and handle.startswith("H:")
        seen = []
        async for event in run_.events():
            seen.append(event)
            if len(seen) == 1:
                gate.set()
        assert seen == [JobEvent("data", b"first"), JobEvent("warning", b"careful"),
                        JobEvent("status", ("3", "4")), JobEvent("data", b"last")]
        assert seen[2].kind == "status" and seen[2].value == ("3", "4")
        assert await bounded(run_) == b"result"
        assert await bounded(run_) == b"result"  # awaited again: the same outcome
        assert [e async for e in run_.events()] == seen  # from the first, again
        await g.close()
        await stop_worker(w, task)
    run(main())


def test_job_run_exception_event_and_priorities(run, gearmand, fname):
    async def main():
        def work(job):
            if job.workload == b"bad":
                raise KeyError("worker text")
            return job.workload
        w, task = await start_worker(gearmand, {fname: work}, exceptions=True)
        g = await connected(gearmand, exceptions=True)
        runs = [g.submit(fname, p, priority=p.decode()) for p in (b"high", b"normal", b"low")]
        assert await bounded(asyncio.gather(*runs)) == [b"high", b"normal", b"low"]
        bad = g.submit(fname, b"bad", unique="bad-key")
        events = [e async for e in bad.events()]
        assert events == [JobEvent("exception", b"'worker text'")]
        with pytest.raises(JobException) as info:
            await bounded(bad)
        assert info.value.data == b"'worker text'"
        with pytest.raises(ValueError):
            g.submit(fname, b"x", priority="urgent")
        with pytest.raises(TypeError):
            g.submit(fname, b"x", priority=1)
        await g.close()
        await stop_worker(w, task)
    run(main())


def test_job_run_created_raises_when_it_ends_without_a_handle(run, own_gearmand, fname):
    async def main():
        g = await connected(own_gearmand)
        stop_server(own_gearmand)
        try:
            run_ = g.submit(fname, b"x", timeout=0.2)
            with pytest.raises(JobTimeout):
                await bounded(run_.created())
            with pytest.raises(JobTimeout):
                await bounded(run_)
            assert [e async for e in run_.events()] == []
        finally:
            own_gearmand.proc.send_signal(signal.SIGCONT)
        await g.close()
    run(main())


# ===== Cancellation =====

def test_cancellation_stress_keeps_every_reply_in_place(run, gearmand, fname):
    async def main():
        async def work(job):
            await asyncio.sleep(0)
            return job.workload[::-1]
        w, task = await start_worker(gearmand, {fname: work}, concurrency=64)
        g = await connected(gearmand)
        n = 10_000
        rng = random.Random(12)

        def request(i):
            data = b"%d" % i
            kind = i % 4
            if kind == 0:
                return g.echo(data), data
            if kind == 1:
                return g.submit_job(fname, data), data[::-1]
            if kind == 2:
                return g.submit(fname, data), data[::-1]
            return g.admin("version"), None
        made = [request(i) for i in range(n)]
        tasks = [asyncio.ensure_future(aw) for aw, _ in made]
        order = list(range(n))
        rng.shuffle(order)
        before_start, while_waiting = order[:n // 4], order[n // 4:n // 2]
        for i in before_start:  # cancelled before the task ran: its request is out anyway
            tasks[i].cancel()
        for _ in range(rng.randrange(1, 4)):
            await asyncio.sleep(0)  # the others await; a few replies may be in
        for i in while_waiting:
            tasks[i].cancel()
        outcomes = await bounded(asyncio.gather(*tasks, return_exceptions=True), 120)
        cancelled = {i for i, o in enumerate(outcomes) if isinstance(o, asyncio.CancelledError)}
        assert cancelled >= set(before_start)
        assert cancelled <= set(before_start) | set(while_waiting)
        assert len(cancelled) > 3 * n // 8  # most of those cancelled while waiting, too
        for i, (outcome, (_, want)) in enumerate(zip(outcomes, made)):
            if i in cancelled:
                continue
            if want is None:
                assert outcome.startswith("OK "), (i, outcome)
            else:
                assert outcome == want, (i, outcome, want)
        assert await bounded(g.echo(b"own data")) == b"own data"
        for _ in range(200):  # the cancelled jobs' results still arrive, and are dropped
            if g.active_count == 0:
                break
            await asyncio.sleep(0.05)
        assert g.pending_count == 0 and g.active_count == 0
        await g.close()
        await stop_worker(w, task)
    run(main(), timeout=180)


def test_wait_for_timeout_then_the_next_request_gets_its_own_reply(run, own_gearmand):
    async def main():
        g = await connected(own_gearmand)
        stop_server(own_gearmand)
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(g.echo(b"late"), 0.2)
            assert g.pending_count == 1  # the request keeps its place
        finally:
            own_gearmand.proc.send_signal(signal.SIGCONT)
        assert await bounded(g.echo(b"mine")) == b"mine"
        assert g.pending_count == 0
        await g.close()
    run(main())


# ===== close() =====

def test_close_fails_every_awaiting_call_once(run, own_gearmand, fname):
    async def main():
        g = await connected(own_gearmand)
        g.register_function(fname + "_w", lambda job: b"")
        work_task = asyncio.ensure_future(g.work())
        stop_server(own_gearmand)  # nothing will be answered
        try:
            awaiting = [g.echo(b"1"), g.submit_job(fname, b"2"), g.submit_job_bg(fname, b"3"),
                        g.get_status("H:x:1"), g.server_status(), g.grab_job()]
            tasks = [asyncio.ensure_future(a) for a in awaiting]
            run_ = g.submit(fname, b"4")
            tasks.append(asyncio.ensure_future(run_.created()))
            tasks.append(asyncio.ensure_future(bounded(run_)))
            await asyncio.sleep(0)
            await bounded(g.close())
        finally:
            own_gearmand.proc.send_signal(signal.SIGCONT)
        outcomes = await bounded(asyncio.gather(*tasks, return_exceptions=True))
        assert [type(o) for o in outcomes] == [ConnectionLost] * len(tasks)
        assert all(o.err == "disconnected" for o in outcomes)
        with pytest.raises(ConnectionLost):
            await bounded(work_task)
        assert [e async for e in run_.events()] == []
        assert g.pending_count == 0 and g.waiting_count == 0
        await g.close()  # twice: harmless
    run(main())


def test_close_while_connecting_and_while_waiting_to_reconnect(run):
    async def main():
        port = free_port()
        g = AsyncGearman("127.0.0.1", port, reconnect=True, reconnect_delay=5,
                         on_error=lambda e: None)
        reply = asyncio.ensure_future(g.echo(b"queued"))
        waiter = asyncio.ensure_future(g.wait_connected())
        await asyncio.sleep(0.05)
        await bounded(g.close())
        for t in (reply, waiter):
            with pytest.raises(ConnectionLost):
                await bounded(t)
    run(main())


# ===== Reconnect =====

def test_requests_made_while_reconnecting(run, own_gearmand):
    async def main():
        downs = []
        g = await connected(own_gearmand, reconnect=True, reconnect_delay=0.05,
                            on_error=lambda e: None, on_disconnect=lambda: downs.append(1))
        own_gearmand.stop()
        for _ in range(200):
            if downs:
                break
            await asyncio.sleep(0.02)
        assert downs == [1]
        replies = [g.echo(b"%d" % i) for i in range(50)]
        status = g.server_version()
        assert g.waiting_count == 51
        own_gearmand.start()
        assert await bounded(asyncio.gather(*replies)) == [b"%d" % i for i in range(50)]
        assert (await bounded(status)).startswith("OK ")
        await bounded(g.wait_connected())
        await g.close()
    run(main())


def test_gearmand_restart_under_load_with_a_worker(run, own_gearmand, fname):
    """Jobs flow through an async worker when gearmand restarts with jobs
    queued and running: every item ends with exactly its own result (a job
    caught by the restart fails with ConnectionLost and is submitted again),
    none twice, and the same work() serves again after the restart."""
    async def main():
        served = []
        hold = asyncio.Event()  # the second half waits for it: in flight at the restart

        async def work(job):
            served.append(job.workload)
            if int(job.workload) >= 300:
                await hold.wait()
            return b"done:" + job.workload
        opts = dict(reconnect=True, reconnect_delay=0.05, on_error=lambda e: None)
        w, task = await start_worker(own_gearmand, {fname: work}, concurrency=8, **opts)
        g = await connected(own_gearmand, **opts)
        items = [b"%d" % i for i in range(600)]
        results = {}
        todo = list(items)
        rounds = 0
        while todo:
            rounds += 1
            assert rounds < 20, f"{len(todo)} items never completed"
            replies = [(item, g.submit_job(fname, item)) for item in todo]
            todo = []
            for k, (item, reply) in enumerate(replies):
                if rounds == 1 and k == 300:
                    while w.jobs_running < 8:  # the worker is full, the rest queued
                        await asyncio.sleep(0.01)
                    own_gearmand.restart()  # same port: both reconnect
                    hold.set()
                try:
                    result = await bounded(reply, 30)
                except ConnectionLost:
                    todo.append(item)
                    continue
                assert result == b"done:" + item
                assert item not in results, f"{item} completed twice"
                results[item] = result
            if rounds == 1:
                assert len(todo) == 300  # the restart caught them, running or queued
            if todo:
                await bounded(g.wait_connected(), 30)
        assert sorted(results) == sorted(items) and rounds >= 2
        assert set(served) >= set(items)
        assert not task.done()
        await g.close()
        await stop_worker(w, task)
    run(main(), timeout=120)


# ===== Worker =====

@pytest.mark.parametrize("cap", [1, 3])
def test_concurrency_cap_is_measured(run, gearmand, fname, cap):
    async def main():
        running = 0
        peak = 0
        gate = asyncio.Event()

        async def work(job):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == cap:
                gate.set()  # the cap is reached: from now on jobs flow
            await gate.wait()
            await asyncio.sleep(0)
            running -= 1
            return job.workload

        def sync_work(job):  # a plain function runs to its end at once
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            running -= 1
            return job.workload + b"!"
        g = await connected(gearmand)
        jobs = [g.submit_job(fname, b"%d" % i) for i in range(6 * cap)]
        jobs += [g.submit_job(fname + "_sync", b"s%d" % i) for i in range(5)]
        await bounded(g.echo(b""))  # queued at the server before the worker comes
        w, task = await start_worker(gearmand, {fname: work, fname + "_sync": sync_work},
                                     concurrency=cap)
        results = await bounded(asyncio.gather(*jobs), 30)
        assert results[:6 * cap] == [b"%d" % i for i in range(6 * cap)]
        assert results[6 * cap:] == [b"s%d!" % i for i in range(5)]
        assert peak == cap
        await g.close()
        await stop_worker(w, task)
    run(main())


def test_work_stop_returns_after_jobs_in_flight(run, gearmand, fname):
    async def main():
        gate = asyncio.Event()
        started = []

        async def work(job):
            started.append(job.workload)
            await gate.wait()
            return b"ok:" + job.workload
        w, task = await start_worker(gearmand, {fname: work}, concurrency=2)
        g = await connected(gearmand)
        jobs = [g.submit_job(fname, b"a"), g.submit_job(fname, b"b")]
        while len(started) < 2:
            await asyncio.sleep(0.01)
        w.work_stop()
        await bounded(w.echo(b"round trip"))
        assert not task.done() and w.jobs_running == 2
        gate.set()
        await bounded(task)
        assert w.jobs_running == 0
        assert await bounded(asyncio.gather(*jobs)) == [b"ok:a", b"ok:b"]
        late = g.submit_job(fname, b"c", timeout=0.3)  # nobody grabs after work_stop
        with pytest.raises(JobTimeout):
            await bounded(late)
        await g.close()
        await w.close()
    run(main())


def test_grab_job_and_job_methods_from_a_coroutine(run, gearmand, fname):
    async def main():
        w = await connected(gearmand, grab_unique=True, client_id=f"{fname}-id")
        w.can_do(fname)
        assert await bounded(w.grab_job()) is None
        g = await connected(gearmand)
        events = []
        reply = g.submit_job(fname, b"grab me", unique="k1", on_status=lambda n, d:
                             events.append((n, d)))
        await bounded(g.echo(b""))
        job = await bounded(w.grab_job())
        assert job.workload == b"grab me" and job.unique == "k1" and job.function == fname
        await asyncio.sleep(0)
        job.status(1, 1)
        job.complete(b"grabbed")
        assert await bounded(reply) == b"grabbed" and events == [("1", "1")]
        with pytest.raises(GearmanError, match="already finished"):
            job.fail()
        assert f"{fname}-id" in await bounded(w.server_workers())
        w.cant_do(fname)
        await w.close()
        await g.close()
    run(main())


def test_work_while_unconfigured_then_connect(run, gearmand, fname):
    async def main():
        w = AsyncGearman()
        w.register_function(fname, lambda job: b"late worker")
        task = asyncio.ensure_future(w.work())
        w.connect(gearmand.host, gearmand.port)
        g = await connected(gearmand)
        assert await bounded(g.submit_job(fname, b"")) == b"late worker"
        await stop_worker(w, task)
        await g.close()
        w2 = await connected(gearmand)
        first = asyncio.ensure_future(w2.work())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await w2.work()
        await w2.close()
        with pytest.raises(ConnectionLost):
            await bounded(first)
    run(main())


def test_a_dropped_connection_cancels_its_jobs(run, own_gearmand, fname):
    async def main():
        cancelled = []

        async def work(job):
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(job.workload)
                raise
        w, task = await start_worker(own_gearmand, {fname: work}, concurrency=2,
                                     reconnect=True, reconnect_delay=0.05,
                                     on_error=lambda e: None)
        g = await connected(own_gearmand, on_error=lambda e: None)
        jobs = [asyncio.ensure_future(g.submit_job(fname, b"%d" % i)) for i in range(2)]
        while w.jobs_running < 2:
            await asyncio.sleep(0.01)
        own_gearmand.restart()
        for _ in range(200):
            if w.jobs_running == 0:
                break
            await asyncio.sleep(0.02)
        assert sorted(cancelled) == [b"0", b"1"]
        outcomes = await bounded(asyncio.gather(*jobs, return_exceptions=True))
        assert all(isinstance(o, ConnectionLost) for o in outcomes)
        await stop_worker(w, task)
    run(main())


# ===== Interruption, GC =====

def test_keyboard_interrupt_is_raised_from_the_loop_after_matching(gearmand, fname):
    for make_loop in LOOPS.values():
        loop = make_loop()

        async def start():
            g = await connected(gearmand)

            def interrupted(data):
                raise KeyboardInterrupt

            def work(job):
                job.send_data(b"d")
                return b"r"
            w, task = await start_worker(gearmand, {fname: work})
            replies = [asyncio.ensure_future(g.echo(b"%d" % i)) for i in range(5)]
            job = asyncio.ensure_future(g.submit_job(fname, b"",
                                                     on_data=interrupted))
            return g, w, task, replies, job

        g, w, task, replies, job = loop.run_until_complete(start())

        async def wait_all(job, replies):
            return await bounded(asyncio.gather(job, *replies))
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(wait_all(job, replies))
        # The state is consistent: running the loop again finishes everything.
        got = loop.run_until_complete(wait_all(job, replies))
        assert got == [b"r"] + [b"%d" % i for i in range(5)]
        loop.run_until_complete(stop_worker(w, task))
        loop.run_until_complete(g.close())
        loop.close()


def test_an_unreferenced_object_is_collected(run, gearmand):
    async def main():
        g = await connected(gearmand)
        assert await bounded(g.echo(b"x")) == b"x"
        ref = weakref.ref(g)
        del g
        gc.collect()
        assert ref() is None
        await asyncio.sleep(0.05)
    run(main())


def test_a_cycle_through_callbacks_is_collected(run, gearmand, fname):
    async def main():
        g = await connected(gearmand)

        async def work(job):
            return b""
        g.register_function(fname, work)
        g.on_error = lambda err: g  # a handler that refers to its object
        g.submit(fname + "_nobody", b"x")  # a JobRun nobody keeps: held by the session only
        await bounded(g.echo(b"sent"))
        ref = weakref.ref(g)
        del g
        gc.collect()
        assert ref() is None
        await asyncio.sleep(0.05)
    run(main())


def test_a_request_being_awaited_keeps_its_object(run, gearmand):
    async def main():
        assert await bounded(AsyncGearman(gearmand.host, gearmand.port).echo(b"kept")) == \
            b"kept"
    run(main())


# ===== Back-pressure: pause_writing / resume_writing =====

def test_write_back_pressure_with_a_stopped_server(run, own_gearmand):
    async def main():
        drained = []
        g = await connected(own_gearmand, high_water=1 << 20)
        g.on_drain = lambda: drained.append(True)
        stop_server(own_gearmand)
        replies = []
        try:
            chunk = b"x" * 65536
            with pytest.raises(GearmanError, match="write buffer full"):
                for _ in range(100_000):
                    replies.append(g.echo(chunk))
                    await asyncio.sleep(0)  # let the loop write (and the transport pause)
            assert not g.writable
        finally:
            own_gearmand.proc.send_signal(signal.SIGCONT)
        done = await bounded(asyncio.gather(*replies), 60)
        assert all(d == chunk for d in done) and len(done) > 16
        assert drained == [True] and g.writable
        await g.close()
    run(main(), timeout=90)


# ===== A worker on one loop serving a libev client is covered by the
# examples; here, the same object as client and worker at once. =====

def test_one_object_is_client_worker_and_admin(run, gearmand, fname):
    async def main():
        async with AsyncGearman(gearmand.host, gearmand.port) as g:
            g.register_function(fname, lambda job: job.workload * 2)
            task = asyncio.ensure_future(g.work())
            assert await bounded(g.submit_job(fname, b"ab")) == b"abab"
            assert fname in await bounded(g.server_status())
            g.work_stop()
            await bounded(task)
    run(main())


# ===== README.rst's asyncio example runs as written =====

def test_readme_asyncio_example(gearmand):
    import os
    import subprocess
    import sys

    from tests.test_readme import ROOT, readme_blocks
    blocks = readme_blocks()
    example = next(b for b in blocks if "gearman_ev.aio" in b)
    worker = next(b for b in blocks if "register_function" in b)

    def as_run(code):
        return code.replace('"127.0.0.1", 4730', f'"{gearmand.host}", {gearmand.port}')
    env = dict(os.environ, PYTHONPATH=ROOT)
    server = subprocess.Popen([sys.executable, "-c", as_run(worker)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        out = subprocess.run([sys.executable, "-c", as_run(example)], env=env,
                             capture_output=True, text=True, timeout=30)
    finally:
        server.kill()
        server.wait()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["b'olleh'", "[b'ba', b'dc']"]
    assert lines[2] == "JobEvent(kind='status', value=('1', '1'))"
    assert lines[3].startswith("b'zyx' H:")


# ===== TLS (API.md 15): through a TLS terminator in front of gearmand =====

@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for "localhost" (openssl, as shipped with Debian)."""
    import shutil
    import subprocess
    openssl = shutil.which("openssl")
    assert openssl, "openssl is missing"
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return str(cert), str(key)


async def tls_terminator(server, cert, key):
    """A TLS server that relays each connection to gearmand in plain TCP."""
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def relay(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection(server.host, server.port)
        await asyncio.gather(relay(reader, up_writer), relay(up_reader, writer))
    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)


def test_tls(run, gearmand, tls_cert, fname):
    async def main():
        import ssl
        cert, key = tls_cert
        terminator = await tls_terminator(gearmand, cert, key)
        port = terminator.sockets[0].getsockname()[1]
        ctx = ssl.create_default_context(cafile=cert)
        async with AsyncGearman("127.0.0.1", port, ssl=ctx, server_hostname="localhost") as g:
            g.register_function(fname, lambda job: job.workload[::-1])
            task = asyncio.ensure_future(g.work())
            replies = [g.submit_job(fname, b"%d-tls" % i) for i in range(100)]
            assert await bounded(asyncio.gather(*replies)) == [
                (b"%d-tls" % i)[::-1] for i in range(100)]
            assert await bounded(g.echo(b"x" * 200_000)) == b"x" * 200_000
            g.work_stop()
            await bounded(task)
        errs = []
        untrusting = AsyncGearman("127.0.0.1", port, ssl=True, server_hostname="localhost",
                                  on_error=errs.append)
        with pytest.raises(ConnectionLost):
            await bounded(untrusting.wait_connected())
        assert len(errs) == 1 and errs[0].startswith("tls: "), errs
        # In Gearman's words (_tls.reason): the same failure reads the same.
        assert errs[0].startswith("tls: certificate verify failed: "), errs
        with pytest.raises(ValueError, match="TCP"):
            AsyncGearman(path="/tmp/x.sock", ssl=True)
        terminator.close()
        await terminator.wait_closed()
    run(main())
