#!/usr/bin/env python3
"""TLS to gearmand: Gearman(host, port, ssl=context, server_hostname=...).

    python3 eg/tls.py --ca ca.pem [--server-hostname NAME]

gearmand 1.1 cannot be trusted with TLS itself (Debian 12's --ssl rejects
every handshake), so put a terminator in front of it, e.g. socat:

    socat OPENSSL-LISTEN:4731,reuseaddr,fork,cert=server.pem,key=server.key,verify=0,nodelay \\
          TCP:127.0.0.1:4730,nodelay

and point GEARMAN_HOST / GEARMAN_PORT at the terminator (4731 above).
--ca names the CA that signed the terminator's certificate (without it the
system's CAs are used: ssl=True). The certificate must match the host
connected to, or --server-hostname.

A worker and a client, both over TLS, run one job, an echo and a version
query; then a client that trusts nothing but the system CAs shows what a
failed handshake looks like.
"""
import argparse
import os
import ssl
import sys

from gearman_ev import Gearman, ev

HOST = os.environ.get("GEARMAN_HOST", "127.0.0.1")
PORT = int(os.environ.get("GEARMAN_PORT", "4731"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ca", help="PEM file of the CA that signed the server's certificate")
    parser.add_argument("--server-hostname", help="the name in the server's certificate "
                        "(default: the host connected to)")
    args = parser.parse_args()
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    if args.ca:
        # A client context checks the certificate and the host name.
        context = ssl.create_default_context(cafile=args.ca)
    else:
        context = True  # ssl.create_default_context(): the system's CAs
    failed = []

    def on_error(err):
        # Certificate and handshake failures arrive here as "tls: <reason>".
        print(f"connection error: {err}")
        failed.append(err)
        loop.stop()

    tls = dict(ssl=context, server_hostname=args.server_hostname, on_error=on_error)
    worker = Gearman(HOST, PORT, **tls)
    worker.register_function("shout", lambda job: job.workload.upper() + b"!")
    worker.work()
    client = Gearman(HOST, PORT, on_connect=lambda: print("client: TLS handshake done"), **tls)
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

    # Queued while the connection and the handshake are under way.
    client.echo(b"ping", show("echo"))
    client.server_version(show("version"))
    client.submit_job("shout", "hello over tls", show("job"), timeout=10)
    loop.start()
    if failed or left["n"]:
        return 1

    # The same terminator with a context that does not know its CA: the
    # handshake fails, the queued request is drained, on_error says why.
    if args.ca:
        def expected(err):
            print(f"untrusted: {err}")
            loop.stop()
        stranger = Gearman(HOST, PORT, ssl=True, server_hostname=args.server_hostname,
                           on_error=expected)
        stranger.echo(b"x", lambda r, e: print(f"untrusted echo: {e}"))
        loop.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
