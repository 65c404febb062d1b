"""A user program over the whole public API of gearman_ev, written and typed
as a user would write it: gearman_ev (Gearman, Job, the exceptions),
gearman_ev.ev, gearman_ev.errors and gearman_ev.testing.

It is type-checked, never run: tests/test_typing.py runs ``mypy --strict`` on
it, and nothing below is called (the module only defines functions).

Two kinds of check:
- what a correct program does must pass, and ``assert_type`` pins what the
  library hands back (a property typed Any would fail it);
- a line ending in ``# type: ignore[code]`` is a mistake the types must
  catch. Under ``--strict`` an ignore that is not needed is itself an error
  (warn_unused_ignores), so each of those lines fails the check the day the
  mistake goes through unflagged.
"""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import threading
from typing import Any

from typing_extensions import assert_type

import gearman_ev
from gearman_ev import (MAX_PACKET, CommandTimeout, ConnectionLost, Gearman, GearmanError, Job,
                        JobException, JobFailed, JobTimeout, ServerError, errors, ev)
from gearman_ev.testing import (MISSING_MESSAGE, SBIN_CANDIDATES, GearmandMissing,
                                LocalGearmand, find_gearmand, free_port, gearmand_fixture)

# ===== gearman_ev.ev: loops and watchers =====


def every_constant() -> tuple[int, ...]:
    return (ev.EV_READ, ev.EV_WRITE, ev.EV_TIMER, ev.EV_SIGNAL, ev.EV_PREPARE, ev.EV_ASYNC,
            ev.EV_ERROR, ev.EVBREAK_CANCEL, ev.EVBREAK_ONE, ev.EVBREAK_ALL, ev.EVRUN_NOWAIT,
            ev.EVRUN_ONCE, ev.EV_MINPRI, ev.EV_MAXPRI, ev.EVFLAG_AUTO, ev.EVFLAG_NOENV,
            ev.EVFLAG_FORKCHECK, ev.EVFLAG_SIGNALFD, ev.EVFLAG_NOSIGMASK, ev.EVBACKEND_SELECT,
            ev.EVBACKEND_POLL, ev.EVBACKEND_EPOLL)


def use_loops() -> None:
    loop = ev.default_loop()
    assert_type(loop, ev.Loop)
    own = ev.Loop(ev.EVFLAG_AUTO | ev.EVFLAG_NOENV)
    ev.Loop()
    major, minor = ev.version()
    print(f"libev {major}.{minor}")
    assert_type(major, int)
    more = own.start()
    assert_type(more, bool)
    own.start(ev.EVRUN_ONCE)
    own.start(flags=ev.EVRUN_NOWAIT)
    own.stop()
    own.stop(ev.EVBREAK_ALL)
    assert_type(own.now(), float)
    own.update()
    assert_type(own.backend, int)
    assert_type(own.iteration, int)
    try:
        own.start()
    except ev.Error as exc:
        print(f"libev refused: {exc}")
    own.start("once")  # type: ignore[arg-type]
    ev.Loop(flags=None)  # type: ignore[arg-type]


def use_timers(loop: ev.Loop) -> None:
    def tick(watcher: ev.Timer, revents: int) -> None:
        assert revents & ev.EV_TIMER
        assert_type(watcher.repeat, float)
        watcher.repeat = 0.5
        watcher.again()
        print(f"{watcher.remaining:.3f}s to go; data={watcher.data!r}")
        watcher.loop.stop(ev.EVBREAK_ALL)

    timer = loop.timer(1.0, 0, tick, data={"ticks": 0}, priority=ev.EV_MAXPRI)
    assert_type(timer, ev.Timer)
    timer.set(0.25, 1)
    timer.start()
    timer.stop()
    assert_type(timer.remaining, float)
    ev.Timer(5, 0, loop, tick).start()  # the loop keeps it until it fires
    loop.timer(1, 0, lambda w, revents: w.again())
    loop.timer("1s", 0, tick)  # type: ignore[arg-type]


