"""gearman_ev.aio.AsyncGearmanPool against three real gearmand processes of
the test's own (started and killed by their process handles), every test on
the default asyncio loop and on uvloop (the ``run`` fixture of test_aio):
key routing, round-robin spread, failover when a server dies under
pipelined jobs and its return, no server at all, the worker's one
concurrency cap, status routing, admin per server, teardown."""
from __future__ import annotations

import asyncio
import collections
import gc
import os
import signal
import weakref

import pytest

from gearman_ev import ConnectionLost, GearmanError, ServerError, errors
from gearman_ev._codec import write_pending
from gearman_ev._routing import key_order
from gearman_ev._session import DISCONNECTED
from gearman_ev.aio import AsyncGearman, AsyncGearmanPool, JobEvent
from gearman_ev.testing import LocalGearmand, free_port
from tests.conftest import stop_server
from tests.test_aio import bounded, run  # noqa: F401  (run is a fixture)

CONNECTED = 2  # a session's state


@pytest.fixture
def farm():
    """Three gearmand of this test's own (-t 1 each), stopped at teardown."""
    servers = [LocalGearmand(threads=1) for _ in range(3)]
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.close()


def specs(servers):
    return [f"{s.host}:{s.port}" for s in servers]


def pool_of(servers, **kw):
    kw.setdefault("on_error", lambda err: None)
    return AsyncGearmanPool(specs(servers), **kw)


async def all_up(pool):
    """Every server of the pool connected (each answered ``version``)."""
    versions = await bounded(pool.server_version())
    assert all(v.startswith("OK") for v in versions.values()), versions


async def status(pool, func):
    """{server_name: (total, running, workers)} of ``func`` from each
    server's admin ``status`` (zeros where it is not listed; None for a
    server that is down)."""
    try:
        texts = await bounded(pool.server_status())
    except ConnectionLost as exc:
        texts = exc.results  # what the servers that are up answered
    out = {}
    for name, text in texts.items():
        out[name] = None if text is None else (0, 0, 0)
        if text is None:
            continue
        for line in text.splitlines():
            fields = line.split("\t")
            if fields[0] == func:
                out[name] = tuple(int(x) for x in fields[1:4])
    return out


async def until(predicate, what, timeout=10.0):
    """Poll ``predicate()`` (a plain or async function) until true, bounded."""
    async def poll():
        while True:
            got = predicate()
            if asyncio.iscoroutine(got):
                got = await got
            if got:
                return got
            await asyncio.sleep(0.01)
    try:
        return await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        pytest.fail(f"timed out after {timeout}s waiting for {what}")


def server_of(pool, job):
    """Which of the pool's servers a worker's job came from."""
    session = job._session()
    return next(i for i, g in enumerate(pool.servers) if g._session is session)


# ===== Construction and lifecycle =====

def test_must_be_created_inside_a_running_loop():
    with pytest.raises(RuntimeError, match="running asyncio loop"):
        AsyncGearmanPool(["127.0.0.1:4730"])


def test_servers_options_async_with_and_close(run, farm):
    async def main():
        port = free_port()
        for bad, exc in [([f"127.0.0.1:{port}", "127.0.0.1:0"], ValueError), ([], ValueError),
                         ("h:1", TypeError), (["h", "h:4730"], ValueError)]:
            with pytest.raises(exc):
                AsyncGearmanPool(bad)
        with pytest.raises(ValueError):
            AsyncGearmanPool([f"127.0.0.1:{port}"], connect_timeout=-1)
        with pytest.raises(TypeError):
            AsyncGearmanPool([f"127.0.0.1:{port}"], loop=None)
        async with pool_of(farm) as pool:
            assert pool.is_connected
            assert [type(g) for g in pool.servers] == [AsyncGearman] * 3
            assert pool.server_names == tuple(specs(farm))
            assert all(g.reconnect_enabled for g in pool.servers)  # on by default in a pool
            assert await bounded(pool.echo(b"ping")) == b"ping"
            pool.set_client_id("apool-id")
            assert await bounded(pool.option("exceptions")) is True
            workers = await bounded(pool.server_workers())
            assert all("apool-id" in text for text in workers.values())
            with pytest.raises(TypeError):
                pool.echo(42)
        assert not pool.is_connected
        with pytest.raises(GearmanError, match="not connected"):
            pool.echo(b"after close")
        await pool.close()  # twice: harmless
    run(main())


