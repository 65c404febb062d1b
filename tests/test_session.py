"""The protocol session without a socket or a loop (h11's way): requests
come out as bytes, replies go in as bytes, whole, one byte at a time, split
at every offset, with work events, NOOPs, ERRORs and JOB_NOT_FOUND woven in,
and with trailing garbage. The driver here is an in-memory recorder with a
hand-turned clock; no server is involved, so nothing here is a stand-in for
gearmand's behaviour: the replies are what PROTOCOL.md says it sends."""
from __future__ import annotations

import struct

import pytest

from gearman_ev import errors
from gearman_ev._codec import CMD
from gearman_ev._job import Job
from gearman_ev._session import (K_ECHO, K_OPTION, K_STATUS, K_STATUS_UNIQUE, K_SUBMIT_BG,
                                 K_TEXT_BLOCK, K_TEXT_LINE, K_TEXT_MARKED, Entry, Session,
                                 Submission)
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res


class MemoryDriver:
    """The driver interface in memory: records what the session asks for."""

    def __init__(self):
        self.clock = 100.0
        self.deadline = 0.0
        self.opened = []
        self.closed = []
        self.parked = []
        self.early_writes = 0

    def now(self):
        return self.clock

    def flush_soon(self):
        pass

    def write_now(self):
        self.early_writes += 1

    def set_deadline(self, when):
        self.deadline = when

    def open(self, address):
        self.opened.append(address)

    def close(self, flush):
        self.closed.append(flush)

    def park(self, exc):
        self.parked.append(exc)

    def forked(self):
        pass

    def check_thread(self):
        pass


def new_session(**kw):
    opts = dict(exceptions=False, client_id=None, grab_unique=False, connect_timeout=0.0,
                command_timeout=0.0, reconnect=False, reconnect_delay=1.0,
                max_reconnect_attempts=0, high_water=0)
    opts.update(kw)
    driver = MemoryDriver()
    s = Session(driver, Job, **opts)
    log = []
    s.on_error = lambda err: log.append(("error", err))
    s.connect(("tcp", "example", 4730))
    assert driver.opened == [("tcp", "example", 4730)]
    s.connection_made(-1)
    s.take_output()  # nothing was queued before the connection
    return s, driver, log


def cb(log, name):
    return lambda result, err: log.append((name, result, err))


def sub(log, name):
    return Submission(cb(log, name), lambda d: log.append((name, "data", d)),
                      lambda w: log.append((name, "warning", w)),
                      lambda n, d: log.append((name, "status", n, d)),
                      lambda e: log.append((name, "exception", e)), False)


# ===== One mixed stream =====

def queue_mixed(s, log):
    """Eight requests of every reply shape; returns the bytes they become."""
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"bg", Entry(K_SUBMIT_BG, cb(log, "bg")))
    s.send3(CMD.SUBMIT_JOB, b"f", b"", b"fg", sub(log, "fg"))
    s.send(CMD.ECHO_REQ, (b"ping",), Entry(K_ECHO, cb(log, "echo")))
    s.send(CMD.GET_STATUS, (b"H:1",), Entry(K_STATUS, cb(log, "status")))
    s.admin(b"status\r\n", K_TEXT_BLOCK, cb(log, "admin-status"))
    s.admin(b"version\r\n", K_TEXT_LINE, cb(log, "admin-version"))
    s.admin(b"show unique jobs\r\n", K_TEXT_MARKED, cb(log, "admin-unique"))
    s.send(CMD.GET_STATUS_UNIQUE, (b"u",), Entry(K_STATUS_UNIQUE, cb(log, "status-u")))
    s.send(CMD.OPTION_REQ, (b"exceptions",), Entry(K_OPTION, cb(log, "option")))
    return (req(18, b"f", b"", b"bg") + req(7, b"f", b"", b"fg") + req(16, b"ping")
            + req(15, b"H:1") + b"status\r\n" + b"version\r\n" + b"show unique jobs\r\n"
            + req(16, b"") + req(41, b"u") + req(26, b"exceptions"))


