#!/usr/bin/env python3
"""Blocking client: request handlers on a thread pool call Gearman directly.

    python3 eg/blocking_client.py [--requests N] [--threads T]

The shape of a threaded web app (a WSGI server's worker threads, a task
runner) that runs jobs through Gearman without an event loop of its own.
One gearman_ev.blocking.GearmanClient serves every handler thread: each
call blocks its caller until the result is back, while the client's own
loop runs in a daemon thread. A handler renders a page with one job, or
with several jobs at once (submit_jobs, results in order); a job the worker
fails comes back as an exception (JobFailed) and becomes a 404.

So that this file runs on its own, a worker serving "render_page" and
"render_widget" runs on a loop in a background thread (in a real farm:
other processes, other machines).

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import concurrent.futures
import os
import sys
import threading

from gearman_ev import Gearman, GearmanError, JobFailed, ev
from gearman_ev.blocking import GearmanClient

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def start_worker():
    """A worker on a loop of its own, in a background thread. Returns a
    function that stops it."""
    loop = ev.Loop()
    worker = Gearman(HOST, PORT, loop=loop)

    def render_page(job):
        # async_=True: the function finishes the job itself, here at once.
        user = job.workload.decode()
        if user.startswith("ghost"):
            job.fail()  # no such user: the client's call raises JobFailed
        else:
            job.complete(f"<h1>Hello, {user}!</h1>")

    worker.register_function("render_page", render_page, async_=True)
    worker.register_function("render_widget", lambda job: f"[{job.workload.decode()}]")
    worker.work()
    alive = loop.timer(3600, 3600, lambda w, r: None)  # keeps loop.start() running
    alive.start()
    thread = threading.Thread(target=loop.start, daemon=True)
    thread.start()

    def stop():
        def in_loop():
            worker.disconnect()
            alive.stop()
            loop.stop()
        loop.call_soon_threadsafe(in_loop)
        thread.join(10)
    return stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    stop_worker = start_worker()

    # One client for the whole process, shared by every handler thread.
    client = GearmanClient(f"{HOST}:{PORT}")
    handler_threads = set()

    def handle_request(n):
        """A plain blocking request handler, as in any threaded app."""
        handler_threads.add(threading.current_thread().name)
        user = f"ghost{n}" if n % 5 == 0 else f"user{n}"
        try:
            if n % 3 == 0:
                # Several jobs at once: pipelined, results in input order.
                widgets = client.submit_jobs([("render_widget", f"{user}:news"),
                                              ("render_widget", f"{user}:weather")],
                                             timeout=10)
                body = " ".join(w.decode() for w in widgets)
            else:
                body = client.submit_job("render_page", user, timeout=10).decode()
        except JobFailed:
            return f"GET /hello/{user} -> 404"
        except (GearmanError, TimeoutError) as exc:
            return f"GET /hello/{user} -> 502 ({exc!r})"
        return f"GET /hello/{user} -> 200 {body}"

    try:
        with concurrent.futures.ThreadPoolExecutor(args.threads,
                                                   thread_name_prefix="handler") as pool:
            responses = list(pool.map(handle_request, range(1, args.requests + 1)))
    finally:
        client.close()
        stop_worker()
    for line in responses:
        print(line)
    answered = sum(" -> 200 " in line or line.endswith(" -> 404") for line in responses)
    print(f"{answered} of {args.requests} requests answered by {len(handler_threads)} "
          f"handler thread(s) through one GearmanClient")
    return 0 if answered == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
