"""A DNS server on a loopback address for the resolver tests, and a way to
run a Python script whose C library resolver asks it.

glibc reads its name servers from /etc/resolv.conf only, so the script runs
in a mount namespace of its own (``unshare --mount``, root) where a
resolv.conf of ours is bind-mounted over it; the rest of the machine keeps
its resolver. The script's getaddrinfo is the real one: this server only
decides what the network answers, and when.

The server answers A and AAAA over UDP from a table ``{name: {"A": [...],
"AAAA": [...], "delay": seconds, "hang": bool}}``: after ``delay`` seconds,
or never with ``hang``; a name not in the table gets NXDOMAIN. It records
every question it receives in ``asked``.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

QTYPES = {1: "A", 28: "AAAA"}
RCODE_NXDOMAIN = 3


def _read_name(packet: bytes, at: int) -> tuple[str, int]:
    labels = []
    while True:
        size = packet[at]
        at += 1
        if size == 0:
            return ".".join(labels).lower(), at
        labels.append(packet[at:at + size].decode("ascii", "replace"))
        at += size


class FakeDNS:
    """``with FakeDNS(table) as dns:`` serves on ``dns.host`` port 53."""

    def __init__(self, table: dict) -> None:
        self.table = {name.lower(): entry for name, entry in table.items()}
        self.asked: list[tuple[str, str]] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(50):
            # Port 53 is fixed by resolv.conf: vary the address in 127.53/16.
            self.host = f"127.53.{random.randrange(256)}.{random.randrange(1, 255)}"
            try:
                self._sock.bind((self.host, 53))
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        else:
            raise RuntimeError("no free loopback address for the fake DNS server")
        self._timers: list[threading.Timer] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeDNS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        for t in self._timers:
            t.cancel()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        self._sock.settimeout(0.05)  # to notice _closed: close() wakes no recvfrom
        while not self._closed:
            try:
                packet, peer = self._sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._answer(packet, peer)
            except (IndexError, struct.error):
                continue  # not a question we understand: no answer

    def _answer(self, packet: bytes, peer) -> None:
        qid, _flags, qdcount = struct.unpack("!HHH", packet[:6])
        if qdcount != 1:
            return
        name, end = _read_name(packet, 12)
        qtype, _qclass = struct.unpack("!HH", packet[end:end + 4])
        kind = QTYPES.get(qtype, str(qtype))
        self.asked.append((name, kind))
        question = packet[12:end + 4]
        entry = self.table.get(name)
        if entry is None:
            reply = struct.pack("!HHHHHH", qid, 0x8180 | RCODE_NXDOMAIN, 1, 0, 0, 0) + question
        else:
            if entry.get("hang"):
                return
            records = []
            for addr in entry.get(kind, []):
                rdata = ipaddress.ip_address(addr).packed
                # Name: a pointer to the question's name at offset 12.
                records.append(struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata)
            reply = (struct.pack("!HHHHHH", qid, 0x8180, 1, len(records), 0, 0)
                     + question + b"".join(records))
        delay = entry.get("delay", 0) if entry else 0
        if delay:
            timer = threading.Timer(delay, self._send, (reply, peer))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        else:
            self._send(reply, peer)

    def _send(self, reply: bytes, peer) -> None:
        try:
            self._sock.sendto(reply, peer)
        except OSError:
            pass  # closed meanwhile

    def questions(self, name: str) -> list[str]:
        return [kind for asked, kind in self.asked if asked == name.lower()]


def missing_tools() -> str | None:
    """Why scripts cannot run under a resolver of ours here, or None."""
    if os.geteuid() != 0:
        return "the resolver tests need root (unshare --mount, a DNS server on port 53)"
    if not shutil.which("unshare") or not shutil.which("mount"):
        return "the resolver tests need unshare and mount (util-linux)"
    return None


def run_script(dns: FakeDNS, tmp_path, script: str, *args: str, timeout: float = 30,
               resolver_timeout: int = 2) -> subprocess.CompletedProcess:
    """Run ``python -c script args`` with /etc/resolv.conf naming only
    ``dns`` (``resolver_timeout`` s per try, one try)."""
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {dns.host}\n"
                    f"options timeout:{resolver_timeout} attempts:1\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root, PYTHONUNBUFFERED="1")
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
           'mount --bind "$0" /etc/resolv.conf && exec "$@"', str(conf),
           sys.executable, "-c", script, *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True,
                          timeout=timeout, check=False)
    proc.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    return proc
