"""class Job: one job a worker was assigned.

What must stay true: a job sends at most one terminal packet (WORK_COMPLETE,
WORK_FAIL or WORK_EXCEPTION), and only on the connection it came on; it
holds its session weakly and talks to it through the session's public
methods only (``check_caller``, ``job_send``, ``job_done``).
"""
from __future__ import annotations

import weakref
from typing import Any, Optional, Union

from . import _args, errors
from ._codec import CMD

__all__ = ["Job"]

# What a job method sends (as _gearman.Payload): bytes-like, or str sent as UTF-8.
Payload = Union[bytes, bytearray, memoryview, str]


class Job:
    """A job assigned to this worker, with the methods that report on it.

    A job method called after its ``Gearman`` object is gone raises
    ``GearmanError("client destroyed")``; after the connection it came on
    dropped (the server has requeued it), ``GearmanError("stale job")``; a
    second terminal call, ``GearmanError("job already finished")``.
    """

    __slots__ = ("_session", "epoch", "_handle", "_function", "unique",
                 "workload", "_counted", "finished", "__weakref__")

    def __init__(self, session: Any, handle: bytes, function: bytes, unique: str,
                 workload: bytes, counted: bool = False) -> None:
        self._session = weakref.ref(session)
        self.epoch: int = session.epoch
        # handle and function stay bytes as they came; most jobs never ask
        # for their str form.
        self._handle = handle
        self._function = function
        #: The unique key ("" unless the worker grabs with ``grab_unique``).
        self.unique: str = unique
        #: The job's payload (bytes).
        self.workload: bytes = workload
        self._counted = counted  # an async job the managed loop counts in flight
        #: True once complete/fail/exception was sent.
        self.finished = False

    @property
    def handle(self) -> str:
        """The job handle the server gave."""
        return self._handle.decode("utf-8", "surrogateescape")

    @property
    def function(self) -> str:
        """The function name the job was submitted to."""
        return self._function.decode("utf-8", "surrogateescape")

    @property
    def data(self) -> bytes:
        """Alias of ``workload``."""
        return self.workload

    def _owner(self) -> Any:
        session = self._session()
        if session is None:
            raise errors.GearmanError(errors.CLIENT_DESTROYED)
        session.check_caller()
        return session

    def _terminal(self, cmd: int, *args: Any) -> None:
        if self.finished:
            raise errors.GearmanError(errors.JOB_FINISHED)
        session = self._owner()
        if args:
            data = _args.payload(args[0], "result")
            _args.check_size(self._handle, data)
            args = (data,)
        session.job_send(self.epoch, cmd, (self._handle,) + args)
        self.finished = True
        session.job_done(self._counted)

    def complete(self, result: Optional[Payload] = b"") -> None:
        """WORK_COMPLETE with ``result`` (bytes-like or str; None is b"")."""
        self._terminal(CMD.WORK_COMPLETE, b"" if result is None else result)

    def fail(self) -> None:
        """WORK_FAIL."""
        self._terminal(CMD.WORK_FAIL)

    def exception(self, data: Payload) -> None:
        """WORK_EXCEPTION carrying ``data`` (terminal: no WORK_FAIL follows)."""
        self._terminal(CMD.WORK_EXCEPTION, data)

    def _event(self, cmd: int, data: Any, what: str) -> None:
        if self.finished:
            raise errors.GearmanError(errors.JOB_FINISHED)
        data = _args.payload(data, what)
        _args.check_size(self._handle, data)
        self._owner().job_send(self.epoch, cmd, (self._handle, data))

    def send_data(self, data: Payload) -> None:
        """WORK_DATA: a chunk for the client's ``on_data``."""
        self._event(CMD.WORK_DATA, data, "data")

    def warning(self, data: Payload) -> None:
        """WORK_WARNING: for the client's ``on_warning``."""
        self._event(CMD.WORK_WARNING, data, "warning")

    def status(self, numerator: object, denominator: object) -> None:
        """WORK_STATUS: progress as ``str(numerator)`` / ``str(denominator)``."""
        if self.finished:
            raise errors.GearmanError(errors.JOB_FINISHED)
        num = str(numerator).encode("utf-8")
        den = str(denominator).encode("utf-8")
        if b"\0" in num:
            raise ValueError("numerator must not hold NUL")
        self._owner().job_send(self.epoch, CMD.WORK_STATUS, (self._handle, num, den))

    def __repr__(self) -> str:
        return f"<Job {self.handle} {self.function!r} {len(self.workload)} bytes>"
