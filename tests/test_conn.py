"""gm_conn over a real socketpair: requests reach the peer byte-exact, replies come out whole and
in order, EOF and write errors keep what arrived, and both buffers stay bounded. The same bytes
fed by a transport gm_conn does not own (gm_conn_feed) and taken from it (gm_conn_out) give the
same packets, split anywhere."""
from __future__ import annotations

import errno
import os
import select
import struct
import socket
import subprocess
import sys
import threading
import time

import pytest
from gearman_ev._ffi import ffi, lib

from tests import refproto
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res

NONE, LINE = lib.GM_TEXT_NONE, lib.GM_TEXT_LINE
KIB, MIB = 1024, 1024 * 1024
READ_BOUND = lib.GM_READ_BUDGET + 64 * KIB  # read-ahead one gm_conn_read may take
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def pair():
    """(gm_conn on our non-blocking end, our socket, the peer's blocking socket)."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.settimeout(10)
    c = ffi.gc(lib.gm_conn_new(), lib.gm_conn_free)
    assert c != ffi.NULL
    lib.gm_conn_reset(c, ours.fileno())
    yield c, ours, peer
    ours.close()
    peer.close()


def grow_sndbuf(sock, size):
    """Let the kernel queue up to ~size bytes from sock (SO_SNDBUFFORCE needs root)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, 32, size)  # SO_SNDBUFFORCE, Linux
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def message(pkt):
    return pkt.cmd, [ffi.buffer(pkt.arg[i], pkt.len[i])[:] for i in range(pkt.nargs)]


def drain(c, mode=NONE):
    """Every complete message gm_conn_next hands out now."""
    pkt, out = ffi.new("gm_packet_t *"), []
    while (rc := lib.gm_conn_next(c, mode, pkt)) == 1:
        out.append(message(pkt))
    assert rc == 0, rc
    return out


def pump(c, ours, count, timeout=10.0):
    """Read and drain until count messages are out; returns (messages, each read's size)."""
    deadline = time.monotonic() + timeout
    out, reads = [], []
    while len(out) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"got {len(out)} of {count} messages"
        select.select([ours], [], [], left)
        rc = lib.gm_conn_read(c)
        assert rc >= 0, rc
        reads.append(rc)
        out += drain(c)
    return out, reads


def recv_exact(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, MIB))
        assert chunk, "peer saw EOF early"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def nothing_more(sock):
    r, _, _ = select.select([sock], [], [], 0.05)
    return not r


def in_thread(fn, *args):
    errors = []

    def run():
        try:
            fn(*args)
        except OSError as e:  # sendall fails so; reported by the test, not lost
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def finish(thread_errors):
    t, errors = thread_errors
    t.join(10)
    assert not t.is_alive()
    assert not errors, errors


REPLIES = [res(6), res(8, b"H:h:1"), res(13, b"H:h:1", b"res\0ult"), res(14, b"H:h:2\0"),
           res(17, b"\0echo\0"), res(19, b"UNKNOWN_OPTION", b"bad"), res(10),
           res(20, b"H:h:1", b"1", b"0", b"3", b"4"), res(28, b"H:h:1", b"x" * 300)]


# ===== Writing =====

def test_capacities_at_rest():
    c = ffi.gc(lib.gm_conn_new(), lib.gm_conn_free)
    assert lib.gm_conn_read_capacity(c) == lib.GM_BUF_INITIAL == 16384
    assert lib.gm_conn_write_capacity(c) == 16384
    assert lib.gm_conn_write_pending(c) == 0
    assert c.fd == -1


def test_queued_requests_reach_the_peer_exactly(pair):
    c, _, peer = pair
    assert lib.gm_conn_pack4(c, 7, 3, b"reverse", 7, b"u", 1, b"hi\0", 3, ffi.NULL, 0) == 0
    assert lib.gm_conn_pack4(c, 9, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0) == 0
    assert lib.gm_conn_pack4(c, 36, 4, b"f", 1, b"", 0, b"1700000000", 10, b"w", 1) == 0
    sched = [b"f", b"u", b"1", b"2", b"3", b"4", b"5", b"w\0"]
    keep = [ffi.from_buffer(a) for a in sched]
    assert lib.gm_conn_pack(c, 35, 8, ffi.new("const char *[]", keep),
                            ffi.new("size_t[]", [len(a) for a in sched])) == 0
    assert lib.gm_conn_append(c, b"status\r\n", 8) == 0
    want = (req(7, b"reverse", b"u", b"hi\0") + req(9) + req(36, b"f", b"", b"1700000000", b"w")
            + req(35, *sched) + b"status\r\n")
    assert lib.gm_conn_write_pending(c) == len(want)
    assert lib.gm_conn_write(c) == 0
    assert lib.gm_conn_write_pending(c) == 0
    assert recv_exact(peer, len(want)) == want
    assert nothing_more(peer)


