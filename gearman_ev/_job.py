"""class Job: one job a worker was assigned (API.md 6).

What must stay true: a job sends at most one terminal packet (WORK_COMPLETE,
WORK_FAIL or WORK_EXCEPTION), and only on the connection it came on; it holds
its Gearman object weakly.
"""
from __future__ import annotations

import weakref

from . import _args, _errors
from ._ffi import lib

__all__ = ["Job"]


class Job:
    """A job assigned to this worker: ``handle``, ``function``, ``unique``,
    ``workload`` (alias ``data``), and the methods that report on it."""

    __slots__ = ("_owner", "_gen", "_handle", "_function", "unique",
                 "workload", "_counted", "_finished", "__weakref__")

    def __init__(self, owner, handle, function, unique, workload, counted=False):
        self._owner = weakref.ref(owner)
        self._gen = owner._gen
        # handle and function stay bytes as they came; most jobs never ask
        # for their str form.
        self._handle = handle
        self._function = function
        self.unique = unique
        self.workload = workload
        self._counted = counted  # an async job the managed loop counts in flight
        self._finished = False

    @property
    def handle(self) -> str:
        return self._handle.decode("utf-8", "surrogateescape")

    @property
    def function(self) -> str:
        return self._function.decode("utf-8", "surrogateescape")

    @property
    def data(self) -> bytes:
        return self.workload

    @property
    def finished(self) -> bool:
        """True once complete/fail/exception was sent."""
        return self._finished

    def _conn(self):
        owner = self._owner()
        if owner is None or owner._closed:
            raise _errors.GearmanError(_errors.CLIENT_DESTROYED)
        if owner._gen != self._gen:
            raise _errors.GearmanError(_errors.STALE_JOB)
        return owner

    def _send(self, cmd, *args):
        owner = self._conn()
        owner._job_send(cmd, (self._handle,) + args)
        return owner

    def _terminal(self, cmd, *args):
        if self._finished:
            raise _errors.GearmanError(_errors.JOB_FINISHED)
        owner = self._conn()
        if args:
            data = _args.payload(args[0], "result")
            _args.check_size(self._handle, data)
            args = (data,)
        self._finished = True
        owner._job_send(cmd, (self._handle,) + args)
        owner._job_done(self)

    def complete(self, result=b"") -> None:
        """WORK_COMPLETE with ``result`` (bytes-like or str)."""
        self._terminal(lib.GM_CMD_WORK_COMPLETE, b"" if result is None else result)

    def fail(self) -> None:
        """WORK_FAIL."""
        self._terminal(lib.GM_CMD_WORK_FAIL)

    def exception(self, data) -> None:
        """WORK_EXCEPTION carrying ``data`` (terminal: no WORK_FAIL follows)."""
        self._terminal(lib.GM_CMD_WORK_EXCEPTION, data)

    def _event(self, cmd, data, what):
        if self._finished:
            raise _errors.GearmanError(_errors.JOB_FINISHED)
        data = _args.payload(data, what)
        _args.check_size(self._handle, data)
        self._send(cmd, data)

    def send_data(self, data) -> None:
        """WORK_DATA: a chunk of data for the client's ``on_data``."""
        self._event(lib.GM_CMD_WORK_DATA, data, "data")

    def warning(self, data) -> None:
        """WORK_WARNING: for the client's ``on_warning``."""
        self._event(lib.GM_CMD_WORK_WARNING, data, "warning")

    def status(self, numerator, denominator) -> None:
        """WORK_STATUS: progress as ``str(numerator)`` / ``str(denominator)``."""
        if self._finished:
            raise _errors.GearmanError(_errors.JOB_FINISHED)
        num = str(numerator).encode("utf-8")
        den = str(denominator).encode("utf-8")
        if b"\0" in num:
            raise ValueError("numerator must not hold NUL")
        self._send(lib.GM_CMD_WORK_STATUS, num, den)

    def __repr__(self):
        return f"<Job {self.handle} {self.function!r} {len(self.workload)} bytes>"
