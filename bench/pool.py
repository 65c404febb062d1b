#!/usr/bin/env python3
"""GearmanPool over 1, 2 and 3 job servers: jobs per second and CPU per job.

For each server count N it starts N gearmand (-t 1) on free loopback ports
and one gearman_ev echo worker per server (a child process, plain
``Gearman``), then times one GearmanPool client in this process:

- pipelined foreground jobs: -n jobs submitted at once, round-robin over
  the servers, until every result is back;
- background submissions: --bg jobs with no worker, until every
  JOB_CREATED is back (the client's own ceiling: the servers only queue).

Besides the client's CPU per job it reads, from /proc, the CPU per job of
the gearmand processes and of the workers (summed over the N of each): the
inputs of the scaling model in README.rst ("Scaling out"). A plain
``Gearman`` on one server is measured too, as the pool's baseline.

Every loop is bounded by a job count and a wall-clock limit; the figures are
the median of --runs repetitions. On a 2-core machine every process shares
two cores, so the rates with more servers show the client's and the
servers' CPU costs, not a farm's speed: see the model.
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

from gearman_ev import Gearman, GearmanPool, ev  # noqa: E402
from gearman_ev._gearmand import LocalGearmand  # noqa: E402

FUNC = "bench_pool_echo"
LIMIT = 60.0  # seconds any one measurement may take
TICK = os.sysconf("SC_CLK_TCK")


def cpu_self():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid):
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_main(host, port, ready):
    """One echo worker on one server."""
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop, on_connect=ready.set)
    g.register_function(FUNC, lambda job: job.workload)
    g.work()
    loop.start()


def run_loop(loop, done, what):
    guard = loop.timer(LIMIT, 0, lambda w, r: loop.stop())
    guard.start()
    while not done():
        loop.start(ev.EVRUN_ONCE)
        if not guard.active:
            raise SystemExit(f"{what}: not finished within {LIMIT} s")
    guard.stop()


def measure(client, loop, n, submit, pids):
    """(jobs/s, client s/job, servers' s/job, workers' s/job) for n jobs
    made by submit(cb), all at once."""
    left = [n]
    failed = []

    def cb(result, err):
        left[0] -= 1
        if err is not None:
            failed.append(err)
    others = [sum(cpu_of(p) for p in group) for group in pids]
    start, cpu = time.perf_counter(), cpu_self()
    for _ in range(n):
        submit(cb)
    run_loop(loop, lambda: left[0] == 0, "jobs")
    wall, cpu = time.perf_counter() - start, cpu_self() - cpu
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed: {failed[0]}")
    after = [sum(cpu_of(p) for p in group) for group in pids]
    return (n / wall, cpu / n, (after[0] - others[0]) / n, (after[1] - others[1]) / n)


def workers_ready(loop, client, count):
    """Wait until admin status shows one worker for FUNC on every server."""
    deadline = time.monotonic() + 10
    while True:
        got = []
        client.server_status(lambda texts, err: got.append(texts))
        run_loop(loop, lambda: got, "status")
        texts = got[0] if isinstance(got[0], dict) else {"one": got[0]}
        ok = 0
        for text in texts.values():
            for line in (text or "").splitlines():
                fields = line.split("\t")
                if fields[0] == FUNC and fields[3] == "1":
                    ok += 1
        if ok == count:
            return
        if time.monotonic() > deadline:
            raise SystemExit("workers did not register")


def bench(n_servers, args, plain=False):
    servers = [LocalGearmand(threads=1).start() for _ in range(n_servers)]
    workers = []
    try:
        for s in servers:
            ready = multiprocessing.Event()
            p = multiprocessing.Process(target=worker_main, args=(s.host, s.port, ready),
                                        daemon=True)
            p.start()
            if not ready.wait(10):
                raise SystemExit("worker did not connect")
            workers.append(p)
        loop = ev.Loop()
        if plain:
            client = Gearman(servers[0].host, servers[0].port, loop=loop)
        else:
            client = GearmanPool([f"{s.host}:{s.port}" for s in servers], loop=loop)
        workers_ready(loop, client, n_servers)
        pids = [[s.proc.pid for s in servers], [p.pid for p in workers]]
        payload = b"x" * args.size
        fg = lambda cb: client.submit_job(FUNC, payload, cb)  # noqa: E731
        bg = lambda cb: client.submit_job_bg(FUNC + "_bg", payload, cb)  # noqa: E731
        measure(client, loop, 1000, fg, pids)  # warm: connections, buffers, caches
        rows = {"fg": [measure(client, loop, args.n, fg, pids) for _ in range(args.runs)],
                "bg": [measure(client, loop, args.bg, bg, pids) for _ in range(args.runs)]}
        client.disconnect()
        return {k: tuple(statistics.median(r[i] for r in v) for i in range(4))
                for k, v in rows.items()}
    finally:
        for p in workers:
            p.terminate()
            p.join(5)
        for s in servers:
            s.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=30000, help="pipelined jobs (default 30000)")
    ap.add_argument("--bg", type=int, default=60000, help="background submissions (default 60000)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions; the median is shown")
    ap.add_argument("--size", type=int, default=10, help="payload bytes (default 10)")
    ap.add_argument("--servers", type=int, nargs="+", default=[1, 2, 3],
                    help="server counts to measure (default 1 2 3)")
    args = ap.parse_args(argv)
    print(f"GearmanPool, gearmand -t 1 per server, one echo worker per server; "
          f"payload {args.size} bytes, median of {args.runs}; {os.cpu_count()} CPUs")
    print(f"{'':<22}{'pipelined foreground':^52}  {'background submit':^26}")
    print(f"{'':<22}{'jobs/s':>10}{'client':>10}{'gearmand':>11}{'worker':>11}"
          f"{'':>10}  {'jobs/s':>10}{'client':>10}")
    configs = [("Gearman, 1 server", 1, True)] + \
        [(f"pool, {n} server{'s' if n > 1 else ''}", n, False) for n in args.servers]
    for name, n, plain in configs:
        r = bench(n, args, plain)
        fg, bg = r["fg"], r["bg"]
        print(f"{name:<22}{fg[0]:>10,.0f}{fg[1] * 1e6:>8.1f}µs{fg[2] * 1e6:>9.1f}µs"
              f"{fg[3] * 1e6:>9.1f}µs{'':>10}  {bg[0]:>10,.0f}{bg[1] * 1e6:>8.1f}µs")
    print("CPU columns: per job; gearmand and worker summed over every server's process")


if __name__ == "__main__":
    main()
