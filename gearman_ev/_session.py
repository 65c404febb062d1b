"""One connection's Gearman protocol state, with no I/O and no loop.

The session holds everything that decides what a reply means and what to
send next: the request FIFO and its matching table, handle routing and
coalescing, the worker's grab state, the admin text mode, the reconnect
policy and every deadline. Bytes arrive in the C codec (``receive``), requests
leave as bytes in the codec's write buffer, and a driver (see ``_driver``) moves
those bytes, arms the one timer and reports what happened to the socket.

Rules that must stay true:

1. Everything that affects how a reply is matched lives here, and only here:
   ``ANSWERS`` is the one table of which reply may answer which request.
2. State first, user code second. A handler matches its reply and updates
   every piece of state before it runs user code, so an exception or an
   interrupt raised by user code can never leave a reply half-matched.
   After user code returns, the connection may be gone: handlers re-check
   ``self.epoch``.
3. Every callback a request carries fires exactly once. Until then the
   request is in exactly one of ``_waiting`` (not sent), ``_pending`` (sent,
   awaiting its in-order reply) or ``_active`` (a foreground job with a
   handle). ``_drop`` empties all three. Rule 6 is the one way out of
   rule 3 that fires nothing: a pool takes the request over. A run of
   background JOB_CREATED read at once (``_created_run``) is matched whole
   before its first callback: its requests are then the run's to answer,
   with their handles, even if a callback drops the connection.
4. An exception from the library's own handling of a packet is a protocol
   error: the connection ends with ``"protocol error: <what>"`` and every
   callback is drained once.
5. No socket, no loop, no clock of its own: the driver is asked for ``now()``.
6. Failover, for a connection that serves a pool (``self.pool`` set, see
   ``_routing``): when the connection ends, every ``REROUTABLE`` request
   (submissions, ECHO, GET_STATUS_UNIQUE) it never wrote is handed to the
   pool (``pool.session_down``) to be sent to another server, instead of
   failing with "disconnected". "Never written" is exact at the kernel's
   boundary: the request is still in ``_waiting``, or every byte of it is
   still in the codec's write buffer (the kernel took none of it). The
   stream offset of each re-routable request not yet written is kept in
   ``_marks``; those requests are the last ones of their kinds in
   ``_pending``, for a reply only ever answers a request that was written.
   A request the kernel took any byte of fails as before: a whole one may
   have reached the server, and of one cut in two (at most one per drop)
   the head is gone from the buffer, so it cannot be re-sent as it was. For
   a driver that takes the bytes out for its own transport
   (``take_output``), "written" means handed to that transport. Everything
   else (a job created on that server, a GRAB, an admin line, a status by
   handle) still fails once with "disconnected": never re-sent.
"""
from __future__ import annotations

import array
import bisect
import collections
import heapq
import logging
import os
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from . import _args, _codec, errors
from ._codec import (CMD, NULL, TEXT_BLOCK, TEXT_LINE, TEXT_MARKED, next_created, next_packet,
                     pack4, unpack)
from ._driver import Driver

__all__ = ["Session", "Submission", "Entry", "fork_generation", "fail_detached",
           "REROUTABLE", "DISCONNECTED", "CONNECTING", "CONNECTED", "WAITING"]

log = logging.getLogger("gearman_ev")

# Connection states. Requests queue in CONNECTING and WAITING (for a
# reconnect); only DISCONNECTED refuses them.
DISCONNECTED, CONNECTING, CONNECTED, WAITING = 0, 1, 2, 3
STATE_NAMES = ("disconnected", "connecting", "connected", "waiting")

# FIFO entry kinds. The three text kinds equal the decoder's GM_TEXT_* modes:
# the head of the FIFO tells the decoder what text shape to expect.
K_TEXT_LINE, K_TEXT_BLOCK, K_TEXT_MARKED = TEXT_LINE, TEXT_BLOCK, TEXT_MARKED
(K_ECHO, K_SUBMIT, K_SUBMIT_BG, K_STATUS, K_STATUS_UNIQUE, K_OPTION, K_GRAB,
 K_GRAB_MANAGED, K_ALL_YOURS, K_MARKER) = range(TEXT_MARKED + 1, TEXT_MARKED + 11)

#: Rule 1: the request kinds each reply packet may answer (PROTOCOL.md 3.1).
#: A reply whose FIFO head is not one of these is a protocol error. ERROR
#: answers any head except a marker (and JOB_NOT_FOUND answers none, 3.2);
#: text answers a text kind, which the decoder itself enforces.
ANSWERS = {
    CMD.JOB_CREATED: (K_SUBMIT, K_SUBMIT_BG),
    CMD.ECHO_RES: (K_ECHO, K_MARKER),
    CMD.STATUS_RES: (K_STATUS,),
    CMD.STATUS_RES_UNIQUE: (K_STATUS_UNIQUE,),
    CMD.OPTION_RES: (K_OPTION,),
    CMD.NO_JOB: (K_GRAB, K_GRAB_MANAGED),
    CMD.JOB_ASSIGN: (K_GRAB, K_GRAB_MANAGED),
    CMD.JOB_ASSIGN_UNIQ: (K_GRAB, K_GRAB_MANAGED),
    CMD.JOB_ASSIGN_ALL: (K_GRAB, K_GRAB_MANAGED),
}
_CREATED_ANSWERS = ANSWERS[CMD.JOB_CREATED]
# A run of JOB_CREATED taken in one C call (_created_run): at most this many
# replies, their handles in a buffer of this many bytes (a handle is short:
# "H:host:123"; a longer one just ends the run sooner).
_RUN_MAX = 512
_RUN_CAP = 32 * 1024
# A reply body up to this size is copied once whole and split in Python (one
# C call instead of one per argument); a larger one is copied argument by
# argument, so that its payload is copied only once.
_ONE_COPY_MAX = 2048
# The three JOB_ASSIGN* answer the same kinds (checked here, so an edit to
# ANSWERS cannot leave the inlined match in _assigned behind).
_ASSIGN_ANSWERS = ANSWERS[CMD.JOB_ASSIGN]
assert ANSWERS[CMD.JOB_ASSIGN_UNIQ] == ANSWERS[CMD.JOB_ASSIGN_ALL] == _ASSIGN_ANSWERS
# Module constants for the worker's per-job path: a global load, not a class
# attribute lookup each time.
_GRAB, _GRAB_UNIQ, _WORK_COMPLETE = CMD.GRAB_JOB, CMD.GRAB_JOB_UNIQ, CMD.WORK_COMPLETE
_MAX_PACKET = _codec.MAX_PACKET

#: Rule 6: the requests a pool may send to another server when this
#: connection ends before writing them. Each is answered by whichever server
#: gets it; a status by handle, an admin line, an option or a GRAB concern
#: this server alone.
REROUTABLE = frozenset((K_SUBMIT, K_SUBMIT_BG, K_ECHO, K_STATUS_UNIQUE))
# Admin commands whose reply is a block ending in ".\n" (PROTOCOL.md 7).
# gearmand 1.1.20 answers these three with a block whatever words follow
# ("status x" too); "show" only with exactly these arguments.
_BLOCK_COMMANDS = {b"status", b"workers", b"prioritystatus"}

#: While asleep, a worker grabs again this often: gearmand 1.1 never wakes a
#: sleeping worker when an epoch job comes due (PROTOCOL.md 8.4).
REGRAB_INTERVAL = 5.0
#: gearmand 1.1 can answer PRE_SLEEP with a NOOP at once while GRAB keeps
#: getting NO_JOB (a not-yet-due epoch job hides LOW jobs, PROTOCOL.md 8.4):
#: a busy spin. More than SPIN_TOLERANCE such NOOPs within SPIN_WINDOW of the
#: PRE_SLEEP, with no job between, defer the grab, doubling from
#: SPIN_BACKOFF_MIN up to SPIN_BACKOFF_MAX seconds.
SPIN_WINDOW = 0.01
SPIN_TOLERANCE = 3
SPIN_BACKOFF_MIN = 0.01
SPIN_BACKOFF_MAX = 0.25

#: A finished job's entry in the deadline lane or heap is dropped lazily; both
#: are rebuilt when they hold this many more entries than live deadlines.
_HEAP_SLACK = 1024

# A burst of requests made between two loop iterations (a caller's for loop of
# submits) goes out in pieces of this many bytes while it grows: the server
# starts on the first ones while the caller still makes the rest, instead of
# after it (issue 17: the two then work in parallel). Small enough to start
# the server early, large enough that the extra writes cost nothing per job.
# The first piece of a burst is smaller: the server starts sooner still.
EARLY_WRITE = 64 * 1024
FIRST_PIECE = 8 * 1024

Callback = Optional[Callable[..., Any]]


# ===== Fork =====

_fork_gen = 0
_sessions: "weakref.WeakSet[Session]" = weakref.WeakSet()


def fork_generation() -> int:
    return _fork_gen


