"""gearman_ev on asyncio: ``AsyncGearman``, ``AsyncGearmanPool``, ``JobRun``
and ``JobEvent``.

One Gearman connection (client, worker and admin) on any asyncio loop,
uvloop included, with the same protocol core as ``gearman_ev.Gearman``: the
C codec and the session's matching rules; only the transport differs. No
thread and no polling: bytes the transport receives go straight to the C
decoder, and requests queued during one loop iteration leave together (a
large burst every 64 KiB as it grows).

::

    from gearman_ev.aio import AsyncGearman

    async with AsyncGearman("127.0.0.1", 4730) as g:   # waits until connected
        result = await g.submit_job("reverse", b"hello")  # bytes, or raises
        handle = await g.submit_job_bg("mail", b"...")    # str

What stays true:

- Calling a request method sends the request at once, in call order, and
  returns a coroutine for its reply: several calls before the first
  ``await`` are pipelined, and ``asyncio.gather`` over them works as usual.
  Each reply goes to its own request, whatever the order they are awaited in.
- Cancelling a task that awaits a request (``asyncio.wait_for`` timing out,
  a ``TaskGroup`` failing, ``task.cancel()``) never desynchronises the
  connection: the request keeps its place, its reply is read and dropped,
  and every other request still gets its own reply. The server is not told:
  the protocol cannot cancel a job.
- A failure is raised as the exception of ``gearman_ev.errors`` for its err
  string (``JobFailed``, ``JobException``, ``JobTimeout``,
  ``CommandTimeout``, ``ConnectionLost``, ``ServerError``).
- ``KeyboardInterrupt`` / ``SystemExit`` raised by your handlers or worker
  functions are raised out of the loop (``asyncio.run`` sees them, as for any
  asyncio callback) only after every reply already received was matched to
  its request.

``AsyncGearmanPool`` is ``GearmanPool`` (API.md 11) on these connections:
one ``AsyncGearman`` per server and ``_routing.Router`` over their sessions,
with the loop's clock, one ``call_at`` timer and a guard for user code.

For front-ends built on this module (a pool of connections): ``AsyncioDriver``
runs one session on an asyncio transport; ``ReplyEntry``, ``JobReply`` and
``Reply`` turn a session request's callback into something ``_reply`` can
await, and ``JobRun.submission()`` feeds a ``JobRun``. No protocol rule lives
here: matching, routing and the worker loop are the session's.
"""
from __future__ import annotations

import asyncio
import errno
import inspect
import logging
import os
import socket
import ssl as _ssl
import threading
import weakref
from typing import (Any, AsyncIterator, Awaitable, Callable, Coroutine, Dict, Generator, List,
                    NamedTuple, Optional, Sequence, Tuple, Union)

from . import _args, _session, errors
from ._codec import CMD as _CMD
from ._codec import MAX_PACKET
from ._job import Job
from ._poolbase import PoolBase
from ._settings import ConnectionSettings
from ._libev import apply_keepalive
from ._routing import FirstKnown, Gather, GrabCap, Router, parse_servers
from ._session import (CONNECTED, CONNECTING, DISCONNECTED, K_ECHO, K_STATUS, K_STATUS_UNIQUE,
                       K_SUBMIT_BG, STATE_NAMES, Ability, Entry, Session, Submission)

__all__ = ["AsyncGearman", "AsyncGearmanPool", "JobRun", "JobEvent"]

log = logging.getLogger("gearman_ev")

Payload = Union[bytes, bytearray, memoryview, str]
Name = Union[str, bytes]
Handler = Optional[Callable[..., Any]]

_UNIX_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux, as the libev driver
#: How long ``close()`` lets the transport send what was queued before it
#: cuts the connection: a server that stopped reading must not hang close().
CLOSE_GRACE = 5.0
_get_ident = threading.get_ident
CMD: Any = _CMD  # packet numbers, set from the C header at import
#: What a reply asks for a flush behind the task it wakes: a connection's
#: driver, or a pool's (``_PoolFlush``).
_Flusher = Union["AsyncioDriver", "_PoolFlush"]
_PRIORITIES = {"high": CMD.SUBMIT_JOB_HIGH, "normal": CMD.SUBMIT_JOB, "low": CMD.SUBMIT_JOB_LOW}


# ===== Replies as awaitables =====

_PENDING: Any = object()  # a reply's err until the reply came (None or a str after)


def _settle(reply: Union[Reply, ReplyEntry], result: Any, err: Optional[str]) -> None:
    reply.result = result
    reply.err = err
    fut = reply.fut
    if fut is not None and not fut.done():  # done: its awaiter was cancelled
        try:
            fut.set_result(None)
        except RuntimeError:
            return  # the loop is closed (a drain from a finalizer): no one can await
        # The task this wakes runs in the next loop iteration; a flush
        # scheduled now runs right after it there, so the request it makes
        # next (a round trip's) leaves in that iteration, not one later.
        reply.driver.flush_soon()


class Reply:
    """One request's reply, as its session callback delivers it: the
    request's ``cb(result, err)`` is the Reply itself. A future is made only
    if someone awaits before the reply came, so a pipelined request whose
    reply is in when it is awaited costs no future and no loop round."""

    __slots__ = ("result", "err", "fut", "driver")
    result: Any
    driver: _Flusher
    exc_data: Optional[bytes] = None

    def __init__(self) -> None:
        self.err: Optional[str] = _PENDING
        self.fut: Optional[asyncio.Future[None]] = None

    __call__ = _settle


class GrabReply(Reply):
    """``grab_job``'s: "no job" is an answer (None), not a failure."""

    __slots__ = ()

    def __call__(self, result: Any, err: Optional[str]) -> None:
        if err == errors.NO_JOB:
            err = None
        _settle(self, result, err)


class ReplyEntry(Entry):
    """A request's FIFO entry that is its own Reply: for the requests made
    most (echo, status, background submissions), one object per request
    instead of an Entry and a Reply, as every object alive per request in a
    long pipeline is more work for the garbage collector. ``cb`` is a
    property: the bound method is made when the reply comes and dropped
    after, so the entry holds no reference to itself."""

    __slots__ = ("result", "err", "fut", "driver")
    result: Any
    driver: _Flusher
    exc_data: Optional[bytes] = None

    def __init__(self, kind: int) -> None:  # Entry.__init__ not called: no cb slot to set
        self.kind = kind
        self.err: Optional[str] = _PENDING
        self.fut: Optional[asyncio.Future[None]] = None

    settle = _settle

    def _ignore(self, value: Any) -> None:
        pass  # the ``cb = None`` of a request failed away from its session (fail_detached)

    cb = property(lambda self: self.settle, _ignore)


class JobReply(Submission):
    """``submit_job*``'s FIFO entry, a Submission that is its own reply (see
    ReplyEntry). ``cb`` and ``on_exception`` are properties: the session
    reads them when an event comes, and its ``= None`` after the job
    finished (which frees what a plain Submission holds) is a no-op here."""

    __slots__ = ("result", "err", "fut", "driver", "exc_data", "user_on_exception")
    result: Any
    driver: _Flusher

    def __init__(self, on_data: Handler, on_warning: Handler, on_status: Handler,
                 on_exception: Handler, shared: bool) -> None:
        Submission.__init__(self, None, on_data, on_warning, on_status, None, shared)
        self.err: Optional[str] = _PENDING
        self.fut: Optional[asyncio.Future[None]] = None
        self.exc_data: Optional[bytes] = None
        self.user_on_exception = on_exception

    settle = _settle

    def exception_event(self, data: bytes) -> None:
        self.exc_data = data  # for JobException.data
        if self.user_on_exception is not None:
            self.user_on_exception(data)  # the session logs what it raises

    def _ignore(self, value: Any) -> None:
        pass

    cb = property(lambda self: self.settle, _ignore)
    on_exception = property(lambda self: self.exception_event, _ignore)


async def _reply(reply: Union[Reply, ReplyEntry, JobReply], owner: _Priorities) -> Any:
    """The coroutine a request method returns: the reply's result, or its
    err's exception. Cancelled while it waits, it leaves the request in
    place: the reply, when it comes, is consumed and dropped. ``owner`` is
    held: a request being awaited keeps its connection object alive (else
    ``await AsyncGearman(...).echo(x)`` would drop the connection at once)."""
    if reply.err is _PENDING:
        reply.driver = owner._driver
        fut = reply.fut = owner._loop.create_future()
        await fut
    err = reply.err
    if err is None:
        return reply.result
    raise errors.exception_for(err, reply.exc_data)


class JobEvent(NamedTuple):
    """One event of a foreground job, as ``JobRun.events()`` yields it.

    ``kind`` is ``"data"``, ``"warning"`` or ``"exception"`` (``value``: the
    bytes the worker sent) or ``"status"`` (``value``: a ``(numerator,
    denominator)`` tuple of str, as on the wire).
    """

    #: ``"data"``, ``"warning"``, ``"status"`` or ``"exception"``.
    kind: str
    #: The bytes the worker sent; for ``"status"``, ``(numerator, denominator)``.
    value: Any