def test_close_fails_every_awaiting_call_once(run, farm, fname):
    async def main():
        pool = pool_of(farm)
        await all_up(pool)
        jobs = [asyncio.ensure_future(pool.submit_job(fname, b"%d" % i)) for i in range(30)]
        await until(lambda: pool.active_count == 30, "30 jobs created")
        await pool.close()
        outcomes = await bounded(asyncio.gather(*jobs, return_exceptions=True))
        assert [o.err for o in outcomes] == [errors.DISCONNECTED] * 30
        assert all(isinstance(o, ConnectionLost) for o in outcomes)
    run(main())


# ===== Routing =====

def test_same_key_same_server_by_each_servers_status(run, farm, fname):
    async def main():
        pool = pool_of(farm)  # submitted at once: each key waits for its own server's connect
        names = pool.server_names
        keys = [f"key-{i}" for i in range(60)]
        handles = await bounded(asyncio.gather(*(
            pool.submit_job_bg(fname, f"{key}/{copy}", unique=key)
            for key in keys for copy in range(2))))  # the copy coalesces on the same server
        assert all(h.startswith("H:") for h in handles)
        expect = collections.Counter(names[key_order(k.encode(), names)[0]] for k in keys)
        got = await status(pool, fname)
        assert {n: got[n][0] for n in names} == {n: expect[n] for n in names}
        assert all(expect[n] > 0 for n in names)  # 60 keys reach every server
        # get_status_unique follows the key to the server that holds it.
        for key in keys[:5]:
            st = await bounded(pool.get_status_unique(key))
            assert st["known"] and st["unique"] == key
        await pool.close()
    run(main())


def test_round_robin_spread_of_3000_keyless_jobs(run, farm, fname):
    async def main():
        pool = pool_of(farm)
        await all_up(pool)
        handles = await bounded(asyncio.gather(
            *(pool.submit_job_bg(fname, str(i)) for i in range(3000))), 30)
        assert len(handles) == 3000
        totals = [t[0] for t in (await status(pool, fname)).values()]
        assert sum(totals) == 3000
        assert all(900 <= t <= 1100 for t in totals), totals
        await pool.close()
    run(main())


# ===== Failover =====

PAYLOAD = 8000  # bytes per job


def kernel_room():
    """Bytes the kernel may take for a connection whose reader has stopped:
    the sender's buffer and the reader's receive buffer at their largest
    (Linux grows the latter while data arrives, read or not)."""
    room = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            room += int(f.read().split()[2])
    return room


