#!/usr/bin/env python3
"""gearman_ev side by side with the other Python Gearman clients, as
EV::Gearman's bench/vs.pl: jobs per second for the three workloads of
benchmark.py, the ratio of gearman_ev to each client, and the client's CPU
time per job.

One gearmand (-t 1) and one echo worker (benchmark.py's, gearman_ev, in a
child process) serve every client, so only the client differs. Each client's
workload runs in a fresh child process, so the CPU time (getrusage, all its
threads) and the peak RSS are its own; the child connects and makes one round
trip before the clock starts. Every measurement is bounded by its job count
and by --limit seconds. Each client is used the way its documentation shows:

  gearman_ev  submit_job(func, workload, cb) in a loop, results to callbacks
  aio         gearman_ev.aio on asyncio's default loop (aio+uvloop: on uvloop):
              each call sends at once and returns a coroutine; n calls, then
              each reply awaited in turn (no task per job); `await
              submit_job()` one after another for round trips
  pygearman   GearmanClient.submit_multiple_jobs (sends all, then polls);
              submit_job for round trips (python-gearman's maintained fork)
  gear        Client.submitJob(Job) (OpenStack); completions reach an
              overridden handleWorkComplete, as its docs suggest
  aiogear     asyncio: await submit_job() then await wait_job(handle);
              asyncio.gather for many at once
  ev_gearman  the Perl module EV::Gearman (bench/ev_gearman.pl): the same
              workloads in Perl, when `perl`, Debian's libev-perl and the
              module's blib are found (--ev-gearman; default
              ../shared/peers/ev-gearman-blib.tar.gz). A benchmark peer only.

--worker: the other side. The same foreground jobs, from a pipelining
gearman_ev client in a process of its own, go to one sync echo worker at a
time: gearman_ev's, then EV::Gearman's (runs alternate). jobs/s is the
feeder's, and the CPU per job of the worker, of gearmand (when started here)
and of the feeder come from /proc/PID/stat around the measurement.
--prefetch adds a gearman_ev worker with work(concurrency=2) (see PREFETCH);
--floor, a bare Python worker on the same loop and C codec with none of the
library's work in between (see floor_worker): the bound of a Python worker.
--pin puts every library's processes on the same CPUs (see PINNED).

The Python clients come with the `bench` extra: pip install -e '.[bench]'.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchmark  # noqa: E402  (the worker and the gearman_ev loops)
from benchmark import FUNC, cpu_seconds, worker_main  # noqa: E402

from gearman_ev import Gearman, ev  # noqa: E402
from gearman_ev.testing import LocalGearmand  # noqa: E402

BG_FUNC = FUNC + "_bg"  # no worker serves it: background submission alone
WORKLOADS = (("pipelined", "pipelined foreground", "n"),
             ("sequential", "sequential round trip", "seq"),
             ("background", "background submit", "bg"))
NOTES = {
    ("gear", "pipelined"): "gear: submitJob() waits for its JOB_CREATED, so the jobs run "
                           "together but each submission is a round trip",
    ("gear", "background"): "gear: submitJob() waits for its JOB_CREATED",
    ("aiogear", "pipelined"): "aiogear: each reply is matched by a linear scan of every "
                              "waiter, so a job costs more the more are outstanding",
    ("aiogear", "background"): "aiogear: as above, and each background job leaves a "
                               "WORK_COMPLETE waiter that never fires",
}
HEADS = {"pipelined": "one sync echo worker serves them all: the rate is capped by it "
                      "(benchmark.py --worker); client CPU shows the client's share"}


class Failed(Exception):
    """A measurement that did not finish: shown in place of its figures."""


# ===== One adapter per client: connect in __init__, one method per workload.
# A missing method means the client cannot do that workload ("n/a").

class GearmanEv:
    dist = "gearman-ev"

    def __init__(self, host, port, limit):
        self.loop = ev.Loop()
        self.g = Gearman(host, port, loop=self.loop)
        benchmark.LIMIT = limit

    # benchmark.py's loops, unchanged: the same code that benchmark.py times
    def pipelined(self, n, payload):
        benchmark.pipelined(self.g, self.loop, n, payload)

    def sequential(self, n, payload):
        benchmark.sequential(self.g, self.loop, n, payload)

    def background(self, n, payload):
        benchmark.background(self.g, self.loop, n, payload)

    def close(self):
        self.g.disconnect()


class GearmanEvAio:
    """gearman_ev.aio on the default asyncio loop (GearmanEvUvloop: on uvloop).
    Each call sends its request at once and returns a coroutine for the
    reply, so the pipelined and background workloads call n times, then
    await each reply in turn: no task per job."""
    dist = "gearman-ev"

    def __init__(self, host, port, limit):
        self.limit = limit
        self.loop = self.new_loop()
        self.g = self._run(self._connect(host, port))

    @staticmethod
    def new_loop():
        return asyncio.new_event_loop()

    @staticmethod
    async def _connect(host, port):
        from gearman_ev.aio import AsyncGearman
        g = AsyncGearman(host, port)
        await g.wait_connected()
        return g

    def _run(self, coro):
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, self.limit))
        except asyncio.TimeoutError:
            raise Failed("timeout") from None

    def pipelined(self, n, payload):
        async def many():
            g = self.g
            replies = [g.submit_job(FUNC, payload) for _ in range(n)]
            for reply in replies:
                await reply
        self._run(many())

    def sequential(self, n, payload):
        async def one_by_one():
            g = self.g
            for _ in range(n):
                await g.submit_job(FUNC, payload)
        self._run(one_by_one())

    def background(self, n, payload):
        async def many():
            g = self.g
            replies = [g.submit_job_bg(BG_FUNC, payload) for _ in range(n)]
            for reply in replies:
                await reply
        self._run(many())

    def close(self):
        self._run(self.g.close())
        self.loop.close()


class GearmanEvUvloop(GearmanEvAio):
    dist = "uvloop"

    @staticmethod
    def new_loop():
        import uvloop
        return uvloop.new_event_loop()


class PyGearman:
    dist = "pygearman"

    def __init__(self, host, port, limit):
        import gearman
        self.gearman = gearman
        self.limit = limit
        self.client = gearman.GearmanClient([f"{host}:{port}"])

    def _check(self, requests, state):
        bad = [r for r in requests if r.timed_out or r.state != state]
        if bad:
            raise Failed(f"{len(bad)} of {len(requests)} jobs not {state} "
                         f"(timed out: {sum(r.timed_out for r in bad)})")

    def pipelined(self, n, payload):
        jobs = [{"task": FUNC, "data": payload} for _ in range(n)]
        done = self.client.submit_multiple_jobs(jobs, poll_timeout=self.limit)
        self._check(done, self.gearman.constants.JOB_COMPLETE)

    def sequential(self, n, payload):
        deadline = time.monotonic() + self.limit
        for _ in range(n):
            r = self.client.submit_job(FUNC, payload, poll_timeout=self.limit)
            self._check([r], self.gearman.constants.JOB_COMPLETE)
            if time.monotonic() > deadline:
                raise Failed("timeout")

    def background(self, n, payload):
        jobs = [{"task": BG_FUNC, "data": payload} for _ in range(n)]
        done = self.client.submit_multiple_jobs(
            jobs, background=True, wait_until_complete=False, poll_timeout=self.limit)
        self._check(done, self.gearman.constants.JOB_CREATED)

    def close(self):
        self.client.shutdown()


class Gear:
    dist = "gear"

    def __init__(self, host, port, limit):
        import gear

        class Client(gear.Client):
            # gear's docs: subclass and override the handlers to react to events.
            def handleWorkComplete(self, packet):
                job = super().handleWorkComplete(packet)
                owner._finished(job, True)
                return job

            def handleWorkFail(self, packet):
                job = super().handleWorkFail(packet)
                owner._finished(job, False)
                return job

        owner = self
        self.gear = gear
        self.limit = limit
        self.lock = threading.Lock()
        self.left = 0
        self.failed = 0
        self.all_done = threading.Event()
        self.client = Client("vs")
        self.client.addServer(host, port)
        self.client.waitForServer(timeout=limit)

    def _finished(self, job, ok):  # in gear's poll thread
        with self.lock:
            self.left -= 1
            self.failed += not ok
            if self.left == 0:
                self.all_done.set()

    def _expect(self, n):
        self.left, self.failed = n, 0
        self.all_done.clear()

    def _wait(self):
        if not self.all_done.wait(self.limit):
            raise Failed("timeout")
        if self.failed:
            raise Failed(f"{self.failed} jobs failed")

    def pipelined(self, n, payload):
        self._expect(n)
        for _ in range(n):
            self.client.submitJob(self.gear.Job(FUNC, payload), timeout=self.limit)
        self._wait()

    def sequential(self, n, payload):
        for _ in range(n):
            self._expect(1)
            self.client.submitJob(self.gear.Job(FUNC, payload), timeout=self.limit)
            self._wait()

    def background(self, n, payload):
        for _ in range(n):
            job = self.gear.Job(BG_FUNC, payload)
            self.client.submitJob(job, background=True, timeout=self.limit)
            if not job.handle:
                raise Failed("no handle")

    def close(self):
        self.client.shutdown()


class AioGear:
    dist = "aiogear"

    def __init__(self, host, port, limit):
        import aiogear
        self.limit = limit
        self.loop = asyncio.new_event_loop()
        self.client = aiogear.Client(loop=self.loop)
        self._run(self.loop.create_connection(lambda: self.client, host, port))

    def _run(self, coro):
        try:
            return self.loop.run_until_complete(asyncio.wait_for(coro, self.limit))
        except asyncio.TimeoutError:
            raise Failed("timeout") from None

    async def _job(self, payload):
        created = await self.client.submit_job(FUNC, payload)
        return await self.client.wait_job(created.handle)

    def pipelined(self, n, payload):
        async def many():
            return await asyncio.gather(*(self._job(payload) for _ in range(n)))
        if len(self._run(many())) != n:
            raise Failed("results missing")

    def sequential(self, n, payload):
        async def one_by_one():
            for _ in range(n):
                await self._job(payload)
        self._run(one_by_one())

    def background(self, n, payload):
        async def many():
            return await asyncio.gather(
                *(self.client.submit_job_bg(BG_FUNC, payload) for _ in range(n)))
        if not all(c.handle for c in self._run(many())):
            raise Failed("no handle")

    def close(self):
        self._run(self.client.disconnect())
        self.loop.close()


class EvGearman:
    """The Perl module, run as bench/ev_gearman.pl in its own process (see
    ``measure_perl``); never imported. ``inc`` is perl's -I arguments, set
    by ``find_ev_gearman``."""
    dist = "EV::Gearman"
    inc = None


CLIENTS = {"gearman_ev": GearmanEv, "aio": GearmanEvAio, "aio+uvloop": GearmanEvUvloop,
           "pygearman": PyGearman, "gear": Gear, "aiogear": AioGear, "ev_gearman": EvGearman}
PERL_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ev_gearman.pl")
PEER_TARBALL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "..", "shared", "peers", "ev-gearman-blib.tar.gz")
_unpacked = []  # temporary directories to remove at exit


def find_ev_gearman(where):
    """perl's -I arguments for EV::Gearman, or None (with the reason printed):
    ``where`` is a directory holding blib/ or the blib tarball."""
    if shutil.which("perl") is None:
        print("ev_gearman: no perl, skipped")
        return None
    if subprocess.run(["perl", "-MEV", "-e1"], capture_output=True).returncode:
        print("ev_gearman: perl's EV missing (apt-get install libev-perl), skipped")
        return None
    where = where or os.environ.get("EV_GEARMAN") or PEER_TARBALL
    if os.path.isfile(where):
        tmp = tempfile.TemporaryDirectory(prefix="vs-evgm-")
        _unpacked.append(tmp)
        with tarfile.open(where) as tar:
            tar.extractall(tmp.name)
        where = tmp.name
    inc = [f"-I{os.path.join(where, 'blib', d)}" for d in ("lib", "arch")]
    if subprocess.run(["perl", *inc, "-MEV::Gearman", "-e1"], capture_output=True).returncode:
        print(f"ev_gearman: EV::Gearman not loadable from {where}, skipped")
        return None
    return inc


def measure_perl(workload, host, port, n, size, limit):
    """EV::Gearman's run of one workload, as ``child`` replies."""
    cmd = ["perl", *EvGearman.inc, PERL_SCRIPT, "client", host, str(port), FUNC, BG_FUNC,
           workload, str(n), str(size), str(int(limit))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pin(proc.pid, True)
    try:
        out, err = proc.communicate(timeout=limit + 30)  # perl bounds itself; in case not
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return ("error", f"killed after {limit + 30:.0f} s")
    for line in out.splitlines():
        if line.startswith("RESULT "):
            # Peak RSS from perl itself (VmHWM): a child's rusage would count
            # the forked copy of this process it was before exec.
            _, rate, cpu, rss = line.split()
            return ("ok", float(rate), float(cpu), int(rss))
    return ("error", (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:60])


def version(name):
    """The installed version of a client's distribution, or None."""
    if name == "ev_gearman":
        return "0.01" if EvGearman.inc else None
    try:
        return importlib.metadata.version(CLIENTS[name].dist)
    except importlib.metadata.PackageNotFoundError:
        return "local" if name == "gearman_ev" else None


def child(name, workload, host, port, n, size, limit, out):
    """One client, one workload, in a process of its own: sends
    ("ok", jobs/s, CPU s/job, peak RSS KiB), ("n/a",) or ("error", text)."""
    try:
        client = CLIENTS[name](host, port, limit)
        run = getattr(client, workload, None)
        if run is None:
            out.send(("n/a",))
            return
        payload = b"x" * size
        client.sequential(1, payload)  # connected, and the first round trip made
        start, cpu = time.perf_counter(), cpu_seconds()
        run(n, payload)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        client.close()
        out.send(("ok", n / wall, cpu / n, rss))
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        out.send(("error", f"{type(exc).__name__}: {exc}"[:60]))


def measure(ctx, name, workload, host, port, n, size, limit):
    if name == "ev_gearman":
        return measure_perl(workload, host, port, n, size, limit)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(name, workload, host, port, n, size, limit, send),
                       daemon=True)
    proc.start()
    pin(proc.pid, True)
    send.close()
    # The child bounds itself by `limit`; this catches a client that hangs anyway.
    got = recv.recv() if recv.poll(limit + 30) else ("error", f"killed after {limit + 30:.0f} s")
    proc.join(10 if got[0] == "ok" else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return got


def table(results, names, counts, runs):
    """results[(client, workload)] = list of child replies."""
    for workload, title, key in WORKLOADS:
        print(f"\n{title}, {counts[key]} jobs (median of {runs})")
        if workload in HEADS:
            print(textwrap.fill(f"({HEADS[workload]})", 88, initial_indent="  ",
                                subsequent_indent="   "))
        print(f"  {'client':<22}{'jobs/s':>10}{'gearman_ev is':>16}{'CPU µs/job':>13}"
              f"{'peak RSS':>12}")
        ours = median_of(results[("gearman_ev", workload)]) if "gearman_ev" in names else None
        for name in names:
            note = NOTES.get((name, workload))
            label = f"{name} {version(name)}" + (" *" if note else "")
            got = results[(name, workload)]
            m = median_of(got)
            if m is None:
                why = "n/a" if got and got[0][0] == "n/a" else failure(got)
                print(f"  {label:<22}{why:>10}")
                continue
            rate, cpu, rss = m
            ratio = f"{ours[0] / rate:.2f}x" if ours else "-"
            print(f"  {label:<22}{rate:>10,.0f}{ratio:>16}{cpu * 1e6:>13.1f}"
                  f"{rss / 1024:>8.1f} MiB")
        for name in names:
            note = NOTES.get((name, workload))
            if note:
                print(textwrap.fill(note, 88, initial_indent="  * ", subsequent_indent="    "))


def aio_targets(results, names):
    """The asyncio front-end against issue 12's targets: its jobs/s over
    aiogear's, aiogear's client CPU per job over its own, and its CPU per
    job over the libev front-end's."""
    fronts = [n for n in ("aio", "aio+uvloop") if n in names]
    if not fronts:
        return
    print("\nasyncio front-end (targets: >= 10x aiogear's jobs/s on background, >= 3x on "
          "pipelined;\n aiogear's CPU/job >= 10x ours; ours <= 1.5x the libev front-end's)")
    print(f"  {'client':<12}{'workload':<12}{'x aiogear jobs/s':>18}{'aiogear CPU x':>15}"
          f"{'CPU vs libev':>14}")
    for name in fronts:
        for workload, _, _ in WORKLOADS:
            ours = median_of(results[(name, workload)])
            if ours is None:
                print(f"  {name:<12}{workload:<12}{failure(results[(name, workload)]):>18}")
                continue
            peer = median_of(results.get(("aiogear", workload), []))
            libev = median_of(results.get(("gearman_ev", workload), []))
            rate = f"{ours[0] / peer[0]:.1f}x" if peer else "-"
            cpu = f"{peer[1] / ours[1]:.1f}x" if peer else "-"
            vs_libev = f"{ours[1] / libev[1]:.2f}x" if libev else "-"
            print(f"  {name:<12}{workload:<12}{rate:>18}{cpu:>15}{vs_libev:>14}")


def median_of(replies):
    ok = [r for r in replies if r[0] == "ok"]
    if not ok or len(ok) < len(replies):
        return None
    return tuple(statistics.median(r[i] for r in ok) for i in (1, 2, 3))


def failure(replies):
    bad = [r for r in replies if r[0] == "error"]
    return bad[0][1] if bad else "n/a"


# ===== --worker: one worker of each library, the same jobs =====

#: --worker --prefetch: a sync gearman_ev worker with work(concurrency=2). Not
#: the default: gearmand assigns it a second job while the first runs, a job
#: another idle worker could have started at once.
PREFETCH = "gearman_ev, concurrency=2"


def proc_cpu(pid, user_only=False):
    """utime + stime (user_only: utime) of a process, all its threads, in
    seconds, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + (0 if user_only else int(fields[12]))
    return ticks / os.sysconf("SC_CLK_TCK")


#: --pin: the same CPUs for every library's processes, so that the
#: scheduler's placement (two processes that wake each other sharing a core,
#: or not) is no longer a difference between runs: gearmand and its helper
#: (the echo worker, or the feeder) on the first CPU, the process measured
#: (the client, or the worker) on the second.
PINNED = False


def pin(pid, measured):
    if PINNED and pid:
        os.sched_setaffinity(pid, {1} if measured else {0})


def py_worker(host, port, func, limit, prefetch=False):
    """gearman_ev's sync echo worker (benchmark.py's), bounded by limit.
    prefetch: work(concurrency=2), which keeps two GRABs out for a sync
    function: the next job is assigned while one runs (see PREFETCH)."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    g.register_function(func, lambda job: job.workload)
    g.work(concurrency=2 if prefetch else None)
    loop.timer(limit, 0, lambda w, r: loop.stop()).start()
    loop.signal(15, lambda w, r: loop.stop()).start()
    loop.start()


