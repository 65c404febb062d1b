#!/usr/bin/env python3
"""Connecting over a Unix-domain socket: Gearman(path=...) / connect_unix(path).

    python3 eg/unix_socket.py /path/to/gearmand.sock

A local socket skips TCP entirely and is guarded by file permissions.
gearmand itself listens on TCP only, so put a bridge in front of it, e.g.:

    socat UNIX-LISTEN:/tmp/gearmand.sock,fork TCP:127.0.0.1:4730

Everything else (jobs, workers, admin) is the same as over TCP: here a
worker and a client, both on the socket, run one job, an echo and a version
query.
"""
import argparse
import sys

from gearman_ev import Gearman, ev


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the Unix socket to connect to")
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    failed = []

    def on_error(err):
        print(f"connection error: {err}")
        failed.append(err)
        loop.stop()

    # path= instead of host: the connect starts right away, as with TCP.
    client = Gearman(path=args.path, on_error=on_error)
    if not client.is_connected:
        # A Unix connect can fail at once (no such file): then on_error has
        # already run by the time the constructor returns.
        return 1

    # Or create it unconfigured and connect later, e.g. once a path is known.
    worker = Gearman(on_error=on_error)
    worker.connect_unix(args.path)
    worker.register_function("shout", lambda job: job.workload.upper() + b"!")
    worker.work()
    left = {"n": 3}

    def show(label):
        def cb(result, err):
            print(f"{label}: {err if err else result!r}")
            if err:
                failed.append(err)
            left["n"] -= 1
            if left["n"] == 0:
                loop.stop()
        return cb

    client.echo(b"ping", show("echo"))
    client.server_version(show("version"))
    client.submit_job("shout", "hello over a unix socket", show("job"), timeout=10)
    loop.start()
    return 1 if failed or left["n"] else 0


if __name__ == "__main__":
    sys.exit(main())
