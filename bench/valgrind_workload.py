#!/usr/bin/env python3
"""A bounded client+worker workload for `make valgrind`.

One process, one loop: a LocalGearmand, a worker and a client on the real
server. About 2000 requests of mixed kinds go through the C core (gm_pack,
gm_conn read/write, the decoder, buffer growth and shrinking) and the libev
binding (io, timer and prepare watchers):

- foreground jobs whose worker sends data, warning and status before the
  result (sync and async_ functions, normal/high/low priority), and some that
  fail or raise (WORK_FAIL / WORK_EXCEPTION);
- background jobs and get_status on their handles;
- echo requests, admin commands (status, workers, version, an unknown one);
- a 2 MiB job, so both buffers grow past 1 MiB and shrink back;
- a client disconnect() with requests in flight, then connect() again;
- a server restart under a worker and a client that reconnect by themselves;
- a connected Gearman object dropped with a request pending (freed by GC).

Exits 0 when every request got its callback, 1 otherwise; a guard timer
bounds the whole run (valgrind is slow, so it is generous).
"""
from __future__ import annotations

import gc
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gearman_ev import Gearman, ev  # noqa: E402
from gearman_ev._gearmand import LocalGearmand  # noqa: E402

JOBS = 2000          # requests in the main phase
IN_FLIGHT = 64       # pipelined requests at once
BIG = 2 * 1024 * 1024
GUARD = 900.0        # seconds: the whole run, under valgrind


def main() -> int:
    # vg_fail's exceptions are logged with tracebacks by design: not wanted here.
    logging.getLogger("gearman_ev").setLevel(logging.CRITICAL)
    loop = ev.Loop()
    server = LocalGearmand().start()
    try:
        code = run(loop, server)
    finally:
        server.stop()
    # Free the loop before interpreter exit: then Loop.__del__ leaves libev
    # alone (ev.py), and valgrind would count the ev_loop as lost.
    del loop
    gc.collect()
    return code


def run(loop, server) -> int:
    done = {"n": 0, "errors": {}, "events": 0}
    state = {"sent": 0, "phase": "main"}
    host, port = server.host, server.port

    # --- the worker: sync and async functions, events before each result ---
    worker = Gearman(host, port, loop=loop, exceptions=True, client_id="vg-worker",
                     reconnect=True, reconnect_delay=0.05)

    def rev(job):
        job.send_data(b"d:" + job.workload[:8])
        job.warning(b"w")
        job.status(1, 2)
        return job.workload[::-1]

    def slow(job):
        loop.timer(0, 0, lambda w, r: job.complete(job.workload.upper())).start()

    def fail(job):
        if job.workload.startswith(b"x"):
            raise ValueError("boom")  # WORK_EXCEPTION (exceptions=True)
        job.fail()

    worker.register_function("vg_rev", rev)
    worker.register_function("vg_slow", slow, async_=True)
    worker.register_function("vg_fail", fail)
    worker.register_function("vg_echo", lambda job: job.workload)
    worker.work()

    client = Gearman(host, port, loop=loop, exceptions=True, reconnect=True,
                     reconnect_delay=0.05)

    def finished(kind):
        def cb(result, err):
            done["n"] += 1
            if err is not None:
                key = f"{kind}: {err}"
                done["errors"][key] = done["errors"].get(key, 0) + 1
            pump()
        return cb

    def event(*args):
        done["events"] += 1

    events = dict(on_data=event, on_warning=event, on_status=event, on_exception=event)
    admin_cmds = ["status", "workers", "version", "no such command"]

    def send_one(i):
        kind = i % 10
        payload = b"payload-%d\0with-nul" % i
        if kind in (0, 1):
            client.submit_job("vg_rev", payload, finished("fg"), **events)
        elif kind == 2:
            client.submit_job_high("vg_slow", payload, finished("fg-async"), **events)
        elif kind == 3:
            client.submit_job_low("vg_fail", b"x" if i % 20 == 3 else b"f",
                                  finished("fail"), **events)
        elif kind == 4:
            def on_created(handle, err, cb=finished("bg+status")):
                if err is not None:
                    return cb(None, err)
                client.get_status(handle, cb)
            client.submit_job_bg("vg_echo", payload, on_created)
        elif kind in (5, 6):
            client.echo(payload, finished("echo"))
        elif kind == 7:
            client.admin(admin_cmds[(i // 10) % 4], finished("admin"))
        elif kind == 8:
            client.submit_job("vg_echo", payload, finished("fg-unique"), unique=f"u{i % 3}")
        else:
            client.submit_job("vg_echo", payload * 50, finished("fg-2k"))

    def pump():
        # Not re-entered: disconnect() below runs callbacks that call pump().
        if state["phase"] != "main" or state.get("pumping"):
            return
        state["pumping"] = True
        try:
            fill()
        finally:
            state["pumping"] = False
        if done["n"] >= JOBS:
            state["phase"] = "big"
            big_job()

    def fill():
        while state["sent"] < JOBS and state["sent"] - done["n"] < IN_FLIGHT:
            i = state["sent"]
            state["sent"] += 1
            if i == JOBS // 2:
                # Drop the connection with requests in flight, then reconnect:
                # each pending callback gets "disconnected".
                client.disconnect()
                client.connect(host, port)
            send_one(i)

    def big_job():
        # Both buffers of both connections grow past 1 MiB, then shrink.
        def cb(result, err):
            ok = err is None and result is not None and len(result) == BIG

            def later(w, r):
                # Drained by now: both buffers are back to their 16 KiB.
                done["big"] = ok and client.buffer_sizes == (16384, 16384)
                state["phase"] = "restart"
                restart()
            loop.timer(0, 0, later).start()
        client.submit_job("vg_echo", b"\xab" * BIG, cb)

    def restart():
        # The server goes away under both connections and comes back on the
        # same port; both reconnect by themselves (GM_E_EOF paths).
        server.stop()
        server.start()

        def after(result, err):
            done["after_restart"] = result
            state["phase"] = "gc"
            dropped()
        retry = {"left": 200}

        def try_echo(w=None, r=None):
            def cb(result, err):
                if err is None:
                    return client.submit_job("vg_rev", b"again", after)
                retry["left"] -= 1
                if retry["left"] > 0:
                    loop.timer(0.05, 0, try_echo).start()
                else:
                    done["after_restart"] = None
                    loop.stop()
            client.echo(b"up?", cb)
        try_echo()

    def dropped():
        # A connected object with a request pending, dropped: its callback
        # gets "disconnected" and its gm_conn is freed.
        tmp = Gearman(host, port, loop=loop)
        tmp.echo(b"never answered in time", lambda r, e: done.__setitem__("gc", e))
        del tmp
        gc.collect()
        loop.stop()

    guard = loop.timer(GUARD, 0, lambda w, r: loop.stop())
    guard.start()
    pump()
    loop.start()
    guard.stop()
    worker.disconnect()
    client.disconnect()
    del worker, client
    gc.collect()

    print(f"requests {done['n']}/{JOBS}, work events {done['events']}, "
          f"big job ok {done.get('big')}, after restart {done.get('after_restart')!r}, "
          f"dropped object {done.get('gc')!r}")
    for key, count in sorted(done["errors"].items()):
        print(f"  {count:5d}  {key}")
    ok = (done["n"] == JOBS and done.get("big") and
          done.get("after_restart") == b"niaga" and done.get("gc") == "disconnected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
