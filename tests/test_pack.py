"""gm_pack / gm_pack4: every request type frames to exactly the bytes refproto (and, for a few,
a hand-written literal) gives; refused requests leave the buffer as it was."""
from __future__ import annotations

import struct

import pytest
from gearman_ev._ffi import ffi, lib

from tests.conftest import contents, new_buf

from tests import refproto

# PROTOCOL.md 2, every request type: (name, type number as the table gives it, sample args).
# Last arguments hold NULs and high bytes on purpose: they are copied as is.
REQUESTS = [
    ("CAN_DO", 1, [b"reverse"]),
    ("CANT_DO", 2, [b"reverse"]),
    ("RESET_ABILITIES", 3, []),
    ("PRE_SLEEP", 4, []),
    ("SUBMIT_JOB", 7, [b"reverse", b"u-1", b"hello\0world\xff"]),
    ("GRAB_JOB", 9, []),
    ("WORK_STATUS", 12, [b"H:host:1", b"3", b"10"]),
    ("WORK_COMPLETE", 13, [b"H:host:1", b"res\0ult"]),
    ("WORK_FAIL", 14, [b"H:host:1"]),
    ("GET_STATUS", 15, [b"H:host:1"]),
    ("ECHO_REQ", 16, [b"ping\0\r\n"]),
    ("SUBMIT_JOB_BG", 18, [b"f", b"", b"w"]),
    ("SUBMIT_JOB_HIGH", 21, [b"f", b"u", b"w"]),
    ("SET_CLIENT_ID", 22, [b"client-7"]),
    ("CAN_DO_TIMEOUT", 23, [b"slow", b"5000"]),
    ("ALL_YOURS", 24, []),
    ("WORK_EXCEPTION", 25, [b"H:host:1", b"Traceback\0..."]),
    ("OPTION_REQ", 26, [b"exceptions"]),
    ("WORK_DATA", 28, [b"H:host:1", b"\0chunk\0"]),
    ("WORK_WARNING", 29, [b"H:host:1", b"careful"]),
    ("GRAB_JOB_UNIQ", 30, []),
    ("SUBMIT_JOB_HIGH_BG", 32, [b"f", b"u", b""]),
    ("SUBMIT_JOB_LOW", 33, [b"f", b"", b""]),
    ("SUBMIT_JOB_LOW_BG", 34, [b"f", b"u", b"w\0"]),
    ("SUBMIT_JOB_SCHED", 35, [b"f", b"u", b"30", b"12", b"1", b"6", b"0", b"w\0w"]),
    ("SUBMIT_JOB_EPOCH", 36, [b"f", b"u", b"1700000000", b"w"]),
    ("SUBMIT_REDUCE_JOB", 37, [b"map", b"u", b"reduce", b"", b"a\0b\0c"]),
    ("SUBMIT_REDUCE_JOB_BACKGROUND", 38, [b"map", b"", b"reduce", b"", b"x"]),
    ("GRAB_JOB_ALL", 39, []),
    ("GET_STATUS_UNIQUE", 41, [b"u-1"]),
]

# Both entry points for every request gm_pack4 can carry (<= 4 args), gm_pack for all.
CASES = [pytest.param(name, num, args, fn, id=f"{name}-{fn}")
         for name, num, args in REQUESTS
         for fn in ("pack", "pack4") if fn == "pack" or len(args) <= 4]


def state(b):
    """Everything a refused request must leave alone."""
    return (b.data, b.cap, b.start, b.end, contents(b))


def pack(b, cmd, args, lens=None):
    """gm_pack with C arrays; lens overrides the real lengths (pointers stay real)."""
    keep = [ffi.from_buffer(a) for a in args]
    ptrs = ffi.new("const char *[]", keep + [ffi.NULL])  # +1: never a zero-length array
    sizes = ffi.new("size_t[]", (lens if lens is not None else [len(a) for a in args]) + [0])
    return lib.gm_pack(b, cmd, len(args), ptrs, sizes)


def pack4(b, cmd, args):
    """gm_pack4 with Python bytes passed straight through, unused slots NULL/0."""
    flat = []
    for i in range(4):
        flat += [args[i], len(args[i])] if i < len(args) else [ffi.NULL, 0]
    return lib.gm_pack4(b, cmd, len(args), *flat)


PACKERS = {"pack": pack, "pack4": pack4}


@pytest.mark.parametrize("name, num, args", REQUESTS)
def test_command_numbers_match_protocol_table(name, num, args):
    assert getattr(lib, "GM_CMD_" + name) == num


