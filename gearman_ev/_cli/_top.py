"""``gearman-ev top``: a live table of every server's functions (API.md 13).

Polls ``status`` on every server each ``--interval`` seconds and shows, per
server and function, QUEUED, RUNNING, WORKERS and JOBS/S. On a terminal the
table is redrawn in place with plain ANSI sequences (cursor home, erase line,
erase below) and ``q`` or Ctrl-C quits; when stdout is not a terminal each
poll is printed as plain lines under a time stamp. ``--once`` prints one
table and exits.

JOBS/S is worked out from successive polls, as the admin protocol has no
completion counter: how many jobs per second left the function's backlog
(queued + running at the previous poll, minus now, over the time between).
It is positive while the backlog drains, negative while it grows, and 0 for
a queue fed exactly as fast as it drains.

What must stay true here:
- A server that does not answer holds up nobody: each server has at most one
  ``status`` request out, and a poll is drawn once the servers asked in it
  have answered; a server that is down shows its error instead of rows.
- The terminal is given back as it was found (cursor shown, the terminal's
  mode restored) however top ends.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from typing import Any, Callable, TextIO

from .. import GearmanError, ev
from ._admin import StatusRow, parse_status
from ._servers import CONNECT_TIMEOUT, Server, connect, gather, say

__all__ = ["run"]

HEADER = ["SERVER", "FUNCTION", "QUEUED", "RUNNING", "WORKERS", "JOBS/S"]

# Plain ANSI (VT100) sequences: every terminal emulator has them.
HOME, ERASE_LINE, ERASE_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
CLEAR, HIDE_CURSOR, SHOW_CURSOR = "\x1b[2J", "\x1b[?25l", "\x1b[?25h"


def run(args: argparse.Namespace, specs: list[str]) -> int:
    loop = ev.default_loop()
    if args.once:
        return _once(loop, specs)
    return _Top(args, specs, loop, sys.stdout).run()


def _once(loop: ev.Loop, specs: list[str]) -> int:
    servers = connect(specs, loop, command_timeout=CONNECT_TIMEOUT)
    try:
        replies = gather(servers, loop, lambda g, cb: g.server_status(cb))
    finally:
        for server in servers:
            server.g.disconnect()
    rows: list[list[object]] = []
    failed = 0
    for server, (text, err) in zip(servers, replies):
        if err is not None:
            failed += 1
            say(f"{server.name}: {err}")
            rows.append([server.name, f"({err})"])
        else:
            rows.extend([server.name, r["function"], r["queued"], r["running"],
                         r["workers"], "-"] for r in _sorted(parse_status(text)))
    sys.stdout.write("".join(line + "\n" for line in _table(rows)))
    sys.stdout.flush()
    return 1 if failed else 0


def _sorted(rows: list[StatusRow]) -> list[StatusRow]:
    return sorted(rows, key=lambda r: r["function"])


def _table(rows: list[list[object]]) -> list[str]:
    """Rows of 6 cells (or 2: server and a message) as aligned lines."""
    cells = [HEADER] + [[str(c) for c in row] for row in rows]
    widths = [max((len(r[i]) for r in cells if len(r) == len(HEADER)), default=0)
              for i in range(len(HEADER))]
    lines = []
    for row in cells:
        if len(row) != len(HEADER):
            lines.append(f"{row[0].ljust(widths[0])}  {row[1]}")
            continue
        parts = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        parts += [c.rjust(w) for c, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(parts).rstrip())
    return lines


class _Top:
    def __init__(self, args: argparse.Namespace, specs: list[str], loop: ev.Loop,
                 out: TextIO) -> None:
        self.loop = loop
        self.out = out
        self.interval = args.interval
        self.tty = out.isatty()
        # reconnect: a server that goes away comes back into the table.
        self.servers = connect(specs, loop, reconnect=True,
                               reconnect_delay=min(1.0, self.interval),
                               command_timeout=max(CONNECT_TIMEOUT, 2 * self.interval))
        self.busy: set[Server] = set()  # servers with a status request out
        self.due: set[Server] = set()   # servers asked in this poll, not answered yet
        # server name -> parsed rows of its last answer
        self.rows: dict[str, list[StatusRow]] = {}
        # (server, function) -> (total, monotonic time)
        self.previous: dict[tuple[str, str], tuple[int, float]] = {}
        self.rates: dict[tuple[str, str], float] = {}  # (server, function) -> jobs/s
        self.drawn = False
        self.broken = False        # stdout's reader went away
        self.watchers: list[ev.Watcher] = [
            loop.timer(0, self.interval, self._poll),
            loop.signal(signal.SIGINT, self._quit),
            loop.signal(signal.SIGTERM, self._quit),
        ]
        if self.tty:
            self.watchers.append(loop.signal(signal.SIGWINCH, lambda w, r: self._draw()))

    def run(self) -> int:
        restore = self._keyboard()
        try:
            for watcher in self.watchers:
                watcher.start()
            self.loop.start()
        finally:
            for watcher in self.watchers:
                watcher.stop()
            for server in self.servers:
                server.g.disconnect()
            if restore is not None:
                restore()
            if self.tty and self.drawn and not self.broken:
                self.out.write(SHOW_CURSOR)
                self.out.flush()
        if self.broken:
            raise BrokenPipeError  # main() ends quietly with status 1
        return 0

    def _keyboard(self) -> Callable[[], None] | None:
        """Watch stdin for ``q``. On a terminal, switch it to cbreak mode (keys
        come one at a time, unechoed; Ctrl-C still signals) and return what
        puts it back."""
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return None
        restore = None
        if os.isatty(fd):
            import termios
            import tty
            saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)

            def restore() -> None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        self.watchers.append(self.loop.io(fd, ev.EV_READ, self._on_key))
        return restore

    def _on_key(self, watcher: ev.Io, revents: int) -> None:
        try:
            data = os.read(watcher.fd, 64)
        except OSError:
            data = b""
        if not data:
            watcher.stop()  # stdin closed (e.g. </dev/null): only signals quit
        elif b"q" in data.lower():
            self.loop.stop()

    def _quit(self, watcher: ev.Signal, revents: int) -> None:
        self.loop.stop()

    # ===== Polling =====

    def _poll(self, watcher: ev.Timer, revents: int) -> None:
        asked = [s for s in self.servers if s not in self.busy]
        if not asked:
            self._draw()
            return
        self.due = set(asked)
        for server in asked:
            self.busy.add(server)

            def answer(text: str | None, err: str | None, server: Server = server) -> None:
                self._answer(server, text, err)

            try:
                server.g.server_status(answer)
            except GearmanError as exc:
                self._answer(server, None, str(exc))

    def _answer(self, server: Server, text: Any, err: str | None) -> None:
        # text: the reply (str) when err is None
        self.busy.discard(server)
        now = time.monotonic()
        if err is None:
            rows = _sorted(parse_status(text))
            self.rows[server.name] = rows
            for row in rows:
                key = (server.name, row["function"])
                total = row["queued"] + row["running"]
                before = self.previous.get(key)
                if before is not None and now > before[1]:
                    self.rates[key] = (before[0] - total) / (now - before[1])
                self.previous[key] = (total, now)
        else:
            # Drawn from server.error once on_error has said why (it fires
            # after the callbacks it fails); the old rows would mislead.
            self.rows.pop(server.name, None)
        if server in self.due:  # (a late answer to an earlier poll only updates)
            self.due.discard(server)
            if not self.due:
                # on_error runs after this callback: draw once it has.
                self.loop.timer(0, 0, lambda w, r: self._draw()).start()

    # ===== Drawing =====

    def _lines(self) -> list[str]:
        rows: list[list[object]] = []
        for server in self.servers:
            if server.name not in self.rows:
                rows.append([server.name, f"({server.error or 'waiting for an answer'})"])
                continue
            for row in self.rows[server.name]:
                rate = self.rates.get((server.name, row["function"]))
                rows.append([server.name, row["function"], row["queued"], row["running"],
                             row["workers"], "-" if rate is None else f"{rate:.1f}"])
        stamp = time.strftime("%H:%M:%S")
        count = len(self.servers)
        title = (f"gearman-ev top  {count} server{'s' if count > 1 else ''}  "
                 f"every {self.interval:g}s  {stamp}")
        if not self.tty:
            return [title] + _table(rows)  # one block per poll, blank lines between
        return [title + "  (q: quit)", ""] + _table(rows)

    def _draw(self) -> None:
        lines = self._lines()
        if not self.tty:
            self._write("\n".join(lines) + "\n\n")
            return
        size = shutil.get_terminal_size()
        # A terminal that reports no size (a fresh pty) gets the classic 80x24.
        height = size.lines if size.lines > 2 else 24
        width = size.columns if size.columns > 0 else 80
        if len(lines) > height - 1:
            hidden = len(lines) - (height - 2)
            lines = lines[:height - 2] + [f"({hidden} more rows)"]
        lines = [line[:width] for line in lines]
        head = HIDE_CURSOR + CLEAR if not self.drawn else ""
        self.drawn = True
        self._write(head + HOME + "".join(line + ERASE_LINE + "\n" for line in lines)
                    + ERASE_BELOW)

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): quit. (Raised in a loop
            # callback it would only be logged, and the loop go on.)
            self.broken = True
            self.loop.stop()
