#!/usr/bin/env python3
"""Work events: a job that streams data, warnings and progress before its result.

    python3 eg/event_client.py

A foreground job is more than a result: while it runs, the worker can send
WORK_DATA (chunks of output), WORK_WARNING and WORK_STATUS (progress). The
client receives each through its own handler, in the order sent, and the
terminal callback last. The worker ("count_lines") runs in this process.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))

TEXT = "alpha\nbeta\n\ngamma\n"


def count_lines(job):
    lines = job.workload.decode().split("\n")[:-1]
    for n, line in enumerate(lines, 1):
        if line:
            job.send_data(f"{n}: {line}")          # -> on_data
        else:
            job.warning(f"line {n} is empty")      # -> on_warning
        job.status(n, len(lines))                  # -> on_status
    return str(len(lines))                         # -> the terminal callback


def main():
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    worker = Gearman(HOST, PORT)
    worker.register_function("count_lines", count_lines)
    worker.work()

    client = Gearman(HOST, PORT)
    outcome = {}

    def done(result, err):
        outcome["err"] = err
        print(f"done: {result!r}" + (f" error: {err}" if err else ""))
        loop.stop()

    client.submit_job(
        "count_lines", TEXT, done,
        on_data=lambda data: print(f"data: {data.decode()}"),
        on_warning=lambda data: print(f"warning: {data.decode()}"),
        # numerator and denominator arrive as str, exactly as the worker sent them
        on_status=lambda num, den: print(f"status: {num}/{den}"),
        timeout=10,
    )
    loop.start()
    return 1 if outcome["err"] else 0


if __name__ == "__main__":
    sys.exit(main())
