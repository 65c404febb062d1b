"""The admin commands of ``gearman-ev``: status, workers, version, maxqueue,
shutdown, ping (API.md 13; gearadmin's, on every server given).

What must stay true here:
- Every server given is asked, all at once; the output is grouped per server
  in the order given (one server: no group header, as gearadmin prints).
- ``--json`` output is one JSON document on stdout, keyed by server, with
  ``null`` for a server that failed; a failure still goes to stderr and
  makes the exit status 1.
- ``status`` reports QUEUED (waiting, not running), the same figure in the
  table, in JSON and in ``top``: gearmand's own first column is queued plus
  running.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable, TypedDict

from .. import Gearman, ev
from ._servers import CONNECT_TIMEOUT, Reply, Request, Server, UsageError, connect, gather, say

__all__ = ["run_status", "run_workers", "run_version", "run_maxqueue", "run_shutdown",
           "run_ping", "parse_status", "parse_workers"]


class StatusRow(TypedDict):
    """One function in a ``status`` reply (and in ``--json``)."""
    function: str
    queued: int
    running: int
    workers: int


class WorkerRow(TypedDict):
    """One connection in a ``workers`` reply (and in ``--json``)."""
    fd: int | str
    address: str
    client_id: str
    functions: list[str]


def parse_status(text: str) -> list[StatusRow]:
    """gearmand's ``status`` reply -> [{function, queued, running, workers}]."""
    rows: list[StatusRow] = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 4:
            continue  # not a status line; gearmand sends none such, but say nothing
        function, total, running, workers = fields
        rows.append({"function": function, "queued": int(total) - int(running),
                     "running": int(running), "workers": int(workers)})
    return rows


def parse_workers(text: str) -> list[WorkerRow]:
    """``workers`` reply lines ``FD ADDRESS CLIENT-ID : FUNC...`` ->
    [{fd, address, client_id, functions}] (client_id "-" when none was set)."""
    rows: list[WorkerRow] = []
    for line in text.splitlines():
        # Split on blanks: an IPv6 address holds ':' and a client id cannot
        # hold whitespace (gearmand refuses it), so the fields are tokens.
        fields = line.split()
        if len(fields) < 4 or fields[3] != ":":
            continue
        rows.append({"fd": int(fields[0]) if fields[0].isdigit() else fields[0],
                     "address": fields[1], "client_id": fields[2],
                     "functions": fields[4:]})
    return rows


def _servers(specs: list[str]) -> tuple[ev.Loop, list[Server]]:
    loop = ev.default_loop()
    # One-shot commands: no reconnect, and a server that takes the
    # connection but never answers is given up on too.
    servers = connect(specs, loop, command_timeout=CONNECT_TIMEOUT)
    return loop, servers


def _ask(specs: list[str], request: Request) -> tuple[list[Server], list[Reply]]:
    loop, servers = _servers(specs)
    try:
        replies = gather(servers, loop, request)
    except (TypeError, ValueError) as exc:  # refused locally, before any I/O
        raise UsageError(str(exc)) from None
    finally:
        for server in servers:
            server.g.disconnect()
    return servers, replies


def _emit(servers: list[Server], replies: list[Reply], show: Callable[[Any], str],
          as_json: Callable[[Any], object] | None = None) -> int:
    """Print each server's answer (``show(result) -> text``) grouped by
    server, or one JSON document (``as_json(result) -> value``); the errors on
    stderr. Returns the exit status."""
    failed = 0
    for server, (_, err) in zip(servers, replies):
        if err is not None:
            failed += 1
            say(f"{server.name}: {err}")
    if as_json is not None:
        doc = {server.name: (None if err is not None else as_json(result))
               for server, (result, err) in zip(servers, replies)}
        print(json.dumps(doc, indent=2))
    else:
        blocks = []
        for server, (result, err) in zip(servers, replies):
            if err is not None:
                continue
            text = show(result)
            if len(servers) > 1:
                text = f"[{server.name}]\n{text}"
            blocks.append(text)
        if blocks:
            print("\n".join(blocks), end="")
    sys.stdout.flush()
    return 1 if failed else 0


def _table(header: list[str], rows: list[list[object]]) -> str:
    """Left-align the first column, right-align numbers: a plain table."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip() + "\n")
    return "".join(lines)


def status_table(rows: list[StatusRow]) -> str:
    return _table(["FUNCTION", "QUEUED", "RUNNING", "WORKERS"],
                  [[r["function"], r["queued"], r["running"], r["workers"]]
                   for r in sorted(rows, key=lambda r: r["function"])])


def run_status(args: argparse.Namespace, specs: list[str]) -> int:
    servers, replies = _ask(specs, lambda g, cb: g.server_status(cb))
    return _emit(servers, replies, lambda text: status_table(parse_status(text)),
                 (lambda text: parse_status(text)) if args.json else None)


def run_workers(args: argparse.Namespace, specs: list[str]) -> int:
    servers, replies = _ask(specs, lambda g, cb: g.server_workers(cb))
    return _emit(servers, replies, lambda text: text,
                 (lambda text: parse_workers(text)) if args.json else None)


def _version(text: str) -> str:
    return text[3:] if text.startswith("OK ") else text  # (3.9 has no removeprefix)


def run_version(args: argparse.Namespace, specs: list[str]) -> int:
    servers, replies = _ask(specs, lambda g, cb: g.server_version(cb))
    return _emit(servers, replies, lambda text: _version(text) + "\n",
                 _version if args.json else None)


def run_maxqueue(args: argparse.Namespace, specs: list[str]) -> int:
    function = os.fsencode(args.function)  # the bytes the shell passed
    servers, replies = _ask(specs, lambda g, cb: g.maxqueue(function, args.size, cb))
    return _emit(servers, replies, lambda text: text + "\n")


def run_shutdown(args: argparse.Namespace, specs: list[str]) -> int:
    servers, replies = _ask(specs, lambda g, cb: g.shutdown_server(args.graceful, cb))
    status = _emit(servers, replies, lambda text: text + "\n")
    if any(err is not None and "UNKNOWN_COMMAND" in err for _, err in replies):
        say("gearmand 1.1.15 and later have no shutdown command: stop it as a service "
            "(systemctl stop gearman-job-server) or with a signal")
    return status


def run_ping(args: argparse.Namespace, specs: list[str]) -> int:
    """An ECHO to connect, then a timed ECHO: the round trip, connect excluded."""
    loop, servers = _servers(specs)
    try:
        first = gather(servers, loop, lambda g, cb: g.echo(b"ping", cb))
        up = [server for server, (_, err) in zip(servers, first) if err is None]
        sent: dict[Gearman, float] = {}

        def timed(g: Gearman, cb: Callable[[Any, str | None], None]) -> None:
            sent[g] = time.perf_counter()
            g.echo(b"ping", lambda result, err: cb(time.perf_counter() - sent[g], err))
        second = iter(gather(up, loop, timed))
    finally:
        for server in servers:
            server.g.disconnect()
    failed = 0
    for server, (_, err) in zip(servers, first):
        if err is None:
            seconds, err = next(second)
        if err is not None:
            failed += 1
            say(f"{server.name}: {err}")
        else:
            print(f"{server.name}: echo round trip {seconds * 1000:.3f} ms")
    sys.stdout.flush()
    return 1 if failed else 0
