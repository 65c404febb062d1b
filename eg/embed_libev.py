#!/usr/bin/env python3
"""Embedding: gearman_ev inside a program that has its own libev watchers.

    python3 eg/embed_libev.py [--readings N]

gearman_ev does not own the event loop; it adds a few watchers to yours. So
one ev.Loop can serve, side by side:
  - the program's own Io watcher on a pipe (a stand-in for any input: a
    device, a child process, a socket of another protocol),
  - the program's own timers (a producer writing to that pipe, a heartbeat),
  - Gearman connections (a client and a worker).
Each reading that arrives on the pipe is sent as a job; the heartbeat shows
the loop is never blocked while jobs are under way. No threads anywhere.

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
    parser.add_argument("--readings", type=int, default=5)
    args = parser.parse_args()
    loop = ev.Loop()      # any loop will do; pass it to every Gearman as loop=

    # --- the program's own watchers ---
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    stats = {"sent": 0, "read": 0, "converted": 0, "beats": 0}

    def produce(timer, revents):
        # Stands for the outside world writing into our pipe.
        celsius = 15 + 2.5 * stats["sent"]
        os.write(wfd, f"{celsius}\n".encode())
        stats["sent"] += 1
        if stats["sent"] == args.readings:
            timer.stop()

    buffered = b""

    def on_pipe(watcher, revents):
        nonlocal buffered
        buffered += os.read(rfd, 4096)
        *lines, buffered = buffered.split(b"\n")   # keep a partial last line
        for line in lines:
            stats["read"] += 1
            client.submit_job("c_to_f", line, on_converted(line.decode()), timeout=10)

    def heartbeat(timer, revents):
        stats["beats"] += 1
        print(f"heartbeat: {stats['read']} read, {stats['converted']} converted, "
              f"{client.active_count} job(s) in progress")

    pipe_watcher = loop.io(rfd, ev.EV_READ, on_pipe)
    pipe_watcher.start()
    loop.timer(0.05, 0.1, produce).start()
    loop.timer(0.15, 0.15, heartbeat).start()

    # --- Gearman, on the same loop ---
    worker = Gearman(HOST, PORT, loop=loop)
    worker.register_function("c_to_f", lambda job: f"{float(job.workload) * 9 / 5 + 32:.1f}")
    worker.work()
    client = Gearman(HOST, PORT, loop=loop)

    def on_converted(celsius):
        def cb(result, err):
            stats["converted"] += 1
            print(f"{celsius} C = {result.decode() if result else err} F")
            if stats["converted"] == args.readings:
                loop.stop()
        return cb

    guard = loop.timer(20, 0, lambda w, r: (print("timed out"), loop.stop()))
    guard.start()
    loop.start()       # one loop runs all of it
    pipe_watcher.stop()                 # stop watching an fd before closing it
    os.close(rfd)
    os.close(wfd)
    print(f"done: {stats['converted']} readings converted, {stats['beats']} heartbeats")
    return 0 if stats["converted"] == args.readings else 1


if __name__ == "__main__":
    sys.exit(main())