class JobRun:
    """One foreground job, from submission to its result (``AsyncGearman.submit``).

    ``await run`` gives the result bytes or raises (``JobFailed``,
    ``JobException``, ``JobTimeout``, ``ConnectionLost``, ...); a run may be
    awaited again, from several tasks, and after an awaiting task was
    cancelled. ``run.handle`` is the job handle once the server created the
    job (``await run.created()`` waits for it). ``async for event in
    run.events()`` yields every ``JobEvent`` of the job, from the first, and
    ends once the job has finished. The run keeps its events for as long as
    it is referenced.
    """

    __slots__ = ("_loop", "_owner", "handle", "done", "_result", "_err", "_exc_data", "_events",
                 "_wakeups")

    def __init__(self, loop: asyncio.AbstractEventLoop, owner: Any = None) -> None:
        self._loop = loop
        self._owner = owner    # held: a run being awaited keeps its connection alive
        #: The job handle (str) once JOB_CREATED arrived, else None.
        self.handle: Optional[str] = None
        #: True once the job has finished (with a result or an error).
        self.done = False
        self._result: Optional[bytes] = None
        self._err: Optional[str] = None
        self._exc_data: Optional[bytes] = None
        self._events: List[JobEvent] = []
        self._wakeups: Optional[List[asyncio.Future[None]]] = None

    # ----- wiring to a session -----

    def submission(self, shared: bool) -> Submission:
        """The session's Submission feeding this run (``shared``: it has a
        unique key): its events are kept for ``events()``."""
        sub = Submission(self._finish, self._data_event, self._warning_event,
                         self._status_event, self._exception_event, shared)
        sub.on_created = self._created
        return sub

    def _wake(self) -> None:
        wakeups = self._wakeups
        if wakeups is not None:
            self._wakeups = None
            for w in wakeups:
                if not w.done():
                    try:
                        w.set_result(None)
                    except RuntimeError:
                        return  # the loop is closed
            if self._owner is not None:
                self._owner._driver.flush_soon()  # behind the woken tasks (see _settle)

    def _changed(self) -> asyncio.Future[None]:
        """A future resolved at the next change: created, an event, the end."""
        w: asyncio.Future[None] = self._loop.create_future()
        if self._wakeups is None:
            self._wakeups = [w]
        else:
            self._wakeups.append(w)
        return w

    def _created(self, handle: str) -> None:
        self.handle = handle
        self._wake()

    def _data_event(self, data: bytes) -> None:
        self._events.append(JobEvent("data", data))
        self._wake()

    def _warning_event(self, data: bytes) -> None:
        self._events.append(JobEvent("warning", data))
        self._wake()

    def _status_event(self, numerator: str, denominator: str) -> None:
        self._events.append(JobEvent("status", (numerator, denominator)))
        self._wake()

    def _exception_event(self, data: bytes) -> None:
        self._exc_data = data
        self._events.append(JobEvent("exception", data))
        self._wake()

    def _finish(self, result: Optional[bytes], err: Optional[str]) -> None:
        self.done = True
        self._result = result
        self._err = err
        self._wake()

    def _outcome(self) -> bytes:
        if self._err is None:
            assert self._result is not None
            return self._result
        raise errors.exception_for(self._err, self._exc_data)

    # ----- the public face -----

    def __await__(self) -> Generator[Any, None, bytes]:
        while not self.done:
            yield from self._changed()
        return self._outcome()

    async def created(self) -> str:
        """Wait until the server created the job; return its handle.

        Raises: the job's exception if it ended before it was created (for
        example ``ConnectionLost``, ``ServerError``, ``JobTimeout``).
        """
        while self.handle is None:
            if self.done:
                self._outcome()  # raises: it ended with no handle
            await self._changed()
        return self.handle

    async def events(self) -> AsyncIterator[JobEvent]:
        """Every event of the job, from the first; ends when the job finished
        (``await run`` then gives the outcome)."""
        i = 0
        while True:
            events = self._events
            while i < len(events):
                yield events[i]
                i += 1
            if self.done:
                return
            await self._changed()

    def __repr__(self) -> str:
        state = "done" if self.done else ("created" if self.handle else "submitted")
        return f"<JobRun {self.handle or '-'} {state}>"


# ===== The driver: a session on an asyncio transport =====

