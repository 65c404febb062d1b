"""GearmanPool against three real gearmand processes of the test's own
(started and killed by their process handles, on free ports): server specs,
key routing, round-robin spread, failover when a server dies in the middle
of a pipelined run, its return, no server at all, the worker's one
concurrency cap, status routing, admin per server, teardown."""
from __future__ import annotations

import collections
import gc
import os
import signal
import subprocess
import sys
import time
import weakref

import pytest

from gearman_ev import Gearman, GearmanError, GearmanPool, errors
from gearman_ev._codec import write_pending
from gearman_ev._gearmand import LocalGearmand, free_port
from gearman_ev._routing import key_order, parse_server, parse_servers
from tests.conftest import ask, run_until, stop_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@pytest.fixture
def pools(loop):
    """Make pools on the test's loop; each is disconnected at teardown."""
    made = []

    def make(servers, **kw):
        kw.setdefault("on_error", lambda err: None)
        pool = GearmanPool([f"{s.host}:{s.port}" for s in servers], loop=loop, **kw)
        made.append(pool)
        return pool
    yield make
    for pool in made:
        pool.disconnect()


def all_up(loop, pool):
    """Wait until every server of the pool answered: all are connected."""
    versions, err = ask(loop, pool.server_version)
    assert err is None and all(v.startswith("OK") for v in versions.values()), versions


def status(loop, pool, func):
    """{server_name: (total, running, workers)} of ``func`` from each
    server's admin ``status`` (zeros where it is not listed)."""
    texts, err = ask(loop, pool.server_status)
    assert err is None, err
    out = {}
    for name, text in texts.items():
        out[name] = (0, 0, 0)
        for line in text.splitlines():
            fields = line.split("\t")
            if fields[0] == func:
                out[name] = tuple(int(x) for x in fields[1:4])
    return out