FLOOR = "floor (bare loop)"


def floor_worker(host, port, func, limit):
    """--floor: the least a Python worker on this stack spends per job. The
    same loop (gearman_ev.ev), codec (the C core) and syscalls (one recv, one
    send, one epoll_wait a job) as gearman_ev's worker, with none of the
    library in between: no session, no Job object, no checks, no errors
    handled. Not a usable worker; a measure of what bounds one."""
    from gearman_ev._ffi import ffi, lib
    loop = ev.Loop()
    sock = socket.create_connection((host, port))
    sock.setblocking(False)
    c = lib.gm_conn_new()
    lib.gm_conn_reset(c, sock.fileno())
    pkt = ffi.new("gm_packet_t *")
    arg, length = pkt.arg, pkt.len
    unpack, nxt, pack4, NULL = ffi.unpack, lib.gm_conn_next, lib.gm_conn_pack4, ffi.NULL
    fname = func.encode()
    serve = lambda workload: workload  # noqa: E731  (the echo, as py_worker's)
    pack4(c, lib.GM_CMD_CAN_DO, 1, fname, len(fname), NULL, 0, NULL, 0, NULL, 0)
    pack4(c, lib.GM_CMD_GRAB_JOB, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)
    lib.gm_conn_write(c)

    def readable(watcher, revents):
        if lib.gm_conn_read(c) < 0:
            loop.stop()
        while nxt(c, 0, pkt) > 0:
            cmd = pkt.cmd
            if cmd == lib.GM_CMD_JOB_ASSIGN:
                handle = unpack(arg[0], length[0])
                result = serve(unpack(arg[2], length[2]))
                pack4(c, lib.GM_CMD_WORK_COMPLETE, 2, handle, len(handle), result,
                      len(result), NULL, 0, NULL, 0)
                pack4(c, lib.GM_CMD_GRAB_JOB, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)
            elif cmd == lib.GM_CMD_NO_JOB:
                pack4(c, lib.GM_CMD_PRE_SLEEP, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)
            elif cmd == lib.GM_CMD_NOOP:
                pack4(c, lib.GM_CMD_GRAB_JOB, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)
        lib.gm_conn_write(c)  # the whole reply fits the kernel's buffer here
    io = loop.io(sock, ev.EV_READ, readable)
    io.start()
    loop.timer(limit, 0, lambda w, r: loop.stop()).start()
    loop.signal(15, lambda w, r: loop.stop()).start()
    loop.start()
    io.stop()
    lib.gm_conn_free(c)
    sock.close()


