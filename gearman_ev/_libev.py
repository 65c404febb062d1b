"""The libev driver: one session's socket on a ``gearman_ev.ev`` loop.

It owns the socket, name resolution (off the loop, see ``_resolve``) and the
non-blocking connect, the read and write watchers, the before-poll flush and
the session's one timer. C reads and writes the socket (gm_conn_read /
gm_conn_write into the session's codec): one readable event costs one
crossing into Python, however many packets it brings. ``_tls.TLSDriver``
extends it with TLS, where Python moves the bytes instead.

What must stay true:
- Watchers hold the driver weakly and the driver holds its session weakly:
  an object the program no longer references is collected, and its
  finalizer drains it.
- The session is called back only from watcher callbacks (see ``_driver``).
- A host name lookup in flight has the Async watcher ``_resolved`` active,
  so ``loop.start()`` waits for it; ``close()`` stops it, and an answer
  that comes after that is never acted on.
"""
from __future__ import annotations

import errno
import os
import socket
import threading
import weakref
from typing import Any, Callable, List, Optional, Tuple

from . import _codec, _resolve, errors, ev
from ._ffi import lib

__all__ = ["LibevDriver", "apply_keepalive"]

_UNIX_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_read = lib.gm_conn_read
_write = lib.gm_conn_write
_get_ident = threading.get_ident


def _weak_method(obj: Any, func: Callable[..., Any]) -> Callable[[Any, int], None]:
    """A watcher callback that calls func(obj, ...) without keeping obj alive."""
    ref = weakref.ref(obj)

    def callback(watcher: Any, revents: int) -> None:
        target = ref()
        if target is None:
            watcher.stop()
        else:
            func(target, watcher, revents)
    return callback