def _after_fork_in_child() -> None:
    # Objects inherited from the parent become inert: they must neither write
    # to nor close the parent's socket, nor run the parent's callbacks.
    global _fork_gen
    _fork_gen += 1
    for session in list(_sessions):
        session._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ===== Requests =====

class Entry:
    """One request awaiting its reply: what kind, whom to tell."""

    __slots__ = ("kind", "cb")

    def __init__(self, kind: int, cb: Callback) -> None:
        self.kind = kind
        self.cb = cb


#: Every managed GRAB shares one entry: it carries no callback, and its kind
#: is all a reply needs (no allocation per job).
_MANAGED_GRAB = Entry(K_GRAB_MANAGED, None)


class Submission(Entry):
    """A foreground job, from submit to its one terminal callback: its own
    FIFO entry until JOB_CREATED, then listed in ``_active`` by handle."""

    __slots__ = ("on_data", "on_warning", "on_status", "on_exception",
                 "deadline", "done", "handle", "shared", "on_created")

    def __init__(self, cb: Callback, on_data: Callback, on_warning: Callback,
                 on_status: Callback, on_exception: Callback, shared: bool) -> None:
        self.kind = K_SUBMIT
        self.cb = cb
        self.on_data = on_data
        self.on_warning = on_warning
        self.on_status = on_status
        self.on_exception = on_exception
        self.deadline = 0.0
        self.done = False
        self.handle: Optional[bytes] = None
        self.shared = shared  # has a unique key: later submissions may share its handle
        # on_created(handle_str) once JOB_CREATED is matched: the asyncio
        # front-end's JobRun.created() waits on it. Set after construction,
        # so the callback front-end's hot path pays nothing for it.
        self.on_created: Callback = None


class Attached:
    """The submissions of this connection attached to one handle, in arrival
    order; the k-th copy of an event goes to the k-th (PROTOCOL.md 4.2)."""

    __slots__ = ("subs", "turn")

    def __init__(self, subs: List[Submission]) -> None:
        self.subs = subs
        self.turn = 0

    def next_sub(self) -> Submission:
        sub = self.subs[self.turn]
        self.turn = (self.turn + 1) % len(self.subs)
        return sub

    def retire(self, sub: Submission) -> None:
        i = self.subs.index(sub)
        del self.subs[i]
        if i < self.turn:
            self.turn -= 1
        if self.turn >= len(self.subs):
            self.turn = 0


class Ability:
    """A function this worker serves."""

    __slots__ = ("callback", "timeout_ms", "async_")

    def __init__(self, callback: Callback, timeout_ms: Optional[int], async_: bool) -> None:
        self.callback = callback
        self.timeout_ms = timeout_ms
        self.async_ = async_


# ===== The session =====

