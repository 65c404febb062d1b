"""Many job servers as one: which server each request goes to, what becomes
of a request whose server drops before writing it, and one worker grab cap
over every server. No I/O and no loop, like the sessions it steers: a
front-end (``_pool.GearmanPool`` on libev; an asyncio pool the same way)
owns the connections and hands this module their sessions, a clock, one
timer and a guard for user code.

What it owns:
- server specs: parsing and checking ``"host:port"``, ``"host"``,
  ``"[v6addr]:port"``, ``"unix:/path"`` and ``(host, port)``, each with its
  canonical name (the key of every per-server dict);
- routing (``Router.pick``): a unique key goes to the server of highest
  rendezvous weight among those not known to be down (``key_order``); no
  key, round-robin over the connected ones; nothing fits, the request waits
  here ("parked") until a server comes up, at most ``wait_timeout``, then
  fails with "no server available";
- failover: a session hands back the requests it never wrote when its
  connection ends (``_session`` rule 6, ``session_down``); they are routed
  again as if new, keeping their callbacks, unique keys and job deadlines;
- the handles of background jobs created through the pool's connections,
  and which server holds each, as the session that got JOB_CREATED reports
  (``created``). Bounded: at most ``HANDLE_MEMORY``, the oldest half
  forgotten at once; a handle a server reports as unknown is forgotten at
  once, for its job has ended. (A foreground job's handle never reaches a
  callback of the libev API; a front-end that shows it, as asyncio's
  ``JobRun.handle``, calls ``remember`` and ``forget`` itself.)
- ``GrabCap``: ``work(concurrency=N)`` over many connections, at most N
  GRABs outstanding plus jobs running across all of them, the free slots
  dealt round-robin so that no server starves.

What must stay true:
- Every request this module holds (parked) fires its callback exactly once:
  sent to a session (which then owns it), or failed here.
- Hashing is stable across processes and Python versions (BLAKE2b and a
  fixed mixer, never ``hash()``), so every client of a farm sends a key to
  the same server: the weight of server S for key K is
  ``mix64(blake2b8(K) ^ blake2b8("gearman_ev:" + name(S)))``, ``blake2b8``
  the 8-byte BLAKE2b digest read little-endian, ``mix64`` SplitMix64's
  finalizer; ties go to the server given first.
- State first, user code second (``_session`` rule 2): a request leaves the
  parked queue before its callback runs; ``session_up`` / ``session_down``
  place every request they move before they run any user code (the
  failures of what can no longer be served, the answers of fan-outs).
"""
from __future__ import annotations

import collections
import hashlib
import os
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import _args, errors
from ._session import (CONNECTED, CONNECTING, DISCONNECTED, K_SUBMIT, Entry, Session,
                       fail_detached)

__all__ = ["ServerSpec", "parse_server", "parse_servers", "key_order", "Router", "GrabCap",
           "Gather", "FirstKnown", "HANDLE_MEMORY", "DEFAULT_PORT"]

DEFAULT_PORT = 4730
#: Background handles remembered for get_status: the newest half of this
#: many at least, this many at most; older ones are asked of every server
#: instead. 64 Ki handles of ~60 bytes: a few MiB at most.
HANDLE_MEMORY = 65536

Call = Callable[..., Any]


# ===== Server specs =====

class ServerSpec(NamedTuple):
    """One configured server: its canonical name and its address."""

    name: str                      # "host:port", "[v6]:port" or "unix:/path"
    address: Tuple[Any, ...]       # ("tcp", host, port) or ("unix", path_bytes)


def _tcp(host: str, port: int) -> ServerSpec:
    if not host:
        raise ValueError("server host must not be empty")
    name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ServerSpec(name, ("tcp", host, port))


def _port_text(text: str, spec: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"bad port in server spec {spec!r}")
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in server spec {spec!r}")
    return port


