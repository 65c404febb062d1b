"""A throwaway local gearmand for the tests, `make demo` and bench/.

Starts the real server (Debian: gearman-job-server) on a free loopback port and
stops it by its own process handle, never by name. Not part of the public API.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["LocalGearmand", "GearmandMissing", "find_gearmand", "free_port"]


class GearmandMissing(RuntimeError):
    """No gearmand binary on this machine."""


def find_gearmand() -> str:
    path = os.environ.get("GEARMAND") or shutil.which("gearmand")
    if not path:
        for candidate in ("/usr/sbin/gearmand", "/usr/local/sbin/gearmand"):
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if not path:
        raise GearmandMissing(
            "gearmand not found: install it (Debian: apt-get install gearman-job-server)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ask(host: str, port: int, line: bytes, timeout: float = 1.0) -> bytes:
    """One admin command over a plain socket (used to wait for readiness)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(line)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply


class LocalGearmand:
    """``with LocalGearmand() as g: ... g.port``; extra gearmand flags in args.

    ``threads`` defaults to 1 (-t 1), as the benchmarks are specified.
    ``port`` may be fixed to restart a server on the same address.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 threads: int = 1, args: tuple[str, ...] = ()):
        self.host = host
        self.port = port
        self.threads = threads
        self.args = tuple(args)
        self.proc: subprocess.Popen | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self, timeout: float = 10.0) -> LocalGearmand:
        binary = find_gearmand()
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="gearman_ev-")
        fixed = self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            port = self.port if fixed else free_port(self.host)
            proc = subprocess.Popen(
                [binary, "--listen", self.host, "--port", str(port),
                 "--threads", str(self.threads),
                 # A short prefix: handles must fit 63 bytes (PROTOCOL.md 4.1).
                 "--job-handle-prefix", "H:t",
                 "--pid-file", os.path.join(self._dir.name, f"gearmand-{port}.pid"),
                 "--log-file", os.path.join(self._dir.name, f"gearmand-{port}.log"),
                 *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            if self._wait_ready(proc, port, deadline):
                self.proc, self.port = proc, port
                return self
            proc.kill()
            proc.wait()
            if fixed or time.monotonic() > deadline:
                raise RuntimeError(f"gearmand did not start on {self.host}:{port}")
            # Someone took the free port between our probe and gearmand's bind.

    def _wait_ready(self, proc, port, deadline) -> bool:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                if ask(self.host, port, b"version\r\n").startswith(b"OK"):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalGearmand:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
