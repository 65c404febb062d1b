#!/usr/bin/env python3
"""An asyncio worker: async def and plain functions, N jobs at once, clean stop.

    python3 eg/asyncio_worker.py [--concurrency N] [--max-jobs N] [--step-seconds T]

It serves "slow_upper", an async def function that awaits between progress
steps (standing for real asynchronous work: a reply from another service, a
query), and "reverse", a plain function. work(concurrency=N) runs at most N
jobs at once. On SIGINT/SIGTERM, or after --max-jobs N jobs, it stops
grabbing; work() returns once the jobs in flight have finished and sent
their results, then the script exits.

Try it with `eg/asyncio_client.py --no-worker --function slow_upper`.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import asyncio
import os
import signal
import sys

from gearman_ev.aio import AsyncGearman

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))
STEPS = 3


async def main(args):
    # reconnect=True: a long-lived worker outlives a gearmand restart; its
    # functions are registered again and work() resumes on every connect.
    worker = AsyncGearman(HOST, PORT, reconnect=True, client_id="eg-asyncio-worker",
                          on_connect=lambda: print("worker connected", flush=True))
    state = {"started": 0, "in_flight": 0}

    def count_one():
        state["started"] += 1
        if state["started"] == args.max_jobs:
            worker.work_stop()           # take no more; those in flight finish

    async def slow_upper(job):
        count_one()
        state["in_flight"] += 1
        print(f"start {job.workload.decode()!r} ({state['in_flight']} in flight)", flush=True)
        try:
            for step in range(1, STEPS + 1):
                await asyncio.sleep(args.step_seconds)   # the "work"
                job.status(step, STEPS)
        finally:
            state["in_flight"] -= 1
        print(f"done  {job.workload.decode()!r}", flush=True)
        return job.workload.upper()      # the result; an exception would fail the job

    def reverse(job):
        count_one()
        return job.workload[::-1]

    worker.register_function("slow_upper", slow_upper)
    worker.register_function("reverse", reverse)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.work_stop)
    await worker.work(concurrency=args.concurrency)   # until work_stop(), then drained
    await worker.close()
    print(f"served {state['started']} job(s)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once (default 4)")
    parser.add_argument("--max-jobs", type=int, default=0, help="exit after N jobs (0: never)")
    parser.add_argument("--step-seconds", type=float, default=0.2)
    sys.exit(asyncio.run(main(parser.parse_args())))
