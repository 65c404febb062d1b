"""class Gearman: the client and admin halves of one connection (API.md 2-5,
7, 8): argument checks, request encoding calls, and (result, err) dispatch.

What must stay true here:
- Every argument is checked (TypeError / ValueError) before any I/O and before
  the "not connected" check, so a bad call fails the same way in every state.
- A foreground submission fires its terminal callback exactly once: on its
  terminal packet, its own ``timeout``, an ERROR in place of JOB_CREATED, or a
  drop. Coalesced submissions on one handle get the k-th copy of each event
  (PROTOCOL.md 4.2).
"""
from __future__ import annotations

import weakref

from . import _args, _errors, ev
from ._args import arg_str as _str
from ._conn import (ANSWERS, K_ALL_YOURS, K_ECHO, K_MARKER, K_OPTION, K_STATUS, K_STATUS_UNIQUE,
                    K_SUBMIT_BG, K_TEXT_BLOCK, K_TEXT_LINE, Attached, Connection, Entry,
                    Submission, _port)
from ._ffi import ffi, lib
from ._worker import HANDLERS as _WORKER_HANDLERS, Worker

__all__ = ["Gearman"]

MAX_PACKET = lib.GM_MAX_PACKET
_CREATED_ANSWERS = ANSWERS[lib.GM_CMD_JOB_CREATED]

# Admin commands whose reply is a block ending in ".\n" (PROTOCOL.md 7).
# gearmand 1.1.20 answers these three with a block whatever words follow
# ("status x" too) [probe]; "show" only with exactly these arguments.
_BLOCK_COMMANDS = {b"status", b"workers", b"prioritystatus"}
_BLOCK_SHOW_ARGS = ([b"jobs"], [b"unique", b"jobs"])
unpack = ffi.unpack



