#!/usr/bin/env python3
"""gearman_ev alone, as EV::Gearman's bench/benchmark.pl: jobs per second for
pipelined foreground jobs, sequential round trips and background submissions,
with the client's CPU time per job and its peak RSS.

Starts its own gearmand (-t 1) on a free loopback port unless --host/--port
name one, and an echo worker (gearman_ev) in a child process. Every loop is
bounded by a job count and a wall-clock limit.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time

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


def summarize(name, samples):
    rates = [r for r, _ in samples]
    cpus = [c for _, c in samples]
    spread = (max(rates) - min(rates)) / statistics.median(rates) * 100 if len(rates) > 1 else 0
    print(f"{name:<24}{statistics.median(rates):>12,.0f} jobs/s  (±{spread:.0f}% over "
          f"{len(rates)} runs)   client CPU {statistics.median(cpus) * 1e6:6.1f} µs/job")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000, help="jobs per measurement (default 20000)")
    ap.add_argument("--seq", type=int, default=2000, help="sequential round trips (default 2000)")
    ap.add_argument("--bg", type=int, default=100000, help="background submissions (default 100000)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each; the median is shown")
    ap.add_argument("--size", type=int, default=10, help="payload bytes (default 10)")
    ap.add_argument("--host", help="use this gearmand instead of starting one")
    ap.add_argument("--port", type=int, default=4730)
    args = ap.parse_args(argv)

    server = None
    host, port = args.host, args.port
    if host is None:
        server = LocalGearmand(threads=1).start()
        host, port = server.host, server.port
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
