"""The small interface between a session (``_session.Session``: protocol
state, no I/O) and the loop that moves its bytes. ``_libev.LibevDriver``
implements it on ``gearman_ev.ev``; an asyncio driver implements it on an
asyncio transport.

What must stay true:
- The session calls the driver; the driver calls the session back only
  from the loop (an event, a timer, a call-soon), never from inside a call
  the session made: ``open()`` reports failure later, ``close()`` reports
  nothing at all.
- The driver owns the socket (or transport) and the watchers; the session
  owns the codec (``session.c``) whose buffers the driver reads into and
  writes from.

Calls a session makes (the driver's side):
    now() -> float             the loop's time in seconds
    flush_soon()               write what the codec holds before the loop polls
    write_now()                write what the transport takes at once, now (a
                               burst's early part; the rest as flush_soon). It
                               runs inside a user's submit: it reports no
                               failure, the loop's flush does
    set_deadline(when)         arm the one timer for loop time ``when`` (0: disarm);
                               when it fires, call ``session.on_deadline()``
    open(address)              start connecting to ("tcp", host, port) or
                               ("unix", path); later ``session.connection_made(fd)``
                               or ``session.connect_failed(err)``
    close(flush)               stop watching and close the socket; with
                               ``flush``, first write what the kernel takes now
    park(exc)                  KeyboardInterrupt/SystemExit from user code: raise
                               it from the loop once the current event finished
    forked()                   in a forked child: drop the socket without
                               closing or writing it, stop every watcher
    check_thread()             raise GearmanError("wrong thread") if called
                               from a thread other than the running loop's

Calls a driver makes (the session's side): ``connection_made(fd)``,
``connect_failed(err)``, ``receive()`` after bytes reached the codec,
``connection_lost(err)``, ``written(left)`` after a write, ``on_deadline()``.
"""
from __future__ import annotations

from typing import Any, Protocol, Tuple

__all__ = ["Driver"]


class Driver(Protocol):
    """What a session needs from a loop (see the module docstring)."""

    def now(self) -> float: ...

    def flush_soon(self) -> None: ...

    def write_now(self) -> None: ...

    def set_deadline(self, when: float) -> None: ...

    def open(self, address: Tuple[Any, ...]) -> None: ...

    def close(self, flush: bool) -> None: ...

    def park(self, exc: BaseException) -> None: ...

    def forked(self) -> None: ...

    def check_thread(self) -> None: ...