def feeder(host, port, func, n, size, limit, window, go, out):
    """A pipelining gearman_ev client: connects, waits for `go`, submits n
    foreground jobs, all at once or (window > 0) at most `window` in flight;
    sends back (ok count, wall seconds)."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    benchmark.LIMIT = limit
    got = []
    g.echo(b"x", lambda r, e: (got.append(e), loop.stop()))
    benchmark.run_loop(loop, lambda: got, "feeder connect")
    out.send("ready")
    go.wait()
    left, ok = [n], [0]
    payload = b"x" * size
    first = n if window <= 0 else min(window, n)
    unsent = [n - first]

    def cb(result, err):
        ok[0] += err is None
        left[0] -= 1
        if unsent[0]:
            unsent[0] -= 1
            g.submit_job(func, payload, cb)
        if left[0] == 0:
            loop.stop()
    start = time.perf_counter()
    for _ in range(first):
        g.submit_job(func, payload, cb)
    benchmark.run_loop(loop, lambda: left[0] == 0, "feeder")
    out.send((ok[0], time.perf_counter() - start))
    g.disconnect()


def workers_on(host, port, func):
    """How many workers gearmand lists as able to do func (admin status)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"status\n")
        reply = b""
        while not (reply == b".\n" or reply.endswith(b"\n.\n")):  # the block's end
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    for line in reply.decode().splitlines():
        fields = line.split("\t")
        if fields[0] == func and len(fields) == 4:
            return int(fields[3])
    return 0


