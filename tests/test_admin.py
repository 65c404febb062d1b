"""The admin text protocol (API.md 7) against the real gearmand: reply shapes,
ERR replies, maxqueue and its limit, local refusal of injection, and text and
binary requests interleaved on one connection."""
from __future__ import annotations

import re

import pytest

from gearman_ev import Gearman, GearmanError
from tests.conftest import ask, round_trip, run_until

# ===== Helpers =====

def block_lines(text):
    """A block reply: every line ends in LF, none holds CR; split to lines."""
    assert isinstance(text, str)
    assert "\r" not in text
    if text:
        assert text.endswith("\n")
    return text.splitlines()


def registered_worker(loop, new, fname, **kw):
    """A worker that CAN_DOs fname (creating the function at the server) but
    does not grab, so submitted jobs stay queued."""
    worker = new(**kw)
    worker.can_do(fname)
    round_trip(loop, worker)  # the CAN_DO has been processed
    return worker


# ===== Single-line replies =====

def test_server_version(loop, new):
    text, err = ask(loop, new().server_version)
    assert err is None
    assert re.fullmatch(r"OK \d+\.\d+\.\d+\S*", text), text  # e.g. "OK 1.1.20+ds"


def test_admin_version_matches_helper(loop, new):
    g = new()
    assert ask(loop, g.admin, "version") == ask(loop, g.server_version)


def test_unknown_command_is_err(loop, new):
    result, err = ask(loop, new().admin, "bogus")
    assert result is None
    assert err == "ERR UNKNOWN_COMMAND Unknown+server+commandbogus"  # CRLF stripped


def test_admin_takes_bytes(loop, new):
    text, err = ask(loop, new().admin, b"getpid")
    assert err is None and re.fullmatch(r"OK \d+", text)


@pytest.mark.parametrize("graceful", [False, True])
def test_shutdown_server_is_gone_in_1_1_20(loop, own_gearmand, graceful):
    # Own server: if shutdown ever worked it must not take the session server.
    g = Gearman(own_gearmand.host, own_gearmand.port, loop=loop)
    result, err = ask(loop, g.shutdown_server, graceful)
    assert result is None
    assert err.startswith("ERR UNKNOWN_COMMAND ") and err.endswith("shutdown")
    assert ask(loop, g.echo, b"alive") == (b"alive", None)
    g.disconnect()


# ===== Block replies =====

def test_server_status_after_can_do(loop, new, fname):
    registered_worker(loop, new, fname)
    text, err = ask(loop, new().server_status)
    assert err is None
    lines = block_lines(text)
    assert all(len(line.split("\t")) == 4 for line in lines), lines
    assert f"{fname}\t0\t0\t1" in lines


def test_server_status_counts_queued_jobs(loop, new, fname):
    registered_worker(loop, new, fname)
    client = new()
    for _ in range(2):
        assert ask(loop, client.submit_job_bg, fname, b"w")[1] is None
    text, _ = ask(loop, client.server_status)
    assert f"{fname}\t2\t0\t1" in block_lines(text)


def test_server_workers(loop, new, fname):
    registered_worker(loop, new, fname, client_id="wid-" + str(id(loop)))
    text, err = ask(loop, new().server_workers)
    assert err is None
    lines = block_lines(text)
    mine = [line for line in lines if f" wid-{id(loop)} :" in line]
    assert len(mine) == 1
    assert mine[0].split(" : ", 1)[1].split() == [fname]
    # Every connection is listed, the asking one too (with no functions).
    assert len(lines) >= 2


def test_show_jobs(loop, new, fname):
    client = new()
    handle, err = ask(loop, client.submit_job_bg, fname, b"w")
    assert err is None
    text, err = ask(loop, client.admin, "show jobs")
    assert err is None
    rows = [line.split("\t") for line in block_lines(text)]
    assert all(len(row) == 4 for row in rows), rows  # HANDLE RETRIES IGNORED QUEUED
    assert handle in [row[0] for row in rows]


def test_show_unique_jobs(loop, new, fname):
    client = new()
    unique = "su-" + fname[-50:]
    assert ask(loop, client.submit_job_bg, fname, b"w", unique=unique)[1] is None
    text, err = ask(loop, client.admin, "SHOW UNIQUE JOBS")  # command words: any case
    assert err is None
    assert unique in block_lines(text)