def use_io(loop: ev.Loop, sock: socket.socket) -> None:
    def readable(watcher: ev.Io, revents: int) -> None:
        if revents & ev.EV_READ:
            data = os.read(watcher.fd, 4096)
            if not data:
                watcher.stop()

    io = loop.io(sock, ev.EV_READ, readable)  # any object with fileno()
    io.set(sock.fileno(), ev.EV_READ | ev.EV_WRITE)
    assert_type(io.fd, int)
    assert_type(io.events, int)
    io.start()
    ev.Io(0, ev.EV_READ, loop, readable, data=None, priority=ev.EV_MINPRI)
    loop.io("stdin", ev.EV_READ, readable)  # type: ignore[arg-type]

    def on_timer(watcher: ev.Timer, revents: int) -> None:
        pass

    # A callback for one kind of watcher does not fit another ...
    loop.io(sock, ev.EV_READ, on_timer)  # type: ignore[arg-type]
    io.callback = on_timer  # type: ignore[assignment]
    # ... while one that takes any Watcher fits them all.
    io.callback = on_any
    loop.timer(1, 0, on_any)


def on_any(watcher: ev.Watcher, revents: int) -> None:
    assert_type(watcher.loop, ev.Loop)
    assert_type(watcher.active, bool)
    assert_type(watcher.pending, bool)
    assert_type(watcher.priority, int)
    print(watcher.data, watcher.callback)
    watcher.stop()
    if not watcher.active:
        watcher.priority = 1
        watcher.data = "anything"
        watcher.start()


def use_signals_and_friends(loop: ev.Loop) -> None:
    def on_term(watcher: ev.Signal, revents: int) -> None:
        print(f"signal {watcher.signum}")
        watcher.loop.stop()

    term = loop.signal(signal.SIGTERM, on_term)
    term.start()
    term.stop()
    assert_type(ev.Signal(signal.SIGHUP, loop, on_term).signum, int)

    def before_poll(watcher: ev.Prepare, revents: int) -> None:
        watcher.stop()

    loop.prepare(before_poll).start()
    ev.Prepare(loop, before_poll, priority=0)

    def woken(watcher: ev.Async, revents: int) -> None:
        assert_type(watcher.sent, bool)

    wake = loop.async_(woken, data=None, priority=0)
    wake.start()
    threading.Thread(target=wake.send).start()
    ev.Async(loop, woken).send()

    def report(what: str, count: int) -> None:
        print(what, count)

    loop.call_soon_threadsafe(loop.stop)
    loop.call_soon_threadsafe(report, "jobs", 3)
    loop.call_soon_threadsafe(report, 3, "jobs")  # type: ignore[arg-type]
    loop.call_soon_threadsafe(report, "jobs")  # type: ignore[arg-type]


# ===== gearman_ev: a client =====


def on_error(err: str) -> None:
    if err.startswith("connect: ") or err == errors.CONNECT_TIMEOUT:
        print("server down:", err)


def on_connect() -> None:
    print("connected")


def on_disconnect() -> None:
    print("disconnected")


