"""Connection plumbing: connect and reconnect, timeouts, the libev watchers that
drive the C connection (gm_conn), and the request FIFO.

What must stay true here:
- Rule 1: every callback a request carries fires exactly once. A request is in
  exactly one of three places until then: ``_waiting`` (not sent yet),
  ``_pending`` (sent, awaiting its in-order reply) or ``_active`` (a
  foreground job with a handle). ``_drop`` empties all three.
- Replies answer ``_pending`` in FIFO order (gearmand keeps request order per
  connection); server-initiated packets never touch it.
- User code runs only through ``_call``: its exceptions are logged, and after it
  returns the connection may be gone (check ``self._gen``).
- Watchers and timers hold this object weakly, so an unreferenced object is
  collected (and its callbacks drained by ``__del__``).
"""
from __future__ import annotations

import collections
import errno
import logging
import os
import socket
import weakref

from . import _errors, ev
from ._ffi import ffi, lib

__all__ = ["Connection", "Entry", "Submission", "Attached"]

log = logging.getLogger("gearman_ev")

# Connection states. Requests queue in CONNECTING and WAITING (for a
# reconnect); only DISCONNECTED refuses them.
DISCONNECTED, CONNECTING, CONNECTED, WAITING = 0, 1, 2, 3

# FIFO entry kinds. The two text kinds equal the C decoder's GM_TEXT_* modes so
# the head of the FIFO tells the decoder what text to expect.
K_TEXT_LINE = lib.GM_TEXT_LINE
K_TEXT_BLOCK = lib.GM_TEXT_BLOCK
K_ECHO, K_SUBMIT, K_SUBMIT_BG, K_STATUS, K_STATUS_UNIQUE, K_OPTION, K_GRAB, \
    K_ALL_YOURS, K_MARKER = range(3, 12)

#: What each reply packet may answer.
ANSWERS = {
    lib.GM_CMD_JOB_CREATED: (K_SUBMIT, K_SUBMIT_BG),
    lib.GM_CMD_ECHO_RES: (K_ECHO, K_MARKER),
    lib.GM_CMD_STATUS_RES: (K_STATUS,),
    lib.GM_CMD_STATUS_RES_UNIQUE: (K_STATUS_UNIQUE,),
    lib.GM_CMD_OPTION_RES: (K_OPTION,),
    lib.GM_CMD_NO_JOB: (K_GRAB,),
    lib.GM_CMD_JOB_ASSIGN: (K_GRAB,),
    lib.GM_CMD_JOB_ASSIGN_UNIQ: (K_GRAB,),
    lib.GM_CMD_JOB_ASSIGN_ALL: (K_GRAB,),
}

_pack4 = lib.gm_conn_pack4
_NULL = ffi.NULL

_UNIX_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class Entry:
    """One request awaiting its reply: what kind, whom to tell."""

    __slots__ = ("kind", "cb")

    def __init__(self, kind, cb):
        self.kind = kind
        self.cb = cb


class Submission(Entry):
    """A foreground job, from submit to its one terminal callback: its own
    FIFO entry until JOB_CREATED, then listed in ``_active`` by handle."""

    __slots__ = ("on_data", "on_warning", "on_status", "on_exception",
                 "timer", "done", "handle", "shared")

    def __init__(self, cb, on_data, on_warning, on_status, on_exception):
        self.kind = K_SUBMIT
        self.cb = cb
        self.on_data = on_data
        self.on_warning = on_warning
        self.on_status = on_status
        self.on_exception = on_exception
        self.timer = None
        self.done = False
        self.handle = None
        self.shared = False  # has a unique key: later submissions may share its handle


class Attached:
    """The submissions of this connection attached to one handle, in arrival
    order; the k-th copy of an event goes to the k-th (PROTOCOL.md 4.2)."""

    __slots__ = ("subs", "turn")

    def __init__(self, subs):
        self.subs = subs
        self.turn = 0

    def next_sub(self):
        sub = self.subs[self.turn]
        self.turn = (self.turn + 1) % len(self.subs)
        return sub

    def retire(self, sub):
        i = self.subs.index(sub)
        del self.subs[i]
        if i < self.turn:
            self.turn -= 1
        if self.turn >= len(self.subs):
            self.turn = 0


