"""gm_parse_next: every response type, text replies, framing under any split, and hostile bytes,
all checked against refproto (the oracle) and a few hand-written expectations."""
from __future__ import annotations

import struct

import pytest
from gearman_ev._ffi import ffi, lib
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import refproto
from tests.refproto import encode_response as res

NONE, LINE, BLOCK = lib.GM_TEXT_NONE, lib.GM_TEXT_LINE, lib.GM_TEXT_BLOCK
MARKED = lib.GM_TEXT_MARKED
TEXT_MODES = [LINE, BLOCK, MARKED]
ERRORS = {"bad_magic": lib.GM_E_BAD_MAGIC, "too_large": lib.GM_E_RESPONSE_TOO_LARGE,
          "unexpected_text": lib.GM_E_UNEXPECTED_TEXT}
FUZZ = settings(max_examples=300, deadline=None)

# PROTOCOL.md 2, every type a server sends: (name, number, args in wire order).
RESPONSES = [
    ("NOOP", 6, []),
    ("JOB_CREATED", 8, [b"H:host:1"]),
    ("NO_JOB", 10, []),
    ("JOB_ASSIGN", 11, [b"H:host:1", b"reverse", b"work\0load"]),
    ("WORK_STATUS", 12, [b"H:host:1", b"3", b"10"]),
    ("WORK_COMPLETE", 13, [b"H:host:1", b"res\0ult\0"]),
    ("WORK_FAIL", 14, [b"H:host:1"]),
    ("ECHO_RES", 17, [b"\0ping\0\xff"]),
    ("ERROR", 19, [b"JOB_NOT_FOUND", b"Job given in work result not found"]),
    ("STATUS_RES", 20, [b"H:host:1", b"1", b"0", b"0", b"0"]),
    ("WORK_EXCEPTION", 25, [b"H:host:1", b"boom\0"]),
    ("OPTION_RES", 27, [b"exceptions"]),
    ("WORK_DATA", 28, [b"H:host:1", b"chunk"]),
    ("WORK_WARNING", 29, [b"H:host:1", b""]),
    ("JOB_ASSIGN_UNIQ", 31, [b"H:host:1", b"reverse", b"u-1", b"w"]),
    ("JOB_ASSIGN_ALL", 40, [b"H:host:1", b"map", b"u-1", b"reduce", b"a\0b"]),
    ("STATUS_RES_UNIQUE", 42, [b"u-1", b"1", b"1", b"5", b"10", b"2"]),
]
RESPONSE_TYPES = [num for _, num, _ in RESPONSES]
STREAM = b"".join(res(num, *args) for _, num, args in RESPONSES)


def new_parser():
    p = ffi.new("gm_parser_t *")
    lib.gm_parser_reset(p)
    return p


def message(pkt):
    return pkt.cmd, [ffi.buffer(pkt.arg[i], pkt.len[i])[:] for i in range(pkt.nargs)]


def c_parse(data, text_mode=NONE):
    """The C decoder over a whole input: (messages, bytes consumed, error code or None),
    the shape of refproto.parse. Also checks the per-call invariants."""
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    buf, off, out = ffi.from_buffer(data), 0, []
    while off < len(data):
        n = lib.gm_parse_next(parser, buf + off, len(data) - off, text_mode, pkt, need)
        assert n <= len(data) - off  # never claims bytes it was not given
        if n < 0:
            return out, off, n
        if n == 0:
            break
        assert pkt.nargs <= lib.GM_MAX_ARGS
        # body_len spans every argument from arg[0]: the whole binary body,
        # or the text message (the session copies a body in one piece).
        if pkt.cmd == lib.GM_CMD_TEXT:
            assert pkt.body_len == pkt.len[0]
        else:
            assert pkt.body_len == n - 12
            if pkt.nargs:
                assert ffi.buffer(pkt.arg[0], pkt.body_len)[:] == data[off + 12:off + n]
        out.append(message(pkt))
        off += n
    return out, off, None