def use_client(loop: ev.Loop, server: LocalGearmand) -> None:
    assert server.port is not None
    with Gearman(server.host, server.port, loop=loop, priority=1, keepalive=30,
                 connect_timeout=5.0, command_timeout=10, reconnect=True,
                 reconnect_delay=0.5, max_reconnect_attempts=3, exceptions=True,
                 client_id="typing-program", grab_unique=False, high_water=1 << 20,
                 on_error=on_error, on_connect=on_connect,
                 on_disconnect=on_disconnect) as g:
        assert_type(g, Gearman)

        def done(result: bytes | None, err: str | None) -> None:
            if err == errors.JOB_TIMEOUT:
                print("gave up waiting")
            elif err is not None:
                raise errors.exception_for(err)
            elif result is not None:
                print(result.decode())

        def on_data(chunk: bytes) -> None:
            print(len(chunk))

        def on_status(numerator: str, denominator: str) -> None:
            print(f"{numerator}/{denominator}")

        g.submit_job("reverse", b"hello", done, unique="u1", timeout=5.0, on_data=on_data,
                     on_warning=on_data, on_status=on_status, on_exception=on_data)
        g.submit_job_high(b"reverse", "text is sent as UTF-8", done)
        g.submit_job_low("reverse", bytearray(b"copied when queued"), cb=done, timeout=1)
        g.submit_job("reverse", memoryview(b"view"))

        def created(handle: str | None, err: str | None) -> None:
            if handle is not None:
                g.get_status(handle, status)

        def status(info: dict[str, Any] | None, err: str | None) -> None:
            if info is not None and info["known"]:
                print(info["numerator"], info["denominator"])

        g.submit_job_bg("mail", b"...", created, unique=b"u2")
        g.submit_job_high_bg("mail", b"...", created)
        g.submit_job_low_bg("mail", b"...")
        g.submit_job_epoch("mail", b"...", 2_000_000_000, created, unique="later")
        g.get_status_unique("u1", status)

        def echoed(data: bytes | None, err: str | None) -> None:
            print(data)

        def opted(ok: bool | None, err: str | None) -> None:
            print(ok, err)

        g.echo(b"ping", echoed)
        g.echo("ping")
        g.option("exceptions", opted)
        g.option(b"exceptions")

        # What the types refuse (API.md 3 and 5):
        g.submit_job("reverse", 123, done)  # type: ignore[arg-type]
        g.submit_job(42, b"x", done)  # type: ignore[arg-type]
        g.submit_job("reverse", b"x", lambda result: None)  # type: ignore[arg-type,misc]
        g.submit_job("reverse", b"x", created)  # type: ignore[arg-type]
        g.submit_job_bg("mail", b"x", done)  # type: ignore[arg-type]
        g.submit_job_bg("mail", b"x", on_data=on_data)  # type: ignore[call-arg]
        g.submit_job("reverse", b"x", on_status=on_data)  # type: ignore[arg-type]
        g.submit_job_epoch("mail", b"x", "tomorrow")  # type: ignore[arg-type]
        g.get_status("H:x:1", done)  # type: ignore[arg-type]
        g.echo(b"ping", opted)  # type: ignore[arg-type]
        Gearman("localhost", "4730")  # type: ignore[arg-type]
        Gearman(on_error=on_connect)  # type: ignore[arg-type]

        use_properties(g)


def use_properties(g: Gearman) -> None:
    assert_type(g.is_connected, bool)
    assert_type(g.reconnect_enabled, bool)
    assert_type(g.writable, bool)
    assert_type(g.pending_count, int)
    assert_type(g.waiting_count, int)
    assert_type(g.active_count, int)
    read_capacity, write_capacity = g.buffer_sizes
    assert_type(read_capacity, int)
    assert_type(write_capacity, int)
    g.priority = g.priority + 1
    g.keepalive = g.keepalive or 60.0
    g.connect_timeout = 2
    g.command_timeout = g.command_timeout * 2
    g.high_water = 0
    g.reconnect(True, delay=1.0, max_attempts=5)
    g.reconnect(False)
    g.on_error = on_error
    g.on_connect = on_connect
    g.on_disconnect = None
    g.on_drain = lambda: print("drained")
    if g.on_error is not None:
        g.on_error("told by hand")
    g.keepalive = "30"  # type: ignore[assignment]
    g.on_error = on_connect  # type: ignore[assignment]
    g.on_drain = on_error  # type: ignore[assignment]


def use_connections(loop: ev.Loop) -> None:
    g = Gearman(loop=loop)
    try:
        g.echo(b"ping")
    except GearmanError as exc:
        assert exc.err == errors.NOT_CONNECTED
    g.connect("127.0.0.1")
    g.disconnect()
    g.connect(b"::1", 4730)
    g.disconnect()
    g.connect_unix("/run/gearmand.sock")
    g.disconnect()
    g.connect_unix(pathlib.Path("/run/gearmand.sock"))
    g.connect_unix(b"/run/gearmand.sock")
    Gearman(path=pathlib.Path("/run/gearmand.sock"), loop=loop).disconnect()
    g.connect_unix(3)  # type: ignore[arg-type]