def serve_once(ctx, which, host, port, gearmand_pid, func, n, size, limit, window=0):
    """One worker (which: gearman_ev or ev_gearman) fed n jobs; returns
    (jobs/s, worker, gearmand, feeder CPU s/job, worker's user CPU s/job)
    or raises Failed."""
    if which.startswith("gearman_ev") or which == FLOOR:
        target, args = ((floor_worker, (host, port, func, limit + 30)) if which == FLOOR else
                        (py_worker, (host, port, func, limit + 30, which == PREFETCH)))
        wproc = ctx.Process(target=target, args=args, daemon=True)
        wproc.start()
        pin(wproc.pid, True)
        wpid, stop = wproc.pid, wproc.terminate
    else:
        wproc = subprocess.Popen(["perl", *EvGearman.inc, PERL_SCRIPT, "worker", host,
                                  str(port), func, str(int(limit + 30))])
        pin(wproc.pid, True)
        wpid, stop = wproc.pid, wproc.terminate
    go = ctx.Event()
    recv, send = ctx.Pipe(duplex=False)
    fproc = ctx.Process(target=feeder, args=(host, port, func, n, size, limit, window, go, send),
                        daemon=True)
    try:
        deadline = time.monotonic() + 10
        while workers_on(host, port, func) < 1:  # its CAN_DO reached gearmand
            if time.monotonic() > deadline:
                raise Failed(f"{which} worker did not register")
            time.sleep(0.05)
        fproc.start()
        pin(fproc.pid, False)
        if not recv.poll(10) or recv.recv() != "ready":
            raise Failed("feeder did not connect")
        time.sleep(0.2)  # both idle: what follows is the jobs' CPU alone
        before = [proc_cpu(p) if p else 0.0 for p in (wpid, gearmand_pid, fproc.pid)]
        before.append(proc_cpu(wpid, user_only=True))
        go.set()
        if not recv.poll(limit + 30):
            raise Failed("feeder did not finish")
        ok, wall = recv.recv()
        after = [proc_cpu(p) if p else 0.0 for p in (wpid, gearmand_pid, fproc.pid)]
        after.append(proc_cpu(wpid, user_only=True))
        if ok != n:
            raise Failed(f"{n - ok} of {n} jobs failed")
        return (n / wall, *((a - b) / n for a, b in zip(after, before)))
    finally:
        stop()
        if fproc.is_alive():
            fproc.join(5)
        if fproc.is_alive():
            fproc.kill()
        wproc.join(5) if which.startswith("gearman_ev") or which == FLOOR else wproc.wait(5)