def ref_parse(data, text_mode=NONE):
    out, off, err = refproto.parse(data, text_mode)
    return out, off, ERRORS[err] if err else None


def feed(pieces, text_mode=NONE):
    """Feed pieces as a reader would: accumulate, parse until 0, then append the next piece.
    The unparsed front stays at the start of the buffer between calls, as gm_conn keeps it."""
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    acc, out = b"", []
    for piece in pieces:
        acc += piece
        while acc:
            n = lib.gm_parse_next(parser, acc, len(acc), text_mode, pkt, need)
            assert n <= len(acc)
            if n < 0:
                return out, n
            if n == 0:
                break
            out.append(message(pkt))
            acc = acc[n:]
    assert acc == b"", "bytes left over after the last piece"
    return out, None


def decode_in_two(wire, cut, text_mode=NONE):
    return feed([wire[:cut], wire[cut:]], text_mode)[0]


# ===== Binary responses =====

@pytest.mark.parametrize("name, num, args", RESPONSES, ids=[r[0] for r in RESPONSES])
def test_every_response_type(name, num, args):
    wire = res(num, *args)
    assert c_parse(wire) == ([(num, args)], len(wire), None)
    assert refproto.decode(wire) == [(num, args)]
    assert getattr(lib, "GM_CMD_" + name) == num
    assert lib.gm_parse_nargs(num) == len(args)


def test_literal_job_assign():
    # Hand-written from PROTOCOL.md 1.1: JOB_ASSIGN(11) "H:1", "f", "a\0b" (body 9 bytes).
    wire = b"\0RES\x00\x00\x00\x0b\x00\x00\x00\x09H:1\0f\0a\0b"
    assert c_parse(wire) == ([(11, [b"H:1", b"f", b"a\0b"])], 21, None)


def test_whole_stream():
    assert c_parse(STREAM) == (refproto.decode(STREAM), len(STREAM), None)
    assert [cmd for cmd, _ in refproto.decode(STREAM)] == RESPONSE_TYPES


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_split_anywhere(cut):
    assert decode_in_two(STREAM, cut) == refproto.decode(STREAM)


def test_one_byte_at_a_time():
    pieces = [STREAM[i:i + 1] for i in range(len(STREAM))]
    assert feed(pieces) == (refproto.decode(STREAM), None)


def test_need_reports_full_packet_size_once_header_is_in():
    wire = res(13, b"H:1", b"x" * 100)  # 12 + 105 bytes
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    for have in range(1, len(wire)):
        need[0] = 12345  # must be overwritten on every call
        assert lib.gm_parse_next(parser, wire, have, NONE, pkt, need) == 0
        assert need[0] == (0 if have < 12 else len(wire)), have
    assert lib.gm_parse_next(parser, wire, len(wire), NONE, pkt, need) == len(wire)


@pytest.mark.parametrize("body, args", [
    (b"H:1", [b"H:1", b""]),  # WORK_COMPLETE, no separator at all
    (b"", [b"", b""]),
    (b"H:1\0", [b"H:1", b""]),
])
def test_too_few_separators_give_empty_trailing_args(body, args):
    wire = struct.pack(">4sII", b"\0RES", 13, len(body)) + body
    assert c_parse(wire)[0] == [(13, args)] == refproto.decode(wire)


@pytest.mark.parametrize("cmd, body, args", [
    (11, b"H:1\0f", [b"H:1", b"f", b""]),
    (42, b"", [b""] * 6),
    (40, b"H\0f\0u", [b"H", b"f", b"u", b"", b""]),
])
def test_too_few_separators_in_wider_packets(cmd, body, args):
    wire = struct.pack(">4sII", b"\0RES", cmd, len(body)) + body
    assert c_parse(wire)[0] == [(cmd, args)] == refproto.decode(wire)