# ===== gearman_ev: admin =====


def use_admin(g: Gearman) -> None:
    def text(reply: str | None, err: str | None) -> None:
        if err is not None:
            print(ServerError(err).code if err.startswith("ERR ") else err)
        elif reply is not None:
            for line in reply.splitlines():
                print(line.split("\t"))

    g.admin("status", text)
    g.admin(b"show jobs", cb=text)
    g.server_status(text)
    g.server_workers(text)
    g.server_version(text)
    g.server_version()
    g.maxqueue("reverse", 100, text)
    g.shutdown_server(graceful=True, cb=text)
    g.shutdown_server()

    def reply_bytes(reply: bytes | None, err: str | None) -> None:
        pass

    g.server_status(reply_bytes)  # type: ignore[arg-type]
    g.maxqueue("reverse", "100")  # type: ignore[arg-type]


# ===== gearman_ev: a worker =====


def reverse(job: Job) -> bytes:
    assert_type(job.handle, str)
    assert_type(job.function, str)
    assert_type(job.unique, str)
    assert_type(job.workload, bytes)
    assert_type(job.data, bytes)
    assert_type(job.finished, bool)
    job.status(1, 2)
    job.status("50", "100")
    job.send_data(b"partial ")
    job.warning("careful")
    return job.workload[::-1]


def finish_later(job: Job) -> None:
    def finish(watcher: ev.Timer, revents: int) -> None:
        try:
            if job.workload == b"fail":
                job.fail()
            elif job.workload == b"raise":
                job.exception("ValueError: bad input")
            elif job.workload:
                job.complete(job.workload.upper())
            else:
                job.complete()
                job.complete(None)
        except GearmanError as exc:
            print(exc.err in (errors.STALE_JOB, errors.CLIENT_DESTROYED, errors.JOB_FINISHED))

    ev.default_loop().timer(0.1, 0, finish).start()
    job.complete(3.14)  # type: ignore[arg-type]
    job.send_data(None)  # type: ignore[arg-type]
    job.exception()  # type: ignore[call-arg]


def use_worker(g: Gearman) -> None:
    g.register_function("reverse", reverse)
    g.register_function(b"later", finish_later, timeout=30, async_=True)
    g.register_function("anything", lambda job: job.workload)
    g.can_do("manual", timeout=10.0)
    g.can_do("manual2")
    g.cant_do("manual")
    g.unregister_function("reverse")
    g.reset_abilities()
    g.set_client_id("worker-1")

    def idle() -> None:
        print("sleeping")

    g.work(idle)
    g.work(concurrency=4)
    g.work(on_idle=idle, concurrency=None)
    g.work_one(idle)
    g.work_one()
    g.work_stop()

    def grabbed(job: Job | None, err: str | None) -> None:
        if job is not None:
            job.complete(reverse(job))
        elif err == errors.NO_JOB:
            print("nothing to do")

    def yours(ok: bool | None, err: str | None) -> None:
        print(ok, err)

    g.grab_job(grabbed)
    g.all_yours(yours)
    g.all_yours()

    def no_job_parameter() -> bytes:
        return b""

    g.register_function("f", no_job_parameter)  # type: ignore[arg-type]
    g.register_function("f", reverse, timeout="30")  # type: ignore[arg-type]
    g.grab_job(yours)  # type: ignore[arg-type]
    g.work(idle, concurrency="4")  # type: ignore[arg-type]
    g.work(on_idle=reverse)  # type: ignore[arg-type]


# ===== gearman_ev.errors: err strings and exceptions =====


