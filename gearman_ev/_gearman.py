"""class Gearman: one Gearman connection on a libev loop, as client, worker
and admin. It composes a protocol session (``_session``) with the libev
driver (``_libev``); this module only checks arguments and hands requests
to the session.

What must stay true:
- Every argument is checked (TypeError / ValueError) before any I/O and
  before the state checks ("not connected", "used after fork", "wrong
  thread"), so a bad call fails the same way in every state.
- The object is the only strong owner of its session and driver: when the
  program drops it, ``__del__`` drains every callback once and closes.
"""
from __future__ import annotations

import inspect
import os
import threading
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, Union

if TYPE_CHECKING:
    import ssl as _ssl  # the parameter is called ssl

from . import _args, _session, errors, ev
from ._codec import CMD, NULL, read_capacity, write_capacity
from ._job import Job
from ._settings import ConnectionSettings
from ._libev import LibevDriver
from ._session import (K_ECHO, K_STATUS, K_STATUS_UNIQUE, K_SUBMIT_BG, STATE_NAMES, Ability,
                       Entry, Session, Submission)

__all__ = ["Gearman"]

Callback = Optional[Callable[..., Any]]
Payload = Union[bytes, bytearray, memoryview, str]
Name = Union[str, bytes]
# A Unix socket's path, as os.fspath takes it.
SocketPath = Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]

# The callbacks' types (API.md 3). A command callback is called once as
# cb(result, err): err is None on success, result is None on failure. What a
# callback returns is ignored, hence `object`.
BytesCallback = Callable[[Optional[bytes], Optional[str]], object]   # echo, submit_job*
HandleCallback = Callable[[Optional[str], Optional[str]], object]    # submit_job_*bg/epoch
TextCallback = Callable[[Optional[str], Optional[str]], object]      # admin and its helpers
BoolCallback = Callable[[Optional[bool], Optional[str]], object]     # option, all_yours
StatusCallback = Callable[[Optional[dict[str, Any]], Optional[str]], object]  # get_status*
JobCallback = Callable[[Optional[Job], Optional[str]], object]       # grab_job
DataHandler = Callable[[bytes], object]          # on_data, on_warning, on_exception
StatusHandler = Callable[[str, str], object]     # on_status(numerator, denominator)
ErrorHandler = Callable[[str], object]           # on_error(errstr)
Hook = Callable[[], object]                      # on_connect, on_disconnect, on_idle
# A worker function: called as callback(job); a sync one returns the result
# (bytes, str or None), an async one's return value is ignored.
WorkerFunction = Callable[[Job], object]

_get_ident = threading.get_ident
_known_functions = _args.checked_functions  # name as given -> bytes, checked
_SUBMIT_JOB_BG = CMD.SUBMIT_JOB_BG
_SUBMIT_JOB = CMD.SUBMIT_JOB


