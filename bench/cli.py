#!/usr/bin/env python3
"""``gearman-ev`` side by side with gearman-tools' ``gearman`` (the libgearman
command line), on one throwaway gearmand (-t 1), in one run:

  submit   N foreground jobs of the same workload:
             gearman-ev submit -n N FUNC payload
             gearman -N -f FUNC < N lines of "payload"   (one job per line)
           served by one echo worker for both (gearman-ev work, concurrency 32)
  submit --bg  the same N jobs in the background (no worker)
  work     M background jobs queued first, then drained by a worker that runs
           cat(1) per job and exits after M:
             gearman-ev work --max-jobs M FUNC -- cat
             gearman -w -c M -f FUNC -- cat
           (and gearman-ev with --concurrency 4, which gearman -w lacks)

Each figure is the median of --runs runs, each a fresh process timed from
start to exit (so start-up counts: it is what a shell user waits for), with
its CPU time (its own and its children's: cat's too, for the workers) from
wait4. Every run is bounded by timeout(1) and checked: the results printed,
the queue drained. Each runs with fresh function names.

gearman-tools is a Debian package; it is installed with apt-get when
``gearman`` is missing (only for this bench: the tests never use it).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gearman_ev import Gearman, ev  # noqa: E402
from gearman_ev.testing import LocalGearmand  # noqa: E402

GEARMAN_EV = [sys.executable, "-m", "gearman_ev"]
PAYLOAD = b"payload-16-bytes"


def ensure_gearman_tools() -> str:
    path = shutil.which("gearman")
    if path:
        return path
    print("gearman (gearman-tools) is missing: installing it with apt-get", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "gearman-tools"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    path = shutil.which("gearman")
    if not path:
        sys.exit("gearman-tools installed, but no gearman on PATH")
    return path


def timed(cmd, limit, stdin=None, stdout=subprocess.DEVNULL):
    """Run cmd under timeout(1); (wall seconds, CPU seconds, exit status)."""
    start = time.perf_counter()
    proc = subprocess.Popen(["timeout", "--kill-after=5", str(limit)] + cmd,
                            stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    # wait4, not proc.wait: its rusage covers the command and every child it
    # waited for (cat for the workers), which RUSAGE_CHILDREN would blur.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime


def admin_status(server) -> dict:
    loop = ev.Loop()
    g = Gearman(server.host, server.port, loop=loop)
    got = []
    g.server_status(lambda text, err: (got.append((text, err)), loop.stop()))
    loop.timer(10, 0, lambda w, r: loop.stop()).start()
    loop.start()
    g.disconnect()
    if not got or got[0][1] is not None:
        sys.exit(f"status failed: {got}")
    rows = {}
    for line in got[0][0].splitlines():
        func, total, running, workers = line.split("\t")
        rows[func] = (int(total), int(running), int(workers))
    return rows


def wait_for_worker(server, func, timeout=10.0):
    deadline = time.monotonic() + timeout
    while admin_status(server).get(func, (0, 0, 0))[2] < 1:
        if time.monotonic() > deadline:
            sys.exit(f"no worker registered for {func}")
        time.sleep(0.05)


def queue_bg(server, func, count):
    loop = ev.Loop()
    g = Gearman(server.host, server.port, loop=loop)
    left = [count]

    def done(handle, err):
        if err is not None:
            sys.exit(f"queueing failed: {err}")
        left[0] -= 1
        if left[0] == 0:
            loop.stop()
    for _ in range(count):
        g.submit_job_bg(func, PAYLOAD, done)
    loop.timer(60, 0, lambda w, r: loop.stop()).start()
    loop.start()
    g.disconnect()
    if left[0]:
        sys.exit("queueing timed out")


class Runs:
    """Figures per row: median wall time and CPU time over the runs."""

    def __init__(self):
        self.rows: dict = {}

    def add(self, name, jobs, wall, cpu):
        self.rows.setdefault(name, []).append((jobs, wall, cpu))

    def rate(self, name):
        jobs = self.rows[name][0][0]
        return jobs / statistics.median(w for _, w, _ in self.rows[name])

    def cpu_per_job(self, name):
        jobs = self.rows[name][0][0]
        return statistics.median(c for _, _, c in self.rows[name]) / jobs


def bench_submit(server, gearman, args, runs, tag):
    host, port = server.host, str(server.port)
    n = args.n
    lines = tempfile.NamedTemporaryFile(prefix="bench-cli-", suffix=".txt", delete=False)
    lines.write((PAYLOAD + b"\n") * n)
    lines.close()
    func = f"bench_cli_echo_{tag}"
    worker = subprocess.Popen(GEARMAN_EV + ["-s", server.address, "work", "--concurrency", "32",
                                            func], stderr=subprocess.DEVNULL)
    try:
        wait_for_worker(server, func)
        with tempfile.TemporaryFile() as out:
            wall, cpu = timed(GEARMAN_EV + ["-s", server.address, "submit", "-n", str(n),
                                            func, PAYLOAD.decode()], args.limit, stdout=out)
            out.seek(0)
            if out.read() != (PAYLOAD + b"\n") * n:
                sys.exit("gearman-ev submit: wrong output")
        runs.add("fg gearman-ev", n, wall, cpu)
        with open(lines.name, "rb") as feed, tempfile.TemporaryFile() as out:
            wall, cpu = timed([gearman, "-h", host, "-p", port, "-N", "-f", func],
                              args.limit, stdin=feed, stdout=out)
            out.seek(0)
            if out.read().count(PAYLOAD) != n:
                sys.exit("gearman -N: wrong output")
        runs.add("fg gearman", n, wall, cpu)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    # Background: nobody serves these; the queue is checked, then dropped
    # with the function name.
    func = f"bench_cli_bg_{tag}"
    wall, cpu = timed(GEARMAN_EV + ["-s", server.address, "submit", "--bg", "-n", str(n),
                                    func, PAYLOAD.decode()], args.limit)
    runs.add("bg gearman-ev", n, wall, cpu)
    with open(lines.name, "rb") as feed:
        wall, cpu = timed([gearman, "-h", host, "-p", port, "-b", "-N", "-f", func + "_t"],
                          args.limit, stdin=feed)
    runs.add("bg gearman", n, wall, cpu)
    status = admin_status(server)
    if status[func][0] != n or status[func + "_t"][0] != n:
        sys.exit(f"background jobs missing: {status[func]}, {status[func + '_t']}")
    os.unlink(lines.name)


def bench_work(server, gearman, args, runs, tag):
    m = args.m
    commands = {
        "work gearman-ev": GEARMAN_EV + ["-s", server.address, "work", "--max-jobs", str(m),
                                         "{func}", "--", "cat"],
        "work gearman": [gearman, "-h", server.host, "-p", str(server.port), "-w",
                         "-c", str(m), "-f", "{func}", "--", "cat"],
        "work gearman-ev -c4": GEARMAN_EV + ["-s", server.address, "work", "--max-jobs",
                                             str(m), "--concurrency", "4", "{func}",
                                             "--", "cat"],
    }
    for name, template in commands.items():
        func = f"bench_cli_cat_{tag}_{name.replace(' ', '_').replace('-', '')}"
        queue_bg(server, func, m)
        cmd = [func if word == "{func}" else word for word in template]
        wall, cpu = timed(cmd, args.limit)
        left = admin_status(server)[func]
        if left[0] != 0:
            sys.exit(f"{name}: {left[0]} jobs left")
        runs.add(name, m, wall, cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10000, help="jobs submitted (default 10000)")
    parser.add_argument("-m", type=int, default=2000,
                        help="jobs a `-- cat` worker runs (default 2000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--limit", type=float, default=300, help="seconds per run at most")
    args = parser.parse_args()
    gearman = ensure_gearman_tools()
    version = subprocess.run(["gearmand", "--version"] if shutil.which("gearmand")
                             else ["/usr/sbin/gearmand", "--version"],
                             capture_output=True, text=True).stdout.split()
    print(f"gearmand {version[1] if len(version) > 1 else '?'} -t 1, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs; median of {args.runs} runs; "
          f"{args.n} jobs submitted, {args.m} run by each `-- cat` worker", flush=True)
    runs = Runs()
    with LocalGearmand(threads=1) as server:
        for run in range(args.runs):
            tag = f"{os.getpid()}_{run}"
            bench_submit(server, gearman, args, runs, tag)
            bench_work(server, gearman, args, runs, tag)
            print(f"  run {run + 1} of {args.runs} done", flush=True)

    rows = [
        ("submit -n N (foreground, echo worker)", "fg gearman-ev", "fg gearman"),
        ("submit --bg -n N (background)", "bg gearman-ev", "bg gearman"),
        ("work -- cat (one job at a time)", "work gearman-ev", "work gearman"),
        ("work --concurrency 4 -- cat", "work gearman-ev -c4", "work gearman"),
    ]
    print()
    print(f"{'':40} {'gearman-ev':>22} {'gearman (tools)':>22} {'ratio':>7}")
    for label, ours, theirs in rows:
        a, b = runs.rate(ours), runs.rate(theirs)
        print(f"{label:40} {a:>9,.0f} jobs/s {runs.cpu_per_job(ours) * 1e6:>5.0f}µs "
              f"{b:>9,.0f} jobs/s {runs.cpu_per_job(theirs) * 1e6:>5.0f}µs {a / b:>6.1f}x")
    print("\n(jobs/s from start to exit of the command; µs = its CPU time per job, children "
          "included; ratio = gearman-ev's jobs/s over gearman's)")


if __name__ == "__main__":
    main()
