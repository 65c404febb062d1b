"""Smoke tests for eg/: each example runs as a user would run it (a separate
Python process, address from GEARMAN_HOST / GEARMAN_PORT) against the real
gearmand, ends by itself, exits 0 and prints what its docstring promises.

Worker scripts that would serve forever are bounded by their own options
(--max-jobs) or by a signal; every subprocess has a timeout.
"""
from __future__ import annotations

import ast
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gearman_ev import Gearman
from gearman_ev._gearmand import free_port
from tests.conftest import run_until

ROOT = Path(__file__).resolve().parent.parent
EG = ROOT / "eg"


# ===== Helpers =====

def env_for(server, **extra):
    env = dict(os.environ, GEARMAN_HOST=server.host, GEARMAN_PORT=str(server.port),
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("GEARMAN_SERVERS", None)
    env.update(extra)
    return env


def run(name, server, *args, timeout=20, env=None):
    """Run eg/<name>.py to its end; it must exit 0 with a clean stderr."""
    proc = subprocess.run([sys.executable, str(EG / f"{name}.py"), *args],
                          env=env or env_for(server), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    return proc.stdout


class Live:
    """An example running in the background, whose output we can wait on."""

    def __init__(self, name, server, *args, env=None):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(EG / f"{name}.py"), *args],
                                     env=env or env_for(server), cwd=ROOT, bufsize=0,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = ""

    def wait_for(self, text, timeout=10):
        """Read stdout until ``text`` appears; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.name}: no {text!r} within {timeout}s; got:\n{self.out}")
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                if not chunk:
                    pytest.fail(f"{self.name} ended before {text!r}; got:\n{self.out}")
                self.out += chunk.decode()

    def poll(self):
        """What it printed so far, without waiting (lets a test's loop run)."""
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.out += chunk.decode()
        return self.out

    def finish(self, timeout=15):
        """Wait for the exit; return (returncode, all stdout, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        self.out += out.decode()
        return self.proc.returncode, self.out, err.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def live():
    """Start examples in the background; whatever is left is killed (by pid)."""
    started = []

    def start(name, server, *args, env=None):
        p = Live(name, server, *args, env=env)
        started.append(p)
        return p
    yield start
    for p in started:
        p.kill()


def submit_all(loop, server, func, workloads, timeout=10, **kwargs):
    """Submit foreground jobs from the test; run until all answered."""
    g = Gearman(server.host, server.port, loop=loop)
    results = {}
    for w in workloads:
        g.submit_job(func, w, lambda r, e, w=w: results.__setitem__(w, (r, e)),
                     timeout=timeout, **kwargs)
    run_until(loop, lambda: len(results) == len(workloads), timeout=timeout + 2,
              what=f"{func} results")
    g.disconnect()
    return results


def lines(text):
    return text.splitlines()


# ===== The set of examples =====

TESTED = {
    "client", "worker", "pipeline", "background", "scheduled", "unique", "event_client",
    "fanout", "priority_queue", "json_payload", "retry", "async_worker", "worker_pool",
    "graceful_worker", "cron_consumer", "exceptions", "admin", "monitoring", "reconnect",
    "multi_server", "unix_socket", "error_handling", "embed_libev", "threads", "tls",
    "asyncio_client", "asyncio_worker", "blocking_client",
}


def test_every_example_has_a_test_and_a_readme_line():
    scripts = {p.stem for p in EG.glob("*.py")} - {"demo"}
    assert scripts == TESTED
    readme = (ROOT / "README.rst").read_text()
    section = readme.split("\nExamples\n", 1)[1].split("\nLayout\n", 1)[0]
    for name in scripts | {"demo"}:
        assert f"eg/{name}.py" in section, name


# ===== Clients =====

def test_client_alone(gearmand):
    out = run("client", gearmand)
    assert lines(out) == ["progress: 1/1", "result: namraeg ,olleh"]


def test_worker_with_client(gearmand, live):
    worker = live("worker", gearmand, "--max-jobs", "2")
    for text in ("one", "two"):
        out = run("client", gearmand, text, "--no-worker")
        assert lines(out) == ["progress: 1/1", f"result: {text[::-1]}"]
    code, out, err = worker.finish()
    assert code == 0, err
    assert "reverse(b'one')" in out and "reverse(b'two')" in out
    assert out.rstrip().endswith("served 2 job(s)")


def test_worker_serves_until_ctrl_c(gearmand, live):
    worker = live("worker", gearmand)       # no --max-jobs: the natural "forever"
    worker.wait_for("worker connected")
    assert lines(run("client", gearmand, "abc", "--no-worker"))[-1] == "result: cba"
    assert worker.proc.poll() is None       # still serving
    worker.proc.send_signal(signal.SIGINT)
    code, out, err = worker.finish()
    assert code == 0, err
    assert out.rstrip().endswith("served 1 job(s)")


def test_pipeline(gearmand):
    out = run("pipeline", gearmand, "--jobs", "300")
    assert "all 300 results correct" in out
    assert re.search(r"^300 results in [\d.]+ s, 0 errors, 0 wrong$", out, re.MULTILINE)


def test_background(gearmand):
    out = run("background", gearmand, "--jobs", "3")
    handles = re.findall(r"^queued (\S+)$", out, re.MULTILINE)
    assert len(handles) == 3
    assert f"status of {handles[0]}: known=True running=False" in out
    # The worker connects after the client left, and still gets every job.
    after = out.split("client gone; starting a worker", 1)[1]
    for n in range(3):
        assert f"worker: line {n}" in after
    assert "worker processed 3 background job(s)" in out


def test_scheduled(gearmand):
    out = run("scheduled", gearmand, "--delay", "1", timeout=30)
    assert re.search(r"^scheduled \S+ for epoch \d+ \(1 s from now\)$", out, re.MULTILINE)
    # The script itself exits 1 if the job ran before its epoch.
    assert re.search(r"^worker: ran 'water the plants' at epoch\+\d+\.\d s$", out, re.MULTILINE)


def test_unique(gearmand):
    out = run("unique", gearmand, "--clients", "3")
    assert re.search(r"known=True running=True progress=1/2 waiting clients=3$", out, re.MULTILINE)
    for n in range(3):
        assert f"client {n}: b'42 widgets sold'" in out
    assert "3 clients answered by 1 run(s) of the job" in out
    assert out.count("worker: building the report") == 1


def test_event_client(gearmand):
    out = run("event_client", gearmand)
    assert lines(out) == [
        "data: 1: alpha", "status: 1/4", "data: 2: beta", "status: 2/4",
        "warning: line 3 is empty", "status: 3/4", "data: 4: gamma", "status: 4/4",
        "done: b'4'",
    ]


def test_fanout(gearmand):
    out = run("fanout", gearmand, "--chunks", "10")
    assert "scattered 10 chunks" in out
    assert "gathered: 450 words (expected 450)" in out
    counts = re.search(r"^jobs per worker: (\{.*\})$", out, re.MULTILINE)
    assert counts and sum(ast.literal_eval(counts.group(1)).values()) == 10


def test_priority_queue(gearmand):
    out = run("priority_queue", gearmand)
    assert "order: high 1, high 2, normal 1, normal 2, low 1, low 2" in out


def test_json_payload(gearmand):
    out = run("json_payload", gearmand)
    assert lines(out) == [
        "reply: {'customer': 'ada', 'total': 3.5}",
        "reply: {'error': \"KeyError: 'banana'\"}",
        "reply: {'error': 'JSONDecodeError: Expecting value: line 1 column 1 (char 0)'}",
    ]


@pytest.mark.parametrize("attempts, fail_first, code, last", [
    ("5", "2", 0, "result: b'PERSISTENCE PAYS'"),
    ("2", "5", 1, "error: job failed"),
])
def test_retry(gearmand, attempts, fail_first, code, last):
    proc = subprocess.run([sys.executable, str(EG / "retry.py"), "--attempts", attempts,
                           "--fail-first", fail_first], env=env_for(gearmand), cwd=ROOT,
                          capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == code, proc.stderr
    out = lines(proc.stdout)
    assert out[0] == "attempt 1 failed (job failed); retrying in 0.1 s"
    assert out[-1] == last
    if code == 0:
        assert out[1] == "attempt 2 failed (job failed); retrying in 0.2 s"
    else:
        assert out[1] == "attempt 2 failed (job failed); giving up"


# ===== Workers =====

def test_async_worker(gearmand, live, loop):
    worker = live("async_worker", gearmand, "--max-jobs", "3", "--steps", "3",
                  "--step-seconds", "0.3")
    results = submit_all(loop, gearmand, "slow_upper", [b"a", b"b", b"c"])
    assert results == {w: (w.upper(), None) for w in (b"a", b"b", b"c")}
    code, out, err = worker.finish()
    assert code == 0, err
    # The three jobs overlapped: the timers let the worker grab while busy.
    assert "(3 in flight)" in out
    assert out.rstrip().endswith("finished 3 job(s)")


@pytest.mark.parametrize("mode", [[], ["--builtin"]], ids=["work_stop", "concurrency"])
def test_worker_pool(gearmand, live, loop, mode):
    worker = live("worker_pool", gearmand, "--concurrency", "2", "--max-jobs", "6", *mode)
    names = [f"img{n}".encode() for n in range(6)]
    results = submit_all(loop, gearmand, "resize", names)
    assert results == {n: (b"resized " + n, None) for n in names}
    code, out, err = worker.finish()
    assert code == 0, err
    assert "(2 in flight)" in out and "(3 in flight)" not in out
    assert "finished 6 job(s); at most 2 at a time (cap 2)" in out


def test_graceful_worker(gearmand, live, loop, fname):
    worker = live("graceful_worker", gearmand, "--job-seconds", "1")
    worker.wait_for("worker ready")
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    results = {}
    for w in (b"movie1", b"movie2"):
        g.submit_job("encode", w, lambda r, e, w=w: results.__setitem__(w, (r, e)), timeout=10)
    # The test's loop must run for the submissions to go out.
    run_until(loop, lambda: worker.poll().count("started H:") == 2, what="both jobs started")
    worker.proc.send_signal(signal.SIGTERM)
    worker.wait_for("no more jobs; waiting for 2 in flight")
    # Submitted after the signal: stays queued, the stopping worker must not take it.
    late = []
    g.submit_job("encode", b"movie3", lambda r, e: late.append(e), unique=fname, timeout=10)
    run_until(loop, lambda: len(results) == 2, timeout=10, what="in-flight results")
    assert results == {b"movie1": (b"encoded movie1", None),
                       b"movie2": (b"encoded movie2", None)}
    code, out, err = worker.finish()
    assert code == 0, err
    assert out.count("started H:") == 2 and out.count("finished H:") == 2
    assert out.rstrip().endswith("all jobs finished; bye")
    status = []
    g.get_status_unique(fname, lambda s, e: status.append(s))
    run_until(loop, lambda: status, what="status of the late job")
    assert status[0]["known"] and not status[0]["running"]
    assert late == []
    g.disconnect()   # its only client gone, the server discards the late job


def test_cron_consumer_drains_and_exits(gearmand, loop, fname):
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    created = []
    for n in range(3):
        g.submit_job_bg(fname, f"job {n}", lambda h, e: created.append(e))
    run_until(loop, lambda: len(created) == 3, what="JOB_CREATED")
    assert created == [None] * 3
    out = run("cron_consumer", gearmand, "--function", fname)
    assert re.findall(r"^processing \S+: (.*)$", out, re.MULTILINE) == ["job 0", "job 1", "job 2"]
    assert out.rstrip().endswith("drained 3 job(s)")
    # Nothing left behind, and the results did reach the server before exit.
    reply = []
    g.server_status(lambda text, err: reply.append(text))
    run_until(loop, lambda: reply, what="status")
    assert f"{fname}\t0\t0\t0" in reply[0].splitlines()
    g.disconnect()


def test_cron_consumer_seed_and_empty(gearmand, fname):
    assert "drained 2 job(s)" in run("cron_consumer", gearmand, "--function", fname,
                                     "--seed", "2")
    assert run("cron_consumer", gearmand, "--function", fname).strip() == "drained 0 job(s)"


def test_exceptions(gearmand):
    out = lines(run("exceptions", gearmand))
    assert sorted(out) == sorted([
        "good date: result=b'17.05.2024' err=None",
        "bad month: on_exception('month 13 out of range')",
        "bad month: result=None err='exception'",
        "async: on_exception('quota exceeded')",
        "async: result=None err='exception'",
        "no option: result=None err='job failed'",
    ])
    # on_exception comes before the terminal callback of the same job.
    assert out.index("bad month: on_exception('month 13 out of range')") < \
        out.index("bad month: result=None err='exception'")


# ===== Operations =====

def test_admin(gearmand):
    out = run("admin", gearmand)
    blocks = dict(b.split("\n", 1) for b in out.split("--- ")[1:])
    assert blocks["version"].startswith("OK 1.")
    assert re.fullmatch(r"OK \d+\n", blocks["getpid"])
    assert re.search(r"^resize\t\d+\t0\t1$", blocks["status: FUNCTION  TOTAL  RUNNING  WORKERS"],
                     re.MULTILINE)
    assert re.search(r" eg-admin-worker : resize$",
                     blocks["workers: FD  ADDRESS  CLIENT_ID : FUNCTIONS"], re.MULTILINE)
    # The background job the script queued: QUEUED is 1 for background jobs.
    assert re.search(r"^H:\S+\t\d+\t0\t1$", blocks["show jobs: HANDLE  RETRIES  IGNORED  QUEUED"],
                     re.MULTILINE)
    assert blocks["maxqueue resize 100"] == "OK\n"
    assert blocks["an unknown command"] == "ERR UNKNOWN_COMMAND Unknown+server+commandno\n"


def test_monitoring(gearmand, loop, fname):
    g = Gearman(gearmand.host, gearmand.port, loop=loop)
    created = []
    g.submit_job_bg(fname, b"x", lambda h, e: created.append(e))
    g.submit_job_bg(fname, b"y", lambda h, e: created.append(e))
    run_until(loop, lambda: len(created) == 2, what="JOB_CREATED")
    out = run("monitoring", gearmand, "--rounds", "2", "--interval", "0.2")
    assert len(re.findall(r"^\d\d:\d\d:\d\d poll [12]$", out, re.MULTILINE)) == 2
    assert out.count("FUNCTION") == 2
    row = re.findall(rf"^  {re.escape(fname)}\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    assert row == [("2", "0", "0")] * 2
    run("cron_consumer", gearmand, "--function", fname)   # leave nothing queued
    g.disconnect()


def test_reconnect_survives_restart(own_gearmand, live):
    script = live("reconnect", own_gearmand, "--jobs", "8", "--interval", "0.3")
    script.wait_for("job 1: result 2")
    own_gearmand.restart()            # same port, all jobs forgotten
    code, out, err = script.finish(timeout=20)
    assert code == 0, out + err
    for who in ("client", "worker"):
        assert f"{who}: connected" in out
        assert f"{who}: connection lost" in out
        assert f"{who}: reconnected" in out
    assert "8 of 8 jobs done" in out
    assert sorted(re.findall(r"^job (\d+): result (\d+)$", out, re.MULTILINE), key=lambda p: int(p[0])) \
        == [(str(n), str(2 * n)) for n in range(1, 9)]


def test_multi_server_single_default(gearmand):
    out = run("multi_server", gearmand)
    assert f"{gearmand.host}:{gearmand.port}: 12 jobs" in out
    assert "12 of 12 jobs done; 1 server(s) given" in out


def test_multi_server_round_robin_and_failover(gearmand, own_gearmand):
    dead = f"127.0.0.1:{free_port()}"
    a = f"{gearmand.host}:{gearmand.port}"
    b = f"{own_gearmand.host}:{own_gearmand.port}"
    out = run("multi_server", gearmand, "--jobs", "12",
              env=env_for(gearmand, GEARMAN_SERVERS=f"{a},{dead},{b}"))
    assert f"{a}: 6 jobs" in out and f"{b}: 6 jobs" in out
    assert f"{dead}: connect: Connection refused" in out
    assert "12 of 12 jobs done; 3 server(s) given" in out


def test_unix_socket(gearmand, tmp_path):
    path = tmp_path / "gearmand.sock"
    socat = subprocess.Popen(["socat", f"UNIX-LISTEN:{path},fork",
                              f"TCP:{gearmand.host}:{gearmand.port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not path.exists():
            assert time.monotonic() < deadline, "socat did not create the socket"
            time.sleep(0.02)
        out = run("unix_socket", gearmand, str(path))
    finally:
        socat.terminate()
        socat.wait(timeout=5)
    out = lines(out)
    assert out[0] == "echo: b'ping'"
    assert re.fullmatch(r"version: 'OK 1\.\S+'", out[1])
    assert out[2] == "job: b'HELLO OVER A UNIX SOCKET!'" and len(out) == 3


def test_tls(tls_gearmand, pki):
    # tls_gearmand: socat OPENSSL-LISTEN in front of the test gearmand (tests/fix_tls.py).
    out = lines(run("tls", tls_gearmand, "--ca", str(pki.ca)))
    assert out[:2] == ["client: TLS handshake done", "echo: b'ping'"]
    assert re.fullmatch(r"version: 'OK 1\.\S+'", out[2])
    assert out[3:] == ["job: b'HELLO OVER TLS!'", "untrusted echo: disconnected",
                       "untrusted: tls: certificate verify failed: "
                       "unable to get local issuer certificate"]


def test_unix_socket_missing_path(gearmand, tmp_path):
    proc = subprocess.run([sys.executable, str(EG / "unix_socket.py"), str(tmp_path / "none")],
                          env=env_for(gearmand), cwd=ROOT, capture_output=True, text=True,
                          timeout=20, check=False)
    assert proc.returncode == 1
    assert "connection error: connect: No such file or directory\n" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_error_handling(gearmand):
    out = lines(run("error_handling", gearmand))
    assert out == [
        ("workload of a wrong type: TypeError('workload must be bytes, bytearray, "
         "memoryview or str, not int')"),
        ("function name with a space: ValueError('function name must not hold whitespace, "
         "control bytes or NUL')"),
        "unique key too long: ValueError('unique too long (64 bytes, max 63)')",
        "negative timeout: ValueError('timeout must be a finite number >= 0')",
        "not connected: GearmanError('not connected')",
        "connect twice: GearmanError('already connected')",
        "refused connection (on_error): 'connect: Connection refused'",
        "request on a refused connection: 'disconnected'",
        out[8],   # getaddrinfo's text depends on the resolver
        "job failed: 'job failed'",
        "job timeout: 'job timeout'",
        "unknown admin command: 'ERR UNKNOWN_COMMAND Unknown+server+commandfrobnicate'",
        "server ERROR packet: 'UNKNOWN_OPTION: Server does not recognize given option'",
        "disconnect() with a request pending: 'disconnected'",
    ]
    assert out[8].startswith("unknown host (on_error): 'getaddrinfo: ")


# ===== Embedding =====

def test_embed_libev(gearmand):
    out = lines(run("embed_libev", gearmand, "--readings", "5"))
    conversions = [line for line in out if " C = " in line]
    assert conversions == ["15.0 C = 59.0 F", "17.5 C = 63.5 F", "20.0 C = 68.0 F",
                           "22.5 C = 72.5 F", "25.0 C = 77.0 F"]
    # The program's own timer kept ticking while jobs were under way.
    assert any(line.startswith("heartbeat: ") for line in out)
    assert re.fullmatch(r"done: 5 readings converted, \d+ heartbeats", out[-1])


def test_threads(gearmand):
    out = lines(run("threads", gearmand, "--requests", "12", "--threads", "4"))
    responses = out[:-1]
    assert sorted(responses) == sorted(f"GET /hello/user{n} -> 200 <h1>Hello, user{n}!</h1>"
                                       for n in range(1, 13))
    summary = re.fullmatch(r"12 of 12 requests answered by (\d+) handler thread\(s\); "
                           r"every job submitted from the loop's thread: True", out[-1])
    assert summary and 1 <= int(summary.group(1)) <= 4


# ===== asyncio =====

ASYNCIO_CLIENT_TAIL = ["pipelined: 10 results", "created: H:...", "event: status ('1', '1')",
                       "run result: stneve"]


@pytest.mark.parametrize("loop_option", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_asyncio_client_alone(gearmand, loop_option):
    out = run("asyncio_client", gearmand, *loop_option)
    assert lines(out) == ["progress: 1/1", "result: namraeg ,olleh"] + ASYNCIO_CLIENT_TAIL


def test_asyncio_worker_serves_the_asyncio_client(gearmand, live):
    # The client sends 12 jobs: one, then 10 at once, then one with events.
    worker = live("asyncio_worker", gearmand, "--max-jobs", "12", "--concurrency", "3",
                  "--step-seconds", "0.02")
    worker.wait_for("worker connected")
    out = run("asyncio_client", gearmand, "abc", "--no-worker", "--function", "slow_upper")
    assert lines(out) == ["progress: 1/3", "progress: 2/3", "progress: 3/3", "result: ABC",
                          "pipelined: 10 results", "created: H:...",
                          "event: status ('1', '3')", "event: status ('2', '3')",
                          "event: status ('3', '3')", "run result: EVENTS"]
    code, out, err = worker.finish()
    assert code == 0, err
    assert out.rstrip().endswith("served 12 job(s)")
    in_flight = [int(m) for m in re.findall(r"\((\d+) in flight\)", out)]
    assert max(in_flight) == 3  # the ten pipelined jobs ran three at a time


def test_asyncio_worker_stops_cleanly_on_sigterm(gearmand, live):
    worker = live("asyncio_worker", gearmand)
    worker.wait_for("worker connected")
    assert lines(run("asyncio_client", gearmand, "xyz", "--no-worker"))[0] == "result: zyx"
    worker.proc.send_signal(signal.SIGTERM)
    code, out, err = worker.finish()
    assert code == 0, err
    assert out.rstrip().endswith("served 12 job(s)")


def test_blocking_client(gearmand):
    out = lines(run("blocking_client", gearmand, "--requests", "12", "--threads", "4"))
    expected = []
    for n in range(1, 13):
        user = f"ghost{n}" if n % 5 == 0 else f"user{n}"
        if n % 5 == 0:
            expected.append(f"GET /hello/{user} -> 404")
        elif n % 3 == 0:
            expected.append(f"GET /hello/{user} -> 200 [{user}:news] [{user}:weather]")
        else:
            expected.append(f"GET /hello/{user} -> 200 <h1>Hello, {user}!</h1>")
    assert out[:-1] == expected
    summary = re.fullmatch(r"12 of 12 requests answered by (\d+) handler thread\(s\) "
                           r"through one GearmanClient", out[-1])
    assert summary and 1 <= int(summary.group(1)) <= 4
