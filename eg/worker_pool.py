#!/usr/bin/env python3
"""A bounded pool: an async worker that runs at most N jobs at a time.

    python3 eg/worker_pool.py [--concurrency N] [--max-jobs M] [--builtin]

An async worker grabs the next job as soon as it has started one, so left
alone it takes every job the server has. To cap it by hand: when N jobs are
in flight, work_stop() (no more grabbing; the running jobs still report),
and when one finishes, work() again. The same cap is built in:
worker.work(concurrency=N) keeps at most N in flight by itself (--builtin).
Jobs the pool does not take stay queued for other workers.

--max-jobs M exits after M jobs (0: serve forever).

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--max-jobs", type=int, default=0)
    parser.add_argument("--job-seconds", type=float, default=0.2)
    parser.add_argument("--builtin", action="store_true", help="use work(concurrency=N)")
    args = parser.parse_args()

    loop = ev.default_loop()
    worker = Gearman(HOST, PORT, reconnect=True)
    state = {"in_flight": 0, "peak": 0, "finished": 0}

    def resize(job):
        state["in_flight"] += 1
        state["peak"] = max(state["peak"], state["in_flight"])
        print(f"start {job.workload.decode()} ({state['in_flight']} in flight)", flush=True)
        if not args.builtin and state["in_flight"] == args.concurrency:
            worker.work_stop()      # full: grab nothing more for now
        loop.timer(args.job_seconds, 0, lambda w, r: finish(job)).start()

    def finish(job):
        job.complete(b"resized " + job.workload)
        state["in_flight"] -= 1
        state["finished"] += 1
        if state["finished"] == args.max_jobs:
            # Done: stop once the server has read our last result (an echo's
            # reply comes after everything sent before it was processed).
            worker.work_stop()
            worker.echo(b"", lambda data, err: loop.stop())
        elif not args.builtin and state["in_flight"] == args.concurrency - 1:
            worker.work()           # a slot is free again: resume grabbing

    worker.register_function("resize", resize, async_=True)
    if args.builtin:
        worker.work(concurrency=args.concurrency)
    else:
        worker.work()
    try:
        loop.start()
    except KeyboardInterrupt:
        pass
    print(f"finished {state['finished']} job(s); at most {state['peak']} at a time "
          f"(cap {args.concurrency})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
