"""Host names resolved off the loop (API.md 15).

``numeric(host, port)`` answers at once for an IP literal; any other name
goes to a ``Lookup``: ``socket.getaddrinfo`` in a daemon thread of its own,
whose result the loop's thread picks up in the callback of the owner's
``ev.Async`` watcher. The thread runs the same getaddrinfo the library
called inline before, so the same NSS sources (/etc/hosts, DNS, mDNS, ...),
the same address order (RFC 6724, IPv6 first where it is preferred) and the
same ``gai_strerror`` texts in ``"getaddrinfo: <reason>"``.

Why a thread rather than c-ares (pycares): c-ares speaks DNS itself and
skips NSS (no nss-myhostname, nss-mdns, LDAP, container or systemd
resolvers), orders addresses its own way and has its own error texts, so
names that resolve today could stop resolving; it would also be a second
compiled dependency whose channel must be rebuilt after fork. A lookup runs
once per connect attempt; a thread costs ~0.08 ms to start and end
(measured 2026-11-30), more than an /etc/hosts answer (~0.02 ms) but little
next to a DNS round trip, and IP literals need none.

What must stay true:
- The loop never waits for a name: ``numeric`` passes AI_NUMERICHOST, which
  never consults a resolver; everything else runs in the thread.
- The thread touches only its ``Lookup``'s fields and ``Async.send()``
  (libev's one thread-safe call). It sets the result before ``done``, and
  ``done`` before it sends.
- Nothing is called back for a lookup its owner gave up on (disconnect,
  connect timeout, garbage collection): the owner stops its Async, and its
  callback acts only on the lookup it is waiting for, once ``done``.
- No state outlives a fork: each lookup has its own thread and nothing is
  shared between lookups, so a child never waits on a thread it did not
  inherit. (One thing is glibc's, not ours: a child forked while a lookup
  thread of the parent waited for DNS may get that thread's cached stack,
  and with it its resolver socket, for its own first lookup thread; that
  lookup can then wait for the resolver's timeout, or fail. The next
  thread's socket is its own, so ``reconnect`` gets past it.)
"""
from __future__ import annotations

import socket
import threading
from typing import Any, List, Optional, Tuple

from . import ev

__all__ = ["Lookup", "numeric", "AddrInfo"]

#: (family, type, proto, sockaddr), in the order getaddrinfo gave them.
AddrInfo = Tuple[int, int, int, Any]


def _infos(raw: List[Tuple[Any, ...]]) -> List[AddrInfo]:
    return [(fam, typ, proto, addr) for fam, typ, proto, _, addr in raw]


def numeric(host: str, port: int) -> Optional[List[AddrInfo]]:
    """The addresses of an IPv4 or IPv6 literal, without any lookup; None
    for a name that needs a resolver."""
    try:
        raw = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                 flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return _infos(raw)


class Lookup:
    """One getaddrinfo(host, port) running in a daemon thread.

    When it ends, ``infos`` (a non-empty list) or ``error`` (an on_error
    string) is set, then ``done``, then ``wake.send()`` wakes the loop. Read
    the fields from the loop's thread only after seeing ``done``.
    """

    __slots__ = ("host", "port", "infos", "error", "done", "_wake")

    def __init__(self, host: str, port: int, wake: ev.Async) -> None:
        self.host = host
        self.port = port
        self.infos: List[AddrInfo] = []
        self.error: Optional[str] = None
        self.done = False
        self._wake = wake
        thread = threading.Thread(target=self._run, name=f"gearman_ev resolve {host}",
                                  daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had: a failed lookup, as any other
            self.error = f"getaddrinfo: {exc}"
            self.done = True
            wake.send()  # from the loop's thread: the callback runs next iteration

    def _run(self) -> None:
        error = None
        infos: List[AddrInfo] = []
        try:
            infos = _infos(socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM))
        except socket.gaierror as exc:
            error = f"getaddrinfo: {exc.strerror}"
        except (OSError, UnicodeError, ValueError) as exc:  # e.g. a name IDNA cannot encode
            error = f"getaddrinfo: {exc}"
        if error is None and not infos:
            error = "getaddrinfo: no address"
        self.infos = infos
        self.error = error
        self.done = True
        try:
            self._wake.send()
        except ev.Error:
            pass  # the loop is gone: no one is waiting
