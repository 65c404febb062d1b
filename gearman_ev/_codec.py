"""The C codec (csrc/gm_conn): one connection's read and write buffers, the
packet decoder and encoder. This module hands its C functions to the session
and the drivers, and owns the one table that turns the C core's negative
GM_E_* return codes into errors.

What must stay true: every return code from the codec goes through
``ensure`` or ``message``; none is ignored (an unchecked failed pack would
leave a FIFO entry with no request behind it, and every later reply would be
matched to the wrong request).
"""
from __future__ import annotations

import os
from typing import Any, Tuple

from . import errors
from ._ffi import ffi, lib

__all__ = ["CMD", "NULL", "pack4", "next_packet", "next_created", "created_run_buffers", "unpack", "new_conn", "free_conn",
           "new_packet", "reset", "snapshot", "ensure", "message", "packet_name",
           "TEXT_LINE", "TEXT_BLOCK", "TEXT_MARKED", "MAX_PACKET"]

NULL = ffi.NULL
pack4 = lib.gm_conn_pack4
append = lib.gm_conn_append
next_packet = lib.gm_conn_next
next_created = lib.gm_conn_next_created
unpack = ffi.unpack
write_pending = lib.gm_conn_write_pending
reset = lib.gm_conn_reset
feed = lib.gm_conn_feed
read_capacity = lib.gm_conn_read_capacity
write_capacity = lib.gm_conn_write_capacity


class CMD:
    """Packet types by their protocol names (GM_CMD_SUBMIT_JOB -> CMD.SUBMIT_JOB)."""

    TEXT: int = lib.GM_CMD_TEXT
    CAN_DO: int = lib.GM_CMD_CAN_DO
    CANT_DO: int = lib.GM_CMD_CANT_DO
    RESET_ABILITIES: int = lib.GM_CMD_RESET_ABILITIES
    PRE_SLEEP: int = lib.GM_CMD_PRE_SLEEP
    NOOP: int = lib.GM_CMD_NOOP
    SUBMIT_JOB: int = lib.GM_CMD_SUBMIT_JOB
    JOB_CREATED: int = lib.GM_CMD_JOB_CREATED
    GRAB_JOB: int = lib.GM_CMD_GRAB_JOB
    NO_JOB: int = lib.GM_CMD_NO_JOB
    JOB_ASSIGN: int = lib.GM_CMD_JOB_ASSIGN
    WORK_STATUS: int = lib.GM_CMD_WORK_STATUS
    WORK_COMPLETE: int = lib.GM_CMD_WORK_COMPLETE
    WORK_FAIL: int = lib.GM_CMD_WORK_FAIL
    GET_STATUS: int = lib.GM_CMD_GET_STATUS
    ECHO_REQ: int = lib.GM_CMD_ECHO_REQ
    ECHO_RES: int = lib.GM_CMD_ECHO_RES
    SUBMIT_JOB_BG: int = lib.GM_CMD_SUBMIT_JOB_BG
    ERROR: int = lib.GM_CMD_ERROR
    STATUS_RES: int = lib.GM_CMD_STATUS_RES
    SUBMIT_JOB_HIGH: int = lib.GM_CMD_SUBMIT_JOB_HIGH
    SET_CLIENT_ID: int = lib.GM_CMD_SET_CLIENT_ID
    CAN_DO_TIMEOUT: int = lib.GM_CMD_CAN_DO_TIMEOUT
    ALL_YOURS: int = lib.GM_CMD_ALL_YOURS
    WORK_EXCEPTION: int = lib.GM_CMD_WORK_EXCEPTION
    OPTION_REQ: int = lib.GM_CMD_OPTION_REQ
    OPTION_RES: int = lib.GM_CMD_OPTION_RES
    WORK_DATA: int = lib.GM_CMD_WORK_DATA
    WORK_WARNING: int = lib.GM_CMD_WORK_WARNING
    GRAB_JOB_UNIQ: int = lib.GM_CMD_GRAB_JOB_UNIQ
    JOB_ASSIGN_UNIQ: int = lib.GM_CMD_JOB_ASSIGN_UNIQ
    SUBMIT_JOB_HIGH_BG: int = lib.GM_CMD_SUBMIT_JOB_HIGH_BG
    SUBMIT_JOB_LOW: int = lib.GM_CMD_SUBMIT_JOB_LOW
    SUBMIT_JOB_LOW_BG: int = lib.GM_CMD_SUBMIT_JOB_LOW_BG
    SUBMIT_JOB_SCHED: int = lib.GM_CMD_SUBMIT_JOB_SCHED
    SUBMIT_JOB_EPOCH: int = lib.GM_CMD_SUBMIT_JOB_EPOCH
    SUBMIT_REDUCE_JOB: int = lib.GM_CMD_SUBMIT_REDUCE_JOB
    SUBMIT_REDUCE_JOB_BACKGROUND: int = lib.GM_CMD_SUBMIT_REDUCE_JOB_BACKGROUND
    GRAB_JOB_ALL: int = lib.GM_CMD_GRAB_JOB_ALL
    JOB_ASSIGN_ALL: int = lib.GM_CMD_JOB_ASSIGN_ALL
    GET_STATUS_UNIQUE: int = lib.GM_CMD_GET_STATUS_UNIQUE
    MAX: int = lib.GM_CMD_MAX
    STATUS_RES_UNIQUE: int = lib.GM_CMD_STATUS_RES_UNIQUE
    INVALID: int = lib.GM_CMD_INVALID


