#!/usr/bin/env python3
"""Priorities: high jobs are handed out before normal ones, normal before low.

    python3 eg/priority_queue.py

Six jobs are queued while no worker runs, lowest priority first:
submit_job_low, submit_job, submit_job_high (the _bg variants exist too).
Then a worker starts and takes them one at a time: it gets the high ones
first, then normal, then low; first in, first out within a level.
(gearmand 1.1 orders jobs per function, not across a worker's functions.)

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))
FUNC = f"print_label_{os.getpid()}"   # this run's own queue on a shared server


def main():
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()
    client = Gearman(HOST, PORT)
    order = []
    results = []

    def finished(result, err):
        results.append(err or result.decode())
        if len(results) == 6:
            loop.stop()

    client.submit_job_low(FUNC, "low 1", finished)
    client.submit_job_low(FUNC, "low 2", finished)
    client.submit_job(FUNC, "normal 1", finished)
    client.submit_job(FUNC, "normal 2", finished)
    client.submit_job_high(FUNC, "high 1", finished)
    client.submit_job_high(FUNC, "high 2", finished)

    def run(job):
        order.append(job.workload.decode())
        print(f"worker: {job.workload.decode()}")
        return "printed " + job.workload.decode()

    def start_worker(data, err):
        # The echo was answered after the six submissions before it, so they
        # are all queued now: the worker sees the whole queue.
        worker.register_function(FUNC, run)
        worker.work()       # one job at a time (a sync function)

    worker = Gearman(HOST, PORT)
    client.echo(b"", start_worker)
    loop.start()
    print("order:", ", ".join(order))
    expected = ["high 1", "high 2", "normal 1", "normal 2", "low 1", "low 2"]
    return 0 if order == expected else 1


if __name__ == "__main__":
    sys.exit(main())