class Gearman(Worker, Connection):
    """One connection to gearmand: client, worker and admin (API.md 2).

    Args: see API.md 2. All times are seconds; 0 disables a timeout.
    Raises: TypeError / ValueError for bad arguments, before any I/O.
    """

    def __init__(self, host=None, port=4730, *, path=None, loop=None, priority=0,
                 keepalive=0, connect_timeout=0, command_timeout=0,
                 reconnect=False, reconnect_delay=1.0, max_reconnect_attempts=0,
                 exceptions=False, client_id=None, grab_unique=False,
                 on_error=None, on_connect=None, on_disconnect=None):
        if host is not None and path is not None:
            raise ValueError("cannot specify both 'host' and 'path'")
        _port(port)  # checked even when unused (no host): a bad argument is refused
        client_id = None if client_id is None else _args.name_token(client_id, "client_id")
        self._closed = True  # until set-up is complete, __del__ has nothing to do
        self._conn_init(loop, priority, keepalive, connect_timeout, command_timeout,
                        reconnect, reconnect_delay, max_reconnect_attempts,
                        on_error, on_connect, on_disconnect)
        self._exceptions = bool(exceptions)
        self._client_id = client_id
        self._grab_unique = bool(grab_unique)
        self._worker_init()
        self._closed = False  # from here on __del__ drains, closes and frees
        if host is not None:
            self.connect(host, port)
        elif path is not None:
            self.connect_unix(path)

    # ===== Lifecycle =====

    def __enter__(self) -> Gearman:
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def __del__(self):
        try:
            self._close()
        except Exception:  # noqa: BLE001 - nothing may escape a finalizer
            pass

    def __repr__(self):
        state = {0: "disconnected", 1: "connecting", 2: "connected", 3: "waiting"}[self._state]
        return f"<Gearman {self._address} {state} pending={len(self._pending)}>"

    # ===== Client (API.md 5) =====

    def echo(self, data, cb=None) -> None:
        """ECHO_REQ. Callback: ``cb(echoed_bytes, err)``."""
        data = _args.payload(data)
        _args.callback(cb)
        _args.check_size(data)
        self._send(lib.GM_CMD_ECHO_REQ, (data,), Entry(K_ECHO, cb))

    def _submit_fg(self, cmd, func, workload, cb, unique, timeout, on_data, on_warning,
                   on_status, on_exception):
        func = _args.function(func)
        unique = _args.unique(unique)
        workload = _args.payload(workload, "workload")
        _args.callback(cb)
        if on_data or on_warning or on_status or on_exception:
            for name, h in (("on_data", on_data), ("on_warning", on_warning),
                            ("on_status", on_status), ("on_exception", on_exception)):
                _args.callback(h, name)
        timeout = _args.timeout(timeout) if timeout is not None else 0.0
        if len(func) + len(unique) + len(workload) + 2 > MAX_PACKET:
            _args.check_size(func, unique, workload)  # raises the ValueError
        sub = Submission(cb, on_data, on_warning, on_status, on_exception)
        if unique:
            sub.shared = True
        self._send3(cmd, func, unique, workload, sub)
        if timeout:
            sub.timer = ev.Timer(timeout, 0, self._loop, _job_timeout(self, sub))
            sub.timer.start()

    def submit_job(self, func, workload, cb=None, *, unique=None, timeout=None,
                   on_data=None, on_warning=None, on_status=None, on_exception=None) -> None:
        """A foreground job. Terminal callback ``cb(result_bytes, err)``.

        Per-event handlers: ``on_data(bytes)``, ``on_warning(bytes)``,
        ``on_status(numerator, denominator)``, ``on_exception(bytes)``.
        ``timeout`` (seconds) bounds the whole job: ``cb(None, "job timeout")``.
        """
        self._submit_fg(lib.GM_CMD_SUBMIT_JOB, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def submit_job_high(self, func, workload, cb=None, *, unique=None, timeout=None,
                        on_data=None, on_warning=None, on_status=None, on_exception=None):
        """``submit_job`` at high priority."""
        self._submit_fg(lib.GM_CMD_SUBMIT_JOB_HIGH, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def submit_job_low(self, func, workload, cb=None, *, unique=None, timeout=None,
                       on_data=None, on_warning=None, on_status=None, on_exception=None):
        """``submit_job`` at low priority."""
        self._submit_fg(lib.GM_CMD_SUBMIT_JOB_LOW, func, workload, cb, unique, timeout,
                        on_data, on_warning, on_status, on_exception)

    def _submit_bg(self, cmd, func, workload, cb, unique, epoch=None):
        func = _args.function(func)
        unique = _args.unique(unique)
        workload = _args.payload(workload, "workload")
        _args.callback(cb)
        if epoch is None:
            if len(func) + len(unique) + len(workload) + 2 > MAX_PACKET:
                _args.check_size(func, unique, workload)  # raises the ValueError
            self._send3(cmd, func, unique, workload, Entry(K_SUBMIT_BG, cb))
            return
        args = (func, unique, epoch, workload)
        _args.check_size(*args)
        self._send(cmd, args, Entry(K_SUBMIT_BG, cb))

    def submit_job_bg(self, func, workload, cb=None, *, unique=None) -> None:
        """A background job. Callback ``cb(handle_str, err)`` on JOB_CREATED."""
        self._submit_bg(lib.GM_CMD_SUBMIT_JOB_BG, func, workload, cb, unique)

    def submit_job_high_bg(self, func, workload, cb=None, *, unique=None) -> None:
        """``submit_job_bg`` at high priority."""
        self._submit_bg(lib.GM_CMD_SUBMIT_JOB_HIGH_BG, func, workload, cb, unique)

    def submit_job_low_bg(self, func, workload, cb=None, *, unique=None) -> None:
        """``submit_job_bg`` at low priority."""
        self._submit_bg(lib.GM_CMD_SUBMIT_JOB_LOW_BG, func, workload, cb, unique)

    def submit_job_epoch(self, func, workload, epoch, cb=None, *, unique=None) -> None:
        """A background job run at ``epoch`` (int Unix seconds).
        Callback ``cb(handle_str, err)``."""
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError("epoch must be an int (Unix seconds)")
        if not _args.INT64_MIN <= epoch <= _args.INT64_MAX:
            raise ValueError("epoch outside int64")
        self._submit_bg(lib.GM_CMD_SUBMIT_JOB_EPOCH, func, workload, cb, unique,
                        str(epoch).encode())

    def get_status(self, handle, cb) -> None:
        """GET_STATUS. ``cb({'handle', 'known', 'running', 'numerator',
        'denominator'}, err)``; known/running are bools."""
        handle = _args.handle(handle)
        _args.callback(cb)
        self._send(lib.GM_CMD_GET_STATUS, (handle,), Entry(K_STATUS, cb))

    def get_status_unique(self, unique, cb) -> None:
        """GET_STATUS_UNIQUE. ``cb({'unique', 'known', 'running', 'numerator',
        'denominator', 'client_count'}, err)``."""
        key = _args.unique(unique)
        if not key:
            raise ValueError("unique must not be empty")
        _args.callback(cb)
        self._send(lib.GM_CMD_GET_STATUS_UNIQUE, (key,), Entry(K_STATUS_UNIQUE, cb))

    def option(self, name, cb=None) -> None:
        """OPTION_REQ. ``cb(True, err)``; "exceptions" is re-sent on reconnect."""
        opt = _args.name_token(name, "option name")
        if len(opt) >= 64:
            raise ValueError("option name must be shorter than 64 bytes")
        _args.callback(cb)
        self._send(lib.GM_CMD_OPTION_REQ, (opt,), Entry(K_OPTION, cb))
        if opt.lower() == b"exceptions":
            self._exceptions = True

    # ===== Admin (API.md 7) =====

    def admin(self, command, cb=None) -> None:
        """A text command; ``cb(text, err)``. Block replies come whole."""
        cmd = _args.text(command, "command")
        if b"\r" in cmd or b"\n" in cmd or b"\0" in cmd:
            raise ValueError("admin command must not hold CR, LF or NUL")
        _args.callback(cb)
        # Split as gearmand does: on runs of spaces only (a tab is part of a
        # word), a leading space making the command word empty; ASCII case-blind.
        head, *rest = cmd.lower().split(b" ")
        rest = [w for w in rest if w]
        block = head in _BLOCK_COMMANDS or (head == b"show" and rest in _BLOCK_SHOW_ARGS)
        kind = K_TEXT_BLOCK if block else K_TEXT_LINE
        # CRLF: gearmand trims two bytes off some lines (PROTOCOL.md 7).
        self._send(None, cmd + b"\r\n", Entry(kind, cb))

    def server_status(self, cb=None) -> None:
        """``status``: lines ``FUNC\\tTOTAL\\tRUNNING\\tWORKERS``."""
        self.admin("status", cb)

    def server_workers(self, cb=None) -> None:
        """``workers``: one line per connection."""
        self.admin("workers", cb)

    def server_version(self, cb=None) -> None:
        """``version``: e.g. ``"OK 1.1.20+ds"``."""
        self.admin("version", cb)

    def maxqueue(self, func, size, cb=None) -> None:
        """``maxqueue FUNC SIZE``: ``"OK"``."""
        name = _args.name_token(func, "func")
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError("size must be an int")
        if size < 0:
            raise ValueError("size must be >= 0")
        self.admin(b"maxqueue " + name + b" " + str(size).encode(), cb)

    def shutdown_server(self, graceful=False, cb=None) -> None:
        """``shutdown [graceful]`` (gearmand >= 1.1.15 answers ERR UNKNOWN_COMMAND)."""
        self.admin("shutdown graceful" if graceful else "shutdown", cb)

    # ===== Reply and event handlers =====

    def _finish_sub(self, sub, result, err):
        """The one terminal callback of a foreground submission."""
        if sub.done:
            return
        sub.done = True
        if sub.timer is not None:
            sub.timer.stop()
            sub.timer = None
        if sub.cb is not None:
            self._call(sub.cb, result, err)

    def _on_job_created(self, pkt):
        pending = self._pending
        if pending and pending[0].kind in _CREATED_ANSWERS:  # _pop, inlined
            entry = pending.popleft()
        else:
            self._pop(lib.GM_CMD_JOB_CREATED)  # reports the mismatch
            return
        # Handles stay bytes inside: the key of _active, never decoded per event.
        handle = unpack(pkt.arg[0], pkt.len[0])
        if entry.kind == K_SUBMIT_BG:
            if entry.cb is not None:
                self._call(entry.cb, handle.decode("utf-8", "surrogateescape"), None)
            return
        entry.handle = handle
        if not entry.done:
            self._nactive += 1
        elif not entry.shared:
            return  # timed out, and no other submission can share its handle
        active = self._active
        other = active.get(handle)
        if other is None:
            active[handle] = entry  # the common case: one submission per handle
        elif type(other) is Attached:
            other.subs.append(entry)
        else:
            active[handle] = Attached([other, entry])

    def _event_sub(self, pkt, terminal):
        """The submission the next copy of this work event belongs to; a
        terminal copy also retires it from _active."""
        handle = unpack(pkt.arg[0], pkt.len[0])
        active = self._active
        item = active.get(handle)
        if item is None or type(item) is not Attached:
            if terminal and item is not None:
                del active[handle]
            return item
        sub = item.next_sub()
        if terminal:
            item.retire(sub)
            if len(item.subs) == 1:
                active[handle] = item.subs[0]
        return sub

    def _on_work_data(self, pkt, handler_name="on_data"):
        sub = self._event_sub(pkt, False)
        if sub is None or sub.done:
            return
        handler = getattr(sub, handler_name)
        if handler is not None:
            self._call(handler, unpack(pkt.arg[1], pkt.len[1]))

    def _on_work_warning(self, pkt):
        self._on_work_data(pkt, "on_warning")

    def _on_work_status(self, pkt):
        sub = self._event_sub(pkt, False)
        if sub is None or sub.done or sub.on_status is None:
            return
        self._call(sub.on_status, _str(pkt, 1), _str(pkt, 2))

    def _terminal(self, pkt, result, err, exception_data=None):
        sub = self._event_sub(pkt, True)
        if sub is None or sub.done:
            return  # unknown, or timed out earlier: its copy is dropped
        self._nactive -= 1
        if exception_data is not None and sub.on_exception is not None:
            gen = self._gen
            self._call(sub.on_exception, exception_data)
            if gen != self._gen:
                return  # the drop that on_exception caused has drained sub
        self._finish_sub(sub, result, err)

    def _on_work_complete(self, pkt):
        handle = unpack(pkt.arg[0], pkt.len[0])
        sub = self._active.get(handle)
        if type(sub) is Submission:  # one submission on the handle: the fast path
            del self._active[handle]
            if not sub.done:
                self._nactive -= 1
                self._finish_sub(sub, unpack(pkt.arg[1], pkt.len[1]), None)
            return
        self._terminal(pkt, unpack(pkt.arg[1], pkt.len[1]), None)

    def _on_work_fail(self, pkt):
        self._terminal(pkt, None, _errors.JOB_FAILED)

    def _on_work_exception(self, pkt):
        self._terminal(pkt, None, _errors.EXCEPTION, unpack(pkt.arg[1], pkt.len[1]))

    def _on_echo_res(self, pkt):
        pending = self._pending
        if pending and pending[0].kind == K_ALL_YOURS:
            # No ERROR came before the marker's echo: ALL_YOURS was taken silently.
            entry = pending.popleft()
            if pending and pending[0].kind == K_MARKER:
                pending.popleft()  # this very echo answers the marker
            if entry.cb is not None:
                self._call(entry.cb, True, None)
            return
        entry = self._pop(lib.GM_CMD_ECHO_RES)
        if entry is None or entry.kind == K_MARKER:
            return
        if entry.cb is not None:
            self._call(entry.cb, unpack(pkt.arg[0], pkt.len[0]), None)

    def _on_status_res(self, pkt):
        entry = self._pop(lib.GM_CMD_STATUS_RES)
        if entry is not None and entry.cb is not None:
            self._call(entry.cb, _status(pkt, "handle"), None)

    def _on_status_res_unique(self, pkt):
        entry = self._pop(lib.GM_CMD_STATUS_RES_UNIQUE)
        if entry is not None and entry.cb is not None:
            status = _status(pkt, "unique")
            count = _str(pkt, 5)
            status["client_count"] = int(count) if count.isdigit() else 0
            self._call(entry.cb, status, None)

    def _on_option_res(self, pkt):
        entry = self._pop(lib.GM_CMD_OPTION_RES)
        if entry is not None and entry.cb is not None:
            self._call(entry.cb, True, None)

    def _on_error_packet(self, pkt):
        code, text = _str(pkt, 0), _str(pkt, 1)
        err = f"{code}: {text}"
        if code == "JOB_NOT_FOUND" or not self._pending:
            # Never the answer to a request in gearmand 1.1 (PROTOCOL.md 3.2).
            self._report_error(err)
            return
        entry = self._pending.popleft()
        if entry.kind == K_MARKER:
            self._protocol_error(f"unexpected ERROR {err}")
            return
        self._fail_entry(entry, err)

    def _on_text(self, pkt):
        entry = self._pending.popleft()  # the decoder only frames text it was told to expect
        text = unpack(pkt.arg[0], pkt.len[0]).decode("utf-8", "replace")
        if entry.cb is None:
            return
        if text.startswith("ERR "):
            self._call(entry.cb, None, text)
        elif entry.kind == K_TEXT_BLOCK:
            self._call(entry.cb, text.replace("\r\n", "\n"), None)
        else:
            self._call(entry.cb, text, None)


def _status(pkt, key_name):
    """STATUS_RES[_UNIQUE] as API.md 5 gives it: known/running as bools,
    numerator/denominator as the strings on the wire."""
    return {
        key_name: _str(pkt, 0),
        "known": _str(pkt, 1) == "1",
        "running": _str(pkt, 2) == "1",
        "numerator": _str(pkt, 3),
        "denominator": _str(pkt, 4),
    }


def _job_timeout(gearman, sub):
    ref = weakref.ref(gearman)

    def fire(watcher, revents):
        g = ref()
        if g is None or sub.done:
            return
        if sub.handle is not None:
            g._nactive -= 1
            if not sub.shared and g._active.get(sub.handle) is sub:
                # Its later events concern no one: held on, a job that never
                # ends would stay here for the connection's lifetime. (With a
                # unique key it stays, to route coalesced copies, PROTOCOL.md 4.2.)
                del g._active[sub.handle]
        g._finish_sub(sub, None, _errors.JOB_TIMEOUT)
    return fire


Gearman._handlers = {
    lib.GM_CMD_TEXT: Gearman._on_text,
    lib.GM_CMD_JOB_CREATED: Gearman._on_job_created,
    lib.GM_CMD_WORK_DATA: Gearman._on_work_data,
    lib.GM_CMD_WORK_WARNING: Gearman._on_work_warning,
    lib.GM_CMD_WORK_STATUS: Gearman._on_work_status,
    lib.GM_CMD_WORK_COMPLETE: Gearman._on_work_complete,
    lib.GM_CMD_WORK_FAIL: Gearman._on_work_fail,
    lib.GM_CMD_WORK_EXCEPTION: Gearman._on_work_exception,
    lib.GM_CMD_ECHO_RES: Gearman._on_echo_res,
    lib.GM_CMD_STATUS_RES: Gearman._on_status_res,
    lib.GM_CMD_STATUS_RES_UNIQUE: Gearman._on_status_res_unique,
    lib.GM_CMD_OPTION_RES: Gearman._on_option_res,
    lib.GM_CMD_ERROR: Gearman._on_error_packet,
    **_WORKER_HANDLERS,
}