@pytest.mark.parametrize("cmd, body, handle", [
    (14, b"H:1\0", b"H:1"),  # gearmand's WORK_FAIL after an exception (PROTOCOL.md 8.5)
    (8, b"H:2\0", b"H:2"),
    (14, b"H:1\0\0", b"H:1\0"),  # only one NUL is dropped
    (14, b"\0", b""),
    (14, b"H:1", b"H:1"),
])
def test_trailing_nul_dropped_from_lone_handle(cmd, body, handle):
    wire = struct.pack(">4sII", b"\0RES", cmd, len(body)) + body
    assert c_parse(wire)[0] == [(cmd, [handle])] == refproto.decode(wire)


@pytest.mark.parametrize("cmd, body", [(17, b"ping\0"), (27, b"exceptions\0")],
                         ids=["ECHO_RES", "OPTION_RES"])
def test_trailing_nul_kept_where_the_arg_is_no_handle(cmd, body):
    wire = struct.pack(">4sII", b"\0RES", cmd, len(body)) + body
    assert c_parse(wire)[0] == [(cmd, [body])]


@pytest.mark.parametrize("cmd", [99, 7, 16, 5, 43, 0xFFFFFFFF],
                         ids=["99", "SUBMIT_JOB", "ECHO_REQ", "unused-5", "43", "max-u32"])
def test_unknown_types_come_back_whole(cmd):
    body = b"a\0b\0c\0"
    wire = struct.pack(">4sII", b"\0RES", cmd, len(body)) + body
    assert c_parse(wire) == ([(cmd, [body])], len(wire), None)
    assert refproto.decode(wire) == [(cmd, [body])]


def test_body_of_zero_arg_packet_is_skipped():
    wire = struct.pack(">4sII", b"\0RES", 6, 3) + b"xyz" + res(10)
    assert c_parse(wire) == ([(6, []), (10, [])], len(wire), None)


@pytest.mark.parametrize("wire", [
    b"\0REQ" + b"\0" * 8,  # a request's magic coming back
    b"\0RER\0\0\0\x06\0\0\0\0",
    b"\0res\0\0\0\x06\0\0\0\0",
    b"\0\0\0\0\0\0\0\x06\0\0\0\0",
    b"\0REQ", b"\0RE\0", b"\0RX", b"\0X", b"\0\0",  # refused from the first wrong byte
])
def test_bad_magic(wire):
    assert c_parse(wire) == ([], 0, lib.GM_E_BAD_MAGIC)


@pytest.mark.parametrize("wire", [b"\0", b"\0R", b"\0RE", b"\0RES", b"\0RES\0\0\0\x06\0\0\0"])
def test_good_magic_prefix_is_incomplete(wire):
    assert c_parse(wire) == ([], 0, None)


def test_bad_magic_after_good_packets():
    wire = res(6) + res(10) + b"\0RESX"[:3] + b"Q"
    assert c_parse(wire) == ([(6, []), (10, [])], 24, lib.GM_E_BAD_MAGIC)


@pytest.mark.parametrize("size", [lib.GM_MAX_PACKET + 1, 0xFFFFFFFF])
def test_declared_length_over_max_packet(size):
    # Refused from the header alone: nothing is reserved for the claimed body.
    wire = struct.pack(">4sII", b"\0RES", 13, size)
    assert c_parse(wire) == ([], 0, lib.GM_E_RESPONSE_TOO_LARGE)


def test_declared_length_of_max_packet_is_awaited():
    wire = struct.pack(">4sII", b"\0RES", 13, lib.GM_MAX_PACKET) + b"H\0"
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    assert lib.gm_parse_next(parser, wire, len(wire), NONE, pkt, need) == 0
    assert need[0] == 12 + lib.GM_MAX_PACKET


# ===== Text (admin) replies =====

@pytest.mark.parametrize("wire", [b"OK 1.1.20\n", b"O", b"\n", b"ERR x\r\n", b".\n"])
def test_text_without_text_mode_is_unexpected(wire):
    assert c_parse(wire, NONE) == ([], 0, lib.GM_E_UNEXPECTED_TEXT)


