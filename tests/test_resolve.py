"""Host names are resolved without blocking the loop (API.md 15).

Each test runs a script whose real getaddrinfo asks a DNS server of the
test's own (tests/fakedns.py: a resolv.conf bind-mounted in a private mount
namespace), which answers late, never, or with several addresses. A timer
ticking on the same loop measures how late it fires while a lookup runs;
the bounds are generous safety nets (0.5 s against lookups of seconds), not
timing assertions.
"""
from __future__ import annotations

import json

import pytest

from tests.fakedns import FakeDNS, missing_tools, run_script

SLOW = "slow.gearman-ev.test"      # answered after DELAY seconds
FAST = "fast.gearman-ev.test"
HANG = "hang.gearman-ev.test"      # never answered
DUAL = "dual.gearman-ev.test"      # ::1 and 127.0.0.1
V6ONLY = "v6only.gearman-ev.test"  # ::1 only
ABSENT = "absent.gearman-ev.test"  # NXDOMAIN
DELAY = 1.5

TABLE = {
    SLOW: {"A": ["127.0.0.1"], "delay": DELAY},
    FAST: {"A": ["127.0.0.1"]},
    HANG: {"hang": True},
    DUAL: {"A": ["127.0.0.1"], "AAAA": ["::1"]},
    V6ONLY: {"AAAA": ["::1"]},
}

# What every script starts with: a loop, a 20 ms ticker that records its
# worst lateness, a guard that ends a stuck run, and report() for the result.
PROLOGUE = """
import gc, json, os, sys, time, weakref
from gearman_ev import Gearman, ev
name, port = sys.argv[1], int(sys.argv[2])
loop = ev.Loop()
t0 = time.monotonic()
seen = {"late": 0.0, "events": []}
last = [t0]

def tick(w, r):
    now = time.monotonic()
    seen["late"] = max(seen["late"], now - last[0] - 0.02)
    last[0] = now

def note(*what):
    seen["events"].append([round(time.monotonic() - t0, 3), *what])

def report(**extra):
    seen.update(extra)
    print(json.dumps(seen))

guard = loop.timer(20, 0, lambda w, r: (note("guard"), loop.stop()))
guard.start()
"""


@pytest.fixture
def dns():
    why = missing_tools()
    assert why is None, why
    with FakeDNS(TABLE) as server:
        yield server


