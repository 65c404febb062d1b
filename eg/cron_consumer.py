#!/usr/bin/env python3
"""Drain and exit: take every queued job of a function, one by one, then quit.

    python3 eg/cron_consumer.py [--function NAME] [--seed N]

For a consumer started by cron (or by hand) rather than a daemon: it asks
for jobs with grab_job() until the server says "no job", then exits. No
work() loop, no sleeping, no waiting for new jobs. Each job is finished with
job.complete() (or job.fail()) before the next one is grabbed.

To try it out, --seed N first queues N background jobs itself; with an
empty queue it just reports 0 jobs.

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
    parser.add_argument("--function", default="nightly_report")
    parser.add_argument("--seed", type=int, default=0, help="queue N jobs first")
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(60, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    g = Gearman(HOST, PORT)
    # can_do() without a callback: the server hands us this function's jobs,
    # but only when we ask with grab_job().
    g.can_do(args.function)
    count = 0

    def on_job(job, err):
        nonlocal count
        if err == "no job":
            # The queue is empty. This reply came after everything we sent
            # before our GRAB (replies keep request order), so every result
            # has reached the server: safe to leave.
            loop.stop()
            return
        if err:
            print(f"error: {err}")
            sys.exit(1)
        count += 1
        print(f"processing {job.handle}: {job.workload.decode()}")
        job.complete(b"report sent")
        g.grab_job(on_job)               # and the next one

    for n in range(args.seed):
        # Requests go out in order: these are queued before our first GRAB.
        g.submit_job_bg(args.function, f"report for customer {n}")
    g.grab_job(on_job)
    loop.start()
    g.disconnect()
    print(f"drained {count} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