MIXED_REPLIES = [
    res(8, b"H:bg"),
    res(6),                                   # a stray NOOP: never in the FIFO
    res(8, b"H:fg"),
    res(28, b"H:fg", b"chunk\0with nul"),     # work events for the fg job, interleaved
    res(17, b"ping"),
    res(12, b"H:fg", b"1", b"2"),
    res(20, b"H:1", b"1", b"0", b"3", b"4"),
    b"fn\t1\t0\t0\r\nERR looks like an error\n.\n",   # block: ERR line is data
    b"OK 1.1.20+ds\n",
    b".\nERR x\n\n.\n" + res(17, b""),         # MARKED: "." and "ERR x" are unique keys
    res(42, b"u", b"1", b"1", b"0", b"0", b"2"),
    res(29, b"H:fg", b"careful"),
    res(27, b"exceptions"),
    res(13, b"H:fg", b"result"),
]

MIXED_LOG = [
    ("bg", "H:bg", None),
    ("fg", "data", b"chunk\0with nul"),
    ("echo", b"ping", None),
    ("fg", "status", "1", "2"),
    ("status", {"handle": "H:1", "known": True, "running": False, "numerator": "3",
                "denominator": "4"}, None),
    ("admin-status", "fn\t1\t0\t0\nERR looks like an error\n", None),
    ("admin-version", "OK 1.1.20+ds", None),
    ("admin-unique", ".\nERR x\n\n", None),
    ("status-u", {"unique": "u", "known": True, "running": True, "numerator": "0",
                  "denominator": "0", "client_count": 2}, None),
    ("fg", "warning", b"careful"),
    ("option", True, None),
    ("fg", b"result", None),
]

WIRE = b"".join(MIXED_REPLIES)


def feed_all(s, chunks):
    for chunk in chunks:
        s.feed(chunk)


def check_mixed(chunks):
    s, driver, log = new_session()
    sent = queue_mixed(s, log)
    assert s.take_output() == sent
    feed_all(s, chunks)
    assert log == MIXED_LOG
    assert s.pending_count == 0 and s.active_count == 0 and s.state == 2


def test_mixed_stream_whole():
    check_mixed([WIRE])


def test_mixed_stream_byte_by_byte():
    check_mixed([WIRE[i:i + 1] for i in range(len(WIRE))])


@pytest.mark.parametrize("cut", range(1, len(WIRE)))
def test_mixed_stream_split_anywhere(cut):
    check_mixed([WIRE[:cut], WIRE[cut:]])


@pytest.mark.parametrize("garbage, err", [(b"\0REQ" + bytes(8), "invalid response magic"),
                                          (b"OK\n", "unexpected admin response")])
def test_trailing_garbage_ends_the_connection_after_every_reply(garbage, err):
    s, driver, log = new_session()
    queue_mixed(s, log)
    s.feed(WIRE + garbage)
    assert log == MIXED_LOG + [("error", err)]
    assert s.state == 0 and driver.closed


# ===== ERROR and JOB_NOT_FOUND =====

ERROR_PKT = res(19, b"SOME_CODE", b"some+text")
NOT_FOUND = res(19, b"JOB_NOT_FOUND", b"Job+given+in+work+result+not+found")


@pytest.mark.parametrize("index", [0, 1, 2, 3, 7, 8])  # every binary reply to a request
def test_error_in_place_of_each_reply_answers_exactly_that_request(index):
    s, driver, log = new_session()
    queue_mixed(s, log)
    answers = [0, 2, 4, 6, 7, 8, 9, 10, 12]  # MIXED_REPLIES index of each request's reply
    names = ["bg", "fg", "echo", "status", "admin-status", "admin-version", "admin-unique",
             "status-u", "option"]
    replaced = answers[index]
    wire = MIXED_REPLIES[:replaced] + [ERROR_PKT] + MIXED_REPLIES[replaced + 1:]
    if names[index] == "fg":  # no handle: its work events are for nobody
        wire = [w for w in wire if b"H:fg" not in w]
    feed_all(s, [b"".join(wire)])
    want = [e for e in MIXED_LOG if e[0] != names[index]]
    if names[index] == "fg":
        want = [e for e in want if e[0] != "fg"]
    got_error = [e for e in log if e[0] == names[index]]
    assert got_error == [(names[index], None, "SOME_CODE: some+text")]
    assert [e for e in log if e[0] != names[index]] == want
    assert s.state == 2 and s.pending_count == 0