# Jobs submitted after B stopped, a third of them B's: its share outgrows
# every buffer on the way (the kernel's, then the transport's), so that part
# of it stays in the codec unsent, whatever this machine's TCP limits.
LATER = 3 * (kernel_room() // PAYLOAD + 500) // 100 * 100


def test_kill_a_server_during_pipelined_jobs_then_bring_it_back(run, farm, fname):
    async def main():
        client = pool_of(farm, reconnect_delay=0.05)
        ran = collections.defaultdict(list)  # job id -> servers it ran on
        # One worker per server, each with its own cap: a pool's one cap
        # would lose its slots to the GRABs a stopped server never answers.
        workers = [AsyncGearman(s.host, s.port, reconnect=True, reconnect_delay=0.05,
                                on_error=lambda err: None) for s in farm]
        for i, w in enumerate(workers):
            async def work(job, i=i):
                n = int(job.workload[:8])
                ran[n].append(i)
                return b"ok:%d" % n
            w.register_function(fname, work)
        work_tasks = [asyncio.ensure_future(w.work(concurrency=8)) for w in workers]
        await all_up(client)
        await bounded(asyncio.gather(*(w.echo(b"abilities sent") for w in workers)))

        def submit(ids):
            return {n: asyncio.ensure_future(
                client.submit_job(fname, b"%08d" % n + b"." * (PAYLOAD - 8))) for n in ids}

        # Jobs flow on all three servers.
        first = submit(range(3000))
        await until(lambda: sum(f.done() for f in first.values()) >= 1000, "1000 results", 30)
        # Server B stops reading (SIGSTOP) with jobs created, sent and queued on it.
        b = 1
        stop_server(farm[b])
        later = {}
        for start in range(3000, 3000 + LATER, 100):  # many loop rounds: B's transport pauses
            later.update(submit(range(start, start + 100)))
            await asyncio.sleep(0)
        jobs = {**first, **later}
        live = [client.servers[i] for i in (0, 2)]
        await until(lambda: all(g.pending_count + g.active_count == 0 for g in live),
                    "the live servers' jobs", 60)
        session = client.servers[b]._session
        packet = 12 + len(fname) + 2 + PAYLOAD  # every request on B has this size
        unsent = write_pending(session.c)
        held = client.servers[b].pending_count + client.servers[b].active_count
        assert unsent > packet, "the transport took all of B's share: raise PAYLOAD"
        assert client.rerouted_count == 0
        farm[b].kill()  # SIGKILL: B dies, its connections reset
        outcomes = await bounded(asyncio.gather(*jobs.values(), return_exceptions=True), 60)
        results = dict(zip(jobs, outcomes))

        moved = unsent // packet  # whole requests the transport took no byte of
        assert client.rerouted_count == moved
        failed = [n for n, r in results.items() if not isinstance(r, bytes)]
        assert all(isinstance(results[n], ConnectionLost) and
                   results[n].err == errors.DISCONNECTED for n in failed)
        assert len(failed) == held - moved  # the rest of what B held: once each
        for n, r in results.items():
            if isinstance(r, bytes):
                assert r == b"ok:%d" % n  # its own reply
                assert len(ran[n]) == 1, (n, ran[n])  # ran once, wherever
            else:
                assert ran.get(n, []) in ([], [b]), (n, ran[n])  # never resubmitted elsewhere

        # B comes back on its port: the worker registers again and jobs reach it.
        farm[b].start()
        names = client.server_names
        await until(lambda: client.servers[b]._session.state == CONNECTED and
                    workers[b]._session.state == CONNECTED, "B's return")
        # (The worker's CAN_DO and this status travel on different connections.)

        async def registered():
            return ((await status(client, fname))[names[b]] or (0, 0, 0))[2] == 1
        await until(registered, "the worker registered again on B")
        ran.clear()
        again = submit(range(300))
        assert [await bounded(f) for f in again.values()] == [b"ok:%d" % n for n in range(300)]
        per_server = collections.Counter(servers[0] for servers in ran.values())
        assert per_server == {0: 100, 1: 100, 2: 100}
        assert not any(t.done() for t in work_tasks)
        for w in workers:
            w.work_stop()
        await bounded(asyncio.gather(*work_tasks))
        for w in workers:
            await w.close()
        await client.close()
    run(main(), timeout=180)


def test_no_server_at_all_then_no_server_available(run):
    async def main():
        dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]  # nothing listens
        pool = AsyncGearmanPool(dead, connect_timeout=0.3, reconnect_delay=0.05,
                                on_error=lambda err: None)
        calls = [pool.submit_job("f", "x"), pool.submit_job_bg("f", "x", unique="k"),
                 pool.echo("x"), pool.get_status("H:t:1"), pool.wait_connected()]
        assert pool.waiting_count == 4
        outcomes = await bounded(asyncio.gather(*calls, return_exceptions=True))
        assert all(isinstance(o, ConnectionLost) for o in outcomes), outcomes
        assert [o.err for o in outcomes] == [errors.NO_SERVER] * 5
        with pytest.raises(ConnectionLost) as info:
            await bounded(pool.server_version())
        assert info.value.err == errors.DISCONNECTED
        assert info.value.results == {name: None for name in pool.server_names}
        with pytest.raises(asyncio.TimeoutError):
            await pool.wait_connected(timeout=0.05)  # the caller's bound comes first
        await pool.close()
        with pytest.raises(ConnectionLost):
            await bounded(pool.wait_connected())  # closed: nothing will connect
    run(main())


def test_all_servers_die_and_waiting_requests_give_up(run, farm, fname):
    async def main():
        pool = pool_of(farm, connect_timeout=0.3, reconnect_delay=0.05)
        await all_up(pool)
        for s in farm:
            s.kill()
        await until(lambda: not pool.is_connected, "every drop")
        with pytest.raises(ConnectionLost, match="no server available"):
            await bounded(pool.submit_job(fname, "x"))
        await pool.close()
    run(main())


# ===== Worker =====

def test_one_concurrency_cap_across_servers(run, farm, fname):
    async def main():
        client = pool_of(farm)
        await all_up(client)
        total, cap = 60, 4
        jobs = [asyncio.ensure_future(client.submit_job(fname, b"%d" % i))
                for i in range(total)]

        async def queued():
            return sum(t[0] for t in (await status(client, fname)).values()) == total
        await until(queued, "every job queued")
        running, peak = 0, 0
        served = collections.Counter()
        gate = asyncio.Event()
        worker = pool_of(farm)

        async def work(job):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            served[server_of(worker, job)] += 1
            if running == cap:
                gate.set()  # the cap is reached: from now on jobs flow
            await gate.wait()
            await asyncio.sleep(0)
            running -= 1
            return job.workload
        worker.register_function(fname, work)
        task = asyncio.ensure_future(worker.work(concurrency=cap))
        results = await bounded(asyncio.gather(*jobs), 30)
        assert results == [b"%d" % i for i in range(total)]
        assert peak == cap
        assert set(served) == {0, 1, 2}  # the slots went round every server
        worker.work_stop()
        await bounded(task)
        assert worker.jobs_running == 0
        again = asyncio.ensure_future(worker.work())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            await worker.work()  # one at a time
        worker.work_stop()
        await bounded(again)
        await worker.close()
        await client.close()
    run(main())


