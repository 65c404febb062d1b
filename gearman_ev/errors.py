"""Errors as values: every err string the library hands to a callback or to
``on_error``, or raises as a ``GearmanError``, and the exception classes that
stand for them.

A callback gets ``(result, err)``; ``err`` is None on success or one of the
strings below. Compare against these constants rather than literals::

    from gearman_ev import errors

    def done(result, err):
        if err == errors.JOB_TIMEOUT:
            ...

``exception_for(err)`` turns an err string into the matching exception:
``JobFailed``, ``JobException``, ``JobTimeout``, ``CommandTimeout``,
``ConnectionLost`` or ``ServerError``; each carries the string as ``.err``.
"""
from __future__ import annotations

from typing import Optional

__all__ = [
    "GearmanError", "JobFailed", "JobException", "JobTimeout", "CommandTimeout",
    "ConnectionLost", "ServerError", "exception_for",
    "DISCONNECTED", "JOB_FAILED", "EXCEPTION", "COMMAND_TIMEOUT", "JOB_TIMEOUT", "NO_JOB",
    "NO_SERVER", "CONNECT_TIMEOUT", "CONNECTION_CLOSED", "INVALID_MAGIC", "PACKET_TOO_LARGE",
    "UNEXPECTED_ADMIN", "UNIX_PATH_TOO_LONG", "MAX_RECONNECTS", "PROTOCOL_ERROR",
    "NOT_CONNECTED", "ALREADY_CONNECTED", "CLIENT_DESTROYED", "STALE_JOB", "JOB_FINISHED",
    "USED_AFTER_FORK", "WRONG_THREAD", "WRITE_BUFFER_FULL", "CLIENT_CLOSED",
    "CONNECT_ERROR", "GETADDRINFO", "READ_ERROR", "WRITE_ERROR", "TLS_ERROR",
]

# ===== Callback err strings =====

#: The connection closed (by you, the server or teardown) with the request pending.
DISCONNECTED = "disconnected"
#: The worker sent WORK_FAIL.
JOB_FAILED = "job failed"
#: The worker sent WORK_EXCEPTION (its data went to ``on_exception`` first).
EXCEPTION = "exception"
#: ``command_timeout`` passed with no byte received while a request awaited its reply.
COMMAND_TIMEOUT = "command timeout"
#: A foreground job's own ``timeout`` passed.
JOB_TIMEOUT = "job timeout"
#: ``grab_job`` found no job.
NO_JOB = "no job"
#: No server of a group was connected in time to take the request (reserved for
#: front-ends over several servers; ``Gearman`` itself never gives it).
NO_SERVER = "no server available"

# ===== Connection-level on_error strings =====
# Some carry a detail after a colon: "connect: <strerror>",
# "getaddrinfo: <reason>", "read error: <strerror>", "write error: <strerror>",
# "protocol error: <what>", "tls: <reason>". Their prefixes are below: test
# with ``err.startswith(errors.CONNECT_ERROR + ":")``.

#: Prefix: the connect failed ("connect: Connection refused").
CONNECT_ERROR = "connect"
#: Prefix: the host name did not resolve ("getaddrinfo: <reason>").
GETADDRINFO = "getaddrinfo"
#: Prefix: reading from the socket failed ("read error: <strerror>").
READ_ERROR = "read error"
#: Prefix: writing to the socket failed ("write error: <strerror>").
WRITE_ERROR = "write error"
#: Prefix: the TLS handshake or session failed ("tls: <reason>").
TLS_ERROR = "tls"

#: A connection attempt took longer than ``connect_timeout``.
CONNECT_TIMEOUT = "connect timeout"
#: The server closed the connection.
CONNECTION_CLOSED = "connection closed by server"
#: The peer sent bytes that are not a Gearman reply.
INVALID_MAGIC = "invalid response magic"
#: The server announced a reply larger than ``MAX_PACKET``.
PACKET_TOO_LARGE = "response packet too large"
#: Admin text arrived while no admin command awaited a reply.
UNEXPECTED_ADMIN = "unexpected admin response"
#: ``connect_unix`` was given a path longer than the system allows.
UNIX_PATH_TOO_LONG = "unix socket path too long"
#: ``max_reconnect_attempts`` reconnect attempts failed in a row; no more follow.
MAX_RECONNECTS = "max reconnect attempts reached"
#: Prefix of a reply the library cannot digest; the connection ends.
PROTOCOL_ERROR = "protocol error"

