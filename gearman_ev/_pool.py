"""class GearmanPool: many job servers behind one object, on a libev loop.

It owns one ``Gearman`` per server (``pool.servers``), the one timer the
router's waiting requests need, and the public API of API.md 11. Where a
request goes, what happens when a server drops, and the worker's one cap are
``_routing``'s (I/O-free, shared with an asyncio pool); which requests a
dropped session hands back is ``_session``'s rule 6. This module checks
arguments and hands requests on.

What must stay true:
- Every argument is checked (TypeError / ValueError) before any I/O and
  before the state checks, as in ``Gearman``.
- The pool holds its connections; nothing they hold points back at the pool
  object itself (the timer holds it weakly), so dropping the pool drops the
  connections, which drain their callbacks as a dropped ``Gearman`` does.
"""
from __future__ import annotations

import inspect
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, Union

from . import _args, _session, errors, ev

if TYPE_CHECKING:
    import ssl as _ssl  # the parameter is called ssl
from ._codec import CMD, MAX_PACKET
from ._gearman import Gearman
from ._poolbase import PoolBase
from ._job import Job
from ._libev import _weak_method
from ._routing import FirstKnown, Gather, GrabCap, Router, parse_servers
from ._session import (CONNECTED, K_ECHO, K_STATUS, K_STATUS_UNIQUE, K_SUBMIT_BG, Entry,
                       Submission)

__all__ = ["GearmanPool"]

log = logging.getLogger("gearman_ev")
_get_ident = threading.get_ident

Callback = Optional[Callable[..., Any]]
Payload = Union[bytes, bytearray, memoryview, str]
Name = Union[str, bytes]
ServerArg = Union[str, Tuple[str, int]]


