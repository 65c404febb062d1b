"""TLS on the libev path (API.md 15): ``TLSDriver`` is the libev driver with
an ``ssl.SSLObject`` between the socket and the session's codec.

The socket's bytes go through two memory BIOs: Python recv()s ciphertext
into the incoming BIO, reads plaintext out of the SSLObject and hands it to
``Session.feed``; requests leave the codec's write buffer (a view, no copy)
into ``SSLObject.write``, and the outgoing BIO's ciphertext goes to send().
The session sees exactly what it sees over plain TCP.

Why memory BIOs rather than OpenSSL in the C core: the context is the
caller's ``ssl.SSLContext`` (CA files, client certificates, ciphers,
verification flags), which Python does not hand to C as an SSL_CTX, so the
C route would need its own configuration API, a libssl link and its own
handshake and error handling. What it would save was measured on
2026-11-30 against a prototype (SSL_read/SSL_write on the socket straight
into the codec), through the same socat terminator, 10 alternating rounds
on a shared 2-core machine: client CPU per job, best round, 6.2 us here
against 4.0 us in C pipelined and 31.3 against 30.1 us sequential, with the
medians within the noise (10.9/10.7 and 40.1/45.1 us). That is a few
microseconds per loop iteration, not per job, and not worth a second TLS
stack.

What must stay true:
- The handshake runs from the loop and is part of connecting: the session
  is told ``connection_made`` only once it completed, and a failure is
  ``connect_failed("tls: <reason>")`` (a failed attempt for the reconnect
  policy; ``connect_timeout`` bounds it).
- Plaintext leaves the codec only as fast as the kernel takes ciphertext:
  at most ``_CHUNK`` bytes sit encrypted and unsent, so ``high_water`` and
  ``on_drain`` work as over plain TCP.
- After an event has fed the session, a callback may have closed or
  replaced the connection: each step re-checks that its SSLObject is still
  the current one.
- close_notify is sent only when it cannot corrupt the stream (no record is
  half sent) and never waits for the kernel.
"""
from __future__ import annotations

import os
import socket
import ssl
from typing import Any, Optional, Union

from . import errors, ev
from ._codec import NULL, write_pending
from ._ffi import ffi, lib
from ._libev import LibevDriver

__all__ = ["TLSDriver", "client_context", "options", "reason", "handshake_error", "HANDSHAKE_EOF"]

#: Plaintext taken from the codec per encryption step (16 TLS records).
_CHUNK = 256 * 1024
#: Bytes asked of recv() and SSLObject.read() per call. Python allocates the
#: whole size up front: above glibc's mmap threshold (128 KiB) each call
#: costs an mmap/munmap pair (measured: 54 us for a 256 KiB recv of 62
#: bytes, 4 us for 64 KiB). One recv per readable event; the rest waits in
#: the kernel (libev is level-triggered).
_READ = 64 * 1024


def client_context(value: Union[bool, ssl.SSLContext]) -> Optional[ssl.SSLContext]:
    """The context for ``ssl=``: True gives ``ssl.create_default_context()``;
    False gives None (plain TCP).

    Raises: TypeError for anything else; ValueError for a server-side context.
    """
    if value is True:
        return ssl.create_default_context()
    if value is False:
        return None
    if not isinstance(value, ssl.SSLContext):
        raise TypeError("ssl must be an ssl.SSLContext or True")
    if value.protocol == ssl.PROTOCOL_TLS_SERVER:
        raise ValueError("ssl must be a client context (PROTOCOL_TLS_CLIENT), not a server one")
    return value


def options(value: Any, server_hostname: Any) -> Optional[ssl.SSLContext]:
    """``ssl=`` and ``server_hostname=`` as every front-end checks them: the
    context to use (None: plain), or TypeError/ValueError before any I/O."""
    context = None if value is None else client_context(value)
    if server_hostname is not None:
        if not isinstance(server_hostname, str):
            raise TypeError("server_hostname must be a str")
        if not server_hostname:
            raise ValueError("server_hostname must not be empty")
        if context is None:
            raise ValueError("server_hostname is only meaningful with ssl")
    return context