@pytest.mark.parametrize("at", range(len(MIXED_REPLIES) + 1))
def test_job_not_found_anywhere_answers_nothing(at):
    s, driver, log = new_session()
    queue_mixed(s, log)
    wire = MIXED_REPLIES[:at] + [NOT_FOUND] + MIXED_REPLIES[at:]
    feed_all(s, [b"".join(wire)])
    err = ("error", "JOB_NOT_FOUND: Job+given+in+work+result+not+found")
    assert [e for e in log if e != err] == MIXED_LOG
    assert log.count(err) == 1 and s.state == 2


# ===== Coalescing =====

@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_coalesced_handle_events_go_one_copy_each(split):
    s, driver, log = new_session()
    a = Submission(cb(log, "a"), lambda d: log.append(("a", d)), None, None, None, True)
    b = Submission(cb(log, "b"), lambda d: log.append(("b", d)), None, None, None, True)
    s.send3(CMD.SUBMIT_JOB, b"f", b"u", b"1", a)
    s.send3(CMD.SUBMIT_JOB, b"f", b"u", b"2", b)
    wire = (res(8, b"H:9") + res(8, b"H:9") + res(28, b"H:9", b"d") + res(28, b"H:9", b"d")
            + res(13, b"H:9", b"r") + res(13, b"H:9", b"r"))
    chunks = [wire] if split == "whole" else [wire[i:i + 1] for i in range(len(wire))]
    feed_all(s, chunks)
    assert log == [("a", b"d"), ("b", b"d"), ("a", b"r", None), ("b", b"r", None)]
    assert s.active_count == 0


# ===== The rules: state first, every callback once =====

def test_interrupt_in_a_callback_leaves_the_rest_matched():
    s, driver, log = new_session()

    def interrupted(result, err):
        log.append(("echo", result, err))
        raise KeyboardInterrupt

    for i in range(5):
        s.send(CMD.ECHO_REQ, (b"%d" % i,), Entry(K_ECHO, interrupted if i == 2 else
                                                 cb(log, "echo")))
    s.feed(b"".join(res(17, b"%d" % i) for i in range(5)))
    assert log == [("echo", b"%d" % i, None) for i in range(5)]
    assert len(driver.parked) == 1 and isinstance(driver.parked[0], KeyboardInterrupt)


def test_undigestible_reply_drains_every_callback_once():
    s, driver, log = new_session()
    s.send(CMD.GET_STATUS_UNIQUE, (b"u",), Entry(K_STATUS_UNIQUE, cb(log, "u")))
    s.send(CMD.ECHO_REQ, (b"e",), Entry(K_ECHO, cb(log, "e")))
    s.feed(res(42, b"u", b"1", b"1", b"0", b"0", "\u00b2".encode()) + res(17, b"e"))
    assert log[:2] == [("u", None, "disconnected"), ("e", None, "disconnected")]
    assert log[2][0] == "error" and log[2][1].startswith("protocol error: ")
    assert s.pending_count == 0


def test_reply_with_no_request_is_a_protocol_error():
    s, driver, log = new_session()
    s.feed(res(17, b"nobody asked"))
    assert log == [("error", "protocol error: unexpected response ECHO_RES")]


# ===== Deadlines (one timer) =====

def test_job_deadlines_share_one_timer_and_fire_in_order():
    s, driver, log = new_session()
    subs = []
    for i, t in enumerate([3.0, 1.0, 2.0]):
        x = Submission(cb(log, i), None, None, None, None, False)
        s.send3(CMD.SUBMIT_JOB, b"f", b"", b"w", x)
        s.set_job_deadline(x, t)
        subs.append(x)
    assert driver.deadline == 101.0
    s.feed(res(8, b"H:0") + res(8, b"H:1") + res(8, b"H:2") + res(13, b"H:2", b"ok"))
    driver.clock = 101.5
    s.on_deadline()
    assert log == [(2, b"ok", None), (1, None, "job timeout")]
    assert driver.deadline == 103.0  # job 2 finished: the next is job 0's
    driver.clock = 103.0
    s.on_deadline()
    assert log[-1] == (0, None, "job timeout") and s.active_count == 0
    s.feed(res(13, b"H:0", b"late"))  # a late result for a timed-out job is dropped
    assert len(log) == 3


