"""Malformed server bytes (API.md 3, 8; PROTOCOL.md 3, 7, 8.5) through a
scripted TCP peer: each breakage ends the connection with its exact on_error
string after every pending callback got "disconnected" once; benign oddities
(unknown packet types, an unsolicited JOB_NOT_FOUND, WORK_FAIL's trailing NUL,
mixed CRLF/LF admin framing) leave it working. gearmand never sends such
bytes on purpose, hence the fake server (STYLE.md 5)."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearman_ev import MAX_PACKET, Gearman, ev
from tests.conftest import run_until
from tests.refproto import encode_request as req
from tests.refproto import encode_response as res

ECHO_RES, JOB_CREATED, WORK_FAIL, WORK_COMPLETE, ERROR = 17, 8, 14, 13, 19

#: Connection-level on_error strings a malformed stream may end with (API.md 3).
STREAM_ERRORS = {"invalid response magic", "response packet too large",
                 "unexpected admin response", "connection closed by server"}


class Recorder:
    """Every callback, on_error and on_disconnect in the order they fired."""

    def __init__(self):
        self.log = []

    def cb(self, name):
        return lambda result, err: self.log.append((name, result, err))

    def on_error(self, err):
        self.log.append(("error", err))

    def on_disconnect(self):
        self.log.append(("disconnect",))

    @property
    def errors(self):
        return [e[1] for e in self.log if e[0] == "error"]

    def fired(self, name):
        return [e for e in self.log if e[0] == name]


def connect(loop, srv, rec, **kw):
    return Gearman(srv.host, srv.port, loop=loop, on_error=rec.on_error,
                   on_disconnect=rec.on_disconnect, **kw)


# Two requests whose callbacks a broken stream must answer with "disconnected".
TWO_REQUESTS = req(16, b"ping") + req(7, b"fn", b"", b"work")


def send_two(g, rec):
    g.echo(b"ping", rec.cb("echo"))
    g.submit_job("fn", b"work", rec.cb("job"))


def broken_by(loop, fake_server, rec, reply, wait_eof=True):  # noqa: F811
    """Send two requests; the peer answers ``reply``; wait for on_error."""
    script = [("recv", len(TWO_REQUESTS)), ("send", reply)] + ([("eof",)] if wait_eof else [])
    srv = fake_server(*script)
    g = connect(loop, srv, rec)
    send_two(g, rec)
    run_until(loop, lambda: rec.errors, what="on_error")
    assert srv.finished.wait(5), "the peer did not see the client close"
    assert bytes(srv.received) == TWO_REQUESTS
    assert not g.is_connected and (g.pending_count, g.active_count) == (0, 0)
    return g


@pytest.mark.parametrize("magic", [b"\0REQ", b"\0XYZ"])
def test_bad_magic(loop, fake_server, magic):  # noqa: F811
    rec = Recorder()
    broken_by(loop, fake_server, rec, magic + struct.pack(">II", ECHO_RES, 4) + b"ping")
    # Drained first, then on_disconnect, then the reason (API.md 8).
    assert rec.log == [("echo", None, "disconnected"), ("job", None, "disconnected"),
                       ("disconnect",), ("error", "invalid response magic")]


@pytest.mark.parametrize("size", [MAX_PACKET + 1, 0xFFFFFFFF])
def test_declared_length_over_cap(loop, fake_server, size):  # noqa: F811
    rec = Recorder()
    # Only the header is sent: the client must refuse before waiting for a body.
    broken_by(loop, fake_server, rec, b"\0RES" + struct.pack(">II", ECHO_RES, size))
    assert rec.log == [("echo", None, "disconnected"), ("job", None, "disconnected"),
                       ("disconnect",), ("error", "response packet too large")]


def test_text_without_admin_request(loop, fake_server):  # noqa: F811
    rec = Recorder()
    broken_by(loop, fake_server, rec, b"OK\r\n")
    assert rec.log == [("echo", None, "disconnected"), ("job", None, "disconnected"),
                       ("disconnect",), ("error", "unexpected admin response")]


@pytest.mark.parametrize("cut", [1, 5, 12, 15], ids=lambda c: f"after{c}bytes")
def test_server_closes_mid_packet(loop, fake_server, cut):  # noqa: F811
    rec = Recorder()
    broken_by(loop, fake_server, rec, res(ECHO_RES, b"ping")[:cut], wait_eof=False)
    assert rec.log == [("echo", None, "disconnected"), ("job", None, "disconnected"),
                       ("disconnect",), ("error", "connection closed by server")]


def test_reply_of_the_wrong_kind(loop, fake_server):  # noqa: F811
    rec = Recorder()
    # JOB_CREATED while the FIFO head is the ECHO: reply matching is lost.
    broken_by(loop, fake_server, rec, res(JOB_CREATED, b"H:1"))
    assert rec.fired("echo") == [("echo", None, "disconnected")]
    assert rec.fired("job") == [("job", None, "disconnected")]
    assert rec.fired("disconnect") == [("disconnect",)]
    assert len(rec.errors) == 1 and isinstance(rec.errors[0], str) and rec.errors[0]


def test_unsolicited_job_not_found_answers_nothing(loop, fake_server):  # noqa: F811
    rec = Recorder()
    text = b"Job given in work result not found"
    srv = fake_server(("recv", len(req(16, b"ping"))),
                      ("send", res(ERROR, b"JOB_NOT_FOUND", text) + res(ECHO_RES, b"ping")),
                      ("eof",))
    g = connect(loop, srv, rec)
    g.echo(b"ping", rec.cb("echo"))
    run_until(loop, lambda: rec.fired("echo"), what="echo reply")
    assert rec.log == [("error", "JOB_NOT_FOUND: " + text.decode()), ("echo", b"ping", None)]
    assert g.is_connected
    g.disconnect()
    assert srv.finished.wait(5)


def test_work_fail_with_trailing_nul_fails_the_right_job(loop, fake_server):  # noqa: F811
    rec = Recorder()
    wire = req(7, b"fn", b"", b"one") + req(7, b"fn", b"", b"two")
    # gearmand's WORK_FAIL after a WORK_EXCEPTION carries "handle\0" (PROTOCOL.md 8.5).
    srv = fake_server(("recv", len(wire)),
                      ("send", res(JOB_CREATED, b"H:1") + res(JOB_CREATED, b"H:2")
                       + res(WORK_FAIL, b"H:2\0") + res(WORK_COMPLETE, b"H:1", b"done")),
                      ("eof",))
    g = connect(loop, srv, rec)
    g.submit_job("fn", b"one", rec.cb("one"))
    g.submit_job("fn", b"two", rec.cb("two"))
    run_until(loop, lambda: rec.fired("one") and rec.fired("two"), what="both jobs")
    assert rec.log == [("two", None, "job failed"), ("one", b"done", None)]
    assert g.active_count == 0
    g.disconnect()


@pytest.mark.parametrize("ptype", [0, 1, 7, 43, 99, 0xFFFFFFFF])
@pytest.mark.parametrize("body", [b"", b"H:1\0x", b"\0\0\0"], ids=["empty", "handle", "nuls"])
def test_unknown_packet_types_are_ignored(loop, fake_server, ptype, body):  # noqa: F811
    rec = Recorder()
    # Type 0 is the decoder's text marker: a binary type 0 must not pass for text.
    odd = b"\0RES" + struct.pack(">II", ptype, len(body)) + body
    one = req(16, b"one")
    srv = fake_server(("recv", len(one)), ("send", odd + res(ECHO_RES, b"one") + odd),
                      ("recv", len(one)), ("send", res(ECHO_RES, b"two")), ("eof",))
    g = connect(loop, srv, rec)
    g.echo(b"one", rec.cb("one"))
    run_until(loop, lambda: rec.fired("one"), what="first echo")
    g.echo(b"two", rec.cb("two"))  # the connection keeps working
    run_until(loop, lambda: rec.fired("two"), what="second echo")
    assert rec.log == [("one", b"one", None), ("two", b"two", None)]
    g.disconnect()


# ===== Random garbage =====

def _packet(ptype, body):
    return b"\0RES" + struct.pack(">II", ptype, len(body)) + body


# Pieces of a hostile stream. Well-formed packets here answer no request (work
# events for unknown handles, NOOP, unknown types, JOB_NOT_FOUND), so every
# request is left to the drain; a reply of the wrong kind is tested above.
CHUNKS = st.one_of(
    st.binary(max_size=24),
    st.builds(_packet, st.sampled_from([0, 6, 12, 13, 14, 25, 28, 29, 43, 99, 0xFFFFFFFF]),
              st.binary(max_size=16)),
    st.builds(lambda t: res(ERROR, b"JOB_NOT_FOUND", t), st.binary(max_size=8)),
    st.just(b"\0RES" + struct.pack(">II", ECHO_RES, MAX_PACKET + 1)),
    st.sampled_from([b"OK\r\n", b".\n", b"\0RE", b"\0"]),
)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.lists(CHUNKS, max_size=6).map(b"".join))
def test_random_garbage(fake_server, stream):  # noqa: F811
    loop = ev.Loop()  # each example on its own loop and its own peer connection
    rec = Recorder()
    wire = TWO_REQUESTS + req(18, b"fn", b"", b"bg")
    srv = fake_server(("recv", len(wire)), ("send", stream))  # then closes
    g = connect(loop, srv, rec)
    send_two(g, rec)
    g.submit_job_bg("fn", b"bg", rec.cb("bg"))
    run_until(loop, lambda: rec.errors and rec.errors[-1] in STREAM_ERRORS,
              what=f"the end of {stream!r}")
    for name in ("echo", "job", "bg"):
        assert rec.fired(name) == [(name, None, "disconnected")]
    assert rec.fired("disconnect") == [("disconnect",)]
    assert all(e.startswith("JOB_NOT_FOUND: ") for e in rec.errors[:-1])
    assert not g.is_connected
    srv.close()


# ===== Admin text framing (PROTOCOL.md 7) =====

ADMIN = [  # command, what gearmand 1.1 may send, the (result, err) it becomes
    ("maxqueue fn 1", b"OK\r\n", ("OK", None)),
    ("version", b"OK 1.1.20+ds\n", ("OK 1.1.20+ds", None)),
    ("status", b"fn\t1\t0\t0\r\ngn\t0\t0\t1\n.\r\n", ("fn\t1\t0\t0\ngn\t0\t0\t1\n", None)),
    ("workers", b"30 127.0.0.1 - : fn\r\n.\n", ("30 127.0.0.1 - : fn\n", None)),
    ("show jobs", b".\r\n", ("", None)),
    # An ECHO marker follows "show unique jobs": its reply ends the listing.
    ("show unique jobs", b"\r\nu1\n.\n" + res(ECHO_RES, b""), ("\nu1\n", None)),
    ("nope", b"ERR UNKNOWN_COMMAND Unknown+server+commandnope\r\n",
     (None, "ERR UNKNOWN_COMMAND Unknown+server+commandnope")),
]


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_admin_text_in_mixed_line_endings(loop, fake_server, split):  # noqa: F811
    sent = b"".join(cmd.encode() + b"\r\n" + (req(16, b"") if cmd == "show unique jobs" else b"")
                    for cmd, _, _ in ADMIN) + req(16, b"after")
    replies = b"".join(wire for _, wire, _ in ADMIN) + res(ECHO_RES, b"after")
    if split == "whole":
        steps = [("send", replies)]
    else:  # every boundary the framing could trip over
        steps = [s for i in range(len(replies))
                 for s in (("send", replies[i:i + 1]), ("sleep", 0.0005))]
    srv = fake_server(("recv", len(sent)), *steps, ("eof",))
    rec = Recorder()
    g = connect(loop, srv, rec)
    for i, (cmd, _, _) in enumerate(ADMIN):
        g.admin(cmd, rec.cb(i))
    g.echo(b"after", rec.cb("after"))  # binary framing resumes after the text
    run_until(loop, lambda: rec.fired("after"), what="all replies")
    assert rec.log == [(i, *want) for i, (_, _, want) in enumerate(ADMIN)] \
        + [("after", b"after", None)]
    g.disconnect()
