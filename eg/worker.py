#!/usr/bin/env python3
"""A worker that serves "reverse" forever (pair it with eg/client.py --no-worker).

    python3 eg/worker.py [--max-jobs N]

--max-jobs N makes it exit after N jobs (handy for scripts and tests);
without it, it serves until you press Ctrl-C.

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
    args = parser.parse_args()

    loop = ev.default_loop()
    # reconnect=True: a long-lived worker should outlive a gearmand restart;
    # its functions are registered again on every connect.
    worker = Gearman(HOST, PORT, reconnect=True, client_id="eg-worker",
                     on_connect=lambda: print("worker connected", flush=True))
    served = 0

    def reverse(job):
        nonlocal served
        served += 1
        print(f"job {job.handle}: reverse({job.workload!r})", flush=True)
        job.status(1, 1)
        if served == args.max_jobs:
            worker.work_stop()                    # take no further job
            loop.timer(0, 0, lambda w, r: exit_when_sent()).start()
        # A sync function's return value is sent as WORK_COMPLETE; an
        # exception would be sent as WORK_FAIL.
        return job.workload[::-1]

    def exit_when_sent():
        # The last result is queued but maybe not written yet. An ECHO is a
        # barrier: the server answers it only after reading all that came
        # before, so its reply means the result was delivered.
        worker.echo(b"", lambda data, err: loop.stop())

    worker.register_function("reverse", reverse)
    worker.work()            # grab, run, sleep until woken, grab again...
    try:
        loop.start()
    except KeyboardInterrupt:
        pass                 # Ctrl-C: jobs not finished are requeued by the server
    print(f"served {served} job(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
