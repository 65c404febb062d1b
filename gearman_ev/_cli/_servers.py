"""Which gearmand servers a command talks to, and its connections to them.

What must stay true here:
- Every command gets its connections from ``connect()``, the one place that
  knows how a server is reached. When GearmanPool (API.md 11) lands,
  ``connect()`` is what changes; the commands keep their shape.
- Server specs are checked before anything connects: a bad one is a usage
  error (exit 2), never a connection error.
- A request's "disconnected" is reported with the reason the connection gave
  (``on_error`` fires after the callbacks it fails, so the reason is looked up
  once the loop has returned, never inside the callback).
"""
from __future__ import annotations

import os
import sys

from .. import Gearman, GearmanError

__all__ = ["DEFAULT_SERVER", "UsageError", "Server", "parse_server", "server_specs",
           "connect", "gather", "say"]

DEFAULT_SERVER = "127.0.0.1:4730"
DEFAULT_PORT = 4730

#: Seconds a connect may take before the command gives up on that server: a
#: black-holed address must not hang a shell script (gearmand answers a
#: connect at once when it is up).
CONNECT_TIMEOUT = 10.0


class UsageError(Exception):
    """Bad command line or arguments: exit status 2 with the usage line."""


def say(message: str) -> None:
    """One line on stderr, prefixed with the program's name."""
    print(f"gearman-ev: {message}", file=sys.stderr, flush=True)


def parse_server(spec: str) -> tuple:
    """``"host:port"``, ``"host"`` (port 4730), ``"[v6addr]:port"``, a bare
    IPv6 literal, or ``"unix:/path"`` -> ``("tcp", host, port)`` or
    ``("unix", path)``. Raises UsageError."""
    text = spec.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise UsageError(f"bad server {spec!r}: unix: needs a path")
        return ("unix", path)
    port = str(DEFAULT_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"bad server {spec!r}: expected [v6addr]:port")
        if rest:
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text  # a name, an IPv4 address, or a bare IPv6 literal
    if not host:
        raise UsageError(f"bad server {spec!r}: no host")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"bad server {spec!r}: port must be 1-65535")
    return ("tcp", host, int(port))


def server_specs(options: list[str] | None, environ=os.environ) -> list[str]:
    """``-s`` values (each may also be comma-separated), else GEARMAN_SERVERS,
    else 127.0.0.1:4730; each one checked (UsageError)."""
    if options:
        raw = ",".join(options)
    else:
        raw = environ.get("GEARMAN_SERVERS", "").strip() or DEFAULT_SERVER
    specs = [item.strip() for item in raw.split(",") if item.strip()]
    if not specs:
        raise UsageError("no server given")
    for spec in specs:
        parse_server(spec)
    return specs


class Server:
    """One server as a command sees it: its name (the spec as given), its
    connection, and the last connection-level error (None while all is well)."""

    __slots__ = ("name", "g", "error", "__weakref__")

    def __init__(self, name: str):
        self.name = name
        self.g: Gearman | None = None
        self.error: str | None = None

    def why(self, err: str) -> str:
        """A request's err, with the connection's reason for "disconnected"."""
        if err == "disconnected" and self.error:
            return self.error
        return err


def connect(specs: list[str], loop, *, on_error=None, on_connect=None, on_disconnect=None,
            **options) -> list[Server]:
    """One connection per server, in the given order: each ``Gearman`` gets
    ``options`` (API.md 2) and ``connect_timeout`` unless given.
    ``on_error(server, err)``, ``on_connect(server)`` and
    ``on_disconnect(server)`` are told as they happen.
    """
    options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    servers = []
    for spec in specs:
        server = Server(spec)

        def errored(err, server=server):
            server.error = err
            if on_error is not None:
                on_error(server, err)

        def connected(server=server):
            server.error = None
            if on_connect is not None:
                on_connect(server)

        def disconnected(server=server):
            if on_disconnect is not None:
                on_disconnect(server)

        hooks = dict(loop=loop, on_error=errored, on_connect=connected,
                     on_disconnect=disconnected)
        kind, *where = parse_server(spec)
        if kind == "unix":
            server.g = Gearman(path=where[0], **hooks, **options)
        else:
            server.g = Gearman(where[0], where[1], **hooks, **options)
        servers.append(server)
    return servers


def gather(servers: list[Server], loop, request) -> list[tuple]:
    """``request(g, cb)`` on every server at once; runs the loop until each has
    answered and returns their ``(result, err)`` in server order, with
    "disconnected" replaced by the connection's own reason."""
    replies: list = [None] * len(servers)
    left = [len(servers)]

    def answer(index, result, err):
        if replies[index] is None:
            replies[index] = (result, err)
            left[0] -= 1
            if left[0] == 0:
                loop.stop()

    for index, server in enumerate(servers):
        try:
            request(server.g, lambda result, err, index=index: answer(index, result, err))
        except GearmanError as exc:
            answer(index, None, str(exc))
    if left[0]:
        loop.start()
    return [(result, None if err is None else server.why(err))
            for server, (result, err) in zip(servers, replies)]