class _Conn(asyncio.Protocol):
    """The asyncio Protocol of one connection attempt. Once its attempt is
    no longer the driver's current one (``live`` False) it feeds nothing to
    the session: a late event of an old transport cannot reach a new one."""

    def __init__(self, driver: AsyncioDriver, session: Callable[[], Any]) -> None:
        self.driver = driver
        self.session = session   # a weakref to the session
        self.live = True
        self.transport: Optional[asyncio.Transport] = None
        self.closed: asyncio.Future[None] = driver._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.driver._made(self, self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self.live:
            session = self.session()
            if session is not None:
                session.feed(data)  # decode in C, match, dispatch; never raises

    def eof_received(self) -> Optional[bool]:
        return None  # let the transport close: connection_lost reports the EOF

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self.live:
            self.live = False
            self.driver._lost(self, exc)

    def pause_writing(self) -> None:
        if self.live:
            self.driver._paused = True

    def resume_writing(self) -> None:
        if self.live:
            self.driver._paused = False
            self.driver._flush()


def _close_reason(exc: Optional[BaseException]) -> str:
    """The session's err string for a transport that ended with ``exc``."""
    if exc is None:
        return errors.CONNECTION_CLOSED
    if isinstance(exc, _ssl.SSLError):
        from . import _tls  # with ssl= only, as for Gearman
        return _tls.reason(exc)
    if isinstance(exc, OSError) and exc.errno:
        # asyncio does not say which side failed; EPIPE only comes from a write.
        side = "write error" if exc.errno == errno.EPIPE else "read error"
        return f"{side}: {os.strerror(exc.errno)}"
    return f"read error: {exc}"


class AsyncioDriver:
    """Drives one session on an asyncio loop (see ``_driver.Driver``).

    It owns the transport and the connect task, the call-soon flush (one
    ``transport.write`` per loop iteration for everything queued in it, and
    ``write_now`` for a burst as it grows) and
    the session's one timer (``loop.call_at``). ``owner`` (held weakly) is
    told ``_connection_up()`` after a connection is up and
    ``_connection_down()`` one loop step after one ended or failed, once the
    session has settled its new state.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, keepalive: float,
                 ssl: Optional[_ssl.SSLContext], server_hostname: Optional[str]) -> None:
        self._loop = loop
        self._thread = _get_ident()
        self._session: Callable[[], Any] = lambda: None
        self._owner: Callable[[], Any] = lambda: None
        self.keepalive = keepalive
        self.ssl = ssl
        self.server_hostname = server_hostname
        self._conn: Optional[_Conn] = None            # the current attempt
        self._transport: Optional[asyncio.Transport] = None
        self._connecting: Optional[asyncio.Task[None]] = None
        self._closing: List[_Conn] = []               # transports closed, not yet gone
        self._cancelled: List[asyncio.Task[None]] = []  # connect tasks given up
        self._paused = False                           # the transport asked us to pause
        self._flush_handle: Optional[asyncio.Handle] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._parked: Optional[BaseException] = None

    def attach(self, session: Any, owner: Any = None) -> None:
        self._session = weakref.ref(session)
        if owner is not None:
            self._owner = weakref.ref(owner)

    # ===== Driver interface =====

    def now(self) -> float:
        return self._loop.time()

    def flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def flush_pending(self) -> None:
        """Flush now if a flush is scheduled: a pool's flush, behind the
        tasks its replies woke, sends what they queued on any server."""
        if self._flush_handle is not None:
            self.write_now()

    def write_now(self) -> None:
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
        self._flush()

    def _flush(self) -> None:
        self._flush_handle = None
        session = self._session()
        if session is None:
            return
        session.flush_asked = False  # the session asks again for what comes next
        transport = self._transport
        if transport is None or self._paused:
            return  # not connected, or the transport is full: resume_writing flushes
        data = session.take_output()
        if data:
            transport.write(data)
        session.written(0)

    def set_deadline(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when:
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        session = self._session()
        if session is not None:
            session.on_deadline()

    def park(self, exc: BaseException) -> None:
        # Raised from a loop callback of its own, after the event being
        # handled has been matched whole: asyncio (and uvloop) re-raise a
        # KeyboardInterrupt/SystemExit from a callback out of run_forever(),
        # so asyncio.run() sees it as it sees any other. Raised inside
        # data_received instead, it would be a fatal error of the transport
        # (uvloop closes it) and the rest of that read would go unmatched.
        if self._parked is None:
            self._parked = exc
            self._loop.call_soon(self._raise_parked)

    def _raise_parked(self) -> None:
        exc, self._parked = self._parked, None
        if exc is not None:
            raise exc

    def check_thread(self) -> None:
        if _get_ident() != self._thread:
            raise errors.GearmanError(errors.WRONG_THREAD)

    def open(self, address: Tuple[Any, ...]) -> None:
        self._paused = False
        conn = self._conn = _Conn(self, self._session)
        self._connecting = self._loop.create_task(self._connect(conn, address))

    def close(self, flush: bool) -> None:
        if self._loop.is_closed():
            self.forked()  # a finalizer after the loop is gone: nothing left to tell
            return
        conn, self._conn = self._conn, None
        task, self._connecting = self._connecting, None
        if task is not None and not task.done() and task is not asyncio.current_task(self._loop):
            task.cancel()  # a connect in progress: its socket is closed by it
            self._cancelled.append(task)
        if conn is not None:
            conn.live = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        owner_session = self._session()
        if owner_session is not None:
            owner_session.flush_asked = False  # no flush pending any more
        transport, self._transport = self._transport, None
        self._paused = False
        if transport is not None and conn is not None:
            session = self._session()
            if flush and session is not None:
                # What was already queued (a job's result, say) goes out
                # before the close, as with the libev driver.
                data = session.take_output()
                if data:
                    transport.write(data)
                transport.close()
            else:
                transport.abort()
            self._closing.append(conn)
        self._loop.call_soon(self._notify_down)

    def forked(self) -> None:
        # asyncio loops do not survive fork; forget everything without a
        # byte written or a descriptor the parent shares closed on purpose.
        if self._conn is not None:
            self._conn.live = False
        self._conn = None
        self._transport = None
        self._connecting = None
        self._flush_handle = None
        self._timer = None

    # ===== Connecting =====

    async def _connect(self, conn: _Conn, address: Tuple[Any, ...]) -> None:
        """One connect attempt, as a task: resolve, try each address in turn
        (the last failure is reported, as the libev driver does), then hand
        the socket to an asyncio transport (TLS if asked)."""
        sock: Optional[socket.socket] = None
        try:
            if address[0] == "unix":
                path = address[1]
                if len(path) > _UNIX_PATH_MAX:
                    return self._failed(conn, errors.UNIX_PATH_TOO_LONG)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                err = await self._connect_sock(conn, sock, path)
                if err:
                    sock.close()
                    self._failed(conn, f"connect: {os.strerror(err)}")
                return
            _, host, port = address
            try:
                infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                return self._failed(conn, f"getaddrinfo: {exc.strerror}")
            last_error = 0
            for family, type_, proto, _, addr in infos:
                try:
                    sock = socket.socket(family, type_, proto)
                except OSError as exc:
                    last_error = exc.errno or 0
                    continue
                last_error = await self._connect_sock(conn, sock, addr, host)
                if not last_error:
                    return
                sock.close()
                sock = None
                if last_error < 0:
                    return  # a TLS failure, reported
            self._failed(conn, f"connect: {os.strerror(last_error or errno.ECONNREFUSED)}")
        except asyncio.CancelledError:
            # close() while connecting. A socket that a transport took is
            # closed by asyncio; closing it again is harmless.
            if sock is not None:
                sock.close()
            raise

    async def _connect_sock(self, conn: _Conn, sock: socket.socket, addr: Any,
                            host: Optional[str] = None) -> int:
        """Connect ``sock`` and hand it to a transport: 0, the errno of a
        failed connect, or -1 for a TLS failure (reported here)."""
        loop = self._loop
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            return exc.errno or errno.ECONNREFUSED
        if sock.family == socket.AF_UNIX:
            await loop.create_unix_connection(lambda: conn, sock=sock)
            return 0
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        apply_keepalive(sock, self.keepalive)
        if self.ssl is None:
            await loop.create_connection(lambda: conn, sock=sock)
            return 0
        try:
            await loop.create_connection(lambda: conn, sock=sock, ssl=self.ssl,
                                         server_hostname=self.server_hostname or host)
        except (OSError, ValueError) as exc:
            from . import _tls  # with ssl= only, as for Gearman
            self._failed(conn, _tls.handshake_error(exc))
            return -1
        return 0

    def _failed(self, conn: _Conn, err: str) -> None:
        if conn is self._conn:
            self._connecting = None
            session = self._session()
            if session is not None:
                session.connect_failed(err)

    def _made(self, conn: _Conn, transport: asyncio.Transport) -> None:
        session = self._session()
        if conn is not self._conn or session is None:
            transport.abort()  # an attempt given up meanwhile (connect timeout, close)
            return
        self._connecting = None
        self._transport = transport
        session.connection_made(-1)  # set-up and waiting requests queued; on_connect ran
        if conn is self._conn and session.state == CONNECTED:
            owner = self._owner()
            if owner is not None:
                owner._connection_up()

    def _lost(self, conn: _Conn, exc: Optional[BaseException]) -> None:
        if conn is not self._conn:
            return
        self._transport = None
        session = self._session()
        if session is not None:
            session.connection_lost(_close_reason(exc))

    def _notify_down(self) -> None:
        owner = self._owner()
        if owner is not None:
            owner._connection_down()

    async def wait_closed(self, grace: float = CLOSE_GRACE) -> None:
        """Until every transport this driver closed is gone; one that has not
        sent what it holds within ``grace`` seconds is aborted."""
        while self._cancelled:
            task = self._cancelled.pop()
            await asyncio.gather(task, return_exceptions=True)  # its socket is closed
        while self._closing:
            conn = self._closing[0]
            try:
                await asyncio.wait_for(asyncio.shield(conn.closed), grace)
            except asyncio.TimeoutError:
                if conn.transport is not None:
                    conn.transport.abort()
                await conn.closed
            if self._closing and self._closing[0] is conn:
                self._closing.pop(0)

    def set_keepalive(self, seconds: float) -> None:
        self.keepalive = seconds
        if self._transport is not None:
            sock = self._transport.get_extra_info("socket")
            if sock is not None:
                apply_keepalive(sock, seconds)


# ===== Worker functions =====

class _WorkerFunction:
    """What the session calls for each job of one registered function: the
    owner (held weakly: abilities must not keep it alive) runs it."""

    __slots__ = ("owner", "func")

    def __init__(self, owner: AsyncGearman, func: Callable[[Job], Any]) -> None:
        self.owner = weakref.ref(owner)
        self.func = func

    def __call__(self, job: Job) -> None:
        owner = self.owner()
        if owner is not None:
            owner._start_job(self.func, job)


# ===== AsyncGearman =====

class _Priorities:
    """The foreground submissions and the priority variants of AsyncGearman
    and AsyncGearmanPool: each class's own ``_send_fg`` (one connection, or
    routed) and ``_submit_bg`` do the work."""

    _driver: Any  # what flushes the requests a woken task queued
    _loop: asyncio.AbstractEventLoop

    def _send_fg(self, cmd: int, func: Name, workload: Payload, timeout: Optional[float],
                 sub: Submission, ukey: bytes) -> None:
        raise NotImplementedError

    def _submit_fg(self, cmd: int, func: Name, workload: Payload, unique: Optional[Name],
                   timeout: Optional[float], on_data: Handler, on_warning: Handler,
                   on_status: Handler, on_exception: Handler) -> Coroutine[Any, Any, bytes]:
        if on_data is not None or on_warning is not None or on_status is not None \
                or on_exception is not None:
            _args.callback(on_data, "on_data")
            _args.callback(on_warning, "on_warning")
            _args.callback(on_status, "on_status")
            _args.callback(on_exception, "on_exception")
        ukey = _args.unique(unique)
        reply = JobReply(on_data, on_warning, on_status, on_exception, bool(ukey))
        self._send_fg(cmd, func, workload, timeout, reply, ukey)
        return _reply(reply, self)

    def _submit_bg(self, cmd: int, func: Name, workload: Payload, unique: Optional[Name],
                   epoch: Optional[bytes] = None) -> Coroutine[Any, Any, str]:
        raise NotImplementedError

    def submit_job_high(self, func: Name, workload: Payload, *, unique: Optional[Name] = None,
                        timeout: Optional[float] = None, on_data: Handler = None,
                        on_warning: Handler = None, on_status: Handler = None,
                        on_exception: Handler = None) -> Coroutine[Any, Any, bytes]:
        """``submit_job`` at high priority."""
        return self._submit_fg(CMD.SUBMIT_JOB_HIGH, func, workload, unique, timeout, on_data,
                               on_warning, on_status, on_exception)

    def submit_job_low(self, func: Name, workload: Payload, *, unique: Optional[Name] = None,
                       timeout: Optional[float] = None, on_data: Handler = None,
                       on_warning: Handler = None, on_status: Handler = None,
                       on_exception: Handler = None) -> Coroutine[Any, Any, bytes]:
        """``submit_job`` at low priority."""
        return self._submit_fg(CMD.SUBMIT_JOB_LOW, func, workload, unique, timeout, on_data,
                               on_warning, on_status, on_exception)

    def submit_job_high_bg(self, func: Name, workload: Payload, *,
                           unique: Optional[Name] = None) -> Coroutine[Any, Any, str]:
        """``submit_job_bg`` at high priority."""
        return self._submit_bg(CMD.SUBMIT_JOB_HIGH_BG, func, workload, unique)

    def submit_job_low_bg(self, func: Name, workload: Payload, *,
                          unique: Optional[Name] = None) -> Coroutine[Any, Any, str]:
        """``submit_job_bg`` at low priority."""
        return self._submit_bg(CMD.SUBMIT_JOB_LOW_BG, func, workload, unique)


class AsyncGearman(_Priorities, ConnectionSettings):
    """One connection to a Gearman job server on asyncio: client, worker, admin.

    Must be created inside a running loop (in a coroutine), like
    ``asyncio.Queue``; it belongs to that loop and its thread.

    A request method (``echo``, ``submit_job``, ``admin``, ...) checks its
    arguments and queues the request when called (TypeError, ValueError or
    GearmanError there), and returns a coroutine that gives the reply's
    result or raises its exception. Requests leave in call order, those of
    one loop iteration together.

    Args:
        host: server name or address; with ``host`` (or ``path``) a
            non-blocking connect starts at once, else call ``connect()``.
        port: TCP port (default 4730).
        path: a Unix-domain socket instead of TCP.
        ssl: an ``ssl.SSLContext``, or True for ``ssl.create_default_context()``:
            TLS over TCP (for gearmand behind a TLS terminator).
        server_hostname: the name the server's certificate must match
            (default: ``host``).
        keepalive: TCP keepalive idle time in seconds (0: off).
        connect_timeout: seconds a connect may take (0: no limit).
        command_timeout: seconds without a byte from the server while a
            request awaits its reply; then every one raises ``CommandTimeout``.
        reconnect: reconnect after a drop or a failed connect.
        reconnect_delay: seconds between attempts.
        max_reconnect_attempts: give up after this many (0: never).
        exceptions: send ``OPTION_REQ exceptions`` on every connect; a
            worker function's exception becomes WORK_EXCEPTION.
        client_id: sent as SET_CLIENT_ID on every connect.
        grab_unique: the worker grabs with GRAB_JOB_UNIQ (jobs carry ``unique``).
        high_water: unsent bytes above which a new request raises
            ``GearmanError("write buffer full")`` (0: unbounded).
        on_error: ``on_error(errstr)`` for connection-level errors (default:
            a warning on the "gearman_ev" logger).
        on_connect: ``on_connect()`` once the connection is up.
        on_disconnect: ``on_disconnect()`` after an established connection
            ended and its pending requests were failed.

    Raises:
        RuntimeError: no running event loop.
        TypeError, ValueError: a bad argument (before any I/O).
    """

    _driver: AsyncioDriver

    def __init__(self, host: Optional[Name] = None, port: int = 4730, *, path: Any = None,
                 ssl: Union[None, bool, _ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None, keepalive: float = 0,
                 connect_timeout: float = 0, command_timeout: float = 0,
                 reconnect: bool = False, reconnect_delay: float = 1.0,
                 max_reconnect_attempts: int = 0, exceptions: bool = False,
                 client_id: Optional[Name] = None, grab_unique: bool = False,
                 high_water: int = 64 * 1024 * 1024, on_error: Handler = None,
                 on_connect: Handler = None, on_disconnect: Handler = None) -> None:
        self._s: Optional[Session] = None  # until set-up is complete, __del__ has nothing to do
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("AsyncGearman must be created inside a running asyncio loop "
                               "(in a coroutine)") from None
        if host is not None and path is not None:
            raise ValueError("cannot specify both 'host' and 'path'")
        _args.port(port)
        if ssl is not None or server_hostname is not None:
            from . import _tls  # the same checks as Gearman's (API.md 10, 15)
            ssl = _tls.options(ssl, server_hostname)
        keepalive = _args.seconds("keepalive", keepalive)
        connect_timeout = _args.seconds("connect_timeout", connect_timeout)
        command_timeout = _args.seconds("command_timeout", command_timeout)
        reconnect_delay = _args.seconds("reconnect_delay", reconnect_delay)
        max_reconnect_attempts = _args.count("max_reconnect_attempts", max_reconnect_attempts)
        high_water = _args.count("high_water", high_water)
        client_id_b = None if client_id is None else _args.name_token(client_id, "client_id")
        for name, cb in (("on_error", on_error), ("on_connect", on_connect),
                         ("on_disconnect", on_disconnect)):
            _args.callback(cb, name)
        self._loop = loop
        self._thread = _get_ident()
        self._driver = driver = AsyncioDriver(loop, keepalive, ssl, server_hostname)
        session = Session(driver, Job, exceptions=bool(exceptions), client_id=client_id_b,
                          grab_unique=bool(grab_unique), connect_timeout=connect_timeout,
                          command_timeout=command_timeout, reconnect=bool(reconnect),
                          reconnect_delay=reconnect_delay,
                          max_reconnect_attempts=max_reconnect_attempts,
                          high_water=high_water)
        driver.attach(session, self)
        session.on_error = on_error
        session.on_connect = on_connect
        session.on_disconnect = on_disconnect
        self._up_waiters: List[asyncio.Future[bool]] = []
        # Worker: the tasks of async jobs in flight, and work()'s own state.
        self._jobs: Dict[asyncio.Task[None], Job] = {}
        self._work_done: Optional[asyncio.Future[Optional[str]]] = None
        self._work_gen = 0
        self._barrier_passed = True
        self._s = session
        if host is not None:
            self.connect(host, port)
        elif path is not None:
            self.connect_unix(path)

    # ===== Lifecycle =====

    async def __aenter__(self) -> AsyncGearman:
        try:
            await self.wait_connected()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __del__(self) -> None:
        session = getattr(self, "_s", None)
        if session is not None:
            try:
                session.close()
            except Exception:  # noqa: BLE001 - nothing may escape a finalizer (loop closed)
                pass

    def __repr__(self) -> str:
        s = self._session
        return (f"<AsyncGearman {s.describe_address()} {STATE_NAMES[s.state]} "
                f"pending={s.pending_count}>")

    @property
    def _session(self) -> Session:
        s = self._s
        assert s is not None
        return s

    def _check(self) -> Session:
        """The session, if this thread and process may use it now."""
        s = self._s
        assert s is not None
        if s._fork_gen != _session._fork_gen:
            raise errors.GearmanError(errors.USED_AFTER_FORK)
        if _get_ident() != self._thread:
            raise errors.GearmanError(errors.WRONG_THREAD)
        return s

    # ===== Connection =====

    def connect(self, host: Name, port: int = 4730) -> None:
        """Start a TCP connect (host name, IPv4 or IPv6 literal); returns at
        once (``await wait_connected()`` to wait). Cancels a pending
        automatic reconnect.

        Raises: GearmanError("already connected") while connected or connecting.
        """
        if isinstance(host, bytes):
            host = host.decode()
        if not isinstance(host, str):
            raise TypeError("host must be a str")
        if not host:
            raise ValueError("host must not be empty")
        self._check().connect(("tcp", host, _args.port(port)))

    def connect_unix(self, path: Any) -> None:
        """Start connecting to a Unix-domain socket (str, bytes or os.PathLike).

        Raises: ValueError when TLS was asked for (TLS is for TCP).
        """
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, str):
            path = os.fsencode(path)
        if not isinstance(path, bytes):
            raise TypeError("path must be a str, bytes or os.PathLike")
        if not path or b"\0" in path:
            raise ValueError("path must be non-empty and hold no NUL")
        if self._driver.ssl is not None:
            raise ValueError("ssl is for TCP connections, not a Unix socket")
        self._check().connect(("unix", path))

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Wait until the connection is up (at once if it is).

        Args:
            timeout: seconds, or None to wait as long as connecting (and,
                with ``reconnect``, retrying) goes on.
        Raises:
            ConnectionLost: not connecting (unconfigured or closed), or the
                connect failed with no reconnect left.
            asyncio.TimeoutError: ``timeout`` passed.
        """
        if timeout is not None:
            timeout = _args.seconds("timeout", timeout)
        s = self._check()
        if s.state == CONNECTED:
            return
        if s.state == DISCONNECTED:
            raise errors.ConnectionLost(errors.DISCONNECTED)
        fut: asyncio.Future[bool] = self._loop.create_future()
        self._up_waiters.append(fut)
        try:
            up = await (fut if timeout is None else asyncio.wait_for(fut, timeout))
        finally:
            if fut in self._up_waiters:
                self._up_waiters.remove(fut)
        if not up:
            raise errors.ConnectionLost(errors.DISCONNECTED)

    def _connection_up(self) -> None:
        """Driver: connected (``on_connect`` has run)."""
        waiters, self._up_waiters = self._up_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(True)

    def _connection_down(self) -> None:
        """Driver, one step after a connection ended or an attempt failed:
        jobs of a connection that is gone are cancelled (the server has
        requeued them; their results could not be sent), and what waits for
        a connection that will not come back is told so."""
        s = self._s
        if s is None:
            return
        for task, job in list(self._jobs.items()):
            if job.epoch != s.epoch:
                task.cancel()
        if s.state == DISCONNECTED:
            self._fail_waiters()

    def _fail_waiters(self) -> None:
        waiters, self._up_waiters = self._up_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(False)
        if self._work_done is not None and not self._work_done.done():
            self._work_done.set_result(errors.DISCONNECTED)

    async def close(self) -> None:
        """Close the connection and wait until the socket is closed.

        Every request still awaiting its reply raises ``ConnectionLost``
        (once), as do ``wait_connected()`` and ``work()``; jobs this worker
        was running are cancelled (their results could not be sent); a
        pending reconnect is cancelled; ``on_disconnect`` fires if the
        connection was up. What was queued to send is flushed first (given
        at most ``CLOSE_GRACE`` seconds). A closed object may ``connect()``
        again. Closing twice is harmless.
        """
        self._shut()
        await self._driver.wait_closed()

    def _shut(self) -> None:
        """``close()``'s synchronous part: the session ends, waiters fail,
        jobs in flight are cancelled (a pool shuts every server at once)."""
        s = self._check()
        s.work_stop()
        s.disconnect()
        self._fail_waiters()
        for task in list(self._jobs):
            task.cancel()

    @property
    def is_connected(self) -> bool:
        """True while connected or connecting."""
        return self._session.state in (CONNECTING, CONNECTED)

    def reconnect(self, enable: bool, delay: Optional[float] = None,
                  max_attempts: Optional[int] = None) -> None:
        """Turn automatic reconnection on or off; omitted values stay."""
        if delay is not None:
            delay = _args.seconds("delay", delay)
        if max_attempts is not None:
            max_attempts = _args.count("max_attempts", max_attempts)
        s = self._check()
        s.set_reconnect(bool(enable), delay, max_attempts)
        if s.state == DISCONNECTED:
            self._fail_waiters()  # a reconnect that was pending will not come

    def _handler_property(name: str) -> property:  # type: ignore[misc]
        def get(self: AsyncGearman) -> Handler:
            return getattr(self._session, name)  # type: ignore[no-any-return]

        def set_(self: AsyncGearman, value: Handler) -> None:
            setattr(self._session, name, _args.callback(value, name))
        return property(get, set_, doc=f"The ``{name}`` callback, a plain function "
                                       f"(None to clear).")

    on_error = _handler_property("on_error")
    on_connect = _handler_property("on_connect")
    on_disconnect = _handler_property("on_disconnect")
    on_drain = _handler_property("on_drain")
    del _handler_property

    # ===== Client (API.md 5) =====

    def _request(self, cmd: int, args: Tuple[Any, ...], kind: int) -> Coroutine[Any, Any, Any]:
        reply = ReplyEntry(kind)
        self._check().send(cmd, args, reply)
        return _reply(reply, self)

    def echo(self, data: Payload) -> Coroutine[Any, Any, bytes]:
        """ECHO_REQ: sends now; the coroutine returns the echoed bytes."""
        payload = _args.payload(data)
        _args.check_size(payload)
        return self._request(CMD.ECHO_REQ, (payload,), K_ECHO)

    def _send_fg(self, cmd: int, func: Name, workload: Payload, timeout: Optional[float],
                 sub: Submission, ukey: bytes) -> None:
        """Check the rest of a foreground submission's arguments and send it."""
        fname = _args.function(func)
        load = _args.payload(workload, "workload")
        seconds = _args.timeout(timeout) if timeout is not None else 0.0
        if len(fname) + len(ukey) + len(load) + 2 > MAX_PACKET:
            _args.check_size(fname, ukey, load)  # raises the ValueError
        s = self._check()
        s.send3(cmd, fname, ukey, load, sub)
        if seconds:
            s.set_job_deadline(sub, seconds)

    def submit_job(self, func: Name, workload: Payload, *, unique: Optional[Name] = None,
                   timeout: Optional[float] = None, on_data: Handler = None,
                   on_warning: Handler = None, on_status: Handler = None,
                   on_exception: Handler = None) -> Coroutine[Any, Any, bytes]:
        """A foreground job: sends now; the coroutine returns the result bytes.

        Args:
            func: the function name.
            workload: bytes-like or str.
            unique: a unique key (jobs with the same key are coalesced).
            timeout: seconds for the whole job (then ``JobTimeout``; the
                server is not told and later events are dropped).
            on_data: ``on_data(data)``, a plain function, with the bytes of
                each WORK_DATA.
            on_warning: ``on_warning(data)``, with the bytes of each
                WORK_WARNING.
            on_status: ``on_status(numerator, denominator)``, both str.
            on_exception: ``on_exception(data)``, with the bytes of a
                WORK_EXCEPTION (the coroutine then raises JobException).
        Raises (when awaited): JobFailed, JobException (``.data``),
            JobTimeout, CommandTimeout, ConnectionLost, ServerError.
        Raises (at the call): TypeError / ValueError for bad arguments;
            GearmanError("not connected") on an unconfigured or closed object.
        """
        return self._submit_fg(CMD.SUBMIT_JOB, func, workload, unique, timeout, on_data,
                               on_warning, on_status, on_exception)

    def submit(self, func: Name, workload: Payload, *, priority: str = "normal",
               unique: Optional[Name] = None, timeout: Optional[float] = None) -> JobRun:
        """A foreground job, sent now, as a ``JobRun``: ``await run`` for the
        result, ``await run.created()`` for the handle, ``async for event in
        run.events()`` for its data, warning, status and exception events.

        Args:
            priority: ``"high"``, ``"normal"`` or ``"low"``.
            unique, timeout: as ``submit_job``.
        Raises: TypeError / ValueError for bad arguments; GearmanError("not
            connected") on an unconfigured or closed object.
        """
        cmd = _PRIORITIES.get(priority) if isinstance(priority, str) else None
        if cmd is None:
            if not isinstance(priority, str):
                raise TypeError("priority must be 'high', 'normal' or 'low'")
            raise ValueError(f"priority must be 'high', 'normal' or 'low', not {priority!r}")
        ukey = _args.unique(unique)
        run = JobRun(self._loop, self)
        self._send_fg(cmd, func, workload, timeout, run.submission(bool(ukey)), ukey)
        return run

    def _submit_bg(self, cmd: int, func: Name, workload: Payload, unique: Optional[Name],
                   epoch: Optional[bytes] = None) -> Coroutine[Any, Any, str]:
        fname = _args.function(func)
        ukey = _args.unique(unique)
        load = _args.payload(workload, "workload")
        reply = entry = ReplyEntry(K_SUBMIT_BG)
        if epoch is None:
            if len(fname) + len(ukey) + len(load) + 2 > MAX_PACKET:
                _args.check_size(fname, ukey, load)  # raises the ValueError
            self._check().send3(cmd, fname, ukey, load, entry)
        else:
            args = (fname, ukey, epoch, load)
            _args.check_size(*args)
            self._check().send(cmd, args, entry)
        return _reply(reply, self)

    def submit_job_bg(self, func: Name, workload: Payload, *,
                      unique: Optional[Name] = None) -> Coroutine[Any, Any, str]:
        """A background job: sends now; the coroutine returns its handle (str)
        once the server queued it."""
        return self._submit_bg(CMD.SUBMIT_JOB_BG, func, workload, unique)

    def submit_job_epoch(self, func: Name, workload: Payload, epoch: int, *,
                         unique: Optional[Name] = None) -> Coroutine[Any, Any, str]:
        """A background job run at ``epoch`` (int Unix seconds); the
        coroutine returns its handle."""
        when = _args.epoch(epoch)
        return self._submit_bg(CMD.SUBMIT_JOB_EPOCH, func, workload, unique, when)

    def get_status(self, handle: Name) -> Coroutine[Any, Any, Dict[str, Any]]:
        """GET_STATUS: returns ``{'handle', 'known', 'running', 'numerator',
        'denominator'}``; known/running are bools, the fractions str."""
        key = _args.handle(handle)
        return self._request(CMD.GET_STATUS, (key,), K_STATUS)

    def get_status_unique(self, unique: Name) -> Coroutine[Any, Any, Dict[str, Any]]:
        """GET_STATUS_UNIQUE: returns ``{'unique', 'known', 'running',
        'numerator', 'denominator', 'client_count'}`` (client_count int)."""
        key = _args.unique(unique)
        if not key:
            raise ValueError("unique must not be empty")
        return self._request(CMD.GET_STATUS_UNIQUE, (key,), K_STATUS_UNIQUE)

    def option(self, name: Name) -> Coroutine[Any, Any, bool]:
        """OPTION_REQ: returns True; "exceptions" is re-sent on every connect.

        Raises (when awaited): ServerError for an option the server refuses.
        """
        opt = _args.option_name(name)
        reply = Reply()
        self._check().option(opt, reply)
        return _reply(reply, self)

    # ===== Admin (API.md 7) =====

    def admin(self, command: Name) -> Coroutine[Any, Any, str]:
        """A text command: returns its reply (a block whole, lines ending in
        ``"\\n"``; a single line without its ending).

        Raises (when awaited): ServerError for an ``ERR ...`` reply.
        """
        cmd = _args.admin_command(command)
        reply = Reply()
        self._check().admin_command(cmd, reply)
        return _reply(reply, self)

    def server_status(self) -> Coroutine[Any, Any, str]:
        """``status``: lines ``FUNC\\tTOTAL\\tRUNNING\\tWORKERS``."""
        return self.admin("status")

    def server_workers(self) -> Coroutine[Any, Any, str]:
        """``workers``: one line per connection."""
        return self.admin("workers")

    def server_version(self) -> Coroutine[Any, Any, str]:
        """``version``: e.g. ``"OK 1.1.20+ds"``."""
        return self.admin("version")

    def maxqueue(self, func: Name, size: int) -> Coroutine[Any, Any, str]:
        """``maxqueue FUNC SIZE``: returns ``"OK"``."""
        return self.admin(_args.maxqueue_command(func, size))

    def shutdown_server(self, graceful: bool = False) -> Coroutine[Any, Any, str]:
        """``shutdown [graceful]`` (gearmand >= 1.1.15 answers ``ERR
        UNKNOWN_COMMAND``: ServerError)."""
        return self.admin("shutdown graceful" if graceful else "shutdown")

    # ===== Worker (API.md 6 and 10) =====

    def register_function(self, name: Name, func: Callable[[Job], Any], *,
                          timeout: Optional[float] = None) -> None:
        """Serve ``name`` with ``func(job)``: a plain function or an ``async
        def`` one (or any function returning an awaitable). Its return value
        (bytes, str or None) is the result; an exception fails the job
        (WORK_EXCEPTION with its text when ``exceptions`` is on, else
        WORK_FAIL). ``timeout``: seconds, sent as CAN_DO_TIMEOUT. Sent now if
        connected, and on every connect.
        """
        if not callable(func):
            raise TypeError("func must be callable as func(job)")
        self._can_do(name, timeout, Ability(_WorkerFunction(self, func), None, True))

    def all_yours(self) -> Coroutine[Any, Any, bool]:
        """ALL_YOURS: returns True if the server takes it silently; gearmand
        1.1 refuses it (ServerError ``INVALID_COMMAND``)."""
        reply = Reply()
        self._check().all_yours(reply)
        return _reply(reply, self)

    def grab_job(self) -> Coroutine[Any, Any, Optional[Job]]:
        """One GRAB_JOB (GRAB_JOB_UNIQ with ``grab_unique``): returns a
        ``Job`` to finish with its methods, or None when there is none."""
        reply = GrabReply()
        self._check().grab_job(reply)
        return _reply(reply, self)

    async def work(self, concurrency: int = 1) -> None:
        """Grab and run jobs, at most ``concurrency`` at once, until
        ``work_stop()``; return once the jobs in flight have finished.

        Sleeps (PRE_SLEEP) while no job is queued. Across a reconnect the
        abilities are re-sent and grabbing resumes. A job whose connection
        dropped is cancelled (``asyncio.CancelledError`` in its function):
        the server has requeued it, and its result could not be sent.
        Cancelling the task that awaits ``work()`` stops grabbing; jobs in
        flight still finish.

        Raises:
            ConnectionLost: the connection ended for good (``close()``, or a
                drop with no reconnect left).
            RuntimeError: ``work()`` is already running on this object.
        """
        limit = _args.concurrency(concurrency)
        if limit is None:
            raise TypeError("concurrency must be an int >= 1")
        await self._work_until(self._work_begin(limit))

    def _work_begin(self, limit: int) -> asyncio.Future[Optional[str]]:
        """``work()``'s start, synchronous (a pool starts every server's at
        once): the managed grab loop runs; the future is set when it ends."""
        s = self._check()
        if self._work_done is not None:
            raise RuntimeError("work() is already running on this object")
        done: asyncio.Future[Optional[str]] = self._loop.create_future()
        self._work_done = done
        self._work_gen += 1
        self._barrier_passed = False
        if s.state == DISCONNECTED:
            # Ended for good already: no later drop or close would end this.
            done.set_result(errors.DISCONNECTED)
            return done
        s.work(None, limit, False)
        return done

    async def _work_until(self, done: asyncio.Future[Optional[str]]) -> None:
        """``work()``'s end: until ``done``, then raise what ended it."""
        s = self._session
        try:
            err = await done
        except asyncio.CancelledError:
            s.work_stop()
            raise
        finally:
            self._work_done = None
        if err is not None:
            s.work_stop()  # a later connect() must not grab for a work() that ended
            raise errors.exception_for(err)

    def work_stop(self) -> None:
        """Stop grabbing: ``work()`` returns once the jobs in flight finished
        (and every GRAB already sent was answered: a job it brings still runs)."""
        s = self._check()
        s.work_stop()
        if self._work_done is None or self._barrier_passed:
            return
        if s.state == CONNECTED:
            # An ECHO behind the GRABs already sent: once it is answered,
            # every job they could bring has been started (FIFO replies).
            gen = self._work_gen
            s.send(CMD.ECHO_REQ, (b"",), Entry(K_ECHO, lambda r, e: self._barrier(gen)))
        else:
            self._barrier(self._work_gen)

    def _barrier(self, gen: int) -> None:
        if gen == self._work_gen:
            self._barrier_passed = True
            self._work_maybe_done()

    def _work_maybe_done(self) -> None:
        done = self._work_done
        if done is not None and self._barrier_passed and not self._jobs \
                and not self._session.working and not done.done():
            done.set_result(None)

    @property
    def jobs_running(self) -> int:
        """Jobs of ``async def`` functions running now (plain functions run
        to their end before anything else happens)."""
        return len(self._jobs)

    def _start_job(self, func: Callable[[Job], Any], job: Job) -> None:
        """A job the managed loop was assigned: run ``func`` now; if it gives
        an awaitable, await it in a task of its own."""
        s = self._session
        try:
            result = func(job)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._driver.park(exc)  # raised from the loop once this read is matched
            s.finish_job(job, None, exc)
            return
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure
            log.exception("gearman_ev: worker function for %r raised", job.function)
            s.finish_job(job, None, exc)
            return
        if not inspect.isawaitable(result):
            s.finish_job(job, result, None)
            return
        task = self._loop.create_task(self._run_job(job, result))
        self._jobs[task] = job
        task.add_done_callback(self._job_ended)

    async def _run_job(self, job: Job, awaitable: Awaitable[Any]) -> None:
        s = self._session
        try:
            result = await awaitable
        except asyncio.CancelledError as exc:
            # Cancelled by us (its connection is gone: nothing is sent) or by
            # someone else (the job fails, so its client is not left waiting).
            s.finish_job(job, None, exc)
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            s.finish_job(job, None, exc)
            raise  # asyncio raises it out of the loop
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure
            log.exception("gearman_ev: worker function for %r raised", job.function)
            s.finish_job(job, None, exc)
        else:
            s.finish_job(job, result, None)

    def _job_ended(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)
        if not self._jobs:
            self._work_maybe_done()