def test_a_worker_pool_outlives_a_server_and_serves_it_again(run, farm, fname):
    async def main():
        client = pool_of(farm, reconnect_delay=0.05)
        worker = pool_of(farm, reconnect_delay=0.05)
        names = client.server_names
        cancelled, held = [], []
        release = asyncio.Event()

        async def work(job):
            held.append(server_of(worker, job))
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancelled.append(job.workload)
                raise
            return b"ok"
        await all_up(client)
        await bounded(asyncio.gather(*(  # 3 jobs queued on each server
            g.submit_job_bg(fname, f"{i}-{n}")
            for i, g in enumerate(client.servers) for n in range(3))))
        await all_up(worker)
        worker.register_function(fname, work)
        task = asyncio.ensure_future(worker.work(concurrency=3))
        await until(lambda: len(held) == 3, "3 jobs running")
        assert sorted(held) == [0, 1, 2]  # one slot each
        b = 1
        farm[b].kill()
        await until(lambda: cancelled, "B's job cancelled")
        assert cancelled[0].startswith(b"1-")  # its server requeued it; nothing to send
        # Its slot went to a live server.
        await until(lambda: len(held) == 4, "a 4th job from a live server")
        assert held[3] in (0, 2)
        release.set()
        await until(lambda: len(held) == 7, "the live servers' jobs")

        async def drained():
            st = await status(client, fname)
            return st[names[0]][0] == 0 and st[names[2]][0] == 0
        await until(drained, "servers 0 and 2 drained")
        assert not task.done()  # a dead server does not stop the others
        # B back on its port (empty: gearmand keeps no queue): the worker
        # registers again and grabs from it.
        farm[b].start()

        async def registered():
            return ((await status(client, fname))[names[b]] or (0, 0, 0))[2] == 1
        await until(registered, "the worker registered again on B")
        held.clear()
        results = await bounded(asyncio.gather(
            *(client.servers[b].submit_job(fname, b"again %d" % n) for n in range(5))))
        assert results == [b"ok"] * 5 and held == [b] * 5
        worker.work_stop()
        await bounded(task)
        await worker.close()
        await client.close()
    run(main())


def test_close_ends_work_with_connection_lost(run, farm, fname):
    async def main():
        worker = pool_of(farm)
        worker.register_function(fname, lambda job: b"")
        task = asyncio.ensure_future(worker.work(concurrency=2))
        await all_up(worker)
        await worker.close()
        with pytest.raises(ConnectionLost):
            await bounded(task)
    run(main())


# ===== Status, admin, JobRun =====

def test_get_status_asks_the_server_that_holds_the_handle(run, farm, fname):
    async def main():
        pool = pool_of(farm)
        await all_up(pool)
        handle = await bounded(pool.submit_job_bg(fname, "x"))
        ask = pool.get_status(handle)
        assert pool.pending_count == 1  # one server asked, not three
        st = await bounded(ask)
        assert st["known"] and st["handle"] == handle
        # A foreground job's handle, by JobRun: asked of its own server too.
        worker = pool_of(farm)
        started = asyncio.Event()
        finish = asyncio.Event()

        async def work(job):
            job.status(1, 2)
            started.set()
            await finish.wait()
            job.send_data(b"part")
            return b"whole"
        worker.register_function(fname + "_fg", work)
        task = asyncio.ensure_future(worker.work(concurrency=3))
        runs = [pool.submit(fname + "_fg", b"%d" % i) for i in range(3)]
        handles = [await bounded(r.created()) for r in runs]
        await bounded(started.wait())
        for r, h in zip(runs, handles):
            ask = pool.get_status(h)
            assert pool.pending_count == 1
            st = await bounded(ask)
            assert st["known"] and st["handle"] == h
        finish.set()
        for r in runs:
            assert await bounded(r) == b"whole"
            events = [e async for e in r.events()]
            assert events[-1] == JobEvent("data", b"part")
            assert JobEvent("status", ("1", "2")) in events
        ask = pool.get_status(handles[0])  # forgotten at its end: every server is asked
        assert pool.pending_count == 3
        await bounded(ask)  # (known or not: the servers share a handle prefix here)
        assert not (await bounded(pool.get_status("H:t:nosuch")))["known"]
        worker.work_stop()
        await bounded(task)
        await worker.close()
        await pool.close()
    run(main())