class Session:
    """The protocol state of one connection (see the module rules).

    ``driver`` implements ``_driver.Driver``. ``make_job(session, handle,
    function, unique, workload, counted)`` builds the worker's Job objects.
    """

    def __init__(self, driver: Driver, make_job: Callable[..., Any], *, exceptions: bool,
                 client_id: Optional[bytes], grab_unique: bool, connect_timeout: float,
                 command_timeout: float, reconnect: bool, reconnect_delay: float,
                 max_reconnect_attempts: int, high_water: int) -> None:
        self._driver = driver
        self._make_job = make_job
        self.c = NULL               # the codec; allocated last, once all else is set
        self._pkt = _codec.new_packet()
        # Its arg and len arrays, fetched once: the per-job handlers index
        # them without two cdata attribute lookups per argument (issue 17).
        # Every handler is given self._pkt (receive), so they are its arrays.
        self._pkt_arg = self._pkt.arg
        self._pkt_len = self._pkt.len
        self._run_out, self._run_used = _codec.created_run_buffers(_RUN_CAP)  # _created_run's
        self.state = DISCONNECTED
        self.epoch = 0              # bumped on every drop: stale jobs and callbacks check it
        self.closed = False
        self.address: Optional[Tuple[Any, ...]] = None   # ("tcp", host, port) or ("unix", path)
        self._pending: Deque[Entry] = collections.deque()
        self._waiting: Deque[Tuple[Any, Any, Optional[Entry]]] = collections.deque()
        self._active: Dict[bytes, Any] = {}  # handle -> Submission, or Attached if coalesced
        self.active_count = 0
        # Options re-sent on every connect.
        self.exceptions = exceptions
        self.client_id = client_id
        self.grab_unique = grab_unique
        # Connection policy.
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_enabled = reconnect
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_attempts = max_reconnect_attempts
        self._attempts = 0
        self._heard = False          # a byte arrived on this connection
        # Back-pressure: bytes queued and not yet taken by the kernel.
        self.high_water = high_water
        self._unsent = 0
        self._write_early_at = FIRST_PIECE  # _unsent past this: write now
        self._was_full = False
        # User callbacks of the connection.
        self.on_error: Callback = None
        self.on_connect: Callback = None
        self.on_disconnect: Callback = None
        self.on_drain: Callback = None
        # Deadlines (loop time), all behind the driver's one timer.
        self._connect_at = 0.0
        self._command_at = 0.0
        self._reconnect_at = 0.0
        self._regrab_at = 0.0
        # Job deadlines: a lane and a heap, together in (deadline, order of
        # arming) order. A deadline no earlier than every one the lane was
        # given (_lane_floor) joins the lane: with one timeout for all jobs,
        # and a loop clock that only moves on, that is every job; 8 bytes and
        # an append instead of a tuple, a seq int and a heappush (issue 17:
        # <= 2 us and <= 100 bytes per job). Only an earlier one takes the
        # heap, so on equal deadlines the lane's entry was armed first.
        self._job_lane: Deque[Submission] = collections.deque()
        self._lane_floor = 0.0
        self._job_heap: List[Tuple[float, int, Submission]] = []
        self._job_seq = 0
        self._live_deadlines = 0
        self._armed = 0.0            # the deadline the driver's timer is set to, 0 = none
        self.flush_asked = False     # the driver was asked to flush and has not yet
        # Worker state: abilities and work() belong to the object, not the
        # connection; the grab counters to the connection.
        self.abilities: Dict[bytes, Ability] = {}
        self.working = False
        self._work_one = False
        self._on_idle: Callback = None
        self._concurrency: Optional[int] = None
        self._grabs_out = 0          # managed GRABs awaiting their reply
        self._in_flight = 0          # async jobs dispatched, not yet finished
        self._sleeping = False
        self._slept_at = 0.0
        self._quick_wakes = 0
        # Pool membership (rule 6), set by ``join_pool``: the pool told of
        # each connect and drop, the grab cap shared with the pool's other
        # connections, and the stream offsets of requests not yet written.
        self.pool: Any = None
        self.grab_cap: Any = None
        # _marks[_mark_head:]: stream offsets of the re-routable requests not
        # yet written, ascending (an array: no object per request).
        self._marks: Optional["array.array[int]"] = None
        self._mark_head = 0
        self._out_total = 0          # bytes queued since the connect (exact, with _marks)
        self._fork_gen = _fork_gen
        self.forked = False
        self.c = _codec.new_conn()
        _sessions.add(self)

    # ===== Introspection =====

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def writable(self) -> bool:
        return not self.high_water or self._unsent <= self.high_water

    def describe_address(self) -> str:
        a = self.address
        if a is None:
            return "unconfigured"
        if a[0] == "unix":
            return "unix:" + os.fsdecode(a[1])
        host = a[1]
        return f"[{host}]:{a[2]}" if ":" in host else f"{host}:{a[2]}"

    def check_usable(self) -> None:
        """Refuse a request on an object inherited across fork or destroyed."""
        if self._fork_gen != _fork_gen:
            raise errors.GearmanError(errors.USED_AFTER_FORK)
        if self.closed:
            raise errors.GearmanError(errors.CLIENT_DESTROYED)

    # ===== Connecting (the driver does the I/O) =====

    def connect(self, address: Tuple[Any, ...]) -> None:
        """Start connecting to ``address``; cancels a pending reconnect."""
        self.check_usable()
        if self.state in (CONNECTING, CONNECTED):
            raise errors.GearmanError(errors.ALREADY_CONNECTED)
        self.address = address
        self._attempts = 0
        self._reconnect_at = 0.0
        self._start_connect()

    def _start_connect(self) -> None:
        assert self.address is not None  # connect() set it; reconnects reuse it
        self.state = CONNECTING
        self._connect_at = self._driver.now() + self.connect_timeout if self.connect_timeout else 0.0
        self._rearm()
        self._driver.open(self.address)

    def connection_made(self, fd: int = -1) -> None:
        """Driver: the transport is up. Queue the session set-up, then what
        waited; then on_connect; then the worker loop resumes."""
        self._connect_at = 0.0
        self.state = CONNECTED
        self._heard = False
        self._unsent = 0
        self._write_early_at = FIRST_PIECE
        self._was_full = False
        lib_reset(self.c, fd)
        if self._marks is not None:
            del self._marks[:]
            self._mark_head = self._out_total = 0
        self._queue_setup()
        waiting, self._waiting = self._waiting, collections.deque()
        for cmd, args, entry in waiting:
            self._pack(cmd, args, entry)
        self._flush_soon()
        self._rearm()
        epoch = self.epoch
        if self.pool is not None:
            self.pool.session_up(self)  # library code: may queue what waited for a server
        if self.on_connect is not None:
            self._call(self.on_connect)
        if epoch == self.epoch and self.state == CONNECTED and self.working:
            self._regrab_at = 0.0
            self._grab_more()

    def _queue_setup(self) -> None:
        """Options, client id and abilities go first on every connect, ahead
        of what waited and of what on_connect submits."""
        if self.exceptions:
            self._pack(CMD.OPTION_REQ, (b"exceptions",), Entry(K_OPTION, None))
        if self.client_id is not None:
            self._pack(CMD.SET_CLIENT_ID, (self.client_id,), None)
        for func, ability in self.abilities.items():
            self._pack_ability(func, ability)
        self._grabs_out = 0
        self._in_flight = 0
        self._sleeping = False
        self._quick_wakes = 0

    def connect_failed(self, err: str) -> None:
        """Driver: a connect attempt failed before the connection was up."""
        if self.state != CONNECTING:
            return
        self._driver.close(False)
        self.epoch += 1
        self._connect_at = 0.0
        unsent = self._take_unsent()
        if self._should_reconnect():
            self.state = WAITING  # what callbacks submit meanwhile waits
        else:
            self.state = DISCONNECTED
        self._hand_back(unsent)
        if self.state == DISCONNECTED:
            self._drain(errors.DISCONNECTED, waiting=True)
        self.report_error(err)
        if self.state == WAITING:
            self._schedule_reconnect()
        else:
            self._rearm()

    def _should_reconnect(self) -> bool:
        return self.reconnect_enabled and self.address is not None and not self.closed

    def _schedule_reconnect(self) -> None:
        if self.max_reconnect_attempts and self._attempts >= self.max_reconnect_attempts:
            self.state = DISCONNECTED
            self._hand_back(self._take_unsent())  # the pool learns it is gone for good
            self._drain(errors.DISCONNECTED, waiting=True)
            self._reconnect_at = 0.0
            self._rearm()
            self.report_error(errors.MAX_RECONNECTS)
            return
        self._attempts += 1
        self.state = WAITING
        # Always through the timer, even at delay 0: never re-entered from a
        # callback that is still unwinding.
        self._reconnect_at = self._driver.now() + self.reconnect_delay
        self._rearm(force=True)

    def set_reconnect(self, enable: bool, delay: Optional[float],
                      max_attempts: Optional[int]) -> None:
        self.reconnect_enabled = enable
        if delay is not None:
            self.reconnect_delay = delay
        if max_attempts is not None:
            self.max_reconnect_attempts = max_attempts
        if not enable:
            self._reconnect_at = 0.0
            if self.state == WAITING:
                # The pending reconnect is cancelled: nothing will send what
                # waited for it (rule 3), and new requests are refused.
                self.state = DISCONNECTED
                self._drain(errors.DISCONNECTED, waiting=True)
            self._rearm()

    # ===== Dropping =====

    def disconnect(self) -> None:
        """Close now: every pending callback gets "disconnected", then
        on_disconnect; no on_error and no reconnect."""
        self._reconnect_at = 0.0
        if self.state in (DISCONNECTED, WAITING):
            self.state = DISCONNECTED
            self._hand_back(self._take_unsent())
            self._drain(errors.DISCONNECTED, waiting=True)
            self._rearm()
            return
        self._drop(None, reconnect=False)

    def connection_lost(self, err: str) -> None:
        """Driver: the connection ended (EOF, read or write error)."""
        if self.state == CONNECTED:
            self._drop(err)
        elif self.state == CONNECTING:
            self.connect_failed(err)

    def _drop(self, err: Optional[str], drain_err: str = errors.DISCONNECTED,
              reconnect: bool = True) -> None:
        """End the connection: drain, on_disconnect, on_error, maybe reconnect."""
        was_established = self.state == CONNECTED
        if was_established and self._heard:
            self._attempts = 0  # a connection the server spoke on was a success
        self._driver.close(err is None)  # a deliberate close flushes what was queued
        unsent = self._take_unsent()     # before the reset: the unsent bytes are in the codec
        lib_reset(self.c, -1)
        self.state = DISCONNECTED
        self.epoch += 1
        self._connect_at = self._command_at = self._regrab_at = 0.0
        retry = reconnect and err is not None and self._should_reconnect()
        if retry:
            self.state = WAITING  # requests made from callbacks wait
        self._hand_back(unsent)          # state first: the pool re-routes, then user code
        self._drain(drain_err, waiting=not retry)
        if was_established and self.on_disconnect is not None and not self.closed:
            self._call(self.on_disconnect)
        if err is not None:
            self.report_error(err)
        if self.state == WAITING and self._should_reconnect():
            self._schedule_reconnect()
        else:
            self._rearm()

    def protocol_error(self, what: str) -> None:
        if self.state == CONNECTED:
            self._drop(f"{errors.PROTOCOL_ERROR}: {what}")

    def _drain(self, err: str, waiting: bool) -> None:
        """Fire every pending and active callback once with err. The state is
        emptied first (rule 2), so a callback may submit again."""
        pending, self._pending = self._pending, collections.deque()
        active, self._active = self._active, {}
        self.active_count = 0
        if waiting:
            queued, self._waiting = self._waiting, collections.deque()
            entries = [e for _, _, e in queued if e is not None]
        else:
            entries = []
        for entry in pending:
            self._fail_entry(entry, err)
        for item in active.values():
            for sub in item.subs if type(item) is Attached else (item,):
                self._finish_sub(sub, None, err)
        for entry in entries:
            self._fail_entry(entry, err)

    def _fail_entry(self, entry: Entry, err: str) -> None:
        if entry.kind == K_SUBMIT:
            self._finish_sub(entry, None, err)  # type: ignore[arg-type]
        elif entry.cb is not None:
            self._call(entry.cb, None, err)

    def report_error(self, err: str) -> None:
        if self.closed:
            return
        if self.on_error is None:
            log.warning("%s: %s", self.describe_address(), err)
        else:
            self._call(self.on_error, err)

    def close(self) -> None:
        """The owner is gone: drain once and close; no on_disconnect, no
        on_error. Inherited across fork: only free memory."""
        if self.closed:
            return
        self.closed = True
        _sessions.discard(self)
        if self._fork_gen == _fork_gen:
            self._driver.close(self.state == CONNECTED)
            self.state = DISCONNECTED
            self.epoch += 1
            self._drain(errors.DISCONNECTED, waiting=True)
            self._driver.set_deadline(0.0)
        c, self.c = self.c, NULL
        if c != NULL:
            _codec.free_conn(c)

    def _forked(self) -> None:
        """In a forked child: forget everything without a callback or a byte.
        DISCONNECTED makes every request take the slow path of ``send``,
        which names the reason."""
        self.forked = True
        self._driver.forked()
        self._pending = collections.deque()
        self._waiting = collections.deque()
        self._active = {}
        self._job_heap = []
        self._job_lane = collections.deque()
        self.state = DISCONNECTED

    # ===== Sending =====

    def send(self, cmd: Optional[int], args: Any, entry: Optional[Entry]) -> None:
        """Queue one request (``cmd`` None: an admin line in ``args``): into
        the write buffer if connected, else until the connection is up."""
        state = self.state
        if state == CONNECTED:
            if self._unsent > self.high_water and self.high_water:
                self._check_room()
            self._pack(cmd, args, entry)
            self._flush_soon()
            if self._unsent > self._write_early_at:
                self._write_early()
        elif state != DISCONNECTED:
            # Held past this call: snapshot the caller's buffers (API.md 9).
            args = _snapshot(args)
            self._waiting.append((cmd, args, entry))
        else:
            raise errors.GearmanError(errors.USED_AFTER_FORK if self.forked
                                      else errors.NOT_CONNECTED)

    def send3(self, cmd: int, a0: Any, a1: Any, a2: Any, entry: Entry) -> None:
        """``send`` for the three-argument submissions, inlined: the hot path
        of every client (one C call, no tuple)."""
        l0, l1, l2 = len(a0), len(a1), len(a2)
        if l0 + l1 + l2 + 2 > _MAX_PACKET:
            _args.check_size(a0, a1, a2)  # raises the ValueError: nothing queued
        if self.state != CONNECTED:
            self.send(cmd, (a0, a1, a2), entry)
            return
        if self._unsent > self.high_water and self.high_water:
            self._check_room()
        rc = pack4(self.c, cmd, 3, a0, l0, a1, l1, a2, l2, NULL, 0)
        if rc != 0:
            _codec.ensure(rc)
        self._unsent = unsent = self._unsent + 14 + l0 + l1 + l2
        marks = self._marks
        if marks is not None:  # rule 6, inlined: a submission is always re-routable
            start = self._out_total
            marks.append(start)
            self._out_total = start + 14 + l0 + l1 + l2
        pending = self._pending
        if not pending and self.command_timeout:
            self._start_command_clock()
        pending.append(entry)
        if not self.flush_asked:
            self.flush_asked = True
            self._driver.flush_soon()
        if unsent > self._write_early_at:
            self._write_early()

    def _write_early(self) -> None:
        """A burst passed FIRST_PIECE (then EARLY_WRITE more) unsent bytes:
        the driver writes what the transport takes now."""
        self._driver.write_now()
        self._write_early_at = self._unsent + EARLY_WRITE

    def _flush_soon(self) -> None:
        # Asked once per loop iteration: the driver clears ``flush_asked``
        # when it flushes.
        if not self.flush_asked:
            self.flush_asked = True
            self._driver.flush_soon()

    def _check_room(self) -> None:
        """The estimate passed high_water: ask the codec, refuse if so."""
        self._unsent = _codec.write_pending(self.c)
        if self._unsent > self.high_water:
            self._was_full = True
            raise errors.GearmanError(errors.WRITE_BUFFER_FULL)

    def _pack(self, cmd: Optional[int], args: Any, entry: Optional[Entry]) -> None:
        c = self.c
        if cmd is None:  # an admin line, or a whole packet a pool moved here (rule 6)
            _codec.ensure(_codec.append(c, args, len(args)))
            size = len(args)
        else:
            # Arguments are bytes or char[] cdata (see _args.payload): both
            # pass to C without a copy.
            n = len(args)
            if n == 3:  # submissions
                a0, a1, a2 = args
                l0, l1, l2 = len(a0), len(a1), len(a2)
                rc = pack4(c, cmd, 3, a0, l0, a1, l1, a2, l2, NULL, 0)
                size = 14 + l0 + l1 + l2
            elif n == 2:  # a worker's results and events
                a0, a1 = args
                l0, l1 = len(a0), len(a1)
                rc = pack4(c, cmd, 2, a0, l0, a1, l1, NULL, 0, NULL, 0)
                size = 13 + l0 + l1
            elif n == 0:  # GRAB_JOB, PRE_SLEEP
                rc = pack4(c, cmd, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)
                size = 12
            else:
                a: List[Any] = [NULL, 0, NULL, 0, NULL, 0, NULL, 0]
                size = 11 + n
                for i, arg in enumerate(args):
                    a[2 * i] = arg
                    a[2 * i + 1] = len(arg)
                    size += len(arg)
                rc = pack4(c, cmd, n, *a)
            if rc != 0:
                _codec.ensure(rc)  # raises: no FIFO entry without its request
        # Exact, as rule 6 needs every offset right (high_water only an estimate).
        self._unsent += size
        if self._marks is not None:
            self._mark(size, entry)
        if entry is not None:
            if not self._pending and self.command_timeout:
                self._start_command_clock()
            self._pending.append(entry)

    def written(self, left: int) -> None:
        """Driver: the codec's write buffer now holds ``left`` unsent bytes."""
        self._unsent = left
        self._write_early_at = left + EARLY_WRITE if left else FIRST_PIECE
        marks = self._marks
        if marks is not None and self._mark_head < len(marks):
            # Requests the kernel took a byte of can no longer be re-sent.
            head = bisect.bisect_left(marks, self._out_total - left, self._mark_head)
            if head > 4096 and head * 2 > len(marks):
                del marks[:head]  # compact now and then, not on every write
                head = 0
            self._mark_head = head
        if left == 0 and self._was_full:
            self._was_full = False
            if self.on_drain is not None:
                self._call(self.on_drain)

    # ===== Receiving =====

    def receive(self) -> None:
        """Driver: bytes arrived in the codec. Match and dispatch every whole
        packet. Each reply is matched and the state updated before the
        handler runs user code (rule 2)."""
        c = self.c
        pkt = self._pkt
        epoch = self.epoch
        dispatch = _DISPATCH
        pending = self._pending
        got = False
        while True:
            mode = pending[0].kind if pending else 0
            if mode == K_SUBMIT_BG and self.pool is None and \
                    next_created(c, _RUN_MAX, self._run_out, _RUN_CAP, self._run_used):
                got = True
                try:
                    self._created_run()
                except Exception as exc:  # noqa: BLE001 - rule 4, as for any handler
                    if epoch == self.epoch:
                        self.protocol_error(f"JOB_CREATED: {exc}")
                    return
                if epoch != self.epoch:
                    return  # a callback dropped or replaced the connection
                continue
            n = next_packet(c, mode if mode <= K_TEXT_MARKED else 0, pkt)
            if n <= 0:
                break
            cmd = pkt.cmd
            handler = dispatch.get(cmd)
            if handler is None:
                log.debug("gearman_ev: ignoring packet type %d", cmd)
                continue
            got = True
            try:
                handler(self, pkt)
            except Exception as exc:  # noqa: BLE001 - rule 4
                if epoch == self.epoch:
                    self.protocol_error(f"{_codec.packet_name(cmd)}: {exc}")
                return
            if epoch != self.epoch:
                return  # a callback dropped or replaced the connection
        if got:
            self._heard = True
        if n < 0:
            self._drop(_codec.message(n))
            return
        if self.command_timeout:
            # Every byte received restarts the command clock. Moving it later
            # needs no re-arm: the timer fires early once and re-arms.
            self._command_at = self._driver.now() + self.command_timeout if pending else 0.0

    def feed(self, data: bytes) -> None:
        """Driver: bytes from a transport the codec does not read itself
        (asyncio, a TLS memory BIO); match and dispatch what they complete."""
        if self.state != CONNECTED or not data:
            return
        rc = _codec.feed(self.c, data, len(data))
        if rc < 0:
            self._drop(_codec.message(rc))
            return
        self.receive()

    def take_output(self) -> bytes:
        """Driver: every byte queued to send, removed from the codec; the
        driver hands it to its transport (and reports ``written(0)``)."""
        if self.c == NULL:
            return b""
        return _codec.take_output(self.c)

    def _pop(self, cmd: int) -> Optional[Entry]:
        """The FIFO head answered by reply ``cmd``; a mismatch is a protocol
        error (and None)."""
        pending = self._pending
        if pending and pending[0].kind in ANSWERS[cmd]:
            return pending.popleft()
        self.protocol_error(f"unexpected response {_codec.packet_name(cmd)}")
        return None

    # ===== Calling user code =====

    def _call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run user code; report what it raises; never let it unwind us."""
        try:
            return func(*args)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._driver.park(exc)
        except BaseException:  # noqa: BLE001 - a user callback must not break us
            log.exception("gearman_ev: exception in callback %r", func)
        return None

    # ===== Deadlines =====

    def _start_command_clock(self) -> None:
        self._command_at = self._driver.now() + self.command_timeout
        if not self._armed or self._command_at < self._armed:
            self._rearm()

    def _push_deadline(self, sub: Submission) -> None:
        deadline = sub.deadline
        if deadline >= self._lane_floor:
            self._lane_floor = deadline
            self._job_lane.append(sub)
        else:
            self._job_seq += 1
            heapq.heappush(self._job_heap, (deadline, self._job_seq, sub))
        self._live_deadlines += 1
        if not self._armed or deadline < self._armed:
            self._rearm()

    def set_job_deadline(self, sub: Submission, timeout: float) -> None:
        sub.deadline = self._driver.now() + timeout
        self._push_deadline(sub)

    def _rearm(self, force: bool = False) -> None:
        """Point the driver's one timer at the earliest deadline. Without
        ``force`` it only ever moves earlier: a timer that fires before a
        deadline that moved later just re-arms (``on_deadline``)."""
        heap = self._job_heap
        while heap and heap[0][2].done:
            heapq.heappop(heap)  # finished jobs leave lazily
        lane = self._job_lane
        while lane and lane[0].done:
            lane.popleft()
        when = min((t for t in (self._connect_at, self._command_at, self._reconnect_at,
                                self._regrab_at, heap[0][0] if heap else 0.0,
                                lane[0].deadline if lane else 0.0) if t),
                   default=0.0)
        if force or (when and (not self._armed or when < self._armed)):
            self._armed = when
            self._driver.set_deadline(when)

    def on_deadline(self) -> None:
        """Driver: the timer fired. Run every deadline that has passed."""
        self._armed = 0.0
        now = self._driver.now()
        epoch = self.epoch
        if self._connect_at and now >= self._connect_at and self.state == CONNECTING:
            self._connect_at = 0.0
            self.connect_failed(errors.CONNECT_TIMEOUT)
        if self._command_at and now >= self._command_at:
            self._command_at = 0.0
            if self.state == CONNECTED and self._pending:
                self._drop(errors.COMMAND_TIMEOUT, drain_err=errors.COMMAND_TIMEOUT)
        if self._reconnect_at and now >= self._reconnect_at:
            self._reconnect_at = 0.0
            if self.state == WAITING and not self.closed:
                self._start_connect()
        if self._regrab_at and now >= self._regrab_at:
            self._regrab_at = 0.0
            if self._sleeping and self.working and self.state == CONNECTED:
                self._wake()
        heap = self._job_heap
        lane = self._job_lane
        while epoch == self.epoch:
            # The earlier of the two heads; on a tie the lane's (armed first).
            if lane and lane[0].deadline <= now and (
                    not heap or lane[0].deadline <= heap[0][0]):
                sub = lane.popleft()
            elif heap and heap[0][0] <= now:
                sub = heapq.heappop(heap)[2]
            else:
                break
            if not sub.done:
                self._job_timed_out(sub)  # _finish_sub counts it out of _live_deadlines
        if not self.closed:
            self._rearm(force=True)

    def _job_timed_out(self, sub: Submission) -> None:
        if sub.handle is not None:
            self.active_count -= 1
            if not sub.shared and self._active.get(sub.handle) is sub:
                # Its later events concern no one: held on, a job that never
                # ends would stay for the connection's lifetime. (With a
                # unique key it stays, to route coalesced copies, PROTOCOL.md 4.2.)
                del self._active[sub.handle]
        self._finish_sub(sub, None, errors.JOB_TIMEOUT)

    # ===== Client replies =====

    def _finish_sub(self, sub: Submission, result: Optional[bytes], err: Optional[str]) -> None:
        """The one terminal callback of a foreground submission."""
        if sub.done:
            return
        sub.done = True
        if sub.deadline:
            self._live_deadlines -= 1
            if len(self._job_heap) + len(self._job_lane) > \
                    2 * self._live_deadlines + _HEAP_SLACK:
                self._job_heap = [e for e in self._job_heap if not e[2].done]
                heapq.heapify(self._job_heap)
                self._job_lane = collections.deque(e for e in self._job_lane if not e.done)
        cb = sub.cb
        if cb is not None:
            # What the finished job held goes now, not when its deadline passes.
            sub.cb = sub.on_data = sub.on_warning = sub.on_status = sub.on_exception = None
            self._call(cb, result, err)

    def _on_job_created(self, pkt: Any) -> None:
        pending = self._pending
        if pending and pending[0].kind in _CREATED_ANSWERS:  # _pop, inlined
            entry = pending.popleft()
        else:
            self._pop(CMD.JOB_CREATED)
            return
        # Handles stay bytes inside: the key of _active, never decoded per event.
        handle = unpack(self._pkt_arg[0], self._pkt_len[0])
        if entry.kind == K_SUBMIT_BG:
            if entry.cb is not None:
                name = handle.decode("utf-8", "surrogateescape")
                if self.pool is not None:
                    self.pool.created(self, name)  # a pool's get_status asks this server
                self._call(entry.cb, name, None)
            return
        self._created(entry, handle)  # type: ignore[arg-type]

    def _created_run(self) -> None:
        """Replies that gm_conn_next_created took off the front: a run of
        JOB_CREATED, the answer to a burst of background submissions, their
        handles in ``_run_out``. Every reply is matched first (rule 2), a
        foreground submission among them listed as ``_on_job_created`` does;
        then the background callbacks run, in order, each once (rule 3)."""
        names = unpack(self._run_out, self._run_used[0] - 1).decode(
            "utf-8", "surrogateescape").split("\0")
        pending = self._pending
        calls = []
        mismatch = False
        epoch = self.epoch
        for name in names:
            if not pending or pending[0].kind not in _CREATED_ANSWERS:
                mismatch = True  # reported once the matched ones had their replies
                break
            entry = pending.popleft()
            if entry.kind == K_SUBMIT_BG:
                if entry.cb is not None:
                    calls.append((entry.cb, name))
            else:
                self._created(entry, name.encode("utf-8", "surrogateescape"))  # type: ignore
        for cb, name in calls:
            try:  # _call, inlined: a burst of background submissions comes here
                cb(name, None)
            except (KeyboardInterrupt, SystemExit) as exc:
                self._driver.park(exc)
            except BaseException:  # noqa: BLE001 - as in _call
                log.exception("gearman_ev: exception in callback %r", cb)
        if mismatch and epoch == self.epoch:
            self._pop(CMD.JOB_CREATED)  # the protocol error, as for a single reply

    def _created(self, sub: Submission, handle: bytes) -> None:
        """A foreground submission's JOB_CREATED: listed in ``_active``."""
        sub.handle = handle
        if not sub.done:
            self.active_count += 1
        elif not sub.shared:
            return  # timed out, and no other submission can share its handle
        active = self._active
        other = active.get(handle)
        if other is None:
            active[handle] = sub  # the common case: one submission per handle
        elif type(other) is Attached:
            other.subs.append(sub)
        else:
            active[handle] = Attached([other, sub])
        if sub.on_created is not None and not sub.done:
            # Routed first (rule 2): events that follow in this same read
            # already find the submission.
            self._call(sub.on_created, handle.decode("utf-8", "surrogateescape"))

    def _event_sub(self, pkt: Any, terminal: bool) -> Optional[Submission]:
        """The submission the next copy of this work event belongs to; a
        terminal copy also retires it from _active."""
        handle = unpack(pkt.arg[0], pkt.len[0])
        active = self._active
        item = active.get(handle)
        if item is None or type(item) is not Attached:
            if terminal and item is not None:
                del active[handle]
            return item
        sub = item.next_sub()
        if terminal:
            item.retire(sub)
            if len(item.subs) == 1:
                active[handle] = item.subs[0]
        return sub

    def _on_work_data(self, pkt: Any) -> None:
        sub = self._event_sub(pkt, False)
        if sub is not None and not sub.done and sub.on_data is not None:
            self._call(sub.on_data, unpack(pkt.arg[1], pkt.len[1]))

    def _on_work_warning(self, pkt: Any) -> None:
        sub = self._event_sub(pkt, False)
        if sub is not None and not sub.done and sub.on_warning is not None:
            self._call(sub.on_warning, unpack(pkt.arg[1], pkt.len[1]))

    def _on_work_status(self, pkt: Any) -> None:
        sub = self._event_sub(pkt, False)
        if sub is not None and not sub.done and sub.on_status is not None:
            self._call(sub.on_status, _text(pkt, 1), _text(pkt, 2))

    def _terminal(self, pkt: Any, result: Optional[bytes], err: Optional[str],
                  exception_data: Optional[bytes] = None) -> None:
        sub = self._event_sub(pkt, True)
        if sub is None or sub.done:
            return  # unknown, or timed out earlier: its copy is dropped
        self.active_count -= 1
        if exception_data is not None and sub.on_exception is not None:
            epoch = self.epoch
            self._call(sub.on_exception, exception_data)
            if epoch != self.epoch:
                return  # the drop that on_exception caused has drained sub
        self._finish_sub(sub, result, err)

    def _on_work_complete(self, pkt: Any) -> None:
        # A small body in one copy, split at its first NUL (the result keeps
        # any of its own); too few NULs, or a large body: the args as C split
        # them.
        body_len = pkt.body_len
        parts = unpack(self._pkt_arg[0], body_len).split(b"\0", 1) \
            if body_len <= _ONE_COPY_MAX else []
        if len(parts) == 2:
            handle, result = parts
        else:
            arg, lens = self._pkt_arg, self._pkt_len
            handle, result = unpack(arg[0], lens[0]), unpack(arg[1], lens[1])
        active = self._active
        sub = active.get(handle)
        # One submission on the handle: the fast path. (Not Attached rather
        # than "is Submission": the asyncio front-end's entries subclass it.)
        if sub is not None and type(sub) is not Attached:
            del active[handle]
            if sub.done:
                return
            self.active_count -= 1
            cb = sub.cb
            if sub.deadline or cb is None:
                self._finish_sub(sub, result, None)
                return
            # _finish_sub and _call, inlined: every foreground job ends here.
            sub.done = True
            sub.cb = sub.on_data = sub.on_warning = sub.on_status = sub.on_exception = None
            try:
                cb(result, None)
            except (KeyboardInterrupt, SystemExit) as exc:
                self._driver.park(exc)
            except BaseException:  # noqa: BLE001 - as in _call
                log.exception("gearman_ev: exception in callback %r", cb)
            return
        self._terminal(pkt, result, None)

    def _on_work_fail(self, pkt: Any) -> None:
        self._terminal(pkt, None, errors.JOB_FAILED)

    def _on_work_exception(self, pkt: Any) -> None:
        self._terminal(pkt, None, errors.EXCEPTION, unpack(pkt.arg[1], pkt.len[1]))

    def _on_echo_res(self, pkt: Any) -> None:
        pending = self._pending
        if pending and pending[0].kind == K_ALL_YOURS:
            # No ERROR came before the marker's echo: ALL_YOURS was taken silently.
            yours = pending.popleft()
            if pending and pending[0].kind == K_MARKER:
                pending.popleft()  # this very echo answers the marker
            if yours.cb is not None:
                self._call(yours.cb, True, None)
            return
        entry = self._pop(CMD.ECHO_RES)
        if entry is None or entry.kind == K_MARKER:
            return
        if entry.cb is not None:
            self._call(entry.cb, unpack(pkt.arg[0], pkt.len[0]), None)

    def _on_status_res(self, pkt: Any) -> None:
        entry = self._pop(CMD.STATUS_RES)
        if entry is not None and entry.cb is not None:
            self._call(entry.cb, _status(pkt, "handle"), None)

    def _on_status_res_unique(self, pkt: Any) -> None:
        entry = self._pop(CMD.STATUS_RES_UNIQUE)
        if entry is None:
            return
        status = _status(pkt, "unique")
        count = unpack(pkt.arg[5], pkt.len[5])
        if count and not count.isdigit():  # bytes.isdigit: ASCII digits only
            # Undigestible: back at the head, so the drop gives it its one
            # callback with every other pending request (rule 3).
            self._pending.appendleft(entry)
            self.protocol_error(f"bad client count {count!r} in STATUS_RES_UNIQUE")
            return
        status["client_count"] = int(count) if count else 0
        if entry.cb is not None:
            self._call(entry.cb, status, None)

    def _on_option_res(self, pkt: Any) -> None:
        entry = self._pop(CMD.OPTION_RES)
        if entry is not None and entry.cb is not None:
            self._call(entry.cb, True, None)

    def _on_error_packet(self, pkt: Any) -> None:
        code, text = _text(pkt, 0), _text(pkt, 1)
        err = f"{code}: {text}"
        if code == "JOB_NOT_FOUND" or not self._pending:
            # Never the answer to a request in gearmand 1.1 (PROTOCOL.md 3.2).
            self.report_error(err)
            return
        head = self._pending[0]
        if head.kind == K_MARKER or head.kind <= K_TEXT_MARKED:
            self.protocol_error(f"unexpected ERROR {err}")
            return
        entry = self._pending.popleft()
        if entry.kind == K_GRAB_MANAGED:
            # An ERROR answers exactly this GRAB; the worker loop goes on,
            # asleep until a NOOP or the re-grab timer (never a busy retry).
            self._grabs_out -= 1
            if self.working and self._grabs_out == 0 and not self._sleeping:
                self._go_to_sleep()
            if self.grab_cap is not None:
                self.grab_cap.share()
            self.report_error(err)
            return
        self._fail_entry(entry, err)

    def _on_text(self, pkt: Any) -> None:
        # The decoder frames text only in the mode the FIFO head asked for.
        entry = self._pending.popleft()
        raw = unpack(pkt.arg[0], pkt.len[0])
        if entry.kind == K_TEXT_MARKED:
            # Everything up to the marker's echo: the last line is the real
            # terminator, any "." before it is a unique key (PROTOCOL.md 7).
            lines = raw.replace(b"\r\n", b"\n").split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            if lines and lines[-1] == b".":
                lines.pop()
            raw = b"".join(line + b"\n" for line in lines)  # the ECHO_RES pops the marker
        if entry.cb is None:
            return
        text = raw.decode("utf-8", "replace")
        if entry.kind == K_TEXT_LINE:
            if text.startswith("ERR "):
                self._call(entry.cb, None, text)
            else:
                self._call(entry.cb, text, None)
        else:
            self._call(entry.cb, text.replace("\r\n", "\n"), None)

    # ===== Worker: abilities =====

    def set_ability(self, func: bytes, ability: Optional[Ability]) -> None:
        """CAN_DO / CAN_DO_TIMEOUT (ability) or CANT_DO (None), now if
        connected, and on every connect."""
        if ability is None:
            self.abilities.pop(func, None)
            if self.state == CONNECTED:
                self._pack(CMD.CANT_DO, (func,), None)
                self._flush_soon()
            return
        self.abilities[func] = ability
        if self.state == CONNECTED:
            self._pack_ability(func, ability)
            self._flush_soon()
            # gearmand sends no NOOP for jobs already queued for a new ability:
            # a sleeping worker loop grabs at once instead of on the re-grab timer.
            self._wake()

    def _pack_ability(self, func: bytes, ability: Ability) -> None:
        if ability.timeout_ms is None:
            self._pack(CMD.CAN_DO, (func,), None)
        else:
            self._pack(CMD.CAN_DO_TIMEOUT, (func, str(ability.timeout_ms).encode()), None)

    def reset_abilities(self) -> None:
        self.abilities.clear()
        if self.state == CONNECTED:
            self._pack(CMD.RESET_ABILITIES, (), None)
            self._flush_soon()

    def set_client_id(self, client_id: bytes) -> None:
        self.client_id = client_id
        if self.state == CONNECTED:
            self._pack(CMD.SET_CLIENT_ID, (client_id,), None)
            self._flush_soon()

    def all_yours(self, cb: Callback) -> None:
        # An ECHO behind it tells silence from a late ERROR.
        self.send(CMD.ALL_YOURS, (), Entry(K_ALL_YOURS, cb))
        self.send(CMD.ECHO_REQ, (b"",), Entry(K_MARKER, None))

    def admin(self, line: bytes, kind: int, cb: Callback) -> None:
        """An admin line; a MARKED reply gets its ECHO marker right behind."""
        self.send(None, line, Entry(kind, cb))
        if kind == K_TEXT_MARKED:
            self.send(CMD.ECHO_REQ, (b"",), Entry(K_MARKER, None))

    def admin_command(self, command: bytes, cb: Callback) -> None:
        """A checked admin command (``_args.admin_command``), sent with the
        reply shape gearmand gives it (rule 1: the shape decides matching)."""
        # Split as gearmand does: on runs of spaces only (a tab is part of a
        # word), a leading space making the command word empty; ASCII case-blind.
        head, *rest = command.lower().split(b" ")
        rest = [w for w in rest if w]
        if head in _BLOCK_COMMANDS or (head == b"show" and rest == [b"jobs"]):
            kind = K_TEXT_BLOCK
        elif head == b"show" and rest == [b"unique", b"jobs"]:
            kind = K_TEXT_MARKED  # a unique key "." must not end it (PROTOCOL.md 7)
        else:
            kind = K_TEXT_LINE
        # CRLF: gearmand trims two bytes off some lines (PROTOCOL.md 7).
        self.admin(command + b"\r\n", kind, cb)

    def option(self, name: bytes, cb: Callback) -> None:
        """OPTION_REQ; "exceptions" is remembered and re-sent on every connect."""
        self.send(CMD.OPTION_REQ, (name,), Entry(K_OPTION, cb))
        if name.lower() == b"exceptions":
            self.exceptions = True

    def grab_job(self, cb: Callable[..., Any]) -> None:
        cmd = CMD.GRAB_JOB_UNIQ if self.grab_unique else CMD.GRAB_JOB
        self.send(cmd, (), Entry(K_GRAB, cb))

    # ===== Worker: the managed loop =====

    def work(self, on_idle: Callback, concurrency: Optional[int], one: bool) -> None:
        self._on_idle = on_idle
        self._concurrency = concurrency
        self._work_one = one
        self.working = True
        if self.state == CONNECTED:
            self._grab_more()

    def work_stop(self) -> None:
        self.working = False
        self._work_one = False
        self._regrab_at = 0.0

    def _grab_limit(self) -> int:
        if self._concurrency is None:
            return 1
        return self._concurrency - self._in_flight

    def _grab_more(self) -> None:
        if not self.working or self._sleeping or self.state != CONNECTED:
            return
        if self.grab_cap is not None:
            self.grab_cap.share()  # one cap over a pool's connections decides who grabs
            return
        cmd = _GRAB_UNIQ if self.grab_unique else _GRAB
        # _grab_limit and _pack, inlined: a sync worker comes here after
        # every job (issue 17). Same packets, same FIFO entries.
        limit = 1 if self._concurrency is None else self._concurrency - self._in_flight
        if self._grabs_out >= limit:
            return
        c = self.c
        pending = self._pending
        while self._grabs_out < limit:
            rc = pack4(c, cmd, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0)
            if rc != 0:
                _codec.ensure(rc)  # raises: no FIFO entry without its request
            self._unsent += 12
            if self._marks is not None:
                self._out_total += 12  # _mark: a GRAB is never re-routable (rule 6)
            self._grabs_out += 1
            if not pending and self.command_timeout:
                self._start_command_clock()
            pending.append(_MANAGED_GRAB)
        if not self.flush_asked:
            self.flush_asked = True
            self._driver.flush_soon()

    def _go_to_sleep(self) -> None:
        self._sleeping = True
        self._slept_at = now = self._driver.now()
        self._pack(CMD.PRE_SLEEP, (), None)
        self._flush_soon()
        self._regrab_at = now + REGRAB_INTERVAL
        self._rearm()
        if self._on_idle is not None:
            self._call(self._on_idle)

    def _wake(self) -> None:
        if self._sleeping:
            self._sleeping = False
            self._regrab_at = 0.0
            self._grab_more()

    def _on_noop(self, pkt: Any) -> None:
        if not self._sleeping:
            return  # a stale hint: a GRAB is already out (PROTOCOL.md 5)
        if self._driver.now() - self._slept_at < SPIN_WINDOW:
            self._quick_wakes += 1
        else:
            self._quick_wakes = 0
        excess = self._quick_wakes - SPIN_TOLERANCE
        if excess > 0:
            delay = min(SPIN_BACKOFF_MIN * 2 ** min(excess, 16), SPIN_BACKOFF_MAX)
            self._regrab_at = self._driver.now() + delay
            self._rearm()
            return
        self._wake()

    def _on_no_job(self, pkt: Any) -> None:
        entry = self._pop(CMD.NO_JOB)
        if entry is None:
            return
        if entry.kind == K_GRAB:
            if entry.cb is not None:
                self._call(entry.cb, None, errors.NO_JOB)
            return
        self._grabs_out -= 1
        if self.working and self._grabs_out == 0 and not self._sleeping:
            self._go_to_sleep()
        if self.grab_cap is not None:
            self.grab_cap.share()  # the slot this GRAB held may serve another server

    def _on_job_assign(self, pkt: Any) -> None:
        # A sync worker's every job (issue 17): _assigned and _run_sync,
        # inlined for their usual case, a managed GRAB answered with a job
        # for a plain function. Same steps in the same order; the rest (and
        # anything unusual) goes the long way.
        pending = self._pending
        if not pending or pending[0] is not _MANAGED_GRAB:
            self._assigned(pkt, CMD.JOB_ASSIGN, "", 2)
            return
        # A small body in one copy, split at its first two NULs (the workload
        # keeps any of its own): cheaper than three unpacks. Too few NULs, or
        # a large body: the args as C split them (a payload copied once).
        body_len = pkt.body_len
        parts = unpack(self._pkt_arg[0], body_len).split(b"\0", 2) \
            if body_len <= _ONE_COPY_MAX else []
        if len(parts) != 3:
            arg, lens = self._pkt_arg, self._pkt_len
            parts = [unpack(arg[0], lens[0]), unpack(arg[1], lens[1]), unpack(arg[2], lens[2])]
        handle, function, workload = parts
        ability = self.abilities.get(function)
        if ability is None or ability.async_ or ability.callback is None:
            self._assigned(pkt, CMD.JOB_ASSIGN, "", 2, parts)
            return
        pending.popleft()
        self._grabs_out -= 1
        self._quick_wakes = 0
        if self._work_one:
            self.working = self._work_one = False
        epoch = self.epoch
        job = self._make_job(self, handle, function, "", workload, False)
        try:
            result = ability.callback(job)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._driver.park(exc)
            self.finish_job(job, None, exc)
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure
            log.exception("gearman_ev: worker callback for %r raised", job.function)
            self.finish_job(job, None, exc)
        else:
            self.finish_job(job, result, None)
        if epoch == self.epoch:
            self._grab_more()

    def _on_job_assign_uniq(self, pkt: Any) -> None:
        self._assigned(pkt, CMD.JOB_ASSIGN_UNIQ, _text(pkt, 2), 3)

    def _on_job_assign_all(self, pkt: Any) -> None:
        self._assigned(pkt, CMD.JOB_ASSIGN_ALL, _text(pkt, 2), 4)

    def _assigned(self, pkt: Any, cmd: int, unique: str, workload_arg: int,
                  parts: Optional[List[bytes]] = None) -> None:
        """A JOB_ASSIGN*: ``parts`` (handle, function, workload) when the
        caller copied them already."""
        pending = self._pending
        if pending and pending[0].kind in _ASSIGN_ANSWERS:  # _pop, inlined
            entry = pending.popleft()
        else:
            self._pop(cmd)
            return
        if parts is None:
            arg, lens = self._pkt_arg, self._pkt_len
            parts = [unpack(arg[0], lens[0]), unpack(arg[1], lens[1]),
                     unpack(arg[workload_arg], lens[workload_arg])]
        handle, function, workload = parts
        if entry.kind == K_GRAB:  # grab_job(): the user runs it
            if entry.cb is not None:
                self._call(entry.cb, self._make_job(self, handle, function, unique, workload,
                                                    False), None)
            return
        self._grabs_out -= 1
        self._quick_wakes = 0
        if self._work_one:
            self.working = self._work_one = False
        ability = self.abilities.get(function)
        epoch = self.epoch
        if ability is None or ability.callback is None:
            log.error("gearman_ev: no callback registered for %r; failing job %r",
                      function.decode("utf-8", "replace"), handle.decode("utf-8", "replace"))
            self._pack(CMD.WORK_FAIL, (handle,), None)
            self._flush_soon()
        elif ability.async_:
            self._in_flight += 1
            self._call(ability.callback,
                       self._make_job(self, handle, function, unique, workload, True))
        else:
            self._run_sync(ability.callback,
                           self._make_job(self, handle, function, unique, workload, False))
        if epoch == self.epoch:
            self._grab_more()

    def _run_sync(self, callback: Callable[..., Any], job: Any) -> None:
        failure: Optional[BaseException] = None
        result: Any = None
        try:
            result = callback(job)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._driver.park(exc)
            failure = exc
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure
            log.exception("gearman_ev: worker callback for %r raised", job.function)
            failure = exc
        self.finish_job(job, result, failure)

    def finish_job(self, job: Any, result: Any, failure: Optional[BaseException]) -> None:
        """A worker function's outcome as the job's one terminal packet:
        its result (``failure`` None), else WORK_EXCEPTION carrying
        ``str(failure)`` when ``exceptions`` is on, else WORK_FAIL. Nothing
        is sent for a job that was finished already or whose connection is
        gone. (Also the asyncio front-end's, for ``async def`` functions.)"""
        if job.finished or job.epoch != self.epoch or self.closed or self.state != CONNECTED:
            return  # finished by the callback itself, or its connection is gone
        if failure is None:
            # The usual end of a sync job, without Job.complete's caller
            # checks: this is the loop's thread, on the job's own connection.
            if result is None:
                data = b""
            elif type(result) is bytes:
                data = result
            else:
                try:
                    data = _args.payload(result, "result")
                except TypeError as exc:
                    log.error("gearman_ev: bad result from %r: %s", job.function, exc)
                    job.fail()
                    return
            handle = job._handle
            lh, ld = len(handle), len(data)
            if lh + ld + 1 > _MAX_PACKET:
                log.error("gearman_ev: result of %r too large (%d bytes)", job.function, ld)
                job.fail()
                return
            job.finished = True
            # _pack, inlined (as send3 does for submissions): no args tuple.
            rc = pack4(self.c, _WORK_COMPLETE, 2, handle, lh, data, ld, NULL, 0, NULL, 0)
            if rc != 0:
                _codec.ensure(rc)
            self._unsent += 13 + lh + ld
            if self._marks is not None:
                self._out_total += 13 + lh + ld  # _mark: no entry, never re-routed (rule 6)
            if not self.flush_asked:
                self.flush_asked = True
                self._driver.flush_soon()
            if job._counted:
                self.job_done(True)  # an async job's slot is free
            return
        try:
            if self.exceptions:
                job.exception(str(failure))
            else:
                job.fail()
        except ValueError as exc:  # an exception text past MAX_PACKET
            log.error("gearman_ev: cannot report %r's failure: %s", job.function, exc)
            job.fail()

    # ===== Jobs (called by Job through these public methods) =====

    def job_send(self, epoch: int, cmd: int, args: Tuple[Any, ...]) -> None:
        """A job's WORK_* packet, on the connection the job came on."""
        self.check_usable()
        if epoch != self.epoch or self.state != CONNECTED:
            raise errors.GearmanError(errors.STALE_JOB)
        self._pack(cmd, args, None)
        self._flush_soon()

    def job_done(self, counted: bool) -> None:
        """A job sent its terminal packet: an async one frees a slot."""
        if counted and self._in_flight > 0:
            self._in_flight -= 1
            if self.grab_cap is not None:
                self.grab_cap.share()  # even asleep here: another server may want the slot
            elif self._concurrency is not None:
                self._grab_more()

    # ===== Pools (rule 6): failover and one grab cap over many connections =====

    def join_pool(self, pool: Any) -> None:
        """Serve in a pool (see ``_routing.Router``): ``pool.session_up(self)``
        after each connect, ``pool.session_down(self, unsent)`` after each
        drop, with the requests this connection never wrote (rule 6), and
        ``pool.created(self, handle)`` when a background job with a
        callback got its handle here."""
        self.pool = pool
        if self._marks is None:
            self._marks = array.array("q")
            self._mark_head = 0
            self._out_total = _codec.write_pending(self.c) if self.state == CONNECTED else 0

    def leave_pool(self) -> None:
        self.pool = None
        self.grab_cap = None
        self._marks = None

    def _mark(self, size: int, entry: Optional[Entry]) -> None:
        start = self._out_total
        self._out_total = start + size
        if entry is not None and entry.kind in REROUTABLE:
            self._marks.append(start)  # type: ignore[union-attr]

    def _take_unsent(self) -> List[Tuple[Optional[int], Any, Entry, Optional[bytes]]]:
        """Rule 6: take the re-routable requests this connection never wrote
        out of ``_pending`` and ``_waiting``, each as ``(cmd, args, entry,
        key)`` for ``adopt`` (``cmd`` None: ``args`` is the whole packet as
        it was queued), ``key`` its unique key (None: none). Their job
        deadlines leave this connection's timer with them."""
        if self.pool is None:
            return []
        items: List[Tuple[Optional[int], Any, Entry, Optional[bytes]]] = []
        marks = self._marks
        if marks is not None and self._mark_head < len(marks) and self.c != NULL:
            data = _codec.take_output(self.c)  # the bytes the kernel never took
            base = self._out_total - len(data)
            starts = marks[bisect.bisect_left(marks, base, self._mark_head):]
            del marks[:]
            self._mark_head = 0
            # Their requests are the last len(starts) re-routable entries of
            # the FIFO: a reply only ever answers a request that was written.
            tail: List[Entry] = []
            if starts:
                for e in reversed(self._pending):
                    if e.kind in REROUTABLE:
                        tail.append(e)
                        if len(tail) == len(starts):
                            break
                tail.reverse()
            if len(tail) != len(starts):
                # Out of step: a bug. Failing is safe; sending misframed bytes is not.
                log.error("gearman_ev: %d unsent offsets for %d requests; none re-sent",
                          len(starts), len(tail))
                starts, tail = starts[:0], []
            taken = set()
            for start, entry in zip(starts, tail):
                if entry.kind == K_SUBMIT and entry.done:  # type: ignore[attr-defined]
                    continue  # timed out already: its callback has fired
                packet = _packet_at(data, start - base)
                if packet is None:
                    log.error("gearman_ev: unsent request at %d does not frame; not re-sent",
                              start)
                    continue
                taken.add(id(entry))
                items.append((None, packet, entry, _packet_key(entry.kind, packet)))
            if taken:
                self._pending = collections.deque(
                    e for e in self._pending if id(e) not in taken)
        if self._waiting:
            keep: Deque[Tuple[Any, Any, Optional[Entry]]] = collections.deque()
            for cmd, args, held in self._waiting:
                if held is None or held.kind not in REROUTABLE or \
                        (held.kind == K_SUBMIT and held.done):  # type: ignore[attr-defined]
                    keep.append((cmd, args, held))
                    continue
                key = args[0] if held.kind == K_STATUS_UNIQUE else \
                    args[1] if held.kind != K_ECHO else None
                items.append((cmd, args, held, key or None))
            self._waiting = keep
        moved = {id(e) for _, _, e, _ in items
                 if e.kind == K_SUBMIT and e.deadline}  # type: ignore[attr-defined]
        if moved:
            self._job_heap = [t for t in self._job_heap if id(t[2]) not in moved]
            heapq.heapify(self._job_heap)
            self._job_lane = collections.deque(e for e in self._job_lane if id(e) not in moved)
            self._live_deadlines -= len(moved)
        return items

    def _hand_back(self, unsent: List[Tuple[Optional[int], Any, Entry, Optional[bytes]]]
                   ) -> None:
        if self.pool is not None:
            self.pool.session_down(self, unsent)

    def adopt(self, cmd: Optional[int], args: Any, entry: Entry) -> None:
        """Queue a request a pool routes here: one a dropped connection
        handed back (``_take_unsent``), or one that waited for a server. As
        ``send``, but never refused for back-pressure (it was accepted
        once); a submission's job deadline comes with it."""
        state = self.state
        if state == CONNECTED:
            self._pack(cmd, args, entry)
            self._flush_soon()
        elif state != DISCONNECTED:
            self._waiting.append((cmd, _snapshot(args), entry))
        else:
            raise errors.GearmanError(errors.NOT_CONNECTED)
        if entry.kind == K_SUBMIT and entry.deadline and not entry.done:  # type: ignore
            self._push_deadline(entry)  # type: ignore[arg-type]

    @property
    def grab_load(self) -> int:
        """Slots this connection holds under a shared grab cap: GRABs
        awaiting their reply and async jobs running (0 once it dropped:
        its jobs are stale and its GRABs will never be answered)."""
        if self.state != CONNECTED:
            return 0
        return self._grabs_out + self._in_flight

    @property
    def wants_grab(self) -> bool:
        """The worker loop runs here, awake, on a live connection."""
        return self.working and not self._sleeping and self.state == CONNECTED

    def grab_one(self) -> None:
        """One managed GRAB, granted by a shared grab cap."""
        cmd = CMD.GRAB_JOB_UNIQ if self.grab_unique else CMD.GRAB_JOB
        self._grabs_out += 1
        self._pack(cmd, (), _MANAGED_GRAB)
        self._flush_soon()

    def check_caller(self) -> None:
        self.check_usable()
        self._driver.check_thread()


