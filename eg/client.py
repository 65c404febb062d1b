#!/usr/bin/env python3
"""One foreground job: submit "reverse", watch its progress, print the result.

    python3 eg/client.py [TEXT] [--no-worker] [--function NAME]

So that this file runs on its own, it also serves "reverse" itself, on the
same loop. With eg/worker.py running elsewhere, pass --no-worker and the job
goes to that worker instead (--no-worker --function slow_upper: to
eg/async_worker.py).

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
    parser.add_argument("text", nargs="?", default="hello, gearman")
    parser.add_argument("--no-worker", action="store_true",
                        help="do not serve 'reverse' here (eg/worker.py does)")
    parser.add_argument("--function", default="reverse", help="the function to call")
    args = parser.parse_args()

    loop = ev.default_loop()
    outcome = {}

    if not args.no_worker:
        # A worker is just another connection; it may live in the same process.
        # Keep it in a variable: a Gearman object nobody references is closed.
        worker = Gearman(HOST, PORT)

        def reverse(job):
            job.status(1, 1)              # progress reaches the client's on_status
            return job.workload[::-1]     # the return value is the job's result

        worker.register_function("reverse", reverse)
        worker.work()

    # The connect is non-blocking: submitting right away is fine, the request
    # waits in a local queue until the connection is up.
    client = Gearman(HOST, PORT)

    def done(result, err):
        # Called exactly once: with the result, or with an error string.
        outcome["err"] = err
        if err:
            print(f"error: {err}")
        else:
            print(f"result: {result.decode()}")
        loop.stop()

    client.submit_job(
        args.function, args.text, done,
        on_status=lambda num, den: print(f"progress: {num}/{den}"),
        timeout=10,   # never wait forever: no worker means "job timeout" after 10 s
    )
    loop.start()
    return 1 if outcome.get("err") else 0


if __name__ == "__main__":
    sys.exit(main())
