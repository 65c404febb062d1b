#!/usr/bin/env python3
"""TLS against plain TCP: the client's jobs/s and CPU per job, pipelined and
sequential (API.md 15).

Starts its own gearmand (-t 1) and an echo worker (plain TCP, in a child
process), and two socat relays in front of gearmand: one plain
(TCP-LISTEN) and one TLS (OPENSSL-LISTEN, a throwaway CA and certificate
made with the openssl command, as the tests do). The client runs three
ways: straight to gearmand, through the plain relay (the same extra hop as
TLS, without the crypto), and over TLS through the TLS relay. Needs socat
and openssl (.ci/install-deps). Every measurement is bounded by
benchmark.py's wall-clock limit.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from benchmark import pipelined, sequential, worker_main  # noqa: E402

from gearman_ev import Gearman, ev  # noqa: E402
from gearman_ev._gearmand import LocalGearmand, free_port  # noqa: E402
from tests.fix_tls import TLSTerminator, make_ca, make_server_cert  # noqa: E402


def plain_relay(target_host: str, target_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("socat") or "socat",
                             f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay",
                             f"TCP:{target_host}:{target_port},nodelay"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit("socat relay did not start")
            time.sleep(0.02)


def measure(host, port, ssl_ctx, args):
    loop = ev.Loop()
    g = Gearman(host, port, loop=loop, ssl=ssl_ctx,
                server_hostname="localhost" if ssl_ctx else None)
    payload = b"x" * args.size
    sequential(g, loop, 200, payload)  # connected, handshaken and warm
    rows = {"pipelined": [pipelined(g, loop, args.n, payload)],
            "sequential": [sequential(g, loop, args.seq, payload)]}
    g.disconnect()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="pipelined jobs per run (default 20000)")
    ap.add_argument("--seq", type=int, default=2000, help="sequential round trips (default 2000)")
    ap.add_argument("--runs", type=int, default=5, help="rounds of each; the median is shown")
    ap.add_argument("--size", type=int, default=10, help="payload bytes (default 10)")
    args = ap.parse_args(argv)

    server = LocalGearmand(threads=1).start()
    relay = term = worker = None
    with tempfile.TemporaryDirectory(prefix="gearman_ev-tls-") as tmp:
        d = Path(tmp)
        ca, ca_key = make_ca(d, "ca")
        cert, key = make_server_cert(d, ca, ca_key)
        pki = SimpleNamespace(ca=ca, cert=cert, key=key)
        try:
            relay, relay_port = plain_relay(server.host, server.port)
            term = TLSTerminator(pki, server.host, server.port).start()
            ready = multiprocessing.Event()
            worker = multiprocessing.Process(target=worker_main,
                                             args=(server.host, server.port, ready), daemon=True)
            worker.start()
            if not ready.wait(10):
                raise SystemExit("worker did not connect")
            print(f"gearman_ev client, payload {args.size} bytes, {args.n} pipelined / "
                  f"{args.seq} sequential jobs, median of {args.runs}; echo worker on "
                  f"plain TCP; gearmand -t 1")
            ways = (("plain, direct", server.host, server.port, None),
                    ("plain, socat relay", "127.0.0.1", relay_port, None),
                    ("TLS, socat terminator", term.host, term.port, term.context()))
            # Rounds alternate between the three ways, so that other load on
            # the machine spreads over all of them alike.
            results = {label: {"pipelined": [], "sequential": []} for label, *_ in ways}
            for _ in range(args.runs):
                for label, host, port, ctx in ways:
                    for workload, samples in measure(host, port, ctx, args).items():
                        results[label][workload] += samples
            for workload in ("pipelined", "sequential"):
                print(workload)
                medians = {}
                for label, *_ in ways:
                    samples = results[label][workload]
                    rate = statistics.median(r for r, _ in samples)
                    cpu = statistics.median(c for _, c in samples)
                    medians[label] = rate, cpu
                    print(f"  {label:<24}{rate:>9,.0f} jobs/s  client CPU {cpu * 1e6:6.1f} µs/job")
                (relay_rate, relay_cpu), (tls_rate, tls_cpu) = (
                    medians["plain, socat relay"], medians["TLS, socat terminator"])
                print(f"  TLS / plain relay: {tls_rate / relay_rate:.2f}x jobs/s, "
                      f"{(tls_cpu - relay_cpu) * 1e6:+.1f} µs client CPU per job")
        finally:
            if worker is not None and worker.is_alive():
                worker.terminate()
                worker.join(5)
            if term is not None:
                term.stop()
            if relay is not None:
                relay.terminate()
                relay.wait(5)
            server.close()


if __name__ == "__main__":
    main()