def test_refused_request_queues_nothing(pair):
    c, _, peer = pair
    assert lib.gm_conn_pack4(c, 7, 3, b"f\0", 2, b"", 0, b"", 0, ffi.NULL, 0) == lib.GM_E_BAD_ARGS
    assert lib.gm_conn_pack4(c, 0, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0,
                             ffi.NULL, 0) == lib.GM_E_BAD_ARGS
    assert lib.gm_conn_write_pending(c) == 0
    assert lib.gm_conn_write(c) == 0
    assert nothing_more(peer)


def test_write_with_nothing_queued_is_zero(pair):
    c, _, peer = pair
    assert lib.gm_conn_write(c) == 0
    assert nothing_more(peer)


def test_write_leaves_the_rest_queued_until_the_peer_reads(pair):
    c, ours, peer = pair
    payload = bytes(range(256)) * (16 * KIB)  # 4 MiB: far more than a socket buffer
    want = req(16, payload)
    assert lib.gm_conn_pack4(c, 16, 1, payload, len(payload), ffi.NULL, 0, ffi.NULL, 0,
                             ffi.NULL, 0) == 0
    pending = lib.gm_conn_write(c)
    assert 0 < pending < len(want)
    assert pending == lib.gm_conn_write_pending(c)
    assert lib.gm_conn_write(c) == pending  # still full: nothing lost, nothing resent
    got = bytearray()
    deadline = time.monotonic() + 10
    while pending:
        assert time.monotonic() < deadline
        got += peer.recv(MIB)
        select.select([], [ours], [], 1)
        pending = lib.gm_conn_write(c)
        assert pending >= 0
    got += recv_exact(peer, len(want) - len(got))
    assert got == want
    assert nothing_more(peer)
    assert lib.gm_conn_write_capacity(c) == 16384  # the 4 MiB block went with the drain


def test_write_to_closed_peer_reports_errno(pair):
    c, _, peer = pair
    peer.close()
    assert lib.gm_conn_pack4(c, 16, 1, b"ping", 4, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0) == 0
    assert lib.gm_conn_write(c) == lib.GM_E_WRITE
    assert c.err_no in (errno.EPIPE, errno.ECONNRESET)


SIGPIPE_SCRIPT = """
import signal, socket, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # Python ignores it; a C client may not
from gearman_ev._ffi import ffi, lib
ours, peer = socket.socketpair()
ours.setblocking(False)
peer.close()
c = lib.gm_conn_new()
lib.gm_conn_reset(c, ours.fileno())
lib.gm_conn_pack4(c, 16, 1, b"ping", 4, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0)
print(lib.gm_conn_write(c), c.err_no)
"""


def test_write_to_closed_peer_raises_no_sigpipe():
    # Run where SIGPIPE is fatal: without MSG_NOSIGNAL the process dies with -SIGPIPE.
    p = subprocess.run([sys.executable, "-c", SIGPIPE_SCRIPT], cwd=ROOT, check=False,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])
    rc, err = map(int, p.stdout.split())
    assert rc == lib.GM_E_WRITE
    assert err in (errno.EPIPE, errno.ECONNRESET)


# ===== Reading =====

def test_read_with_nothing_there_is_zero(pair):
    c, _, _ = pair
    assert lib.gm_conn_read(c) == 0
    assert drain(c) == []


def test_many_packets_in_one_read(pair):
    c, _, peer = pair
    wire = b"".join(REPLIES) * 100  # ~60 KB: fits the socket buffer, so it is all there
    peer.sendall(wire)
    assert lib.gm_conn_read(c) == len(wire)
    assert drain(c) == refproto.decode(wire)
    assert lib.gm_conn_read(c) == 0


