"""The ``gearman-ev`` command line (API.md 13), run as a user runs it: a
separate process (``python -m gearman_ev``, and the installed console script)
against the real gearmand.

Every subprocess and every wait here is bounded. Workers that would serve
forever are stopped by --max-jobs or a signal, and killed at teardown
otherwise. Job commands that must overlap or wait meet at files in tmp_path,
each wait in them bounded too, so no assertion depends on timing.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from gearman_ev import Gearman, ev
from gearman_ev.testing import LocalGearmand, free_port
from tests.conftest import ask, run_until

CLI = [sys.executable, "-m", "gearman_ev"]
SCRIPT = Path(sys.executable).parent / "gearman-ev"
USAGE = b"usage: gearman-ev"

#: Workloads with every byte value, NULs in a row, and no trailing newline.
BINARY = bytes(range(256)) * 64 + b"\0\0\0end\0"


# ===== Helpers =====

def clean_env(**extra):
    env = dict(os.environ)
    env.pop("GEARMAN_SERVERS", None)
    env.update(extra)
    return env


def cli(server, *args, input=b"", timeout=30, env=None):
    """Run ``gearman-ev -s SERVER args...`` to its end; stdout/stderr as bytes."""
    where = ["-s", server.address] if server is not None else []
    return subprocess.run(CLI + where + list(args), input=input, capture_output=True,
                          timeout=timeout, env=env or clean_env())


def ok(proc):
    """The run exited 0 with nothing on stderr; its stdout."""
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr == b"", proc.stderr
    return proc.stdout


def wait_for(predicate, timeout=10.0, what=None):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def functions(server):
    """The server's status, {function: (queued, running, workers)}, asked with
    the library (the CLI's own parsing is what is under test)."""
    loop = ev.Loop()
    g = Gearman(server.host, server.port, loop=loop)
    text, err = ask(loop, g.server_status)
    g.disconnect()
    assert err is None, err
    rows = {}
    for line in text.splitlines():
        func, total, running, workers = line.split("\t")
        rows[func] = (int(total) - int(running), int(running), int(workers))
    return rows


def queue_bg(server, func, workloads):
    """Queue background jobs with the library; their handles."""
    loop = ev.Loop()
    g = Gearman(server.host, server.port, loop=loop)
    handles = []
    for workload in workloads:
        g.submit_job_bg(func, workload, lambda handle, err: handles.append((handle, err)))
    run_until(loop, lambda: len(handles) == len(workloads), what="JOB_CREATED")
    g.disconnect()
    assert all(err is None for _, err in handles), handles
    return [handle for handle, _ in handles]


def read_until(fd, predicate, timeout=10.0, what=None, buf=b""):
    """Read fd (a pipe or a pty master) until predicate(all bytes read) holds."""
    deadline = time.monotonic() + timeout
    while not predicate(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out waiting for {what or predicate}; got {buf[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: a pty whose child has gone
                chunk = b""
            if not chunk:
                pytest.fail(f"EOF waiting for {what or predicate}; got {buf[-2000:]!r}")
            buf += chunk
    return buf


@pytest.fixture
def workers():
    """Start ``gearman-ev work`` processes; any still running at teardown is
    killed (by its own handle) and reaped."""
    started = []

    def start(server_args, *args, new_session=False):
        proc = subprocess.Popen(CLI + list(server_args) + ["work", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=clean_env(), start_new_session=new_session)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def registered(server, func, count=1):
    wait_for(lambda: functions(server).get(func, (0, 0, 0))[2] == count,
             what=f"{count} worker(s) for {func}")


def write_script(path, text):
    path.write_text(text)
    return str(path)


# ===== The program itself =====

@pytest.mark.parametrize("command", [
    [], ["submit"], ["work"], ["status"], ["workers"], ["version"], ["maxqueue"],
    ["shutdown"], ["ping"], ["top"]])
def test_help_everywhere(command):
    out = ok(cli(None, *command, "--help"))
    assert out.startswith(b" ".join([USAGE] + [c.encode() for c in command]))


def test_console_script_is_python_m(gearmand):
    assert SCRIPT.exists(), "the gearman-ev console script is not installed"
    via_script = subprocess.run([str(SCRIPT), "-s", gearmand.address, "version"],
                                capture_output=True, timeout=30, env=clean_env())
    assert ok(via_script) == ok(cli(gearmand, "version"))
    assert re.fullmatch(rb"\d+\.\d+\S*\n", via_script.stdout)


@pytest.mark.parametrize("args, complaint", [
    ([], b"required: COMMAND"),
    (["nope"], b"invalid choice"),
    (["submit"], b"required: FUNCTION"),
    (["submit", "f", "x", "--high", "--low"], b"not allowed with"),
    (["submit", "f", "x", "-n", "0"], b"must be 1 or more"),
    (["submit", "f", "x", "--timeout", "-1"], b"must be more than 0"),
    (["submit", "bad name", "x"], b"whitespace"),
    (["work"], b"required: FUNCTION"),
    (["work", "f", "--concurrency", "0"], b"must be 1 or more"),
    (["work", "f", "--max-jobs", "x"], b"not a whole number"),
    (["work", "f", "cat"], b"put the command after --"),
    (["status", "--bogus"], b"unrecognized arguments"),
    (["maxqueue", "f"], b"required: N"),
    (["maxqueue", "f", "-3"], b"must be 0 or more"),
    (["top", "--interval", "0"], b"must be more than 0"),
    (["-s", "127.0.0.1:99999", "status"], b"port must be 1-65535"),
    (["-s", "[::1", "status"], b"expected [v6addr]:port"),
    (["status", "-s", "unix:"], b"needs a path"),
])
def test_bad_usage_exits_2_with_a_usage_line(args, complaint):
    proc = cli(None, *args, timeout=30)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(USAGE), proc.stderr
    assert complaint in proc.stderr, proc.stderr
    assert proc.stdout == b""


def test_bad_gearman_servers_is_bad_usage():
    proc = cli(None, "version", env=clean_env(GEARMAN_SERVERS="127.0.0.1:0"))
    assert proc.returncode == 2 and USAGE in proc.stderr and b"port" in proc.stderr


# ===== Servers: -s, GEARMAN_SERVERS, errors =====

def test_gearman_servers_and_s_option(gearmand):
    dead = f"127.0.0.1:{free_port()}"
    from_env = cli(None, "version", env=clean_env(GEARMAN_SERVERS=f" {gearmand.address} "))
    assert ok(from_env).startswith(b"1.")
    # -s wins over the environment.
    proc = cli(None, "-s", gearmand.address, "version",
               env=clean_env(GEARMAN_SERVERS=dead))
    assert ok(proc) == from_env.stdout
    # ...given before or after the command name.
    assert ok(cli(None, "version", "-s", gearmand.address)) == from_env.stdout


def test_unreachable_server_exits_1_naming_it():
    dead = f"127.0.0.1:{free_port()}"
    for args in (["version"], ["status"], ["submit", "f", "x"], ["top", "--once"]):
        proc = cli(None, "-s", dead, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.startswith(f"gearman-ev: {dead}: connect: ".encode()), proc.stderr


# ===== submit and work =====

def test_echo_worker_argument_and_stdin(gearmand, workers, fname):
    workers(["-s", gearmand.address], fname)  # no COMMAND: an echo worker
    assert ok(cli(gearmand, "submit", fname, "hello")) == b"hello"
    assert ok(cli(gearmand, "submit", fname, input=BINARY)) == BINARY
    # An argument's own bytes, not UTF-8: as the shell passed them.
    proc = subprocess.run(CLI + [b"-s", gearmand.address.encode(), b"submit",
                                 fname.encode(), b"caf\xe9 \xff"],
                          capture_output=True, timeout=30, env=clean_env())
    assert ok(proc) == b"caf\xe9 \xff"
    assert ok(cli(gearmand, "submit", fname, input=b"")) == b""


def test_binary_round_trip_through_cat(gearmand, workers, fname):
    workers(["-s", gearmand.address], fname, "--", "cat")
    assert ok(cli(gearmand, "submit", fname, input=BINARY)) == BINARY
    # Larger than a pipe's buffer both ways: the workload is fed to cat
    # while its output is read, from the loop.
    big = os.urandom(3 * 1024 * 1024) + b"\0" * 1000
    assert ok(cli(gearmand, "submit", fname, input=big, timeout=60)) == big


def test_command_arguments_after_double_dash(gearmand, workers, fname):
    # Options after -- belong to the command, not to gearman-ev.
    workers(["-s", gearmand.address], "--concurrency", "2", fname, "--",
            sys.executable, "-c", "import sys; sys.stdout.write('--n ' + sys.stdin.read())",
            "--n", "-s")
    assert ok(cli(gearmand, "submit", fname, "x")) == b"--n x"


def test_submit_n_pipelined_one_result_per_line(gearmand, workers, fname):
    workers(["-s", gearmand.address], "--concurrency", "4", fname, "--", "cat")
    assert ok(cli(gearmand, "submit", "-n", "40", fname, "line")) == b"line\n" * 40


def test_bg_prints_handles_in_submission_order(gearmand, fname):
    out = ok(cli(gearmand, "submit", "--bg", fname, "later"))
    assert re.fullmatch(rb"H:t:\d+\n", out), out
    assert functions(gearmand)[fname] == (1, 0, 0)
    out = ok(cli(gearmand, "submit", "--bg", "-n", "25", fname, "x"))
    numbers = [int(line.rsplit(b":", 1)[1]) for line in out.splitlines()]
    # gearmand numbers handles as the submissions arrive: line K is job K.
    assert len(numbers) == 25 and numbers == sorted(numbers) and len(set(numbers)) == 25
    assert functions(gearmand)[fname] == (26, 0, 0)


def test_reader_going_away_ends_quietly(gearmand, workers, fname):
    workers(["-s", gearmand.address], "--concurrency", "8", fname)
    # 200 KB of results, more than a pipe holds: the reader closes after the first.
    proc = subprocess.Popen(CLI + ["-s", gearmand.address, "submit", "-n", "2000", fname,
                                   "x" * 99], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=clean_env())
    assert read_until(proc.stdout.fileno(), lambda b: b, what="some output").startswith(b"x")
    proc.stdout.close()
    assert proc.wait(timeout=30) == 1
    assert proc.stderr.read() == b""  # no traceback, no complaint
    proc.stderr.close()


def test_high_and_low_priority(gearmand, workers, fname, tmp_path):
    log = tmp_path / "order"
    for args in (["--low", fname, "low"], [fname, "normal"], ["--high", fname, "high"]):
        ok(cli(gearmand, "submit", "--bg", *args))
    worker = workers(["-s", gearmand.address], "--max-jobs", "3", fname, "--",
                     "sh", "-c", f'cat >> "{log}"; echo >> "{log}"')
    assert worker.wait(timeout=30) == 0
    assert log.read_text().split() == ["high", "normal", "low"]
    # Foreground jobs take the same flags.
    workers(["-s", gearmand.address], fname)
    assert ok(cli(gearmand, "submit", "--high", fname, "h")) == b"h"
    assert ok(cli(gearmand, "submit", "--low", fname, "l")) == b"l"


def test_unique_coalesces(gearmand, fname):
    first = ok(cli(gearmand, "submit", "--bg", "--unique", "u-1", fname, "a"))
    again = ok(cli(gearmand, "submit", "--bg", "--unique", "u-1", fname, "b"))
    assert first == again
    assert functions(gearmand)[fname] == (1, 0, 0)


def test_timeout_exits_1(gearmand, fname):
    proc = cli(gearmand, "submit", "--timeout", "0.3", fname, "nobody serves this")
    assert proc.returncode == 1
    assert proc.stderr == b"gearman-ev: job timeout\n"
    assert proc.stdout == b""


def test_failing_command_fails_the_job(gearmand, workers, fname):
    worker = workers(["-s", gearmand.address], fname, "--", "sh", "-c", "cat; exit 3")
    proc = cli(gearmand, "submit", fname, "x")
    assert proc.returncode == 1
    assert proc.stderr == b"gearman-ev: job failed\n"
    proc = cli(gearmand, "submit", "-n", "3", fname, "x")
    assert proc.returncode == 1
    assert proc.stdout == b"\n\n\n"  # line K stays job K
    assert proc.stderr == b"gearman-ev: job failed (3 of 3 jobs)\n"
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=20)
    assert worker.returncode == 0
    assert re.search(rb"job H:t:\d+: sh ended with exit status 3", err), err


def test_missing_command_fails_the_job(gearmand, workers, fname):
    worker = workers(["-s", gearmand.address], fname, "--", "/nonexistent/command")
    assert cli(gearmand, "submit", fname, "x").returncode == 1
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=20)
    assert b"cannot run '/nonexistent/command'" in err


def test_command_that_ignores_its_stdin(gearmand, workers, fname):
    # echo never reads: the workload meets a closed pipe, the job still
    # completes with what it printed (its exit status decides).
    workers(["-s", gearmand.address], fname, "--", "echo", "fixed")
    assert ok(cli(gearmand, "submit", fname, input=os.urandom(512 * 1024))) == b"fixed\n"


def test_stream_sends_work_data(gearmand, workers, fname, loop):
    workers(["-s", gearmand.address], "--stream", fname, "--",
            "sh", "-c", "printf 'first '; sleep 0.2; cat")
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    chunks, done = [], []
    g.submit_job(fname, b"second", lambda result, err: done.append((result, err)),
                 on_data=chunks.append)
    run_until(loop, lambda: done, timeout=20, what="the streamed job")
    g.disconnect()
    assert done == [(b"", None)]  # everything came as WORK_DATA
    assert b"".join(chunks) == b"first second"
    # submit prints the data as it comes, then the (empty) result.
    assert ok(cli(gearmand, "submit", fname, "x")) == b"first x"
    assert ok(cli(gearmand, "submit", "-n", "2", fname, "y")) == b"first y\n" * 2


def test_stream_echo_worker(gearmand, workers, fname):
    workers(["-s", gearmand.address], "--stream", fname)
    assert ok(cli(gearmand, "submit", fname, input=BINARY)) == BINARY


WORKER_WITH_EVENTS = """\
import sys
from gearman_ev import Gearman, ev

loop = ev.default_loop()
g = Gearman(sys.argv[1], int(sys.argv[2]), loop=loop, exceptions=True)

def job(j):
    if j.workload == b"boom":
        raise RuntimeError("boom: bad input")
    j.status(1, 2)
    j.warning(b"careful")
    j.send_data(b"part:")
    return b"done"

g.register_function(sys.argv[3], job)
g.work()
loop.start()
"""


def test_status_warning_and_exception(gearmand, fname, tmp_path):
    script = write_script(tmp_path / "worker.py", WORKER_WITH_EVENTS)
    worker = subprocess.Popen([sys.executable, script, gearmand.host, str(gearmand.port), fname],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc = cli(gearmand, "submit", "--status", fname, "x")
        assert proc.returncode == 0
        assert proc.stdout == b"part:done"
        assert proc.stderr == b"status: 1/2\nwarning: careful\n"
        # Without --status, progress is not printed; warnings always are.
        proc = cli(gearmand, "submit", fname, "x")
        assert proc.stderr == b"warning: careful\n"
        proc = cli(gearmand, "submit", "-n", "2", "--status", fname, "x")
        assert proc.stdout == b"part:done\n" * 2
        assert sorted(proc.stderr.splitlines()) == [
            b"job 1 status: 1/2", b"job 1 warning: careful",
            b"job 2 status: 1/2", b"job 2 warning: careful"]
        proc = cli(gearmand, "submit", fname, "boom")
        assert proc.returncode == 1
        assert proc.stderr == b"gearman-ev: job raised an exception: boom: bad input\n"
    finally:
        worker.kill()
        worker.wait(timeout=10)


JOB_MEETING_FOUR = """\
# Note the start, wait (at most 10 s) until 4 jobs have started, note the end.
echo start >> "$1"
i=0
while [ "$(grep -c start "$1")" -lt 4 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
cat
echo end >> "$1"
"""


def test_concurrency_runs_four_at_once(gearmand, workers, fname, tmp_path):
    script = write_script(tmp_path / "job.sh", JOB_MEETING_FOUR)
    log = tmp_path / "log"
    log.touch()
    workers(["-s", gearmand.address], "--concurrency", "4", fname, "--", "sh", script, str(log))
    assert ok(cli(gearmand, "submit", "-n", "8", fname, "r", timeout=60)) == b"r\n" * 8
    running = peak = 0
    events = log.read_text().split()
    for event in events:
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert events.count("start") == events.count("end") == 8
    # A job writes "end" before it exits and the next starts only after an
    # exit, so this is the true peak: the cap, reached.
    assert peak == 4, events


def test_max_jobs_takes_exactly_n(gearmand, workers, fname, tmp_path):
    queue_bg(gearmand, fname, [b"%d" % i for i in range(7)])
    # One file per job: two run at once, so a shared file would interleave.
    worker = workers(["-s", gearmand.address], "--concurrency", "2", "--max-jobs", "3",
                     fname, "--", "sh", "-c", f'cat > "{tmp_path}/job.$$"')
    assert worker.wait(timeout=30) == 0
    assert len(list(tmp_path.glob("job.*"))) == 3
    assert functions(gearmand)[fname] == (4, 0, 0)  # the rest untouched, nothing requeued


JOB_WAITING_FOR_RELEASE = """\
# Note the start, wait (at most 20 s) for the release file, note the end.
echo start >> "$1"
i=0
while [ ! -e "$2" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
echo end >> "$1"
cat
"""


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_signal_finishes_running_jobs_then_exits(gearmand, workers, fname, tmp_path, how):
    script = write_script(tmp_path / "job.sh", JOB_WAITING_FOR_RELEASE)
    log, release = tmp_path / "log", tmp_path / "release"
    log.touch()
    queue_bg(gearmand, fname, [b"a", b"b", b"c", b"d"])
    worker = workers(["-s", gearmand.address], "--concurrency", "2", fname, "--",
                     "sh", script, str(log), str(release), new_session=True)
    wait_for(lambda: log.read_text().count("start") == 2, what="2 jobs running")
    if how == "SIGTERM":
        worker.send_signal(signal.SIGTERM)
    else:
        # Ctrl-C at a terminal signals the whole foreground process group.
        os.killpg(worker.pid, signal.SIGINT)
    name = "SIGTERM" if how == "SIGTERM" else "SIGINT"
    said = read_until(worker.stderr.fileno(), lambda b: b.endswith(b"\n"), what="the worker")
    assert said == f"gearman-ev: {name}: finishing 2 job(s), then exiting\n".encode()
    # Nothing lets the jobs end but the release file: the worker must wait.
    time.sleep(0.3)
    assert worker.poll() is None, worker.communicate()
    assert functions(gearmand)[fname] == (2, 2, 1)  # still running both, none requeued
    release.touch()
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert err == b""
    assert log.read_text().split() == ["start", "start", "end", "end"]
    # The two that ran are done, not requeued; the other two were never taken.
    assert functions(gearmand)[fname] == (2, 0, 0)


def test_second_signal_stops_at_once(gearmand, workers, fname, tmp_path):
    script = write_script(tmp_path / "job.sh", JOB_WAITING_FOR_RELEASE)
    log, release = tmp_path / "log", tmp_path / "release"
    log.touch()
    queue_bg(gearmand, fname, [b"a", b"b", b"c"])
    worker = workers(["-s", gearmand.address], "--concurrency", "2", fname, "--",
                     "sh", script, str(log), str(release))
    wait_for(lambda: log.read_text().count("start") == 2, what="2 jobs running")
    worker.send_signal(signal.SIGTERM)
    read_until(worker.stderr.fileno(), lambda b: b"finishing" in b, what="the first signal")
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 1
    assert b"SIGTERM again: stopping now" in err
    # The killed jobs go back to the queue, for another worker.
    wait_for(lambda: functions(gearmand)[fname] == (3, 0, 0), what="the jobs requeued")
    release.touch()


def test_worker_rides_out_a_server_restart(own_gearmand, workers, fname):
    worker = workers(["-s", own_gearmand.address], fname, "--", "cat")
    registered(own_gearmand, fname)
    own_gearmand.restart()
    assert ok(cli(own_gearmand, "submit", fname, "after restart")) == b"after restart"
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=20)
    assert worker.returncode == 0
    assert b": connection closed by server\n" in err and b": connected\n" in err, err


def test_worker_stops_at_once_while_its_server_is_down(workers, fname):
    dead = f"127.0.0.1:{free_port()}"
    worker = workers(["-s", dead], fname, "--", "cat")
    said = read_until(worker.stderr.fileno(), lambda b: b.endswith(b"\n"), what="the worker")
    assert said == f"gearman-ev: {dead}: connect: Connection refused\n".encode()
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=20)
    assert worker.returncode == 0
    assert err == b""  # the refusals that follow are not said again


# ===== Several servers =====

def test_several_servers(gearmand, own_gearmand, workers, fname, tmp_path):
    both = ["-s", gearmand.address, "-s", own_gearmand.address]
    # submit spreads round-robin: jobs 1 and 3 to the first server, 2 and 4 to the second.
    out = ok(cli(None, *both, "submit", "--bg", "-n", "4", fname, "x"))
    assert len(out.splitlines()) == 4
    assert functions(gearmand)[fname] == (2, 0, 0)
    assert functions(own_gearmand)[fname] == (2, 0, 0)

    doc = json.loads(ok(cli(None, *both, "status", "--json")))
    assert list(doc) == [gearmand.address, own_gearmand.address]
    for rows in doc.values():
        assert {"function": fname, "queued": 2, "running": 0, "workers": 0} in rows
    plain = ok(cli(None, *both, "status")).decode()
    first, second = plain.split("\n\n")
    assert first.startswith(f"[{gearmand.address}]\nFUNCTION")
    assert second.startswith(f"[{own_gearmand.address}]\nFUNCTION")
    versions = json.loads(ok(cli(None, "-s", f"{gearmand.address},{own_gearmand.address}",
                                 "version", "--json")))
    assert list(versions) == [gearmand.address, own_gearmand.address]

    # work registers on every server and drains both.
    log = tmp_path / "log"
    worker = workers(both, "--max-jobs", "4", fname, "--",
                     "sh", "-c", f'cat >> "{log}"; echo >> "{log}"')
    assert worker.wait(timeout=30) == 0
    assert log.read_text().split() == ["x"] * 4
    assert functions(gearmand)[fname] == (0, 0, 0)
    assert functions(own_gearmand)[fname] == (0, 0, 0)

    # One server down: the others still answer, the exit status says it.
    own_gearmand.stop()
    proc = cli(None, *both, "version", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc[own_gearmand.address] is None and doc[gearmand.address].startswith("1.")
    assert proc.stderr.startswith(f"gearman-ev: {own_gearmand.address}: connect: ".encode())


# ===== Admin commands =====

def test_status_plain_and_json(gearmand, workers, fname):
    queue_bg(gearmand, fname, [b"1", b"2", b"3"])
    doc = json.loads(ok(cli(gearmand, "status", "--json")))
    assert list(doc) == [gearmand.address]
    assert {"function": fname, "queued": 3, "running": 0, "workers": 0} in doc[gearmand.address]
    lines = ok(cli(gearmand, "status")).decode().splitlines()
    assert lines[0].split() == ["FUNCTION", "QUEUED", "RUNNING", "WORKERS"]
    assert [fname, "3", "0", "0"] in [line.split() for line in lines]


def test_workers_plain_and_json(gearmand, workers, fname):
    workers(["-s", gearmand.address], fname)
    registered(gearmand, fname)
    plain = ok(cli(gearmand, "workers")).decode()
    assert re.search(rf"^\d+ 127\.0\.0\.1 - : {re.escape(fname)}$", plain, re.M), plain
    doc = json.loads(ok(cli(gearmand, "workers", "--json")))
    mine = [w for w in doc[gearmand.address] if fname in w["functions"]]
    assert len(mine) == 1
    assert mine[0]["address"] == "127.0.0.1" and mine[0]["client_id"] == "-"
    assert isinstance(mine[0]["fd"], int) and mine[0]["functions"] == [fname]


def test_version(gearmand):
    plain = ok(cli(gearmand, "version"))
    assert re.fullmatch(rb"1\.\d+\.\d+\S*\n", plain)
    assert json.loads(ok(cli(gearmand, "version", "--json"))) == {
        gearmand.address: plain.decode().strip()}


def test_maxqueue(gearmand, fname):
    ok(cli(gearmand, "submit", "--bg", fname, "1"))  # maxqueue only touches known functions
    assert ok(cli(gearmand, "maxqueue", fname, "1")) == b"OK\n"
    proc = cli(gearmand, "submit", "--bg", fname, "2")
    assert proc.returncode == 1
    assert proc.stderr == b"gearman-ev: QUEUE_ERROR: Job queue is full\n"
    assert ok(cli(gearmand, "maxqueue", fname, "0")) == b"OK\n"
    ok(cli(gearmand, "submit", "--bg", fname, "3"))


@pytest.mark.parametrize("graceful", [[], ["--graceful"]])
def test_shutdown_is_refused_by_gearmand_1_1_20(own_gearmand, graceful):
    proc = cli(own_gearmand, "shutdown", *graceful)
    assert proc.returncode == 1
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith(f"gearman-ev: {own_gearmand.address}: ERR UNKNOWN_COMMAND")
    assert "no shutdown command" in lines[1]
    assert ok(cli(own_gearmand, "ping"))  # still up


def test_ping(gearmand, own_gearmand):
    out = ok(cli(None, "-s", gearmand.address, "-s", own_gearmand.address, "ping")).decode()
    lines = out.splitlines()
    assert len(lines) == 2
    for line, server in zip(lines, (gearmand, own_gearmand)):
        assert re.fullmatch(rf"{re.escape(server.address)}: echo round trip \d+\.\d{{3}} ms", line)


# ===== top =====

def test_top_once(own_gearmand, fname):
    queue_bg(own_gearmand, fname, [b"1", b"2"])
    out = ok(cli(own_gearmand, "top", "--once")).decode()
    assert "\x1b" not in out
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["SERVER", "FUNCTION", "QUEUED", "RUNNING", "WORKERS", "JOBS/S"]
    assert [own_gearmand.address, fname, "2", "0", "0", "-"] in lines


def test_top_prints_plain_lines_when_not_a_terminal(own_gearmand, fname):
    queue_bg(own_gearmand, fname, [b"1", b"2", b"3"])
    proc = subprocess.Popen(CLI + ["-s", own_gearmand.address, "top", "--interval", "0.2"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        out = read_until(proc.stdout.fileno(), lambda b: b.count(b"JOBS/S") >= 3,
                         what="three polls")
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err == b""
    text = (out + rest).decode()
    assert "\x1b" not in text
    polls = [block for block in text.split("\n\n") if "JOBS/S" in block]
    assert polls[0].startswith("gearman-ev top  1 server  every 0.2s  ")
    rows = [[line.split() for line in block.splitlines() if fname in line] for block in polls]
    assert rows[0] == [[own_gearmand.address, fname, "3", "0", "0", "-"]]
    # From the second poll on, jobs/s from the one before: nothing moved.
    assert rows[1] == [[own_gearmand.address, fname, "3", "0", "0", "0.0"]]


def test_top_jobs_per_second_follows_the_queue(own_gearmand, workers, fname):
    proc = subprocess.Popen(CLI + ["-s", own_gearmand.address, "top", "--interval", "0.3"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    row = re.escape(fname).encode() + rb" +%d +0 +\d+ +(%s)"
    try:
        fd = proc.stdout.fileno()
        queue_bg(own_gearmand, fname, [b"x"] * 10)
        out = read_until(fd, lambda b: re.search(row % (10, rb"0\.0"), b),
                         what="two polls that saw 10 jobs")
        queue_bg(own_gearmand, fname, [b"x"] * 40)
        out = read_until(fd, lambda b: re.search(row % (50, rb"-\d+\.\d"), b),
                         what="a poll that saw the queue grow", buf=out)
        workers(["-s", own_gearmand.address], "--max-jobs", "50", fname)
        out = read_until(fd, lambda b: re.search(row % (0, rb"-?\d+\.\d"), b),
                         what="a poll that saw it drained", buf=out)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    # Growing: a negative rate; drained: a positive one.
    assert float(re.search(row % (50, rb"-?\d+\.\d"), out).group(1)) < 0
    assert float(re.search(row % (0, rb"-?\d+\.\d"), out).group(1)) > 0


def test_top_ends_quietly_when_its_reader_goes_away(own_gearmand):
    proc = subprocess.Popen(CLI + ["-s", own_gearmand.address, "top", "--interval", "0.05"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    read_until(proc.stdout.fileno(), lambda b: b"JOBS/S" in b, what="a first table")
    proc.stdout.close()
    assert proc.wait(timeout=30) == 1
    assert proc.stderr.read() == b""
    proc.stderr.close()


def top_in_pty(server, tmp_path):
    """gearman-ev top on a pseudo-terminal: (pid, master fd)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, whatever happens
        try:
            os.execve(sys.executable, CLI + ["-s", server.address, "top", "--interval", "0.2"],
                      clean_env(TERM="xterm"))
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    return pid, fd


def wait_exit(pid, fd, timeout=15.0):
    """Reap the child, draining the pty meanwhile; its exit status."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("top did not exit")
        if select.select([fd], [], [], 0.05)[0]:
            try:
                os.read(fd, 65536)
            except OSError:
                pass


@pytest.mark.parametrize("key", [b"q", b"\x03"], ids=["q", "ctrl-c"])
def test_top_on_a_terminal(own_gearmand, fname, tmp_path, key):
    queue_bg(own_gearmand, fname, [b"1"])
    pid, fd = top_in_pty(own_gearmand, tmp_path)
    try:
        screen = read_until(fd, lambda b: b.count(b"JOBS/S") >= 2, what="two redraws")
        assert b"\x1b[H" in screen and b"\x1b[K" in screen  # redrawn in place
        assert b"(q: quit)" in screen
        assert re.search(rf"{fname} +1 +0 +0 +".encode(), screen)
        before = termios.tcgetattr(fd)
        assert not before[3] & termios.ICANON  # cbreak: keys one at a time
        os.write(fd, key)
        assert wait_exit(pid, fd) == 0
        after = termios.tcgetattr(fd)
        assert after[3] & termios.ICANON and after[3] & termios.ECHO  # given back
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


def test_top_shows_a_server_that_is_down(own_gearmand, fname):
    dead = f"127.0.0.1:{free_port()}"
    queue_bg(own_gearmand, fname, [b"1"])
    proc = subprocess.Popen(CLI + ["-s", dead, "-s", own_gearmand.address, "top",
                                   "--interval", "0.2"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=clean_env())
    try:
        out = read_until(proc.stdout.fileno(),
                         lambda b: b"Connection refused" in b and fname.encode() in b,
                         what="both servers in the table")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert re.search(rf"{re.escape(dead)} +\(connect: Connection refused\)".encode(), out)


def test_local_gearmand_is_what_s_takes():
    with LocalGearmand() as server:
        assert server.address == f"127.0.0.1:{server.port}"
        assert ok(cli(server, "ping"))