def reason(exc: BaseException) -> str:
    """``"tls: <reason>"`` for an SSL error: OpenSSL's words, without the
    ``[SSL: CODE]`` prefix and the ``(_ssl.c:N)`` suffix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"tls: certificate verify failed: {exc.verify_message}"
    text = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else str(exc)
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    if text.endswith(")") and " (_ssl.c:" in text:
        text = text.rsplit(" (_ssl.c:", 1)[0]
    return f"tls: {text}"


#: What a handshake cut short by the server's end of the stream reports,
#: whatever words this Python's ssl module has for it.
HANDSHAKE_EOF = "tls: connection closed during handshake"


def _is_eof(exc: ssl.SSLError) -> bool:
    """The TCP stream ended (with or without close_notify). Python 3.9 on
    OpenSSL 3 reports an EOF without close_notify as a plain SSLError."""
    return (isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
            or getattr(exc, "reason", None) == "UNEXPECTED_EOF_WHILE_READING")


def handshake_error(exc: BaseException) -> str:
    """The err string of a TLS set-up that failed with ``exc``: the same on
    every front-end (the asyncio one reports through this too)."""
    if isinstance(exc, ssl.SSLError):
        return HANDSHAKE_EOF if _is_eof(exc) else reason(exc)
    return f"tls: {exc}"


class TLSDriver(LibevDriver):
    """The libev driver speaking TLS to the server (see the module docstring)."""

    def __init__(self, loop: ev.Loop, priority: int, keepalive: float,
                 context: ssl.SSLContext, server_hostname: Optional[str]) -> None:
        super().__init__(loop, priority, keepalive)
        self._context = context
        self._server_hostname = server_hostname
        self._host: Optional[str] = None      # of the address being connected
        self._tls: Optional[ssl.SSLObject] = None
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._handshaking = False
        # Ciphertext the kernel has not taken yet. A bytearray: appending is
        # amortized O(1), and so is dropping what was sent from its front.
        self._cipher = bytearray()
        self._clean = False                  # the TLS stream may be closed with close_notify
        self._outp = ffi.new("const char **")  # per object: loops may run in several threads

    # ===== Driver interface =====

    def open(self, address: Any) -> None:
        self._host = address[1] if address[0] == "tcp" else None
        super().open(address)

    def close(self, flush: bool) -> None:
        tls, self._tls = self._tls, None
        sock = self._sock
        if tls is not None and sock is not None and self._clean:
            session = self._session()
            if flush and session is not None and session.c != NULL:
                self._encrypt_all(tls, session.c)
            if not self._cipher or flush:
                # close_notify behind whatever is queued, in one send the
                # kernel takes now or never: nothing waits for it.
                try:
                    tls.unwrap()
                except (ssl.SSLError, ValueError):
                    pass  # it waits for the server's close_notify: ours is out
                data = bytes(self._cipher) + self._out.read()
                try:
                    sock.send(data)
                except OSError:
                    pass
        self._reset_tls()
        super().close(False)  # the socket is Python's: C has nothing to flush

    def forked(self) -> None:
        self._tls = None
        self._reset_tls()
        super().forked()

    def _reset_tls(self) -> None:
        self._handshaking = False
        self._clean = False
        self._cipher = bytearray()

    # ===== Handshake =====

    def _transport_up(self, sock: socket.socket) -> None:
        """TCP is up: start the handshake; the session hears of the
        connection when it completed."""
        hostname = self._server_hostname or self._host
        self._reset_tls()
        # Fresh BIOs: what an old connection left in them is not this one's.
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        try:
            self._tls = self._context.wrap_bio(self._in, self._out, server_side=False,
                                               server_hostname=hostname)
        except (ssl.SSLError, ValueError) as exc:
            self._connect_failed(handshake_error(exc))
            return
        self._handshaking = True
        fd = sock.fileno()
        self._rio.stop()
        self._rio.set(fd, ev.EV_READ)
        self._rio.start()
        self._wio.set(fd, ev.EV_WRITE)
        self._handshake()

    def _handshake(self) -> None:
        tls = self._tls
        assert tls is not None
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        except ssl.SSLError as exc:
            self._cipher += self._out.read()  # the alert that tells the server why
            self._send(best_effort=True)
            self._connect_failed(handshake_error(exc))
            return
        self._cipher += self._out.read()
        err = self._send()
        if err is not None:
            self._connect_failed(err)
            return
        if not done:
            return
        self._handshaking = False
        self._clean = True
        session = self._session()
        if session is not None:
            session.connection_made(-1)  # fd -1: C never touches this socket

    def _connect_failed(self, err: str) -> None:
        session = self._session()
        if session is not None:
            session.connect_failed(err)

    # ===== Moving bytes =====

    def _send(self, best_effort: bool = False) -> Optional[str]:
        """Send the pending ciphertext as far as the kernel takes it now;
        wait for writability for the rest. An err string on failure."""
        data = self._cipher
        if not data:
            return None
        sock = self._sock
        assert sock is not None
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._cipher = bytearray()
            self._clean = False
            return f"write error: {os.strerror(exc.errno or 0)}"
        del data[:n]
        if data and not best_effort and self._wio._handle is None:
            self._wio.start()
        return None

    def _encrypt(self, tls: ssl.SSLObject, c: Any) -> None:
        """One chunk of the codec's queued requests into ciphertext."""
        outp = self._outp
        n = lib.gm_conn_out(c, outp)
        if n:
            n = min(n, _CHUNK)
            tls.write(ffi.buffer(outp[0], n))  # a view of the codec's buffer: no copy
            lib.gm_conn_out_consume(c, n)
        self._cipher += self._out.read()

    def _encrypt_all(self, tls: ssl.SSLObject, c: Any) -> None:
        while lib.gm_conn_out(c, self._outp):
            self._encrypt(tls, c)

    def _pump(self, session: Any) -> bool:
        """Encrypt and send while the kernel takes it all. False when the
        connection was lost (the session has been told)."""
        tls = self._tls
        assert tls is not None
        c = session.c
        while True:
            if not self._cipher:
                self._encrypt(tls, c)
                if not self._cipher:
                    break
            err = self._send()
            if err is not None:
                session.connection_lost(err)
                return False
            if self._cipher:
                break  # the write watcher takes it from here
        if not self._cipher and self._wio._handle is not None:
            self._wio.stop()  # all sent: nothing to wait for
        left = write_pending(c) + len(self._cipher)
        if left or session._unsent:
            session.written(left)
        return True

    # ===== Watchers =====

    def _on_readable(self, watcher: Any, revents: int) -> None:
        session = self._session()
        tls = self._tls
        if session is None or tls is None or self._sock is None:
            watcher.stop()
            return
        try:
            data = self._sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._clean = False
            self._lost(session, f"read error: {os.strerror(exc.errno or 0)}")
            return
        if data:
            self._in.write(data)
        else:
            self._clean = False
            self._in.write_eof()
        if self._handshaking:
            self._handshake()
            if self._handshaking or self._tls is not tls:
                return  # not done yet, failed, or on_connect closed it
            # Records that came behind the handshake (session tickets) are
            # read below, as on any later event.
        # As on the plain path: requests that callbacks queue during this
        # event go out when it ends, in one pass (see LibevDriver.flush_soon).
        outer, self._event_depth = self._event_depth, self._loop._depth
        try:
            self._decrypt(session, tls, bool(data))
        finally:
            self._event_depth = outer
        if session.flush_asked:
            self._on_prepare(self._flusher, 0)  # checks that the connection is still up

    def _decrypt(self, session: Any, tls: ssl.SSLObject, more: bool) -> None:
        """Feed the session every plaintext byte the incoming BIO yields."""
        epoch = session.epoch
        while True:
            try:
                plain = tls.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as exc:
                if not _is_eof(exc):
                    self._clean = False
                    session.connection_lost(reason(exc))
                    return
                plain = b""
            if not plain:
                # close_notify, or the TCP stream ended: the server is gone.
                self._clean = False
                session.connection_lost(errors.CONNECTION_CLOSED)
                return
            session.feed(plain)
            if session.epoch != epoch or self._tls is not tls:
                return  # a callback closed or replaced the connection
            if more and not self._in.pending and not tls.pending():
                # All taken and decrypted: one more read would only raise
                # SSLWantReadError, which costs as much as the read itself.
                break
        if self._out.pending:
            # TLS wants to answer (a key update): out with it, behind any
            # records already waiting.
            self._cipher += self._out.read()
            if self._wio._handle is None:
                err = self._send()
                if err is not None:
                    session.connection_lost(err)

    def _lost(self, session: Any, err: str) -> None:
        if self._handshaking:
            session.connect_failed(err)
        else:
            session.connection_lost(err)

    def write_now(self) -> None:
        """No early writes over TLS: encrypting and sending here could meet a
        failure inside the caller's submit. The before-poll flush sends it."""

    def _on_prepare(self, watcher: Any, revents: int) -> None:
        watcher.stop()
        session = self._session()
        if session is None:
            return
        session.flush_asked = False
        if (self._tls is None or self._handshaking or self._connecting
                or self._wio._handle is not None):
            return  # not connected yet, or already waiting for writability
        self._pump(session)

    def _on_writable(self, watcher: Any, revents: int) -> None:
        if self._connecting:
            self._connect_done()
            return
        session = self._session()
        if session is None or self._tls is None:
            watcher.stop()
            return
        if self._handshaking:
            err = self._send()
            if err is not None:
                session.connect_failed(err)
            elif not self._cipher:
                watcher.stop()
            return
        self._pump(session)  # stops the watcher once everything is sent
