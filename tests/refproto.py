"""Pure-Python reference encoder/decoder: the oracle the C core is checked against.

Written from PROTOCOL.md (sections 1, 2, 7, 8.5) and gm_parse.h's contract, not from gm_parse.c,
so that a shared misreading would need two people to make it. No gearman_ev imports.
"""
from __future__ import annotations

import struct

HEADER = struct.Struct(">4sII")  # magic, type, body length; all big-endian
MAX_PACKET = 256 * 1024 * 1024  # client cap on one body (gm_proto.h)
TEXT = 0  # pseudo type of an admin (text) reply
# What text the caller expects (gm_parse.h GM_TEXT_*).
TEXT_NONE, TEXT_LINE, TEXT_BLOCK, TEXT_MARKED = 0, 1, 2, 3

# PROTOCOL.md 2: argument count of every packet a server sends.
RESPONSE_NARGS = {6: 0, 8: 1, 10: 0, 11: 3, 12: 3, 13: 2, 14: 1, 17: 1, 19: 2, 20: 5,
                  25: 2, 27: 1, 28: 2, 29: 2, 31: 4, 40: 5, 42: 6}
HANDLE_FIRST = {8, 11, 12, 13, 14, 20, 25, 28, 29, 31, 40}  # first argument is a job handle


INVALID = 0xFFFFFFFF  # what the decoder reports a binary type 0 as


def _encode(magic, cmd, args):
    if any(b"\0" in a for a in args[:-1]):
        raise ValueError("NUL in a leading argument")
    body = b"\0".join(args)
    return HEADER.pack(magic, cmd, len(body)) + body


def encode_request(cmd, *args):
    return _encode(b"\0REQ", cmd, args)


def encode_response(cmd, *args):
    return _encode(b"\0RES", cmd, args)


def split_body(cmd, body):
    n = RESPONSE_NARGS.get(cmd)
    if n is None:  # not a response type: passed up whole
        return [body]
    args = body.split(b"\0", n - 1) if n else []
    args += [b""] * (n - len(args))  # too few separators: empty, not invented
    if n == 1 and cmd in HANDLE_FIRST and args[0].endswith(b"\0"):
        args[0] = args[0][:-1]  # gearmand's WORK_FAIL-after-exception quirk (8.5)
    return args


def _text(wire, off, mode):
    """(reply, end offset) of the text reply at wire[off:], or None if incomplete."""
    if mode == TEXT_MARKED:
        # Everything up to the first line start holding a NUL: the ECHO_RES sent behind
        # "show unique jobs" (PROTOCOL.md 7); that NUL belongs to the next message.
        at = wire.find(b"\n\0", off)
        return None if at < 0 else (wire[off:at + 1], at + 1)
    pos = off
    while (lf := wire.find(b"\n", pos)) >= 0:
        line = wire[pos:lf].removesuffix(b"\r")
        if mode == TEXT_LINE:
            return line, lf + 1
        if line == b".":  # only a line that is exactly "." ends a block; "ERR x" is data
            return wire[off:pos], lf + 1  # a block is the bytes before its "." line
        pos = lf + 1
    return None


def parse(wire, text_mode=TEXT_NONE):
    """(messages, bytes consumed, error name or None): decode until done or broken."""
    wire = bytes(wire)
    out, off = [], 0
    while off < len(wire):
        if wire[off] != 0:
            if text_mode not in (TEXT_LINE, TEXT_BLOCK, TEXT_MARKED):
                return out, off, "unexpected_text"
            got = _text(wire, off, text_mode)
            if got is None:
                return out, off, ("too_large" if len(wire) - off > MAX_PACKET else None)
            if got[1] - off > MAX_PACKET:  # the same cap as a binary body
                return out, off, "too_large"
            out.append((TEXT, [got[0]]))
            off = got[1]
            continue
        if not b"\0RES".startswith(wire[off:off + 4]):
            return out, off, "bad_magic"
        if len(wire) - off < HEADER.size:
            break
        _, cmd, size = HEADER.unpack_from(wire, off)
        if size > MAX_PACKET:
            return out, off, "too_large"
        body = off + HEADER.size
        if len(wire) < body + size:
            break
        if cmd == 0:  # type 0 is text's marker, never a wire type: reported as unknown
            cmd = INVALID
        out.append((cmd, split_body(cmd, wire[body:body + size])))
        off = body + size
    return out, off, None


def decode(wire, text_mode=TEXT_NONE):
    """Every message in wire, which must hold whole, valid messages only."""
    out, off, err = parse(wire, text_mode)
    if err or off != len(wire):
        raise ValueError(f"undecodable at byte {off}: {err or 'incomplete'}")
    return out
