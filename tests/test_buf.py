"""gm_buf: rests at 16 KiB, steady small traffic never reallocates, a drained big buffer shrinks
back, room is made by compacting before growing, and the bytes always come out as they went in."""
from __future__ import annotations


from gearman_ev._ffi import ffi, lib

from tests.conftest import contents, new_buf
from hypothesis import given, settings
from hypothesis import strategies as st

KIB, MIB = 1024, 1024 * 1024


def append(b, data):
    assert lib.gm_buf_append(b, data, len(data)) == lib.GM_OK


def pattern(n, seed=0):
    """n bytes that are not all alike (period 251, a prime), so a misplaced byte shows."""
    start = seed % 251
    return (bytes(range(251)) * (n // 251 + 2))[start:start + n]


def test_starts_at_initial_capacity():
    assert lib.GM_BUF_INITIAL == 16 * KIB
    assert lib.GM_BUF_SHRINK_ABOVE == 1 * MIB
    with new_buf() as b:
        assert (b.cap, b.start, b.end) == (16 * KIB, 0, 0)
        assert b.data != ffi.NULL


def test_steady_small_traffic_never_reallocates():
    chunk = pattern(100)
    with new_buf() as b:
        data, cap = b.data, b.cap
        for _ in range(10_000):
            append(b, chunk)
            assert contents(b) == chunk
            lib.gm_buf_consume(b, 100)
            assert (b.data, b.cap, b.start, b.end) == (data, cap, 0, 0)  # a drain rewinds


def test_partial_packet_kept_in_buffer_never_reallocates():
    # A reader usually holds the start of the next packet: the buffer never fully drains,
    # start creeps forward, and room must come from compacting, not from realloc.
    with new_buf() as b:
        data, cap = b.data, b.cap
        model = bytearray(pattern(30))
        append(b, bytes(model))
        for i in range(10_000):
            chunk = pattern(100, seed=i)
            append(b, chunk)
            model += chunk
            lib.gm_buf_consume(b, 100)
            del model[:100]
            assert b.end - b.start == 30
            assert (b.data, b.cap) == (data, cap)
        assert contents(b) == bytes(model)


def test_mixed_sizes_below_half_capacity_never_reallocate():
    with new_buf() as b:
        data, cap = b.data, b.cap
        model = bytearray()
        for i in range(5_000):
            chunk = pattern(1 + (i * 37) % 4000, seed=i)
            append(b, chunk)
            model += chunk
            keep = (i * 13) % 3000  # leave up to ~3 KiB of a partial message behind
            drop = max(len(model) - keep, 0)
            lib.gm_buf_consume(b, drop)
            del model[:drop]
            assert (b.data, b.cap) == (data, cap)
        assert contents(b) == bytes(model)


def test_grown_past_shrink_threshold_returns_to_initial_after_drain():
    big = pattern(3 * MIB)
    with new_buf() as b:
        append(b, big)
        assert b.cap >= 3 * MIB
        assert contents(b) == big
        lib.gm_buf_consume(b, 1 * MIB)  # partial: keeps the big block
        assert b.cap >= 3 * MIB
        lib.gm_buf_consume(b, 2 * MIB)  # full drain
        assert (b.cap, b.start, b.end) == (16 * KIB, 0, 0)
        append(b, b"after")  # the fresh block is usable
        assert contents(b) == b"after"


def test_clear_also_returns_to_initial():
    with new_buf() as b:
        append(b, pattern(2 * MIB))
        lib.gm_buf_clear(b)
        assert (b.cap, b.start, b.end) == (16 * KIB, 0, 0)


def test_at_shrink_threshold_is_kept():
    # Only a buffer that grew *past* 1 MiB is worth a free + malloc on drain.
    with new_buf() as b:
        append(b, pattern(1 * MIB))
        assert b.cap == 1 * MIB
        lib.gm_buf_consume(b, 1 * MIB)
        assert b.cap == 1 * MIB


def test_partial_consume_of_big_buffer_keeps_bytes_in_order():
    big = pattern(5 * MIB + 3, seed=1)
    with new_buf() as b:
        append(b, big)
        data, cap = b.data, b.cap
        done = 0
        for step in (1, 12, 64 * KIB - 1, 1 * MIB, 3 * MIB + 77):
            lib.gm_buf_consume(b, step)
            done += step
            assert (b.data, b.cap) == (data, cap)
            assert contents(b) == big[done:]
        append(b, b"tail")  # appending after a partial consume keeps order too
        assert contents(b) == big[done:] + b"tail"


def test_reserve_compacts_before_growing():
    head = pattern(16_000)
    with new_buf() as b:
        append(b, head)
        lib.gm_buf_consume(b, 10_000)  # 6000 live bytes at offset 10000; 384 bytes of room
        data, cap = b.data, b.cap
        assert lib.gm_buf_reserve(b, 5_000) == lib.GM_OK  # 6000 + 5000 fits in 16 KiB
        assert (b.data, b.cap, b.start, b.end) == (data, cap, 0, 6_000)
        assert b.cap - b.end >= 5_000
        assert contents(b) == head[10_000:]


def test_reserve_with_room_does_nothing():
    with new_buf() as b:
        append(b, b"abc")
        lib.gm_buf_consume(b, 1)
        before = (b.data, b.cap, b.start, b.end)
        assert lib.gm_buf_reserve(b, 100) == lib.GM_OK
        assert (b.data, b.cap, b.start, b.end) == before


def test_reserve_grows_when_compacting_is_not_enough():
    head = pattern(16_000)
    with new_buf() as b:
        append(b, head)
        lib.gm_buf_consume(b, 1_000)  # 15000 live bytes; 15000 + 2000 > 16 KiB
        assert lib.gm_buf_reserve(b, 2_000) == lib.GM_OK
        assert b.cap >= 17_000 and b.start == 0
        assert b.cap - b.end >= 2_000
        assert contents(b) == head[1_000:]


def test_impossible_reserve_fails_cleanly():
    with new_buf() as b:
        append(b, b"keep")
        before = (b.data, b.cap, b.start, b.end)
        assert lib.gm_buf_reserve(b, 2**64 - 1) == lib.GM_E_NOMEM  # len + n would wrap
        assert lib.gm_buf_reserve(b, 2**63) == lib.GM_E_NOMEM  # no allocator gives 8 EiB
        assert (b.data, b.cap, b.start, b.end) == before
        assert contents(b) == b"keep"


OPS = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 40_000)),
    st.tuples(st.just("append_big"), st.integers(1 * MIB, 1 * MIB + 70_000)),
    st.tuples(st.just("consume"), st.floats(0, 1)),  # a fraction of what is there
    st.tuples(st.just("reserve"), st.integers(0, 70_000)),
    st.tuples(st.just("clear"), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=30))
def test_random_operations_match_a_bytearray(ops):
    with new_buf() as b:
        model = bytearray()
        for i, (op, arg) in enumerate(ops):
            grown = b.cap > lib.GM_BUF_SHRINK_ABOVE
            if op.startswith("append"):
                chunk = pattern(arg, seed=i)
                append(b, chunk)
                model += chunk
            elif op == "consume":
                n = int(len(model) * arg)
                lib.gm_buf_consume(b, n)
                del model[:n]
            elif op == "reserve":
                assert lib.gm_buf_reserve(b, arg) == lib.GM_OK
                assert b.cap - b.end >= arg
            else:
                lib.gm_buf_clear(b)
                model.clear()
            assert 0 <= b.start <= b.end <= b.cap
            assert contents(b) == bytes(model)
            if not model and op in ("consume", "clear"):
                assert (b.start, b.end) == (0, 0)  # a drain rewinds
                assert b.cap == 16 * KIB if grown else b.cap <= lib.GM_BUF_SHRINK_ABOVE
