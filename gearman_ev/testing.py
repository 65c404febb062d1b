"""gearman_ev.testing: a throwaway gearmand for tests, and the pytest plugin.

``LocalGearmand`` starts the real server (Debian: gearman-job-server) on a free
loopback port and stops it by its own process handle, never by name. Installed
with the package, this module is also a pytest plugin (entry point ``pytest11``)
that provides the fixture ``gearmand``; ``gearmand_fixture()`` makes more of
it (another scope, other server flags).

What must stay true here:
- Importing this module never needs pytest: ``LocalGearmand`` is for any code.
- A server is only ever signalled through the Popen handle that started it:
  no pid files read back, no process looked up by name.
- With no gearmand binary, the public fixture skips and says which package to
  install; it never passes silently. Callers that must not skip (this
  project's own suite) ask for ``missing="fail"``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Literal

__all__ = ["LocalGearmand", "GearmandMissing", "find_gearmand", "free_port",
           "gearmand_fixture", "MISSING_MESSAGE", "SBIN_CANDIDATES"]

#: Why a test that needs gearmand cannot run, and what to do about it.
MISSING_MESSAGE = ("gearmand not found: install the Debian package gearman-job-server "
                   "(apt-get install gearman-job-server), or set GEARMAND to its path")


#: Where gearmand is looked for when PATH does not have it.
SBIN_CANDIDATES = ("/usr/sbin/gearmand", "/usr/local/sbin/gearmand")


class GearmandMissing(RuntimeError):
    """No gearmand binary on this machine."""


def find_gearmand() -> str:
    """The gearmand binary: $GEARMAND, else PATH, else the usual sbin places
    (Debian installs it in /usr/sbin, which a user's PATH often lacks).
    Raises GearmandMissing."""
    named = os.environ.get("GEARMAND")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise GearmandMissing(f"GEARMAND={named} is not an executable file; "
                                  + MISSING_MESSAGE)
        return named
    path = shutil.which("gearmand")
    if not path:
        for candidate in SBIN_CANDIDATES:
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if not path:
        raise GearmandMissing(MISSING_MESSAGE)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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
    """A gearmand of your own on a loopback port, for tests and demos.

    ``with LocalGearmand() as server:`` starts it and stops it on exit;
    ``server.host``, ``server.port`` and ``server.address`` (``"host:port"``)
    say where it listens. ``restart()`` stops it and starts it again on the
    same port (for reconnect tests); ``stop()`` stops it (``start()`` brings it
    back on that port); ``kill()`` stops it with SIGKILL, as a crash would.

    Args:
        port: a fixed port; default a free one picked at start.
        host: the address to listen on (default ``127.0.0.1``).
        threads: gearmand's ``--threads`` (default 1).
        args: extra gearmand flags, e.g. ``("--verbose", "INFO")``.

    Raises (from ``start()`` and ``with``): GearmandMissing when there is no
    gearmand binary; RuntimeError when it does not answer within ``timeout``.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 threads: int = 1, args: tuple[str, ...] = ()) -> None:
        self.host = host
        #: The port; None before the first start() when none was given.
        self.port = port
        self.threads = threads
        self.args = tuple(args)
        #: The gearmand process while it runs.
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def address(self) -> str:
        """``"host:port"`` (``"[v6addr]:port"`` for IPv6): what ``gearman-ev -s``
        and ``GEARMAN_SERVERS`` take."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the gearmand process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> LocalGearmand:
        """Start the server and wait until it answers ``version``."""
        binary = find_gearmand()
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="gearman_ev-")
        fixed = self.port is not None
        deadline = time.monotonic() + timeout
        while True:
            port = self.port if self.port is not None else free_port(self.host)
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

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
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
        """Stop the server (SIGTERM, SIGKILL after 5 s); the port stays ours
        for a later ``start()``. Does nothing when it is not running."""
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
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its log and pid files."""
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalGearmand:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalGearmand {self.address} {state}>"


# ===== The pytest plugin =====

def gearmand_fixture(
        scope: Literal["session", "package", "module", "class", "function"] = "function", *,
        missing: Literal["skip", "fail"] = "skip", **options: Any,
) -> Any:
    """Make a pytest fixture that yields a started ``LocalGearmand``.

    The fixture's name is the name you assign it to, in a conftest.py or a
    test module::

        from gearman_ev.testing import gearmand_fixture
        gearmand_session = gearmand_fixture(scope="session")   # one for all tests
        gearmand_verbose = gearmand_fixture(args=("--verbose", "INFO"))

    Args:
        scope: the pytest scope (``"function"``, ``"module"``, ``"session"``...).
        missing: with no gearmand binary, ``"skip"`` the test (naming the
            package to install) or ``"fail"`` it (for a CI that must not go
            green without running anything).
        options: passed to ``LocalGearmand`` (``threads``, ``args``, ``host``).
    """
    # Returns Any: the type of what pytest.fixture returns changed across pytest
    # versions (the function itself before 8.4, a FixtureFunctionDefinition since).
    import pytest  # here, not at the top: LocalGearmand must work without pytest

    if missing not in ("skip", "fail"):
        raise ValueError("missing must be 'skip' or 'fail'")

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[LocalGearmand]:
        server = LocalGearmand(**options)
        try:
            server.start()
        except GearmandMissing as exc:
            if missing == "fail":
                pytest.fail(str(exc), pytrace=False)
            pytest.skip(str(exc))
        try:
            yield server
        finally:
            server.close()

    fixture.__doc__ = ("A throwaway gearmand (gearman_ev.testing.LocalGearmand) on a "
                       f"free loopback port, {scope} scope; .host, .port, .address, "
                       ".restart(), .stop().")
    return fixture


_pytest: ModuleType | None
try:
    import pytest as _pytest
except ImportError:  # LocalGearmand without pytest: no plugin to define
    _pytest = None

if _pytest is not None:
    #: The plugin's fixture: a fresh gearmand per test, stopped after it.
    gearmand = gearmand_fixture()
