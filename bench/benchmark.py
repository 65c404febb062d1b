#!/usr/bin/env python3
"""gearman_ev alone, as EV::Gearman's bench/benchmark.pl: jobs per second for
pipelined foreground jobs, sequential round trips and background submissions,
with the client's CPU time per job and its peak RSS.

Starts its own gearmand (-t 1) on a free loopback port unless --host/--port
name one, and an echo worker (gearman_ev) in a child process. Every loop is
bounded by a job count and a wall-clock limit.

--worker: the jobs per second one gearman_ev worker serves (sync; async_=True
completing at once; async_=True with work(concurrency=N)), fed by a pipelining
gearman_ev client in another process: -n background jobs queued first (admin
`status` shows them) and then drained, or -n foreground jobs while it serves.

--deadlines: what a per-job timeout costs at scale: --deadline-jobs foreground
jobs (default 100,000) submitted to a function no worker serves, so all stay
in flight, without and with submit_job(..., timeout=60), each variant in a
fresh process: CPU per submission, CPU per job until every JOB_CREATED is in,
and the memory per job in flight (RSS and tracemalloc).

--memory: the client's RSS per request after --bg background jobs were
submitted and acknowledged (and tracemalloc's peak, as the allocator may keep
freed memory), and its peak RSS while a --big MiB job makes a round trip
through an echo worker, as a multiple of the payload.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gearman_ev import Gearman, ev  # noqa: E402
from gearman_ev._gearmand import LocalGearmand  # noqa: E402

FUNC = "bench_echo"
LIMIT = 60.0  # seconds any one measurement may take


def worker_main(host, port, ready):
    """An echo worker: returns the workload."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop, on_connect=ready.set)
    g.register_function(FUNC, lambda job: job.workload)
    g.work()
    loop.start()


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_loop(loop, done, what):
    guard = loop.timer(LIMIT, 0, lambda w, r: loop.stop())
    guard.start()
    loop.start()
    guard.stop()
    if not done():
        raise SystemExit(f"{what}: not finished within {LIMIT} s")


def pipelined(g, loop, n, payload):
    """n foreground jobs submitted in a tight loop, all in flight at once."""
    left = [n]

    def cb(result, err):
        left[0] -= 1
        if left[0] == 0:
            loop.stop()
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(n):
        g.submit_job(FUNC, payload, cb)
    run_loop(loop, lambda: left[0] == 0, "pipelined")
    return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n


def sequential(g, loop, n, payload):
    """One foreground job at a time: the round-trip rate."""
    left = [n]

    def cb(result, err):
        left[0] -= 1
        if left[0] == 0:
            loop.stop()
        else:
            g.submit_job(FUNC, payload, cb)
    start, cpu = time.perf_counter(), cpu_seconds()
    g.submit_job(FUNC, payload, cb)
    run_loop(loop, lambda: left[0] == 0, "sequential")
    return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n


def background(g, loop, n, payload):
    """n background submissions, until every JOB_CREATED came back."""
    left = [n]

    def cb(handle, err):
        left[0] -= 1
        if left[0] == 0:
            loop.stop()
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(n):
        g.submit_job_bg(FUNC + "_bg", payload, cb)  # no worker: measures submission
    run_loop(loop, lambda: left[0] == 0, "background")
    return n / (time.perf_counter() - start), (cpu_seconds() - cpu) / n


# ===== --worker: one worker's rate =====

def feeder_main(host, port, func, n, payload, background, out):
    """A pipelining gearman_ev client: n jobs at once, background or
    foreground; sends back how many succeeded."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    left, ok = [n], [0]

    def cb(result, err):
        ok[0] += err is None
        left[0] -= 1
        if left[0] == 0:
            loop.stop()
    submit = g.submit_job_bg if background else g.submit_job
    for _ in range(n):
        submit(func, payload, cb)
    run_loop(loop, lambda: left[0] == 0, "feeder")
    g.disconnect()
    out.send(ok[0])


def queued(g, loop, func):
    """func's TOTAL in the admin `status` (queued and running jobs)."""
    got = []

    def cb(text, err):
        got.append(text if err is None else "")
        loop.stop()
    g.server_status(cb)
    run_loop(loop, lambda: got, "status")
    for line in got[0].splitlines():
        fields = line.split("\t")
        if fields[0] == func:
            return int(fields[1])
    return 0


