#!/usr/bin/env python3
"""The blocking client (gearman_ev.blocking.GearmanClient) beside the tool its
users have today, pygearman, and beside gearman_ev's own libev front-end:
jobs per second and the client's CPU time per job.

  sequential  --seq round trips, one job at a time:
                blocking   GearmanClient.submit_job() in a loop, from the main
                           thread (which hands each job to the client's thread)
                thread     the same from another thread (which runs the
                           client's loop itself while it waits)
                libev      Gearman.submit_job(), the next one from the callback
                pygearman  GearmanClient.submit_job() in a loop
  batch       -n jobs at once, results in order:
                blocking   GearmanClient.submit_jobs() (thread: from another thread)
                libev      Gearman.submit_job() n times, results to callbacks
                pygearman  GearmanClient.submit_multiple_jobs()
  threads     --seq round trips spread over --threads threads, each one job
              at a time (a threaded web app's handlers):
                blocking   one GearmanClient shared by every thread
                pygearman  one GearmanClient per thread (it is not thread-safe)

One gearmand (-t 1, started here unless --host names one) and one echo
worker (benchmark.py's, gearman_ev, in its own process) serve every client.
Each measurement runs in a fresh child process that connects and makes one
round trip before the clock starts; its CPU time is getrusage(RUSAGE_SELF),
every thread of the process (the blocking client's loop thread included).
The median of --runs repetitions, clients interleaved, is shown.
pygearman comes with the `bench` extra: pip install -e '.[bench]'.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import multiprocessing
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchmark  # noqa: E402  (the echo worker, the libev loops)
from benchmark import FUNC, cpu_seconds, worker_main  # noqa: E402
from vs import Failed, GearmanEv, PyGearman  # noqa: E402

from gearman_ev.blocking import GearmanClient  # noqa: E402
from gearman_ev.testing import LocalGearmand  # noqa: E402


class Blocking:
    dist = "gearman-ev"

    def __init__(self, host, port, limit):
        self.limit = limit
        self.client = GearmanClient([f"{host}:{port}"])

    # No job timeout, as in the libev loops: the parent kills a child that
    # hangs (measure()).
    def sequential(self, n, payload):
        submit = self.client.submit_job
        for _ in range(n):
            if submit(FUNC, payload) != payload:
                raise Failed("wrong result")

    def batch(self, n, payload):
        results = self.client.submit_jobs([(FUNC, payload)] * n)
        if results != [payload] * n:
            raise Failed("wrong results")

    def threads(self, n, payload):
        in_threads(THREADS, lambda i: self.sequential(n // THREADS, payload))

    def close(self):
        self.client.close()


class BlockingInThread(Blocking):
    """The same calls, made from a thread other than the main thread (a web
    app's handler): the client then runs its loop in the calling thread
    when it is free, where the main thread hands over to the client's own
    thread (ev's start() is dearer there: see gearman_ev/blocking.py)."""

    def sequential(self, n, payload):
        in_threads(1, lambda i: Blocking.sequential(self, n, payload))

    def batch(self, n, payload):
        in_threads(1, lambda i: Blocking.batch(self, n, payload))

    threads = None


class Libev(GearmanEv):
    batch = GearmanEv.pipelined


class PyGearmanBatch(PyGearman):
    batch = PyGearman.pipelined

    def __init__(self, host, port, limit):
        super().__init__(host, port, limit)
        self.args = (host, port, limit)

    def setup_threads(self, payload):
        # Its clients are not thread-safe: one per thread, made and warmed up
        # before the clock starts, as a threaded app makes them once.
        self.per_thread = [PyGearman(*self.args) for _ in range(THREADS)]
        for c in self.per_thread:
            c.sequential(1, payload)

    def threads(self, n, payload):
        in_threads(THREADS, lambda i: self.per_thread[i].sequential(n // THREADS, payload))

    def close(self):
        for c in getattr(self, "per_thread", ()):
            c.close()
        super().close()


def in_threads(count, body):
    """Run body(i) in ``count`` threads at once; re-raise the first failure."""
    failures = []

    def run(i):
        try:
            body(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


CLIENTS = {"blocking": Blocking, "thread": BlockingInThread, "libev": Libev,
           "pygearman": PyGearmanBatch}
LABELS = {"blocking": "blocking, main thread", "thread": "blocking, other thread",
          "libev": "gearman_ev (libev)", "pygearman": "pygearman"}
THREADS = 8
WORKLOADS = (("sequential", "sequential round trips", "seq"),
             ("batch", "batch, results in input order", "n"),
             ("threads", f"sequential round trips in {THREADS} threads at once", "seq"))


def version(name):
    """The installed version of a client's distribution, or None."""
    try:
        return importlib.metadata.version(CLIENTS[name].dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def child(name, workload, host, port, n, size, limit, out):
    """One client, one workload, in a process of its own: sends
    ("ok", jobs/s, CPU s/job) or ("error", text)."""
    try:
        client = CLIENTS[name](host, port, limit)
        if getattr(client, workload, None) is None:
            out.send(("n/a",))
            return
        benchmark.LIMIT = limit
        payload = b"x" * size
        client.sequential(1, payload)  # connected, and one round trip made
        setup = getattr(client, f"setup_{workload}", None)
        if setup is not None:
            setup(payload)
        start, cpu = time.perf_counter(), cpu_seconds()
        getattr(client, workload)(n, payload)
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        client.close()
        out.send(("ok", n / wall, cpu / n))
    except BaseException as exc:  # noqa: BLE001 - reported in the table
        out.send(("error", f"{type(exc).__name__}: {exc}"[:60]))


def measure(ctx, name, workload, host, port, n, size, limit):
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=child, args=(name, workload, host, port, n, size, limit, send),
                       daemon=True)
    proc.start()
    send.close()
    got = recv.recv() if recv.poll(limit + 30) else ("error", f"killed after {limit + 30:.0f} s")
    proc.join(10 if got[0] == "ok" else 0)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return got


def main(argv=None):
    intro, rest = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(description=intro, epilog=rest,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10000, help="jobs in the batch (default 10000)")
    ap.add_argument("--seq", type=int, default=2000, help="sequential round trips (default 2000)")
    ap.add_argument("--runs", type=int, default=3, help="repetitions; the median is shown")
    ap.add_argument("--size", type=int, default=10, help="payload bytes (default 10)")
    ap.add_argument("--limit", type=float, default=120.0,
                    help="seconds any one measurement may take (default 120)")
    ap.add_argument("--host", help="use this gearmand instead of starting one")
    ap.add_argument("--port", type=int, default=4730)
    args = ap.parse_args(argv)
    names = [c for c in CLIENTS if c != "pygearman" or version("pygearman")]
    if "pygearman" not in names:
        print("pygearman: not installed (pip install -e '.[bench]'), skipped")
    counts = {"n": args.n, "seq": args.seq}

    server = None
    host, port = args.host, args.port
    if host is None:
        server = LocalGearmand(threads=1).start()
        host, port = server.host, server.port
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    worker = ctx.Process(target=worker_main, args=(host, port, ready), daemon=True)
    worker.start()
    try:
        if not ready.wait(10):
            raise SystemExit("worker did not connect")
        print(f"on gearmand {host}:{port}, one echo worker (gearman_ev) in its own process; "
              f"payload {args.size} bytes; {os.cpu_count()} CPUs; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results = {(c, w): [] for c in names for w, _, _ in WORKLOADS}
        for run in range(args.runs):
            for workload, _, key in WORKLOADS:
                for name in names:
                    got = measure(ctx, name, workload, host, port, counts[key], args.size,
                                  args.limit)
                    results[(name, workload)].append(got)
                    shown = f"{got[1]:,.0f} jobs/s" if got[0] == "ok" else " ".join(got)
                    if got[0] == "n/a":
                        continue
                    print(f"  run {run + 1}: {name:<10}{workload:<11}{shown}",
                          file=sys.stderr, flush=True)
        table(results, names, counts, args.runs)
    finally:
        worker.terminate()
        worker.join(5)
        if server is not None:
            server.close()


def table(results, names, counts, runs):
    for workload, title, key in WORKLOADS:
        print(f"\n{title}, {counts[key]:,} jobs (median of {runs})")
        print(f"  {'client':<30}{'jobs/s':>9}{'CPU µs/job':>12}"
              f"{'rate vs libev':>15}{'rate, CPU vs pygearman':>25}")
        got = {name: median_of(results[(name, workload)]) for name in names}
        for name in names:
            who = f"blocking, {THREADS} threads" if (name, workload) == ("blocking", "threads") \
                else LABELS[name]
            label = f"{who} {version(name) or ''}".rstrip()
            m = got[name]
            if m is None:
                bad = [r for r in results[(name, workload)] if r[0] == "error"]
                print(f"  {label:<30}{bad[0][1] if bad else 'n/a':>9}")
                continue
            rate, cpu = m
            line = f"  {label:<30}{rate:>9,.0f}{cpu * 1e6:>12.1f}"
            if name in ("blocking", "thread"):
                libev, pyg = got.get("libev"), got.get("pygearman")
                line += f"{rate / libev[0]:>14.2f}x" if libev else f"{'':>15}"
                if pyg:
                    line += f"{rate / pyg[0]:>17.2f}x, {cpu / pyg[1]:.2f}x"
            print(line)


def median_of(replies):
    ok = [r for r in replies if r[0] == "ok"]
    if not ok or len(ok) < len(replies):
        return None
    return tuple(statistics.median(r[i] for r in ok) for i in (1, 2))


if __name__ == "__main__":
    main()
