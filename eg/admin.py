#!/usr/bin/env python3
"""Admin commands: ask gearmand about itself over the same connection.

    python3 eg/admin.py

gearmand also speaks a small text protocol (what `gearadmin` and
`telnet host 4730` use): version, status, workers, show jobs, maxqueue...
Any Gearman object sends them with admin(command, cb) or the helpers
server_version(), server_status(), server_workers(), maxqueue(), and they
mix freely with jobs on one connection. Multi-line replies come whole, as
one str; a reply starting with "ERR " comes as the error.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def main():
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    # Something to look at: a worker that can do "resize" (so "workers" lists
    # it), and a background job for it that stays queued, since the worker
    # never calls work(). maxqueue then caps that function's queue.
    worker = Gearman(HOST, PORT, client_id="eg-admin-worker")
    worker.can_do("resize")
    g = Gearman(HOST, PORT)
    g.submit_job_bg("resize", b"cat.png")

    def show(title):
        def cb(text, err):
            print(f"--- {title}")
            print(err if err else text.rstrip("\n"))
        return cb

    def ask(data, err):
        # The worker's echo came back, so the server has seen its CAN_DO
        # (two connections are not ordered with respect to each other).
        g.server_version(show("version"))
        g.admin("getpid", show("getpid"))
        g.server_status(show("status: FUNCTION  TOTAL  RUNNING  WORKERS"))
        g.server_workers(show("workers: FD  ADDRESS  CLIENT_ID : FUNCTIONS"))
        g.admin("prioritystatus", show("prioritystatus: FUNCTION  HIGH  NORMAL  LOW  WORKERS"))
        g.admin("show jobs", show("show jobs: HANDLE  RETRIES  IGNORED  QUEUED"))
        g.maxqueue("resize", 100, show("maxqueue resize 100"))
        g.admin("no such command", show("an unknown command"))
        # Replies keep request order: when this one is in, all above are.
        g.echo(b"", cleanup)

    def cleanup(data, err):
        # Leave the server as we found it: take our job off the queue.
        worker.grab_job(finish)

    def finish(job, err):
        if job is not None:
            job.complete()
        worker.echo(b"", lambda data, err: loop.stop())   # wait until that is sent

    worker.echo(b"", ask)
    loop.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
