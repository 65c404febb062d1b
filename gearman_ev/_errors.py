"""GearmanError and every err string of API.md, each written once.

The C core reports failures as negative GM_E_* codes; ``message()`` turns one
into the string a user sees.
"""
from __future__ import annotations

import os

from ._ffi import lib

__all__ = ["GearmanError", "message"]


class GearmanError(Exception):
    """A request that cannot be made in the object's current state."""


# Callback err strings (API.md 3)
DISCONNECTED = "disconnected"
JOB_FAILED = "job failed"
EXCEPTION = "exception"
COMMAND_TIMEOUT = "command timeout"
JOB_TIMEOUT = "job timeout"
NO_JOB = "no job"

# Connection-level on_error strings (API.md 3)
CONNECT_TIMEOUT = "connect timeout"
CONNECTION_CLOSED = "connection closed by server"
INVALID_MAGIC = "invalid response magic"
PACKET_TOO_LARGE = "response packet too large"
UNEXPECTED_ADMIN = "unexpected admin response"
UNIX_PATH_TOO_LONG = "unix socket path too long"
MAX_RECONNECTS = "max reconnect attempts reached"

# GearmanError texts (API.md 2, 6)
NOT_CONNECTED = "not connected"
ALREADY_CONNECTED = "already connected"
CLIENT_DESTROYED = "client destroyed"
STALE_JOB = "stale job"
JOB_FINISHED = "job already finished"


def message(code: int, err_no: int = 0) -> str:
    """The err string for a negative GM_E_* code from the C core."""
    if code == lib.GM_E_BAD_MAGIC:
        return INVALID_MAGIC
    if code == lib.GM_E_RESPONSE_TOO_LARGE:
        return PACKET_TOO_LARGE
    if code == lib.GM_E_UNEXPECTED_TEXT:
        return UNEXPECTED_ADMIN
    if code == lib.GM_E_EOF:
        return CONNECTION_CLOSED
    if code == lib.GM_E_READ:
        return f"read error: {os.strerror(err_no)}"
    if code == lib.GM_E_WRITE:
        return f"write error: {os.strerror(err_no)}"
    if code == lib.GM_E_NOMEM:
        return "out of memory"
    return f"internal error {code}"