#: Reply packet -> its handler. A handler matches (rule 1), updates state,
#: then runs user code (rule 2).
_DISPATCH: Dict[int, Callable[[Session, Any], None]] = {
    CMD.TEXT: Session._on_text,
    CMD.JOB_CREATED: Session._on_job_created,
    CMD.WORK_DATA: Session._on_work_data,
    CMD.WORK_WARNING: Session._on_work_warning,
    CMD.WORK_STATUS: Session._on_work_status,
    CMD.WORK_COMPLETE: Session._on_work_complete,
    CMD.WORK_FAIL: Session._on_work_fail,
    CMD.WORK_EXCEPTION: Session._on_work_exception,
    CMD.ECHO_RES: Session._on_echo_res,
    CMD.STATUS_RES: Session._on_status_res,
    CMD.STATUS_RES_UNIQUE: Session._on_status_res_unique,
    CMD.OPTION_RES: Session._on_option_res,
    CMD.ERROR: Session._on_error_packet,
    CMD.NOOP: Session._on_noop,
    CMD.NO_JOB: Session._on_no_job,
    CMD.JOB_ASSIGN: Session._on_job_assign,
    CMD.JOB_ASSIGN_UNIQ: Session._on_job_assign_uniq,
    CMD.JOB_ASSIGN_ALL: Session._on_job_assign_all,
}