def _callback_property(name):
    """A read/write property holding a user callback or None."""
    attr = "_" + name

    def get(self):
        return getattr(self, attr)

    def set_(self, value):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None")
        setattr(self, attr, value)
    return property(get, set_, doc=f"The {name} callback (None to clear).")


def _weak_method(obj, func):
    """A watcher callback that calls func(obj, ...) without keeping obj alive."""
    ref = weakref.ref(obj)

    def callback(watcher, revents):
        target = ref()
        if target is None:
            watcher.stop()
        else:
            func(target, watcher, revents)
    return callback


class Connection:
    """One gearmand connection: sockets, watchers, FIFO, failure handling."""

    _handlers: dict = {}  # cmd -> function(self, pkt); filled by Gearman

    def _conn_init(self, loop, priority, keepalive, connect_timeout, command_timeout,
                   reconnect, reconnect_delay, max_reconnect_attempts,
                   on_error, on_connect, on_disconnect):
        if loop is None:
            loop = ev.default_loop()
        if not isinstance(loop, ev.Loop):
            raise TypeError("loop must be a gearman_ev.ev.Loop")
        self._loop = loop
        self._c = _NULL            # allocated last, once every argument passed
        self._pkt = ffi.new("gm_packet_t *")
        self._sock = None
        self._state = DISCONNECTED
        self._gen = 0              # bumped on every drop: stale work checks it
        self._address = None       # ("tcp", host, port) or ("unix", path)
        self._addrinfos = []       # addresses left to try in this attempt
        self._connect_error = None  # a failure waiting to be reported from the loop
        self._pending = collections.deque()
        self._waiting = collections.deque()   # (cmd, args, entry) before connect
        self._active = {}          # handle bytes -> Submission (Attached if coalesced)
        self._nactive = 0
        self._attempts = 0
        self._reconnect_enabled = bool(reconnect)
        self._priority = pri = _priority(priority)
        self._rio = ev.Io(0, ev.EV_READ, loop,
                          _weak_method(self, Connection._on_readable), priority=pri)
        self._wio = ev.Io(0, ev.EV_WRITE, loop,
                          _weak_method(self, Connection._on_writable), priority=pri)
        # Requests queued during a loop iteration are written just before the
        # loop polls: one send per iteration, no epoll_ctl round for the
        # write watcher unless the kernel pushes back.
        self._flusher = ev.Prepare(loop, _weak_method(self, Connection._on_prepare),
                                   priority=pri)
        self._connect_timer = ev.Timer(0, 0, loop,
                                       _weak_method(self, Connection._on_connect_timeout),
                                       priority=pri)
        self._command_timer = ev.Timer(0, 0, loop,
                                       _weak_method(self, Connection._on_command_timeout),
                                       priority=pri)
        self._reconnect_timer = ev.Timer(0, 0, loop,
                                         _weak_method(self, Connection._on_reconnect_timer),
                                         priority=pri)
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._reconnect_delay = _seconds("reconnect_delay", reconnect_delay)
        self._max_reconnect_attempts = _count("max_reconnect_attempts", max_reconnect_attempts)
        self.on_error = on_error
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        # Freed by _close(), not by ffi.gc: cffi may run a gc destructor as a
        # finalizer of the same collection, before __del__ has finished with it.
        c = lib.gm_conn_new()
        if c == _NULL:
            raise MemoryError("gm_conn_new")
        self._c = c

    # ===== Properties (API.md 4) =====

    @property
    def priority(self) -> int:
        return self._priority

    @priority.setter
    def priority(self, value):
        self._priority = value = _priority(value)
        for w in self._watchers():
            was_active = w.active
            if was_active:
                w.stop()
            w.priority = value
            if was_active:
                w.start()

    def _watchers(self):
        return (self._rio, self._wio, self._flusher, self._connect_timer,
                self._command_timer, self._reconnect_timer)

    @property
    def keepalive(self) -> float:
        return self._keepalive

    @keepalive.setter
    def keepalive(self, value):
        self._keepalive = _seconds("keepalive", value)
        if self._sock is not None:
            self._apply_keepalive(self._sock)

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, value):
        self._connect_timeout = _seconds("connect_timeout", value)

    @property
    def command_timeout(self) -> float:
        return self._command_timeout

    @command_timeout.setter
    def command_timeout(self, value):
        self._command_timeout = _seconds("command_timeout", value)
        if not self._command_timeout:
            self._command_timer.stop()

    on_error = _callback_property("on_error")
    on_connect = _callback_property("on_connect")
    on_disconnect = _callback_property("on_disconnect")

    @property
    def is_connected(self) -> bool:
        """True while connected or connecting."""
        return self._state in (CONNECTING, CONNECTED)

    @property
    def reconnect_enabled(self) -> bool:
        return self._reconnect_enabled

    def reconnect(self, enable, delay=None, max_attempts=None) -> None:
        """Turn automatic reconnection on or off; omitted values stay."""
        if delay is not None:
            delay = _seconds("delay", delay)
        if max_attempts is not None:
            max_attempts = _count("max_attempts", max_attempts)
        self._reconnect_enabled = bool(enable)
        if delay is not None:
            self._reconnect_delay = delay
        if max_attempts is not None:
            self._max_reconnect_attempts = max_attempts
        if not self._reconnect_enabled:
            self._reconnect_timer.stop()
            if self._state == WAITING:
                # The pending reconnect is cancelled: nothing will send what
                # waited for it (rule 1), and new requests are refused.
                self._state = DISCONNECTED
                self._drain(_errors.DISCONNECTED, waiting=True)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def active_count(self) -> int:
        return self._nactive

    @property
    def buffer_sizes(self) -> tuple:
        if self._c == _NULL:
            return (0, 0)  # destroyed
        return (lib.gm_conn_read_capacity(self._c), lib.gm_conn_write_capacity(self._c))

    # ===== Connecting =====

    def connect(self, host, port=4730) -> None:
        """TCP connect (host name, IPv4 or IPv6 literal); non-blocking."""
        if isinstance(host, bytes):
            host = host.decode()
        if not isinstance(host, str):
            raise TypeError("host must be a str")
        if not host:
            raise ValueError("host must not be empty")
        port = _port(port)
        self._check_not_connected()
        self._address = ("tcp", host, port)
        self._attempts = 0
        self._reconnect_timer.stop()
        self._start_connect()

    def connect_unix(self, path) -> None:
        """Connect to a Unix-domain socket."""
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if isinstance(path, str):
            path = os.fsencode(path)
        if not isinstance(path, bytes):
            raise TypeError("path must be a str, bytes or os.PathLike")
        if not path or b"\0" in path:
            raise ValueError("path must be non-empty and hold no NUL")
        self._check_not_connected()
        self._address = ("unix", path)
        self._attempts = 0
        self._reconnect_timer.stop()
        self._start_connect()

    def _check_not_connected(self):
        if self._closed:
            raise _errors.GearmanError(_errors.CLIENT_DESTROYED)
        if self._state in (CONNECTING, CONNECTED):
            raise _errors.GearmanError(_errors.ALREADY_CONNECTED)

    def _start_connect(self):
        self._state = CONNECTING
        self._connect_error = None
        kind = self._address[0]
        if kind == "unix":
            path = self._address[1]
            if len(path) > _UNIX_PATH_MAX:
                self._fail_connect_soon(_errors.UNIX_PATH_TOO_LONG)
                return
            self._addrinfos = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, path)]
        else:
            _, host, port = self._address
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                self._fail_connect_soon(f"getaddrinfo: {exc.strerror}")
                return
            self._addrinfos = [(fam, typ, proto, addr) for fam, typ, proto, _, addr in infos]
        if self._connect_timeout:
            self._connect_timer.set(self._connect_timeout, 0)
            self._connect_timer.start()
        self._try_next_address(None)

    def _fail_connect_soon(self, err):
        """Report a connect failure from the loop, like every other outcome of
        a connect: never inside connect() or the constructor."""
        self._connect_error = err
        self._connect_timer.stop()
        self._connect_timer.set(0, 0)
        self._connect_timer.start()

    def _try_next_address(self, last_error):
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
                self._wio.stop()
                self._wio.set(sock, ev.EV_WRITE)
                self._wio.start()
                return
            sock.close()
            last_error = rc
        self._fail_connect_soon(f"connect: {os.strerror(last_error or errno.ECONNREFUSED)}")

    def _apply_keepalive(self, sock):
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        seconds = int(self._keepalive)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if seconds else 0)
        if seconds and hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, seconds))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, seconds))

    def _connect_in_progress_done(self):
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            self._wio.stop()
            self._connected()
            return
        self._wio.stop()
        self._sock.close()
        self._sock = None
        self._try_next_address(err)

    def _connected(self):
        """The socket is up: queue the session set-up, then what waited."""
        self._connect_timer.stop()
        self._state = CONNECTED
        self._attempts = 0
        fd = self._sock.fileno()
        lib.gm_conn_reset(self._c, fd)
        self._rio.stop()
        self._rio.set(fd, ev.EV_READ)
        self._rio.start()
        self._wio.stop()
        self._wio.set(fd, ev.EV_WRITE)
        self._queue_session_setup()
        waiting, self._waiting = self._waiting, collections.deque()
        for cmd, args, entry in waiting:
            self._pack(cmd, args, entry)
        self._flush_soon()
        gen = self._gen
        if self._on_connect is not None:
            self._call(self._on_connect)
        if gen == self._gen and self._state == CONNECTED:
            self._after_connect()

    def _queue_session_setup(self):
        """Options, client id (and, in Worker, abilities) go first on every
        connect, ahead of what waited and of what on_connect submits."""
        if self._exceptions:
            self._pack(lib.GM_CMD_OPTION_REQ, (b"exceptions",), Entry(K_OPTION, None))
        if self._client_id is not None:
            self._pack(lib.GM_CMD_SET_CLIENT_ID, (self._client_id,), None)

    def _after_connect(self):
        """Hook for the worker loop to resume after on_connect."""

    def _connect_failed(self, err):
        """A connect attempt failed before the connection was established."""
        self._close_socket()
        self._gen += 1
        if self._should_reconnect():
            self._state = WAITING  # what callbacks submit meanwhile waits
        else:
            self._state = DISCONNECTED
            self._drain(_errors.DISCONNECTED, waiting=True)
        self._report_error(err)
        if self._state == WAITING:
            self._schedule_reconnect()

    def _on_connect_timeout(self, watcher, revents):
        if self._state == CONNECTING:
            self._addrinfos = []
            self._connect_failed(self._connect_error or _errors.CONNECT_TIMEOUT)

    # ===== Reconnecting =====

    def _should_reconnect(self):
        return self._reconnect_enabled and self._address is not None and not self._closed

    def _schedule_reconnect(self):
        if self._max_reconnect_attempts and self._attempts >= self._max_reconnect_attempts:
            self._state = DISCONNECTED
            self._drain(_errors.DISCONNECTED, waiting=True)
            self._report_error(_errors.MAX_RECONNECTS)
            return
        self._attempts += 1
        self._state = WAITING  # requests queue meanwhile
        # Always through the loop, even at delay 0: never re-entered from a
        # callback that is still unwinding.
        self._reconnect_timer.stop()
        self._reconnect_timer.set(self._reconnect_delay, 0)
        self._reconnect_timer.start()

    def _on_reconnect_timer(self, watcher, revents):
        if self._state == WAITING and not self._closed:
            self._start_connect()

    # ===== Dropping =====

    def disconnect(self) -> None:
        """Close now: every pending callback gets "disconnected", then
        on_disconnect fires; no on_error, and no reconnect."""
        self._reconnect_timer.stop()
        if self._state in (DISCONNECTED, WAITING):
            self._state = DISCONNECTED
            self._drain(_errors.DISCONNECTED, waiting=True)
            return
        self._drop(None, reconnect=False)

    def _drop(self, err, drain_err=_errors.DISCONNECTED, reconnect=True):
        """End the connection: drain, on_disconnect, on_error, maybe reconnect."""
        was_established = self._state == CONNECTED
        self._close_socket(flush=err is None)
        self._state = DISCONNECTED
        self._gen += 1
        retry = reconnect and err is not None and self._should_reconnect()
        if retry:
            self._state = WAITING  # requests made from callbacks wait
        self._drain(drain_err, waiting=not retry)
        if was_established and self._on_disconnect is not None and not self._closed:
            self._call(self._on_disconnect)
        if err is not None:
            self._report_error(err)
        if self._state == WAITING and self._should_reconnect():
            self._schedule_reconnect()

    def _close_socket(self, flush=False):
        for w in (self._rio, self._wio, self._flusher, self._connect_timer,
                  self._command_timer):
            w.stop()
        if self._sock is not None:
            if flush and self._state == CONNECTED:
                # What was already queued (a job's result, say) goes out if
                # the kernel takes it now; nothing waits for it.
                lib.gm_conn_write(self._c)
            self._sock.close()
            self._sock = None
        if self._c != _NULL:
            lib.gm_conn_reset(self._c, -1)

    def _drain(self, err, waiting):
        """Fire every pending and active callback once with err."""
        pending, self._pending = self._pending, collections.deque()
        active, self._active = self._active, {}
        self._nactive = 0
        if waiting:
            queued, self._waiting = self._waiting, collections.deque()
            entries = [e for _, _, e in queued if e is not None]
        else:
            entries = []
        for entry in pending:
            self._fail_entry(entry, err)
        for item in active.values():
            for sub in item.subs if type(item) is Attached else (item,):
                self._finish_sub(sub, None, err)
        for entry in entries:
            self._fail_entry(entry, err)

    def _fail_entry(self, entry, err):
        if entry.kind == K_SUBMIT:
            self._finish_sub(entry, None, err)
        elif entry.cb is not None:
            self._call(entry.cb, None, err)

    def _report_error(self, err):
        if self._closed:
            return
        if self._on_error is None:
            log.warning("gearman_ev: %s", err)
        else:
            self._call(self._on_error, err)

    # ===== Sending =====

    def _send(self, cmd, args, entry=None):
        """Queue one request: on the wire if connected, else until connect."""
        if self._state == CONNECTED:
            self._pack(cmd, args, entry)
            self._flush_soon()
        elif self._state != DISCONNECTED:
            self._waiting.append((cmd, args, entry))
        else:
            raise _errors.GearmanError(_errors.NOT_CONNECTED)

    def _send3(self, cmd, a0, a1, a2, entry):
        """``_send`` for the three-argument submissions, inlined: the hot path
        of every client (one C call, no tuple, no intermediate frames)."""
        if self._state != CONNECTED:
            self._send(cmd, (a0, a1, a2), entry)
            return
        rc = _pack4(self._c, cmd, 3, a0, len(a0), a1, len(a1), a2, len(a2), _NULL, 0)
        if rc != 0:
            raise MemoryError(_errors.message(rc))
        pending = self._pending
        if not pending and self._command_timeout:
            self._command_timer.set(0, self._command_timeout)
            self._command_timer.again()
        pending.append(entry)
        if self._flusher._handle is None:  # not started: a Python check, no C call
            self._flusher.start()

    def _pack(self, cmd, args, entry):
        if cmd is None:  # an admin line
            lib.gm_conn_append(self._c, args, len(args))
            self._push(entry)
            return
        # Arguments are bytes or char[] cdata (see _args.payload): both pass
        # to C without a copy.
        n = len(args)
        if n == 3:  # submissions
            a0, a1, a2 = args
            rc = _pack4(self._c, cmd, 3, a0, len(a0), a1, len(a1), a2, len(a2), _NULL, 0)
        elif n == 2:  # a worker's results and events
            a0, a1 = args
            rc = _pack4(self._c, cmd, 2, a0, len(a0), a1, len(a1), _NULL, 0, _NULL, 0)
        elif n == 0:  # GRAB_JOB, PRE_SLEEP
            rc = _pack4(self._c, cmd, 0, _NULL, 0, _NULL, 0, _NULL, 0, _NULL, 0)
        else:
            a = [_NULL, 0, _NULL, 0, _NULL, 0, _NULL, 0]
            for i, arg in enumerate(args):
                a[2 * i] = arg
                a[2 * i + 1] = len(arg)
            rc = _pack4(self._c, cmd, n, *a)
        if rc != 0:
            raise MemoryError(_errors.message(rc))
        if entry is not None:
            self._push(entry)

    def _push(self, entry):
        if not self._pending and self._command_timeout:
            self._command_timer.set(0, self._command_timeout)
            self._command_timer.again()
        self._pending.append(entry)

    def _flush_soon(self):
        # Requests made in one go leave in one write, before the loop polls.
        if self._flusher._handle is None:  # not started: a Python check, no C call
            self._flusher.start()

    def _on_prepare(self, watcher, revents):
        watcher.stop()
        if self._state != CONNECTED or self._wio._handle is not None:
            return  # not connected yet, or already waiting for writability
        left = lib.gm_conn_write(self._c)
        if left > 0:
            self._wio.start()  # the kernel took part: the rest when writable
        elif left < 0:
            self._drop(_errors.message(left, self._c.err_no))

    def _on_writable(self, watcher, revents):
        if self._state == CONNECTING:
            self._connect_in_progress_done()
            return
        left = lib.gm_conn_write(self._c)
        if left == 0:
            watcher.stop()
        elif left < 0:
            self._drop(_errors.message(left, self._c.err_no))

    # ===== Receiving =====

    def _on_readable(self, watcher, revents):
        c = self._c
        pkt = self._pkt
        gen = self._gen
        handlers = self._handlers
        rc = lib.gm_conn_read(c)
        while True:
            pending = self._pending
            mode = pending[0].kind if pending else 0
            n = lib.gm_conn_next(c, mode if mode <= K_TEXT_BLOCK else 0, pkt)
            if n <= 0:
                break
            handler = handlers.get(pkt.cmd)
            if handler is None:
                log.debug("gearman_ev: ignoring packet type %d", pkt.cmd)
                continue
            handler(self, pkt)
            if gen != self._gen:
                return  # a callback dropped or replaced the connection
        if n < 0:
            self._drop(_errors.message(n))
            return
        if rc < 0:
            self._drop(_errors.message(rc, c.err_no))
            return
        if self._command_timeout:
            if self._pending:
                self._command_timer.again()  # every byte received resets it
            else:
                self._command_timer.stop()

    def _on_command_timeout(self, watcher, revents):
        if self._state == CONNECTED and self._pending:
            self._drop(_errors.COMMAND_TIMEOUT, drain_err=_errors.COMMAND_TIMEOUT)
        else:
            watcher.stop()

    def _pop(self, cmd):
        """The FIFO head answered by reply ``cmd``, or None after a drop."""
        pending = self._pending
        if pending and pending[0].kind in ANSWERS[cmd]:
            return pending.popleft()
        self._protocol_error(f"unexpected response {_packet_name(cmd)}")
        return None

    def _protocol_error(self, err):
        self._drop(err)

    # ===== Calling user code =====

    def _call(self, func, *args):
        """Run user code; report what it raises; never let it unwind us."""
        try:
            return func(*args)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._loop._park(exc)
        except BaseException:  # noqa: BLE001 - a user callback must not break us
            log.exception("gearman_ev: exception in callback %r", func)
        return None

    # ===== Teardown =====

    def _close(self):
        """Garbage collection: drain once, close; no on_disconnect/on_error."""
        if self._closed:
            return
        self._closed = True
        for w in self._watchers():
            w.stop()
        self._close_socket(flush=True)
        self._state = DISCONNECTED
        self._gen += 1
        self._drain(_errors.DISCONNECTED, waiting=True)
        c, self._c = self._c, _NULL
        if c != _NULL:
            lib.gm_conn_free(c)


def _seconds(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds")
    if value != value or value < 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0")
    return float(value)


def _priority(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("priority must be an int")
    if not ev.EV_MINPRI <= value <= ev.EV_MAXPRI:
        raise ValueError(f"priority must be between {ev.EV_MINPRI} and {ev.EV_MAXPRI}")
    return value


def _port(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("port must be an int")
    if not 0 < value < 65536:
        raise ValueError("port must be between 1 and 65535")
    return value


def _count(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


_PACKET_NAMES = {getattr(lib, n): n[len("GM_CMD_"):] for n in dir(lib) if n.startswith("GM_CMD_")}


def _packet_name(cmd):
    return _PACKET_NAMES.get(cmd, str(cmd))
