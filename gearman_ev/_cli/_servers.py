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
import ssl
import sys
from collections.abc import Mapping
from typing import Any, Callable, Literal, Optional, Union, cast

from .. import Gearman, GearmanError, ev

__all__ = ["DEFAULT_SERVER", "UsageError", "Server", "parse_server", "server_specs",
           "connect", "gather", "say"]

#: What parse_server makes of a spec.
Address = Union[tuple[Literal["tcp"], str, int], tuple[Literal["unix"], str]]

#: A request on one server for gather(): request(g, cb) sends it, and cb(result, err)
#: is called once with the answer.
Request = Callable[[Gearman, Callable[[Any, Optional[str]], None]], object]

#: One server's answer in gather(): (result, err).
Reply = tuple[Any, Optional[str]]

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


def parse_server(spec: str) -> Address:
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


def server_specs(options: list[str] | None,
                 environ: Mapping[str, str] = os.environ) -> list[str]:
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

    # The connection: set by connect() as soon as the Server exists (its
    # callbacks need the Server first), so every command sees a Gearman.
    g: Gearman

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: str | None = None

    def why(self, err: str) -> str:
        """A request's err, with the connection's reason for "disconnected"."""
        if err == "disconnected" and self.error:
            return self.error
        return err


#: TLS options every connection of this run gets (``set_tls``).
_tls_options: dict[str, Any] = {}


def set_tls(enabled: bool, cafile: str | None, server_hostname: str | None) -> None:
    """TLS for every connection this run makes: ``--ssl``, ``--ssl-ca``,
    ``--server-hostname``."""
    _tls_options.clear()
    if not (enabled or cafile or server_hostname):
        return
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ssl-ca {cafile}: {exc}") from None
    _tls_options["ssl"] = context
    if server_hostname:
        _tls_options["server_hostname"] = server_hostname


def connect(specs: list[str], loop: ev.Loop, *,
            on_error: Callable[[Server, str], object] | None = None,
            on_connect: Callable[[Server], object] | None = None,
            on_disconnect: Callable[[Server], object] | None = None,
            **options: Any) -> list[Server]:
    """One connection per server, in the given order: each ``Gearman`` gets
    ``options`` (API.md 2) and ``connect_timeout`` unless given.
    ``on_error(server, err)``, ``on_connect(server)`` and
    ``on_disconnect(server)`` are told as they happen.
    """
    options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    options.update(_tls_options)
    servers = []
    for spec in specs:
        server = Server(spec)

        def errored(err: str, server: Server = server) -> None:
            server.error = err
            if on_error is not None:
                on_error(server, err)

        def connected(server: Server = server) -> None:
            server.error = None
            if on_connect is not None:
                on_connect(server)

        def disconnected(server: Server = server) -> None:
            if on_disconnect is not None:
                on_disconnect(server)

        hooks: dict[str, Any] = dict(loop=loop, on_error=errored, on_connect=connected,
                                     on_disconnect=disconnected)
        address = parse_server(spec)
        if address[0] == "unix":
            server.g = Gearman(path=address[1], **hooks, **options)
        else:
            server.g = Gearman(address[1], address[2], **hooks, **options)
        servers.append(server)
    return servers


def gather(servers: list[Server], loop: ev.Loop, request: Request) -> list[Reply]:
    """``request(g, cb)`` on every server at once; runs the loop until each has
    answered and returns their ``(result, err)`` in server order, with
    "disconnected" replaced by the connection's own reason."""
    replies: list[Reply | None] = [None] * len(servers)
    left = [len(servers)]

    def answer(index: int, result: Any, err: str | None) -> None:
        if replies[index] is None:
            replies[index] = (result, err)
            left[0] -= 1
            if left[0] == 0:
                loop.stop()

    for index, server in enumerate(servers):
        def cb(result: Any, err: str | None, index: int = index) -> None:
            answer(index, result, err)

        try:
            request(server.g, cb)
        except GearmanError as exc:
            answer(index, None, str(exc))
    if left[0]:
        loop.start()
    answered = cast("list[Reply]", replies)  # every server has answered now
    return [(result, None if err is None else server.why(err))
            for server, (result, err) in zip(servers, answered)]