def test_empty_block_is_empty_string(loop, own_gearmand):
    # A fresh server of our own has no functions: "status" is just ".\n".
    g = Gearman(own_gearmand.host, own_gearmand.port, loop=loop)
    assert ask(loop, g.server_status) == ("", None)
    assert ask(loop, g.admin, "prioritystatus") == ("", None)
    g.disconnect()


@pytest.mark.parametrize("command, block_line", [
    ("status", "{f}\t0\t0\t1"),
    ("STATUS", "{f}\t0\t0\t1"),
    ("status extra words", "{f}\t0\t0\t1"),
    ("status ", "{f}\t0\t0\t1"),
    ("workers x", " : {f}"),
    ("prioritystatus 1", "{f}\t0\t0\t0\t1"),
    ("show  jobs", None),
], ids=["status", "upper-case", "extra-words", "trailing-space", "workers-extra",
        "prioritystatus-extra", "double-space"])
def test_block_reply_framing(loop, new, fname, command, block_line):
    # gearmand answers status/workers/prioritystatus with a block whatever
    # words follow (and splits on spaces only): a block framed as one line
    # would leave its other lines to be misread as the next replies.
    registered_worker(loop, new, fname)
    g = new()
    out = []
    g.admin(command, lambda r, e: out.append((r, e)))
    g.echo(b"after", lambda r, e: out.append((r, e)))
    run_until(loop, lambda: len(out) == 2, what="block and echo replies")
    text, err = out[0]
    assert err is None
    lines = block_lines(text)
    if block_line is not None:
        assert any(block_line.format(f=fname) in line for line in lines), lines
    assert out[1] == (b"after", None)


@pytest.mark.parametrize("command, err", [
    ("show jobs x", "ERR UNKNOWN_SHOW_ARGUMENTS"),
    ("show unique", "ERR UNKNOWN_SHOW_ARGUMENTS"),
    ("show", "ERR UNKNOWN_COMMAND Unknown+server+commandshow"),
    ("status\t", "ERR UNKNOWN_COMMAND Unknown+server+commandstatus\t"),
    (" status", "ERR UNKNOWN_COMMAND Unknown+server+command"),
], ids=["show-jobs-extra", "show-unique", "show", "status-tab", "leading-space"])
def test_err_line_where_a_block_might_be_expected(loop, new, command, err):
    g = new()
    out = []
    g.admin(command, lambda r, e: out.append((r, e)))
    g.echo(b"after", lambda r, e: out.append((r, e)))
    run_until(loop, lambda: len(out) == 2, what="ERR and echo replies")
    assert out == [(None, err), (b"after", None)]


# ===== maxqueue =====

def test_maxqueue_limits_submissions(loop, new, fname):
    registered_worker(loop, new, fname)  # maxqueue only touches existing functions
    client = new()
    assert ask(loop, client.maxqueue, fname, 1) == ("OK", None)
    unique = "mq-" + fname[-50:]
    first, err = ask(loop, client.submit_job_bg, fname, b"1", unique=unique)
    assert err is None
    full = "QUEUE_ERROR: Job queue is full"
    assert ask(loop, client.submit_job_bg, fname, b"2") == (None, full)
    assert ask(loop, client.submit_job_high_bg, fname, b"3") == (None, full)
    # A foreground submission is refused in place of JOB_CREATED: nothing active.
    assert ask(loop, client.submit_job, fname, b"4") == (None, full)
    assert client.active_count == 0 and client.pending_count == 0
    # Coalescing onto the queued job is still accepted.
    assert ask(loop, client.submit_job_bg, fname, b"5", unique=unique) == (first, None)
    # Size 0 lifts the limit.
    assert ask(loop, client.maxqueue, fname.encode(), 0) == ("OK", None)
    assert ask(loop, client.submit_job_bg, fname, b"6")[1] is None


@pytest.mark.parametrize("func, size, exc", [
    ("a\nb", 1, ValueError),
    ("a\rb", 1, ValueError),
    ("a b", 1, ValueError),
    ("a\tb", 1, ValueError),
    ("", 1, ValueError),
    ("f\0", 1, ValueError),
    ("f", -1, ValueError),
    ("f", True, TypeError),
    ("f", 1.0, TypeError),
    ("f", "1", TypeError),
    ("f", None, TypeError),
    (5, 1, TypeError),
    (["f"], 1, TypeError),
])
def test_maxqueue_refuses_injection(loop, new, func, size, exc):
    g = new()
    with pytest.raises(exc):
        g.maxqueue(func, size)
    assert g.waiting_count == 0 and g.pending_count == 0
    # Also before the "not connected" check.
    with pytest.raises(exc):
        Gearman(loop=loop).maxqueue(func, size)