def _guard(loop: ev.Loop) -> Callable[..., Any]:
    """Runs user code for the router as a session does: what it raises is
    logged; Ctrl-C and SystemExit leave the loop once the event is done."""
    def call(func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except (KeyboardInterrupt, SystemExit) as exc:
            loop._park(exc)
        except BaseException:  # noqa: BLE001 - a user callback must not break us
            log.exception("gearman_ev: exception in callback %r", func)
        return None
    return call


class GearmanPool(PoolBase):
    """Several Gearman job servers as one client, worker and admin.

    Args:
        servers: a list or tuple of server specs: ``"host:port"``,
            ``"host"`` (port 4730), ``"[v6addr]:port"``, ``"unix:/path"`` or
            ``(host, port)``. Each gets one connection (``pool.servers``).
        loop: the ``ev.Loop`` (default ``ev.default_loop()``).
        reconnect: as ``Gearman``'s, but on by default: a server that drops
            or refuses is tried again every ``reconnect_delay`` seconds.
        connect_timeout: as ``Gearman``'s, and also how long a request waits
            when no server is up; then its callback gets
            ``"no server available"`` (0: it waits as long as it takes).

    The other keyword arguments (``priority``, ``keepalive``,
    ``command_timeout``, ``reconnect_delay``, ``max_reconnect_attempts``,
    ``exceptions``, ``client_id``, ``grab_unique``, ``high_water``,
    ``on_error``, ``on_connect``, ``on_disconnect``, ``ssl``,
    ``server_hostname``) are ``Gearman``'s
    (see ``Gearman``), applied to each connection; the callbacks fire for each
    server. With ``ssl``, each server's certificate is checked against its
    own host name unless ``server_hostname`` names one for all. For one server's own callback, set it on ``pool.servers[i]``
    (the pool does not rely on them).

    Routing: a request with a unique key goes to the key's server by
    rendezvous hashing (the same server in every process while it is up;
    the key's next server while it is down); without a key, to the next
    connected server in turn. A request the pool's server dropped before
    writing it is sent again elsewhere (``rerouted_count``); a job already
    handed to a server that drops fails with ``"disconnected"``.

    ``pool.servers[i]`` may also be used alone, as any ``Gearman``; its
    submissions, echoes and unique-key statuses fail over like the pool's.

    Bad servers or options raise TypeError or ValueError, before any I/O.
    """

    _servers: Tuple[Gearman, ...]

    def __init__(self, servers: Sequence[ServerArg], loop: Optional[ev.Loop] = None, *,
                 priority: int = 0, keepalive: float = 0, connect_timeout: float = 0,
                 command_timeout: float = 0, reconnect: bool = True,
                 reconnect_delay: float = 1.0, max_reconnect_attempts: int = 0,
                 exceptions: bool = False, client_id: Optional[Name] = None,
                 grab_unique: bool = False, high_water: int = 64 * 1024 * 1024,
                 on_error: Callback = None, on_connect: Callback = None,
                 on_disconnect: Callback = None,
                 ssl: Union[None, bool, _ssl.SSLContext] = None,
                 server_hostname: Optional[str] = None) -> None:
        self._router: Optional[Router] = None  # until set-up is complete, __del__ has nothing to do
        specs = parse_servers(servers)
        # Unconfigured first: the options are checked by the first one, and
        # nothing connects before every connection has joined the router.
        conns = tuple(
            Gearman(loop=loop, priority=priority, keepalive=keepalive,
                    connect_timeout=connect_timeout, command_timeout=command_timeout,
                    reconnect=reconnect, reconnect_delay=reconnect_delay,
                    max_reconnect_attempts=max_reconnect_attempts, exceptions=exceptions,
                    client_id=client_id, grab_unique=grab_unique, high_water=high_water,
                    on_error=on_error, on_connect=on_connect, on_disconnect=on_disconnect,
                    ssl=ssl, server_hostname=server_hostname)
            for _ in specs)
        self._servers = conns
        self._first = conns[0]._session
        self._specs = specs
        self._loop = loop = conns[0]._loop
        self._call = _guard(loop)
        timer = ev.Timer(0, 0, loop, _weak_method(self, GearmanPool._on_timer), priority=priority)
        self._timer = timer

        def set_deadline(when: float) -> None:
            timer.stop()
            if when:
                timer.set(max(0.0, when - loop.now()), 0)
                timer.start()

        self._router = Router([s.name for s in specs], [g._session for g in conns],
                              wait_timeout=conns[0].connect_timeout, now=loop.now,
                              set_deadline=set_deadline, call=self._call)
        for g, spec in zip(conns, specs):  # every check before the first connect
            if spec.address[0] == "unix":
                g._check_unix_tls()
        for g, spec in zip(conns, specs):
            if spec.address[0] == "unix":
                g.connect_unix(spec.address[1])
            else:
                g.connect(spec.address[1], spec.address[2])

    # ===== Lifecycle =====

    def __enter__(self) -> GearmanPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def __del__(self) -> None:
        router = getattr(self, "_router", None)
        if router is None or self._servers[0]._session._fork_gen != _session.fork_generation():
            return  # not set up; or inherited across fork: the parent's, not to touch
        try:
            self._timer.stop()
            router.close()  # what waited for a server gets "disconnected"
        except Exception:  # noqa: BLE001 - nothing may escape a finalizer
            pass

    def _check(self) -> Router:
        """The router, if this thread and process may use the pool now
        (``Gearman._check``'s rules, inlined: every request passes here)."""
        if self._first._fork_gen != _session._fork_gen:
            raise errors.GearmanError(errors.USED_AFTER_FORK)
        owner = self._loop._running_thread
        if owner is not None and owner != _get_ident():
            raise errors.GearmanError(errors.WRONG_THREAD)
        return self._router  # type: ignore[return-value]

    def _on_timer(self, watcher: Any, revents: int) -> None:
        self._r.on_deadline()

    def disconnect(self) -> None:
        """Close every connection: each pending callback gets
        ``"disconnected"`` (requests waiting for a server too); no
        reconnect. Requests after this raise ``GearmanError("not connected")``."""
        router = self._check()
        router.closing = True
        try:
            for g in self._servers:
                g.disconnect()
            router.fail_parked(errors.DISCONNECTED)
        finally:
            router.closing = False

    # ===== Introspection =====

    @property
    def servers(self) -> Tuple[Gearman, ...]:
        """The connections, one ``Gearman`` per server, in the given order."""
        return self._servers

    @property
    def server_names(self) -> Tuple[str, ...]:
        """Each server's canonical spec, ``"host:port"``, ``"[v6]:port"`` or
        ``"unix:/path"``, in the given order; the keys of the admin replies."""
        return tuple(s.name for s in self._specs)

    # ===== Client (API.md 5, routed) =====

    def echo(self, data: Payload, cb: Callback = None) -> None:
        """ECHO_REQ to the next connected server. ``cb(echoed_bytes, err)``."""
        data = _args.payload(data)
        _args.callback(cb)
        _args.check_size(data)
        self._check().dispatch(CMD.ECHO_REQ, (data,), Entry(K_ECHO, cb), None)

    def _submit_fg(self, cmd: int, func: Name, workload: Payload, cb: Callback,
                   unique: Optional[Name], timeout: Optional[float], on_data: Callback,
                   on_warning: Callback, on_status: Callback, on_exception: Callback) -> None:
        fname = _args.function(func)
        ukey = _args.unique(unique)
        load = _args.payload(workload, "workload")
        _args.callback(cb)
        for name, handler in (("on_data", on_data), ("on_warning", on_warning),
                              ("on_status", on_status), ("on_exception", on_exception)):
            _args.callback(handler, name)
        seconds = _args.timeout(timeout) if timeout is not None else 0.0
        if len(fname) + len(ukey) + len(load) + 2 > MAX_PACKET:
            _args.check_size(fname, ukey, load)  # raises the ValueError
        router = self._check()
        sub = Submission(cb, on_data, on_warning, on_status, on_exception, bool(ukey))
        i = router.pick(ukey or None)
        if i < 0:
            router.dispatch(cmd, (fname, ukey, load), sub, ukey or None, seconds)
            return
        s = router.sessions[i]  # the hot path: straight to the session, no tuple
        s.send3(cmd, fname, ukey, load, sub)
        if seconds:
            s.set_job_deadline(sub, seconds)

    def submit_job(self, func: Name, workload: Payload, cb: Callback = None, *,
                   unique: Optional[Name] = None, timeout: Optional[float] = None,
                   on_data: Callback = None, on_warning: Callback = None,
                   on_status: Callback = None, on_exception: Callback = None) -> None:
        """A foreground job on the server routing picks (``unique``: the
        key's server). Terminal callback ``cb(result_bytes, err)``; the
        per-event handlers and ``timeout`` as ``Gearman.submit_job``.

        Callback err: also ``"no server available"`` when no server came up
        within ``connect_timeout``; ``"disconnected"`` when its server
        dropped after the job was handed to it (it may have run).
        """
        self._submit_fg(CMD.SUBMIT_JOB, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def submit_job_high(self, func: Name, workload: Payload, cb: Callback = None, *,
                        unique: Optional[Name] = None, timeout: Optional[float] = None,
                        on_data: Callback = None, on_warning: Callback = None,
                        on_status: Callback = None, on_exception: Callback = None) -> None:
        """``submit_job`` at high priority."""
        self._submit_fg(CMD.SUBMIT_JOB_HIGH, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def submit_job_low(self, func: Name, workload: Payload, cb: Callback = None, *,
                       unique: Optional[Name] = None, timeout: Optional[float] = None,
                       on_data: Callback = None, on_warning: Callback = None,
                       on_status: Callback = None, on_exception: Callback = None) -> None:
        """``submit_job`` at low priority."""
        self._submit_fg(CMD.SUBMIT_JOB_LOW, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def _submit_bg(self, cmd: int, func: Name, workload: Payload, cb: Callback,
                   unique: Optional[Name], epoch: Optional[bytes] = None) -> None:
        fname = _args.function(func)
        ukey = _args.unique(unique)
        load = _args.payload(workload, "workload")
        _args.callback(cb)
        args: Tuple[Any, ...]
        if epoch is None:
            if len(fname) + len(ukey) + len(load) + 2 > MAX_PACKET:
                _args.check_size(fname, ukey, load)  # raises the ValueError
            args = (fname, ukey, load)
        else:
            args = (fname, ukey, epoch, load)
            _args.check_size(*args)
        router = self._check()
        # With a callback, the server that creates the handle notes it with
        # the router (Router.created), for get_status.
        entry = Entry(K_SUBMIT_BG, cb)
        i = router.pick(ukey or None)
        if i < 0 or epoch is not None:
            router.dispatch(cmd, args, entry, ukey or None)
            return
        router.sessions[i].send3(cmd, fname, ukey, load, entry)  # the hot path, as _submit_fg

    def submit_job_bg(self, func: Name, workload: Payload, cb: Callback = None, *,
                      unique: Optional[Name] = None) -> None:
        """A background job on the server routing picks. Callback
        ``cb(handle_str, err)`` on JOB_CREATED; the pool remembers which
        server holds the handle, for ``get_status``."""
        self._submit_bg(CMD.SUBMIT_JOB_BG, func, workload, cb, unique)

    def submit_job_high_bg(self, func: Name, workload: Payload, cb: Callback = None, *,
                           unique: Optional[Name] = None) -> None:
        """``submit_job_bg`` at high priority."""
        self._submit_bg(CMD.SUBMIT_JOB_HIGH_BG, func, workload, cb, unique)

    def submit_job_low_bg(self, func: Name, workload: Payload, cb: Callback = None, *,
                          unique: Optional[Name] = None) -> None:
        """``submit_job_bg`` at low priority."""
        self._submit_bg(CMD.SUBMIT_JOB_LOW_BG, func, workload, cb, unique)

    def submit_job_epoch(self, func: Name, workload: Payload, epoch: int,
                         cb: Callback = None, *, unique: Optional[Name] = None) -> None:
        """A background job run at ``epoch`` (int Unix seconds), routed as
        ``submit_job_bg``. Callback ``cb(handle_str, err)``."""
        when = _args.epoch(epoch)
        self._submit_bg(CMD.SUBMIT_JOB_EPOCH, func, workload, cb, unique, when)

    def get_status(self, handle: Name, cb: Callable[..., Any]) -> None:
        """GET_STATUS. A handle this pool's background submission created is
        asked of the server that created it; any other of every connected
        server, and the first that knows it answers (none does: the
        "unknown" reply). ``cb({'handle', 'known', 'running', 'numerator',
        'denominator'}, err)``.

        Callback err: ``"no server available"`` when no server came up in
        time; the first error when some server failed and none knew it.
        """
        key = _args.handle(handle)
        _args.callback(cb)
        router = self._check()
        name = key.decode("utf-8", "surrogateescape")
        i = router.server_of(name)
        if i is not None and router.sessions[i].state == CONNECTED:
            def known(result: Any, err: Optional[str]) -> None:
                if err is None and not result["known"]:
                    router.forget(name)  # its job ended: the handle is free memory
                if cb is not None:
                    cb(result, err)
            router.sessions[i].send(CMD.GET_STATUS, (key,), Entry(K_STATUS, known))
            return

        def everywhere() -> None:
            up = [j for j, s in enumerate(router.sessions) if s.state == CONNECTED]
            ask = FirstKnown(up, cb, self._call, lambda j: router.remember(name, j))
            router.ask_each(up, CMD.GET_STATUS, (key,), K_STATUS, ask.part)

        router.when_up(everywhere, lambda err: self._fail(cb, err))

    def get_status_unique(self, unique: Name, cb: Callable[..., Any]) -> None:
        """GET_STATUS_UNIQUE on the key's server (the one its submissions
        went to). ``cb({'unique', 'known', 'running', 'numerator',
        'denominator', 'client_count'}, err)``."""
        key = _args.unique(unique)
        if not key:
            raise ValueError("unique must not be empty")
        _args.callback(cb)
        self._check().dispatch(CMD.GET_STATUS_UNIQUE, (key,), Entry(K_STATUS_UNIQUE, cb), key)

    def option(self, name: Name, cb: Callback = None) -> None:
        """OPTION_REQ on every server: ``cb(True, None)`` once each connected
        (or connecting) server accepted it, else ``cb(None, first_err)``;
        a server that is down counts as ``"disconnected"``. "exceptions" is
        remembered by every connection and sent on each connect."""
        opt = _args.name_token(name, "option name")
        if len(opt) >= 64:
            raise ValueError("option name must be shorter than 64 bytes")
        _args.callback(cb)
        router = self._check()
        if opt.lower() == b"exceptions":
            for s in router.sessions:
                s.exceptions = True

        def collapse(results: Dict[str, Any], err: Optional[str]) -> None:
            if cb is not None:
                cb(None if err else True, err)
        self._each(lambda g, part: g.option(opt, part), collapse)

    def _fail(self, cb: Callback, err: str) -> None:
        if cb is not None:
            self._call(cb, None, err)

    def _each(self, send: Callable[[Gearman, Callable[..., Any]], None], cb: Callback) -> None:
        """One request per server, one ``cb({name: result}, first_err)``."""
        router = self._r
        gather = Gather(router.names, cb, self._call)
        for i, g in enumerate(self._servers):
            part = gather.part(i)
            router.to_server(i, lambda g=g, part=part: send(g, part),  # type: ignore[misc]
                             lambda err, part=part: part(None, err))  # type: ignore[misc]

    # ===== Admin (API.md 7 and 11: one reply per server) =====

    def admin(self, command: Name, cb: Callback = None) -> None:
        """A text command on every server: ``cb({server_spec: text}, err)``,
        a server that failed (or is down) showing None and ``err`` the first
        server's error in the given order (None if all answered). Servers
        still making their first connect are waited for."""
        cmd = _args.text(command, "command")
        if b"\r" in cmd or b"\n" in cmd or b"\0" in cmd:
            raise ValueError("admin command must not hold CR, LF or NUL")
        _args.callback(cb)
        self._check()
        self._each(lambda g, part: g.admin(cmd, part), cb)

    def server_status(self, cb: Callback = None) -> None:
        """``status`` on every server: ``cb({spec: text}, err)``, each text
        lines ``FUNC\\tTOTAL\\tRUNNING\\tWORKERS``."""
        self.admin("status", cb)

    def server_workers(self, cb: Callback = None) -> None:
        """``workers`` on every server: ``cb({spec: text}, err)``."""
        self.admin("workers", cb)

    def server_version(self, cb: Callback = None) -> None:
        """``version`` on every server: ``cb({spec: "OK 1.1.20+ds"}, err)``."""
        self.admin("version", cb)

    def maxqueue(self, func: Name, size: int, cb: Callback = None) -> None:
        """``maxqueue FUNC SIZE`` on every server: ``cb({spec: "OK"}, err)``."""
        name = _args.name_token(func, "func")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError("size must be an int")
        if size < 0:
            raise ValueError("size must be >= 0")
        self.admin(b"maxqueue " + name + b" " + str(size).encode(), cb)

    def shutdown_server(self, graceful: bool = False, cb: Callback = None) -> None:
        """``shutdown [graceful]`` on every server: ``cb({spec: text}, err)``
        (gearmand >= 1.1.15 answers ERR UNKNOWN_COMMAND)."""
        self.admin("shutdown graceful" if graceful else "shutdown", cb)

    def all_yours(self, cb: Callback = None) -> None:
        """ALL_YOURS on every server: ``cb({spec: True or None}, err)``
        (gearmand 1.1 refuses it: ``INVALID_COMMAND``)."""
        _args.callback(cb)
        self._check()
        self._each(lambda g, part: g.all_yours(part), cb)

    # ===== Worker (API.md 6 and 11: every server) =====

    def register_function(self, name: Name, callback: Callable[[Job], Any], *,
                          timeout: Optional[float] = None, async_: bool = False) -> None:
        """Serve ``name`` on every server, as ``Gearman.register_function``;
        re-sent to a server each time it connects.

        Raises: TypeError for a coroutine function (use ``gearman_ev.aio``).
        """
        if not callable(callback):
            raise TypeError("callback must be callable as callback(job)")
        if inspect.iscoroutinefunction(callback):
            raise TypeError("callback is a coroutine function: the libev pool runs plain "
                            "functions; use gearman_ev.aio for async def workers")
        _args.function(name)
        _args.timeout(timeout)
        self._check()
        for g in self._servers:
            g.register_function(name, callback, timeout=timeout, async_=async_)

    def work(self, on_idle: Callback = None, *, concurrency: Optional[int] = None) -> None:
        """Grab and run jobs from every server until ``work_stop()``; a
        server that comes back gets the abilities again and is grabbed from.

        Args:
            on_idle: ``on_idle()`` each time the pool has nothing to do: a
                server's worker loop went to sleep and no connected server's
                is awake.
            concurrency: at most this many jobs in flight (and GRABs out)
                across all servers together, the free slots dealt to the
                servers in turn; None: each server's loop runs one GRAB at a
                time, as ``Gearman.work``.
        """
        _args.callback(on_idle, "on_idle")
        limit = _args.concurrency(concurrency)
        router = self._check()
        cap = GrabCap(router.sessions, limit) if limit is not None else None
        idle = _idle_watch(router, on_idle) if on_idle is not None else None
        if cap is not None:
            cap.hold = True  # none grabs before every server's loop is on
        for s in router.sessions:
            s.grab_cap = cap
        for g in self._servers:
            g.work(idle, concurrency=limit)
        router.hold_grabs(cap)
        if cap is not None:
            cap.share()

    def work_stop(self) -> None:
        """Stop grabbing on every server; jobs in flight still report."""
        self._check()
        for g in self._servers:
            g.work_stop()


def _idle_watch(router: Router, on_idle: Callable[[], Any]) -> Callable[[], None]:
    """A session's on_idle that reaches ``on_idle`` only when no connected
    session of the pool is awake (the router is held weakly)."""
    ref = weakref.ref(router)

    def idle() -> None:
        r = ref()
        if r is not None and not any(s.wants_grab for s in r.sessions):
            on_idle()
    return idle
