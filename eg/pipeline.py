#!/usr/bin/env python3
"""Many jobs at once: submit N foreground jobs without waiting in between.

    python3 eg/pipeline.py [--jobs N]

All N submissions leave in a few batched writes on one connection; the
replies come back in order and each job's callback fires when its own result
arrives. Nothing blocks, so N jobs cost little more than one round trip per
batch. A worker serving "square" runs in the same process (two of them, so
jobs really run side by side).

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import sys
import time

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    args = parser.parse_args()
    loop = ev.default_loop()

    workers = []
    for _ in range(2):
        w = Gearman(HOST, PORT)
        w.register_function("square", lambda job: str(int(job.workload) ** 2))
        w.work()
        workers.append(w)

    client = Gearman(HOST, PORT)
    results = {}
    errors = []

    def on_result(n):
        # One closure per job remembers which input this callback belongs to.
        def cb(result, err):
            if err:
                errors.append(f"{n}: {err}")
            else:
                results[n] = int(result)
            if len(results) + len(errors) == args.jobs:
                loop.stop()
        return cb

    started = time.monotonic()
    for n in range(args.jobs):
        client.submit_job("square", str(n), on_result(n), timeout=30)
    print(f"submitted {args.jobs} jobs; {client.waiting_count} wait for the connection")
    loop.start()
    elapsed = time.monotonic() - started

    wrong = [n for n, r in results.items() if r != n * n]
    print(f"{len(results)} results in {elapsed:.3f} s, {len(errors)} errors, {len(wrong)} wrong")
    if not errors and not wrong:
        print(f"all {args.jobs} results correct")
        return 0
    print("errors:", errors[:5])
    return 1


if __name__ == "__main__":
    sys.exit(main())