# ===== GearmanError texts: a call refused in the object's current state =====

#: A request with no connection, connection attempt or reconnect pending.
NOT_CONNECTED = "not connected"
#: ``connect()`` on an object that is connected or connecting.
ALREADY_CONNECTED = "already connected"
#: A ``Job`` method after its ``Gearman`` object is gone.
CLIENT_DESTROYED = "client destroyed"
#: A ``Job`` method after the connection it came on ended (the server requeued it).
STALE_JOB = "stale job"
#: A second terminal call, or an event after one, on the same ``Job``.
JOB_FINISHED = "job already finished"
#: A method of an object inherited across ``fork()``, called in the child.
USED_AFTER_FORK = "used after fork"
#: A method called from another thread while the object's loop runs.
WRONG_THREAD = "wrong thread"
#: A new request while more than ``high_water`` bytes wait unsent.
WRITE_BUFFER_FULL = "write buffer full"
#: A call on a client that was closed (reserved for front-ends that block their
#: caller; ``Gearman`` itself never gives it).
CLIENT_CLOSED = "client closed"


class GearmanError(Exception):
    """Base of every gearman_ev exception. ``.err`` is the err string."""

    def __init__(self, err: str, *args: object) -> None:
        super().__init__(err, *args)
        self.err = err

    def __str__(self) -> str:
        return self.err


class JobFailed(GearmanError):
    """The worker failed the job (``"job failed"``)."""


class JobException(GearmanError):
    """The worker reported an exception (``"exception"``); ``.data`` holds
    the bytes it sent."""

    def __init__(self, err: str = EXCEPTION, data: bytes = b"") -> None:
        super().__init__(err)
        self.data = data


class JobTimeout(GearmanError, TimeoutError):
    """The job's own ``timeout`` passed (``"job timeout"``)."""


class CommandTimeout(GearmanError, TimeoutError):
    """The server went quiet for ``command_timeout`` (``"command timeout"``)."""


class ConnectionLost(GearmanError, ConnectionError):
    """The connection ended with the request pending (``"disconnected"``), or
    no server was available (``"no server available"``)."""


class ServerError(GearmanError):
    """The server answered with an error: an ERROR packet (``"CODE: text"``)
    or an admin ``"ERR ..."`` line. ``.code`` is the code word."""

    def __init__(self, err: str) -> None:
        super().__init__(err)
        if err.startswith("ERR "):
            self.code = err[4:].split(" ", 1)[0]
        else:
            self.code = err.split(":", 1)[0]


def exception_for(err: str, data: Optional[bytes] = None) -> GearmanError:
    """The exception that stands for ``err``.

    ``JobFailed``, ``JobTimeout``, ``CommandTimeout`` and ``ConnectionLost``
    for their strings; ``JobException`` for ``"exception"``, with ``data``
    (the bytes of the worker's WORK_EXCEPTION, as ``on_exception`` got them)
    as its ``.data``; ``ServerError`` for a server's refusal (``"CODE: text"``
    or ``"ERR CODE text"``); a plain ``GearmanError`` for any other string.
    """
    if err == JOB_FAILED:
        return JobFailed(err)
    if err == EXCEPTION:
        return JobException(err, data if data is not None else b"")
    if err == JOB_TIMEOUT:
        return JobTimeout(err)
    if err == COMMAND_TIMEOUT:
        return CommandTimeout(err)
    if err in (DISCONNECTED, NO_SERVER):
        return ConnectionLost(err)
    if err.startswith("ERR ") or (": " in err and err.split(":", 1)[0].isupper()):
        return ServerError(err)
    return GearmanError(err)