def test_command_timeout_restarts_on_every_byte():
    s, driver, log = new_session(command_timeout=5.0)
    s.send(CMD.ECHO_REQ, (b"a",), Entry(K_ECHO, cb(log, "a")))
    s.send(CMD.ECHO_REQ, (b"b",), Entry(K_ECHO, cb(log, "b")))
    assert driver.deadline == 105.0
    driver.clock = 104.0
    s.feed(res(17, b"a"))
    driver.clock = 105.0
    s.on_deadline()  # fired at the old deadline: the clock restarted at 104
    assert log == [("a", b"a", None)] and driver.deadline == 109.0
    driver.clock = 109.0
    s.on_deadline()
    assert log[1:] == [("b", None, "command timeout"), ("error", "command timeout")]


def test_reconnect_waits_through_the_timer_and_counts_silent_connections():
    s, driver, log = new_session(reconnect=True, reconnect_delay=0.5, max_reconnect_attempts=2)
    for attempt in range(2):
        s.connection_lost("connection closed by server")  # no byte was ever heard
        assert s.state == 3 and driver.deadline == driver.clock + 0.5
        driver.clock += 0.5
        s.on_deadline()
        assert s.state == 1 and len(driver.opened) == attempt + 2
        s.connection_made(-1)
    s.connection_lost("connection closed by server")
    assert log[-1] == ("error", errors.MAX_RECONNECTS) and s.state == 0


def test_deadline_heap_stays_bounded_when_jobs_time_out():
    # Timed-out and finished jobs leave the heap: it never holds much more
    # than the live deadlines (the compaction counts each job out once).
    s, driver, log = new_session()
    for round_ in range(3):
        subs = []
        for i in range(3000):
            x = Submission(None, None, None, None, None, False)
            s.send3(CMD.SUBMIT_JOB, b"f", b"", b"w", x)
            s.set_job_deadline(x, 1.0)
            subs.append(x)
        driver.clock += 2.0
        s.on_deadline()
        assert all(x.done for x in subs)
        assert s._live_deadlines == 0
    assert len(s._job_heap) == 0 and len(s._job_lane) == 0


def test_job_timeouts_fire_in_deadline_order_then_in_the_order_armed():
    # Deadlines live in a lane (each no earlier than the last) and a heap
    # (the earlier ones): together they time out as one ordered queue, equal
    # deadlines in the order they were set.
    s, driver, log = new_session()
    fired = []
    plan = [("a", 5.0), ("b", 3.0), ("c", 5.0), ("d", 1.0), ("e", 3.0), ("f", 7.0), ("g", 1.0),
            ("i", 5.0)]  # due with a and c, armed after them
    for name, timeout in plan:
        x = Submission(lambda r, e, name=name: fired.append((name, e)), None, None, None, None,
                       False)
        s.send3(CMD.SUBMIT_JOB, b"f", b"", name.encode(), x)
        s.set_job_deadline(x, timeout)
    driver.clock += 1.0
    driver.clock += 0.5  # a later job: armed after the others, a later deadline
    late = Submission(lambda r, e: fired.append(("h", e)), None, None, None, None, False)
    s.send3(CMD.SUBMIT_JOB, b"f", b"", b"h", late)
    s.set_job_deadline(late, 1.5)  # due at 3.0, with b and e
    driver.clock += 10.0
    s.on_deadline()
    assert [n for n, _ in fired] == ["d", "g", "b", "e", "h", "a", "c", "i", "f"]
    assert all(e == errors.JOB_TIMEOUT for _, e in fired)
    assert s._live_deadlines == 0


# ===== The worker's JOB_ASSIGN (its hot path and the long way) =====

def working_session(callback, async_=False, **kw):
    """A session serving b"f" with ``callback``, its worker loop started and
    its set-up (CAN_DO, GRAB_JOB) taken."""
    from gearman_ev._session import Ability
    s, driver, log = new_session(**kw)
    s.abilities[b"f"] = Ability(callback, None, async_)
    s.work(None, None, False)
    assert s.take_output() == req(CMD.GRAB_JOB)
    return s, driver, log


