"""Ctrl-C never misroutes a reply (API.md 9): a real SIGINT sent at random
moments into a pipelined run against gearmand, the program catching each
KeyboardInterrupt and calling loop.start() again. Every callback fires
exactly once with its own reply: results carry their request's number, and
background handles, which gearmand numbers in the order it takes the
submissions, must come back to their callbacks in that order.

Threads (API.md 9): another thread calling a Gearman whose loop is running
gets GearmanError("wrong thread") and never corrupts anything; work handed
over with call_soon_threadsafe runs once each, in the loop's thread."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = """
import sys
from gearman_ev import Gearman, ev
host, port, fname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
loop = ev.Loop()
g = Gearman(host, port, loop=loop)
g.register_function(fname, lambda job: b"r" + job.workload)
g.work()
print("ready", flush=True)
loop.start()
"""

CLIENT = """
import json, re, sys
from gearman_ev import Gearman, ev
host, port, fname, mode, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
loop = ev.Loop()
g = Gearman(host, port, loop=loop)
got = {}
problems = []

target = [n]  # replies the current wave completes at: then the loop stops


def record(i, want):
    def cb(result, err):
        if i in got:
            problems.append(("twice", i))
        got[i] = (result, err)
        if len(got) == target[0]:
            loop.stop()
        if err is not None or not want(result):
            problems.append(("wrong", i, repr(result)[:60], err))
    return cb

up = []
g.echo(b"up", lambda r, e: up.append(r))
while not up:
    loop.start(ev.EVRUN_ONCE)
interrupts = 0

def submit_range(base, end):
    for i in range(base, end):
        w = str(i).encode()
        if mode == "fg":
            g.submit_job(fname, w, record(i, lambda r, w=w: r == b"r" + w))
        elif mode == "bg":
            g.submit_job_bg(fname, w, record(i, lambda r: r.startswith("H:")))
        elif i % 50 == 0:
            g.admin("version", record(i, lambda r: r.startswith("OK")))
        elif i % 50 == 1:
            g.echo(w, record(i, lambda r, w=w: r == w))
        else:
            g.submit_job(fname, w, record(i, lambda r, w=w: r == b"r" + w))

def submit_pieces(base, end):
    # A piece per callback: a whole wave in one callback can outlast the 1 s
    # escape hatch on a loaded machine, and a second Ctrl-C then (rightly)
    # raises inside it, leaving the wave half made.
    stop = min(base + 10_000, end)
    submit_range(base, stop)
    if stop < end:
        loop.timer(0, 0, lambda w, r: submit_pieces(stop, end)).start()

submit_range(0, n)
# Interrupts come only from here on: outside loop.start() Python's own
# handler is in charge, and an interrupt may land anywhere in our code.
print("ready", flush=True)
guard = loop.timer(150, 0, lambda w, r: loop.stop())
guard.start()
waves = 1
while guard.active:
    try:
        loop.start()
    except KeyboardInterrupt:
        interrupts += 1
    if len(got) < waves * n:
        continue
    # A fast machine finishes a wave between a few signals: another wave
    # until the stream has been interrupted often enough (bounded). It is
    # submitted from inside the loop, where an interrupt waits its turn.
    if interrupts >= 20 or waves >= 10:
        break
    target[0] = (waves + 1) * n
    loop.timer(0, 0, lambda w, r, base=waves * n: submit_pieces(base, base + n)).start()
    waves += 1
n = waves * n
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the test's last signals may still arrive
if mode == "bg":
    counters = [int(re.search(rb"(\\d+)$", got[i][0].encode()).group(1)) for i in range(n)
                if i in got and got[i][0]]
    if any(b <= a for a, b in zip(counters, counters[1:])):
        problems.append(("handles out of order",))
print(json.dumps({"n": len(got), "waves": waves, "problems": problems[:5],
                  "interrupts": interrupts}))
"""


def start(script, *args):
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line.strip() == b"ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


@pytest.mark.parametrize("mode, n", [("fg", 100_000), ("bg", 300_000), ("mixed", 100_000)])
def test_sigint_at_random_moments_misroutes_nothing(gearmand, fname, mode, n):
    worker = start(WORKER, gearmand.host, gearmand.port, fname)
    try:
        client = start(CLIENT, gearmand.host, gearmand.port, fname, mode, n)
        rng = random.Random(n)
        sent = 0
        deadline = time.monotonic() + 170
        # Interrupts until the client is done (at least 20 of them, the run lasts long
        # enough at these gaps); every loop here is bounded by count and time.
        while client.poll() is None and sent < 5000 and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.002, 0.03))
            try:
                client.send_signal(signal.SIGINT)
                sent += 1
            except ProcessLookupError:
                break
        out, err = client.communicate(timeout=180)
        assert client.returncode == 0, err.decode()
        result = json.loads(out.decode().strip().splitlines()[-1])
        assert result["problems"] == []
        assert result["n"] == result["waves"] * n  # every reply of every wave
        assert result["interrupts"] >= 20, (result, sent)
    finally:
        worker.kill()
        worker.wait(10)


THREADS = """
import json, sys, threading
from gearman_ev import Gearman, GearmanError, ev
host, port = sys.argv[1], int(sys.argv[2])
loop = ev.Loop()
g = Gearman(host, port, loop=loop)
outcomes, stop = [], threading.Event()
loop_thread = threading.get_ident()

def hammer():
    while not stop.is_set():
        for call in (lambda: g.echo(b"x"), lambda: g.submit_job_bg("f", b"w"),
                     lambda: g.admin("version"), lambda: g.disconnect()):
            try:
                call()
                outcomes.append("ran")
            except GearmanError as exc:
                outcomes.append(str(exc))

echoes = []
def ping(i=[0]):
    i[0] += 1
    if i[0] < 300:
        g.echo(b"%d" % i[0], lambda r, e: (echoes.append((r, e)), ping()))
    else:
        # Stop the other threads while the loop still runs: every call they
        # made saw it running.
        stop.set()
        for t in threads:
            t.join()
        loop.stop()
threads = [threading.Thread(target=hammer) for _ in range(8)]
def go():
    for t in threads:
        t.start()
    ping()
g.echo(b"up", lambda r, e: go())
loop.start()

# call_soon_threadsafe: 8 threads x 10,000 calls, each once, in the loop thread, in order.
seen = {k: [] for k in range(8)}
wrong_thread = []
def note(k, i):
    if threading.get_ident() != loop_thread:
        wrong_thread.append(k)
    seen[k].append(i)
    if sum(map(len, seen.values())) == 80000:
        loop.stop()
def feeder(k):
    for i in range(10000):
        loop.call_soon_threadsafe(note, k, i)
keep = loop.timer(30, 0, lambda w, r: loop.stop())
keep.start()
feeders = [threading.Thread(target=feeder, args=(k,)) for k in range(8)]
for t in feeders:
    t.start()
loop.start()
for t in feeders:
    t.join()
in_order = all(seen[k] == list(range(10000)) for k in range(8))
print(json.dumps({"kinds": sorted(set(outcomes)), "echoes_ok": all(
    r == b"%d" % (i + 1) and e is None for i, (r, e) in enumerate(echoes)), "n_echoes": len(echoes),
    "in_order": in_order, "wrong_thread": len(wrong_thread)}))
"""


def test_other_threads_get_wrong_thread_and_hand_work_over(gearmand):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(THREADS), gearmand.host,
                           str(gearmand.port)], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()  # no crash
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert out["kinds"] == ["wrong thread"]
    assert out["echoes_ok"] and out["n_echoes"] == 299
    assert out["in_order"] and out["wrong_thread"] == 0