class Gearman(ConnectionSettings):
    """One connection to a Gearman job server: client, worker and admin.

    Args:
        host: server name or address; with ``host`` (or ``path``) a
            non-blocking connect starts at once, else call ``connect()``.
        port: TCP port (default 4730).
        path: a Unix-domain socket instead of TCP.
        loop: the ``ev.Loop`` to run on (default ``ev.default_loop()``).
        priority: libev priority of the object's watchers.
        keepalive: TCP keepalive idle time in seconds (0: off).
        connect_timeout: seconds a connect may take (0: no limit).
        command_timeout: seconds without a byte from the server while a
            request awaits its reply; then every pending callback gets
            ``"command timeout"`` (0: no limit).
        reconnect: reconnect after a drop or a failed connect.
        reconnect_delay: seconds between attempts.
        max_reconnect_attempts: give up after this many failed attempts (0:
            never); a connection that ends before the server sent a byte
            counts as failed.
        exceptions: send ``OPTION_REQ exceptions`` on every connect; a
            worker reports a sync callback's exception as WORK_EXCEPTION.
        client_id: sent as SET_CLIENT_ID on every connect.
        grab_unique: the worker grabs with GRAB_JOB_UNIQ (jobs carry ``unique``).
        high_water: bytes of unsent requests above which new requests are
            refused with ``GearmanError("write buffer full")`` (0: unbounded).
        on_error: ``on_error(errstr)`` for connection-level errors (default:
            a warning on the "gearman_ev" logger).
        on_connect: ``on_connect()`` once the connection is up.
        on_disconnect: ``on_disconnect()`` after an established connection
            ended and its pending callbacks were drained.
        ssl: TLS to the server: an ``ssl.SSLContext``
            (``PROTOCOL_TLS_CLIENT``), or True for
            ``ssl.create_default_context()``. The handshake is part of every
            connect (``connect_timeout`` covers it; reconnects handshake
            again); certificate and handshake failures are
            ``on_error("tls: <reason>")`` and count as failed attempts.
            Also over a Unix socket (a bridge to a remote TLS terminator),
            where ``server_hostname`` is needed if the context checks names.
        server_hostname: the name the server's certificate must match and
            that is sent as SNI (default: the host connected to).

    Every time is in seconds. Raises TypeError / ValueError for bad
    arguments, before any I/O.
    """

    _driver: LibevDriver

    def __init__(self, host: Optional[Name] = None, port: int = 4730, *,
                 path: Optional[SocketPath] = None, loop: Optional[ev.Loop] = None,
                 priority: int = 0,
                 keepalive: float = 0, connect_timeout: float = 0,
                 command_timeout: float = 0, reconnect: bool = False,
                 reconnect_delay: float = 1.0, max_reconnect_attempts: int = 0,
                 exceptions: bool = False, client_id: Optional[Name] = None,
                 grab_unique: bool = False, high_water: int = 64 * 1024 * 1024,
                 on_error: Optional[ErrorHandler] = None, on_connect: Optional[Hook] = None,
                 on_disconnect: Optional[Hook] = None,
                 ssl: Union[None, bool, _ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None) -> None:
        self._s: Optional[Session] = None  # until set-up is complete, __del__ has nothing to do
        if host is not None and path is not None:
            raise ValueError("cannot specify both 'host' and 'path'")
        _args.port(port)  # checked even when unused (no host): a bad argument is refused
        if loop is None:
            loop = ev.default_loop()
        if not isinstance(loop, ev.Loop):
            raise TypeError("loop must be a gearman_ev.ev.Loop")
        priority = _args.priority(priority)
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
        context = None
        if ssl is not None or server_hostname is not None:
            # TLS (and the ssl module, a few MiB) is loaded by those who use it.
            from . import _tls
            context = _tls.options(ssl, server_hostname)
        self._loop = loop
        self._priority = priority
        self._context = context
        self._server_hostname = server_hostname
        if context is None:
            self._driver = driver = LibevDriver(loop, priority, keepalive)
        else:
            from ._tls import TLSDriver
            self._driver = driver = TLSDriver(loop, priority, keepalive, context,
                                              server_hostname)
        session = Session(driver, Job, exceptions=bool(exceptions), client_id=client_id_b,
                          grab_unique=bool(grab_unique), connect_timeout=connect_timeout,
                          command_timeout=command_timeout, reconnect=bool(reconnect),
                          reconnect_delay=reconnect_delay,
                          max_reconnect_attempts=max_reconnect_attempts,
                          high_water=high_water)
        driver.attach(session)
        session.on_error = on_error
        session.on_connect = on_connect
        session.on_disconnect = on_disconnect
        self._s = session
        if host is not None:
            self.connect(host, port)
        elif path is not None:
            self.connect_unix(path)

    # ===== Lifecycle =====

    def __enter__(self) -> Gearman:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def __del__(self) -> None:
        session = getattr(self, "_s", None)
        if session is not None:
            try:
                session.close()
            except Exception:  # noqa: BLE001 - nothing may escape a finalizer
                pass

    def __repr__(self) -> str:
        s = self._s
        assert s is not None
        return (f"<Gearman {s.describe_address()} {STATE_NAMES[s.state]} "
                f"pending={s.pending_count}>")

    def _watchers(self) -> Tuple[ev.Watcher, ...]:
        return self._driver.watchers()

    def _hot(self) -> Session:
        """``_check`` for the submissions: the thread only. After fork the
        session is DISCONNECTED, and its ``send`` says "used after fork"."""
        owner = self._loop._running_thread
        if owner is not None and owner != _get_ident():
            raise errors.GearmanError(errors.WRONG_THREAD)
        s = self._s
        assert s is not None
        return s

    def _check(self) -> Session:
        """The session, if this thread and process may use it now."""
        s = self._s
        assert s is not None
        if s._fork_gen != _session._fork_gen:
            raise errors.GearmanError(errors.USED_AFTER_FORK)
        owner = self._loop._running_thread
        if owner is not None and owner != _get_ident():
            raise errors.GearmanError(errors.WRONG_THREAD)
        return s

    # ===== Connection (API.md 4) =====

    def connect(self, host: Name, port: int = 4730) -> None:
        """TCP connect (host name, IPv4 or IPv6 literal); non-blocking.
        Cancels a pending automatic reconnect.

        Raises: GearmanError("already connected") while connected or connecting.
        """
        if isinstance(host, bytes):
            host = host.decode()
        if not isinstance(host, str):
            raise TypeError("host must be a str")
        if not host:
            raise ValueError("host must not be empty")
        port = _args.port(port)
        self._check().connect(("tcp", host, port))

    def connect_unix(self, path: SocketPath) -> None:
        """Connect to a Unix-domain socket (str, bytes or os.PathLike)."""
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, str):
            path = os.fsencode(path)
        if not isinstance(path, bytes):
            raise TypeError("path must be a str, bytes or os.PathLike")
        if not path or b"\0" in path:
            raise ValueError("path must be non-empty and hold no NUL")
        self._check_unix_tls()
        self._check().connect(("unix", path))

    def _check_unix_tls(self) -> None:
        """TLS over a Unix socket has no host name to check the certificate
        against: ValueError unless ``server_hostname`` names one."""
        if self._context is not None and self._context.check_hostname \
                and self._server_hostname is None:
            raise ValueError("ssl over a Unix socket needs server_hostname= (the name "
                             "the server's certificate is checked against)")

    def disconnect(self) -> None:
        """Close now: every pending callback gets ``"disconnected"``, then
        ``on_disconnect`` fires; no ``on_error`` and no reconnect."""
        self._check().disconnect()

    @property
    def is_connected(self) -> bool:
        """True while connected or connecting."""
        s = self._s
        assert s is not None
        return s.state in (_session.CONNECTING, _session.CONNECTED)

    def reconnect(self, enable: bool, delay: Optional[float] = None,
                  max_attempts: Optional[int] = None) -> None:
        """Turn automatic reconnection on or off; omitted values stay."""
        if delay is not None:
            delay = _args.seconds("delay", delay)
        if max_attempts is not None:
            max_attempts = _args.count("max_attempts", max_attempts)
        self._check().set_reconnect(bool(enable), delay, max_attempts)

    @property
    def _session(self) -> Session:
        s = self._s
        assert s is not None
        return s

    @property
    def priority(self) -> int:
        """libev priority of the object's watchers."""
        return self._priority

    @priority.setter
    def priority(self, value: int) -> None:
        self._priority = _args.priority(value)
        self._driver.set_priority(self._priority)

    def _get_cb(name: str) -> property:  # type: ignore[misc]
        def get(self: Gearman) -> Callback:
            return getattr(self._session, name)  # type: ignore[no-any-return]

        def set_(self: Gearman, value: Callback) -> None:
            setattr(self._session, name, _args.callback(value, name))
        return property(get, set_, doc=f"The ``{name}`` callback (None to clear).")

    if TYPE_CHECKING:
        # What the properties below hold, for type checkers (which do not
        # see through _get_cb): None or a callback of this type.
        on_error: Optional[ErrorHandler]
        on_connect: Optional[Hook]
        on_disconnect: Optional[Hook]
        on_drain: Optional[Hook]
    else:
        on_error = _get_cb("on_error")
        on_connect = _get_cb("on_connect")
        on_disconnect = _get_cb("on_disconnect")
        on_drain = _get_cb("on_drain")
    del _get_cb

    # ===== Introspection (API.md 8) =====

    @property
    def buffer_sizes(self) -> Tuple[int, int]:
        """``(read_capacity, write_capacity)`` of the connection's buffers, in
        bytes: 16 KiB each at rest."""
        c = self._session.c
        if c == NULL:
            return (0, 0)  # destroyed
        return (read_capacity(c), write_capacity(c))

    # ===== Client (API.md 5) =====

    def echo(self, data: Payload, cb: Optional[BytesCallback] = None) -> None:
        """ECHO_REQ. Callback: ``cb(echoed_bytes, err)``."""
        data = _args.payload(data)
        _args.callback(cb)
        _args.check_size(data)
        self._check().send(CMD.ECHO_REQ, (data,), Entry(K_ECHO, cb))

    def _submit_fg(self, cmd: int, func: Name, workload: Payload, cb: Callback,
                   unique: Optional[Name], timeout: Optional[float], on_data: Callback,
                   on_warning: Callback, on_status: Callback, on_exception: Callback) -> None:
        fname = _args.function(func)
        ukey = _args.unique(unique)
        load = _args.payload(workload, "workload")
        _args.callback(cb)
        if on_data is not None or on_warning is not None or on_status is not None \
                or on_exception is not None:
            _args.callback(on_data, "on_data")
            _args.callback(on_warning, "on_warning")
            _args.callback(on_status, "on_status")
            _args.callback(on_exception, "on_exception")
        seconds = _args.timeout(timeout) if timeout is not None else 0.0
        s = self._hot()
        sub = Submission(cb, on_data, on_warning, on_status, on_exception, bool(ukey))
        s.send3(cmd, fname, ukey, load, sub)
        if seconds:
            s.set_job_deadline(sub, seconds)

    def submit_job(self, func: Name, workload: Payload, cb: Optional[BytesCallback] = None, *,
                   unique: Optional[Name] = None, timeout: Optional[float] = None,
                   on_data: Optional[DataHandler] = None,
                   on_warning: Optional[DataHandler] = None,
                   on_status: Optional[StatusHandler] = None,
                   on_exception: Optional[DataHandler] = None) -> None:
        """A foreground job. Terminal callback ``cb(result_bytes, err)``.

        Per-event handlers: ``on_data(bytes)``, ``on_warning(bytes)``,
        ``on_status(numerator, denominator)``, ``on_exception(bytes)``.
        ``timeout`` (seconds) bounds the whole job: ``cb(None, "job timeout")``
        (the server is not told; later events are dropped).
        """
        # _submit_fg and _hot, inlined for the usual call (issue 17): a name
        # already checked, a bytes payload, a callback and nothing else. Same
        # checks, same errors; anything else goes the long way.
        fname = _known_functions.get(func) if type(func) is str or type(func) is bytes \
            else None
        if fname is None or type(workload) is not bytes or unique is not None \
                or timeout is not None or on_data is not None or on_warning is not None \
                or on_status is not None or on_exception is not None \
                or (cb is not None and not callable(cb)):
            self._submit_fg(_SUBMIT_JOB, func, workload, cb, unique, timeout,
                            on_data, on_warning, on_status, on_exception)
            return
        owner = self._loop._running_thread
        if owner is not None and owner != _get_ident():
            raise errors.GearmanError(errors.WRONG_THREAD)
        self._s.send3(_SUBMIT_JOB, fname, b"", workload,  # type: ignore[union-attr]
                      Submission(cb, None, None, None, None, False))

    def submit_job_high(self, func: Name, workload: Payload, cb: Optional[BytesCallback] = None, *,
                        unique: Optional[Name] = None, timeout: Optional[float] = None,
                        on_data: Optional[DataHandler] = None,
                        on_warning: Optional[DataHandler] = None,
                        on_status: Optional[StatusHandler] = None,
                        on_exception: Optional[DataHandler] = None) -> None:
        """``submit_job`` at high priority."""
        self._submit_fg(CMD.SUBMIT_JOB_HIGH, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def submit_job_low(self, func: Name, workload: Payload, cb: Optional[BytesCallback] = None, *,
                       unique: Optional[Name] = None, timeout: Optional[float] = None,
                       on_data: Optional[DataHandler] = None,
                       on_warning: Optional[DataHandler] = None,
                       on_status: Optional[StatusHandler] = None,
                       on_exception: Optional[DataHandler] = None) -> None:
        """``submit_job`` at low priority."""
        self._submit_fg(CMD.SUBMIT_JOB_LOW, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def _submit_bg(self, cmd: int, func: Name, workload: Payload, cb: Callback,
                   unique: Optional[Name], epoch: Optional[bytes] = None) -> None:
        fname = _args.function(func)
        ukey = _args.unique(unique)
        load = _args.payload(workload, "workload")
        _args.callback(cb)
        if epoch is None:  # send3 checks the size
            self._hot().send3(cmd, fname, ukey, load, Entry(K_SUBMIT_BG, cb))
            return
        args = (fname, ukey, epoch, load)
        _args.check_size(*args)
        self._check().send(cmd, args, Entry(K_SUBMIT_BG, cb))

    def submit_job_bg(self, func: Name, workload: Payload,
                      cb: Optional[HandleCallback] = None, *,
                      unique: Optional[Name] = None) -> None:
        """A background job. Callback ``cb(handle_str, err)`` on JOB_CREATED."""
        # _submit_bg and _hot, inlined for the usual call (issue 17): a name
        # already checked, a bytes payload, no unique key. Same checks, same
        # errors; anything else goes the long way.
        fname = _known_functions.get(func) if type(func) is str or type(func) is bytes \
            else None
        if fname is None or unique is not None or type(workload) is not bytes \
                or (cb is not None and not callable(cb)):
            self._submit_bg(_SUBMIT_JOB_BG, func, workload, cb, unique)
            return
        owner = self._loop._running_thread
        if owner is not None and owner != _get_ident():
            raise errors.GearmanError(errors.WRONG_THREAD)
        self._s.send3(_SUBMIT_JOB_BG, fname, b"", workload,  # type: ignore[union-attr]
                      Entry(K_SUBMIT_BG, cb))

    def submit_job_high_bg(self, func: Name, workload: Payload,
                           cb: Optional[HandleCallback] = None, *,
                           unique: Optional[Name] = None) -> None:
        """``submit_job_bg`` at high priority."""
        self._submit_bg(CMD.SUBMIT_JOB_HIGH_BG, func, workload, cb, unique)

    def submit_job_low_bg(self, func: Name, workload: Payload,
                          cb: Optional[HandleCallback] = None, *,
                          unique: Optional[Name] = None) -> None:
        """``submit_job_bg`` at low priority."""
        self._submit_bg(CMD.SUBMIT_JOB_LOW_BG, func, workload, cb, unique)

    def submit_job_epoch(self, func: Name, workload: Payload, epoch: int,
                         cb: Optional[HandleCallback] = None, *,
                         unique: Optional[Name] = None) -> None:
        """A background job run at ``epoch`` (int Unix seconds).
        Callback ``cb(handle_str, err)``."""
        when = _args.epoch(epoch)
        self._submit_bg(CMD.SUBMIT_JOB_EPOCH, func, workload, cb, unique, when)

    def get_status(self, handle: Name, cb: StatusCallback) -> None:
        """GET_STATUS. ``cb({'handle', 'known', 'running', 'numerator',
        'denominator'}, err)``; known/running are bools."""
        key = _args.handle(handle)
        _args.callback(cb)
        self._check().send(CMD.GET_STATUS, (key,), Entry(K_STATUS, cb))

    def get_status_unique(self, unique: Name, cb: StatusCallback) -> None:
        """GET_STATUS_UNIQUE. ``cb({'unique', 'known', 'running', 'numerator',
        'denominator', 'client_count'}, err)``."""
        key = _args.unique(unique)
        if not key:
            raise ValueError("unique must not be empty")
        _args.callback(cb)
        self._check().send(CMD.GET_STATUS_UNIQUE, (key,), Entry(K_STATUS_UNIQUE, cb))

    def option(self, name: Name, cb: Optional[BoolCallback] = None) -> None:
        """OPTION_REQ. ``cb(True, err)``; "exceptions" is re-sent on reconnect."""
        opt = _args.option_name(name)
        _args.callback(cb)
        self._check().option(opt, cb)

    # ===== Admin (API.md 7) =====

    def admin(self, command: Name, cb: Optional[TextCallback] = None) -> None:
        """A text command; ``cb(text, err)``. Block replies come whole; a
        one-line reply that starts with "ERR" is delivered as the err."""
        cmd = _args.admin_command(command)
        _args.callback(cb)
        self._check().admin_command(cmd, cb)

    def server_status(self, cb: Optional[TextCallback] = None) -> None:
        """``status``: lines ``FUNC\\tTOTAL\\tRUNNING\\tWORKERS``."""
        self.admin("status", cb)

    def server_workers(self, cb: Optional[TextCallback] = None) -> None:
        """``workers``: one line per connection."""
        self.admin("workers", cb)

    def server_version(self, cb: Optional[TextCallback] = None) -> None:
        """``version``: e.g. ``"OK 1.1.20+ds"``."""
        self.admin("version", cb)

    def maxqueue(self, func: Name, size: int, cb: Optional[TextCallback] = None) -> None:
        """``maxqueue FUNC SIZE``: ``"OK"``."""
        self.admin(_args.maxqueue_command(func, size), cb)

    def shutdown_server(self, graceful: bool = False,
                        cb: Optional[TextCallback] = None) -> None:
        """``shutdown [graceful]`` (gearmand >= 1.1.15 answers ERR UNKNOWN_COMMAND)."""
        self.admin("shutdown graceful" if graceful else "shutdown", cb)

    # ===== Worker (API.md 6) =====

    def register_function(self, name: Name, callback: WorkerFunction, *,
                          timeout: Optional[float] = None, async_: bool = False) -> None:
        """Serve ``name`` with ``callback(job)``: CAN_DO, or CAN_DO_TIMEOUT
        with ``timeout`` seconds. A sync callback returns the result (bytes,
        str or None); an ``async_=True`` callback finishes the job itself
        with ``job.complete()``, ``job.fail()`` or ``job.exception()``.

        Raises: TypeError for a coroutine function (``async def``): the
        callback is called as a plain function.
        """
        if not callable(callback):
            raise TypeError("callback must be callable as callback(job)")
        if inspect.iscoroutinefunction(callback):
            raise TypeError("callback is a coroutine function: the libev Gearman runs plain "
                            "functions; use gearman_ev.aio.AsyncGearman for async def workers")
        self._can_do(name, timeout, Ability(callback, None, bool(async_)))

    def all_yours(self, cb: Optional[BoolCallback] = None) -> None:
        """ALL_YOURS. gearmand 1.1 answers ``cb(None, "INVALID_COMMAND: ...")``;
        a server that takes it silently gives ``cb(True, None)``."""
        _args.callback(cb)
        self._check().all_yours(cb)

    def work(self, on_idle: Optional[Hook] = None, *,
             concurrency: Optional[int] = None) -> None:
        """Grab and run jobs until ``work_stop()``. ``on_idle()`` fires each
        time the worker goes to sleep. ``concurrency=N`` keeps at most N
        (async) jobs in flight with at most N grabs outstanding."""
        _args.callback(on_idle, "on_idle")
        limit = _args.concurrency(concurrency)
        self._check().work(on_idle, limit, False)

    def work_one(self, on_idle: Optional[Hook] = None) -> None:
        """Run exactly one job, then stop; wait for one if none is queued."""
        _args.callback(on_idle, "on_idle")
        self._check().work(on_idle, None, True)

    def work_stop(self) -> None:
        """Stop grabbing; jobs in flight still report their results."""
        self._check().work_stop()

    def grab_job(self, cb: JobCallback) -> None:
        """One GRAB: ``cb(job, None)`` or ``cb(None, "no job")``."""
        if not callable(cb):
            raise TypeError("cb must be callable as cb(job, err)")
        self._check().grab_job(cb)