def test_job_assign_runs_the_function_and_grabs_again():
    seen = []
    s, _driver, _log = working_session(lambda job: seen.append(job) or b"r:" + job.workload)
    s.feed(res(CMD.JOB_ASSIGN, b"H:1", b"f", b"a\0b"))  # the workload keeps its NUL
    assert s.take_output() == req(CMD.WORK_COMPLETE, b"H:1", b"r:a\0b") + req(CMD.GRAB_JOB)
    job = seen[0]
    assert (job.handle, job.function, job.unique, job.workload) == ("H:1", "f", "", b"a\0b")
    assert job.finished


def test_job_assign_with_too_few_separators_fails_the_job():
    ran = []
    s, _driver, _log = working_session(lambda job: ran.append(job))
    s.feed(res(CMD.JOB_ASSIGN, b"H:1"))  # no NUL: function b"", which nobody serves
    assert s.take_output() == req(CMD.WORK_FAIL, b"H:1") + req(CMD.GRAB_JOB)
    assert ran == []


@pytest.mark.parametrize("exceptions", [False, True])
def test_job_assign_whose_function_raises(exceptions):
    def boom(job):
        raise RuntimeError("no")
    s, _driver, log = working_session(boom, exceptions=exceptions)
    if exceptions:
        s.feed(res(CMD.OPTION_RES, b"exceptions"))  # the OPTION_REQ sent at connect
    s.feed(res(CMD.JOB_ASSIGN, b"H:1", b"f", b"w"))
    assert log == []
    failed = (req(CMD.WORK_EXCEPTION, b"H:1", b"no") if exceptions
              else req(CMD.WORK_FAIL, b"H:1"))
    assert s.take_output() == failed + req(CMD.GRAB_JOB)


def test_job_assign_whose_function_is_interrupted():
    def interrupted(job):
        raise KeyboardInterrupt
    s, driver, _log = working_session(interrupted)
    s.feed(res(CMD.JOB_ASSIGN, b"H:1", b"f", b"w"))
    assert s.take_output() == req(CMD.WORK_FAIL, b"H:1") + req(CMD.GRAB_JOB)
    assert [type(e) for e in driver.parked] == [KeyboardInterrupt]


def test_job_assign_for_an_async_function_waits_for_it():
    jobs = []
    s, _driver, _log = working_session(jobs.append, async_=True)
    s._concurrency = 1  # as work(concurrency=1): the slot is taken until the job ends
    s.feed(res(CMD.JOB_ASSIGN, b"H:1", b"f", b"w"))
    assert s.take_output() == b"" and not jobs[0].finished
    jobs[0].complete(b"done")
    assert s.take_output() == req(CMD.WORK_COMPLETE, b"H:1", b"done") + req(CMD.GRAB_JOB)


# ===== A run of JOB_CREATED for background submissions (the inlined path) =====

def test_background_run_calls_each_once_through_raises_and_interrupts():
    s, driver, log = new_session()
    calls = []

    def make(i):
        def done(handle, err):
            calls.append((i, handle, err))
            if i == 1:
                raise RuntimeError("user bug")  # logged; the run goes on
            if i == 2:
                raise KeyboardInterrupt  # parked for the loop; the run goes on
        return done
    for i in range(5):
        s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, make(i)))
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, None))  # no callback
    s.feed(b"".join(res(CMD.JOB_CREATED, b"H:%d" % i) for i in range(6)))
    assert calls == [(i, f"H:{i}", None) for i in range(5)]
    assert [type(e) for e in driver.parked] == [KeyboardInterrupt]
    assert log == [] and not s._pending


def test_background_run_is_matched_whole_before_a_callback_drops_the_connection():
    s, _driver, log = new_session()
    calls = []

    def make(i):
        def done(handle, err):
            calls.append((i, handle, err))
            if i == 1 and err is None:
                s.connection_lost("read error: gone")
        return done
    for i in range(5):
        s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, make(i)))
    # Four replies read at once (one run), the fifth never came.
    s.feed(b"".join(res(CMD.JOB_CREATED, b"H:%d" % i) for i in range(4)))
    # The run was matched whole before its first callback: the replies that
    # arrived reach their callbacks although the second one dropped the
    # connection; the request with no reply was drained once.
    assert sorted(calls) == [(0, "H:0", None), (1, "H:1", None), (2, "H:2", None),
                             (3, "H:3", None), (4, None, errors.DISCONNECTED)]
    assert calls[:2] == [(0, "H:0", None), (1, "H:1", None)]
    assert ("error", "read error: gone") in log


