#!/usr/bin/env python3
"""Monitoring: poll the server's status on a timer and print a table.

    python3 eg/monitoring.py [--interval SECONDS] [--rounds N] [--all]

Every interval a repeating libev timer sends the admin command "status";
the reply (FUNCTION, TOTAL = queued + running, RUNNING, WORKERS per line) is
printed as a table with QUEUED worked out. Functions with nothing queued,
running or serving are left out unless --all. --rounds N stops after N
polls (0: run until Ctrl-C). If the server goes away the poller says so and
reconnects, rather than dying.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import sys
import time

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def parse_status(text):
    """'FUNC\\tTOTAL\\tRUNNING\\tWORKERS\\n' lines -> [(func, total, running, workers)]."""
    rows = []
    for line in text.splitlines():
        func, total, running, workers = line.split("\t")
        rows.append((func, int(total), int(running), int(workers)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=0, help="stop after N polls (0: never)")
    parser.add_argument("--all", action="store_true", help="also show idle functions")
    args = parser.parse_args()

    loop = ev.default_loop()
    # command_timeout: a server that stops answering counts as gone.
    g = Gearman(HOST, PORT, reconnect=True, command_timeout=5,
                on_error=lambda err: print(f"[server problem: {err}]", flush=True))
    rounds = 0
    asking = False

    def poll(timer, revents):
        nonlocal asking
        # While the server is away the request waits for the reconnect; do
        # not pile up one more per tick.
        if not asking:
            asking = True
            g.server_status(show)

    def show(text, err):
        nonlocal rounds, asking
        asking = False
        rounds += 1
        print(time.strftime("%H:%M:%S"), f"poll {rounds}")
        if err:
            print(f"  status failed: {err}")
        else:
            rows = [r for r in parse_status(text) if args.all or any(r[1:])]
            print(f"  {'FUNCTION':<30} {'QUEUED':>7} {'RUNNING':>7} {'WORKERS':>7}")
            for func, total, running, workers in sorted(rows):
                print(f"  {func:<30} {total - running:>7} {running:>7} {workers:>7}")
            if not rows:
                print("  (no function has jobs or workers)")
        sys.stdout.flush()
        if rounds == args.rounds:
            loop.stop()

    # after=0: the first poll right away, then one every interval.
    timer = loop.timer(0, args.interval, poll)
    timer.start()
    try:
        loop.start()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
