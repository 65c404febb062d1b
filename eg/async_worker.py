#!/usr/bin/env python3
"""An async worker: jobs finish later, from timers, and run side by side.

    python3 eg/async_worker.py [--max-jobs N] [--steps S] [--step-seconds T]

register_function(..., async_=True) means the function only *starts* the
job and returns at once; the job is finished later with job.complete() (or
job.fail() / job.exception()). Meanwhile the loop is free, so the worker
grabs the next job right away and many jobs are in progress together. Here a
repeating timer stands for real asynchronous work (a reply from another
service, a subprocess, ...): each tick reports progress, the last completes.

Try it with `eg/client.py --no-worker --function slow_upper` (several at
once show the overlap). --max-jobs N exits after N jobs.

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
    parser.add_argument("--max-jobs", type=int, default=0, help="exit after N jobs (0: never)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--step-seconds", type=float, default=0.2)
    args = parser.parse_args()

    loop = ev.default_loop()
    worker = Gearman(HOST, PORT, reconnect=True)
    state = {"started": 0, "finished": 0, "in_flight": 0}

    def slow_upper(job):
        state["started"] += 1
        state["in_flight"] += 1
        print(f"start {job.handle} ({state['in_flight']} in flight)", flush=True)
        if state["started"] == args.max_jobs:
            worker.work_stop()            # the last one: take no more
        step = {"n": 0}

        def tick(timer, revents):
            step["n"] += 1
            job.status(step["n"], args.steps)
            if step["n"] == args.steps:
                timer.stop()
                job.complete(job.workload.upper())
                finished(job)

        # The timer is the job's "work"; this function returns right away.
        loop.timer(args.step_seconds, args.step_seconds, tick).start()

    def finished(job):
        state["finished"] += 1
        state["in_flight"] -= 1
        print(f"done  {job.handle} ({state['in_flight']} in flight)", flush=True)
        if state["finished"] == args.max_jobs:
            # An echo's reply means the server has read our last result.
            worker.echo(b"", lambda data, err: loop.stop())

    worker.register_function("slow_upper", slow_upper, async_=True)
    worker.work()
    try:
        loop.start()
    except KeyboardInterrupt:
        pass
    print(f"finished {state['finished']} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