def test_text_after_binary_without_text_mode():
    wire = res(6) + b"OK\r\n"
    assert c_parse(wire, NONE) == ([(6, [])], 12, lib.GM_E_UNEXPECTED_TEXT)


@pytest.mark.parametrize("wire, reply", [
    (b"OK 1.1.20+ds\n", b"OK 1.1.20+ds"),
    (b"OK\r\n", b"OK"),
    (b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n",
     b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo"),
    (b"\n", b""),
    (b"\r\n", b""),
    (b"a\rb\r\r\n", b"a\rb\r"),  # only the \r right before \n is a line ending
    (b".\n", b"."),  # a "." is plain content in line mode
])
def test_text_line(wire, reply):
    assert c_parse(wire, LINE) == ([(0, [reply])], len(wire), None)
    assert refproto.decode(wire, LINE) == [(0, [reply])]


def test_text_line_takes_one_line_only():
    wire = b"OK 1\nOK 2\r\n" + res(10)
    assert c_parse(wire, LINE) == ([(0, [b"OK 1"]), (0, [b"OK 2"]), (10, [])], len(wire), None)


@pytest.mark.parametrize("mode", TEXT_MODES)
def test_text_incomplete(mode):
    marked_only = [b"u\n.\n", b"u\n.\r\n", b".\n"]  # complete blocks; MARKED waits for the NUL
    for wire in [b"OK", b"OK\r", b"f\t1\t0\t1\n", b"f\t1\t0\t1\n.", b"f\n.\r", b"ERR x\r\n",
                 b"a\0b\n", *(marked_only if mode == MARKED else [])]:
        if mode == LINE and b"\n" in wire:
            continue
        assert c_parse(wire, mode) == ([], 0, None), wire


STATUS_LF = b"reverse\t2\t1\t3\nsum\t0\t0\t1\n.\n"
STATUS_CRLF = b"reverse\t2\t1\t3\r\nsum\t0\t0\t1\r\n.\r\n"


@pytest.mark.parametrize("wire, reply", [
    (STATUS_LF, b"reverse\t2\t1\t3\nsum\t0\t0\t1\n"),
    (STATUS_CRLF, b"reverse\t2\t1\t3\r\nsum\t0\t0\t1\r\n"),
    (b".\n", b""),  # empty block: no functions
    (b".\r\n", b""),
    (b"\n\n.\n", b"\n\n"),  # "show unique jobs": jobs without a unique are empty lines
    (b"..\n.x\n .\n.\n", b"..\n.x\n .\n"),  # only a line that is exactly "." ends it
    (b"ERR\n.\n", b"ERR\n"),
    (b"x\nERR y\n.\n", b"x\nERR y\n"),
    (b"ERR x\n.\n", b"ERR x\n"),  # a first "ERR " line is data too (see below)
])
def test_text_block(wire, reply):
    assert c_parse(wire, BLOCK) == ([(0, [reply])], len(wire), None)
    assert refproto.decode(wire, BLOCK) == [(0, [reply])]


def test_text_block_then_binary_then_block():
    wire = STATUS_LF + res(6) + b".\n" + res(8, b"H:1")
    want = [(0, [b"reverse\t2\t1\t3\nsum\t0\t0\t1\n"]), (6, []), (0, [b""]), (8, [b"H:1"])]
    assert c_parse(wire, BLOCK) == (want, len(wire), None)


TEXT_STREAM = STATUS_CRLF + res(6) + b"ERR x\r\n.\r\n" + b".\n" + STATUS_LF


@pytest.mark.parametrize("cut", range(1, len(TEXT_STREAM)))
def test_text_block_split_anywhere(cut):
    assert decode_in_two(TEXT_STREAM, cut, BLOCK) == refproto.decode(TEXT_STREAM, BLOCK)


def test_text_block_one_byte_at_a_time():
    pieces = [TEXT_STREAM[i:i + 1] for i in range(len(TEXT_STREAM))]
    assert feed(pieces, BLOCK) == (refproto.decode(TEXT_STREAM, BLOCK), None)


LINE_STREAM = b"OK 1.1.20\n" + res(13, b"H:1", b"r") + b"OK\r\n" + b"ERR x y\r\n"


@pytest.mark.parametrize("cut", range(1, len(LINE_STREAM)))
def test_text_line_split_anywhere(cut):
    assert decode_in_two(LINE_STREAM, cut, LINE) == refproto.decode(LINE_STREAM, LINE)


def test_text_without_line_end_over_max_packet():
    # An endless line must not be buffered for ever: refused once it passes the cap.
    wire = b"x" * (lib.GM_MAX_PACKET + 1)
    assert c_parse(wire, LINE) == ([], 0, lib.GM_E_RESPONSE_TOO_LARGE)
    assert c_parse(wire[:-1], LINE) == ([], 0, None)


def test_text_modes_match_header():
    assert (NONE, LINE, BLOCK, MARKED) == (refproto.TEXT_NONE, refproto.TEXT_LINE,
                                           refproto.TEXT_BLOCK, refproto.TEXT_MARKED)
    assert len({NONE, *TEXT_MODES}) == 4
    assert lib.GM_CMD_TEXT == refproto.TEXT == 0


# ===== Every way of feeding one input (STYLE.md 5) =====

GARBAGE = [b"\0", b"\0RE", b"\0REQ" + b"\0" * 8, b"\0RES\0\0\0\x06\xff\xff\xff\xff", b"x", b"\n",
           b".\n", b"\n\0", b"ERR x\r\n"]


def check_every_way(wire, mode, want):
    """wire decodes to want (refproto's answer too) fed whole, one byte at a time and split at
    every offset; with trailing garbage, want still comes first and the rest matches refproto."""
    assert refproto.decode(wire, mode) == want
    assert c_parse(wire, mode) == (want, len(wire), None)
    assert feed([wire[i:i + 1] for i in range(len(wire))], mode) == (want, None)
    for cut in range(1, len(wire)):
        assert feed([wire[:cut], wire[cut:]], mode) == (want, None), cut
    for tail in GARBAGE:
        got = c_parse(wire + tail, mode)
        assert got == ref_parse(wire + tail, mode), tail
        assert got[0][:len(want)] == want and got[1] >= len(wire), tail


# ===== Block replies: a first "ERR " line is data (PROTOCOL.md 7) =====

@pytest.mark.parametrize("wire, text", [
    (b"ERR x\n.\n", b"ERR x\n"),  # "show unique jobs" listing a unique "ERR x"
    (b"ERR x\r\nu2\r\n.\r\n", b"ERR x\r\nu2\r\n"),
    (b"ERR UNKNOWN_COMMAND x\n\n.\n", b"ERR UNKNOWN_COMMAND x\n\n"),
    (b"ERR \n.\n", b"ERR \n"),
    (b"ERR x\t1\t0\t1\nf\t0\t0\t1\n.\n", b"ERR x\t1\t0\t1\nf\t0\t0\t1\n"),  # "status", "ERR x"
])
def test_block_first_line_err_is_data(wire, text):
    # Block commands never answer with ERR: the reply runs to its "." line, whatever its first.
    check_every_way(wire + res(6), BLOCK, [(0, [text]), (6, [])])


def test_block_err_line_alone_waits_for_the_dot():
    wire = b"ERR x\r\n"
    assert c_parse(wire, BLOCK) == ([], 0, None)
    assert c_parse(wire + b".\n", BLOCK) == ([(0, [wire])], len(wire) + 2, None)
    assert c_parse(wire, LINE) == ([(0, [b"ERR x"])], len(wire), None)  # LINE is unchanged


# ===== Marked replies: "show unique jobs" + ECHO_REQ (PROTOCOL.md 7) =====

MARKER = res(17, b"")  # the ECHO_RES answering the ECHO_REQ sent right behind the command


@pytest.mark.parametrize("text", [
    b".\n",  # empty listing
    b".\r\n",
    b".\n.\n",  # a unique "." (gearmand#290): its line is no terminator here
    b"u1\n.\nu2\n.\n",
    b"ERR x\n.\n",  # a unique "ERR x"
    b"ERR x\r\n.\r\n",
    b"u1\r\nu2\r\n.\r\n",  # CRLF
    b"\n\nu\n.\n",  # jobs without a unique give empty lines
    b"a\0b\n.\n",  # a NUL inside a line is no marker: only one at a line start is
    b"u\n.\nno final line end",  # hostile: no "\n" right before the marker (see below)
], ids=repr)
def test_marked_runs_to_the_marker(text):
    if not text.endswith(b"\n"):
        text += b"\n"
    check_every_way(text + MARKER, MARKED, [(0, [text]), (17, [b""])])


def test_marked_on_gearmands_own_listing():
    # Captured from gearmand 1.1.20 (fuzz/corpus/parse/text_show_unique_marked): uniques "u1",
    # "u2", "ERR x" and "." listed, then the marker's ECHO_RES. BLOCK would end the reply at
    # the unique "." and take the real terminator for a second reply.
    listing = b"u1\nu2\nERR x\n.\n.\n"
    check_every_way(listing + MARKER, MARKED, [(0, [listing]), (17, [b""])])
    assert c_parse(listing + MARKER, BLOCK)[0] == [(0, [b"u1\nu2\nERR x\n"]), (0, [b""]),
                                                    (17, [b""])]


def test_marked_then_more_packets():
    wire = b"u\n.\n" + res(17, b"m\0x") + res(6) + b".\n" + MARKER + res(13, b"H:1", b"r")
    want = [(0, [b"u\n.\n"]), (17, [b"m\0x"]), (6, []), (0, [b".\n"]), (17, [b""]),
            (13, [b"H:1", b"r"])]
    check_every_way(wire, MARKED, want)


def test_marked_waits_for_the_nul_and_leaves_it():
    text = b"u1\n.\n"
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    for have in range(1, len(text) + 1):
        assert lib.gm_parse_next(parser, text, have, MARKED, pkt, need) == 0
        assert need[0] == 0
    wire = text + b"\0"
    assert lib.gm_parse_next(parser, wire, len(wire), MARKED, pkt, need) == len(text)
    assert message(pkt) == (lib.GM_CMD_TEXT, [text])  # the NUL starts the next message
    assert c_parse(text + b"\0RE", MARKED) == ([(0, [text])], len(text), None)


def test_marked_nul_inside_a_line_does_not_end_it():
    wire = b"u" + MARKER  # the marker's NUL is not at a line start: still text
    assert c_parse(wire, MARKED) == ([], 0, None) == ref_parse(wire, MARKED)
    wire += b"\n" + MARKER
    assert c_parse(wire, MARKED) == ([(0, [b"u" + MARKER + b"\n"]), (17, [b""])], len(wire), None)


@pytest.mark.parametrize("mode", TEXT_MODES)
def test_text_message_over_max_packet_is_refused_even_whole(mode):
    # The cap holds for the whole message, so the verdict does not depend on how it was cut.
    text_end = {LINE: b"\n", BLOCK: b"\n.\n", MARKED: b"\n"}[mode]
    after = MARKER if mode == MARKED else b""
    fits = b"x" * (lib.GM_MAX_PACKET - len(text_end)) + text_end + after
    out, used, err = c_parse(fits, mode)
    assert (err, used, len(out)) == (None, len(fits), 2 if after else 1)
    over = b"x" + fits
    assert c_parse(over, mode) == ([], 0, lib.GM_E_RESPONSE_TOO_LARGE) == ref_parse(over, mode)


# ===== The search of a pending text reply is O(n) =====

@pytest.mark.parametrize("mode", TEXT_MODES)
def test_long_partial_line_is_searched_once(mode):
    # A server dripping one long line: each call resumes where the last stopped, so the
    # total search is O(n), not O(n) per call (O(n^2) over the reads).
    wire = b"y" * 20_000
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    for have in range(1, len(wire) + 1, 997):
        assert lib.gm_parse_next(parser, wire, have, mode, pkt, need) == 0
        assert (parser.text_scan, parser.text_line) == (have, 0)


@pytest.mark.parametrize("mode", [BLOCK, MARKED])
def test_block_search_resumes_inside_the_unfinished_line(mode):
    wire = b"f\t1\t0\t1\n" * 50 + b"g" * 3000
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    for have in range(1, len(wire) + 1, 101):
        assert lib.gm_parse_next(parser, wire, have, mode, pkt, need) == 0
        assert parser.text_scan == have
        assert parser.text_line == wire.rfind(b"\n", 0, have) + 1  # the unfinished line's start


@pytest.mark.parametrize("mode", TEXT_MODES)
def test_searched_bytes_are_not_searched_again(mode):
    # Plant a terminator among bytes already searched (against the caller's contract, on
    # purpose): a decoder that searched them again would end the reply there.
    plant = {LINE: b"\n", BLOCK: b"\n.\n", MARKED: b"\n\0"}[mode]
    wire = bytearray(b"y" * 1000)
    parser, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    assert lib.gm_parse_next(parser, ffi.from_buffer(wire), len(wire), mode, pkt, need) == 0
    wire[500:500 + len(plant)] = plant
    wire += b"yy"
    assert lib.gm_parse_next(parser, ffi.from_buffer(wire), len(wire), mode, pkt, need) == 0
    assert parser.text_scan == len(wire)
    wire += {LINE: b"\n", BLOCK: b"\n.\n", MARKED: b"\n" + MARKER}[mode]
    size = len(wire) - (len(MARKER) if mode == MARKED else 0)
    assert lib.gm_parse_next(parser, ffi.from_buffer(wire), len(wire), mode, pkt, need) == size
    arg = {LINE: wire[:-1], BLOCK: wire[:-2], MARKED: wire[:size]}[mode]
    assert message(pkt) == (lib.GM_CMD_TEXT, [bytes(arg)])  # the planted bytes are inside
    assert (parser.text_scan, parser.text_line) == (0, 0)  # a finished reply starts afresh


def test_text_search_restarts_when_marked_becomes_block():
    p, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    assert lib.gm_parse_next(p, b"u\n.\n", 4, MARKED, pkt, need) == 0
    assert (p.text_scan, p.text_line) == (4, 4)
    assert lib.gm_parse_next(p, b"u\n.\n", 4, BLOCK, pkt, need) == 4
    assert message(pkt) == (lib.GM_CMD_TEXT, [b"u\n"])


def test_fewer_bytes_than_searched_start_afresh():
    # Against the contract, but every read must stay inside the bytes given.
    p, pkt, need = new_parser(), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    assert lib.gm_parse_next(p, b"abcdef", 6, LINE, pkt, need) == 0
    assert lib.gm_parse_next(p, b"ab\n", 3, LINE, pkt, need) == 3
    assert message(pkt) == (lib.GM_CMD_TEXT, [b"ab"])


# ===== Property-based: the C decoder against the oracle =====

def responses():
    """One valid binary response: a known type with its argument count, NUL-free leading args."""
    def build(cmd):
        n = refproto.RESPONSE_NARGS[cmd]
        lead = st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\0", b"")),
                        min_size=max(n - 1, 0), max_size=max(n - 1, 0))
        tail = st.lists(st.binary(max_size=60), min_size=min(n, 1), max_size=min(n, 1))
        return st.tuples(lead, tail).map(lambda lt: res(cmd, *lt[0], *lt[1]))
    return st.sampled_from(sorted(refproto.RESPONSE_NARGS)).flatmap(build)


