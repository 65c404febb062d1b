#!/usr/bin/env python3
"""Graceful shutdown: on SIGTERM, stop taking jobs, finish the running ones, exit.

    python3 eg/graceful_worker.py [--job-seconds T]

Killing a worker outright is safe for the queue (the server gives its jobs
to another worker) but wastes the work done so far and runs those jobs
twice. On SIGTERM (what systemd, Docker and Kubernetes send first) this
worker instead:
  1. calls work_stop(): no new job is grabbed; queued jobs stay at the server;
  2. lets the jobs in flight run to the end and deliver their results;
  3. disconnects and exits 0.
The signal arrives through an ev Signal watcher, as one more loop event: the
handler runs between callbacks, never in the middle of one. Ctrl-C (SIGINT)
does the same.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import signal
import sys

from gearman_ev import Gearman, GearmanError, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job-seconds", type=float, default=1.0)
    args = parser.parse_args()

    loop = ev.default_loop()
    worker = Gearman(HOST, PORT, reconnect=True,
                     on_connect=lambda: print("worker ready", flush=True))
    in_flight = set()
    stopping = False

    def encode(job):
        # async_: the job runs on a timer, so several are in flight at once.
        in_flight.add(job)
        print(f"started {job.handle}", flush=True)
        loop.timer(args.job_seconds, 0, lambda w, r: finish(job)).start()

    def finish(job):
        in_flight.discard(job)
        try:
            job.complete(b"encoded " + job.workload)
            print(f"finished {job.handle}", flush=True)
        except GearmanError as exc:
            # "stale job": the connection dropped meanwhile and the server has
            # given this job to another worker; nothing left to report.
            print(f"dropped {job.handle}: {exc}", flush=True)
        if stopping and not in_flight:
            exit_when_sent()

    def on_signal(watcher, revents):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        print(f"signal {watcher.signum}: no more jobs; waiting for "
              f"{len(in_flight)} in flight", flush=True)
        worker.work_stop()
        if not in_flight:
            exit_when_sent()

    def exit_when_sent():
        # The echo's reply proves the server has read every result before it.
        worker.echo(b"", lambda data, err: loop.stop())

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.signal(signum, on_signal).start()

    worker.register_function("encode", encode, async_=True)
    worker.work()
    loop.start()
    worker.disconnect()
    print("all jobs finished; bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
