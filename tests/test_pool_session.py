"""Failover at the byte: the session rule 6 and the router, without sockets.

Two in-memory sessions (the recording driver of test_session) serve one real
``Router``. Session A queues a stream of every request kind, the "kernel"
takes the first ``cut`` bytes of it, and A's connection ends: exactly the
re-routable requests of which no byte was taken must reach session B, byte
for byte as they were queued, and be answered there; every other callback
fires once with "disconnected". No server is involved: the replies fed in
are what PROTOCOL.md says gearmand sends."""
from __future__ import annotations

import pytest

from gearman_ev import errors
from gearman_ev._codec import CMD, write_pending
from gearman_ev._ffi import lib
from gearman_ev._job import Job
from gearman_ev._routing import Router, key_order
from gearman_ev._session import (K_ECHO, K_OPTION, K_STATUS, K_STATUS_UNIQUE, K_SUBMIT_BG,
                                 K_TEXT_LINE, K_TEXT_MARKED, Entry, Session, Submission)
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res
from tests.test_session import MemoryDriver

OPTS = dict(exceptions=False, client_id=None, grab_unique=False, connect_timeout=0.0,
            command_timeout=0.0, reconnect=False, reconnect_delay=1.0,
            max_reconnect_attempts=0, high_water=0)
NAMES = ["a.example:4730", "b.example:4730"]


def key_for(first):
    """A unique key whose rendezvous order starts with server ``first``."""
    return next(k for k in (b"k%d" % i for i in range(1000)) if key_order(k, NAMES)[0] == first)


class Farm:
    """Sessions A and B in one router, both connected; a shared clock."""

    def __init__(self, connect=True):
        self.drivers = [MemoryDriver(), MemoryDriver()]
        self.sessions = [Session(d, Job, **OPTS) for d in self.drivers]
        self.deadline = 0.0
        self.log = []
        self.router = Router(NAMES, self.sessions, wait_timeout=0.0, now=self.now,
                             set_deadline=self.set_deadline, call=lambda f, *a: f(*a))
        for s in self.sessions:
            s.on_error = lambda err: None
            s.connect(("tcp", "example", 4730))
            if connect:
                s.connection_made(-1)
                s.take_output()

    def now(self):
        return self.drivers[0].clock

    def set_deadline(self, when):
        self.deadline = when

    def tick(self, seconds):
        for d in self.drivers:
            d.clock += seconds

    def cb(self, name):
        return lambda result, err: self.log.append((name, result, err))

    def sub(self, name):
        return Submission(self.cb(name), None, None, None, None, False)


def queue_every_kind(farm):
    """Queue on A requests of every kind, re-routable or not, with the
    packets the session does not answer woven in. Returns a list of
    (bytes, name or None, re-routable) in stream order."""
    a = farm.sessions[0]
    k1, k2 = key_for(0), key_for(1)
    stream = []

    def add(wire, name=None, moves=False):
        stream.append((wire, name, moves))

    a.send3(CMD.SUBMIT_JOB, b"f", k1, b"fg", farm.sub("fg"))
    add(req(7, b"f", k1, b"fg"), "fg", True)
    a.set_ability(b"f", _ability())
    add(req(1, b"f"))
    a.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"bg", Entry(K_SUBMIT_BG, farm.cb("bg")))
    add(req(18, b"f", b"", b"bg"), "bg", True)
    a.send(CMD.GET_STATUS, (b"H:1",), Entry(K_STATUS, farm.cb("status")))
    add(req(15, b"H:1"), "status")
    a.admin(b"version\r\n", K_TEXT_LINE, farm.cb("version"))
    add(b"version\r\n", "version")
    a.send(CMD.ECHO_REQ, (b"e",), Entry(K_ECHO, farm.cb("echo")))
    add(req(16, b"e"), "echo", True)
    a.send(CMD.GET_STATUS_UNIQUE, (k2,), Entry(K_STATUS_UNIQUE, farm.cb("status-u")))
    add(req(41, k2), "status-u", True)
    a.send(CMD.SUBMIT_JOB_EPOCH, (b"f", k2, b"1999999999", b"ep"),
           Entry(K_SUBMIT_BG, farm.cb("epoch")))
    add(req(36, b"f", k2, b"1999999999", b"ep"), "epoch", True)
    a.set_client_id(b"me")
    add(req(22, b"me"))
    a.work(None, None, False)
    add(req(9))  # the managed GRAB: this server's worker state, never moved
    timed = farm.sub("timed")
    a.send3(CMD.SUBMIT_JOB_LOW, b"f", b"", b"lo", timed)
    a.set_job_deadline(timed, 30.0)
    add(req(33, b"f", b"", b"lo"), "timed", True)
    a.admin(b"show unique jobs\r\n", K_TEXT_MARKED, farm.cb("unique-jobs"))
    add(b"show unique jobs\r\n", "unique-jobs")
    add(req(16, b""))  # its marker
    a.send(CMD.OPTION_REQ, (b"exceptions",), Entry(K_OPTION, farm.cb("option")))
    add(req(26, b"exceptions"), "option")
    a.send3(CMD.SUBMIT_JOB, b"f", b"", b"last", farm.sub("last"))
    add(req(7, b"f", b"", b"last"), "last", True)
    return stream


