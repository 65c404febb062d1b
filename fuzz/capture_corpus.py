#!/usr/bin/env python3
"""Regenerate fuzz/corpus/parse/: real gearmand replies, byte for byte.

Starts a throwaway gearmand (LocalGearmand), plays a few requests over raw
sockets and saves what the server sends back, one file per exchange. The
seeds give libFuzzer real packet shapes (handles, status blocks, ERR lines,
gearmand's WORK_FAIL with its trailing NUL) to mutate from.

    python3 fuzz/capture_corpus.py [OUTDIR]
"""
import os
import select
import socket
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from gearman_ev.testing import LocalGearmand  # noqa: E402

CMD = {"CAN_DO": 1, "PRE_SLEEP": 4, "SUBMIT_JOB": 7, "GRAB_JOB": 9,
       "WORK_STATUS": 12, "WORK_COMPLETE": 13, "WORK_FAIL": 14, "GET_STATUS": 15,
       "ECHO_REQ": 16, "SUBMIT_JOB_BG": 18, "ALL_YOURS": 24, "WORK_EXCEPTION": 25,
       "OPTION_REQ": 26, "WORK_DATA": 28, "WORK_WARNING": 29, "GRAB_JOB_UNIQ": 30,
       "GRAB_JOB_ALL": 39, "GET_STATUS_UNIQUE": 41}


def req(name, *args):
    body = b"\0".join(a if isinstance(a, bytes) else a.encode() for a in args)
    return b"\0REQ" + struct.pack(">II", CMD[name], len(body)) + body


def drain(s, quiet=0.3, limit=3.0):
    """Everything the server sends until it is quiet for `quiet` seconds."""
    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], quiet)
        if not r:
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def handles(data):
    """Job handles of the JOB_ASSIGN*/JOB_CREATED packets in data."""
    found, pos = [], 0
    while pos + 12 <= len(data) and data[pos] == 0:
        typ, size = struct.unpack(">II", data[pos + 4:pos + 12])
        body = data[pos + 12:pos + 12 + size]
        if typ in (8, 11, 31, 40):
            found.append(body.split(b"\0")[0])
        pos += 12 + size
    return found


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    saved = {}

    def save(name, data):
        assert data, f"{name}: the server sent nothing"
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        saved[name] = len(data)

    with LocalGearmand() as g:
        client = socket.create_connection((g.host, g.port), timeout=5)
        worker = socket.create_connection((g.host, g.port), timeout=5)

        def ask(sock, *packets):
            sock.sendall(b"".join(packets))
            return drain(sock)

        save("echo_res", ask(client, req("ECHO_REQ", b"ping\0with\xffbytes")))
        save("option_res", ask(client, req("OPTION_REQ", "exceptions")))
        save("error_invalid_command", ask(client, req("ALL_YOURS")))
        save("text_version", ask(client, b"version\r\n"))
        save("text_err_unknown", ask(client, b"bogus command\r\n"))

        # A worker that sleeps is woken by a submission: NO_JOB, then NOOP.
        save("no_job", ask(worker, req("CAN_DO", "fz"), req("GRAB_JOB")))
        worker.sendall(req("PRE_SLEEP"))
        created = ask(client, req("SUBMIT_JOB", "fz", "", b"work\0load"))
        save("noop", drain(worker))

        # The foreground job's whole event stream, as the client sees it.
        assign = ask(worker, req("GRAB_JOB"))
        save("job_assign", assign)
        h = handles(assign)[0]
        worker.sendall(req("WORK_DATA", h, b"data\0") + req("WORK_WARNING", h, b"warn") +
                       req("WORK_STATUS", h, "1", "2") + req("WORK_COMPLETE", h, b"done\0!"))
        save("job_created_events", created + drain(client))

        # gearmand's WORK_FAIL to a client carries a trailing NUL.
        created = ask(client, req("SUBMIT_JOB", "fz", "", b"x"))
        h = handles(ask(worker, req("GRAB_JOB")))[0]
        worker.sendall(req("WORK_FAIL", h))
        save("work_fail", created + drain(client))

        # Background jobs: JOB_CREATED, status, the _UNIQ / _ALL assignments.
        bg = ask(client, req("SUBMIT_JOB_BG", "fz", "u1", "bg"),
                 req("SUBMIT_JOB_BG", "fz", "u2", "bg2"))
        h = handles(bg)[0]
        save("status_res", bg + ask(client, req("GET_STATUS", h),
                                    req("GET_STATUS_UNIQUE", "u1")))
        save("text_status_block", ask(client, b"status\n"))
        save("text_workers_block", ask(client, b"workers\n"))
        save("job_assign_uniq", ask(worker, req("GRAB_JOB_UNIQ")))
        save("job_assign_all", ask(worker, req("GRAB_JOB_ALL")))
        # An unsolicited ERROR JOB_NOT_FOUND for a handle this worker never had.
        save("error_job_not_found", ask(worker, req("WORK_COMPLETE", "H:t:999", "r")))
        # "show unique jobs" with the ECHO_REQ a session sends right behind it
        # (GM_TEXT_MARKED), over uniques that trap a "." terminator or an "ERR "
        # check: a unique "." and one "ERR x" (PROTOCOL.md 7).
        ask(client, req("SUBMIT_JOB_BG", "fz-marked", ".", "a"),
            req("SUBMIT_JOB_BG", "fz-marked", "ERR x", "b"))
        save("text_show_unique_marked",
             ask(client, b"show unique jobs\r\n", req("ECHO_REQ", "")))
        client.close()
        worker.close()
    for name, size in sorted(saved.items()):
        print(f"{size:6d}  {name}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else
         os.path.join(ROOT, "fuzz", "corpus", "parse"))