def test_steady_small_replies_keep_the_read_buffer_at_rest(pair):
    # gm_conn.h: a read asks for little free room, so small traffic never grows the buffer.
    c, _, peer = pair
    wire = b"".join(REPLIES)
    for _ in range(500):
        peer.sendall(wire)
        assert lib.gm_conn_read(c) == len(wire)
        assert drain(c) == refproto.decode(wire)
        assert lib.gm_conn_read_capacity(c) == 16384


def test_text_and_binary_interleaved(pair):
    c, _, peer = pair
    peer.sendall(res(6) + b"OK 1.1.20\n" + res(10) + b"OK\r\n")
    assert lib.gm_conn_read(c) > 0
    assert drain(c, LINE) == [(6, []), (0, [b"OK 1.1.20"]), (10, []), (0, [b"OK"])]


def test_text_block_arriving_in_pieces(pair):
    # The decoder resumes its line scan across reads while the buffer compacts and grows.
    c, _, peer = pair
    block = b"".join(b"f%05d\t1\t0\t2\n" % i for i in range(3000)) + b".\n"
    wire = res(6) + block + res(10)
    out = []
    for at in range(0, len(wire), 7000):
        peer.sendall(wire[at:at + 7000])
        assert lib.gm_conn_read(c) > 0
        out += drain(c, lib.GM_TEXT_BLOCK)
    assert out == [(6, []), (0, [block[:-2]]), (10, [])]


def test_unexpected_text_is_reported_by_next(pair):
    c, _, peer = pair
    peer.sendall(res(6) + b"OK\r\n")
    assert lib.gm_conn_read(c) > 0
    pkt = ffi.new("gm_packet_t *")
    assert lib.gm_conn_next(c, NONE, pkt) == 1
    assert lib.gm_conn_next(c, NONE, pkt) == lib.GM_E_UNEXPECTED_TEXT


