"""``gearman-ev submit``: queue jobs and print what comes back (API.md 13).

What must stay true here:
- Workloads and results are bytes end to end: the workload is the argument's
  own bytes (``os.fsencode``, so any byte a shell can pass survives) or stdin
  read in binary; results go to stdout's binary buffer unchanged, with no
  newline added to a single job's result.
- With ``-n N`` the N copies are pipelined on the connection(s) and the
  results come out one per line in submission order, whatever order the jobs
  finish in; a failed job leaves its line empty, so line K stays job K.
- Exit status 0 only when every job succeeded; each distinct failure is said
  once on stderr.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from typing import Any, BinaryIO

from .. import ev
from ._servers import CONNECT_TIMEOUT, Server, UsageError, connect, say

__all__ = ["run"]

#: Results are written out in batches of about this many bytes: 10,000 small
#: results then cost a handful of writes, not 10,000.
OUT_BATCH = 64 * 1024

_METHODS = {
    ("normal", False): "submit_job", ("high", False): "submit_job_high",
    ("low", False): "submit_job_low", ("normal", True): "submit_job_bg",
    ("high", True): "submit_job_high_bg", ("low", True): "submit_job_low_bg",
}


def run(args: argparse.Namespace, specs: list[str]) -> int:
    loop = ev.default_loop()
    if args.workload is not None:
        workload = os.fsencode(args.workload)
    else:
        workload = sys.stdin.buffer.read()
    priority = "high" if args.high else "low" if args.low else "normal"
    # exceptions=True: a worker's WORK_EXCEPTION text reaches us (and stderr)
    # instead of being turned into a bare WORK_FAIL by gearmand.
    servers = connect(specs, loop, exceptions=True,
                      connect_timeout=args.timeout or CONNECT_TIMEOUT,
                      command_timeout=args.timeout or 0)
    batch = _Batch(args, servers, loop, sys.stdout.buffer)
    try:
        batch.submit_all(_METHODS[priority, args.bg], workload)
    except (TypeError, ValueError) as exc:  # refused locally, before any I/O
        raise UsageError(str(exc)) from None
    if batch.left:
        loop.start()
    batch.flush()
    for server in servers:
        server.g.disconnect()
    if batch.broken:
        raise BrokenPipeError  # main() ends quietly with status 1
    return batch.report()


class _Batch:
    """N submissions, their results in order, and their failures."""

    def __init__(self, args: argparse.Namespace, servers: list[Server], loop: ev.Loop,
                 out: BinaryIO) -> None:
        self.args = args
        self.servers = servers
        self.loop = loop
        self.out = out
        self.n = args.n
        self.left = args.n
        self.results: list[bytes | None] = [None] * args.n   # bytes once the job is over
        self.chunks: dict[int, list[bytes]] = {}      # WORK_DATA held for -n > 1
        self.exceptions: dict[int, bytes] = {}
        self.failures: list[tuple[int, Server, str]] = []   # (index, server, err)
        self.next_out = 0
        self.pending_out: list[bytes] = []
        self.pending_size = 0
        self.broken = False                    # stdout's reader went away

    def submit_all(self, method_name: str, workload: bytes) -> None:
        args = self.args
        # Names as the bytes the shell passed (os.fsencode undoes Python's
        # decoding of argv), like the workload.
        function = os.fsencode(args.function)
        unique = None if args.unique is None else os.fsencode(args.unique)
        for index in range(self.n):
            # Round-robin over the servers, the pool's rule for jobs without a
            # unique key (API.md 11).
            server = self.servers[index % len(self.servers)]
            method = getattr(server.g, method_name)

            def done(result: Any, err: str | None, index: int = index,
                     server: Server = server) -> None:
                self._done(index, server, result, err)

            if args.bg:
                method(function, workload, done, unique=unique)
            else:
                method(function, workload, done, unique=unique,
                       timeout=args.timeout,
                       on_data=lambda data, index=index: self._data(index, data),
                       on_status=lambda num, den, index=index: self._status(index, num, den),
                       on_warning=lambda data, index=index: self._warning(index, data),
                       on_exception=lambda data, index=index: self._exception(index, data))

    def _label(self, index: int) -> str:
        return f"job {index + 1} " if self.n > 1 else ""

    def _data(self, index: int, data: bytes) -> None:
        if self.n == 1:
            # One job: its data is its output as it comes (a streaming worker).
            self._write(data)
        else:
            self.chunks.setdefault(index, []).append(data)

    def _status(self, index: int, num: str, den: str) -> None:
        if self.args.status:
            print(f"{self._label(index)}status: {num}/{den}", file=sys.stderr, flush=True)

    def _warning(self, index: int, data: bytes) -> None:
        sys.stderr.buffer.write(f"{self._label(index)}warning: ".encode() + data + b"\n")
        sys.stderr.buffer.flush()

    def _exception(self, index: int, data: bytes) -> None:
        self.exceptions[index] = data

    def _done(self, index: int, server: Server, result: Any, err: str | None) -> None:
        # result: a foreground job's bytes, a background job's handle (str),
        # or None with err.
        if err is not None:
            self.failures.append((index, server, err))
            result = b""
        elif self.args.bg:
            result = result.encode("utf-8", "surrogateescape")
        if self.n > 1 or self.args.bg:
            chunks = self.chunks.pop(index, None)
            if chunks:
                result = b"".join(chunks) + result
            result += b"\n"
        self.results[index] = result
        self._write_ready()
        self.left -= 1
        if self.left == 0:
            self.loop.stop()

    def _write_ready(self) -> None:
        """Move the results that are next in submission order to the output."""
        results = self.results
        while self.next_out < self.n:
            data = results[self.next_out]
            if data is None:
                break  # not over yet: what follows waits for it
            results[self.next_out] = b""  # written: keep the slot, drop the bytes
            self.next_out += 1
            self.pending_out.append(data)
            self.pending_size += len(data)
        if self.pending_size >= OUT_BATCH:
            self.flush()

    def flush(self) -> None:
        data = b"".join(self.pending_out)
        self.pending_out.clear()
        self.pending_size = 0
        self._write(data)

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            if data:
                self.out.write(data)
            self.out.flush()
        except BrokenPipeError:
            # Nobody reads the results any more (`| head`): stop here. (Raised
            # in a loop callback it would only be logged, and the loop go on.)
            self.broken = True
            self.loop.stop()

    def report(self) -> int:
        """Say each distinct failure once; the exit status."""
        if not self.failures:
            return 0
        counts: collections.Counter[str] = collections.Counter()
        for index, server, err in self.failures:
            reason = server.why(err)
            if reason != err:  # the connection's own error: say which server
                text = f"{server.name}: {reason}"
            elif err == "exception" and index in self.exceptions:
                data = self.exceptions[index].rstrip(b"\0").decode("utf-8", "replace")
                text = f"job raised an exception: {data}"
            else:
                text = reason
            counts[text] += 1
        for text, count in counts.items():
            say(text if self.n == 1 else f"{text} ({count} of {self.n} jobs)")
        return 1
