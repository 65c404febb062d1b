#!/usr/bin/env python3
"""A job that runs later: submit_job_epoch(func, workload, epoch).

    python3 eg/scheduled.py [--delay SECONDS]

The job is a background job that the server holds back until the Unix time
`epoch` (whole seconds). gearmand 1.1 does not wake a sleeping worker when
the time comes; gearman_ev's worker grabs again on its own every 5 s while
asleep, so the job runs within about 5 s after its time.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import math
import os
import sys
import time

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=2, help="seconds from now")
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(args.delay + 20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    # Epochs are whole seconds: round up so the job never runs early.
    epoch = math.ceil(time.time() + args.delay)
    ran = {}

    def reminder(job):
        ran["at"] = time.time()
        print(f"worker: ran {job.workload.decode()!r} at epoch+{ran['at'] - epoch:.1f} s")
        loop.timer(0, 0, lambda w, r: worker.echo(b"", lambda *a: loop.stop())).start()

    worker = Gearman(HOST, PORT)
    worker.register_function("reminder", reminder)
    worker.work()

    client = Gearman(HOST, PORT)

    def created(handle, err):
        if err:
            print(f"submit failed: {err}")
            sys.exit(1)
        print(f"scheduled {handle} for epoch {epoch} ({args.delay:g} s from now)")

    client.submit_job_epoch("reminder", "water the plants", epoch, created)
    loop.start()
    return 0 if ran["at"] >= epoch else 1


if __name__ == "__main__":
    sys.exit(main())
