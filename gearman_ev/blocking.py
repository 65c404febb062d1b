"""gearman_ev.blocking: a Gearman client for threaded code (API.md 12).

For programs without an event loop (WSGI apps, scripts, task runners)::

    from gearman_ev.blocking import GearmanClient

    with GearmanClient(["127.0.0.1:4730"]) as client:     # or "host:port"
        client.submit_job("reverse", b"hi", timeout=5)    # -> b"ih", or raises
        client.submit_job_bg("mail", b"...")              # -> the handle (str)
        client.submit_jobs([("reverse", b"a"), ("reverse", b"b")])  # -> [b"a", b"b"]
        future = client.submit_job_future("reverse", b"x")  # concurrent.futures

The client has a private libev loop and a daemon thread that runs it.
Every method may be called from any thread at once, and blocks until its
reply is in. A call that finds the loop idle runs it itself until then (no
thread hand-off: one call at a time costs about what the libev front-end
costs); a call made while another thread runs the loop, or from the main
thread, hands its request over and waits. A failure is raised as the
exception of API.md 16 for its err string (``gearman_ev.errors``):
``JobFailed``, ``JobException`` (``.data``), ``JobTimeout``,
``CommandTimeout``, ``ConnectionLost``, ``ServerError``, or a plain
``GearmanError``.

Two kinds of timeout, never confused: a job's ``timeout=`` (``submit_job``,
``submit_jobs``, ``submit_job_future``) is the job's own deadline and raises
``JobTimeout``; the ``timeout=`` of every other call only bounds the wait and
raises the built-in ``TimeoutError``. Either way the request stays sent (the
protocol cannot take it back) and its late reply is dropped.

What must stay true here:
- One thread at a time runs the loop and touches the connections: the one
  holding ``_Core.own``. Other threads only append to the hand-off queue
  (under ``_Core.lock``, which also orders every request before the close)
  and wake the loop with one ``ev.Async`` send.
- No request is left without a thread to run the loop for it: whoever lets
  go of ``own`` while a request is unanswered (``started != finished``)
  wakes the daemon thread, which runs the loop until none is.
- Every waiting call is released exactly once: by its reply, by the
  "disconnected" drain of ``close()``, or by the exception that kept its
  request from being sent.
- Arguments are checked in the caller's thread, before the state checks
  ("client closed"), so a bad call fails the same way in every state.
- How the client reaches its servers is decided in one place,
  ``_connect()``: a ``Gearman`` for one server, a ``GearmanPool`` (API.md 11)
  for several.
- In a forked child nothing inherited from the parent is used: the first
  call builds a new loop, thread and connection.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from concurrent.futures import Future, InvalidStateError
from functools import partial
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, List, Mapping, Optional,
                    Sequence, Tuple, Union)

from . import _args, errors, ev
from ._gearman import Gearman
from ._pool import GearmanPool
from ._routing import ServerSpec as ServerSpec_
from ._routing import parse_servers

if TYPE_CHECKING:
    import ssl as _ssl  # the parameter is called ssl

__all__ = ["GearmanClient", "ServerSpec"]

log = logging.getLogger("gearman_ev")

#: A server: ``"host:port"``, ``"host"`` (port 4730), ``"[v6addr]:port"``,
#: ``"unix:/path"``, or a ``(host, port)`` tuple.
ServerSpec = Union[str, Tuple[str, int]]
Name = Union[str, bytes]
Payload = Union[bytes, bytearray, memoryview, str]
Callback = Callable[[Any, Optional[str]], None]
JobSpec = Union[Tuple[Name, Payload], Tuple[Name, Payload, Optional[Name]]]

DEFAULT_PORT = 4730
_PRIORITIES = ("high", "normal", "low")
_get_ident = threading.get_ident
_allocate_lock = threading.Lock
_monotonic = time.monotonic


# ===== Fork =====

# Bumped in a forked child: a client whose _Core was built under an older
# generation builds a new one on its next call (the parent's loop thread does
# not exist in the child, and its connection is the parent's).
_fork_gen = 0
_respawn_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _fork_gen, _respawn_lock
    _fork_gen += 1
    _respawn_lock = threading.Lock()  # another thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ===== Server specs and the one connection factory =====

def _server_list(servers: Any) -> List[ServerSpec_]:
    """One spec or a list of them, parsed as GearmanPool parses them."""
    if isinstance(servers, str) or (isinstance(servers, tuple) and len(servers) == 2
                                    and isinstance(servers[1], int)):
        servers = [servers]
    elif isinstance(servers, (bytes, bytearray)) or not hasattr(servers, "__iter__"):
        raise TypeError("servers must be a server spec or a list of them")
    return parse_servers(list(servers))


class _Health:
    """Which of a client's connections are up, kept by their on_connect /
    on_disconnect / on_error hooks (which log errors as Gearman's default
    on_error does). ``settled()``: no connection is on its way up, so the
    loop has nothing to do until a request comes."""

    def __init__(self, names: List[str]) -> None:
        self.names = names
        self.up = [False] * len(names)
        self.gave_up = [False] * len(names)
        self.conns: List[Gearman] = []
        self.changed: Optional[Callable[[], None]] = None

    def watch(self, i: int, g: Gearman) -> None:
        self.conns.append(g)
        g.on_connect = partial(self._connected, i)
        g.on_disconnect = partial(self._lost, i)
        g.on_error = partial(self._error, i)

    def _connected(self, i: int) -> None:
        self.up[i] = True
        self.gave_up[i] = False
        if self.changed is not None:
            self.changed()

    def _lost(self, i: int) -> None:
        self.up[i] = False

    def _error(self, i: int, err: str) -> None:
        self.up[i] = False
        if err == errors.MAX_RECONNECTS:
            self.gave_up[i] = True
        log.warning("%s: %s", self.names[i], err)
        if self.changed is not None:
            self.changed()

    def may_come_up(self, i: int) -> bool:
        g = self.conns[i]
        return g.is_connected or (g.reconnect_enabled and not self.gave_up[i])

    def settled(self) -> bool:
        up = self.up
        return all(up) or all(u or not self.may_come_up(i) for i, u in enumerate(up))


def _connect(specs: List[ServerSpec_], loop: ev.Loop,
             options: Mapping[str, Any]) -> Tuple[_Conn, _Health]:
    """The client's connection(s) on ``loop``, and their health: the one
    place that knows how servers are reached. One server: a ``Gearman``;
    several: a ``GearmanPool`` (API.md 11: routing by unique key, failover
    of requests not yet written). Both have the same callback API."""
    health = _Health([s.name for s in specs])
    if len(specs) == 1:
        address = specs[0].address
        if address[0] == "unix":
            g = Gearman(path=address[1], loop=loop, **options)
        else:
            g = Gearman(address[1], address[2], loop=loop, **options)
        health.watch(0, g)
        return g, health
    pool = GearmanPool([s.name for s in specs], loop, **options)
    for i, g in enumerate(pool.servers):
        health.watch(i, g)  # the pool relies on no per-server hook of its own
    return pool, health


_Conn = Union[Gearman, GearmanPool]


# ===== Waiting for a reply =====
# Every waiter is counted: ``_Core.started`` when its request is handed in,
# ``_Core.finished`` when it is answered (only ever by the thread that runs
# the loop). The lock a waiter is created holding is released exactly once,
# when it is answered: it is what the caller blocks on.

class _Call:
    """One blocking call: its reply lands here and releases the caller."""

    __slots__ = ("core", "lock", "result", "err", "data", "exc")

    def __init__(self, core: _Core) -> None:
        self.core = core
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.result: Any = None
        self.err: Optional[str] = None
        self.data: Optional[bytes] = None
        self.exc: Optional[BaseException] = None

    def done(self, result: Any, err: Optional[str]) -> None:
        self.result = result
        self.err = err
        self.core.answered(self)
        self.lock.release()

    def on_exception(self, data: bytes) -> None:
        self.data = data

    def fail(self, exc: BaseException) -> None:
        """The request was refused before it was queued."""
        self.exc = exc
        self.core.answered(self)
        self.lock.release()

    def outcome(self) -> Any:
        """The reply, or raise (once answered)."""
        if self.exc is not None:
            raise self.exc
        if self.err is not None:
            raise errors.exception_for(self.err, self.data)
        return self.result


class _Batch:
    """``submit_jobs``: every job's reply lands in its own slot; the last
    one releases the caller."""

    __slots__ = ("core", "lock", "results", "errs", "data", "left", "exc")

    def __init__(self, core: _Core, n: int) -> None:
        self.core = core
        self.lock = _allocate_lock()
        self.lock.acquire()
        self.results: List[Any] = [None] * n
        self.errs: List[Optional[str]] = [None] * n
        self.data: Dict[int, bytes] = {}
        self.left = n
        self.exc: Optional[BaseException] = None

    def done(self, i: int, result: Any, err: Optional[str]) -> None:
        self.results[i] = result
        self.errs[i] = err
        self.left -= 1
        if self.left == 0:
            self.core.answered(self)
            self.lock.release()

    def on_exception(self, i: int, data: bytes) -> None:
        self.data[i] = data

    def fail(self, exc: BaseException) -> None:
        if self.exc is None and self.left > 0:
            self.exc = exc
            self.left = -1  # the replies still to come no longer count
            self.core.answered(self)
            self.lock.release()


class _FutureCall:
    """``submit_job_future``: the reply completes a Future, in the thread
    that runs the loop (where the Future's done-callbacks then run)."""

    __slots__ = ("core", "future", "data")

    def __init__(self, core: _Core, future: Future[Any]) -> None:
        self.core = core
        self.future = future
        self.data: Optional[bytes] = None

    def done(self, result: Any, err: Optional[str]) -> None:
        if err is None:
            self._settle(result, None)
        else:
            self._settle(None, errors.exception_for(err, self.data))

    def on_exception(self, data: bytes) -> None:
        self.data = data

    def fail(self, exc: BaseException) -> None:
        self._settle(None, exc)

    def _settle(self, result: Any, exc: Optional[BaseException]) -> None:
        self.core.answered(self)  # first: a done-callback may raise anything
        future = self.future
        if future.cancelled():
            return  # the caller gave up on it: the result is dropped
        try:
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
        except InvalidStateError:
            pass  # cancelled from another thread just now


_Waiter = Union[_Call, _Batch, _FutureCall]
_Item = Tuple[Optional[_Waiter], Callable[..., None], Tuple[Any, ...], Dict[str, Any]]


# ===== Who runs the loop =====

#: How often the client's thread runs the loop once when it has nothing to
#: wait for: a connection that dropped meanwhile is seen (and reconnected)
#: within this many seconds.
IDLE_CHECK = 0.25
#: A call that finds the loop unwatched for this long runs it once before
#: sending: a drop that happened meanwhile is handled before its request.
_IDLE_GAP = 0.05
#: After a call from the main thread, the daemon thread stays in the loop
#: this long for the next one (waking it there costs less than from its sleep).
_LINGER = 0.05


class _Core:
    """One process's loop, connection(s) and daemon thread for a client.

    The loop runs in one thread at a time, the one holding ``own``: the
    daemon thread, or a thread inside a blocking call. A blocking call that
    finds ``own`` free takes it and runs the loop itself until its reply is
    in (it leads): no thread hand-off at all, so a thread making one call at
    a time pays what the libev front-end pays. A call that finds ``own``
    taken hands its request over (the queue and one Async send) and waits
    on its own lock; the holder sends it. The main thread always hands over
    (see ``call``), and the daemon thread then stays in the loop for
    _LINGER seconds, where the next hand-off wakes it for less. Whoever
    lets go of ``own`` with a request unanswered wakes the daemon thread,
    which runs the loop until every request is answered (futures too), and
    while a connection is on its way up. With nothing to wait for, the
    daemon runs the loop once every IDLE_CHECK seconds, so that a
    connection the server closed is noticed and reconnected without a
    request.
    """

    def __init__(self, specs: List[ServerSpec_], options: Mapping[str, Any]) -> None:
        self.gen = _fork_gen
        self.loop = ev.Loop()
        # Made here, in the caller's thread, before any thread runs the loop:
        # a bad option raises from the constructor, and the connect starts now.
        conn, self.health = _connect(specs, self.loop, options)
        self.health.changed = self._idle
        self.conn = conn
        self.submit_fg: Dict[str, Callable[..., None]] = {
            "high": conn.submit_job_high, "normal": conn.submit_job, "low": conn.submit_job_low}
        self.submit_bg: Dict[str, Callable[..., None]] = {
            "high": conn.submit_job_high_bg, "normal": conn.submit_job_bg,
            "low": conn.submit_job_low_bg}
        self.lock = threading.Lock()  # guards queue, closed and started
        self.own = threading.Lock()
        # The daemon thread sleeps on it; ring() releases it. A binary
        # semaphore: a ring that comes before the sleep is not lost.
        self.bell = threading.Lock()
        self.bell.acquire()
        self.runner: Optional[int] = None  # the thread holding own, while it does
        self.queue: Deque[_Item] = collections.deque()
        self.started = 0
        self.finished = 0
        self.closed = False  # close() was called: no new request
        self.down = False  # the shutdown ran: nothing left to run
        self.last_run = 0.0
        self.hold = False  # the Async's drain waits (see _catch_up)
        self.leading: Optional[_Waiter] = None  # the waiter of the thread that leads
        self.linger_until = 0.0
        self.lingering = False  # the linger timer runs (a flag: no C call to ask)
        # While the daemon thread lingers: every _LINGER s, see whether to stop.
        self.linger = self.loop.timer(_LINGER, _LINGER, lambda w, r: self._idle())
        self.main = threading.main_thread().ident
        # A hand-off's wake-up call for whoever runs the loop; it also keeps
        # the loop's start() from returning for want of watchers.
        self.wake = self.loop.async_(self._drain)
        self.wake.start()
        self.thread = threading.Thread(target=self._daemon, name="gearman_ev-blocking",
                                       daemon=True)
        self.thread.start()

    # -- from the callers' threads --

    def call(self, waiter: Union[_Call, _Batch], fn: Callable[..., None],
             args: Tuple[Any, ...], kwargs: Dict[str, Any], timeout: float) -> bool:
        """Run ``fn(*args, **kwargs)`` on the connection and wait until
        ``waiter`` is answered; False if ``timeout`` (seconds, 0: none) passed
        first.

        Raises: GearmanError("client closed"), GearmanError("wrong thread")
        from the thread running the loop (it would wait for itself).
        """
        me = _get_ident()
        with self.lock:
            if self.closed:
                raise errors.GearmanError(errors.CLIENT_CLOSED)
            if self.runner == me:
                raise errors.GearmanError(errors.WRONG_THREAD)
            self.started += 1
            lead = self.own.acquire(False)
            ring = False
            if me == self.main:
                # ev.Loop.start() in the main thread installs and removes a
                # SIGINT handler and a wakeup fd each time (six system calls):
                # dearer than handing over to the daemon thread, which then
                # stays in the loop a little for the next such call.
                self.linger_until = _monotonic() + _LINGER
                if lead:
                    self.own.release()
                    lead = False
                    ring = True
            if not lead:
                self.queue.append((waiter, fn, args, kwargs))
        if lead:
            return self._lead(me, waiter, fn, args, kwargs, timeout)
        if ring:
            self.ring()
        self.wake.send()
        if timeout:
            return waiter.lock.acquire(True, timeout)
        return waiter.lock.acquire()

    def submit(self, waiter: _FutureCall, fn: Callable[..., None], args: Tuple[Any, ...],
               kwargs: Dict[str, Any]) -> None:
        """Queue ``fn(*args, **kwargs)`` without waiting; the daemon thread
        sees it answered.

        Raises: GearmanError("client closed").
        """
        with self.lock:
            if self.closed:
                raise errors.GearmanError(errors.CLIENT_CLOSED)
            self.started += 1
            self.queue.append((waiter, fn, args, kwargs))
        self.ring()
        self.wake.send()

    def close(self, wait: Optional[float]) -> None:
        """Close the connection(s) and end the daemon thread (from any
        thread); ``wait``: seconds to wait for the thread (None: until it
        has ended)."""
        if self.gen != _fork_gen:
            self.closed = True  # the parent's: nothing of it runs in this process
            return
        with self.lock:
            first = not self.closed
            if first:
                self.closed = True
                self.started += 1
                self.queue.append((None, self._shutdown, (), {}))
        if first:
            self.ring()
            self.wake.send()
        if self.runner != _get_ident() and self.thread.ident != _get_ident():
            self.thread.join(wait)  # the thread running the loop cannot wait for it

    # -- running the loop (holding own) --

    def _lead(self, me: int, waiter: Union[_Call, _Batch], fn: Callable[..., None],
              args: Tuple[Any, ...], kwargs: Dict[str, Any], timeout: float) -> bool:
        self.runner = me
        try:
            if not self.down:
                self._catch_up(True)  # also sends what others handed in before
            if self.down:  # a close() came first (the drain ran its shutdown)
                waiter.fail(errors.ConnectionLost(errors.DISCONNECTED))
                return True
            self.leading = waiter  # its answer stops the loop (answered())
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the caller's
                waiter.fail(exc)
            lock = waiter.lock
            if lock.acquire(False):
                return True
            expired: List[bool] = []
            timer = None
            if timeout:
                def expire(watcher: Any, revents: int) -> None:
                    expired.append(True)
                    self.loop.stop()
                timer = self.loop.timer(timeout, 0, expire)
                timer.start()
            try:
                while not expired:
                    self._iterate(0, True)  # until answered() or expire() stops it
                    if lock.acquire(False):
                        return True
                return False
            finally:
                if timer is not None:
                    timer.stop()
        finally:
            self.leading = None
            self._let_go()

    def _catch_up(self, leader: bool) -> None:
        """Taking over the loop: after a while unwatched, let it see what
        happened meanwhile (a connection the server closed) before anything
        new is sent on it; then send what was handed in."""
        if _monotonic() - self.last_run > _IDLE_GAP:
            self.hold = True
            try:
                self._iterate(ev.EVRUN_NOWAIT, leader)
            finally:
                self.hold = False
        self._drain()

    def _let_go(self) -> None:
        self.runner = None
        self.last_run = _monotonic()
        self.own.release()
        # Anything unanswered (a waiter that came meanwhile, a future, the
        # close) or a connection on its way up: the daemon runs it. Read
        # after the release: a request that found own taken counted itself
        # in started before it tried.
        if self.started != self.finished or not self.health.settled():
            self.ring()

    def answered(self, waiter: Optional[_Waiter]) -> None:
        """A waiter was answered (by the thread running the loop). The
        leader's own ends its run of the loop."""
        self.finished += 1
        if waiter is not None and waiter is self.leading:
            self.loop.stop()
        elif self.finished == self.started:
            self._idle()

    def _idle(self) -> None:
        # Nothing left to wait for: the daemon thread's run of the loop ends,
        # unless it lingers for the main thread (then the linger timer calls
        # this again).
        if self.runner != self.thread.ident or not self.health.settled() \
                or self.started != self.finished:
            return
        if _monotonic() < self.linger_until:
            if not self.lingering:
                self.lingering = True
                self.linger.start()
        else:
            self.lingering = False
            self.linger.stop()
            self.loop.stop()

    def ring(self) -> None:
        """Wake the daemon thread (from any thread)."""
        try:
            self.bell.release()
        except RuntimeError:
            pass  # rung already, not yet heard

    def _iterate(self, flags: int, leader: bool) -> None:
        try:
            self.loop.start(flags)
        except KeyboardInterrupt:
            if leader:
                raise  # Ctrl-C in the caller: out of its call (ev's rule: between events)
            log.exception("gearman_ev.blocking: raised in the client's thread")
        except BaseException:  # noqa: BLE001 - a SystemExit from a Future's done-callback
            # Nobody waiting here could catch it: logged, and the loop goes on.
            log.exception("gearman_ev.blocking: raised while running the client's loop")

    def _daemon(self) -> None:
        me = _get_ident()
        while not self.down:
            if self.started == self.finished and self.health.settled():
                self.bell.acquire(True, IDLE_CHECK)
            idle = self.started == self.finished and self.health.settled()
            if idle:
                if not self.own.acquire(False):
                    continue  # someone runs it: nothing to check
            else:
                self.own.acquire()
            self.runner = me
            try:
                self._catch_up(False)
                while not self.down:
                    if self.started == self.finished and self.health.settled():
                        if _monotonic() >= self.linger_until:
                            break
                        if not self.lingering:
                            self.lingering = True  # the timer ends it (_idle)
                            self.linger.start()
                    self._iterate(0, False)  # until _idle() stops it
            finally:
                self.runner = None
                self.last_run = _monotonic()
                self.own.release()

    def _drain(self, watcher: Any = None, revents: int = 0) -> None:
        if self.hold:
            return  # _catch_up drains once the loop has caught up
        queue = self.queue
        while queue:
            waiter, fn, args, kwargs = queue.popleft()
            try:
                fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - it belongs to the caller
                if waiter is None:
                    log.exception("gearman_ev.blocking: %r failed", fn)
                else:
                    waiter.fail(exc)

    def _shutdown(self) -> None:
        # After every request handed in before close(): the drain answers
        # each call still waiting once, with "disconnected".
        try:
            self.conn.disconnect()
        finally:
            self.wake.stop()
            self.down = True
            self.answered(None)
            self.loop.stop()


class _Owner:
    """What the client's finalizer closes: the current _Core (a new one
    after fork), held apart from the client so that the finalizer does not
    keep the client alive."""

    __slots__ = ("core",)

    def __init__(self, core: _Core) -> None:
        self.core = core

    def release(self) -> None:
        # The client was dropped without close(), or the interpreter is
        # exiting: stop the thread, waiting for it only briefly.
        self.core.close(1.0)


# ===== The client =====

class GearmanClient:
    """A thread-safe, blocking Gearman client (API.md 12).

    Args:
        servers: one server spec or a list of them: ``"host:port"``,
            ``"host"`` (port 4730), ``"[v6addr]:port"``, ``"unix:/path"``, or
            ``(host, port)``. With several, a ``GearmanPool`` (API.md 11)
            spreads the jobs over the servers that are up (a unique key
            always goes to the same one while it is up), and admin calls
            answer ``{server: text}`` from each of them.
        connect_timeout: seconds a connect may take (0: no limit); with
            several servers, also how long a request waits for one to be up
            before it raises ``ConnectionLost("no server available")``.
        command_timeout: seconds without a byte from the server while a
            request awaits its reply; then the calls waiting on that
            connection raise ``CommandTimeout`` (0: no limit).
        reconnect: reconnect after a dropped or failed connection. Default
            True (unlike ``Gearman``): one long-lived client serves every
            thread of the process, and must outlive a gearmand restart
            without anyone re-creating it. Calls made while the server is
            down wait for it (bound them with ``timeout=``); a call whose
            request was sent before the drop raises ``ConnectionLost`` and
            is never re-sent (its job may have run).
        reconnect_delay: seconds between reconnect attempts.
        max_reconnect_attempts: give up after this many failed attempts in a
            row (0: never); calls waiting then raise ``ConnectionLost``.
        keepalive: TCP keepalive idle time in seconds (0: off).
        exceptions: ask the server for WORK_EXCEPTION (``OPTION_REQ
            exceptions``): a worker's exception then raises
            ``JobException`` carrying its ``.data``, instead of ``JobFailed``.
        client_id: sent as SET_CLIENT_ID on every connect.
        ssl: an ``ssl.SSLContext``, or True for the default one: TLS to
            every server (API.md 15).
        server_hostname: the name to check the server's certificate
            against (default: each server's host).

    The constructor returns at once; the connection is made in the
    background, and calls made meanwhile wait for it.

    Every method may be called from any thread and blocks until its reply
    has arrived. A blocking method called from a ``Future``'s done-callback
    (which runs in the thread running the client's loop) would wait for
    itself, so it raises ``GearmanError("wrong thread")`` instead.

    Fork: a child process that uses a client it inherited gets a new loop,
    thread and connection on its first call; the parent's connection is
    never touched. A client closed before the fork stays closed.

    Raises: TypeError / ValueError for bad servers or options.
    """

    def __init__(self, servers: Union[ServerSpec, Sequence[ServerSpec]], *,
                 connect_timeout: float = 0, command_timeout: float = 0,
                 reconnect: bool = True, reconnect_delay: float = 1.0,
                 max_reconnect_attempts: int = 0, keepalive: float = 0,
                 exceptions: bool = False, client_id: Optional[Name] = None,
                 ssl: Union[None, bool, _ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None) -> None:
        self._specs = _server_list(servers)
        self._exceptions = bool(exceptions)
        self._options: Dict[str, Any] = dict(
            connect_timeout=connect_timeout, command_timeout=command_timeout,
            reconnect=bool(reconnect), reconnect_delay=reconnect_delay,
            max_reconnect_attempts=max_reconnect_attempts, keepalive=keepalive,
            exceptions=self._exceptions, client_id=client_id, ssl=ssl,
            server_hostname=server_hostname)
        self._core = _Core(self._specs, self._options)
        self._owner = _Owner(self._core)
        self._finalizer = weakref.finalize(self, self._owner.release)

    # ===== Lifecycle =====

    def close(self) -> None:
        """Close the connection(s) and stop the client's thread; return once
        it has ended. Calls waiting in other threads raise ``ConnectionLost``
        (once each); later calls raise ``GearmanError("client closed")``.
        Closing twice is harmless."""
        self._finalizer.detach()
        self._owner.core.close(None)

    def __enter__(self) -> GearmanClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._core.closed

    @property
    def servers(self) -> Tuple[str, ...]:
        """The servers, as ``"host:port"``, ``"[v6addr]:port"`` or ``"unix:/path"``."""
        return tuple(s.name for s in self._specs)

    def __repr__(self) -> str:
        return f"<GearmanClient {','.join(self.servers)} {'closed' if self.closed else 'open'}>"

    def _current(self) -> _Core:
        """This process's _Core: a new one on the first call after a fork."""
        core = self._core
        if core.gen != _fork_gen:
            with _respawn_lock:
                core = self._core
                if core.gen != _fork_gen:
                    if core.closed:
                        raise errors.GearmanError(errors.CLIENT_CLOSED)
                    core = _Core(self._specs, self._options)
                    self._core = self._owner.core = core
        return core

    def _ask(self, timeout: Optional[float], method: str, *args: Any) -> Any:
        """One request with a plain ``cb(result, err)``, waited for."""
        seconds = _args.timeout(timeout)
        core = self._current()
        call = _Call(core)
        if not core.call(call, getattr(core.conn, method), (*args, call.done), {}, seconds):
            raise TimeoutError(f"no reply within {seconds:g} s")
        return call.outcome()

    # ===== Foreground jobs =====

    def submit_job(self, func: Name, workload: Payload, *, priority: str = "normal",
                   unique: Optional[Name] = None, timeout: Optional[float] = None) -> bytes:
        """Run a job and return its result.

        Args:
            func: the function name.
            workload: bytes, bytearray, memoryview or str (sent as UTF-8).
            priority: ``"high"``, ``"normal"`` or ``"low"``.
            unique: the unique key (jobs with the same key coalesce).
            timeout: the job's own deadline in seconds (None or 0: none).

        Returns: the result (WORK_COMPLETE's bytes).

        Raises: JobFailed; JobException (with ``exceptions=True``; ``.data``);
            JobTimeout when ``timeout`` passed (the job is not cancelled at
            the server, and its late result is dropped); ConnectionLost;
            CommandTimeout; ServerError; GearmanError("client closed");
            TypeError / ValueError for bad arguments.
        """
        fname, load = _args.function(func), _payload(workload)
        priority = _priority(priority)
        core = self._current()
        call = _Call(core)
        kwargs = _job_kwargs(unique, timeout, call.on_exception if self._exceptions else None)
        core.call(call, core.submit_fg[priority], (fname, load, call.done), kwargs, 0)
        result: bytes = call.outcome()
        return result

    def submit_job_high(self, func: Name, workload: Payload, *, unique: Optional[Name] = None,
                        timeout: Optional[float] = None) -> bytes:
        """``submit_job`` at high priority."""
        return self.submit_job(func, workload, priority="high", unique=unique, timeout=timeout)

    def submit_job_low(self, func: Name, workload: Payload, *, unique: Optional[Name] = None,
                       timeout: Optional[float] = None) -> bytes:
        """``submit_job`` at low priority."""
        return self.submit_job(func, workload, priority="low", unique=unique, timeout=timeout)

    def submit_jobs(self, jobs: Sequence[JobSpec], *, priority: str = "normal",
                    timeout: Optional[float] = None,
                    return_exceptions: bool = False) -> List[Any]:
        """Run many jobs at once, pipelined on the connection, and return
        their results in input order.

        Args:
            jobs: ``(func, workload)`` or ``(func, workload, unique)`` tuples.
            priority: ``"high"``, ``"normal"`` or ``"low"``, for every job.
            timeout: each job's own deadline in seconds (None or 0: none).
            return_exceptions: False: once every job has finished, raise the
                exception of the first job (in input order) that failed.
                True: a failed job's exception object takes its result's place.

        Returns: one result (bytes), or exception, per job.

        Raises: as ``submit_job``; TypeError / ValueError for a malformed
            job, before any job is sent.
        """
        checked = []
        function, payload, unique_of = _args.function, _payload, _args.unique
        for job in jobs:
            if type(job) is not tuple or len(job) not in (2, 3):
                if not isinstance(job, tuple) or len(job) not in (2, 3):
                    raise TypeError("each job must be a (func, workload) or "
                                    "(func, workload, unique) tuple")
            fname, load = function(job[0]), payload(job[1])
            unique = unique_of(job[2]) if len(job) == 3 else b""
            if len(fname) + len(unique) + len(load) + 2 > _args.MAX_PACKET:
                _args.check_size(fname, unique, load)  # raises the ValueError
            checked.append((fname, load, unique or None))
        priority = _priority(priority)
        seconds = _args.timeout(timeout)
        core = self._current()
        if not checked:
            return []
        batch = _Batch(core, len(checked))
        core.call(batch, _submit_batch, (core.submit_fg[priority], checked, seconds or None,
                                         batch, self._exceptions), {}, 0)
        if batch.exc is not None:
            raise batch.exc
        out = batch.results
        for i, err in enumerate(batch.errs):
            if err is not None:
                exc = errors.exception_for(err, batch.data.get(i))
                if not return_exceptions:
                    raise exc
                out[i] = exc
        return out

    def submit_job_future(self, func: Name, workload: Payload, *, priority: str = "normal",
                          unique: Optional[Name] = None,
                          timeout: Optional[float] = None) -> Future[bytes]:
        """Start a job and return at once with a ``concurrent.futures.Future``
        of its result: ``future.result()`` returns the bytes or raises as
        ``submit_job`` would. The Future's done-callbacks run in the
        thread that runs the client's loop when the reply comes (the client's
        daemon thread, or another thread inside a blocking call of this
        client): keep them short, and make no blocking call of this client
        from them. Cancelling the Future drops the result (the
        job itself still runs). Arguments as ``submit_job``.

        Raises (at once): TypeError / ValueError; GearmanError("client closed").
        """
        fname = _args.function(func)
        load = _args.snapshot(_args.payload(workload, "workload"))  # outlives this call
        priority = _priority(priority)
        core = self._current()
        future: Future[bytes] = Future()
        waiter = _FutureCall(core, future)
        kwargs = _job_kwargs(unique, timeout, waiter.on_exception if self._exceptions else None)
        core.submit(waiter, core.submit_fg[priority], (fname, load, waiter.done), kwargs)
        return future

    # ===== Background jobs =====

    def submit_job_bg(self, func: Name, workload: Payload, *, priority: str = "normal",
                      unique: Optional[Name] = None, timeout: Optional[float] = None) -> str:
        """Queue a background job; return its handle once the server has it
        (JOB_CREATED).

        Args:
            priority: ``"high"``, ``"normal"`` or ``"low"``.
            unique: the unique key.
            timeout: seconds to wait for the handle (None or 0: no limit).

        Raises: TimeoutError (the job may be queued all the same);
            ConnectionLost; ServerError; GearmanError("client closed").
        """
        fname, load = _args.function(func), _payload(workload)
        priority = _priority(priority)
        kwargs = {"unique": _args.unique(unique) or None}
        seconds = _args.timeout(timeout)
        core = self._current()
        call = _Call(core)
        if not core.call(call, core.submit_bg[priority], (fname, load, call.done), kwargs,
                         seconds):
            raise TimeoutError(f"no reply within {seconds:g} s")
        handle: str = call.outcome()
        return handle

    def submit_job_high_bg(self, func: Name, workload: Payload, *,
                           unique: Optional[Name] = None,
                           timeout: Optional[float] = None) -> str:
        """``submit_job_bg`` at high priority."""
        return self.submit_job_bg(func, workload, priority="high", unique=unique,
                                  timeout=timeout)

    def submit_job_low_bg(self, func: Name, workload: Payload, *,
                          unique: Optional[Name] = None,
                          timeout: Optional[float] = None) -> str:
        """``submit_job_bg`` at low priority."""
        return self.submit_job_bg(func, workload, priority="low", unique=unique,
                                  timeout=timeout)

    def submit_job_epoch(self, func: Name, workload: Payload, epoch: int, *,
                         unique: Optional[Name] = None, timeout: Optional[float] = None) -> str:
        """A background job that runs at ``epoch`` (int Unix seconds); returns
        its handle. ``timeout``: seconds to wait for it (TimeoutError)."""
        fname, load = _args.function(func), _payload(workload)
        _args.epoch(epoch)
        kwargs = {"unique": _args.unique(unique) or None}
        seconds = _args.timeout(timeout)
        core = self._current()
        call = _Call(core)
        if not core.call(call, core.conn.submit_job_epoch, (fname, load, epoch, call.done),
                         kwargs, seconds):
            raise TimeoutError(f"no reply within {seconds:g} s")
        handle: str = call.outcome()
        return handle

    # ===== Status and echo =====

    def get_status(self, handle: Name, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """GET_STATUS: ``{'handle', 'known', 'running', 'numerator',
        'denominator'}`` (known/running bools, the counts str).

        Raises: TimeoutError after ``timeout`` seconds; ConnectionLost; ServerError.
        """
        status: Dict[str, Any] = self._ask(timeout, "get_status", _args.handle(handle))
        return status

    def get_status_unique(self, unique: Name, *,
                          timeout: Optional[float] = None) -> Dict[str, Any]:
        """GET_STATUS_UNIQUE: ``{'unique', 'known', 'running', 'numerator',
        'denominator', 'client_count'}`` (client_count int).

        Raises: ValueError for an empty key; TimeoutError; ConnectionLost; ServerError.
        """
        key = _args.unique(unique)
        if not key:
            raise ValueError("unique must not be empty")
        status: Dict[str, Any] = self._ask(timeout, "get_status_unique", key)
        return status

    def echo(self, data: Payload, *, timeout: Optional[float] = None) -> bytes:
        """ECHO: the server sends ``data`` back (a round trip: a liveness check).

        Raises: TimeoutError; ConnectionLost.
        """
        echoed: bytes = self._ask(timeout, "echo", _payload(data, "payload"))
        return echoed

    # ===== Admin =====
    # With one server each returns the reply text; with several a dict
    # {server: text}, raising if any server failed (as GearmanPool does).

    def admin(self, command: Name, *, timeout: Optional[float] = None) -> Any:
        """A text-protocol command (``"status"``, ``"workers"``, ``"show jobs"``,
        ...): the reply's text (a block's lines each end in ``"\\n"``).

        Raises: ServerError for an ``ERR ...`` reply; ValueError for CR, LF or
            NUL in the command; TimeoutError; ConnectionLost.
        """
        _args.text(command, "command")
        return self._ask(timeout, "admin", command)

    def server_status(self, *, timeout: Optional[float] = None) -> Any:
        """``status``: lines ``FUNC\\tTOTAL\\tRUNNING\\tWORKERS``."""
        return self._ask(timeout, "server_status")

    def server_workers(self, *, timeout: Optional[float] = None) -> Any:
        """``workers``: one line per connection."""
        return self._ask(timeout, "server_workers")

    def server_version(self, *, timeout: Optional[float] = None) -> Any:
        """``version``: e.g. ``"OK 1.1.20+ds"``."""
        return self._ask(timeout, "server_version")

    def maxqueue(self, func: Name, size: int, *, timeout: Optional[float] = None) -> Any:
        """``maxqueue FUNC SIZE``: ``"OK"``. A wrong type is TypeError, a bad
        value (whitespace in ``func``, a negative size) ValueError."""
        _args.name_token(func, "func")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError("size must be an int")
        if size < 0:
            raise ValueError("size must be >= 0")
        return self._ask(timeout, "maxqueue", func, size)

    def shutdown_server(self, graceful: bool = False, *,
                        timeout: Optional[float] = None) -> Any:
        """``shutdown [graceful]`` (gearmand >= 1.1.15 answers ``ERR
        UNKNOWN_COMMAND``: ServerError)."""
        return self._ask(timeout, "admin", "shutdown graceful" if graceful else "shutdown")


# ===== Helpers =====

def _payload(value: Any, what: str = "workload") -> Any:
    """Checked here; handed on as bytes, or as the caller's own buffer (a
    bytearray or memoryview: the connection checks and views it again)."""
    load = _args.payload(value, what)
    return load if type(load) is bytes else value


def _priority(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("priority must be 'high', 'normal' or 'low'")
    if value not in _PRIORITIES:
        raise ValueError(f"priority must be 'high', 'normal' or 'low', not {value!r}")
    return value


def _job_kwargs(unique: Optional[Name], timeout: Optional[float],
                on_exception: Optional[Callable[[bytes], None]]) -> Dict[str, Any]:
    """The keyword arguments of a foreground submission; the defaults are
    left out (the common call then passes none)."""
    kwargs: Dict[str, Any] = {}
    if unique is not None:
        kwargs["unique"] = _args.unique(unique) or None
    seconds = _args.timeout(timeout)
    if seconds:
        kwargs["timeout"] = seconds
    if on_exception is not None:
        kwargs["on_exception"] = on_exception
    return kwargs


def _submit_batch(submit: Callable[..., None], jobs: List[Tuple[bytes, Any, Optional[bytes]]],
                  timeout: Optional[float], batch: _Batch, exceptions: bool) -> None:
    """Running the loop: every job of a batch in one iteration, so that
    they leave in one write."""
    done, on_exception = batch.done, batch.on_exception
    plain = timeout is None and not exceptions  # the common case: fewer keywords
    for i, (func, load, unique) in enumerate(jobs):
        try:
            if plain and unique is None:
                submit(func, load, partial(done, i))
            else:
                submit(func, load, partial(done, i), unique=unique, timeout=timeout,
                       on_exception=partial(on_exception, i) if exceptions else None)
        except errors.GearmanError as exc:
            # Refused here ("write buffer full", "not connected"): this job
            # and those after it fail with that reason.
            for j in range(i, len(jobs)):
                done(j, None, exc.err)
            return