def snapshot(value: Any) -> bytes:
    """A char[] view of a caller's buffer (see _args.payload) as bytes of its own."""
    if isinstance(value, ffi.CData):
        copied: bytes = ffi.buffer(value)[:]
        return copied
    return bytes(value)

TEXT_LINE = lib.GM_TEXT_LINE
TEXT_BLOCK = lib.GM_TEXT_BLOCK
TEXT_MARKED = lib.GM_TEXT_MARKED

MAX_PACKET: int = lib.GM_MAX_PACKET

# GM_E_* -> (exception type when raised from a request call, message).
_CODES: dict[int, tuple[type, str]] = {
    lib.GM_E_NOMEM: (MemoryError, "out of memory"),
    lib.GM_E_TOO_LARGE: (ValueError, f"payload too large (max {MAX_PACKET} bytes)"),
    lib.GM_E_BAD_ARGS: (ValueError, "bad request arguments (count, or NUL in a leading one)"),
    lib.GM_E_BAD_MAGIC: (errors.GearmanError, errors.INVALID_MAGIC),
    lib.GM_E_RESPONSE_TOO_LARGE: (errors.GearmanError, errors.PACKET_TOO_LARGE),
    lib.GM_E_UNEXPECTED_TEXT: (errors.GearmanError, errors.UNEXPECTED_ADMIN),
    lib.GM_E_EOF: (errors.GearmanError, errors.CONNECTION_CLOSED),
    lib.GM_E_READ: (errors.GearmanError, "read error"),
    lib.GM_E_WRITE: (errors.GearmanError, "write error"),
    lib.GM_E_BACKLOG: (errors.GearmanError, "read backlog full (bytes fed without draining)"),
}


def message(code: int, err_no: int = 0) -> str:
    """The err string for a negative GM_E_* code (read/write errors carry
    strerror of the errno the C core saved)."""
    entry = _CODES.get(code)
    if entry is None:
        return f"internal error {code}"
    if code in (lib.GM_E_READ, lib.GM_E_WRITE):
        return f"{entry[1]}: {os.strerror(err_no)}"
    return entry[1]


def ensure(rc: int) -> int:
    """Raise for a negative return code of a request-side C call; else rc."""
    if rc < 0:
        exc_type, text = _CODES.get(rc, (errors.GearmanError, f"internal error {rc}"))
        raise exc_type(text)
    return rc


def new_conn() -> Any:
    """A gm_conn_t; freed by ``free_conn`` (not ffi.gc: the owner's finalizer
    decides when, after it has drained)."""
    c = lib.gm_conn_new()
    if c == NULL:
        raise MemoryError("gm_conn_new")
    return c


free_conn = lib.gm_conn_free


_out_ptr = ffi.new("const char **")


def created_run_buffers(cap: int) -> Tuple[Any, Any]:
    """The handle buffer (``cap`` bytes) and byte count that
    ``next_created`` (gm_conn_next_created) fills."""
    return ffi.new("char[]", cap), ffi.new("size_t *")


def take_output(c: Any) -> bytes:
    """Every unsent byte of the write buffer, as bytes, removed from it."""
    n = lib.gm_conn_out(c, _out_ptr)
    if not n:
        return b""
    data: bytes = ffi.buffer(_out_ptr[0], n)[:]
    lib.gm_conn_out_consume(c, n)
    return data


def new_packet() -> Any:
    return ffi.new("gm_packet_t *")


_PACKET_NAMES = {getattr(lib, n): n[len("GM_CMD_"):] for n in dir(lib) if n.startswith("GM_CMD_")}


def packet_name(cmd: int) -> str:
    return _PACKET_NAMES.get(cmd, str(cmd))