def test_run_with_foreground_submissions_among_background_ones():
    s, _driver, log = new_session()
    out = []
    fg = sub(out, "fg")
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, cb(out, "bg0")))
    s.send3(CMD.SUBMIT_JOB, b"f", b"", b"w", fg)
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, cb(out, "bg2")))
    s.feed(res(CMD.JOB_CREATED, b"H:0") + res(CMD.JOB_CREATED, b"H:fg")
           + res(CMD.JOB_CREATED, b"H:2") + res(CMD.WORK_COMPLETE, b"H:fg", b"done"))
    assert out == [("bg0", "H:0", None), ("bg2", "H:2", None), ("fg", b"done", None)]
    assert log == [] and not s._pending and not s._active


def test_run_longer_than_its_requests_is_a_protocol_error_after_their_replies():
    s, _driver, log = new_session()
    out = []
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, cb(out, "bg0")))
    s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, cb(out, "bg1")))
    s.send(CMD.ECHO_REQ, (b"e",), Entry(K_ECHO, cb(out, "echo")))
    s.feed(b"".join(res(CMD.JOB_CREATED, b"H:%d" % i) for i in range(3)))
    assert out == [("bg0", "H:0", None), ("bg1", "H:1", None),
                   ("echo", None, errors.DISCONNECTED)]
    assert ("error", "protocol error: unexpected response JOB_CREATED") in log


@pytest.mark.parametrize("handle", [b"H:a\0b", b"H:\xff\xfe", b"", b"H:x\0"])
def test_run_handles_as_a_single_reply_would(handle):
    # A NUL inside ends the C run before it (the packet goes the usual way);
    # bytes that are not UTF-8 come back surrogate-escaped; a trailing NUL
    # is dropped, as the decoder drops it.
    s, _driver, log = new_session()
    out = []
    for i in range(3):
        s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, cb(out, i)))
    s.feed(res(CMD.JOB_CREATED, b"H:0") + struct.pack(">4sII", b"\0RES", 8, len(handle))
           + handle + res(CMD.JOB_CREATED, b"H:2"))
    single = handle[:-1] if handle.endswith(b"\0") else handle
    assert out == [(0, "H:0", None),
                   (1, single.decode("utf-8", "surrogateescape"), None),
                   (2, "H:2", None)]
    assert log == []


def test_run_split_at_every_offset():
    wire = b"".join(res(CMD.JOB_CREATED, b"H:%d" % i) for i in range(6))
    for cut in range(1, len(wire)):
        s, _driver, log = new_session()
        out = []
        for i in range(6):
            s.send3(CMD.SUBMIT_JOB_BG, b"f", b"", b"w", Entry(K_SUBMIT_BG, cb(out, i)))
        s.feed(wire[:cut])
        s.feed(wire[cut:])
        assert out == [(i, f"H:{i}", None) for i in range(6)], cut
        assert log == []


@pytest.mark.parametrize("size", [10, 2048, 2049, 100_000])
def test_bodies_small_and_large_come_apart_the_same(size):
    # Up to _ONE_COPY_MAX a body is copied whole and split in Python, above
    # it argument by argument: the same handle, function, payload either way.
    payload = (b"a\0" * size)[:size]
    seen = []
    s, _driver, log = working_session(lambda job: seen.append(job) or job.workload)
    s.feed(res(CMD.JOB_ASSIGN, b"H:1", b"f", payload))
    assert s.take_output() == req(CMD.WORK_COMPLETE, b"H:1", payload) + req(CMD.GRAB_JOB)
    assert seen[0].workload == payload and log == []
    client, _driver, log = new_session()
    out = []
    client.send3(CMD.SUBMIT_JOB, b"f", b"", b"w", sub(out, "fg"))
    client.feed(res(CMD.JOB_CREATED, b"H:2") + res(CMD.WORK_COMPLETE, b"H:2", payload))
    assert out == [("fg", payload, None)] and log == []