@pytest.mark.parametrize("name, num, args, fn", CASES)
def test_every_request_matches_refproto(name, num, args, fn):
    with new_buf() as b:
        assert PACKERS[fn](b, getattr(lib, "GM_CMD_" + name), args) == lib.GM_OK
        assert contents(b) == refproto.encode_request(num, *args)


@pytest.mark.parametrize("fn", ["pack", "pack4"])
def test_requests_append_after_existing_bytes(fn):
    # A write buffer normally holds earlier requests: each packet goes after them.
    small = [(num, args) for _, num, args in REQUESTS if len(args) <= 4]
    with new_buf() as b:
        assert lib.gm_buf_append(b, b"version\r\n", 9) == lib.GM_OK
        for num, args in small:
            assert PACKERS[fn](b, num, args) == lib.GM_OK
        want = b"version\r\n" + b"".join(refproto.encode_request(n, *a) for n, a in small)
        assert contents(b) == want


# Written out by hand from PROTOCOL.md 1.1, independently of refproto.
LITERALS = [
    ("SUBMIT_JOB-f-empty-empty", 7, [b"f", b"", b""],
     b"\0REQ\x00\x00\x00\x07\x00\x00\x00\x03f\0\0"),
    ("CAN_DO", 1, [b"abc"], b"\0REQ\x00\x00\x00\x01\x00\x00\x00\x03abc"),
    ("GRAB_JOB", 9, [], b"\0REQ\x00\x00\x00\x09\x00\x00\x00\x00"),
    ("WORK_FAIL-empty", 14, [b""], b"\0REQ\x00\x00\x00\x0e\x00\x00\x00\x00"),
    ("WORK_COMPLETE-nul-result", 13, [b"H:1", b"\0"],
     b"\0REQ\x00\x00\x00\x0d\x00\x00\x00\x05H:1\0\0"),
    ("SUBMIT_JOB_SCHED-7-separators", 35, [b"f"] + [b""] * 7,
     b"\0REQ\x00\x00\x00\x23\x00\x00\x00\x08f" + b"\0" * 7),
    ("SUBMIT_JOB_EPOCH", 36, [b"f", b"u", b"0", b"w"],
     b"\0REQ\x00\x00\x00\x24\x00\x00\x00\x07f\0u\x000\0w"),
    # A body over 255 bytes shows the length is big-endian across bytes.
    ("ECHO_REQ-300", 16, [b"x" * 0x12C], b"\0REQ\x00\x00\x00\x10\x00\x00\x01\x2c" + b"x" * 0x12C),
]


@pytest.mark.parametrize("fn, cmd, args, wire", [
    pytest.param(fn, cmd, args, wire, id=f"{name}-{fn}")
    for name, cmd, args, wire in LITERALS
    for fn in ("pack", "pack4") if fn == "pack" or len(args) <= 4])
def test_literal_bytes(fn, cmd, args, wire):
    with new_buf() as b:
        assert PACKERS[fn](b, cmd, args) == lib.GM_OK
        assert contents(b) == wire
    assert refproto.encode_request(cmd, *args) == wire  # the oracle agrees with the hand


@pytest.mark.parametrize("fn", ["pack", "pack4"])
@pytest.mark.parametrize("cmd, lead", [(16, []), (13, [b"H:1"]), (7, [b"f", b"u"])],
                         ids=["ECHO_REQ", "WORK_COMPLETE", "SUBMIT_JOB"])
def test_last_argument_carries_every_byte_value(fn, cmd, lead):
    payload = bytes(range(256)) * 3 + b"\0"  # ends in NUL: the tail is not terminated
    with new_buf() as b:
        assert PACKERS[fn](b, cmd, lead + [payload]) == lib.GM_OK
        wire = contents(b)
    assert wire == refproto.encode_request(cmd, *lead, payload)
    assert wire.endswith(payload)


def test_null_pointer_with_zero_length_is_an_empty_argument():
    with new_buf() as b:
        assert lib.gm_pack4(b, 7, 3, b"f", 1, ffi.NULL, 0, ffi.NULL, 0,
                            ffi.NULL, 0) == lib.GM_OK
        assert contents(b) == refproto.encode_request(7, b"f", b"", b"")


