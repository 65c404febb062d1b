#!/usr/bin/env python3
"""Client-side retry with exponential backoff, waiting on the loop's timers.

    python3 eg/retry.py [--attempts N] [--fail-first K]

The server does not retry a failed job for its client, so the client does:
on "job failed", "job timeout" or "disconnected" it waits 0.1 s, 0.2 s,
0.4 s... and submits again, up to N attempts. The wait is a libev timer, not
time.sleep(): the loop (and everything else on it) keeps running meanwhile.
The worker here fails its first K calls on purpose.

A unique key makes a retry safe when the first copy might still be queued or
running: the server attaches the retry to it instead of running it twice.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import sys
import uuid

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))
RETRYABLE = {"job failed", "job timeout", "disconnected"}


def submit_with_retry(client, loop, func, workload, cb, *, attempts=5, delay=0.1,
                      timeout=5):
    """Submit; on a retryable error wait delay, 2*delay, ... and submit again.
    cb(result, err) fires once, with the last attempt's outcome."""
    unique = uuid.uuid4().hex          # one key for this request, same on every attempt
    state = {"attempt": 0}

    def try_once():
        state["attempt"] += 1
        client.submit_job(func, workload, on_done, unique=unique, timeout=timeout)

    def on_done(result, err):
        n = state["attempt"]
        if err in RETRYABLE and n < attempts:
            wait = delay * 2 ** (n - 1)
            print(f"attempt {n} failed ({err}); retrying in {wait:g} s")
            loop.timer(wait, 0, lambda w, r: try_once()).start()
        else:
            if err:
                print(f"attempt {n} failed ({err}); giving up")
            cb(result, err)

    try_once()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--fail-first", type=int, default=2)
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(30, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    calls = {"n": 0}

    def flaky(job):
        calls["n"] += 1
        if calls["n"] <= args.fail_first:
            job.fail()          # WORK_FAIL: the client sees "job failed"
            return None
        return job.workload.upper()

    worker = Gearman(HOST, PORT)
    worker.register_function("flaky_upper", flaky)
    worker.work()

    client = Gearman(HOST, PORT)
    outcome = {}

    def done(result, err):
        outcome["err"] = err
        print(f"result: {result!r}" if not err else f"error: {err}")
        loop.stop()

    submit_with_retry(client, loop, "flaky_upper", b"persistence pays", done,
                      attempts=args.attempts)
    loop.start()
    return 1 if outcome["err"] else 0


if __name__ == "__main__":
    sys.exit(main())