def every_err_string() -> tuple[str, ...]:
    return (errors.DISCONNECTED, errors.JOB_FAILED, errors.EXCEPTION, errors.COMMAND_TIMEOUT,
            errors.JOB_TIMEOUT, errors.NO_JOB, errors.NO_SERVER, errors.CONNECT_TIMEOUT,
            errors.CONNECTION_CLOSED, errors.INVALID_MAGIC, errors.PACKET_TOO_LARGE,
            errors.UNEXPECTED_ADMIN, errors.UNIX_PATH_TOO_LONG, errors.MAX_RECONNECTS,
            errors.PROTOCOL_ERROR, errors.NOT_CONNECTED, errors.ALREADY_CONNECTED,
            errors.CLIENT_DESTROYED, errors.STALE_JOB, errors.JOB_FINISHED,
            errors.USED_AFTER_FORK, errors.WRONG_THREAD, errors.WRITE_BUFFER_FULL,
            errors.CLIENT_CLOSED)


def use_errors(err: str, data: bytes | None) -> None:
    exc = errors.exception_for(err, data)
    assert_type(exc, GearmanError)
    assert_type(errors.exception_for(err), GearmanError)
    assert_type(exc.err, str)
    try:
        raise exc
    except JobException as e:
        assert_type(e.data, bytes)
    except ServerError as e:
        assert_type(e.code, str)
    except (JobTimeout, CommandTimeout) as e:
        timeout: TimeoutError = e
        print(timeout)
    except ConnectionLost as e:
        lost: ConnectionError = e
        print(lost)
    except JobFailed as e:
        print(e.err)
    except GearmanError as e:
        print(str(e))
    # The package root re-exports the same classes.
    assert gearman_ev.JobFailed is errors.JobFailed
    JobException(errors.EXCEPTION, b"trace")
    GearmanError("custom", 1, 2)
    errors.exception_for(b"job failed")  # type: ignore[arg-type]
    JobException(data="trace")  # type: ignore[arg-type]


def package_names() -> None:
    assert_type(MAX_PACKET, int)
    assert_type(gearman_ev.__version__, str)
    print(gearman_ev.Gearman, gearman_ev.Job, gearman_ev.GearmanError, gearman_ev.JobException,
          gearman_ev.JobTimeout, gearman_ev.CommandTimeout, gearman_ev.ConnectionLost,
          gearman_ev.ServerError, gearman_ev.MAX_PACKET, gearman_ev.errors, gearman_ev.ev)


# ===== gearman_ev.testing =====


def use_testing() -> None:
    binary = find_gearmand()
    assert_type(binary, str)
    assert_type(free_port(), int)
    free_port("::1")
    print(MISSING_MESSAGE, SBIN_CANDIDATES[0])
    try:
        with LocalGearmand() as server:
            assert_type(server, LocalGearmand)
            assert_type(server.host, str)
            assert_type(server.port, "int | None")
            assert_type(server.address, str)
            assert_type(server.running, bool)
            print(server.threads, server.args, server.proc)
            server.restart()
            server.stop()
            server.start(timeout=5.0)
            server.kill()
            server.start()
    except GearmandMissing as exc:
        print(exc)
    own = LocalGearmand(port=free_port(), host="127.0.0.1", threads=2,
                        args=("--verbose", "INFO")).start()
    own.stop(signal.SIGINT)
    own.close()
    LocalGearmand(port="4730")  # type: ignore[arg-type]


# In a conftest.py: more fixtures like the plugin's own `gearmand`.
gearmand_session = gearmand_fixture(scope="session")
gearmand_verbose = gearmand_fixture(missing="fail", args=("--verbose", "INFO"), threads=2)
gearmand_fixture(scope="galaxy")  # type: ignore[arg-type]


# A test in a user's test module, taking the plugin's fixture by name.
def uses_the_plugin_fixture(gearmand: LocalGearmand) -> None:
    loop = ev.Loop()
    results: list[bytes] = []
    with Gearman(gearmand.host, gearmand.port or 4730, loop=loop) as g:
        g.echo(b"hi", lambda data, err: results.append(data or b""))
        loop.start()
    gearmand.restart()
    gearmand.stop()
