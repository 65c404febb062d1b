#!/usr/bin/env python3
"""Coalescing: several submissions with the same unique key share one job.

    python3 eg/unique.py [--clients N]

N clients ask for the same expensive report at the same time, all with the
same unique key ("report-2024-<pid>"). The server runs it once; every
client gets the result. While it runs, get_status_unique() tells how many
clients are waiting. (Coalescing is per function and per server; a unique
key is at most 63 bytes.)

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))
UNIQUE = f"report-2024-{os.getpid()}"   # the pid keeps runs apart on a shared server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    runs = []

    def build_report(job):
        # Async: the job stays "running" for a while, so the clients overlap.
        runs.append(job.handle)
        print(f"worker: building the report (run #{len(runs)}, job {job.handle})")
        job.status(1, 2)
        loop.timer(0.5, 0, lambda w, r: job.complete(b"42 widgets sold")).start()
        # Look at the job while it runs. The echo's reply means the server has
        # read the status above; only then does the observer ask.
        worker.echo(b"", lambda data, err: observer.get_status_unique(UNIQUE, show))

    def start_worker():
        worker.register_function("build_report", build_report, async_=True)
        worker.work()

    worker = Gearman(HOST, PORT)
    observer = Gearman(HOST, PORT)
    clients = [Gearman(HOST, PORT) for _ in range(args.clients)]
    answers = []

    def on_result(n):
        def cb(result, err):
            print(f"client {n}: {result!r}" + (f" error: {err}" if err else ""))
            answers.append(result)
            if len(answers) == args.clients:
                loop.stop()
        return cb

    # Every client sends the same unique key; the workloads of the later ones
    # are discarded by the server, since the job they join already has one.
    for n, client in enumerate(clients):
        client.submit_job("build_report", f"request from client {n}", on_result(n),
                          unique=UNIQUE, timeout=10)

    # Start the worker only once every submission is in.
    joined = {"n": 0}

    def count_in(data, err):
        joined["n"] += 1
        if joined["n"] == args.clients:
            start_worker()

    for client in clients:
        # An echo comes back after the submission before it was processed.
        client.echo(b"", count_in)

    def show(status, err):
        print(f"status of unique {UNIQUE!r}: known={status['known']} "
              f"running={status['running']} progress={status['numerator']}/"
              f"{status['denominator']} waiting clients={status['client_count']}")

    loop.start()
    print(f"{len(answers)} clients answered by {len(runs)} run(s) of the job")
    return 0 if len(runs) == 1 and set(answers) == {b"42 widgets sold"} else 1


if __name__ == "__main__":
    sys.exit(main())
