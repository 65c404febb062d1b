#!/usr/bin/env python3
"""Every error a user meets, and what it looks like.

    python3 eg/error_handling.py

Two kinds of errors:
  - A call that cannot be made at all raises at once, before anything is
    sent: TypeError / ValueError for bad arguments, GearmanError when the
    object is not connected (or already is).
  - Anything that goes wrong later arrives as an error string: a request's
    callback gets cb(None, err), and connection-level trouble goes to
    on_error(err) (by default a warning on the "gearman_ev" logger).
Each case below prints "case: what you get".

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import logging
import os
import socket
import sys

from gearman_ev import Gearman, GearmanError, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def unused_port():
    # A port nobody listens on: bind one, note it, close it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raises(label, call):
    try:
        call()
    except (TypeError, ValueError, GearmanError) as exc:
        print(f"{label}: {type(exc).__name__}({str(exc)!r})")
    else:
        print(f"{label}: no error?!")


def main():
    # The worker below logs the exception it turns into WORK_FAIL, with a
    # traceback: right in production, noise here.
    logging.getLogger("gearman_ev").setLevel(logging.CRITICAL)
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    # ----- 1. Raised at once -----
    g = Gearman(HOST, PORT)
    raises("workload of a wrong type", lambda: g.submit_job("f", 42))
    raises("function name with a space", lambda: g.submit_job("my func", b""))
    raises("unique key too long", lambda: g.submit_job("f", b"", unique="u" * 64))
    raises("negative timeout", lambda: g.submit_job("f", b"", timeout=-1))
    raises("not connected", lambda: Gearman().echo(b"hello"))
    raises("connect twice", lambda: g.connect(HOST, PORT))

    # ----- 2. Delivered later, as error strings -----
    # Each case stores its outcome; they all run at once and are printed in
    # a fixed order at the end.
    cases = {}
    order = []

    def expect(label):
        order.append(label)

        def record(result, err):
            cases[label] = err if err else f"(no error: {result!r})"
            if len(cases) == len(order):
                loop.stop()
        return record

    # Nothing listens on that port: on_error says why, and a request made
    # meanwhile fails with "disconnected".
    record_refused = expect("refused connection (on_error)")
    refused = Gearman("127.0.0.1", unused_port(),
                      on_error=lambda err: record_refused(None, err))
    refused.echo(b"hi", expect("request on a refused connection"))

    # A host name that does not resolve. (Name lookup runs at once, and
    # blocks; its failure is reported from the loop like any other. Give an
    # IP address to keep connects and reconnects fully non-blocking.) Keep a
    # reference: an object nobody holds is collected, reports included.
    record_dns = expect("unknown host (on_error)")
    unknown = Gearman("no-such-host.invalid", 4730,
                      on_error=lambda err: record_dns(None, err))

    # The worker raises: the client gets "job failed".
    worker = Gearman(HOST, PORT)

    def broken(job):
        raise RuntimeError("disk full")       # logged by the worker, sent as WORK_FAIL
    worker.register_function("eg_broken", broken)
    worker.work()
    g.submit_job("eg_broken", b"", expect("job failed"), timeout=10)

    # No worker serves this function: the job's own timeout ends the wait.
    g.submit_job("eg_nobody_serves_this", b"", expect("job timeout"), timeout=0.3)

    # gearmand answers an unknown admin command with an ERR line...
    g.admin("frobnicate", expect("unknown admin command"))
    # ...and a bad binary request with an ERROR packet: "CODE: text".
    g.option("no_such_option", expect("server ERROR packet"))

    # disconnect() with requests pending: each gets "disconnected".
    doomed = Gearman(HOST, PORT)
    doomed.echo(b"x", expect("disconnect() with a request pending"))
    doomed.disconnect()

    loop.start()
    del unknown  # held until its report came
    for label in order:
        print(f"{label}: {cases[label]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