def worker_table(host, port, gearmand_pid, args):
    who = (["gearman_ev"] + (["ev_gearman"] if EvGearman.inc else [])
           + ([PREFETCH] if args.prefetch else []) + ([FLOOR] if args.floor else []))
    ctx = multiprocessing.get_context("spawn")
    fed = "at once" if args.window <= 0 else f"{args.window} at a time"
    print(f"one sync echo worker, fed {args.n} foreground jobs {fed} by a gearman_ev client "
          f"in another process; gearmand {host}:{port}; payload {args.size} bytes; "
          f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}", flush=True)
    rows = {w: [] for w in who}
    serial = 0
    for run in range(args.runs):  # alternating, so drifting load hits both alike
        for w in who:
            serial += 1
            func = f"{FUNC}_vsw{os.getpid()}_{serial}"
            try:
                got = serve_once(ctx, w, host, port, gearmand_pid, func, args.n, args.size,
                                 args.limit, args.window)
            except Failed as exc:
                print(f"  run {run + 1}: {w}: {exc}", file=sys.stderr, flush=True)
                continue
            rows[w].append(got)
            print(f"  run {run + 1}: {w:<26}{got[0]:,.0f} jobs/s  worker {got[1] * 1e6:.1f} "
                  f"(user {got[4] * 1e6:.1f}) gearmand {got[2] * 1e6:.1f} feeder {got[3] * 1e6:.1f} µs/job",
                  file=sys.stderr, flush=True)
    print(f"\n(median of {args.runs}; CPU in µs per job"
          f"{'' if gearmand_pid else '; gearmand not started here: not measured'})")
    print(f"  {'worker':<26}{'jobs/s':>10}{'worker CPU':>12}{'its user':>10}"
          f"{'gearmand CPU':>14}{'feeder CPU':>12}")
    med = {}
    for w in who:
        if not rows[w]:
            print(f"  {w:<26}{'failed':>10}")
            continue
        med[w] = [statistics.median(r[i] for r in rows[w]) for i in range(5)]
        rate, wc, gc, fc, wu = med[w]
        print(f"  {w:<26}{rate:>10,.0f}{wc * 1e6:>12.1f}{wu * 1e6:>10.1f}{gc * 1e6:>14.1f}"
              f"{fc * 1e6:>12.1f}")
    for ours in ("gearman_ev", PREFETCH, FLOOR):
        if ours in med and "ev_gearman" in med:
            a, b = med[ours], med["ev_gearman"]
            label = "ratio to EV" + {PREFETCH: " (prefetch)", FLOOR: " (floor)"}.get(ours, "")
            print(f"  {label:<26}{a[0] / b[0]:>9.2f}x{a[1] / b[1]:>11.2f}x"
                  f"{(a[4] / b[4] if b[4] else 0):>9.2f}x"
                  f"{(a[2] / b[2] if b[2] else 0):>13.2f}x{a[3] / b[3]:>11.2f}x")