def test_admin_gives_one_reply_per_server(run, farm, fname):
    async def main():
        pool = pool_of(farm, reconnect_delay=0.05)
        await all_up(pool)
        texts = await bounded(pool.admin("version"))
        assert list(texts) == list(pool.server_names)
        with pytest.raises(ServerError, match="ERR UNKNOWN_COMMAND") as info:
            await bounded(pool.admin("bogus"))
        assert set(info.value.results.values()) == {None}
        assert await bounded(pool.maxqueue(fname, 5)) == {n: "OK" for n in pool.server_names}
        farm[1].kill()
        await until(lambda: pool.servers[1]._session.state != CONNECTED, "the drop")
        with pytest.raises(ConnectionLost) as info:
            await bounded(pool.server_version())
        results = info.value.results
        assert results[pool.server_names[1]] is None
        assert results[pool.server_names[0]].startswith("OK")
        await pool.close()
    run(main())


def test_every_submission_kind_through_the_pool(run, farm, fname):
    async def main():
        pool = pool_of(farm)
        worker = pool_of(farm)
        worker.register_function(fname, lambda job: job.workload[::-1])
        task = asyncio.ensure_future(worker.work())
        await all_up(pool)
        for submit in (pool.submit_job, pool.submit_job_high, pool.submit_job_low):
            assert await bounded(submit(fname, "abc")) == b"cba"
            assert await bounded(submit(fname, "abc", unique="u-" + submit.__name__)) == b"cba"
        for priority in ("high", "normal", "low"):
            assert await bounded(pool.submit(fname, "xy", priority=priority)) == b"yx"
        for submit in (pool.submit_job_bg, pool.submit_job_high_bg, pool.submit_job_low_bg):
            assert (await bounded(submit(fname, "x"))).startswith("H:")
        later = int(asyncio.get_running_loop().time()) + 10 ** 9
        await bounded(pool.submit_job_epoch(fname + "_later", "x", later, unique="e"))
        st = await bounded(pool.get_status_unique("e"))
        assert st["known"] and not st["running"]
        worker.work_stop()
        await bounded(task)
        await worker.close()
        await pool.close()
    run(main())


def test_a_dropped_pool_is_freed_at_once(run, fname):
    async def main():
        pool = AsyncGearmanPool([f"127.0.0.1:{free_port()}" for _ in range(2)],
                                on_error=lambda err: None)
        pool.register_function(fname, lambda job: b"")
        given_up = pool.submit_job(fname, "x")  # waits for a server...
        given_up.close()  # ...and its caller gave up on it (a coroutine holds its pool)
        assert pool.waiting_count == 1
        refs = [weakref.ref(pool), weakref.ref(pool.servers[0]), weakref.ref(pool._r)]
        gc.disable()  # no cycle holds it: plain reference counting frees it all
        try:
            del pool
            assert [r() for r in refs] == [None, None, None]
        finally:
            gc.enable()
    run(main())


def test_work_ends_when_every_server_has_ended_for_good(run, own_gearmand, fname):
    # One server refused from the start (no reconnect), then the other closed:
    # work() raises ConnectionLost rather than waiting for ever.
    async def main():
        pool = AsyncGearmanPool([own_gearmand.address, f"127.0.0.1:{free_port()}"],
                                reconnect=False, on_error=lambda err: None)
        await bounded(pool.wait_connected())
        await until(lambda: pool.servers[1]._session.state == DISCONNECTED, "the refusal")
        pool.register_function(fname, lambda job: b"x")
        task = asyncio.ensure_future(pool.work())
        await asyncio.sleep(0.1)
        assert not task.done()  # the live server serves
        await pool.servers[0].close()
        with pytest.raises(ConnectionLost):
            await bounded(task)
        await pool.close()
    run(main())


def test_shutdown_server_and_all_yours_on_every_server(run, farm):
    async def main():
        pool = pool_of(farm)
        await all_up(pool)
        with pytest.raises(ServerError) as refused:
            await bounded(pool.shutdown_server())
        assert refused.value.err.startswith("ERR UNKNOWN_COMMAND ")
        assert refused.value.results == {n: None for n in pool.server_names}
        with pytest.raises(ServerError) as refused:
            await bounded(pool.all_yours())
        assert refused.value.err.startswith("INVALID_COMMAND")
        assert refused.value.results == {n: None for n in pool.server_names}
        assert await bounded(pool.echo(b"alive")) == b"alive"
        await pool.close()
    run(main())
