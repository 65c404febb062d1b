#!/usr/bin/env python3
"""Several gearmand servers: spread jobs round-robin, fail over when one is down.

    GEARMAN_SERVERS=10.0.0.1:4730,10.0.0.2:4730 python3 eg/multi_server.py [--jobs N]

gearmand servers do not talk to each other; scaling out means each client
holds one connection per server and picks one per job, and workers connect
to every server. Here the client takes the servers in turn, skipping those
whose connection is down, and submits a job again on the next server if its
own server drops it. (Coalescing by unique key is per server: route a
given unique to one server, e.g. by hashing it, to keep that working.)

Servers: GEARMAN_SERVERS=host:port,host:port; without it, the one server of
GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import collections
import os
import sys

from gearman_ev import Gearman, ev


def servers_from_env():
    spec = os.environ.get("GEARMAN_SERVERS")
    if not spec:
        return [(os.environ.get("GEARMAN_HOST", "127.0.0.1"),
                 int(os.environ.get("GEARMAN_PORT", "4730")))]
    servers = []
    for item in spec.split(","):
        host, _, port = item.strip().rpartition(":")
        servers.append((host, int(port)))
    return servers


class RoundRobinClient:
    """One connection per server; submit_job() picks the next one that is up.

    A server counts as up from on_connect until on_disconnect or a failed
    connect (on_error); meanwhile reconnect=True keeps trying it, and it
    rejoins the rotation when it comes back. on_ready() fires once every
    server has either connected or failed once, so the first jobs are not
    all sent to whichever server answered first.
    """

    def __init__(self, servers, loop, on_ready):
        self.names = [f"{host}:{port}" for host, port in servers]
        self.up = [False] * len(servers)
        self.heard_from = set()
        self.on_ready = on_ready
        self.next = 0
        self.conns = [
            Gearman(host, port, loop=loop, reconnect=True,
                    on_connect=lambda i=i: self._set(i, True),
                    on_disconnect=lambda i=i: self._set(i, False),
                    on_error=lambda err, i=i: self._set(i, False, err))
            for i, (host, port) in enumerate(servers)]

    def _set(self, index, up, err=None):
        if err:
            print(f"{self.names[index]}: {err}")
        self.up[index] = up
        self.heard_from.add(index)
        if self.on_ready is not None and len(self.heard_from) == len(self.conns):
            ready, self.on_ready = self.on_ready, None
            ready()

    def submit_job(self, func, workload, cb, tries=None, **kwargs):
        """cb(result, err, server_name); a job its server drops ("disconnected")
        is submitted again on the next server that is up, once per server."""
        tries = len(self.conns) if tries is None else tries
        for _ in range(len(self.conns)):
            index = self.next
            self.next = (self.next + 1) % len(self.conns)
            if self.up[index]:
                break
        else:
            cb(None, "no server available", None)
            return

        def on_done(result, err):
            if err == "disconnected" and tries > 1:
                self.submit_job(func, workload, cb, tries - 1, **kwargs)
            else:
                cb(result, err, self.names[index])

        self.conns[index].submit_job(func, workload, on_done, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    args = parser.parse_args()
    servers = servers_from_env()
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    # A worker connects to every server, or jobs on one would never run.
    # (on_error: its connection problems are the client's too; it reports them.)
    workers = []
    for host, port in servers:
        w = Gearman(host, port, loop=loop, reconnect=True, on_error=lambda err: None)
        w.register_function("checksum", lambda job: str(sum(job.workload) % 256))
        w.work()
        workers.append(w)

    per_server = collections.Counter()
    outcomes = []

    def done(result, err, server):
        outcomes.append(err)
        if err:
            print(f"job failed: {err}")
        else:
            per_server[server] += 1
        if len(outcomes) == args.jobs:
            loop.stop()

    def submit_all():
        for n in range(args.jobs):
            client.submit_job("checksum", f"payload {n}", done, timeout=10)

    client = RoundRobinClient(servers, loop, on_ready=submit_all)
    loop.start()

    for server, count in sorted(per_server.items()):
        print(f"{server}: {count} jobs")
    failed = [e for e in outcomes if e]
    print(f"{args.jobs - len(failed)} of {args.jobs} jobs done; {len(servers)} server(s) given")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
