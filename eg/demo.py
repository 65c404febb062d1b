#!/usr/bin/env python3
"""`make demo`: the main job, end to end, on a throwaway local gearmand.

Starts gearmand on a free loopback port, then on one libev loop runs a worker
(a sync "reverse" function, and an async "slow_upper" one finished from a
timer) and a client that submits foreground jobs with progress events, a
background job, and asks for its status. Prints what happens and stops the
server. Set GEARMAN_HOST / GEARMAN_PORT to use a running server instead.
"""
import os
import sys

from gearman_ev import Gearman, ev
from gearman_ev.testing import LocalGearmand


def run(host, port):
    loop = ev.Loop()

    # --- the worker: one connection serving two functions ---
    worker = Gearman(host, port, loop=loop, client_id="demo-worker")

    def reverse(job):
        job.status(1, 1)
        return job.workload[::-1]          # the return value is WORK_COMPLETE

    def slow_upper(job):
        # async_: finish later, from a timer, without blocking the loop
        loop.timer(0.2, 0, lambda w, r: job.complete(job.workload.upper())).start()

    worker.register_function("reverse", reverse)
    worker.register_function("slow_upper", slow_upper, async_=True)
    worker.work()

    # --- the client ---
    client = Gearman(host, port, loop=loop)
    left = {"jobs": 4}

    def finished():
        left["jobs"] -= 1
        if left["jobs"] == 0:
            loop.stop()

    def show(label):
        def cb(result, err):
            print(f"{label:28} -> {result!r}" + (f"  error: {err}" if err else ""))
            finished()
        return cb

    client.submit_job("reverse", "hello, gearman", show("reverse('hello, gearman')"),
                      on_status=lambda n, d: print(f"  progress {n}/{d}"))
    client.submit_job("slow_upper", b"async worker", show("slow_upper('async worker')"))

    def on_created(handle, err):
        print(f"{'background job':28} -> handle {handle}" + (f"  error: {err}" if err else ""))
        client.get_status(handle, show("get_status(handle)"))

    client.submit_job_bg("reverse", b"fire and forget", on_created)
    client.server_version(show("server_version()"))

    guard = loop.timer(10, 0, lambda w, r: (print("demo timed out"), loop.stop()))
    guard.start()
    loop.start()
    guard.stop()
    worker.disconnect()
    client.disconnect()
    return 0 if left["jobs"] == 0 else 1


def main():
    host = os.environ.get("GEARMAN_HOST")
    if host:
        return run(host, int(os.environ.get("GEARMAN_PORT", "4730")))
    with LocalGearmand() as server:
        print(f"gearmand started on {server.host}:{server.port}")
        code = run(server.host, server.port)
    print("gearmand stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
