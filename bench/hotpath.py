#!/usr/bin/env python3
"""The client's own CPU per request, without a server's noise.

A scripted peer on a Unix socket (in a thread) swallows the requests and
answers with pre-encoded replies, so the main thread's CPU time
(time.thread_time) is the library's work alone: submitting, encoding,
writing, reading, decoding and dispatching. Shows the minimum of several runs,
in µs per job, for background submissions and for foreground jobs (JOB_CREATED
+ WORK_COMPLETE each), with its two parts: the submit calls and their write,
then reading and dispatching the replies. Then a sync worker's job as the
session sees it (no socket: a JOB_ASSIGN fed in, the WORK_COMPLETE and the
next GRAB_JOB taken out), the part of a worker's per-job CPU that is the
library's own beyond the loop's and the kernel's. For tuning the hot path; the end-to-end figures are
benchmark.py's and vs.py's.
"""
from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gearman_ev import Gearman, ev  # noqa: E402


def response(cmd, *args):
    body = b"\0".join(args)
    return struct.pack(">4sII", b"\0RES", cmd, len(body)) + body


class Peer:
    """Accepts one connection; reads and drops requests; sends what it's told."""

    def __init__(self, path):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.conn = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.conn, _ = self.listener.accept()
        while self.conn.recv(1 << 20):
            pass

    def send(self, data):
        threading.Thread(target=self.conn.sendall, args=(data,), daemon=True).start()


def measure(g, loop, peer, n, foreground):
    handles = [b"H:x:%d" % i for i in range(n)]
    if foreground:
        replies = b"".join(response(8, h) + response(13, h, b"result") for h in handles)
    else:
        replies = b"".join(response(8, h) for h in handles)
    left = [n]

    def cb(result, err):
        left[0] -= 1
        if left[0] == 0:
            loop.stop()
    start = time.thread_time()
    submit = g.submit_job if foreground else g.submit_job_bg
    for _ in range(n):
        submit("bench", b"payload", cb)
    loop.start(ev.EVRUN_NOWAIT)  # the batched write
    sent = time.thread_time()
    peer.send(replies)
    guard = loop.timer(30, 0, lambda w, r: loop.stop())
    guard.start()
    loop.start()
    guard.stop()
    assert left[0] == 0, "replies did not all arrive"
    end = time.thread_time()
    return tuple((t / n * 1e6) for t in (end - start, sent - start, end - sent))


class MemoryDriver:
    """The driver interface (gearman_ev._driver) with no I/O at all."""

    def now(self):
        return 0.0

    def flush_soon(self):
        pass

    def write_now(self):
        pass

    def set_deadline(self, when):
        pass

    def open(self, address):
        pass

    def close(self, flush):
        pass

    def park(self, exc):
        raise exc

    def forked(self):
        pass

    def check_thread(self):
        pass


def worker_job(n):
    """µs of CPU per job for the session's part of a sync echo worker."""
    from gearman_ev._job import Job
    from gearman_ev._session import Ability, Session
    s = Session(MemoryDriver(), Job, exceptions=False, client_id=None, grab_unique=False,
                connect_timeout=0.0, command_timeout=0.0, reconnect=False,
                reconnect_delay=1.0, max_reconnect_attempts=0, high_water=0)
    s.connect(("tcp", "example", 4730))
    s.connection_made(-1)
    s.abilities[b"echo"] = Ability(lambda job: job.workload, None, False)
    s.work(None, None, False)
    s.take_output()
    assigns = [response(11, b"H:host:%d" % i, b"echo", b"payload") for i in range(n)]
    feed, take = s.feed, s.take_output
    start = time.thread_time()
    for packet in assigns:
        feed(packet)
        take()
    return (time.thread_time() - start) / n * 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=50000, help="jobs per run (default 50000)")
    ap.add_argument("--runs", type=int, default=5, help="runs; the minimum is shown")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "peer.sock")
        peer = Peer(path)
        loop = ev.Loop()
        g = Gearman(path=path, loop=loop)
        while peer.conn is None or not g.is_connected:
            loop.start(ev.EVRUN_NOWAIT)
            time.sleep(0.01)
        for name, fg in (("background submit", False), ("foreground job", True)):
            best = min(measure(g, loop, peer, args.n, fg) for _ in range(args.runs))
            print(f"{name:<20} {best[0]:6.2f} µs of client CPU per job "
                  f"({best[1]:.2f} submitting, {best[2]:.2f} taking the replies)")
        g.disconnect()
    best = min(worker_job(args.n) for _ in range(args.runs))
    print(f"{'worker job':<20} {best:6.2f} µs of worker CPU per job (the session's part)")


if __name__ == "__main__":
    main()