def _ability():
    from gearman_ev._session import Ability
    return Ability(lambda job: b"", None, False)


def test_offsets_count_every_byte_of_every_packet_kind():
    farm = Farm()
    stream = queue_every_kind(farm)
    a = farm.sessions[0]
    wire = b"".join(w for w, _, _ in stream)
    assert write_pending(a.c) == len(wire) == a._out_total
    assert a.take_output() == wire


def replies_for(name):
    """What gearmand answers each re-routable request with, and the
    callback that answer gives."""
    return {
        "fg": (res(8, b"H:b1") + res(13, b"H:b1", b"done-fg"), ("fg", b"done-fg", None)),
        "bg": (res(8, b"H:b2"), ("bg", "H:b2", None)),
        "echo": (res(17, b"e"), ("echo", b"e", None)),
        "status-u": (res(42, key_for(1), b"1", b"0", b"0", b"0", b"0"),
                     ("status-u", {"unique": key_for(1).decode(), "known": True,
                                   "running": False, "numerator": "0", "denominator": "0",
                                   "client_count": 0}, None)),
        "epoch": (res(8, b"H:b3"), ("epoch", "H:b3", None)),
        "timed": (res(8, b"H:b4") + res(13, b"H:b4", b"done-lo"), ("timed", b"done-lo", None)),
        "last": (res(8, b"H:b5") + res(13, b"H:b5", b"done-last"),
                 ("last", b"done-last", None)),
    }[name]


WIRE_LEN = len(b"".join(w for w, _, _ in queue_every_kind(Farm())))


@pytest.mark.parametrize("cut", range(WIRE_LEN + 1))
def test_only_requests_the_kernel_took_nothing_of_move(cut):
    farm = Farm()
    stream = queue_every_kind(farm)
    a, b = farm.sessions
    total = write_pending(a.c)
    lib.gm_conn_out_consume(a.c, cut)  # the kernel took `cut` bytes
    a.written(total - cut)
    a.connection_lost("read error: Connection reset by peer")

    offset, moved, failed = 0, [], []
    for wire, name, moves in stream:
        if name is not None:
            (moved if moves and offset >= cut else failed).append((wire, name))
        offset += len(wire)
    # Moved: byte for byte, in order, onto B (the only server left).
    assert b.take_output() == b"".join(w for w, _ in moved)
    assert farm.router.rerouted == len(moved)
    # Failed, once each, with "disconnected"; nothing moved fired.
    assert sorted(farm.log) == sorted((n, None, errors.DISCONNECTED) for _, n in failed)
    farm.log.clear()
    # B answers what moved, in order, and each gets its own reply.
    b.feed(b"".join(replies_for(n)[0] for _, n in moved))
    assert farm.log == [replies_for(n)[1] for _, n in moved]
    # The moved job deadline left A with it: A's timer never fires it.
    farm.tick(60)
    a.on_deadline()
    b.on_deadline()
    assert len(farm.log) == len(moved)
    assert a._live_deadlines == 0 and a.pending_count == 0 and b.pending_count == 0