# ===== AsyncGearmanPool: many servers (API.md 11) =====

class _PoolFlush:
    """The pool's stand-in for a driver where replies and job runs ask for
    a flush behind the tasks they wake (see ``_settle``): the task may send
    its next request to any server, so every server's scheduled flush is
    run then. Each driver still flushes only when its transport is not
    paused for writing, which keeps rule 6 byte-exact."""

    __slots__ = ("_loop", "_drivers", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, drivers: List[AsyncioDriver]) -> None:
        self._loop = loop
        self._drivers = drivers
        self._handle: Optional[asyncio.Handle] = None

    def flush_soon(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._handle = None
        for d in self._drivers:
            d.flush_pending()


def _holder(sessions: List[Session], sub: Submission) -> int:
    """The server whose session holds ``sub`` under its handle (a handle
    names a job on one server only; another may hand out the same one)."""
    handle = sub.handle
    for i, s in enumerate(sessions):
        item = s._active.get(handle)  # type: ignore[arg-type]
        if item is sub or (type(item) is _session.Attached and sub in item.subs):
            return i
    return -1


class AsyncGearmanPool(_Priorities, PoolBase):
    """Several Gearman job servers as one client, worker and admin, on
    asyncio (API.md 11): the coroutine methods of ``AsyncGearman`` over one
    ``AsyncGearman`` per server (``pool.servers``).

    Must be created inside a running loop. Routing, failover, waiting for a
    server and the worker's one cap are ``GearmanPool``'s (the same
    ``_routing.Router`` over the connections' sessions)::

        async with AsyncGearmanPool(["10.0.0.1:4730", "10.0.0.2"]) as pool:
            result = await pool.submit_job("resize", image)              # round-robin
            result = await pool.submit_job("resize", image, unique=key)  # the key's server

    Args:
        servers: a list or tuple of server specs: ``"host:port"``,
            ``"host"`` (port 4730), ``"[v6addr]:port"``, ``"unix:/path"`` or
            ``(host, port)``. Each gets one connection.
        reconnect: as ``AsyncGearman``'s, but on by default: a server that
            drops or refuses is tried again every ``reconnect_delay`` seconds.
        connect_timeout: as ``AsyncGearman``'s, and also how long a request
            waits when no server is up; then it raises
            ``ConnectionLost("no server available")`` (0: it waits as long
            as it takes).

    The other keyword arguments (``ssl``, ``server_hostname``,
    ``keepalive``, ``command_timeout``, ``reconnect_delay``,
    ``max_reconnect_attempts``, ``exceptions``, ``client_id``,
    ``grab_unique``, ``high_water``, ``on_error``, ``on_connect``,
    ``on_disconnect``) are ``AsyncGearman``'s, applied to each connection;
    the callbacks fire for each server.

    A request that no server wrote when its server dropped is sent to
    another (``rerouted_count``); a foreground job already created on a
    server that drops raises ``ConnectionLost("disconnected")`` (it may
    have run: it is never resubmitted).

    ``grab_job``, ``all_yours`` and ``shutdown_server`` concern one
    server: call them on ``pool.servers[i]``, which may also be used alone
    as any ``AsyncGearman`` (its submissions fail over like the pool's).

    Raises:
        RuntimeError: no running event loop.
        TypeError, ValueError: bad servers or options (before any I/O).
    """

    _servers: Tuple[AsyncGearman, ...]

    def __init__(self, servers: Sequence[Union[str, Tuple[str, int]]], *,
                 ssl: Union[None, bool, _ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None, keepalive: float = 0,
                 connect_timeout: float = 0, command_timeout: float = 0,
                 reconnect: bool = True, reconnect_delay: float = 1.0,
                 max_reconnect_attempts: int = 0, exceptions: bool = False,
                 client_id: Optional[Name] = None, grab_unique: bool = False,
                 high_water: int = 64 * 1024 * 1024, on_error: Handler = None,
                 on_connect: Handler = None, on_disconnect: Handler = None) -> None:
        self._router: Optional[Router] = None  # until set-up is complete, __del__ has nothing to do
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("AsyncGearmanPool must be created inside a running asyncio "
                               "loop (in a coroutine)") from None
        specs = parse_servers(servers)
        if ssl is not None and ssl is not False and \
                any(spec.address[0] == "unix" for spec in specs):
            raise ValueError("ssl is for TCP connections, not a Unix socket")
        # Unconfigured first: the options are checked by the first one, and
        # nothing connects before every connection has joined the router.
        conns = tuple(
            AsyncGearman(ssl=ssl, server_hostname=server_hostname, keepalive=keepalive,
                         connect_timeout=connect_timeout, command_timeout=command_timeout,
                         reconnect=reconnect, reconnect_delay=reconnect_delay,
                         max_reconnect_attempts=max_reconnect_attempts, exceptions=exceptions,
                         client_id=client_id, grab_unique=grab_unique, high_water=high_water,
                         on_error=on_error, on_connect=on_connect, on_disconnect=on_disconnect)
            for _ in specs)
        self._loop = loop
        self._thread = _get_ident()
        self._servers = conns
        self._specs = specs
        self._driver = _PoolFlush(loop, [g._driver for g in conns])
        first = conns[0]._driver

        def call(func: Callable[..., Any], *args: Any) -> Any:
            try:
                return func(*args)
            except (KeyboardInterrupt, SystemExit) as exc:
                first.park(exc)  # raised from the loop, after this event is handled
            except BaseException:  # noqa: BLE001 - a user callback must not break us
                log.exception("gearman_ev: exception in callback %r", func)
            return None
        self._call = call
        # The router's one timer; it holds the router weakly, so a dropped
        # pool is freed at once.
        timer: List[Optional[asyncio.TimerHandle]] = [None]
        self._timer = timer
        router_ref: Callable[[], Optional[Router]] = lambda: None

        def fire() -> None:
            timer[0] = None
            r = router_ref()
            if r is not None:
                r.on_deadline()

        def set_deadline(when: float) -> None:
            if timer[0] is not None:
                timer[0].cancel()
                timer[0] = None
            if when:
                timer[0] = loop.call_at(when, fire)

        router = Router([s.name for s in specs], [g._session for g in conns],
                        wait_timeout=conns[0].connect_timeout, now=loop.time,
                        set_deadline=set_deadline, call=call)
        router_ref = weakref.ref(router)
        self._router = router
        self._working = False
        for g, spec in zip(conns, specs):
            if spec.address[0] == "unix":
                g.connect_unix(spec.address[1])
            else:
                g.connect(spec.address[1], spec.address[2])

    # ===== Lifecycle =====

    async def __aenter__(self) -> AsyncGearmanPool:
        try:
            await self.wait_connected()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __del__(self) -> None:
        router = getattr(self, "_router", None)
        if router is None or self._servers[0]._session._fork_gen != _session._fork_gen:
            return  # not set up; or inherited across fork: the parent's, not to touch
        try:
            handle = self._timer[0]
            if handle is not None:
                handle.cancel()
            router.close()  # what waited for a server gets "disconnected"
        except Exception:  # noqa: BLE001 - nothing may escape a finalizer (loop closed)
            pass

    def _check(self) -> Router:
        """The router, if this thread and process may use the pool now."""
        if self._servers[0]._session._fork_gen != _session._fork_gen:
            raise errors.GearmanError(errors.USED_AFTER_FORK)
        if _get_ident() != self._thread:
            raise errors.GearmanError(errors.WRONG_THREAD)
        return self._r

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Wait until any one server is connected (at once if one is): the
        pool can take requests then; each keyed request still goes to its
        key's server. (To wait for every server, gather the servers'
        own: ``await asyncio.gather(*(g.wait_connected() for g in
        pool.servers))``.)

        Args:
            timeout: seconds, or None to wait as long as the pool's
                ``connect_timeout`` allows (no limit if it is 0).
        Raises:
            ConnectionLost: ``"no server available"`` when no server came
                up within ``connect_timeout``; ``"disconnected"`` when no
                server is connecting or will reconnect, or on ``close()``.
            asyncio.TimeoutError: ``timeout`` passed.
        """
        if timeout is not None:
            timeout = _args.seconds("timeout", timeout)
        router = self._check()
        fut: asyncio.Future[Optional[str]] = self._loop.create_future()

        def go() -> None:
            if not fut.done():
                fut.set_result(None)

        def fail(err: str) -> None:
            if not fut.done():
                fut.set_result(err)
        try:
            router.when_up(go, fail)
        except errors.GearmanError:
            raise errors.ConnectionLost(errors.DISCONNECTED) from None
        err = await (fut if timeout is None else asyncio.wait_for(fut, timeout))
        if err is not None:
            raise errors.exception_for(err)

    async def close(self) -> None:
        """Close every connection and wait until the sockets are closed.

        Every request still awaiting its reply raises ``ConnectionLost``
        (once), requests waiting for a server too, as do
        ``wait_connected()`` and ``work()``; jobs this worker was running
        are cancelled. Requests after this raise ``GearmanError("not
        connected")``. Closing twice is harmless.
        """
        router = self._check()
        router.closing = True  # what a closing server never wrote fails here, not elsewhere
        try:
            for g in self._servers:
                g._shut()
            router.fail_parked(errors.DISCONNECTED)
        finally:
            router.closing = False
        await asyncio.gather(*(g._driver.wait_closed() for g in self._servers))

    # ===== Introspection =====

    @property
    def servers(self) -> Tuple[AsyncGearman, ...]:
        """The connections, one ``AsyncGearman`` per server, in the given order."""
        return self._servers

    @property
    def server_names(self) -> Tuple[str, ...]:
        """Each server's canonical spec (``"host:port"``, ``"[v6]:port"``,
        ``"unix:/path"``), in the given order: the keys of admin replies."""
        return tuple(s.name for s in self._specs)

    @property
    def is_connected(self) -> bool:
        """True while any server is connected."""
        return any(s.state == CONNECTED for s in self._r.sessions)

    @property
    def jobs_running(self) -> int:
        """Jobs of ``async def`` worker functions running now, over every server."""
        return sum(g.jobs_running for g in self._servers)

    # ===== Client (API.md 5 and 11, routed) =====

    def echo(self, data: Payload) -> Coroutine[Any, Any, bytes]:
        """ECHO_REQ to the next connected server; returns the echoed bytes.

        Raises (when awaited): ConnectionLost (``"no server available"``
        when none came up within ``connect_timeout``).
        """
        payload = _args.payload(data)
        _args.check_size(payload)
        reply = ReplyEntry(K_ECHO)
        self._check().dispatch(CMD.ECHO_REQ, (payload,), reply, None)
        return _reply(reply, self)

    def _send_fg(self, cmd: int, func: Name, workload: Payload, timeout: Optional[float],
                 sub: Submission, ukey: bytes) -> None:
        """Check the rest of a foreground submission's arguments; route it."""
        fname = _args.function(func)
        load = _args.payload(workload, "workload")
        seconds = _args.timeout(timeout) if timeout is not None else 0.0
        if len(fname) + len(ukey) + len(load) + 2 > MAX_PACKET:
            _args.check_size(fname, ukey, load)  # raises the ValueError
        router = self._check()
        i = router.pick(ukey or None)
        if i < 0:
            router.dispatch(cmd, (fname, ukey, load), sub, ukey or None, seconds)
            return
        s = router.sessions[i]  # the hot path: straight to the session, no tuple
        s.send3(cmd, fname, ukey, load, sub)
        if seconds:
            s.set_job_deadline(sub, seconds)

    def submit_job(self, func: Name, workload: Payload, *, unique: Optional[Name] = None,
                   timeout: Optional[float] = None, on_data: Handler = None,
                   on_warning: Handler = None, on_status: Handler = None,
                   on_exception: Handler = None) -> Coroutine[Any, Any, bytes]:
        """A foreground job on the server routing picks (``unique``: the
        key's server; else the next connected one); the coroutine returns
        the result bytes. Arguments as ``AsyncGearman.submit_job``.

        Raises (when awaited): JobFailed, JobException, JobTimeout,
            CommandTimeout, ServerError; ConnectionLost with
            ``"no server available"`` (no server came up within
            ``connect_timeout``) or ``"disconnected"`` (its server dropped
            after the job was handed to it: it may have run).
        Raises (at the call): TypeError / ValueError for bad arguments;
            GearmanError("not connected") once no server ever will be.
        """
        return self._submit_fg(CMD.SUBMIT_JOB, func, workload, unique, timeout, on_data,
                               on_warning, on_status, on_exception)

    def submit(self, func: Name, workload: Payload, *, priority: str = "normal",
               unique: Optional[Name] = None, timeout: Optional[float] = None) -> JobRun:
        """A foreground job, routed as ``submit_job``, as a ``JobRun``
        (see ``AsyncGearman.submit``). Once created, ``pool.get_status(run.handle)``
        asks the server that holds it.

        Raises: TypeError / ValueError for bad arguments; GearmanError("not
            connected") once no server ever will be.
        """
        cmd = _PRIORITIES.get(priority) if isinstance(priority, str) else None
        if cmd is None:
            if not isinstance(priority, str):
                raise TypeError("priority must be 'high', 'normal' or 'low'")
            raise ValueError(f"priority must be 'high', 'normal' or 'low', not {priority!r}")
        ukey = _args.unique(unique)
        run = JobRun(self._loop, self)
        sub = run.submission(bool(ukey))
        router = self._r
        sessions = router.sessions

        def created(handle: str) -> None:
            i = _holder(sessions, sub)  # the server that created it (state is set: rule 2)
            if i >= 0:
                router.remember(handle, i)
            run._created(handle)

        def finish(result: Optional[bytes], err: Optional[str]) -> None:
            if run.handle is not None:
                router.forget(run.handle)
            run._finish(result, err)
        sub.cb = finish
        sub.on_created = created
        self._send_fg(cmd, func, workload, timeout, sub, ukey)
        return run

    def _submit_bg(self, cmd: int, func: Name, workload: Payload, unique: Optional[Name],
                   epoch: Optional[bytes] = None) -> Coroutine[Any, Any, str]:
        fname = _args.function(func)
        ukey = _args.unique(unique)
        load = _args.payload(workload, "workload")
        args: Tuple[Any, ...]
        if epoch is None:
            if len(fname) + len(ukey) + len(load) + 2 > MAX_PACKET:
                _args.check_size(fname, ukey, load)  # raises the ValueError
            args = (fname, ukey, load)
        else:
            args = (fname, ukey, epoch, load)
            _args.check_size(*args)
        router = self._check()
        # The server that creates the handle notes it with the router
        # (Router.created), for get_status.
        reply = ReplyEntry(K_SUBMIT_BG)
        i = router.pick(ukey or None)
        if i < 0 or epoch is not None:
            router.dispatch(cmd, args, reply, ukey or None)
        else:
            router.sessions[i].send3(cmd, fname, ukey, load, reply)  # the hot path
        return _reply(reply, self)

    def submit_job_bg(self, func: Name, workload: Payload, *,
                      unique: Optional[Name] = None) -> Coroutine[Any, Any, str]:
        """A background job on the server routing picks; the coroutine
        returns its handle (str). The pool remembers which server holds it,
        for ``get_status``.

        Raises (when awaited): ConnectionLost, ServerError.
        """
        return self._submit_bg(CMD.SUBMIT_JOB_BG, func, workload, unique)

    def submit_job_epoch(self, func: Name, workload: Payload, epoch: int, *,
                         unique: Optional[Name] = None) -> Coroutine[Any, Any, str]:
        """A background job run at ``epoch`` (int Unix seconds), routed as
        ``submit_job_bg``; the coroutine returns its handle."""
        when = _args.epoch(epoch)
        return self._submit_bg(CMD.SUBMIT_JOB_EPOCH, func, workload, unique, when)

    def get_status(self, handle: Name) -> Coroutine[Any, Any, Dict[str, Any]]:
        """GET_STATUS: returns ``{'handle', 'known', 'running', 'numerator',
        'denominator'}``. A handle this pool created (a background job's, a
        ``JobRun``'s) is asked of the server that holds it; any other of
        every connected server, and the first that knows it answers (none
        does: the "unknown" reply).

        Raises (when awaited): ConnectionLost (``"no server available"``
        when no server came up in time; the first error when some server
        failed and none knew the handle).
        """
        key = _args.handle(handle)
        router = self._check()
        name = key.decode("utf-8", "surrogateescape")
        reply = Reply()
        i = router.server_of(name)
        if i is not None and router.sessions[i].state == CONNECTED:
            def known(result: Any, err: Optional[str]) -> None:
                if err is None and not result["known"]:
                    router.forget(name)  # its job ended: the handle is free memory
                reply(result, err)
            router.sessions[i].send(CMD.GET_STATUS, (key,), Entry(K_STATUS, known))
            return _reply(reply, self)

        def everywhere() -> None:
            up = [j for j, s in enumerate(router.sessions) if s.state == CONNECTED]
            ask = FirstKnown(up, reply, self._call, lambda j: router.remember(name, j))
            router.ask_each(up, CMD.GET_STATUS, (key,), K_STATUS, ask.part)

        router.when_up(everywhere, lambda err: reply(None, err))
        return _reply(reply, self)

    def get_status_unique(self, unique: Name) -> Coroutine[Any, Any, Dict[str, Any]]:
        """GET_STATUS_UNIQUE on the key's server (where its submissions
        went): returns ``{'unique', 'known', 'running', 'numerator',
        'denominator', 'client_count'}``."""
        key = _args.unique(unique)
        if not key:
            raise ValueError("unique must not be empty")
        reply = ReplyEntry(K_STATUS_UNIQUE)
        self._check().dispatch(CMD.GET_STATUS_UNIQUE, (key,), reply, key)
        return _reply(reply, self)

    def option(self, name: Name) -> Coroutine[Any, Any, bool]:
        """OPTION_REQ on every server: returns True once each accepted it.
        "exceptions" is remembered by every connection and sent on each
        connect.

        Raises (when awaited): the first server's error (ServerError for a
            refused option; ConnectionLost for a server that is down).
        """
        opt = _args.option_name(name)
        router = self._check()
        if opt.lower() == b"exceptions":
            for s in router.sessions:
                s.exceptions = True
        reply = Reply()

        def collapse(results: Dict[str, Any], err: Optional[str]) -> None:
            reply(None if err else True, err)
        self._each(lambda s, part: s.option(opt, part), collapse)
        return _reply(reply, self)

    def _each(self, send: Callable[[Session, Callable[..., Any]], None],
              cb: Callable[[Dict[str, Any], Optional[str]], None]) -> None:
        """One request per server, one ``cb({name: result}, first_err)``;
        servers still making their first connect are waited for."""
        router = self._r
        gather = Gather(router.names, cb, self._call)
        for i, s in enumerate(router.sessions):
            part = gather.part(i)
            router.to_server(i, lambda s=s, part=part: send(s, part),  # type: ignore[misc]
                             lambda err, part=part: part(None, err))  # type: ignore[misc]

    # ===== Admin (API.md 7 and 11: one reply per server) =====

    def admin(self, command: Name) -> Coroutine[Any, Any, Dict[str, str]]:
        """A text command on every server: returns ``{server_spec: text}``
        in the given order. Servers still making their first connect are
        waited for.

        Raises (when awaited): the exception of the first server (in the
            given order) that failed: ServerError for ``ERR ...``,
            ConnectionLost for a server that is down. Its ``results``
            attribute holds the dict, None for each server that failed.
        """
        cmd = _args.admin_command(command)
        self._check()
        reply = Reply()

        def done(results: Dict[str, Any], err: Optional[str]) -> None:
            reply(results, err)
        self._each(lambda s, part: s.admin_command(cmd, part), done)
        return self._gathered(reply)

    async def _gathered(self, reply: Reply) -> Dict[str, str]:
        try:
            return await _reply(reply, self)  # type: ignore[no-any-return]
        except errors.GearmanError as exc:
            setattr(exc, "results", reply.result)  # the servers that answered
            raise

    def server_status(self) -> Coroutine[Any, Any, Dict[str, str]]:
        """``status`` on every server: ``{spec: text}``, each text lines
        ``FUNC\\tTOTAL\\tRUNNING\\tWORKERS``. Raises as ``admin``."""
        return self.admin("status")

    def server_workers(self) -> Coroutine[Any, Any, Dict[str, str]]:
        """``workers`` on every server: ``{spec: text}``. Raises as ``admin``."""
        return self.admin("workers")

    def server_version(self) -> Coroutine[Any, Any, Dict[str, str]]:
        """``version`` on every server: ``{spec: "OK 1.1.20+ds"}``. Raises as ``admin``."""
        return self.admin("version")

    def maxqueue(self, func: Name, size: int) -> Coroutine[Any, Any, Dict[str, str]]:
        """``maxqueue FUNC SIZE`` on every server: ``{spec: "OK"}``."""
        return self.admin(_args.maxqueue_command(func, size))

    def shutdown_server(self, graceful: bool = False) -> Coroutine[Any, Any, Dict[str, str]]:
        """``shutdown [graceful]`` on every server: ``{spec: text}``
        (gearmand >= 1.1.15 answers ERR UNKNOWN_COMMAND). Raises as ``admin``."""
        return self.admin("shutdown graceful" if graceful else "shutdown")

    def all_yours(self) -> Coroutine[Any, Any, Dict[str, Any]]:
        """ALL_YOURS on every server: ``{spec: True}``; gearmand 1.1 refuses
        it (ServerError ``INVALID_COMMAND``). Raises as ``admin``."""
        self._check()
        reply = Reply()
        self._each(lambda s, part: s.all_yours(part), reply)
        return self._gathered(reply)

    # ===== Worker (API.md 6, 10 and 11: every server) =====

    def register_function(self, name: Name, func: Callable[[Job], Any], *,
                          timeout: Optional[float] = None) -> None:
        """Serve ``name`` with ``func(job)`` (a plain or an ``async def``
        function, as ``AsyncGearman.register_function``) on every server;
        re-sent to a server each time it connects."""
        if not callable(func):
            raise TypeError("func must be callable as func(job)")
        _args.function(name)
        _args.timeout(timeout)
        self._check()
        for g in self._servers:
            g.register_function(name, func, timeout=timeout)

    async def work(self, concurrency: int = 1) -> None:
        """Grab and run jobs from every server, at most ``concurrency`` at
        once across all of them (the free slots dealt to the servers in
        turn), until ``work_stop()``; return once the jobs in flight have
        finished. A server that is down does not stop the others; when it
        comes back, the abilities are re-sent and grabbing resumes there. A
        job whose server dropped is cancelled, as with ``AsyncGearman``.
        Cancelling the task that awaits ``work()`` stops grabbing.

        Raises:
            ConnectionLost: every server's connection ended for good
                (``close()``, or no reconnect left on any).
            RuntimeError: ``work()`` is already running on this pool.
            GearmanError: ``"not connected"`` (at the call) on a pool
                that was closed.
        """
        limit = _args.concurrency(concurrency)
        if limit is None:
            raise TypeError("concurrency must be an int >= 1")
        router = self._check()
        if self._working or any(g._work_done is not None for g in self._servers):
            raise RuntimeError("work() is already running on this pool")
        router.check_open()
        cap = GrabCap(router.sessions, limit)
        cap.hold = True  # none grabs before every server's loop is on
        for s in router.sessions:
            s.grab_cap = cap
        dones = [g._work_begin(limit) for g in self._servers]
        router.hold_grabs(cap)
        cap.share()
        self._working = True
        try:
            outcomes = await asyncio.gather(
                *(g._work_until(d) for g, d in zip(self._servers, dones)),
                return_exceptions=True)
        finally:
            self._working = False
            if router.grab_cap is cap:
                router.hold_grabs(None)
                for s in router.sessions:
                    if s.grab_cap is cap:
                        s.grab_cap = None
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if len(failures) == len(outcomes):
            raise failures[0]
        for o in failures:
            if not isinstance(o, errors.ConnectionLost):
                raise o  # a server that ended for good does not stop the others

    def work_stop(self) -> None:
        """Stop grabbing on every server: ``work()`` returns once the jobs
        in flight finished."""
        self._check()
        for g in self._servers:
            g.work_stop()