def run(dns, tmp_path, gearmand, body, name, *extra, resolver_timeout=2):
    proc = run_script(dns, tmp_path, PROLOGUE + body, name, str(gearmand.port), *extra,
                      resolver_timeout=resolver_timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_slow_lookup_leaves_timers_on_time(dns, tmp_path, gearmand):
    out = run(dns, tmp_path, gearmand, """
ticker = loop.timer(0.02, 0.02, tick)
ticker.start()
g = Gearman(name, port, loop=loop, on_connect=lambda: note("connect"),
            on_error=lambda e: note("error", e))
g.echo(b"queued", lambda r, e: (note("echo", r.decode(), e), loop.stop()))
loop.start()
report()
""", SLOW)
    kinds = [e[1] for e in out["events"]]
    assert kinds == ["connect", "echo"], out
    assert out["events"][1][2:] == ["queued", None]
    # The answer really took seconds, and the ticker never waited for it.
    assert out["events"][0][0] >= DELAY - 0.2, out
    assert out["late"] < 0.5, out
    assert dns.questions(SLOW)


def test_a_lookup_keeps_start_running(dns, tmp_path, gearmand):
    # No watcher of the script's own: only the lookup keeps start() going.
    out = run(dns, tmp_path, gearmand, """
guard.stop()
g = Gearman(name, port, loop=loop, on_error=lambda e: note("error", e))
g.echo(b"x", lambda r, e: (note("echo", e), loop.stop()))
loop.start()
g.disconnect()
report()
""", SLOW)
    assert [e[1:] for e in out["events"]] == [["echo", None]]


def test_a_hanging_resolver_fails_with_getaddrinfo_and_no_delay(dns, tmp_path, gearmand):
    out = run(dns, tmp_path, gearmand, """
ticker = loop.timer(0.02, 0.02, tick)
ticker.start()
g = Gearman(name, port, loop=loop, on_error=lambda e: (note("error", e), loop.stop()))
g.echo(b"x", lambda r, e: note("echo", e))
loop.start()
report(connected=g.is_connected)
""", HANG, resolver_timeout=1)
    assert [e[1:] for e in out["events"]] == [
        ["echo", "disconnected"],
        ["error", "getaddrinfo: Temporary failure in name resolution"]], out
    assert out["events"][1][0] >= 0.8, out   # the resolver's own 1 s timeout
    assert out["late"] < 0.5, out
    assert out["connected"] is False


def test_an_unknown_name_is_a_getaddrinfo_error(dns, tmp_path, gearmand):
    out = run(dns, tmp_path, gearmand, """
g = Gearman(name, port, loop=loop, on_error=lambda e: (note("error", e), loop.stop()))
loop.start()
report()
""", ABSENT)
    assert [e[1:] for e in out["events"]] == [
        ["error", "getaddrinfo: Name or service not known"]]


@pytest.mark.parametrize("name, first_error", [
    (DUAL, None),                                # ::1 refused, then 127.0.0.1
    (V6ONLY, "connect: Connection refused"),     # gearmand listens on 127.0.0.1 only
])
def test_every_address_is_tried_in_order(dns, tmp_path, gearmand, name, first_error):
    out = run(dns, tmp_path, gearmand, """
g = Gearman(name, port, loop=loop, on_connect=lambda: (note("connect"), loop.stop()),
            on_error=lambda e: (note("error", e), loop.stop()))
loop.start()
report()
""", name)
    if first_error is None:
        assert [e[1:] for e in out["events"]] == [["connect"]]
        assert sorted(dns.questions(name)) == ["A", "AAAA"]
    else:
        assert [e[1:] for e in out["events"]] == [["error", first_error]]


def test_no_callback_after_disconnect_or_collection_during_a_lookup(dns, tmp_path, gearmand):
    out = run(dns, tmp_path, gearmand, """
calls = []
gone = Gearman(name, port, loop=loop, on_connect=lambda: calls.append("gone: connect"),
               on_error=lambda e: calls.append("gone: " + e))
ref = weakref.ref(gone)
del gone
gc.collect()
note("collected", ref() is None)
left = Gearman(name, port, loop=loop, on_connect=lambda: calls.append("left: connect"),
               on_error=lambda e: calls.append("left: " + e),
               on_disconnect=lambda: calls.append("left: on_disconnect"))
left.echo(b"x", lambda r, e: calls.append("left: echo " + e))
loop.timer(0.2, 0, lambda w, r: left.disconnect()).start()
guard.stop()
# Nothing active once both let go: start() returns without waiting for the answers.
loop.start()
note("start returned")
# The answers arrive (after DELAY s) and call no one.
loop.timer(DELAY + 1, 0, lambda w, r: None).start()
loop.start()
note("after the answers")
report(calls=calls)
""".replace("DELAY", repr(DELAY)), SLOW)
    assert out["calls"] == ["left: echo disconnected"], out
    events = [e[1:] for e in out["events"]]
    assert events == [["collected", True], ["start returned"], ["after the answers"]]
    assert out["events"][1][0] < DELAY - 0.5, out   # start() did not wait for the lookups
    assert dns.questions(SLOW)                       # the lookups did run


def test_a_reconnect_waits_for_the_lookup_in_flight(dns, tmp_path, gearmand):
    # connect_timeout shorter than the lookup: attempts time out and retry,
    # and every retry joins the one lookup rather than start another.
    out = run(dns, tmp_path, gearmand, """
g = Gearman(name, port, loop=loop, connect_timeout=0.4, reconnect=True, reconnect_delay=0.1,
            on_connect=lambda: (note("connect"), loop.stop()),
            on_error=lambda e: note("error", e))
loop.start()
report()
""", SLOW)
    kinds = [e[1:] for e in out["events"]]
    assert kinds[-1] == ["connect"], out
    assert kinds[:-1] and set(map(tuple, kinds[:-1])) == {("error", "connect timeout")}, out
    assert sorted(dns.questions(SLOW)) == ["A", "AAAA"], dns.asked   # one lookup


def test_a_lookup_in_a_forked_child_does_not_hang(dns, tmp_path, gearmand):
    # Forked while the parent's lookup hangs in its thread: the child has no
    # such thread and must not wait for it. (glibc may give the child's first
    # resolver thread the parent thread's cached stack, and with it that
    # thread's DNS socket, shared with the parent: that one lookup can then
    # wait for the resolver's timeout and fail. reconnect covers it: the next
    # thread's socket is its own. Either way the child's loop stays on time.)
    out = run(dns, tmp_path, gearmand, """
HANG, FAST = sys.argv[3], sys.argv[4]
parent = Gearman(HANG, port, loop=loop, on_error=lambda e: note("parent", e))
time.sleep(0.2)   # the parent's lookup is in flight in its thread
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    child_loop = ev.Loop()
    child_loop.timer(10, 0, lambda w, r: os._exit(3)).start()
    child_loop.timer(0.02, 0.02, tick).start()
    last[0] = time.monotonic()
    got = []
    g = Gearman(FAST, port, loop=child_loop, reconnect=True, reconnect_delay=0.1)
    g.echo(b"child", lambda r, e: (got.append((r, e)), child_loop.stop()))
    child_loop.start()
    os.write(w, json.dumps({"got": repr(got), "late": seen["late"]}).encode())
    os._exit(0)
os.close(w)
deadline = time.monotonic() + 15
status = None
while status is None and time.monotonic() < deadline:
    done, code = os.waitpid(pid, os.WNOHANG)
    if done:
        status = os.waitstatus_to_exitcode(code)
    else:
        time.sleep(0.02)
if status is None:
    os.kill(pid, 9)
child = json.loads(os.read(r, 65536) or b"{}")
parent.disconnect()
report(child=status, child_out=child)
""", HANG, HANG, FAST, resolver_timeout=1)
    assert out["child"] == 0, out
    assert out["child_out"]["got"] == repr([(b"child", None)]), out
    assert out["child_out"]["late"] < 0.5, out