def apply_keepalive(sock: socket.socket, seconds: float) -> None:
    """TCP keepalive on (idle time ``seconds``) or off (0); also the asyncio
    driver's. A Unix socket is left alone."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    on = seconds > 0
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if on else 0)
    if on and hasattr(socket, "TCP_KEEPIDLE"):
        # The kernel counts whole seconds: round, but never down to "off".
        secs = max(1, round(seconds))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, secs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, secs)


class LibevDriver:
    """Drives one session on an ``ev.Loop`` (see ``_driver.Driver``)."""

    def __init__(self, loop: ev.Loop, priority: int, keepalive: float) -> None:
        self._loop = loop
        self._session: Callable[[], Any] = lambda: None
        self._sock: Optional[socket.socket] = None
        self._connecting = False
        self._addrinfos: List[_resolve.AddrInfo] = []
        self._failure: Optional[str] = None  # a connect failure to report from the loop
        self._lookup: Optional[_resolve.Lookup] = None  # the last host name lookup started
        # Inside a readable event, requests are written when the event ends
        # (one send, no before-poll watcher round); -1: not in one.
        self._event_depth = -1
        self.keepalive = keepalive
        # type(self): a subclass (the TLS driver) brings its own handlers.
        cls = type(self)
        self._rio = ev.Io(0, ev.EV_READ, loop, _weak_method(self, cls._on_readable),
                          priority=priority)
        self._wio = ev.Io(0, ev.EV_WRITE, loop, _weak_method(self, cls._on_writable),
                          priority=priority)
        # Requests queued during a loop iteration are written just before the
        # loop polls: one send per iteration, no epoll_ctl round for the
        # write watcher unless the kernel pushes back.
        self._flusher = ev.Prepare(loop, _weak_method(self, cls._on_prepare),
                                   priority=priority)
        self._timer = ev.Timer(0, 0, loop, _weak_method(self, cls._on_timer),
                               priority=priority)
        self._soon = ev.Timer(0, 0, loop, _weak_method(self, cls._on_soon),
                              priority=priority)
        # Active while a lookup runs: the resolver thread sends it.
        self._resolved = ev.Async(loop, _weak_method(self, cls._on_resolved),
                                  priority=priority)

    def attach(self, session: Any) -> None:
        self._session = weakref.ref(session)

    # ===== Properties the front-end exposes =====

    def watchers(self) -> Tuple[ev.Watcher, ...]:
        return (self._rio, self._wio, self._flusher, self._timer, self._soon, self._resolved)

    def set_priority(self, value: int) -> None:
        for w in self.watchers():
            was_active = w.active
            if was_active:
                w.stop()
            w.priority = value
            if was_active:
                w.start()
        lookup = self._lookup
        if self._resolved.active and lookup is not None and lookup.done:
            self._resolved.send()  # its send may have landed while it was stopped

    def set_keepalive(self, seconds: float) -> None:
        self.keepalive = seconds
        if self._sock is not None:
            self._apply_keepalive(self._sock)

    def _apply_keepalive(self, sock: socket.socket) -> None:
        apply_keepalive(sock, self.keepalive)

    # ===== Driver interface =====

    def now(self) -> float:
        return self._loop.now()

    def flush_soon(self) -> None:
        if self._event_depth == self._loop._depth:
            return  # _on_readable writes when the event ends
        if self._flusher._handle is None:  # not started: a Python check, no C call
            self._flusher.start()

    def set_deadline(self, when: float) -> None:
        timer = self._timer
        timer.stop()
        if when:
            timer.set(max(0.0, when - self._loop.now()), 0)
            timer.start()

    def park(self, exc: BaseException) -> None:
        self._loop._park(exc)

    def check_thread(self) -> None:
        owner = self._loop._running_thread
        if owner is not None and owner != _get_ident():
            raise errors.GearmanError(errors.WRONG_THREAD)

    def open(self, address: Tuple[Any, ...]) -> None:
        self._failure = None
        if address[0] == "unix":
            path = address[1]
            if len(path) > _UNIX_PATH_MAX:
                self._fail_soon(errors.UNIX_PATH_TOO_LONG)
                return
            self._addrinfos = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, path)]
        else:
            _, host, port = address
            infos = _resolve.numeric(host, port)
            if infos is None:
                self._resolve(host, port)
                return
            self._addrinfos = infos
        self._try_next_address(None)

    def _resolve(self, host: str, port: int) -> None:
        """Look the name up in a thread; ``_on_resolved`` goes on from there."""
        self._resolved.start()
        lookup = self._lookup
        if lookup is not None and lookup.host == host and lookup.port == port:
            # A lookup given up on (a connect timeout, a disconnect) still
            # runs: a reconnect waits for it rather than start another
            # thread, so a hanging resolver costs one thread, not one per try.
            if lookup.done:
                self._resolved.send()  # its own send hit a stopped watcher
            return
        self._lookup = _resolve.Lookup(host, port, self._resolved)

    def _on_resolved(self, watcher: Any, revents: int) -> None:
        lookup = self._lookup
        if lookup is None or not lookup.done:
            return  # a lookup this driver gave up on sent it
        watcher.stop()
        self._lookup = None  # answered: the next connect asks again
        session = self._session()
        if session is None:
            return
        if lookup.error is not None:
            session.connect_failed(lookup.error)
            return
        self._addrinfos = list(lookup.infos)
        self._try_next_address(None)

    def close(self, flush: bool) -> None:
        for w in (self._rio, self._wio, self._flusher, self._soon, self._resolved):
            w.stop()
        session = self._session()
        if session is not None:
            session.flush_asked = False
        self._addrinfos = []
        sock, self._sock = self._sock, None
        if sock is not None:
            if flush and not self._connecting:
                # What was already queued (a job's result, say) goes out if
                # the kernel takes it now; nothing waits for it.
                session = self._session()
                if session is not None and session.c != _codec.NULL:
                    _write(session.c)
            sock.close()
        self._connecting = False

    def forked(self) -> None:
        for w in self.watchers():
            w.stop()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.detach()  # the fd is the parent's connection too: leave it open

    # ===== Connecting =====

    def _fail_soon(self, err: str) -> None:
        """Report a connect failure from the loop, like every other outcome
        of a connect: never inside connect() or the constructor."""
        self._failure = err
        self._soon.stop()
        self._soon.set(0, 0)
        self._soon.start()

    def _on_soon(self, watcher: Any, revents: int) -> None:
        session = self._session()
        err, self._failure = self._failure, None
        if session is not None and err is not None:
            session.connect_failed(err)

    def _try_next_address(self, last_error: Optional[int]) -> None:
        """Try the addresses getaddrinfo gave, in order, until one connects."""
        while self._addrinfos:
            family, type_, proto, addr = self._addrinfos.pop(0)
            try:
                sock = socket.socket(family, type_, proto)
            except OSError as exc:
                last_error = exc.errno
                continue
            sock.setblocking(False)
            if family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._apply_keepalive(sock)
            rc = sock.connect_ex(addr)
            # Even an immediate success (a Unix socket) completes through the
            # loop, so that on_connect never runs inside the constructor.
            if rc in (0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                self._sock = sock
                self._connecting = True
                self._wio.stop()
                self._wio.set(sock, ev.EV_WRITE)
                self._wio.start()
                return
            sock.close()
            last_error = rc
        self._fail_soon(f"connect: {os.strerror(last_error or errno.ECONNREFUSED)}")

    def _connect_done(self) -> None:
        sock = self._sock
        assert sock is not None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._wio.stop()
        if err:
            sock.close()
            self._sock = None
            self._connecting = False
            self._try_next_address(err)
            return
        self._connecting = False
        self._transport_up(sock)

    def _transport_up(self, sock: socket.socket) -> None:
        """The socket is connected: C reads and writes it from now on."""
        session = self._session()
        if session is None:
            return
        fd = sock.fileno()
        self._rio.stop()
        self._rio.set(fd, ev.EV_READ)
        self._rio.start()
        self._wio.set(fd, ev.EV_WRITE)
        session.connection_made(fd)

    # ===== Watchers =====

    def _on_readable(self, watcher: Any, revents: int) -> None:
        session = self._session()
        if session is None:
            watcher.stop()
            return
        c = session.c
        rc = _read(c)
        epoch = session.epoch
        # A callback may run a nested loop (its depth differs): then requests
        # go out through the before-poll watcher as usual.
        outer, self._event_depth = self._event_depth, self._loop._depth
        try:
            session.receive()  # the packets that arrived, even before an EOF
        finally:
            self._event_depth = outer
        if rc < 0 and session.epoch == epoch:
            session.connection_lost(_codec.message(rc, c.err_no))
        if session.flush_asked:
            # Stopping a Prepare that never started costs three C calls: a
            # worker's every job came through here (issue 17).
            if self._flusher._handle is not None:
                self._flusher.stop()
            self._flush(session)  # checks that there is a socket to write

    def _on_prepare(self, watcher: Any, revents: int) -> None:
        watcher.stop()
        session = self._session()
        if session is not None:
            self._flush(session)

    def write_now(self) -> None:
        """An early write (a burst as it grows): what the kernel takes now.
        It runs inside the caller's submit, so a failure is not reported
        here: the session's flush is still asked for, and the loop's flush
        meets the error again and reports it (see ``_driver``)."""
        session = self._session()
        if session is None or self._sock is None or self._connecting \
                or self._wio._handle is not None:
            return
        left = _write(session.c)
        if left < 0:
            return
        if left > 0:
            self._wio.start()  # the kernel took part: the rest when writable
        if left or session._unsent:
            session.written(left)

    def _flush(self, session: Any) -> None:
        """Write what the session queued: one send, the rest when writable."""
        session.flush_asked = False
        if self._sock is None or self._connecting or self._wio._handle is not None:
            return  # not connected yet, or already waiting for writability
        left = _write(session.c)
        if left > 0:
            self._wio.start()  # the kernel took part: the rest when writable
        elif left < 0:
            session.connection_lost(_codec.message(left, session.c.err_no))
            return
        if left or session._unsent:
            session.written(left)

    def _on_writable(self, watcher: Any, revents: int) -> None:
        if self._connecting:
            self._connect_done()
            return
        session = self._session()
        if session is None:
            watcher.stop()
            return
        left = _write(session.c)
        if left == 0:
            watcher.stop()
        elif left < 0:
            session.connection_lost(_codec.message(left, session.c.err_no))
            return
        session.written(left)

    def _on_timer(self, watcher: Any, revents: int) -> None:
        session = self._session()
        if session is not None:
            session.on_deadline()