def test_five_mib_packet_arrives_whole(pair):
    c, ours, peer = pair
    payload = bytes(range(251)) * (5 * MIB // 251 + 1)
    wire = res(8, b"H:h:1") + res(13, b"H:h:1", payload) + res(6)
    sender = in_thread(peer.sendall, wire)
    out, _ = pump(c, ours, 3)
    finish(sender)
    assert out == [(8, [b"H:h:1"]), (13, [b"H:h:1", payload]), (6, [])]
    assert drain(c) == []  # drops the last packet: the buffer drains fully
    assert lib.gm_conn_read_capacity(c) == 16384  # back to rest after the big transfer


def test_packets_before_eof_are_still_delivered(pair):
    c, _, peer = pair
    wire = b"".join(REPLIES) * 10
    peer.sendall(wire)
    peer.close()
    for _ in range(100):  # a few reads at most; bounded so a bug cannot hang the run
        rc = lib.gm_conn_read(c)
        if rc == lib.GM_E_EOF:
            break
        assert rc >= 0, rc
    assert rc == lib.GM_E_EOF
    assert drain(c) == refproto.decode(wire)  # nothing was lost to the EOF


def test_partial_packet_before_eof(pair):
    c, _, peer = pair
    whole = res(13, b"H:h:1", b"done")
    peer.sendall(whole + res(13, b"H:h:2", b"cut off")[:15])
    peer.close()
    rcs = [lib.gm_conn_read(c) for _ in range(3)]
    assert lib.GM_E_EOF in rcs
    assert drain(c) == [(13, [b"H:h:1", b"done"])]  # the torn one is never handed out


def test_reset_forgets_buffered_bytes(pair):
    c, ours, peer = pair
    peer.sendall(res(6) + res(10)[:5])
    lib.gm_conn_read(c)
    lib.gm_conn_pack4(c, 9, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0)
    lib.gm_conn_reset(c, ours.fileno())
    assert lib.gm_conn_write_pending(c) == 0
    assert drain(c) == []
    assert (c.fd, c.err_no) == (ours.fileno(), 0)


def test_flood_of_small_packets_is_read_in_bounded_steps(pair):
    c, ours, peer = pair
    grow_sndbuf(peer, 64 * MIB)  # let the kernel hold far more than one read's budget
    one = res(28, b"H:h:1", b"y" * 100)
    count = 20 * MIB // len(one)
    sender = in_thread(peer.sendall, one * count)
    out, reads = pump(c, ours, count, timeout=60)
    finish(sender)
    assert len(out) == count and out[-1] == (28, [b"H:h:1", b"y" * 100])
    most = max(reads)
    assert most <= READ_BOUND, f"one gm_conn_read took {most} bytes (bound {READ_BOUND})"


def test_read_ahead_behind_a_big_packet_is_bounded(pair):
    # The buffer may hold the big packet being assembled plus one budget of read-ahead, not
    # whatever else fits in the block the big packet made the buffer grow to.
    c, ours, peer = pair
    if grow_sndbuf(peer, 64 * MIB) < 8 * MIB:
        pytest.skip("the kernel will not queue enough bytes to overfill one read")
    big = res(13, b"H:h:1", b"x" * (2 * MIB + 1000))
    small = res(28, b"H:h:1", b"y" * 100)
    rest = small * (4 * MIB // len(small))
    want = refproto.decode(big + rest)
    peer.sendall(big + rest)  # all queued in the kernel before the first read
    first, limit = lib.gm_conn_read(c), len(big) + READ_BOUND
    assert first > 0
    out, _ = pump(c, ours, len(want))
    assert out == want  # the data itself is intact either way
    assert first <= limit, (
        f"one gm_conn_read took {first} bytes: a {len(big)}-byte packet plus "
        f"{first - len(big)} bytes of read-ahead (budget {lib.GM_READ_BUDGET})")


# ===== Need-based reads: room for the packet the decoder waits for =====

def big_reply(size):
    return res(13, b"H:h:1", bytes(range(251)) * (size // 251 + 1))


@pytest.mark.parametrize("next_between", [True, False], ids=["drained", "not-drained"])
def test_read_makes_room_for_a_big_packet_once_its_header_is_in(pair, next_between):
    # The decoder's need (the full size of the packet at the front) sizes the buffer: one
    # block for the whole packet, whether gm_conn_next already reported it or not.
    c, ours, peer = pair
    big = big_reply(5 * MIB)
    peer.sendall(big[:1000])
    assert lib.gm_conn_read(c) == 1000
    assert lib.gm_conn_read_capacity(c) == 16384  # a short read ends the call: nothing owed yet
    if next_between:
        assert drain(c) == []
    peer.sendall(big[1000:3000])
    assert lib.gm_conn_read(c) == 2000
    cap = lib.gm_conn_read_capacity(c)
    assert cap >= len(big)
    got = 3000
    sender = in_thread(peer.sendall, big[3000:])
    while got < len(big):
        select.select([ours], [], [], 5)
        n = lib.gm_conn_read(c)
        assert n >= 0
        got += n
        assert lib.gm_conn_read_capacity(c) == cap  # never grown again on the way
    finish(sender)
    assert drain(c) == refproto.decode(big)


def test_one_read_takes_all_a_big_packet_lacks(pair):
    # Past the read-ahead budget, but only for the packet at the front, and only what it lacks.
    c, _, peer = pair
    if grow_sndbuf(peer, 64 * MIB) < 8 * MIB:
        pytest.skip("the kernel will not queue a whole 5 MiB packet")
    big, after = big_reply(5 * MIB), res(6) * 1000
    peer.sendall(big + after)  # all queued in the kernel before the read
    assert lib.gm_conn_read(c) == len(big) > lib.GM_READ_BUDGET
    assert drain(c) == refproto.decode(big)
    assert lib.gm_conn_read(c) == len(after)
    assert drain(c) == refproto.decode(after)


@pytest.mark.parametrize("front, mode, rc", [
    (b"\0REQ" + struct.pack(">II", 13, 200 * MIB), NONE, lib.GM_E_BAD_MAGIC),
    (b"\0RXS" + struct.pack(">II", 13, 200 * MIB), NONE, lib.GM_E_BAD_MAGIC),
    (b"\0RES" + struct.pack(">II", 13, lib.GM_MAX_PACKET + 1), NONE, lib.GM_E_RESPONSE_TOO_LARGE),
    (b"\0RES" + struct.pack(">II", 13, 0xFFFFFFFF), NONE, lib.GM_E_RESPONSE_TOO_LARGE),
    (b"OK \0RES" + struct.pack(">II", 13, 200 * MIB), LINE, 0),  # a text front has no length
], ids=["request-magic", "bad-magic", "over-cap", "max-u32", "text"])
def test_read_trusts_no_length_the_decoder_refuses(pair, front, mode, rc):
    c, _, peer = pair
    peer.sendall(front + b"x" * 5000)
    assert lib.gm_conn_read(c) == len(front) + 5000
    peer.sendall(b"y" * 5000)
    assert lib.gm_conn_read(c) == 5000
    assert lib.gm_conn_read_capacity(c) == 16384  # no room reserved for the claimed body
    assert lib.gm_conn_next(c, mode, ffi.new("gm_packet_t *")) == rc


# ===== Feeding: a transport gm_conn does not own (asyncio, a TLS memory BIO) =====

def fed_conn():
    """A gm_conn without a socket, driven the way an asyncio or TLS front-end drives it."""
    c = ffi.gc(lib.gm_conn_new(), lib.gm_conn_free)
    assert c != ffi.NULL
    lib.gm_conn_reset(c, -1)
    return c


def feed(c, data):
    assert lib.gm_conn_feed(c, data, len(data)) == lib.GM_OK


FEED_WIRE = b"".join(REPLIES[:4]) + b"OK 1.1.20\n" + b"".join(REPLIES[4:]) + b"OK\r\n"


def test_feed_gives_what_read_gives(pair):
    c, _, peer = pair
    peer.sendall(FEED_WIRE)
    assert lib.gm_conn_read(c) == len(FEED_WIRE)
    read = drain(c, LINE)
    f = fed_conn()
    feed(f, FEED_WIRE)
    assert drain(f, LINE) == read == refproto.decode(FEED_WIRE, LINE)


@pytest.mark.parametrize("cut", range(1, len(FEED_WIRE)))
def test_feed_split_anywhere(cut):
    c = fed_conn()
    feed(c, FEED_WIRE[:cut])
    out = drain(c, LINE)
    feed(c, FEED_WIRE[cut:])
    assert out + drain(c, LINE) == refproto.decode(FEED_WIRE, LINE)


def test_feed_one_byte_at_a_time():
    c, out = fed_conn(), []
    for i in range(len(FEED_WIRE)):
        feed(c, FEED_WIRE[i:i + 1])
        out += drain(c, LINE)
    assert out == refproto.decode(FEED_WIRE, LINE)


def test_feed_with_trailing_garbage():
    c, pkt, out = fed_conn(), ffi.new("gm_packet_t *"), []
    feed(c, FEED_WIRE + b"\0REQ" + bytes(8))
    while (rc := lib.gm_conn_next(c, LINE, pkt)) == 1:
        out.append(message(pkt))
    assert out == refproto.decode(FEED_WIRE, LINE)
    assert rc == lib.GM_E_BAD_MAGIC


def test_feed_marked_listing_one_byte_at_a_time():
    # "show unique jobs" + ECHO_REQ: a unique "." and one "ERR x", the marker's echo behind.
    wire = b".\nERR x\r\n\n.\n" + res(17, b"") + res(6)
    c, out = fed_conn(), []
    for i in range(len(wire)):
        feed(c, wire[i:i + 1])
        out += drain(c, lib.GM_TEXT_MARKED)
    assert out == [(0, [b".\nERR x\r\n\n.\n"]), (17, [b""]), (6, [])]


@pytest.mark.parametrize("next_between", [True, False], ids=["drained", "not-drained"])
def test_feed_gives_a_big_packet_its_room_at_once(next_between):
    big = big_reply(5 * MIB)
    c = fed_conn()
    feed(c, big[:1000])
    if next_between:
        assert drain(c) == []  # incomplete: the decoder now knows the packet's size
    feed(c, big[1000:65536])
    cap = lib.gm_conn_read_capacity(c)
    assert cap >= len(big)  # one block for all of it, not a doubling every few feeds
    for at in range(65536, len(big), 65536):
        feed(c, big[at:at + 65536])
        assert lib.gm_conn_read_capacity(c) == cap
    assert drain(c) == refproto.decode(big)
    assert lib.gm_conn_read_capacity(c) == 16384  # the drain gave the big block back


@pytest.mark.parametrize("front", [
    b"\0RXS" + struct.pack(">II", 13, 200 * MIB),
    b"\0RES" + struct.pack(">II", 13, lib.GM_MAX_PACKET + 1),
], ids=["bad-magic", "over-cap"])
def test_feed_trusts_no_length_the_decoder_refuses(front):
    c = fed_conn()
    feed(c, front + b"x" * 100)
    feed(c, b"y" * 100)
    assert lib.gm_conn_read_capacity(c) == 16384


def test_feed_refuses_more_while_a_whole_packet_sits_undrained():
    # A transport cannot be told to wait, so the bound is on what the caller left undrained:
    # one largest message, which a caller draining after each feed never exceeds.
    big = res(13, b"H", b"x" * (lib.GM_MAX_PACKET - 2))
    assert len(big) == lib.GM_FEED_BACKLOG == 12 + lib.GM_MAX_PACKET
    c, pkt = fed_conn(), ffi.new("gm_packet_t *")
    feed(c, big)
    del big
    feed(c, res(6))  # up to the bound before the call: still taken
    assert lib.gm_conn_feed(c, res(10), 12) == lib.GM_E_BACKLOG  # nothing taken
    assert lib.gm_conn_next(c, NONE, pkt) == 1
    assert (pkt.cmd, pkt.len[0], pkt.len[1]) == (13, 1, lib.GM_MAX_PACKET - 2)
    feed(c, res(10))  # drained: taken again
    assert drain(c) == [(6, []), (10, [])]


def test_feed_and_append_refuse_null_with_a_length():
    c = fed_conn()
    assert lib.gm_conn_feed(c, ffi.NULL, 5) == lib.GM_E_BAD_ARGS
    assert lib.gm_conn_append(c, ffi.NULL, 5) == lib.GM_E_BAD_ARGS
    assert lib.gm_conn_feed(c, ffi.NULL, 0) == lib.GM_OK
    assert lib.gm_conn_append(c, ffi.NULL, 0) == lib.GM_OK
    assert drain(c) == [] and lib.gm_conn_write_pending(c) == 0


# ===== The out side: unsent bytes for a transport to take =====

OUT_WIRE = (req(7, b"reverse", b"u", b"hi\0") + req(9) + req(16, bytes(range(256)))
            + b"status\r\n" + req(4))


def queue_requests(c):
    assert lib.gm_conn_pack4(c, 7, 3, b"reverse", 7, b"u", 1, b"hi\0", 3, ffi.NULL, 0) == 0
    assert lib.gm_conn_pack4(c, 9, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0) == 0
    echo = bytes(range(256))
    assert lib.gm_conn_pack4(c, 16, 1, echo, 256, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0) == 0
    assert lib.gm_conn_append(c, b"status\r\n", 8) == 0
    assert lib.gm_conn_pack4(c, 4, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0, ffi.NULL, 0) == 0


def out(c):
    """(pointer, count) of the unsent bytes, as gm_conn_out gives them."""
    p = ffi.new("const char **")
    n = lib.gm_conn_out(c, p)
    return p[0], n


def test_out_gives_the_queued_bytes_in_place():
    c = fed_conn()
    queue_requests(c)
    p, n = out(c)
    assert (ffi.buffer(p, n)[:], n) == (OUT_WIRE, lib.gm_conn_write_pending(c))
    assert out(c) == (p, n)  # nothing taken, nothing changed
    lib.gm_conn_out_consume(c, 5)
    assert out(c) == (p + 5, n - 5)  # the same block, 5 bytes on: no copy was made
    assert lib.gm_conn_write_pending(c) == n - 5


@pytest.mark.parametrize("cut", range(len(OUT_WIRE) + 1))
def test_out_split_anywhere(cut):
    c = fed_conn()
    queue_requests(c)
    p, n = out(c)
    taken = ffi.buffer(p, cut)[:]
    lib.gm_conn_out_consume(c, cut)
    p, n = out(c)
    assert n == len(OUT_WIRE) - cut == lib.gm_conn_write_pending(c)
    taken += ffi.buffer(p, n)[:]
    lib.gm_conn_out_consume(c, n)
    assert taken == OUT_WIRE
    assert out(c)[1] == 0 and lib.gm_conn_write_pending(c) == 0


def test_out_one_byte_at_a_time_while_more_is_queued():
    c, taken = fed_conn(), b""
    queue_requests(c)
    for i in range(len(OUT_WIRE)):
        if i == 100:
            queue_requests(c)  # queued behind what the transport has not taken yet
        p, n = out(c)
        assert n > 0
        taken += ffi.buffer(p, 1)[:]
        lib.gm_conn_out_consume(c, 1)
    p, n = out(c)
    taken += ffi.buffer(p, n)[:]
    assert taken == OUT_WIRE * 2


def test_out_consume_past_the_end_drains_and_shrinks():
    c = fed_conn()
    payload = b"z" * (4 * MIB)
    assert lib.gm_conn_pack4(c, 16, 1, payload, len(payload), ffi.NULL, 0, ffi.NULL, 0,
                             ffi.NULL, 0) == 0
    assert lib.gm_conn_write_capacity(c) > lib.GM_BUF_SHRINK_ABOVE
    lib.gm_conn_out_consume(c, 1 << 62)
    p, n = out(c)
    assert n == 0 and p != ffi.NULL
    assert lib.gm_conn_write_capacity(c) == 16384


def test_out_and_write_share_one_queue(pair):
    # A connection may be written by the socket path after a transport took some bytes.
    c, _, peer = pair
    queue_requests(c)
    lib.gm_conn_out_consume(c, 20)
    assert lib.gm_conn_write(c) == 0
    assert recv_exact(peer, len(OUT_WIRE) - 20) == OUT_WIRE[20:]
    assert out(c)[1] == 0


# ===== gm_conn_next_created: a run of JOB_CREATED in one call =====

@pytest.fixture
def fed():
    """A gm_conn with no socket, fed by the test."""
    c = ffi.gc(lib.gm_conn_new(), lib.gm_conn_free)
    lib.gm_conn_reset(c, -1)
    return c


def created_run(c, max_count=512, cap=4096):
    """(handles taken, as bytes) from one gm_conn_next_created call."""
    out, used = ffi.new("char[]", cap), ffi.new("size_t *")
    count = lib.gm_conn_next_created(c, max_count, out, cap, used)
    handles = ffi.buffer(out, used[0])[:].split(b"\0")[:-1] if count else []
    assert len(handles) == count
    return handles


def created(handle):
    return res(8, handle)


def test_run_takes_whole_job_created_and_leaves_the_rest(fed):
    wire = b"".join(created(b"H:%d" % i) for i in range(3)) + res(13, b"H:9", b"r") + created(b"H:3")
    feed(fed, wire + created(b"H:4")[:-1])  # the last one incomplete
    assert created_run(fed) == [b"H:0", b"H:1", b"H:2"]
    assert created_run(fed) == []  # a WORK_COMPLETE in front: not ours
    assert drain(fed) == [(13, [b"H:9", b"r"]), (8, [b"H:3"])]
    assert created_run(fed) == []  # incomplete: nothing taken
    feed(fed, b"4")
    assert created_run(fed) == [b"H:4"]


def test_run_stops_at_max_and_at_the_buffer_cap(fed):
    feed(fed, b"".join(created(b"H:%d" % i) for i in range(10)))
    assert created_run(fed, max_count=4) == [b"H:0", b"H:1", b"H:2", b"H:3"]
    assert created_run(fed, cap=8) == [b"H:4", b"H:5"]  # 4 bytes each with the NUL
    assert created_run(fed, cap=3) == []  # "H:6" and its NUL do not fit: left for later
    assert drain(fed) == [(8, [b"H:%d" % i]) for i in range(6, 10)]


@pytest.mark.parametrize("wire, why", [
    (created(b"H:a\0b"), "a NUL of its own"),
    (b"\0REQ" + created(b"H:1")[4:], "a bad magic"),
    (struct.pack(">4sII", b"\0RES", 8, lib.GM_MAX_PACKET + 1), "a length over the maximum"),
    (b"OK 1.1\n", "text"),
])
def test_run_leaves_what_gm_conn_next_must_see(fed, wire, why):
    feed(fed, created(b"H:0") + wire)
    assert created_run(fed) == [b"H:0"]
    assert created_run(fed) == [], why
    pkt = ffi.new("gm_packet_t *")
    expect = {"a NUL of its own": 1, "a bad magic": lib.GM_E_BAD_MAGIC,
              "a length over the maximum": lib.GM_E_RESPONSE_TOO_LARGE,
              "text": lib.GM_E_UNEXPECTED_TEXT}[why]
    assert lib.gm_conn_next(fed, NONE, pkt) == expect


def test_run_drops_a_trailing_nul_as_the_decoder_does(fed):
    feed(fed, created(b"H:1\0") + created(b""))
    assert created_run(fed) == [b"H:1", b""]