@pytest.mark.parametrize("command, exc", [
    ("status\r\nshutdown", ValueError),
    ("version\n", ValueError),
    ("a\rb", ValueError),
    (b"workers\nversion", ValueError),
    (5, TypeError),
    (None, TypeError),
])
def test_admin_refuses_line_breaks(loop, new, command, exc):
    g = new()
    with pytest.raises(exc):
        g.admin(command)
    assert g.waiting_count == 0 and g.pending_count == 0


def test_admin_cb_must_be_callable(loop, new):
    with pytest.raises(TypeError):
        new().admin("version", "nope")
    with pytest.raises(TypeError):
        Gearman(loop=loop).server_version(1)


def test_admin_on_unconfigured_object(loop):
    with pytest.raises(GearmanError, match="^not connected$"):
        Gearman(loop=loop).admin("version")


# ===== Interleaving =====

def test_admin_and_binary_interleaved(loop, new, fname):
    registered_worker(loop, new, fname, client_id="ilv-" + str(id(loop)))
    g = new()
    round_trip(loop, g)
    out = []

    def rec(label):
        return lambda result, err: out.append((label, result, err))
    # One burst, one write: replies must reach the right callbacks in order.
    g.echo(b"e1", rec("echo1"))
    g.server_status(rec("status"))
    g.submit_job_bg(fname, b"w", rec("bg"))
    g.server_version(rec("version"))
    g.get_status("H:t:999999999", rec("get_status"))
    g.server_workers(rec("workers"))
    g.admin("bogus", rec("bogus"))
    g.echo(b"e2", rec("echo2"))
    g.admin("show jobs", rec("show jobs"))
    g.get_status_unique("none-" + fname[-40:], rec("status_unique"))
    g.admin("getpid", rec("getpid"))
    g.echo(b"", rec("echo3"))
    assert g.pending_count == 12
    run_until(loop, lambda: len(out) == 12, what="twelve replies")
    assert [label for label, _, _ in out] == [
        "echo1", "status", "bg", "version", "get_status", "workers", "bogus", "echo2",
        "show jobs", "status_unique", "getpid", "echo3"]
    got = {label: (result, err) for label, result, err in out}
    assert got["echo1"] == (b"e1", None)
    assert f"{fname}\t0\t0\t1" in block_lines(got["status"][0])
    handle, err = got["bg"]
    assert err is None and handle.startswith("H:t:")
    assert re.fullmatch(r"OK \d+\.\d+\.\d+\S*", got["version"][0])
    assert got["get_status"] == ({"handle": "H:t:999999999", "known": False,
                                  "running": False, "numerator": "0",
                                  "denominator": "0"}, None)
    assert any(f"ilv-{id(loop)} : {fname}" in line
               for line in block_lines(got["workers"][0]))
    assert got["bogus"] == (None, "ERR UNKNOWN_COMMAND Unknown+server+commandbogus")
    assert got["echo2"] == (b"e2", None)
    # The job submitted earlier in the burst is already listed.
    assert handle in [line.split("\t")[0] for line in block_lines(got["show jobs"][0])]
    assert got["status_unique"][0]["known"] is False
    assert re.fullmatch(r"OK \d+", got["getpid"][0])
    assert got["echo3"] == (b"", None)
    assert g.pending_count == 0


def test_admin_during_worker_traffic(loop, new, fname):
    # NOOPs and work events arrive between replies while admin replies are due.
    worker = new()
    worker.register_function(fname, lambda job: job.workload[::-1])
    worker.work()
    client = new()
    results, texts = [], []
    for i in range(20):
        client.submit_job(fname, f"{i:02d}", lambda r, e: results.append((r, e)))
        client.server_status(lambda r, e: texts.append((r, e)))
        worker.server_version(lambda r, e: texts.append((r, e)))
    run_until(loop, lambda: len(results) == 20 and len(texts) == 40, what="all replies")
    assert sorted(results) == sorted((f"{i:02d}"[::-1].encode(), None) for i in range(20))
    assert all(err is None for _, err in texts)
    assert sum(1 for t, _ in texts if t.startswith("OK ")) == 20
    assert sum(1 for t, _ in texts if f"{fname}\t" in t) == 20
