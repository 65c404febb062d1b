#!/usr/bin/env python3
"""Fire and forget: background jobs outlive the client that submitted them.

    python3 eg/background.py [--jobs N]

The client submits N background jobs, gets a handle for each (JOB_CREATED:
the server has the job), asks for the status of one, and disconnects: it will
never hear of them again. Only then does a worker connect and process them,
which shows that the jobs waited at the server, not in the client.

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
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    loop = ev.default_loop()
    # A guard: an example that talks to a network never waits forever.
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    client = Gearman(HOST, PORT)
    handles = []

    def created(handle, err):
        # Background callbacks fire on JOB_CREATED, with the job's handle.
        if err:
            print(f"submit failed: {err}")
            sys.exit(1)               # SystemExit leaves loop.start() at once
        print(f"queued {handle}")
        handles.append(handle)
        if len(handles) == args.jobs:
            client.get_status(handles[0], status_known)

    def status_known(status, err):
        # A handle is enough to ask about the job later, from any connection.
        if err:
            print(f"get_status failed: {err}")
            sys.exit(1)
        print(f"status of {status['handle']}: known={status['known']} "
              f"running={status['running']}")
        client.disconnect()           # the jobs stay queued at the server
        print("client gone; starting a worker")
        start_worker()

    for n in range(args.jobs):
        client.submit_job_bg("log_line", f"line {n}", created)

    done = []
    worker = None

    def log_line(job):
        print(f"worker: {job.workload.decode()}")
        done.append(job.handle)
        if len(done) == args.jobs:
            # Stop after the result is sent: see eg/worker.py for why an echo.
            loop.timer(0, 0, lambda w, r: worker.echo(b"", lambda *a: loop.stop())).start()

    def start_worker():
        nonlocal worker
        worker = Gearman(HOST, PORT)
        worker.register_function("log_line", log_line)
        worker.work()

    loop.start()
    print(f"worker processed {len(done)} background job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
