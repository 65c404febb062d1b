"""TLS in front of the real gearmand: a throwaway CA and server certificate
made with the ``openssl`` command, and ``socat OPENSSL-LISTEN`` terminating
TLS for gearmand (Debian 12's ``gearmand --ssl`` rejects every handshake,
PROTOCOL.md 8.8, so deployments put a terminator in front, as here).

Fixtures: ``pki`` (session: files ``ca``, ``cert``, ``key``, and ``other_ca``,
a CA that signed nothing here), ``tls_gearmand`` (session: a terminator in
front of the session's gearmand, ``.host``, ``.port``, ``.context()``), and
``TLSTerminator`` for tests that stop and restart their own.
A missing ``openssl`` or ``socat`` fails the run (.ci/install-deps installs
socat); it never skips.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gearman_ev._gearmand import free_port


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run .ci/install-deps (apt-get install {name})"
    return path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run([_tool("openssl"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, f"openssl {' '.join(args)}:\n{proc.stderr}"


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = d / f"{name}.pem", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key.name, "-out", cert.name, "-days", "2",
             "-subj", f"/CN=gearman_ev test {name}",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return cert, key


def make_server_cert(d: Path, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    """A server certificate for localhost and 127.0.0.1, signed by ca."""
    cert, key, csr, ext = d / "server.pem", d / "server.key", d / "server.csr", d / "server.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                   "extendedKeyUsage=serverAuth\n"
                   "keyUsage=critical,digitalSignature\n"
                   "basicConstraints=critical,CA:FALSE\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", csr.name, "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", csr.name, "-CA", ca.name, "-CAkey", ca_key.name,
             "-CAcreateserial", "-out", cert.name, "-days", "2", "-extfile", ext.name, cwd=d)
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca(d, "ca")
    other_ca, _ = make_ca(d, "other-ca")
    cert, key = make_server_cert(d, ca, ca_key)
    return SimpleNamespace(ca=ca, other_ca=other_ca, cert=cert, key=key)


def client_context(cafile: Path) -> ssl.SSLContext:
    """A client context trusting only ``cafile``, checking host names."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(cafile))
    return ctx


class TLSTerminator:
    """``socat OPENSSL-LISTEN`` on 127.0.0.1:port forwarding to a gearmand,
    started and stopped by its own process handle. ``nodelay`` on both
    sides: without it Nagle holds each small reply for a delayed ACK
    (~40 ms per round trip)."""

    def __init__(self, pki, target_host: str, target_port: int, port: int | None = None):
        self.pki = pki
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def context(self) -> ssl.SSLContext:
        return client_context(self.pki.ca)

    def start(self, timeout: float = 10.0) -> TLSTerminator:
        listen = (f"OPENSSL-LISTEN:{self.port},bind={self.host},reuseaddr,fork,"
                  f"cert={self.pki.cert},key={self.pki.key},verify=0,nodelay")
        self.proc = subprocess.Popen([_tool("socat"), listen, "TCP:%s:%d,nodelay" % self.target],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers():
            assert self.proc.poll() is None, "socat exited at start"
            assert time.monotonic() < deadline, f"no TLS on {self.host}:{self.port}"
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        """A real handshake and an admin round trip through the terminator."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as raw, \
                    self.context().wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"version\r\n")
                return s.recv(64).startswith(b"OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop socat and the children it forked for open connections (its
        own process group): every TLS connection through it ends."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def __enter__(self) -> TLSTerminator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def tls_gearmand(pki, gearmand):
    with TLSTerminator(pki, gearmand.host, gearmand.port) as term:
        yield term
