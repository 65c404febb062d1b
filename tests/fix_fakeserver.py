"""A scripted TCP peer for malformed-protocol tests ONLY (behaviour tests talk
to the real gearmand). ``fake_server(*steps)`` listens on 127.0.0.1 on a free
port, accepts one connection in a thread and plays the steps:

    ("recv", n)      read exactly n request bytes (kept in .received)
    ("send", data)   send data
    ("sleep", s)     pause s seconds
    ("eof",)         read until the client closes (so the peer never races it)

then closes. Read every request byte before closing: unread bytes make the
kernel send RST, and the client would see "read error" instead of EOF.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest


class FakeServer:
    def __init__(self, script):
        self.script = list(script)
        self.received = bytearray()
        self.errors = []  # what went wrong in the thread, for the test to show
        self.finished = threading.Event()
        self._conn = None
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            conn, _ = self._listener.accept()
            self._conn = conn
            with conn:
                conn.settimeout(10)
                for step, *arg in self.script:
                    if step == "recv":
                        want = len(self.received) + arg[0]
                        while len(self.received) < want:
                            chunk = conn.recv(want - len(self.received))
                            if not chunk:
                                raise EOFError(f"client closed; got {bytes(self.received)!r}")
                            self.received += chunk
                    elif step == "send":
                        conn.sendall(arg[0])
                    elif step == "sleep":
                        time.sleep(arg[0])
                    elif step == "eof":
                        while conn.recv(65536):
                            pass
        except Exception as exc:  # noqa: BLE001 - reported by close()
            self.errors.append(exc)
        finally:
            self._listener.close()
            self.finished.set()

    def close(self):
        # shutdown() wakes a thread blocked in accept()/recv(); close() would not.
        for sock in (self._listener, self._conn):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        self._thread.join(10)


@pytest.fixture
def fake_server():
    """Factory: ``srv = fake_server(("recv", 16), ("send", b"..."))``."""
    servers = []

    def start(*script):
        servers.append(FakeServer(script))
        return servers[-1]
    yield start
    for srv in servers:
        srv.close()
