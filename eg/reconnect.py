#!/usr/bin/env python3
"""Surviving a server restart: reconnect=True, and resubmit what was lost.

    python3 eg/reconnect.py [--jobs N] [--interval SECONDS]

A client and a worker with reconnect=True. The client submits one job every
interval until N have succeeded. Restart gearmand while it runs (e.g.
`systemctl restart gearman-job-server`) and watch:
  - both connections drop; every request in flight gets "disconnected"
    (a restarted gearmand has forgotten all its jobs), so the client submits
    that job again;
  - both reconnect by themselves (every reconnect_delay seconds);
  - the worker's functions are registered again and its work() loop resumes;
  - requests made while disconnected wait and go out once reconnected.

Server address: GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import os
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4730"))


def say(text):
    print(text, flush=True)     # flush: someone may be watching this live


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.3)
    args = parser.parse_args()
    loop = ev.default_loop()

    def connection(name):
        # 0.2 s between attempts, at most 100 of them (about 20 s), then give
        # up: on_error gets "max reconnect attempts reached".
        count = {"n": 0}

        def on_connect():
            count["n"] += 1
            say(f"{name}: connected" if count["n"] == 1 else f"{name}: reconnected")

        def on_error(err):
            say(f"{name}: {err}")
            if err == "max reconnect attempts reached":
                loop.stop()
        return Gearman(HOST, PORT, reconnect=True, reconnect_delay=0.2,
                       max_reconnect_attempts=100, on_connect=on_connect,
                       on_error=on_error,
                       on_disconnect=lambda: say(f"{name}: connection lost"))

    worker = connection("worker")
    worker.register_function("double", lambda job: str(2 * int(job.workload)))
    worker.work()

    client = connection("client")
    state = {"next": 1, "ok": 0}

    def submit(n):
        client.submit_job("double", str(n), lambda result, err: done(n, result, err),
                          timeout=10)

    def done(n, result, err):
        if err:
            say(f"job {n}: {err}; submitting it again")
            submit(n)              # waits in the queue until we are reconnected
            return
        state["ok"] += 1
        say(f"job {n}: result {result.decode()}")
        if state["ok"] == args.jobs:
            loop.stop()

    def tick(timer, revents):
        if state["next"] > args.jobs:
            timer.stop()
            return
        submit(state["next"])
        state["next"] += 1

    loop.timer(0, args.interval, tick).start()
    loop.start()
    say(f"{state['ok']} of {args.jobs} jobs done")
    return 0 if state["ok"] == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
