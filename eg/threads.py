#!/usr/bin/env python3
"""Threads: request handlers in a thread pool send jobs through the loop.

    python3 eg/threads.py [--requests N] [--threads T]

The shape of a threaded web server that calls Gearman. Each request is
handled by a plain blocking function on a pool thread
(concurrent.futures.ThreadPoolExecutor). A Gearman object belongs to the
thread that runs its loop (here the main thread), so a handler never touches
the client: it hands the submission to the loop's thread with
loop.call_soon_threadsafe() and blocks on a concurrent.futures.Future that
the job's callback completes. The main thread only runs the loop, with one
client shared by every handler and, so that this file runs on its own, a
worker serving "render_page" on the same loop.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import concurrent.futures
import os
import sys
import threading

from gearman_ev import Gearman, GearmanError, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    loop = ev.default_loop()
    loop_thread = threading.get_ident()   # the thread that will run the loop
    in_loop_thread = []                   # where each submission was made

    # --- the worker (in a real farm: other processes, other machines) ---
    worker = Gearman(HOST, PORT)
    worker.register_function("render_page",
                             lambda job: f"<h1>Hello, {job.workload.decode()}!</h1>")
    worker.work()

    # --- one client for every handler, used in the loop's thread only ---
    client = Gearman(HOST, PORT)

    def submit(func, workload, future):
        # Runs in the loop's thread (call_soon_threadsafe put it there).
        in_loop_thread.append(threading.get_ident() == loop_thread)

        def done(result, err):
            # Also in the loop's thread; completing the Future wakes the
            # handler that waits on it.
            if err is None:
                future.set_result(result)
            else:
                future.set_exception(GearmanError(err))

        client.submit_job(func, workload, done, timeout=10)

    def call_gearman(func, workload):
        """Run a job from any thread; block until its result (or error)."""
        future = concurrent.futures.Future()
        loop.call_soon_threadsafe(submit, func, workload, future)
        return future.result(timeout=15)   # never wait forever

    # --- the request handlers: ordinary blocking code on pool threads ---
    handler_threads = set()

    def handle_request(user):
        handler_threads.add(threading.current_thread().name)
        try:
            page = call_gearman("render_page", user)
        except (GearmanError, concurrent.futures.TimeoutError) as exc:
            return f"GET /hello/{user} -> 502 ({exc!r})"
        return f"GET /hello/{user} -> 200 {page.decode()}"

    # --- the "server": requests arrive, responses are printed ---
    handled = []

    def on_handled(request):
        # Back in the loop's thread, so printing and counting need no lock.
        response = request.result()
        print(response)
        handled.append(response)
        if len(handled) == args.requests:
            loop.stop()

    pool = concurrent.futures.ThreadPoolExecutor(args.threads, thread_name_prefix="handler")
    for n in range(1, args.requests + 1):
        request = pool.submit(handle_request, f"user{n}")
        # Done-callbacks run on the pool thread that finished the request:
        # hop to the loop's thread from there.
        request.add_done_callback(lambda r: loop.call_soon_threadsafe(on_handled, r))

    guard = loop.timer(30, 0, lambda w, r: (print("timed out"), loop.stop()))
    guard.start()
    try:
        # Handlers started queueing submissions already; they run from the
        # loop's first iteration on.
        loop.start()
    except KeyboardInterrupt:
        print("interrupted")
    guard.stop()
    pool.shutdown(wait=True, cancel_futures=True)
    client.disconnect()
    worker.disconnect()

    ok = sum(" -> 200 " in line for line in handled)
    print(f"{ok} of {args.requests} requests answered by {len(handler_threads)} handler "
          f"thread(s); every job submitted from the loop's thread: {all(in_loop_thread)}")
    return 0 if ok == args.requests and all(in_loop_thread) else 1


if __name__ == "__main__":
    sys.exit(main())