def test_a_moved_job_keeps_its_deadline_on_the_new_server():
    farm = Farm()
    a, b = farm.sessions
    timed = farm.sub("timed")
    a.send3(CMD.SUBMIT_JOB, b"f", b"", b"x", timed)
    a.set_job_deadline(timed, 5.0)
    a.connection_lost("connection closed by server")
    assert b.take_output() == req(7, b"f", b"", b"x")
    farm.tick(4.9)
    b.on_deadline()
    assert farm.log == []
    farm.tick(0.2)
    b.on_deadline()
    assert farm.log == [("timed", None, errors.JOB_TIMEOUT)]
    assert a._live_deadlines == 0 and not a._job_heap and not a._job_lane  # left A's timer


def test_a_timed_out_unsent_job_is_not_moved():
    farm = Farm()
    a, b = farm.sessions
    timed = farm.sub("timed")
    a.send3(CMD.SUBMIT_JOB, b"f", b"", b"x", timed)
    a.set_job_deadline(timed, 1.0)
    farm.tick(2)
    a.on_deadline()
    assert farm.log == [("timed", None, errors.JOB_TIMEOUT)]
    a.connection_lost("connection closed by server")
    assert b.take_output() == b"" and farm.router.rerouted == 0
    assert farm.log == [("timed", None, errors.JOB_TIMEOUT)]


def test_requests_queued_before_a_failed_connect_move_too():
    farm = Farm(connect=False)
    a, b = farm.sessions
    b.connection_made(-1)
    b.take_output()
    # A is still connecting: a request made on it directly waits in its queue.
    a.send(CMD.ECHO_REQ, (b"waited",), Entry(K_ECHO, farm.cb("echo")))
    a.admin(b"version\r\n", K_TEXT_LINE, farm.cb("version"))
    a.connect_failed("connect: Connection refused")
    assert b.take_output() == req(16, b"waited")
    assert farm.log == [("version", None, errors.DISCONNECTED)]
    b.feed(res(17, b"waited"))
    assert farm.log[-1] == ("echo", b"waited", None)


def test_with_no_server_left_a_moved_request_waits_then_fails():
    farm = Farm()
    a, b = farm.sessions
    farm.router.wait_timeout = 2.0
    b.connection_lost("connection closed by server")
    a.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"x", Entry(K_SUBMIT_BG, farm.cb("bg")))
    a.connection_lost("connection closed by server")
    # Both down with no reconnect: nothing can ever take it.
    assert farm.log == [("bg", None, errors.NO_SERVER)]


def test_no_session_of_a_plain_connection_hands_anything_back():
    driver = MemoryDriver()
    s = Session(driver, Job, **OPTS)
    s.on_error = lambda err: None
    log = []
    s.connect(("tcp", "example", 4730))
    s.connection_made(-1)
    s.send(CMD.ECHO_REQ, (b"x",), Entry(K_ECHO, lambda r, e: log.append(e)))
    assert s._marks is None
    s.connection_lost("connection closed by server")
    assert log == [errors.DISCONNECTED]


# ===== A fan-out where one server refuses (write buffer full) =====

def test_fan_out_part_refused_by_a_full_server_answers_that_part_once():
    from gearman_ev._routing import FirstKnown, Gather
    farm = Farm()
    b = farm.sessions[1]
    b.high_water = 10
    b.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"x" * 64, Entry(K_SUBMIT_BG, farm.cb("filler")))
    # B holds more than high_water unsent (the memory driver writes nothing):
    # its next request is refused at the send.
    gather = Gather(NAMES, farm.cb("admin"), lambda f, *a: f(*a))
    for i, s in enumerate(farm.sessions):
        part = gather.part(i)
        farm.router.to_server(
            i, lambda s=s, part=part: s.send(CMD.ECHO_REQ, (b"v",), Entry(K_ECHO, part)),
            lambda err, part=part: part(None, err))
    ask = FirstKnown([0, 1], farm.cb("status"), lambda f, *a: f(*a), lambda j: None)
    farm.router.ask_each([0, 1], CMD.GET_STATUS, (b"H:1",), K_STATUS, ask.part)
    assert farm.log == []  # A's parts still wait for A's replies
    farm.sessions[0].feed(res(17, b"v") + res(20, b"H:1", b"0", b"0", b"0", b"0"))
    assert farm.log == [
        ("admin", {NAMES[0]: b"v", NAMES[1]: None}, errors.WRITE_BUFFER_FULL),
        ("status", None, errors.WRITE_BUFFER_FULL)]