def lib_reset(c: Any, fd: int) -> None:
    if c != NULL:
        _codec.reset(c, fd)


def fail_detached(entry: Entry, err: str, call: Callable[..., Any]) -> None:
    """Fail a request that no connection holds any more (handed back by
    rule 6, or held by a pool until a server comes up): its one callback,
    run through ``call`` (the front-end's guard for user code)."""
    if entry.kind == K_SUBMIT:
        sub: Submission = entry  # type: ignore[assignment]
        if sub.done:
            return
        sub.done = True
        cb = sub.cb
        sub.cb = sub.on_data = sub.on_warning = sub.on_status = sub.on_exception = None
    else:
        cb = entry.cb
        entry.cb = None
    if cb is not None:
        call(cb, None, err)


def _packet_at(data: bytes, off: int) -> Optional[bytes]:
    """The whole binary request packet at ``off`` in ``data``, or None if
    the bytes there are not one (magic "\\0REQ", big-endian size)."""
    if off < 0 or data[off:off + 4] != b"\0REQ" or len(data) < off + 12:
        return None
    end = off + 12 + int.from_bytes(data[off + 8:off + 12], "big")
    return data[off:end] if end <= len(data) else None


def _packet_key(kind: int, packet: bytes) -> Optional[bytes]:
    """A re-routable request's unique key, from its packet: the second
    argument of a submission (PROTOCOL.md 4.2), the only one of
    GET_STATUS_UNIQUE; None when empty or for ECHO."""
    if kind == K_ECHO:
        return None
    body = packet[12:]
    key = body if kind == K_STATUS_UNIQUE else body.split(b"\0", 2)[1]
    return key or None


def _snapshot(args: Any) -> Any:
    if type(args) is bytes:
        return args  # an admin line
    return tuple(a if type(a) is bytes else _codec.snapshot(a) for a in args)


def _text(pkt: Any, i: int) -> str:
    raw: bytes = unpack(pkt.arg[i], pkt.len[i])
    return raw.decode("utf-8", "surrogateescape")


def _status(pkt: Any, key_name: str) -> Dict[str, Any]:
    """STATUS_RES[_UNIQUE] as API.md 5 gives it: known/running as bools,
    numerator/denominator as the strings on the wire."""
    return {
        key_name: _text(pkt, 0),
        "known": _text(pkt, 1) == "1",
        "running": _text(pkt, 2) == "1",
        "numerator": _text(pkt, 3),
        "denominator": _text(pkt, 4),
    }