WORKER_MODES = (("sync", False, None), ("async_=True", True, None),
                ("async_=True, concurrency=N", True, "N"))


def serve(host, port, func, n, payload, background, async_, concurrency):
    """Time one worker (this process) serving n jobs of func: queued
    beforehand (background) or submitted while it works (foreground).
    Returns (jobs/s, worker CPU s/job)."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    done, start = [0], []

    def finished():
        done[0] += 1
        if done[0] == n:
            loop.stop()
    if async_:
        def echo(job):
            if not start:
                start.extend((time.perf_counter(), cpu_seconds()))
            job.complete(job.workload)
            finished()
    else:
        def echo(job):
            if not start:
                start.extend((time.perf_counter(), cpu_seconds()))
            finished()
            return job.workload
    feeder_out, feeder_in = multiprocessing.Pipe(duplex=False)
    feeder = multiprocessing.Process(
        target=feeder_main, args=(host, port, func, n, payload, background, feeder_in),
        daemon=True)
    if background:
        feeder.start()
        if not feeder_out.poll(LIMIT) or feeder_out.recv() != n:
            raise SystemExit("feeder: background jobs not all queued")
        if queued(g, loop, func) != n:
            raise SystemExit(f"status does not show {n} jobs queued for {func}")
        start.extend((time.perf_counter(), cpu_seconds()))  # the worker starts now
        g.register_function(func, echo, async_=async_)
        g.work(concurrency=concurrency)
    else:
        g.register_function(func, echo, async_=async_)
        g.work(concurrency=concurrency)
        queued(g, loop, func)  # the CAN_DO reached gearmand: it may send jobs now
        feeder.start()  # the clock starts with the first job
    run_loop(loop, lambda: done[0] == n, "worker")
    if queued(g, loop, func) != 0:  # the last WORK_COMPLETE is through too
        raise SystemExit(f"{func}: jobs left after {n} were served")
    wall, cpu = time.perf_counter() - start[0], cpu_seconds() - start[1]
    if not background and (not feeder_out.poll(LIMIT) or feeder_out.recv() != n):
        raise SystemExit("feeder: not every foreground job succeeded")
    feeder.join(5)
    g.disconnect()
    return n / wall, cpu / n


def worker_bench(host, port, args):
    payload = b"x" * args.size
    print(f"one gearman_ev worker, fed by a pipelining gearman_ev client in another "
          f"process; gearmand {host}:{port}, {args.n} jobs, payload {args.size} bytes")
    serial = 0
    for title, background in (("background jobs queued, then drained", True),
                              ("foreground jobs, submitted while it serves", False)):
        print(title)
        for name, async_, conc in WORKER_MODES:
            concurrency = args.concurrency if conc else None
            samples = []
            for _ in range(args.runs):
                serial += 1  # a fresh function each time: nothing left over
                samples.append(serve(host, port, f"{FUNC}_w{os.getpid()}_{serial}", args.n,
                                     payload, background, async_, concurrency))
            summarize("  " + name.replace("N", str(args.concurrency)), samples, "worker")


# ===== --memory =====

def rss_now():
    """Resident set size in bytes now (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_requests(host, port, n, out):
    """RSS per background request, then tracemalloc's view of the same."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    payload = b"x" * 10
    background(g, loop, 1000, payload)  # connected, buffers and caches warm
    before, peak_before = rss_now(), peak_rss()
    background(g, loop, n, payload)
    after, peak = rss_now(), peak_rss()
    tracemalloc.start()
    background(g, loop, n, payload)
    current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    g.disconnect()
    out.send((before, after, max(peak, peak_before), traced_peak, current))


def memory_worker(host, port, ready, out):
    """The echo worker, reporting its RSS at start and its peak when asked."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop, on_connect=ready.set)
    g.register_function(FUNC + "_big", lambda job: job.workload)
    g.work()
    base = rss_now()

    def asked(watcher, revents):
        out.recv()
        out.send((base, peak_rss()))
        loop.stop()
    loop.io(out.fileno(), ev.EV_READ, asked).start()
    loop.start()
    g.disconnect()


def memory_big(host, port, size, out):
    """One size-byte job through the echo worker and back."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    got = []

    def cb(result, err):
        got.append((result, err))
        loop.stop()
    g.submit_job(FUNC + "_big", b"x", cb)  # connected and warm: a small job first
    run_loop(loop, lambda: got, "small job")
    base = rss_now()
    payload = b"x" * size
    got.clear()
    start = time.perf_counter()
    g.submit_job(FUNC + "_big", payload, cb)
    run_loop(loop, lambda: got, "big job")
    wall = time.perf_counter() - start
    result, err = got[0]
    if err is not None or result != payload:
        raise SystemExit(f"big job: {err or 'result differs'}")
    peak = peak_rss()
    del payload, result, got[:]
    out.send((base, peak, rss_now(), wall))
    g.disconnect()


def in_child(target, *args):
    """Run target(*args, out) in a fresh (spawned) process; return what it sends."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, send), daemon=True)
    proc.start()
    send.close()
    if not recv.poll(LIMIT * 2):
        proc.kill()
        raise SystemExit(f"{target.__name__}: no answer within {LIMIT * 2} s")
    got = recv.recv()
    proc.join(10)
    return got


def memory_bench(host, port, args):
    n, mib = args.bg, 1 << 20
    print(f"client memory, each part in a fresh process; gearmand {host}:{port}")
    rows = [in_child(memory_requests, host, port, n) for _ in range(args.runs)]
    before, after, peak, traced, current = (statistics.median(r[i] for r in rows)
                                            for i in range(5))
    print(f"{n} background jobs submitted at once and acknowledged (median of {args.runs}):")
    print(f"  RSS before {before / mib:.1f} MiB, after {after / mib:.1f} MiB: "
          f"{(after - before) / n:.0f} bytes/request kept")
    print(f"  peak RSS {peak / mib:.1f} MiB: {(peak - before) / n:.0f} bytes/request "
          f"while all were in flight")
    print(f"  tracemalloc: peak {traced / mib:.1f} MiB = {traced / n:.0f} bytes/request "
          f"in flight, {current / 1024:.1f} KiB still allocated after")

    size = args.big * mib
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    ask, answer = ctx.Pipe()
    worker = ctx.Process(target=memory_worker, args=(host, port, ready, answer), daemon=True)
    worker.start()
    try:
        if not ready.wait(10):
            raise SystemExit("worker did not connect")
        base, peak, after, wall = in_child(memory_big, host, port, size)
        ask.send("peak?")
        if not ask.poll(10):
            raise SystemExit("worker did not report its memory")
        wbase, wpeak = ask.recv()
    finally:
        worker.join(5)
        if worker.is_alive():
            worker.terminate()
            worker.join(5)
    print(f"one {args.big} MiB job through an echo worker and back ({wall:.2f} s):")
    print(f"  client: peak RSS {peak / mib:.0f} MiB, {(peak - base) / size:.2f}x the payload "
          f"above its {base / mib:.0f} MiB before it (payload and result included); "
          f"{after / mib:.0f} MiB once both are freed")
    print(f"  worker: peak RSS {wpeak / mib:.0f} MiB, {(wpeak - wbase) / size:.2f}x the payload "
          f"above its {wbase / mib:.0f} MiB at start")


# ===== --deadlines =====

def deadline_run(host, port, n, timeout, out):
    """n foreground jobs in flight (no worker), each with `timeout` (0: none)."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop)
    background(g, loop, 1000, b"x" * 10)  # connected, buffers and caches warm
    func = f"{FUNC}_nobody_{os.getpid()}"
    payload = b"x" * 10
    kw = {"timeout": timeout} if timeout else {}
    cb = lambda result, err: None  # noqa: E731 - never called while measuring

    def submit_all():
        for _ in range(n):
            g.submit_job(func, payload, cb, **kw)
    # CPU and RSS first, then tracemalloc's count on a fresh connection:
    # tracemalloc slows every allocation and keeps a trace of each.
    rss0 = rss_now()
    t0 = cpu_seconds()
    submit_all()
    t1 = cpu_seconds()
    run_loop_until(loop, lambda: g.active_count == n, "job created")
    t2 = cpu_seconds()
    rss = rss_now()
    g.disconnect()  # every callback drained once: the jobs stay queued in gearmand
    g = Gearman(host, port, loop=loop)
    background(g, loop, 1000, payload)
    tracemalloc.start()
    submit_all()
    run_loop_until(loop, lambda: g.active_count == n, "job created")
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    g.disconnect()
    out.send(((t1 - t0) / n, (t2 - t0) / n, (rss - rss0) / n, traced / n))


def run_loop_until(loop, done, what):
    """Run the loop in slices until done() (jobs in flight keep it busy)."""
    deadline = time.monotonic() + LIMIT
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not done within {LIMIT} s")
        loop.start(ev.EVRUN_ONCE)


def deadline_bench(host, port, args):
    n = args.deadline_jobs
    print(f"{n} foreground jobs in flight (no worker serves them), each variant in a "
          f"fresh process; gearmand {host}:{port}; median of {args.runs}, runs alternating")
    rows = {0: [], 60: []}
    for _ in range(args.runs):
        for timeout in rows:
            rows[timeout].append(in_child(deadline_run, host, port, n, timeout))
    med = {t: [statistics.median(r[i] for r in rows[t]) for i in range(4)] for t in rows}
    print(f"  {'':<16}{'submit µs':>10}{'to created µs':>15}{'RSS B/job':>11}"
          f"{'traced B/job':>14}")
    for t, label in ((0, "no timeout"), (60, "timeout=60")):
        a, b, c, d = med[t]
        print(f"  {label:<16}{a * 1e6:>10.2f}{b * 1e6:>15.2f}{c:>11.0f}{d:>14.0f}")
    a, b = med[0], med[60]
    print(f"  {'the timeout adds':<16}{(b[0] - a[0]) * 1e6:>10.2f}{(b[1] - a[1]) * 1e6:>15.2f}"
          f"{b[2] - a[2]:>11.0f}{b[3] - a[3]:>14.0f}")


def summarize(name, samples, who="client"):
    rates = [r for r, _ in samples]
    cpus = [c for _, c in samples]
    spread = (max(rates) - min(rates)) / statistics.median(rates) * 100 if len(rates) > 1 else 0
    print(f"{name:<30}{statistics.median(rates):>10,.0f} jobs/s  (±{spread:.0f}% over "
          f"{len(rates)} runs)   {who} CPU {statistics.median(cpus) * 1e6:6.1f} µs/job")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="jobs per measurement (default 20000)")
    ap.add_argument("--seq", type=int, default=2000, help="sequential round trips (default 2000)")
    ap.add_argument("--bg", type=int, default=100000, help="background submissions (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
    ap.add_argument("--size", type=int, default=10, help="payload bytes (default 10)")
    ap.add_argument("--host", help="use this gearmand instead of starting one")
    ap.add_argument("--port", type=int, default=4730)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--worker", action="store_true",
                      help="measure one worker instead of the client (-n jobs)")
    mode.add_argument("--deadlines", action="store_true",
                      help="what a per-job timeout costs with --deadline-jobs in flight")
    mode.add_argument("--memory", action="store_true",
                      help="measure the client's memory (--bg requests, a --big MiB job)")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="N for the worker's work(concurrency=N) (default 16)")
    ap.add_argument("--deadline-jobs", type=int, default=100000,
                    help="--deadlines: jobs in flight (default 100000)")
    ap.add_argument("--big", type=int, default=64, help="--memory's big job in MiB (default 64)")
    args = ap.parse_args(argv)

    server = None
    host, port = args.host, args.port
    if host is None:
        server = LocalGearmand(threads=1).start()
        host, port = server.host, server.port
    if args.worker or args.memory or args.deadlines:
        bench = (worker_bench if args.worker else
                 deadline_bench if args.deadlines else memory_bench)
        try:
            bench(host, port, args)
        finally:
            if server is not None:
                server.close()
        return
    ready = multiprocessing.Event()
    worker = multiprocessing.Process(target=worker_main, args=(host, port, ready), daemon=True)
    worker.start()
    try:
        if not ready.wait(10):
            raise SystemExit("worker did not connect")
        loop = ev.Loop()
        g = Gearman(host, port, loop=loop)
        payload = b"x" * args.size
        print(f"gearman_ev on gearmand {host}:{port}, payload {args.size} bytes")
        for name, fn, n in (("pipelined foreground", pipelined, args.n),
                            ("sequential round trip", sequential, args.seq),
                            ("background submit", background, args.bg)):
            summarize(name, [fn(g, loop, n, payload) for _ in range(args.runs)])
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"client peak RSS {rss / 1024:.1f} MiB")
        g.disconnect()
    finally:
        worker.terminate()
        worker.join(5)
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