def text_line():
    """Line content that cannot end in a bare CR or hold a line end of its own."""
    return st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))


def text_reply(mode):
    ending = st.sampled_from([b"\n", b"\r\n"])
    line = st.tuples(text_line(), ending).map(lambda t: t[0] + t[1])
    if mode == LINE:
        return line.filter(lambda w: w[0] != 0)
    if mode == MARKED:
        # Any lines, "." ones included, none starting with NUL; the marker's ECHO_RES (or any
        # binary reply: the decoder only looks for its NUL) right behind.
        body = st.lists(line.filter(lambda w: w[0] != 0), max_size=4)
        return st.tuples(body, ending, responses()).map(
            lambda t: b"".join(t[0]) + b"." + t[1] + t[2])
    body = st.lists(line, max_size=4)
    return st.tuples(body, ending).map(lambda t: b"".join(t[0]) + b"." + t[1]).filter(
        lambda w: w[0] != 0 and all(ln.rstrip(b"\r") != b"." for ln in w.split(b"\n")[:-2]))


@st.composite
def streams(draw):
    mode = draw(st.sampled_from([NONE, *TEXT_MODES]))
    item = responses() if mode == NONE else st.one_of(responses(), text_reply(mode))
    return mode, b"".join(draw(st.lists(item, max_size=8)))


