#!/usr/bin/env python3
"""Several gearmand servers as one: GearmanPool spreads jobs and rides out a dead one.

    GEARMAN_SERVERS=10.0.0.1:4730,10.0.0.2:4730 python3 eg/multi_server.py [--jobs N]

gearmand servers do not talk to each other: scaling out means every client
and every worker holds one connection per server. GearmanPool does that. A
job with a unique key always goes to the same server (rendezvous hashing),
so coalescing still works; a job without one goes to the next connected
server in turn. A server that is down is skipped and tried again every
second (reconnect is on in a pool); a request it never got is sent to
another one.

Servers: GEARMAN_SERVERS=host:port,host:port; without it, the one server of
GEARMAN_HOST / GEARMAN_PORT (default 127.0.0.1:4730).
"""
import argparse
import collections
import os
import sys

from gearman_ev import GearmanPool, ev


def servers_from_env():
    spec = os.environ.get("GEARMAN_SERVERS")
    if spec:
        return [item.strip() for item in spec.split(",")]
    return [f"{os.environ.get('GEARMAN_HOST', '127.0.0.1')}:"
            f"{os.environ.get('GEARMAN_PORT', '4730')}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    args = parser.parse_args()
    servers = servers_from_env()
    loop = ev.default_loop()
    loop.timer(20, 0, lambda w, r: (print("timed out"), sys.exit(1))).start()

    # The worker: one pool, registered and grabbing on every server. A real
    # worker calls worker.register_function("checksum", fn) once for all of
    # them; here each server's connection gets a callback of its own, so
    # that every result says where it ran.
    worker = GearmanPool(servers, loop=loop, on_error=lambda err: None)
    for name, conn in zip(worker.server_names, worker.servers):
        conn.register_function(
            "checksum", lambda job, name=name: f"{name} {sum(job.workload) % 256}")
    worker.work()

    # The client: jobs without a unique key go round the connected servers.
    client = GearmanPool(servers, loop=loop)
    for name, conn in zip(client.server_names, client.servers):
        conn.on_error = lambda err, name=name: print(f"{name}: {err}")

    per_server = collections.Counter()
    outcomes = []

    def done(result, err):
        outcomes.append(err)
        if err:
            print(f"job failed: {err}")
        else:
            per_server[result.decode().split()[0]] += 1
        if len(outcomes) == args.jobs:
            loop.stop()

    def submit_all(versions, err):
        # Every server has answered or failed once: the jobs now spread over
        # all that are up (submitted earlier, they would all wait for the
        # first server to connect, and go there).
        up = [name for name, version in versions.items() if version]
        print(f"{len(up)} of {len(versions)} server(s) up")
        for n in range(args.jobs):
            client.submit_job("checksum", f"payload {n}", done, timeout=10)

    client.server_version(submit_all)
    loop.start()

    for server, count in sorted(per_server.items()):
        print(f"{server}: {count} jobs")
    failed = [e for e in outcomes if e]
    print(f"{args.jobs - len(failed)} of {args.jobs} jobs done; {len(servers)} server(s) given")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