def main(argv=None):
    intro, rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(description=intro, epilog=rest,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10000,
                    help="pipelined foreground jobs per measurement (default 10000)")
    ap.add_argument("--seq", type=int, default=2000, help="sequential round trips (default 2000)")
    ap.add_argument("--bg", type=int, default=20000,
                    help="background submissions (default 20000)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
    ap.add_argument("--size", type=int, default=10, help="payload bytes (default 10)")
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help=f"comma-separated subset of {','.join(CLIENTS)}")
    ap.add_argument("--limit", type=float, default=120.0,
                    help="seconds any one measurement may take (default 120)")
    ap.add_argument("--host", help="use this gearmand instead of starting one")
    ap.add_argument("--port", type=int, default=4730)
    ap.add_argument("--ev-gearman", metavar="PATH",
                    help="EV::Gearman: a directory holding its blib/, or the blib tarball "
                         "(default $EV_GEARMAN, else ../shared/peers/ev-gearman-blib.tar.gz)")
    ap.add_argument("--worker", action="store_true",
                    help="compare the workers instead of the clients (-n jobs per run)")
    ap.add_argument("--prefetch", action="store_true",
                    help="--worker: also a gearman_ev worker with work(concurrency=2), "
                         "the next job assigned while one runs (not the default: fairness)")
    ap.add_argument("--pin", action="store_true",
                    help="gearmand and its helper process on CPU 0, the process measured on "
                         "CPU 1, for every library alike (see PINNED)")
    ap.add_argument("--floor", action="store_true",
                    help="--worker: also a bare worker on the same loop and codec without "
                         "the library (see FLOOR): what bounds a Python worker's CPU per job")
    ap.add_argument("--gearmand-pid", type=int,
                    help="--worker with --host: gearmand's pid, to measure its CPU too")
    ap.add_argument("--window", type=int, default=0,
                    help="--worker: jobs the feeder keeps in flight (default 0: all at once; "
                         "1: one at a time, so the worker sleeps and wakes for every job)")
    args = ap.parse_args(argv)
    global PINNED
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            ap.error("--pin needs two CPUs")
        PINNED = True
    names = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = [c for c in names if c not in CLIENTS]
    if unknown:
        ap.error(f"unknown client(s) {', '.join(unknown)}; choose from {', '.join(CLIENTS)}")
    if "ev_gearman" in names or args.worker:
        EvGearman.inc = find_ev_gearman(args.ev_gearman)
    missing = [c for c in names if version(c) is None]
    for c in missing:
        if c == "ev_gearman":
            continue  # find_ev_gearman said why
        print(f"{c}: not installed (pip install -e '.[bench]'), skipped")
    names = [c for c in names if c not in missing]
    counts = {"n": args.n, "seq": args.seq, "bg": args.bg}

    server = None
    host, port = args.host, args.port
    if host is None:
        server = LocalGearmand(threads=1).start()
        pin(server.proc.pid, False)
        host, port = server.host, server.port
    if args.worker:
        try:
            worker_table(host, port, server.proc.pid if server else args.gearmand_pid, args)
        finally:
            if server is not None:
                server.close()
        return
    ctx = multiprocessing.get_context("spawn")  # children that import only what they use
    ready = ctx.Event()
    worker = ctx.Process(target=worker_main, args=(host, port, ready), daemon=True)
    worker.start()
    pin(worker.pid, False)
    try:
        if not ready.wait(10):
            raise SystemExit("worker did not connect")
        print(f"on gearmand {host}:{port} (-t 1 when started here), echo worker: gearman_ev "
              f"in its own process; payload {args.size} bytes; {os.cpu_count()} CPUs",
              flush=True)
        results = {(c, w): [] for c in names for w, _, _ in WORKLOADS}
        for run in range(args.runs):  # clients interleaved, so drifting load hits all alike
            for workload, _, key in WORKLOADS:
                for name in names:
                    got = measure(ctx, name, workload, host, port, counts[key], args.size,
                                  args.limit)
                    results[(name, workload)].append(got)
                    shown = f"{got[1]:,.0f} jobs/s" if got[0] == "ok" else " ".join(got)
                    print(f"  run {run + 1}: {name:<11}{workload:<11}{shown}",
                          file=sys.stderr, flush=True)
        table(results, names, counts, args.runs)
        aio_targets(results, names)
    finally:
        worker.terminate()
        worker.join(5)
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