@FUZZ
@given(streams(), st.data())
def test_random_splits_of_valid_streams(mode_wire, data):
    mode, wire = mode_wire
    want = refproto.decode(wire, mode)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    pieces = [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)])]
    assert feed(pieces, mode) == (want, None)
    assert c_parse(wire, mode) == (want, len(wire), None)


@FUZZ
@given(streams(), st.binary(max_size=64))
def test_random_bytes_after_a_valid_prefix(mode_wire, tail):
    mode, prefix = mode_wire
    got = c_parse(prefix + tail, mode)
    assert got == ref_parse(prefix + tail, mode)
    assert got[0][:len(refproto.decode(prefix, mode))] == refproto.decode(prefix, mode)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from([NONE, *TEXT_MODES]))
def test_random_garbage(wire, mode):
    got = c_parse(wire, mode)
    assert got == ref_parse(wire, mode)
    assert got[2] in (None, *ERRORS.values())


@FUZZ
@given(st.binary(max_size=120), st.sampled_from([NONE, *TEXT_MODES]))
def test_random_garbage_behind_a_binary_looking_header(body, mode):
    # Garbage is mostly refused at byte 1; a valid magic and a small length get deeper.
    wire = struct.pack(">4sII", b"\0RES", body[0] if body else 0, len(body) // 2) + body
    assert c_parse(wire, mode) == ref_parse(wire, mode)


def test_binary_type_zero_is_never_taken_for_text():
    # Type 0 is gearmand's internal text marker and never valid on the wire.
    wire = b"\0RES\0\0\0\0\0\0\0\x02hi"
    p, pkt, need = ffi.new("gm_parser_t *"), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    assert lib.gm_parse_next(p, wire, len(wire), lib.GM_TEXT_LINE, pkt, need) == len(wire)
    assert pkt.cmd == lib.GM_CMD_INVALID != lib.GM_CMD_TEXT


def test_text_scan_restarts_when_the_mode_changes():
    p, pkt, need = ffi.new("gm_parser_t *"), ffi.new("gm_packet_t *"), ffi.new("size_t *")
    assert lib.gm_parse_next(p, b"abc\nd", 5, lib.GM_TEXT_BLOCK, pkt, need) == 0
    assert lib.gm_parse_next(p, b"abc\nd\n", 6, lib.GM_TEXT_LINE, pkt, need) == 4
    assert ffi.unpack(pkt.arg[0], pkt.len[0]) == b"abc"