@pytest.mark.parametrize("pos", range(7))
def test_nul_in_leading_argument_is_refused_by_pack(pos):
    args = [b"f", b"u", b"1", b"2", b"3", b"4", b"5", b"w"]
    args[pos] = b"a\0b"
    with new_buf() as b:
        lib.gm_buf_append(b, b"earlier", 7)
        before = state(b)
        assert pack(b, lib.GM_CMD_SUBMIT_JOB_SCHED, args) == lib.GM_E_BAD_ARGS
        assert state(b) == before


@pytest.mark.parametrize("pos", range(2))
@pytest.mark.parametrize("where", [b"\0", b"ab\0", b"\0ab"], ids=["only", "end", "start"])
def test_nul_in_leading_argument_is_refused_by_pack4(pos, where):
    args = [b"f", b"u", b"w"]
    args[pos] = where
    with new_buf() as b:
        lib.gm_buf_append(b, b"earlier", 7)
        before = state(b)
        assert pack4(b, lib.GM_CMD_SUBMIT_JOB, args) == lib.GM_E_BAD_ARGS
        assert state(b) == before


@pytest.mark.parametrize("pos", [0, 2], ids=["leading", "last"])
def test_null_pointer_with_length_is_refused(pos):
    flat = [b"f", 1, b"u", 1, b"w", 1, ffi.NULL, 0]
    flat[2 * pos] = ffi.NULL
    with new_buf() as b:
        before = state(b)
        assert lib.gm_pack4(b, 7, 3, *flat) == lib.GM_E_BAD_ARGS
        assert state(b) == before


def test_too_many_arguments_are_refused():
    with new_buf() as b:
        before = state(b)
        assert pack(b, 7, [b"a"] * (lib.GM_MAX_ARGS + 1)) == lib.GM_E_BAD_ARGS
        assert pack4(b, 7, [b"a"] * 4) == lib.GM_OK  # four is the pack4 limit, not an error
        lib.gm_buf_clear(b)
        assert lib.gm_pack4(b, 7, 5, b"a", 1, b"a", 1, b"a", 1, b"a", 1) == lib.GM_E_BAD_ARGS
        assert state(b)[2:] == before[2:]


def test_max_args_is_eight():
    # SUBMIT_JOB_SCHED, the widest request, has 8 arguments (PROTOCOL.md 2).
    assert lib.GM_MAX_ARGS == 8
    with new_buf() as b:
        assert pack(b, 35, [b"a"] * 8) == lib.GM_OK


@pytest.mark.parametrize("fn", ["pack", "pack4"])
def test_type_zero_is_refused(fn):
    # Type 0 is gearmand's TEXT marker, never valid in a binary header (PROTOCOL.md 2).
    with new_buf() as b:
        before = state(b)
        assert PACKERS[fn](b, 0, [b"x"]) == lib.GM_E_BAD_ARGS
        assert PACKERS[fn](b, 0, []) == lib.GM_E_BAD_ARGS
        assert state(b) == before


def test_max_packet_is_256_mib():
    assert lib.GM_MAX_PACKET == 256 * 1024 * 1024 == refproto.MAX_PACKET


@pytest.fixture(scope="module")
def huge():
    """GM_MAX_PACKET - 2 NULs: with a 1-byte handle and its separator, exactly the cap."""
    return b"\0" * (lib.GM_MAX_PACKET - 2)


def test_body_of_exactly_max_packet_is_accepted(huge):
    with new_buf() as b:
        assert pack4(b, 13, [b"H", huge]) == lib.GM_OK
        assert b.end - b.start == 12 + lib.GM_MAX_PACKET
        head = ffi.buffer(b.data + b.start, 14)[:]
        assert head == struct.pack(">4sII", b"\0REQ", 13, lib.GM_MAX_PACKET) + b"H\0"
        assert ffi.buffer(b.data + b.start + 14, len(huge))[:] == huge


@pytest.mark.parametrize("fn", ["pack", "pack4"])
def test_body_one_byte_over_max_packet_is_refused(fn, huge):
    with new_buf() as b:
        lib.gm_buf_append(b, b"earlier", 7)
        before = state(b)
        assert PACKERS[fn](b, 13, [b"H:", huge]) == lib.GM_E_TOO_LARGE
        assert state(b) == before  # checked before anything is reserved or written


def test_sum_over_max_packet_is_refused_before_any_byte_is_read(huge):
    # Eight arguments each under the cap whose sum is ~8x over it; every pointer is backed by
    # real memory, so a check done after copying would still not crash, only fail here.
    with new_buf() as b:
        before = state(b)
        assert pack(b, 35, [huge] * 8) == lib.GM_E_TOO_LARGE
        assert state(b) == before
