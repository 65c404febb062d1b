"""The cffi binding itself: it imports, its constants match the headers and
PROTOCOL.md, and the libev it runs against is the one it was built for."""
from __future__ import annotations

import os
import re

import pytest

import gearman_ev
from gearman_ev import _ffi, ev

ffi, lib = _ffi.ffi, _ffi.lib


def test_binding_imports():
    assert gearman_ev.ev is ev
    assert ev.lib is lib
    assert callable(lib.ev_loop_new) and callable(lib.gm_conn_new)
    assert ffi.sizeof("ev_io") > 0


EV_NAMES = ["EV_READ", "EV_WRITE", "EV_TIMER", "EV_SIGNAL", "EV_ASYNC", "EV_ERROR",
            "EVBREAK_CANCEL", "EVBREAK_ONE", "EVBREAK_ALL", "EVRUN_NOWAIT", "EVRUN_ONCE",
            "EV_MINPRI", "EV_MAXPRI", "EVFLAG_AUTO", "EVFLAG_NOENV", "EVFLAG_FORKCHECK",
            "EVFLAG_SIGNALFD", "EVFLAG_NOSIGMASK", "EVBACKEND_SELECT", "EVBACKEND_POLL",
            "EVBACKEND_EPOLL"]


@pytest.mark.parametrize("name", EV_NAMES)
def test_ev_constants_equal_the_header(name):
    assert getattr(ev, name) == getattr(lib, name)
    assert name in ev.__all__


def test_ev_constants_have_libev_values():
    # libev's documented values (ev.h); pyev programs hard-code some of them.
    assert (ev.EV_READ, ev.EV_WRITE, ev.EV_TIMER, ev.EV_SIGNAL) == (0x01, 0x02, 0x100, 0x400)
    assert ev.EV_ASYNC == 0x80000
    assert (ev.EVBREAK_CANCEL, ev.EVBREAK_ONE, ev.EVBREAK_ALL) == (0, 1, 2)
    assert (ev.EVRUN_NOWAIT, ev.EVRUN_ONCE) == (1, 2)
    assert ev.EV_MINPRI < 0 < ev.EV_MAXPRI
    assert ev.EV_READ & ev.EV_WRITE == 0


def test_libev_version():
    major, minor = ev.version()
    assert (major, minor) == (lib.ev_version_major(), lib.ev_version_minor())
    # 4.03 is the first with everything the cdef names (EVBREAK_*: 4.00,
    # EVFLAG_NOSIGMASK: 4.03).
    assert major == 4 and minor >= 3
    # The run-time library is the one whose header we compiled against.
    assert major == lib.EV_VERSION_MAJOR


# PROTOCOL.md section 2 (type numbers from libgearman-1.0/protocol.h).
PROTOCOL_CMDS = {
    "TEXT": 0, "CAN_DO": 1, "CANT_DO": 2, "RESET_ABILITIES": 3, "PRE_SLEEP": 4,
    "NOOP": 6, "SUBMIT_JOB": 7, "JOB_CREATED": 8, "GRAB_JOB": 9, "NO_JOB": 10,
    "JOB_ASSIGN": 11, "WORK_STATUS": 12, "WORK_COMPLETE": 13, "WORK_FAIL": 14,
    "GET_STATUS": 15, "ECHO_REQ": 16, "ECHO_RES": 17, "SUBMIT_JOB_BG": 18, "ERROR": 19,
    "STATUS_RES": 20, "SUBMIT_JOB_HIGH": 21, "SET_CLIENT_ID": 22, "CAN_DO_TIMEOUT": 23,
    "ALL_YOURS": 24, "WORK_EXCEPTION": 25, "OPTION_REQ": 26, "OPTION_RES": 27,
    "WORK_DATA": 28, "WORK_WARNING": 29, "GRAB_JOB_UNIQ": 30, "JOB_ASSIGN_UNIQ": 31,
    "SUBMIT_JOB_HIGH_BG": 32, "SUBMIT_JOB_LOW": 33, "SUBMIT_JOB_LOW_BG": 34,
    "SUBMIT_JOB_SCHED": 35, "SUBMIT_JOB_EPOCH": 36, "SUBMIT_REDUCE_JOB": 37,
    "SUBMIT_REDUCE_JOB_BACKGROUND": 38, "GRAB_JOB_ALL": 39, "JOB_ASSIGN_ALL": 40,
    "GET_STATUS_UNIQUE": 41, "STATUS_RES_UNIQUE": 42,
}


@pytest.mark.parametrize("name, number", sorted(PROTOCOL_CMDS.items(), key=lambda kv: kv[1]))
def test_command_numbers_match_protocol(name, number):
    assert getattr(lib, "GM_CMD_" + name) == number


def test_command_range():
    # 42 is the highest type in PROTOCOL.md section 2; 43 and up are rejected.
    assert lib.GM_CMD_MAX == max(PROTOCOL_CMDS.values()) == 42


def test_header_size():
    assert lib.GM_HEADER_SIZE == 12  # magic + type + length, 4 bytes each


def test_max_packet():
    assert lib.GM_MAX_PACKET == 256 * 1024 * 1024  # API.md section 3: 256 MiB
    assert gearman_ev.MAX_PACKET == lib.GM_MAX_PACKET


def test_error_codes_are_distinct_and_each_says_when():
    # Python maps each code to one message: two failures must never share a value, and each
    # code's comment in gm_proto.h says when it happens.
    names = sorted(n for n in dir(lib) if n.startswith("GM_E_"))
    values = [getattr(lib, n) for n in names]
    assert len(set(values)) == len(values)
    assert all(v < 0 for v in values) and lib.GM_OK == 0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "csrc", "gm_proto.h")) as f:
        header = f.read()
    defined = re.findall(r"^#define (GM_E_\w+) \((-\d+)\) +/\* (\S.*\S) \*/$", header, re.M)
    assert sorted(name for name, _, _ in defined) == names  # every code reaches Python
    assert all(getattr(lib, name) == int(value) for name, value, _ in defined)
    assert header.count("#define GM_E_") == len(defined)  # none without its comment