def until_status(loop, pool, func, predicate, what, timeout=10.0):
    """Ask ``status`` until ``predicate(status(...))`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = status(loop, pool, func)
        if predicate(got):
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {got}"


def server_of(pool, job):
    """Which of the pool's servers a worker's job came from."""
    session = job._session()
    return next(i for i, g in enumerate(pool.servers) if g._session is session)


# ===== Server specs =====

def test_server_specs_are_parsed_and_checked_before_any_io(loop):
    assert parse_server("h.example:4731").address == ("tcp", "h.example", 4731)
    assert parse_server("h.example").name == "h.example:4730"
    assert parse_server("[::1]:4731") == ("[::1]:4731", ("tcp", "::1", 4731))
    assert parse_server("[::1]").name == "[::1]:4730"
    assert parse_server("unix:/run/g.sock") == ("unix:/run/g.sock", ("unix", b"/run/g.sock"))
    assert parse_server(("10.0.0.1", 4732)).name == "10.0.0.1:4732"
    for bad, exc in [("h:0", ValueError), ("h:65536", ValueError), ("h:x", ValueError),
                     ("::1", ValueError), ("[::1", ValueError), ("[::1]x", ValueError),
                     ("", ValueError), (" h", ValueError), (":4730", ValueError),
                     ("unix:", ValueError), (("h", "4730"), TypeError), (("h",), ValueError),
                     ((1, 4730), TypeError), (4730, TypeError), (b"h:1", TypeError)]:
        with pytest.raises(exc):
            parse_server(bad)
    with pytest.raises(TypeError):
        parse_servers("h:1,h:2")  # a str is not a list of specs
    with pytest.raises(ValueError):
        parse_servers([])
    with pytest.raises(ValueError, match="twice"):
        parse_servers(["h", "h:4730"])
    # The pool refuses the same way, and a bad option too, before connecting.
    port = free_port()
    with pytest.raises(ValueError):
        GearmanPool([f"127.0.0.1:{port}", "127.0.0.1:0"], loop=loop)
    with pytest.raises(ValueError):
        GearmanPool([f"127.0.0.1:{port}"], loop=loop, connect_timeout=-1)
    with pytest.raises(TypeError):
        GearmanPool([f"127.0.0.1:{port}"], loop=loop, client_id=3)


def test_servers_are_gearman_objects_in_the_given_order(loop, farm, pools):
    pool = pools(farm)
    assert [g.__class__.__name__ for g in pool.servers] == ["Gearman"] * 3
    assert pool.server_names == tuple(f"127.0.0.1:{s.port}" for s in farm)
    assert all(g.reconnect_enabled for g in pool.servers)  # on by default in a pool
    all_up(loop, pool)
    assert all(g.is_connected for g in pool.servers)


# ===== Routing =====

def test_same_key_same_server_by_each_servers_status(loop, farm, pools, fname):
    pool = pools(farm)  # submitted at once: each key waits for its own server's connect
    names = pool.server_names
    keys = [f"key-{i}" for i in range(60)]
    created = []
    for key in keys:
        for copy in range(2):  # the second coalesces on the same server, or shows up twice
            pool.submit_job_bg(fname, f"{key}/{copy}", lambda h, e: created.append(e),
                               unique=key)
    run_until(loop, lambda: len(created) == 120, what="120 JOB_CREATED")
    assert created == [None] * 120
    expect = collections.Counter(names[key_order(k.encode(), names)[0]] for k in keys)
    got = status(loop, pool, fname)
    assert {n: got[n][0] for n in names} == {n: expect[n] for n in names}
    assert all(expect[n] > 0 for n in names)  # 60 keys reach every server
    # get_status_unique follows the key to the server that holds it.
    for key in keys[:5]:
        st, err = ask(loop, pool.get_status_unique, key)
        assert err is None and st["known"] and st["unique"] == key


def test_key_routing_is_the_same_in_another_process(farm):
    names = [f"127.0.0.1:{s.port}" for s in farm]
    keys = [f"key-{i}" for i in range(50)]
    here = [key_order(k.encode(), names)[0] for k in keys]
    code = ("import sys; from gearman_ev._routing import key_order; "
            f"print([key_order(k.encode(), {names!r})[0] for k in {keys!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=dict(os.environ, PYTHONHASHSEED="12345"),
                         timeout=30, check=True).stdout
    assert out.strip() == str(here)


def test_a_key_goes_to_its_next_server_while_its_own_is_down(loop, farm, pools, fname):
    pool = pools(farm, reconnect_delay=0.05)
    all_up(loop, pool)
    names = pool.server_names
    key = "the-key"
    first, second = key_order(key.encode(), names)[:2]
    farm[first].kill()
    run_until(loop, lambda: not pool.servers[first].is_connected or
              pool.servers[first]._session.state != 2, what="the drop")
    out = []
    pool.submit_job_bg(fname, "x", lambda h, e: out.append(e), unique=key)
    run_until(loop, lambda: out, what="JOB_CREATED")
    assert out == [None]
    texts, err = ask(loop, pool.server_status)
    assert texts[names[first]] is None and err == errors.DISCONNECTED
    assert fname in texts[names[second]]
    # Back on its port: the key returns to it.
    farm[first].start()
    run_until(loop, lambda: pool.servers[first]._session.state == 2, timeout=10,
              what="the reconnect")
    pool.submit_job_bg(fname, "y", lambda h, e: out.append(e), unique=key)
    run_until(loop, lambda: len(out) == 2, what="JOB_CREATED")
    assert status(loop, pool, fname)[names[first]][0] == 1


def test_round_robin_spread_of_3000_keyless_jobs(loop, farm, pools, fname):
    pool = pools(farm)
    all_up(loop, pool)
    created = []
    for i in range(3000):
        pool.submit_job_bg(fname, str(i), lambda h, e: created.append(e))
    run_until(loop, lambda: len(created) == 3000, timeout=20, what="3000 JOB_CREATED")
    assert set(created) == {None}
    totals = [t[0] for t in status(loop, pool, fname).values()]
    assert sum(totals) == 3000
    assert all(900 <= t <= 1100 for t in totals), totals


def test_requests_made_before_any_connect_wait_and_spread(loop, farm, pools, fname):
    pool = pools(farm)
    created = []
    for i in range(300):
        pool.submit_job_bg(fname, str(i), lambda h, e: created.append(e))
    assert pool.waiting_count == 300
    run_until(loop, lambda: len(created) == 300, what="300 JOB_CREATED")
    assert set(created) == {None} and pool.waiting_count == 0
    totals = [t[0] for t in status(loop, pool, fname).values()]
    assert sum(totals) == 300 and all(t > 0 for t in totals), totals


# ===== Failover =====

PAYLOAD = 2000  # bytes per job: the dead server's share outgrows the kernel buffers


def test_kill_a_server_during_30000_pipelined_jobs_then_bring_it_back(loop, farm, pools,
                                                                        fname):
    client = pools(farm, reconnect_delay=0.05)
    worker = pools(farm, reconnect_delay=0.05)
    ran = collections.defaultdict(list)  # job id -> servers it ran on

    def work(job):
        ran[int(job.workload[:8])].append(server_of(worker, job))
        return b"ok"
    worker.register_function(fname, work)
    worker.work()
    all_up(loop, client)
    all_up(loop, worker)

    results = {}
    doubled = []

    def submit(ids):
        for n in ids:
            def done(result, err, n=n):
                if n in results:
                    doubled.append(n)
                results[n] = err or result
            client.submit_job(fname, b"%08d" % n + b"." * (PAYLOAD - 8), done)

    # Jobs flow on all three servers.
    submit(range(10000))
    run_until(loop, lambda: len(results) >= 3000, timeout=30, what="3000 results")
    # Server B stops reading (SIGSTOP) with jobs created, sent and queued on it.
    b = 1
    stop_server(farm[b])
    submit(range(10000, 30000))
    a_c = [client.servers[i] for i in (0, 2)]
    run_until(loop, lambda: all(g.pending_count + g.active_count == 0 for g in a_c),
              timeout=60, what="the live servers' jobs")
    session = client.servers[b]._session
    packet = 12 + len(fname) + 2 + PAYLOAD  # every request on B has this size
    unsent = write_pending(session.c)
    held = client.servers[b].pending_count + client.servers[b].active_count
    assert unsent > packet, "the kernel took all of B's share: raise PAYLOAD"
    assert client.rerouted_count == 0
    farm[b].kill()  # SIGKILL: B dies, its connections reset
    run_until(loop, lambda: len(results) == 30000, timeout=60, what="30000 callbacks")

    assert doubled == []
    moved = unsent // packet  # whole requests the kernel took no byte of
    assert client.rerouted_count == moved
    failed = [n for n, r in results.items() if r != b"ok"]
    assert {results[n] for n in failed} <= {errors.DISCONNECTED}
    assert len(failed) == held - moved  # the rest of what B held: once each
    for n, r in results.items():
        if r == b"ok":
            assert len(ran[n]) == 1, (n, ran[n])  # ran once, wherever
        else:
            assert ran.get(n, []) in ([], [b]), (n, ran[n])  # never resubmitted elsewhere

    # B comes back on its port: the worker registers again and jobs reach it.
    farm[b].start()
    names = client.server_names
    run_until(loop, lambda: client.servers[b]._session.state == 2 and
              worker.servers[b]._session.state == 2, timeout=10, what="B's return")
    # (The worker's CAN_DO and this status travel on different connections.)
    until_status(loop, client, fname, lambda st: st[names[b]][2] == 1,
                 "the worker registered again on B")
    ran.clear()
    results.clear()
    submit(range(300))
    run_until(loop, lambda: len(results) == 300, timeout=30, what="300 more results")
    assert set(results.values()) == {b"ok"}
    per_server = collections.Counter(servers[0] for servers in ran.values())
    assert per_server == {0: 100, 1: 100, 2: 100}


def test_no_server_at_all_then_no_server_available(loop, pools, fname):
    dead = [LocalGearmand(port=free_port()) for _ in range(3)]  # never started
    pool = pools(dead, connect_timeout=0.3, reconnect_delay=0.05)
    out = []
    pool.submit_job(fname, "x", lambda r, e: out.append(("fg", e)))
    pool.submit_job_bg(fname, "x", lambda r, e: out.append(("bg", e)), unique="k")
    pool.echo("x", lambda r, e: out.append(("echo", e)))
    pool.get_status("H:t:1", lambda r, e: out.append(("status", e)))
    assert pool.waiting_count == 4
    run_until(loop, lambda: len(out) == 4, what="four callbacks")
    assert sorted(out) == [("bg", errors.NO_SERVER), ("echo", errors.NO_SERVER),
                           ("fg", errors.NO_SERVER), ("status", errors.NO_SERVER)]
    texts, err = ask(loop, pool.server_version)
    assert set(texts.values()) == {None} and err == errors.DISCONNECTED


def test_all_servers_die_and_waiting_requests_give_up(loop, farm, pools, fname):
    pool = pools(farm, connect_timeout=0.3, reconnect_delay=0.05)
    all_up(loop, pool)
    for s in farm:
        s.kill()
    run_until(loop, lambda: not any(g._session.state == 2 for g in pool.servers),
              what="every drop")
    out = []
    pool.submit_job(fname, "x", lambda r, e: out.append(e))
    run_until(loop, lambda: out, what="the callback")
    assert out == [errors.NO_SERVER]


def test_without_reconnect_a_pool_with_no_server_left_refuses(loop, pools, fname):
    dead = [LocalGearmand(port=free_port()) for _ in range(2)]
    pool = pools(dead, reconnect=False)
    out = []
    pool.submit_job(fname, "x", lambda r, e: out.append(e))
    run_until(loop, lambda: out, what="the callback")
    assert out == [errors.NO_SERVER]  # no server can ever take it
    with pytest.raises(GearmanError, match="not connected"):
        pool.submit_job(fname, "y")


# ===== Worker =====

def test_one_concurrency_cap_across_servers(loop, farm, pools, fname):
    client = pools(farm)
    worker = pools(farm)
    all_up(loop, client)
    total, cap = 60, 4
    done = []
    for i in range(total):
        client.submit_job(fname, str(i), lambda r, e: done.append(e))
    run_until(loop, lambda: sum(t[0] for t in status(loop, client, fname).values()) == total,
              what="every job queued")
    held, served = [], collections.Counter()
    peak = [0]

    def job(j):
        held.append(j)
        served[server_of(worker, j)] += 1
        peak[0] = max(peak[0], len(held))
    worker.register_function(fname, job, async_=True)
    worker.work(concurrency=cap)
    while len(done) < total:
        expect = min(cap, total - len(done))
        run_until(loop, lambda: len(held) >= expect, what=f"{expect} jobs running")
        assert len(held) <= cap
        running, held[:] = list(held), []
        for j in running:
            j.complete(b"ok")
        n = len(done) + len(running)
        run_until(loop, lambda: len(done) >= n, what=f"{n} results")
    assert done == [None] * total and peak[0] == cap
    assert set(served) == {0, 1, 2}  # the slots went round every server


def test_a_dead_servers_slots_go_to_the_others(loop, farm, pools, fname):
    client = pools(farm)
    all_up(loop, client)
    for i, g in enumerate(client.servers):  # 5 jobs queued on each server
        for n in range(5):
            g.submit_job_bg(fname, f"{i}-{n}")
    until_status(loop, client, fname, lambda st: all(t[0] == 5 for t in st.values()),
                 "5 jobs queued on each server")
    worker = pools(farm, reconnect_delay=0.05)
    all_up(loop, worker)
    held = []
    worker.register_function(fname, held.append, async_=True)
    worker.work(concurrency=3)
    run_until(loop, lambda: len(held) == 3, what="3 jobs running")
    assert sorted(server_of(worker, j) for j in held) == [0, 1, 2]  # one slot each
    farm[1].kill()
    # Server 1's job is stale now and its slot free: another server fills it.
    run_until(loop, lambda: len(held) == 4, what="a 4th job from a live server")
    assert server_of(worker, held[3]) in (0, 2)
    stale = next(j for j in held[:3] if server_of(worker, j) == 1)
    with pytest.raises(GearmanError, match="stale job"):
        stale.complete(b"late")
    for j in held:
        if j is not stale:
            j.complete(b"ok")
    run_until(loop, lambda: len(held) == 7, what="3 more jobs, from servers 0 and 2")
    assert all(server_of(worker, j) in (0, 2) for j in held[4:])


def test_worker_serves_every_server_and_on_idle(loop, farm, pools, fname):
    worker = pools(farm)
    idle = []
    worker.register_function(fname, lambda job: job.workload.upper())
    worker.work(lambda: idle.append(1))
    client = pools(farm)
    until_status(loop, client, fname, lambda st: all(t[2] == 1 for t in st.values()),
                 "a worker on every server")
    run_until(loop, lambda: idle, what="on_idle: every server's loop asleep")
    idle.clear()
    results = []
    for i, g in enumerate(client.servers):  # one job straight to each server
        g.submit_job(fname, f"s{i}", lambda r, e: results.append(r))
    run_until(loop, lambda: len(results) == 3, what="a job from each server")
    assert sorted(results) == [b"S0", b"S1", b"S2"]
    run_until(loop, lambda: idle, what="on_idle again once all are done")
    worker.work_stop()
    worker.cant_do(fname)
    until_status(loop, client, fname, lambda st: all(t[2] == 0 for t in st.values()),
                 "the ability withdrawn everywhere")


def test_client_id_option_and_echo_reach_every_server(loop, farm, pools):
    pool = pools(farm)
    pool.set_client_id("pool-client-id")
    assert ask(loop, pool.option, "exceptions") == (True, None)
    assert all(g._session.exceptions for g in pool.servers)  # and again on each connect
    assert ask(loop, pool.echo, b"ping") == (b"ping", None)
    workers, err = ask(loop, pool.server_workers)
    assert err is None and all("pool-client-id" in text for text in workers.values())
    with pytest.raises(TypeError):
        pool.echo(42)
    with pytest.raises(ValueError):
        pool.set_client_id("two words")


def test_every_submission_kind_through_the_pool(loop, farm, pools, fname):
    pool = pools(farm)
    worker = pools(farm)
    worker.register_function(fname, lambda job: job.workload[::-1])
    worker.work()
    all_up(loop, pool)
    for submit in (pool.submit_job, pool.submit_job_high, pool.submit_job_low):
        assert ask(loop, submit, fname, "abc") == (b"cba", None)
        assert ask(loop, submit, fname, "abc", unique="u-" + submit.__name__) == (b"cba", None)
    for submit in (pool.submit_job_bg, pool.submit_job_high_bg, pool.submit_job_low_bg):
        handle, err = ask(loop, submit, fname, "x")
        assert err is None and handle.startswith("H:")
    later = int(time.time()) + 3600
    handle, err = ask(loop, pool.submit_job_epoch, fname + "_later", "x", later, unique="e")
    assert err is None
    st, err = ask(loop, pool.get_status_unique, "e")
    assert err is None and st["known"] and not st["running"]


def test_a_pool_inherited_across_fork_refuses_in_the_child(loop, farm, pools, fname):
    pool = pools(farm)
    all_up(loop, pool)
    pid = os.fork()
    if pid == 0:  # the child: every request refused, nothing written to the parent's sockets
        code = 1
        try:
            pool.submit_job(fname, "x")
        except GearmanError as exc:
            code = 0 if exc.err == errors.USED_AFTER_FORK else 2
        os._exit(code)
    _, status_ = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status_) == 0
    assert ask(loop, pool.echo, b"still mine") == (b"still mine", None)


# ===== Status, admin, teardown =====

def test_get_status_asks_the_server_that_created_the_handle(loop, farm, pools, fname):
    pool = pools(farm)
    all_up(loop, pool)
    handle, err = ask(loop, pool.submit_job_bg, fname, "x")
    assert err is None
    out = []
    pool.get_status(handle, lambda r, e: out.append((r, e)))
    assert pool.pending_count == 1  # one server asked, not three
    run_until(loop, lambda: out, what="status")
    assert out[0][1] is None and out[0][0]["known"] and out[0][0]["handle"] == handle
    # A handle another client created: every server is asked, one knows it.
    # (All three servers number their handles "H:t:1", "H:t:2"...: one made
    # on another server until it differs from the pool's.)
    home = pool._r.server_of(handle)
    elsewhere = farm[(home + 1) % 3]
    with Gearman(elsewhere.host, elsewhere.port, loop=loop) as stranger:
        other = handle
        while other == handle:
            other, err = ask(loop, stranger.submit_job_bg, fname, "y")
    assert pool._r.server_of(other) is None
    out.clear()
    pool.get_status(other, lambda r, e: out.append((r, e)))
    assert pool.pending_count == 3
    run_until(loop, lambda: out, what="status")
    assert out[0][0]["known"] and out[0][1] is None
    st, err = ask(loop, pool.get_status, "H:t:nosuch")
    assert err is None and not st["known"]


def test_admin_gives_one_reply_per_server(loop, farm, pools, fname):
    pool = pools(farm, reconnect_delay=0.05)
    all_up(loop, pool)
    texts, err = ask(loop, pool.admin, "version")
    assert err is None and list(texts) == list(pool.server_names)
    texts, err = ask(loop, pool.admin, "bogus")
    assert set(texts.values()) == {None} and err.startswith("ERR UNKNOWN_COMMAND")
    assert ask(loop, pool.maxqueue, fname, 5) == ({n: "OK" for n in pool.server_names}, None)
    workers, err = ask(loop, pool.server_workers)
    assert err is None and all(isinstance(t, str) for t in workers.values())
    farm[1].kill()
    run_until(loop, lambda: pool.servers[1]._session.state != 2, what="the drop")
    texts, err = ask(loop, pool.server_version)
    assert texts[pool.server_names[1]] is None and err == errors.DISCONNECTED
    assert texts[pool.server_names[0]].startswith("OK")


def test_disconnect_fails_everything_once_and_refuses_after(loop, farm, fname):
    with GearmanPool([f"{s.host}:{s.port}" for s in farm], loop=loop) as pool:
        all_up(loop, pool)
        out = []
        for i in range(30):
            pool.submit_job(fname, str(i), lambda r, e: out.append(e))
        run_until(loop, lambda: pool.active_count == 30, what="30 jobs created")
    assert out == [errors.DISCONNECTED] * 30
    with pytest.raises(GearmanError, match="not connected"):
        pool.echo("x")


def test_a_dropped_pool_is_freed_at_once_and_fails_what_waited(loop, fname):
    dead = [LocalGearmand(port=free_port()) for _ in range(2)]
    pool = GearmanPool([f"127.0.0.1:{s.port}" for s in dead], loop=loop,
                       on_error=lambda err: None)
    out = []
    pool.submit_job(fname, "x", lambda r, e: out.append(e))
    pool.register_function(fname, lambda job: b"")
    pool.work(lambda: None, concurrency=2)
    refs = [weakref.ref(pool), weakref.ref(pool.servers[0]), weakref.ref(pool._r)]
    gc.disable()  # no cycle holds it: plain reference counting frees it all
    try:
        del pool
        assert [r() for r in refs] == [None, None, None]
    finally:
        gc.enable()
    assert out == [errors.DISCONNECTED]


def test_shutdown_server_and_all_yours_on_every_server(loop, farm, pools):
    # The single connection's admin calls, one reply per server (API.md 11):
    # gearmand 1.1.20 refuses both, and says so for each server.
    pool = pools(farm, reconnect_delay=0.05)
    all_up(loop, pool)
    texts, err = ask(loop, pool.shutdown_server, True)
    assert texts == {n: None for n in pool.server_names}
    assert err.startswith("ERR UNKNOWN_COMMAND ") and err.endswith("shutdown")
    yours, err = ask(loop, pool.all_yours)
    assert yours == {n: None for n in pool.server_names}
    assert err.startswith("INVALID_COMMAND")
    assert ask(loop, pool.echo, b"alive") == (b"alive", None)
