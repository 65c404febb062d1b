"""Every argument check, once: types, sizes, forbidden bytes, times in
seconds, priorities, ports, counts and callbacks. A check raises TypeError
for a wrong type and ValueError for a bad value, before any I/O; it returns
the value in the form the session sends (bytes, float seconds).

What must stay true: nothing here does I/O or touches a connection; a
payload that may outlive the call (queued before connect) is a snapshot
(``snapshot``), never a view of the caller's buffer.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from ._ffi import ffi, lib

__all__ = ["payload", "snapshot", "text", "function", "unique", "handle", "callback",
           "timeout", "seconds", "priority", "port", "count", "epoch", "concurrency",
           "check_size", "name_token", "admin_command", "maxqueue_command", "option_name",
           "MAX_PACKET"]

EV_MINPRI, EV_MAXPRI = lib.EV_MINPRI, lib.EV_MAXPRI

# NUL, control bytes, space and DEL: never valid in a name or a text-protocol
# word. Checked with bytes.translate, which runs at C speed on the hot path.
_SPACE_AND_CONTROL = bytes(range(0x21)) + b"\x7f"
MAX_PACKET = lib.GM_MAX_PACKET
MAX_FUNCTION = 512   # libgearman's GEARMAN_FUNCTION_MAX_SIZE (PROTOCOL.md 4.3)
MAX_UNIQUE = 63      # 64 is silently truncated by gearmand (PROTOCOL.md 4.2)
MAX_HANDLE = 63      # GEARMAND_JOB_HANDLE_SIZE - 1 (PROTOCOL.md 4.1)
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

# ===== Argument conversion =====

def payload(value: Any, what: str = "payload") -> Any:
    """bytes-like or str -> bytes, or a char[] view of the caller's buffer:
    both go to gm_pack4 as is, and len() of either counts bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        view = memoryview(value)
        return ffi.from_buffer(view) if view.c_contiguous else view.tobytes()
    raise TypeError(f"{what} must be bytes, bytearray, memoryview or str, "
                    f"not {type(value).__name__}")


def text(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


# Names already checked, as given -> as bytes: a program submits to the same
# few functions over and over. Bounded: cleared when it reaches the limit.
checked_functions: Dict[Any, bytes] = {}
_CHECKED_LIMIT = 4096


def function(value: Any) -> bytes:
    if type(value) is not str and type(value) is not bytes:
        return _check_function(value)  # raises the TypeError
    name = checked_functions.get(value)
    if name is not None:
        return name
    name = _check_function(value)
    if len(checked_functions) >= _CHECKED_LIMIT:
        checked_functions.clear()
    checked_functions[value] = name
    return name


def _check_function(value: Any) -> bytes:
    name = text(value, "function name")
    if not name:
        raise ValueError("function name must not be empty")
    if len(name) > MAX_FUNCTION:
        raise ValueError(f"function name too long ({len(name)} bytes, max {MAX_FUNCTION})")
    if len(name.translate(None, _SPACE_AND_CONTROL)) != len(name):
        raise ValueError("function name must not hold whitespace, control bytes or NUL")
    return name


def _key(value: Any, what: str, limit: int, empty_ok: bool) -> bytes:
    """A unique key or a job handle: bounded, NUL-free (a leading argument)."""
    key = text(value, what)
    if not key and not empty_ok:
        raise ValueError(f"{what} must not be empty")
    if len(key) > limit:
        raise ValueError(f"{what} too long ({len(key)} bytes, max {limit})")
    if b"\0" in key:
        raise ValueError(f"{what} must not hold NUL")
    return key


def unique(value: Any) -> bytes:
    return b"" if value is None else _key(value, "unique", MAX_UNIQUE, True)


def handle(value: Any) -> bytes:
    return _key(value, "handle", MAX_HANDLE, False)


def snapshot(value: Any) -> bytes:
    """A queued argument as bytes of its own: the caller may reuse or resize
    a bytearray as soon as the call returns (API.md 9)."""
    if type(value) is bytes:
        return value
    return ffi.buffer(value)[:] if isinstance(value, ffi.CData) else bytes(value)


def callback(value: Any, what: str = "cb") -> Optional[Callable[..., Any]]:
    """None, or something callable: a falsy non-callable (0, "") is refused too."""
    if value is None:
        return None
    if not callable(value):
        raise TypeError(f"{what} must be callable or None")
    func: Callable[..., Any] = value
    return func


def seconds(name: str, value: Any) -> float:
    """A time in seconds: a finite number >= 0 (0 disables)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds")
    if value != value or value < 0 or value == float("inf"):
        raise ValueError(f"{name} must be a finite number >= 0")
    return float(value)


def timeout(value: Any, name: str = "timeout") -> float:
    """A job or function timeout: None or seconds (None and 0: no timeout)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None")
    return seconds(name, value)


def priority(value: Any) -> int:
    """A libev watcher priority."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("priority must be an int")
    if not EV_MINPRI <= value <= EV_MAXPRI:
        raise ValueError(f"priority must be between {EV_MINPRI} and {EV_MAXPRI}")
    return value


def port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("port must be an int")
    if not 0 < value < 65536:
        raise ValueError("port must be between 1 and 65535")
    return value


def count(name: str, value: Any) -> int:
    """A non-negative int (attempts, sizes, byte counts)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < 0:
        raise ValueError(f"{name} must be >= 0")
    return value


def concurrency(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("concurrency must be an int or None")
    if value < 1:
        raise ValueError("concurrency must be >= 1")
    return value


def epoch(value: Any) -> bytes:
    """Unix seconds for SUBMIT_JOB_EPOCH, as its decimal text."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("epoch must be an int (Unix seconds)")
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("epoch outside int64")
    return str(value).encode()


def check_size(*args: Any) -> None:
    """The MAX_PACKET rule of API.md 3, before anything is sent."""
    body = len(args) - 1  # the NUL separators
    for arg in args:
        body += len(arg)
    if body > MAX_PACKET:
        raise ValueError(f"payload too large ({body} bytes, max {MAX_PACKET})")


def admin_command(value: Any) -> bytes:
    """An admin (text protocol) command line, without its line ending."""
    cmd = text(value, "command")
    if b"\r" in cmd or b"\n" in cmd or b"\0" in cmd:
        raise ValueError("admin command must not hold CR, LF or NUL")
    return cmd


def maxqueue_command(func: Any, size: Any) -> bytes:
    """``maxqueue FUNC SIZE``, checked: no text-protocol injection."""
    name = name_token(func, "func")
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError("size must be an int")
    if size < 0:
        raise ValueError("size must be >= 0")
    return b"maxqueue " + name + b" " + str(size).encode()


def option_name(value: Any) -> bytes:
    """An OPTION_REQ name: a word shorter than 64 bytes."""
    opt = name_token(value, "option name")
    if len(opt) >= 64:
        raise ValueError("option name must be shorter than 64 bytes")
    return opt


def name_token(value: Any, what: str) -> bytes:
    """A word for the text protocol or SET_CLIENT_ID: no whitespace, no
    control bytes (they would break the line or the workers listing)."""
    word = text(value, what)
    if not word or len(word.translate(None, _SPACE_AND_CONTROL)) != len(word):
        raise ValueError(f"{what} must be non-empty without whitespace or control bytes")
    return word
