#!/usr/bin/env python3
"""The asyncio client: one job with progress, a pipelined batch, a job's events.

    python3 eg/asyncio_client.py [TEXT] [--no-worker] [--function NAME] [--uvloop]

gearman_ev.aio.AsyncGearman runs on asyncio's own loop (or uvloop with
--uvloop); each request is a coroutine that returns the result or raises.
So that this file runs on its own, it also serves "reverse" in the same
process; with eg/asyncio_worker.py (or eg/worker.py) running elsewhere, pass
--no-worker (--function slow_upper: eg/asyncio_worker.py's async function).

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import asyncio
import os
import sys

from gearman_ev import GearmanError
from gearman_ev.aio import AsyncGearman

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


async def main(args):
    worker_task = None
    if not args.no_worker:
        # A worker is just another connection; it may live in the same loop.
        worker = AsyncGearman(HOST, PORT)

        def reverse(job):
            job.status(1, 1)              # progress reaches the client's on_status
            return job.workload[::-1]     # the return value is the job's result

        worker.register_function("reverse", reverse)
        worker_task = asyncio.ensure_future(worker.work())

    # `async with` waits for the connection and closes it at the end.
    async with AsyncGearman(HOST, PORT) as client:
        try:
            # One job: awaiting it gives the result bytes, or raises
            # (JobFailed, JobTimeout, ConnectionLost, ...: gearman_ev.errors).
            result = await client.submit_job(
                args.function, args.text, timeout=10,
                on_status=lambda num, den: print(f"progress: {num}/{den}"))
            print(f"result: {result.decode()}")

            # Calling a request method sends it at once; the replies are
            # awaited after, so these ten jobs are in flight together.
            words = [f"{args.text} #{i}" for i in range(10)]
            replies = [client.submit_job(args.function, w, timeout=10) for w in words]
            results = await asyncio.gather(*replies)
            print(f"pipelined: {len(results)} results")

            # submit() gives a JobRun: its handle, its events, then its result.
            run = client.submit(args.function, "events", timeout=10)
            print(f"created: {(await run.created()).split(':')[0]}:...")
            async for event in run.events():
                print(f"event: {event.kind} {event.value}")
            print(f"run result: {(await run).decode()}")
        except GearmanError as exc:
            print(f"error: {exc}")
            return 1
        finally:
            if worker_task is not None:
                worker.work_stop()
                await worker_task
                await worker.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", nargs="?", default="hello, gearman")
    parser.add_argument("--no-worker", action="store_true",
                        help="do not serve 'reverse' here (eg/asyncio_worker.py does)")
    parser.add_argument("--function", default="reverse", help="the function to call")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    options = parser.parse_args()
    if options.uvloop:
        import uvloop
        sys.exit(uvloop.run(main(options)))
    sys.exit(asyncio.run(main(options)))