def parse_server(spec: Any) -> ServerSpec:
    """One server spec, checked: ``"host:port"``, ``"host"`` (port 4730),
    ``"[v6addr]:port"`` or ``"[v6addr]"``, ``"unix:/path"``, or a
    ``(host, port)`` tuple. A bare IPv6 literal needs its brackets.

    Raises: TypeError for a wrong type, ValueError for a bad value.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError("a server tuple is (host, port)")
        host, port = spec
        if isinstance(host, bytes):
            host = host.decode()
        if not isinstance(host, str):
            raise TypeError("server host must be a str")
        return _tcp(host, _args.port(port))
    if not isinstance(spec, str):
        raise TypeError(f"a server spec is a str or a (host, port) tuple, "
                        f"not {type(spec).__name__}")
    if spec != spec.strip() or not spec:
        raise ValueError(f"bad server spec {spec!r}")
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path or "\0" in path:
            raise ValueError(f"bad unix socket path in server spec {spec!r}")
        return ServerSpec("unix:" + path, ("unix", os.fsencode(path)))
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise ValueError(f"unclosed '[' in server spec {spec!r}")
        host, rest = spec[1:close], spec[close + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"bad server spec {spec!r}")
        return _tcp(host, _port_text(rest[1:], spec) if rest else DEFAULT_PORT)
    if spec.count(":") > 1:
        raise ValueError(f"an IPv6 address needs brackets: '[{spec}]:{DEFAULT_PORT}'")
    host, colon, port_text = spec.partition(":")
    return _tcp(host, _port_text(port_text, spec) if colon else DEFAULT_PORT)


def parse_servers(servers: Any) -> List[ServerSpec]:
    """A non-empty list or tuple of server specs, each checked, no two alike.

    Raises: TypeError / ValueError.
    """
    if isinstance(servers, (str, bytes)) or not isinstance(servers, (list, tuple)):
        raise TypeError("servers must be a list or tuple of server specs")
    if not servers:
        raise ValueError("servers must name at least one server")
    specs = [parse_server(s) for s in servers]
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"server {name} is given twice")
    return specs


# ===== Rendezvous hashing =====

_MASK = (1 << 64) - 1


def _blake8(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix64(x: int) -> int:
    # SplitMix64's finalizer: every input bit reaches every output bit.
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def server_seed(name: str) -> int:
    return _blake8(b"gearman_ev:" + name.encode("utf-8", "surrogateescape"))


def key_order(key: bytes, names: Sequence[str]) -> List[int]:
    """The servers (indices into ``names``) in the order a unique key tries
    them: highest rendezvous weight first (see the module docstring)."""
    h = _blake8(key)
    weights = [_mix64(h ^ server_seed(n)) for n in names]
    return sorted(range(len(names)), key=lambda i: (-weights[i], i))


# ===== Fan-out helpers (admin, status by unknown handle) =====

class Gather:
    """One request to each server, one callback for all:
    ``cb({name: result}, err)``, a failed server's result None and ``err``
    the error of the first server (in the given order) that failed."""

    def __init__(self, names: Sequence[str], cb: Optional[Call], call: Call) -> None:
        self._names = names
        self._cb = cb
        self._call = call
        self._results: Dict[str, Any] = {n: None for n in names}
        self._errs: List[Optional[str]] = [None] * len(names)
        self._left = len(names)

    def part(self, i: int) -> Call:
        def done(result: Any, err: Optional[str]) -> None:
            if err is None:
                self._results[self._names[i]] = result
            else:
                self._errs[i] = err
            self._left -= 1
            if self._left == 0 and self._cb is not None:
                cb, self._cb = self._cb, None
                first = next((e for e in self._errs if e is not None), None)
                self._call(cb, self._results, first)
        return done


def _one_part(go: Callable[[], None], fail: Callable[[str], None]) -> None:
    """Send one part of a fan-out; a refusal at the send answers that part."""
    try:
        go()
    except errors.GearmanError as exc:
        fail(exc.err)


class FirstKnown:
    """GET_STATUS of a handle no one remembers, asked of several servers:
    the first reply that knows it answers; if none does, the "unknown"
    reply when every server gave one, else the first error."""

    def __init__(self, servers: Sequence[int], cb: Optional[Call], call: Call,
                 found: Callable[[int], None]) -> None:
        self._cb = cb
        self._call = call
        self._found = found
        self._left = len(servers)
        self._unknown: Any = None
        self._err: Optional[str] = None

    def part(self, i: int) -> Call:
        def done(result: Any, err: Optional[str]) -> None:
            self._left -= 1
            if self._cb is None:
                return
            if err is None and result["known"]:
                cb, self._cb = self._cb, None
                self._found(i)
                self._call(cb, result, None)
                return
            if err is None:
                self._unknown = self._unknown or result
            elif self._err is None:
                self._err = err
            if self._left == 0:
                cb, self._cb = self._cb, None
                if self._err is None:
                    self._call(cb, self._unknown, None)
                else:
                    self._call(cb, None, self._err)
        return done


# ===== The worker's one cap =====

class GrabCap:
    """``work(concurrency=N)`` over many connections: the GRABs outstanding
    plus the async jobs running, summed over every live connection, never
    exceed N. A session with a cap asks ``share()`` instead of grabbing on
    its own; free slots go to the awake sessions in turn, starting after
    the last one served. While ``hold`` is set (servers still making their
    first connect: see ``Router.hold_grabs``) nothing is granted, so that
    the first server up does not take every slot."""

    def __init__(self, sessions: Sequence[Session], limit: int) -> None:
        self.sessions = sessions
        self.limit = limit
        self.hold = False
        self._turn = 0

    def share(self) -> None:
        if self.hold:
            return
        sessions = self.sessions
        n = len(sessions)
        room = self.limit - sum(s.grab_load for s in sessions)
        turn = self._turn
        while room > 0:
            for k in range(n):
                s = sessions[(turn + k) % n]
                if s.wants_grab:
                    s.grab_one()  # packs a GRAB; runs no callback
                    room -= 1
                    turn = (turn + k + 1) % n
                    break
            else:
                break  # no session wants one
        self._turn = turn


# ===== The router =====

class _Parked:
    """A request waiting here for a server: until ``deadline`` (0: none),
    then it fails with ``err``."""

    __slots__ = ("cmd", "args", "entry", "key", "deadline", "err")

    def __init__(self, cmd: Optional[int], args: Any, entry: Entry, key: Optional[bytes],
                 deadline: float, err: str) -> None:
        self.cmd = cmd
        self.args = args
        self.entry = entry
        self.key = key
        self.deadline = deadline
        self.err = err


class _ParkedCall:
    """A fan-out waiting for any server to be up: ``go()`` then, else
    ``fail(err)`` at ``deadline``."""

    __slots__ = ("go", "fail", "deadline", "err")

    def __init__(self, go: Callable[[], None], fail: Callable[[str], None],
                 deadline: float) -> None:
        self.go = go
        self.fail = fail
        self.deadline = deadline
        self.err = errors.NO_SERVER


class Router:
    """Routes requests over a pool's sessions and takes back what a dropped
    one never wrote (see the module docstring).

    Args:
        names: canonical server names (``ServerSpec.name``), in the given order.
        sessions: one session per server, same order; each joins the pool.
        wait_timeout: seconds a request waits for a server (0: no limit).
        now: the loop's clock.
        set_deadline: arm the front-end's one timer for loop time ``when``
            (0: disarm); when it fires, call ``on_deadline()``.
        call: runs user code (``call(func, *args)``), reporting what it raises.
    """

    def __init__(self, names: Sequence[str], sessions: Sequence[Session], *,
                 wait_timeout: float, now: Callable[[], float],
                 set_deadline: Callable[[float], None], call: Call) -> None:
        self.names = list(names)
        self.sessions = list(sessions)
        self.wait_timeout = wait_timeout
        self._now = now
        self._set_deadline = set_deadline
        self.call = call
        self._seeds = [server_seed(n) for n in self.names]
        self._index = {id(s): i for i, s in enumerate(self.sessions)}
        # Known down: dropped or failed to connect, and not up since. A
        # server neither up nor known down is on its first connect.
        self._down = [False] * len(self.sessions)
        self._rr = 0
        self._parked: Deque[Any] = collections.deque()
        # Set when a server came up with requests parked: they are routed on
        # the next timer round, once the loop has handled every connect of
        # this iteration (the servers of one farm often come up together),
        # and until then new requests queue behind them (FIFO).
        self._release_due = False
        self._cap_due = False  # the same for a held grab cap (GrabCap.hold)
        self._armed = 0.0
        # Per server, fan-out parts waiting for its first connect.
        self._waiters: List[List[Tuple[Callable[[], None], Callable[[str], None]]]] = \
            [[] for _ in self.sessions]
        # Two generations of plain dicts: when the newer one fills half the
        # memory it becomes the older and the older is forgotten (O(1), no
        # per-handle bookkeeping on the background hot path).
        self._handles: Dict[str, int] = {}
        self._old_handles: Dict[str, int] = {}
        self.grab_cap: Optional[GrabCap] = None
        self.closing = False
        #: Requests a dropped server handed back unwritten, routed again.
        self.rerouted = 0
        for s in self.sessions:
            s.join_pool(self)

    # ===== Routing =====

    def key_server(self, key: bytes) -> int:
        """The server a unique key goes to now: the highest rendezvous
        weight among servers not known to be down (-1: all are)."""
        h = _blake8(key)
        best, best_w = -1, -1
        down = self._down
        for i, seed in enumerate(self._seeds):
            if not down[i]:
                w = _mix64(h ^ seed)
                if w > best_w:
                    best, best_w = i, w
        return best

    def pick(self, key: Optional[bytes]) -> int:
        """The connected server a request goes to now, or -1 if it must wait:
        a key's server while it is up (waiting while that server makes its
        first connect); without a key, the next connected one in turn."""
        sessions = self.sessions
        if self._release_due:
            return -1  # behind what waits for the next round
        if key:
            i = self.key_server(key)
            return i if i >= 0 and sessions[i].state == CONNECTED else -1
        n = len(sessions)
        i = self._rr
        for _ in range(n):
            s = sessions[i]
            i = i + 1 if i + 1 < n else 0
            if s.state == CONNECTED:
                self._rr = i
                return i - 1 if i else n - 1
        return -1

    def hopeless(self) -> bool:
        """No server is up, connecting or due to reconnect."""
        return all(s.state == DISCONNECTED for s in self.sessions)

    def check_open(self) -> None:
        """Raise GearmanError("not connected") when no server can take a
        request now or later (every connection ended with no reconnect)."""
        if self.hopeless():
            raise errors.GearmanError(errors.NOT_CONNECTED)

    def dispatch(self, cmd: Optional[int], args: Any, entry: Entry, key: Optional[bytes],
                 timeout: float = 0.0) -> None:
        """Send a new request where ``pick`` says, or hold it until a server
        is up. ``timeout``: a foreground job's own deadline, in seconds.

        Raises: GearmanError("not connected") when no server ever will be
        (``check_open``), or what the session's ``send`` raises.
        """
        i = self.pick(key)
        if i >= 0:
            s = self.sessions[i]
            s.send(cmd, args, entry)
            if timeout:
                s.set_job_deadline(entry, timeout)  # type: ignore[arg-type]
            return
        self.check_open()
        if timeout:
            entry.deadline = self._now() + timeout  # type: ignore[attr-defined]
        # Held past this call: snapshot the caller's buffers (API.md 9).
        held = args if cmd is None else tuple(_args.snapshot(a) for a in args)
        self._park(cmd, held, entry, key)

    def _park(self, cmd: Optional[int], args: Any, entry: Entry, key: Optional[bytes]) -> None:
        deadline = self._now() + self.wait_timeout if self.wait_timeout else 0.0
        err = errors.NO_SERVER
        job_deadline = entry.deadline if entry.kind == K_SUBMIT else 0.0  # type: ignore
        if job_deadline and (not deadline or job_deadline < deadline):
            deadline, err = job_deadline, errors.JOB_TIMEOUT
        self._parked.append(_Parked(cmd, args, entry, key, deadline, err))
        self._arm(deadline)

    def when_up(self, go: Callable[[], None], fail: Callable[[str], None]) -> None:
        """Run ``go()`` now if any server is connected, else once one is
        (at most ``wait_timeout``, then ``fail("no server available")``)."""
        if any(s.state == CONNECTED for s in self.sessions):
            go()
            return
        self.check_open()
        deadline = self._now() + self.wait_timeout if self.wait_timeout else 0.0
        self._parked.append(_ParkedCall(go, fail, deadline))
        self._arm(deadline)

    def hold_grabs(self, cap: Optional[GrabCap]) -> None:
        """Use ``cap`` for the workers (None: none). If a server is still
        making its first connect, the cap grants nothing until the loop
        round after the next server comes up: servers that connect together
        share the first slots."""
        self.grab_cap = cap
        self._cap_due = False
        if cap is None:
            return
        cap.hold = any(s.state == CONNECTING and not self._down[i]
                       for i, s in enumerate(self.sessions))
        if cap.hold and any(s.state == CONNECTED for s in self.sessions):
            self._cap_due = True
            self._arm(self._now())

    def to_server(self, i: int, go: Callable[[], None], fail: Callable[[str], None]) -> None:
        """One part of a fan-out to server i: ``go()`` if it is connected,
        after its first connect if it is making it, else
        ``fail("disconnected")`` at once. ``go`` sends one request: if the
        server refuses it ("write buffer full"), ``fail`` answers the part."""
        s = self.sessions[i]
        if s.state == CONNECTED:
            _one_part(go, fail)
        elif s.state == CONNECTING and not self._down[i]:
            self._waiters[i].append((go, fail))
        else:
            fail(errors.DISCONNECTED)

    def ask_each(self, up: Sequence[int], cmd: int, args: Tuple[Any, ...], kind: int,
                 part: Callable[[int], Call]) -> None:
        """The same request to each server in ``up``, server j's reply to
        ``part(j)``; a server that refuses it ("write buffer full") answers
        its part with that error, so that every part answers once."""
        for j in up:
            cb = part(j)
            try:
                self.sessions[j].send(cmd, args, Entry(kind, cb))
            except errors.GearmanError as exc:
                cb(None, exc.err)

    @property
    def parked_count(self) -> int:
        return len(self._parked)

    # ===== Sessions report =====

    def session_up(self, session: Session) -> None:
        """A session connected (``_session``: before its on_connect)."""
        i = self._index[id(session)]
        self._down[i] = False
        waiters, self._waiters[i] = self._waiters[i], []
        for go, fail in waiters:
            _one_part(go, fail)  # a refusal fails its own part, not the ones after it
        if self._parked and not self._release_due:
            self._release_due = True
            self._arm(self._now())
        cap = self.grab_cap
        if cap is not None and cap.hold and not self._cap_due:
            self._cap_due = True
            self._arm(self._now())

    def session_down(self, session: Session,
                     unsent: List[Tuple[Optional[int], Any, Entry, Optional[bytes]]]) -> None:
        """A session's connection ended (or a connect failed); ``unsent``:
        the requests it never wrote (``_session`` rule 6). Called after the
        session's state changed and before it fails what it still holds."""
        i = self._index[id(session)]
        self._down[i] = True
        if self._rr == i:
            self._rr = (i + 1) % len(self.sessions)
        failed: List[Tuple[Entry, str]] = []
        for cmd, args, entry, key in unsent:
            if self.closing:
                failed.append((entry, errors.DISCONNECTED))
                continue
            self.rerouted += 1
            j = self.pick(key)
            if j >= 0:
                self.sessions[j].adopt(cmd, args, entry)
            else:
                self._park(cmd, args, entry, key)
        waiters, self._waiters[i] = self._waiters[i], []
        if self.grab_cap is not None:
            self.grab_cap.share()  # the slots this connection held are free
        self._reroute_parked()
        # User code last, once every request is where it belongs.
        for entry, err in failed:
            fail_detached(entry, err, self.call)
        for _, fail in waiters:
            fail(errors.DISCONNECTED)

    def _reroute_parked(self) -> None:
        """Send every parked request that has a server now; fail them all
        if no server will ever come back."""
        self._release_due = False
        if not self._parked:
            return
        if self.hopeless() or self.closing:
            self.fail_parked(errors.DISCONNECTED if self.closing else errors.NO_SERVER)
            return
        if not any(s.state == CONNECTED for s in self.sessions):
            return
        keep: Deque[Any] = collections.deque()
        parked, self._parked = self._parked, keep
        ready: List[Callable[[], None]] = []
        for p in parked:
            if type(p) is _ParkedCall:
                ready.append(p.go)
                continue
            j = self.pick(p.key)
            if j < 0:
                keep.append(p)
                continue
            self.sessions[j].adopt(p.cmd, p.args, p.entry)
        for go in ready:
            go()

    def fail_parked(self, err: str) -> None:
        """Fail every parked request with ``err`` (teardown, or no server left)."""
        parked, self._parked = self._parked, collections.deque()
        self._arm(0.0, force=True)
        for p in parked:
            self._fail(p, err)

    def _fail(self, p: Any, err: str) -> None:
        if type(p) is _ParkedCall:
            p.fail(err)
        else:
            fail_detached(p.entry, err, self.call)

    # ===== Deadlines =====

    def _arm(self, when: float, force: bool = False) -> None:
        if force or (when and (not self._armed or when < self._armed)):
            self._armed = when
            self._set_deadline(when)

    def on_deadline(self) -> None:
        """The front-end's timer fired: fail what waited too long."""
        self._armed = 0.0
        if self._release_due:
            self._reroute_parked()
        cap = self.grab_cap
        if self._cap_due:
            self._cap_due = False
            if cap is not None and cap.hold:
                cap.hold = False
                cap.share()
        now = self._now()
        expired = [p for p in self._parked if p.deadline and p.deadline <= now]
        if expired:
            gone = {id(p) for p in expired}
            self._parked = collections.deque(p for p in self._parked if id(p) not in gone)
        nxt = min((p.deadline for p in self._parked if p.deadline), default=0.0)
        self._arm(nxt, force=True)
        for p in expired:
            self._fail(p, p.err)

    # ===== Handles =====

    def remember(self, handle: str, server: int) -> None:
        handles = self._handles
        handles[handle] = server
        if len(handles) >= HANDLE_MEMORY // 2:
            self._old_handles, self._handles = handles, {}

    def server_of(self, handle: str) -> Optional[int]:
        server = self._handles.get(handle)
        return self._old_handles.get(handle) if server is None else server

    def created(self, session: Session, handle: str) -> None:
        """A session got a background job's handle (``_session``): the
        server that holds it."""
        self.remember(handle, self._index[id(session)])

    def forget(self, handle: str) -> None:
        self._handles.pop(handle, None)
        self._old_handles.pop(handle, None)

    # ===== Teardown =====

    def close(self) -> None:
        """The pool is gone: fail what is parked, let the sessions go."""
        self.closing = True
        self.fail_parked(errors.DISCONNECTED)
        for waiters in self._waiters:
            while waiters:
                waiters.pop()[1](errors.DISCONNECTED)
        for s in self.sessions:
            s.leave_pool()
