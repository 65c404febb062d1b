"""``gearman-ev work``: serve a function by running a command per job (API.md 13).

Each job's workload goes to COMMAND's stdin and its stdout becomes the result;
a non-zero exit is WORK_FAIL; with ``--stream`` each stdout chunk goes out as
WORK_DATA as it comes. Without COMMAND the worker echoes the workload.

Everything runs on one libev loop, no threads: the child's pipes are
non-blocking and watched with ev.Io, its exit is noticed through an ev.Signal
on SIGCHLD, and SIGTERM/SIGINT arrive as ev.Signal events too.

What must stay true here:
- At most ``--concurrency`` commands run at once. A job is finished (one
  terminal packet) only once its command has both closed stdout and exited.
- A job that reached us is run, never handed back. So no connection has
  more GRABs out than there are free slots (and jobs left under
  ``--max-jobs``); with several servers each may claim the same slot, and a
  job that then arrives waits for one (the many-server pool will share one
  budget). On SIGTERM/SIGINT the worker stops grabbing, runs what it already
  holds to the end, reads the answers to the GRABs still out (an ECHO round
  trip behind them), and exits 0 only then. A second signal stops at once:
  the server requeues what is left.
- Commands run in their own session: a Ctrl-C at the terminal reaches the
  worker, which finishes them, rather than killing them mid-job.
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess

from .. import GearmanError, Job, ev
from ._servers import Server, UsageError, connect, say

__all__ = ["run"]

#: Bytes read from a command's stdout per readable event (one WORK_DATA chunk
#: with --stream); the pipe itself holds 64 KiB on Linux.
READ_SIZE = 64 * 1024

#: Bytes written to a command's stdin per writable event.
WRITE_SIZE = 64 * 1024

#: How long, once the last job is done, the worker waits for its servers to
#: confirm they have read every result (an ECHO round trip) before it exits
#: anyway: a server that went away cannot take them.
SYNC_TIMEOUT = 5.0


def run(args: argparse.Namespace, specs: list[str]) -> int:
    loop = ev.default_loop()
    worker = _Worker(args, loop)
    # reconnect: a worker outlives a gearmand restart; abilities are re-sent.
    worker.servers = connect(specs, loop, reconnect=True,
                             on_error=worker.on_server_error,
                             on_connect=worker.on_server_connect,
                             on_disconnect=worker.on_server_disconnect)
    try:
        worker.start()
    except (TypeError, ValueError) as exc:  # e.g. a function name with a space
        raise UsageError(str(exc)) from None
    loop.start()
    return worker.finish()


class _Task:
    """One job and, with a COMMAND, the process that runs it."""

    __slots__ = ("index", "session", "job", "proc", "reader", "writer", "feed", "chunks", "eof")

    def __init__(self, index: int, session: int, job: Job) -> None:
        self.index = index        # which server the job came from
        self.session = session    # ...on which of its connections
        self.job = job
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: ev.Io | None = None   # on the command's stdout
        self.writer: ev.Io | None = None   # on its stdin, while workload is left
        self.feed: memoryview | None = None  # the workload not yet written
        self.chunks: list[bytes] = []
        self.eof = False


class _Worker:
    def __init__(self, args: argparse.Namespace, loop: ev.Loop) -> None:
        self.loop = loop
        self.function = os.fsencode(args.function)  # the bytes the shell passed
        self.command: list[str] | None = args.command or None
        self.concurrency = args.concurrency
        self.max_jobs = args.max_jobs
        self.stream = args.stream
        self.servers: list[Server] = []
        self.in_flight: list[int] = []  # per server: jobs taken on this connection, not finished
        self.sessions: list[int] = []   # per server: connections lost so far
        self.tasks: set[_Task] = set()  # running
        self.held: collections.deque[_Task] = collections.deque()  # waiting for a free slot
        self.taken = 0
        self.finished = 0
        self.stopping = False
        self.signalled = False
        self.aborted = False
        self.syncing = 0            # ECHO answers still due in this round
        self.sync_round = 0
        self.sync_mark = 0          # jobs finished when the round began
        self.said: dict[str, str] = {}  # server name -> last error said
        self.watchers = [loop.signal(signal.SIGCHLD, self._on_sigchld)]
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.watchers.append(loop.signal(signum, self._on_stop_signal))
        self.sync_timer = loop.timer(SYNC_TIMEOUT, 0, self._on_sync_timeout)

    # ===== Start, the grab budget, stop =====

    def start(self) -> None:
        self.in_flight = [0] * len(self.servers)
        self.sessions = [0] * len(self.servers)
        for watcher in self.watchers:
            watcher.start()
        for index, server in enumerate(self.servers):
            def arrived(job: Job, index: int = index) -> None:
                self._arrived(index, job)

            server.g.register_function(self.function, arrived, async_=True)
        self._regrab()

    def _regrab(self) -> None:
        """Let each connection hold at most the free slots in GRABs.

        ``work(concurrency=c)`` keeps c - (its jobs in flight) GRABs out, so
        c = its jobs + free slots. Called with the counts already showing a
        finished job and before that job's terminal packet, so the library
        never sees more room than there is. With several servers each may
        claim the same free slot; a job that then arrives waits in ``held``.
        """
        free = self.concurrency - len(self.tasks) - len(self.held)
        if self.max_jobs:
            free = min(free, self.max_jobs - self.taken)
        for index, server in enumerate(self.servers):
            if self.stopping or free <= 0:
                server.g.work_stop()
            else:
                server.g.work(concurrency=self.in_flight[index] + free)

    def _on_stop_signal(self, watcher: ev.Signal, revents: int) -> None:
        name = signal.Signals(watcher.signum).name
        if self.aborted:
            return
        if self.signalled:
            say(f"{name} again: stopping now; the server requeues the "
                f"{len(self.tasks) + len(self.held)} unfinished job(s)")
            self.aborted = True
            for task in self.tasks:
                _kill(task.proc)
            self.loop.stop()
            return
        self.signalled = True
        if self.tasks or self.held:
            say(f"{name}: finishing {len(self.tasks) + len(self.held)} job(s), then exiting")
        self._begin_stop()

    def _begin_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        for server in self.servers:
            server.g.work_stop()
        self._maybe_exit()

    def _maybe_exit(self) -> None:
        """Once stopping and idle: an ECHO on every connection. Its answer
        comes after those of any GRAB sent before, and proves the server has
        read every result sent before it."""
        if not self.stopping or self.tasks or self.held or self.syncing or self.aborted:
            return
        self.sync_round += 1
        self.sync_mark = self.finished
        self.syncing = len(self.servers)
        self.sync_timer.stop()
        self.sync_timer.start()
        for server in self.servers:
            if not server.g.is_connected:  # down: nothing of ours can reach it now
                self.syncing -= 1
                continue

            def synced(data: bytes | None, err: str | None, token: int = self.sync_round) -> None:
                self._synced(token)

            try:
                server.g.echo(b"", synced)
            except GearmanError:
                self.syncing -= 1
        if self.syncing == 0:
            self._exit()

    def _synced(self, token: int) -> None:
        if token != self.sync_round:
            return  # an answer to a round the timer gave up on
        self.syncing -= 1
        if self.syncing:
            return
        if self.tasks or self.held or self.finished != self.sync_mark:
            # A GRAB sent before the stop brought a job (or one finished since
            # the ECHO went out): run it, then confirm again.
            self._maybe_exit()
            return
        self._exit()

    def _on_sync_timeout(self, watcher: ev.Timer, revents: int) -> None:
        self.sync_round += 1  # answers still due no longer count
        self.syncing = 0
        self._exit()

    def _exit(self) -> None:
        if self.tasks or self.held:
            return  # a job came in after all: its end calls _maybe_exit again
        self.loop.stop()

    def finish(self) -> int:
        """After the loop: release everything; the exit status."""
        self.sync_timer.stop()
        for watcher in self.watchers:
            watcher.stop()
        for task in list(self.tasks):
            _kill(task.proc)
            self._close(task)
            if task.proc is not None:
                task.proc.wait()
        for server in self.servers:
            server.g.disconnect()
        return 1 if self.aborted else 0

    # ===== Servers =====

    def on_server_error(self, server: Server, err: str) -> None:
        # reconnect retries every second: say each new trouble once, not each retry
        if self.said.get(server.name) != err:
            self.said[server.name] = err
            say(f"{server.name}: {err}")

    def on_server_connect(self, server: Server) -> None:
        if self.said.pop(server.name, None) is not None:
            say(f"{server.name}: connected")

    def on_server_disconnect(self, server: Server) -> None:
        # Its jobs still running are stale now (the server requeued them) and
        # the library counts none in flight on the next connection: neither
        # do we, or it would be let grab more than the free slots.
        index = self.servers.index(server)
        self.sessions[index] += 1
        self.in_flight[index] = 0
        self._regrab()

    # ===== Jobs =====

    def _arrived(self, index: int, job: Job) -> None:
        self.taken += 1
        self.in_flight[index] += 1
        task = _Task(index, self.sessions[index], job)
        if len(self.tasks) < self.concurrency:
            self._start(task)
        else:
            self.held.append(task)
        self._regrab()
        if self.max_jobs and self.taken >= self.max_jobs:
            self._begin_stop()

    def _start(self, task: _Task) -> None:
        self.tasks.add(task)
        if self.command is None:
            if self.stream:
                self._send_data(task, task.job.workload)
                self._done(task, True, b"")
            else:
                self._done(task, True, task.job.workload)
            return
        try:
            # start_new_session: Ctrl-C's SIGINT to the terminal's process
            # group must not kill a command mid-job (see the module docstring).
            proc = subprocess.Popen(self.command, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            say(f"cannot run {self.command[0]!r}: {exc.strerror or exc}")
            self._done(task, False, b"")
            return
        assert proc.stdin is not None and proc.stdout is not None  # both PIPE
        task.proc = proc
        out_fd = proc.stdout.fileno()
        os.set_blocking(out_fd, False)
        task.reader = self.loop.io(out_fd, ev.EV_READ, self._on_output, task)
        task.reader.start()
        os.set_blocking(proc.stdin.fileno(), False)
        task.feed = memoryview(task.job.workload)
        self._write_input(task)
        if task.feed is not None:
            task.writer = self.loop.io(proc.stdin.fileno(), ev.EV_WRITE, self._on_writable, task)
            task.writer.start()

    def _write_input(self, task: _Task) -> None:
        """Write what the pipe takes now; close stdin once all is written (or
        the command stopped reading: its exit status decides the job)."""
        assert task.proc is not None and task.proc.stdin is not None  # a started command
        fd = task.proc.stdin.fileno()
        try:
            while task.feed:
                written = os.write(fd, task.feed[:WRITE_SIZE])
                task.feed = task.feed[written:]
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the command exited or closed its stdin
            pass
        self._close_input(task)

    def _on_writable(self, watcher: ev.Io, revents: int) -> None:
        self._write_input(watcher.data)

    def _close_input(self, task: _Task) -> None:
        task.feed = None
        if task.writer is not None:
            task.writer.stop()
            task.writer = None
        if task.proc is not None and task.proc.stdin is not None \
                and not task.proc.stdin.closed:
            try:
                task.proc.stdin.close()
            except OSError:
                pass

    def _on_output(self, watcher: ev.Io, revents: int) -> None:
        task = watcher.data
        try:
            chunk = os.read(watcher.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            if self.stream:
                self._send_data(task, chunk)
            else:
                task.chunks.append(chunk)
            return
        watcher.stop()
        task.reader = None
        task.proc.stdout.close()
        task.eof = True
        self._check(task)

    def _send_data(self, task: _Task, data: bytes) -> None:
        try:
            task.job.send_data(data)
        except GearmanError:
            pass  # its connection dropped: the server has requeued the job

    def _on_sigchld(self, watcher: ev.Signal, revents: int) -> None:
        # One SIGCHLD may stand for several exits: ask every running command.
        for task in list(self.tasks):
            if task.proc is not None and task.proc.returncode is None \
                    and task.proc.poll() is not None:
                self._check(task)

    def _check(self, task: _Task) -> None:
        proc = task.proc
        assert proc is not None and self.command is not None  # only a command's task comes here
        if not task.eof or proc.returncode is None:
            return  # the job ends when both have happened
        self._close_input(task)
        if proc.returncode != 0:
            how = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exit status {proc.returncode}")
            say(f"job {task.job.handle}: {self.command[0]} ended with {how}")
        self._done(task, proc.returncode == 0, b"".join(task.chunks))

    def _close(self, task: _Task) -> None:
        self._close_input(task)
        if task.reader is not None:
            task.reader.stop()
            task.reader = None
            assert task.proc is not None and task.proc.stdout is not None  # it had a reader
            task.proc.stdout.close()

    def _done(self, task: _Task, ok: bool, result: bytes) -> None:
        """The job's command is over: free its slot, then send its result."""
        self.tasks.discard(task)
        if task.session == self.sessions[task.index]:
            self.in_flight[task.index] -= 1
        self.finished += 1
        while self.held and not self.aborted:
            waiting = self.held.popleft()
            if waiting.session == self.sessions[waiting.index]:
                self._start(waiting)
                break
            # Its connection dropped while it waited: the server has given it
            # to another worker already; running it would be wasted.
        self._regrab()
        job = task.job
        try:
            if ok:
                job.complete(result)
            else:
                job.fail()
        except GearmanError as exc:
            # "stale job": its connection dropped, the server gave the job to
            # another worker; nothing left to report it on.
            say(f"job {job.handle}: {exc}")
        except ValueError as exc:  # a result over MAX_PACKET
            say(f"job {job.handle}: {exc}")
            job.fail()
        self._maybe_exit()


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a command and whatever it started (its own session)."""
    if proc is None or proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
