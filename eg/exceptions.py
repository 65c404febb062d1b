#!/usr/bin/env python3
"""Exceptions: the worker's error text travels back to the client.

    python3 eg/exceptions.py

By default a failing job reaches the client as a bare "job failed". With
exceptions=True on both sides (the OPTION_REQ "exceptions"), a worker's
exception is sent as WORK_EXCEPTION carrying its text: the client's
on_exception(data) gets the text, then its callback gets (None, "exception").
  - sync worker: just raise; str(exc) is sent;
  - async worker: call job.exception(data) yourself.
The server forwards WORK_EXCEPTION only to clients that asked for it; the
others see a plain "job failed".

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import logging
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def parse_date(job):
    year, month, day = job.workload.decode().split("-")   # ValueError on bad input
    if not 1 <= int(month) <= 12:
        raise ValueError(f"month {month} out of range")
    return f"{day}.{month}.{year}"


def main():
    # The worker also logs each exception it reports (with a traceback):
    # useful in production, noise in this demo.
    logging.getLogger("gearman_ev").setLevel(logging.CRITICAL)
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    worker = Gearman(HOST, PORT, exceptions=True)
    worker.register_function("parse_date", parse_date)

    def check_async(job):
        # An async job reports an exception with job.exception(data).
        loop.timer(0.05, 0, lambda w, r: job.exception(b"quota exceeded")).start()
    worker.register_function("check_quota", check_async, async_=True)
    worker.work()

    client = Gearman(HOST, PORT, exceptions=True)
    plain = Gearman(HOST, PORT)               # did not ask for exceptions
    left = {"n": 4}

    def report(label):
        def on_exception(data):
            print(f"{label}: on_exception({data.decode()!r})")

        def cb(result, err):
            print(f"{label}: result={result!r} err={err!r}")
            left["n"] -= 1
            if left["n"] == 0:
                loop.stop()
        return cb, on_exception

    for label, conn, func, workload in [
        ("good date", client, "parse_date", "2024-05-17"),
        ("bad month", client, "parse_date", "2024-13-01"),
        ("async", client, "check_quota", "user 7"),
        ("no option", plain, "parse_date", "garbage"),
    ]:
        cb, on_exception = report(label)
        conn.submit_job(func, workload, cb, on_exception=on_exception, timeout=10)

    loop.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
