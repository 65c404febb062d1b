"""gearman_ev.ev - libev for Python, with pyev's names.

A thin binding to the system libev: loops (``default_loop()``, ``Loop()``),
the watchers ``Io``, ``Timer``, ``Signal``, ``Prepare`` and ``Async``, and
libev's constants. A pyev program ports by changing its import.

Callbacks. A watcher calls ``callback(watcher, revents)`` in the thread that
runs its loop. An active watcher is held by its loop until it is stopped (a
one-shot timer: until it fires), so ``loop.timer(5, 0, cb).start()`` needs no
reference of yours. An exception from a callback is logged on the
"gearman_ev" logger and the loop goes on; KeyboardInterrupt and SystemExit
end ``start()`` once the callbacks of the current iteration have returned,
and are raised from it.

Threads. A loop runs in one thread at a time (``start()`` from a second
thread while it runs raises ``Error``), and its watchers are started, stopped
and changed in that thread. From any other thread, two calls are safe at any
time: ``loop.call_soon_threadsafe(fn, *args)`` runs ``fn(*args)`` in the
loop's thread at its next iteration, and ``Async.send()`` wakes the loop to
run an Async watcher's callback there. ``call_soon_threadsafe(loop.stop)``
stops a loop from another thread.

Ctrl-C. A KeyboardInterrupt comes out of ``start()`` only between events,
never from the middle of a callback, so a program that catches it and calls
``start()`` again resumes with nothing lost or run twice. While ``start()``
runs in the main thread and SIGINT has Python's default handler, ``start()``
installs its own: a SIGINT breaks the loop, the callbacks of the current
iteration run to their end, and ``start()`` raises KeyboardInterrupt (at
once when the loop was asleep waiting for events). The outermost ``start()``
puts the default handler back when it returns. A SIGINT handler of your own,
an ignored SIGINT, or a ``Signal`` watcher on SIGINT is left alone. For a
callback that never returns, a second Ctrl-C at least 1 s after the first
raises KeyboardInterrupt at once, wherever the program is.

Fork. Every loop handles fork(): libev's ev_loop_fork runs on each loop in
the child, which can go on using them.

A loop whose libev loop is gone (the garbage collector freed it while a
finalizer in the same reference cycle can still reach it) raises
``Error("loop destroyed")`` from every call that needs it; stopping one of
its watchers, already stopped, does nothing.
"""
# What must stay true here (for maintainers):
# - Every watcher reaches Python through one trampoline (gm_py_watcher_cb);
#   the C side never calls Python otherwise.
# - A started watcher sits in its loop's _active set, and the C data field
#   holds a handle to it only while it is started.
# - libev never sees a NULL loop: each entry point checks Loop._ptr first
#   (Loop._live()), because Loop.__del__ may have run in a garbage cycle.
# - Only ev_async_send is called from a thread other than the loop's; it
#   relies on the caller's frame keeping the watcher and the loop alive.
# - Internal watchers (the wakeup Io, the call queue's Async) are unref'd:
#   they never decide when start() returns.
# - A SIGINT is raised from start() only after ev_run returned (or before it
#   began), except through the escape hatch (_FORCE_AFTER).
from __future__ import annotations

import collections
import logging
import math
import os
import signal as _signal
import sys
import threading
import time
import weakref
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Callable, ClassVar, cast

from ._ffi import ffi, lib

if TYPE_CHECKING:
    # Typing-only names (the annotations are strings at run time): an fd is an
    # int or an object with fileno(); call_soon_threadsafe checks fn(*args)
    # the way asyncio's does.
    from _typeshed import FileDescriptorLike
    from typing_extensions import Self, TypeVarTuple, Unpack

    _Ts = TypeVarTuple("_Ts")

__all__ = [
    "Loop", "Io", "Timer", "Signal", "Prepare", "Async", "Watcher", "Error", "default_loop",
    "version", "EV_READ", "EV_WRITE", "EV_TIMER", "EV_SIGNAL", "EV_PREPARE", "EV_ASYNC",
    "EV_ERROR",
    "EVBREAK_CANCEL", "EVBREAK_ONE", "EVBREAK_ALL", "EVRUN_NOWAIT", "EVRUN_ONCE",
    "EV_MINPRI", "EV_MAXPRI", "EVFLAG_AUTO", "EVFLAG_NOENV", "EVFLAG_FORKCHECK",
    "EVFLAG_SIGNALFD", "EVFLAG_NOSIGMASK", "EVBACKEND_SELECT", "EVBACKEND_POLL",
    "EVBACKEND_EPOLL",
]

EV_READ: int = lib.EV_READ
EV_WRITE: int = lib.EV_WRITE
EV_TIMER: int = lib.EV_TIMER
EV_SIGNAL: int = lib.EV_SIGNAL
EV_PREPARE: int = lib.EV_PREPARE
EV_ASYNC: int = lib.EV_ASYNC
EV_ERROR: int = lib.EV_ERROR
EVBREAK_CANCEL: int = lib.EVBREAK_CANCEL
EVBREAK_ONE: int = lib.EVBREAK_ONE
EVBREAK_ALL: int = lib.EVBREAK_ALL
EVRUN_NOWAIT: int = lib.EVRUN_NOWAIT
EVRUN_ONCE: int = lib.EVRUN_ONCE
EV_MINPRI: int = lib.EV_MINPRI
EV_MAXPRI: int = lib.EV_MAXPRI
EVFLAG_AUTO: int = lib.EVFLAG_AUTO
EVFLAG_NOENV: int = lib.EVFLAG_NOENV
EVFLAG_FORKCHECK: int = lib.EVFLAG_FORKCHECK
EVFLAG_SIGNALFD: int = lib.EVFLAG_SIGNALFD
EVFLAG_NOSIGMASK: int = lib.EVFLAG_NOSIGMASK
EVBACKEND_SELECT: int = lib.EVBACKEND_SELECT
EVBACKEND_POLL: int = lib.EVBACKEND_POLL
EVBACKEND_EPOLL: int = lib.EVBACKEND_EPOLL

log = logging.getLogger("gearman_ev")


class Error(Exception):
    """A libev call was refused (pyev's ``pyev.Error``)."""


def version() -> tuple[int, int]:
    """libev's (major, minor) version, as linked at run time."""
    return lib.ev_version_major(), lib.ev_version_minor()


# ===== The trampoline =====

# Loops inside ev_run() right now, innermost last: where an exception that
# arrives before any Python frame of ours can catch it (onerror) is parked.
_tls = threading.local()


def _running() -> list[Loop]:
    """This thread's loops inside ev_run(), innermost last."""
    try:
        running: list[Loop] = _tls.running
    except AttributeError:
        running = _tls.running = []
    return running


def _park(exc: BaseException) -> None:
    running = _running()
    loop = running[-1] if running else None
    if loop is None:
        log.error("exception in a gearman_ev callback", exc_info=exc)
        return
    loop._park(exc)


def _onerror(exc_type: type[BaseException], exc_value: BaseException | None,
             tb: TracebackType | None) -> None:
    # Reached when the exception struck before gm_py_watcher_cb's own try
    # (a pending KeyboardInterrupt is raised at function entry).
    if exc_value is None:
        exc_value = exc_type()
    exc_value.__traceback__ = tb
    _park(exc_value)


# ffi is untyped (a cffi object), and so would be a function it decorates:
# naming its decorator with a type keeps gm_py_watcher_cb's signature.
_Trampoline = Callable[[Any, int], None]
_def_extern: Callable[[_Trampoline], _Trampoline] = ffi.def_extern(onerror=_onerror)


@_def_extern
def gm_py_watcher_cb(handle: Any, revents: int) -> None:
    watcher = ffi.from_handle(handle)
    try:
        if watcher._plain_fire:
            watcher._callback(watcher, revents)
        else:
            watcher._fire(revents)
    except BaseException as exc:  # noqa: BLE001 - everything is reported
        watcher._loop._park(exc)


# ===== Ctrl-C =====
#
# The rule (API.md 9): an interrupt comes out of Loop.start() only between
# events, once every callback of the iteration has returned, so that the
# library's state is consistent when the program sees it. Python's default
# SIGINT handler raises KeyboardInterrupt in whatever bytecode runs, the
# middle of a callback included; _on_sigint replaces it while start() runs.
#
# _sigint_since: time.monotonic() of a SIGINT that _on_sigint recorded and no
# start() has raised yet, else None. Touched only in the main thread: Python
# runs signal handlers there, and only main-thread start() calls look at it.
_sigint_since: float | None = None

# A second Ctrl-C this long after a first that is still pending raises at
# once: a callback that hangs would otherwise hold the interrupt forever. One
# second is long enough not to fire on one impatient double press while a
# long but finite callback finishes, short enough for a user who means it.
_FORCE_AFTER = 1.0


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _sigint_since
    now = time.monotonic()
    if _sigint_since is None:
        _sigint_since = now
    elif now - _sigint_since >= _FORCE_AFTER:
        _sigint_since = None
        raise KeyboardInterrupt
    # Break the innermost loop running in this (the main) thread. A nested
    # start() raises into the callback that called it; that callback's own
    # loop then gets the exception through the trampoline.
    running = _running()
    if running and running[-1]._ptr is not None:
        lib.ev_break(running[-1]._ptr, EVBREAK_ALL)


def _take_sigint() -> bool:
    """Clear a recorded SIGINT; True if there was one."""
    global _sigint_since
    pending, _sigint_since = _sigint_since is not None, None
    return pending


def _install_sigint() -> Callable[[], None] | None:
    """Put _on_sigint in place of Python's default SIGINT handler (main thread
    only); return the undo, or None when SIGINT is left as it is."""
    try:
        current = _signal.getsignal(_signal.SIGINT)
    except ValueError:
        return None
    if current is _on_sigint and not _running():
        # Ours, yet no loop runs in this thread: a forced KeyboardInterrupt
        # cut short the start() that should have put the default back. Take
        # it over, so that this start() does.
        current = _signal.default_int_handler
    if current is not _signal.default_int_handler:
        return None  # the user's own handler, SIG_IGN/SIG_DFL, or an outer start()'s
    owner = _signal_owner.get(_signal.SIGINT)
    if owner is not None and _watchers_of(owner[0](), _signal.SIGINT):
        # libev owns SIGINT for a Signal watcher; Python's signal() would
        # take the signal away from it.
        return None
    try:
        _signal.signal(_signal.SIGINT, _on_sigint)
    except (ValueError, OSError):
        return None

    def restore() -> None:
        # Only if it is still ours: a callback may have installed its own.
        if _signal.getsignal(_signal.SIGINT) is _on_sigint:
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    return restore


# ===== Loops =====

_loops: weakref.WeakSet[Loop] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # _running is left alone: a fork inside a callback leaves the child inside
    # the same ev_run() frames, which pop their own entries when they return.
    me = threading.get_ident()
    for loop in list(_loops):
        if loop._ptr is not None:  # a destroyed loop has nothing to re-arm
            lib.ev_loop_fork(loop._ptr)
        if loop._running_thread != me:
            # The thread that ran it does not exist in the child, and may have
            # held _run_lock: the child starts from a loop that is not running.
            loop._running_thread = None
            loop._depth = 0
            loop._run_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Loop:
    """An event loop (pyev ``Loop``; libev ``struct ev_loop``)."""

    def __init__(self, flags: int = 0) -> None:
        if not isinstance(flags, int):
            raise TypeError("flags must be an int")
        ptr = lib.ev_loop_new(flags)
        if ptr == ffi.NULL:
            raise Error("ev_loop_new failed (bad flags, or no backend)")
        # The cffi `struct ev_loop *`, None once destroyed; destroyed by
        # __del__, after its watchers are stopped.
        self._ptr: Any = ptr
        self._active: set[Watcher] = set()
        self._parked: BaseException | None = None
        self._depth = 0
        # (read fd, write fd, Io) once start() needs it
        self._wakeup: tuple[int, int, Io] | None = None
        # Internal, for the library (API.md 9 "Threads"): threading.get_ident()
        # of the thread inside this loop's outermost start(), None while the
        # loop is not running. Read without a lock (a plain attribute read):
        # only that thread sets it, on its way in and out of start(); a
        # Gearman compares it with the calling thread to refuse a call from
        # another thread ("wrong thread"). _run_lock makes the claim atomic,
        # so two threads can never run one libev loop at once.
        self._running_thread: int | None = None
        self._run_lock = threading.Lock()
        # call_soon_threadsafe's queue and its ev_async, started here once and
        # for all: ev_async_start touches loop state, so it must not wait for
        # a first call that may come from another thread while the loop runs.
        # It is unref'd: the queue does not keep start() running (see
        # call_soon_threadsafe). The handle lives here, not in _Calls, and
        # _Calls holds the loop weakly: it adds no Loop <-> watcher cycle, so
        # a loop nobody references is still freed by its reference count.
        self._calls = _Calls(self)
        self._calls_handle = ffi.new_handle(self._calls)
        self._calls._w.data = self._calls_handle
        lib.ev_async_start(ptr, self._calls._w)
        lib.ev_unref(ptr)
        _loops.add(self)

    def __del__(self) -> None:
        # Stop what is still active first: destroying the loop under an active
        # watcher would leave libev asserting on a later ev_*_stop.
        # _ptr = None is what every entry point checks ("loop destroyed"): in
        # a garbage cycle another finalizer may still reach this loop or its
        # watchers after this ran, and libev must never see a NULL loop.
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr is None or sys.is_finalizing():
            # At interpreter exit, objects are freed in no safe order: a
            # watcher's memory may already be gone. The process is ending;
            # leave the loop to it rather than touch libev.
            return
        calls = getattr(self, "_calls", None)
        if calls is not None and lib.gm_ev_is_active(calls._w):
            lib.ev_ref(ptr)  # the reference __init__ gave up
            lib.ev_async_stop(ptr, calls._w)
        for w in list(getattr(self, "_active", ())):
            w._stop_in(ptr)
        lib.ev_loop_destroy(ptr)

    def _live(self) -> Any:
        """The libev loop, or Error once __del__ destroyed it."""
        ptr = self._ptr
        if ptr is None:
            raise Error("loop destroyed")
        return ptr

    # -- running --

    def start(self, flags: int = 0) -> bool:
        """Run the loop until ``stop()``, or until no active watcher is left.

        Args:
            flags: 0; EVRUN_ONCE (one iteration, waiting for an event if
                none is ready); EVRUN_NOWAIT (one iteration, no waiting).

        Returns: True if watchers are still active (libev's ev_run result).

        Ctrl-C: in the main thread, while SIGINT has Python's default handler
        (``signal.default_int_handler``), start() puts its own handler in
        place. A SIGINT then only breaks the loop: the callbacks of the
        current iteration all run to their end, ev_run returns, and start()
        raises KeyboardInterrupt. A loop asleep waiting for events wakes for
        it at once. A nested start() (called from a callback) raises it into
        the callback that called it. The outermost start() puts the previous
        handler back on its way out. A start() called while an interrupt is
        pending raises it without running the loop. A second SIGINT at least
        1 s after one that is still pending raises KeyboardInterrupt at once,
        wherever the program is: the way out of a callback that hangs.
        A SIGINT handler of your own, or a ``Signal`` watcher on SIGINT, is
        left alone (your handler then decides what a SIGINT does).

        Raises:
            KeyboardInterrupt: Ctrl-C as above, or raised by a callback.
            SystemExit: raised by a callback.
            Error: "loop destroyed"; "loop already running in another thread".
        """
        ptr = self._live()
        me = threading.get_ident()
        main = threading.current_thread() is threading.main_thread()
        outermost = self._running_thread != me
        if outermost:
            with self._run_lock:
                if self._running_thread is not None:
                    raise Error("loop already running in another thread")
                self._running_thread = me
        unsigint = None
        more = 1
        try:
            # Only the outermost start() owns the wakeup fd: a nested start()
            # would stop the shared Io on its way out, leaving the outer run deaf.
            # It is in place before our SIGINT handler, so that every SIGINT
            # the handler sees also wakes the loop (see _drain_wakeup).
            restore = self._install_wakeup() if outermost else None
            unsigint = _install_sigint() if main else None
            self._depth += 1
            running = _running()
            running.append(self)
            try:
                # ev_run clears a break made before it began: with a Ctrl-C
                # already pending there is nothing to run.
                if not (main and _sigint_since is not None):
                    more = lib.gm_ev_run(ptr, flags)
            finally:
                running.remove(self)
                self._depth -= 1
                if restore is not None:
                    restore()
        finally:
            if outermost:
                self._running_thread = None
            # Last: from here on a SIGINT raises wherever it lands, and there
            # is no more state of ours for it to cut short.
            if unsigint is not None:
                unsigint()
        parked, self._parked = self._parked, None
        if parked is not None:
            if main and isinstance(parked, KeyboardInterrupt):
                _take_sigint()  # one Ctrl-C, one KeyboardInterrupt
            raise parked
        if main and _take_sigint():
            raise KeyboardInterrupt
        return bool(more)

    def call_soon_threadsafe(self, fn: Callable[[Unpack[_Ts]], object],
                             *args: Unpack[_Ts]) -> None:
        """Run ``fn(*args)`` in the loop's thread, at its next iteration.

        Callable from any thread, the loop's own included, whether the loop
        is running or not. Calls run in the order they were made (one queue
        for all threads), each exactly once; a call made from a call that is
        running waits for the next iteration, so I/O is never starved.

        What ``fn`` raises is handled as for any watcher callback: logged on
        the "gearman_ev" logger, or, for KeyboardInterrupt and SystemExit,
        raised from ``start()``; calls still queued then run when the loop
        is started again.

        Pending calls do not keep ``start()`` running: a loop with nothing
        else to watch returns, and what is still queued runs first thing in
        the next ``start()``. A program that waits for calls from other
        threads keeps a watcher of its own active (a server socket, a
        long timer). Use ``loop.call_soon_threadsafe(loop.stop)`` to stop a
        loop from another thread.

        Raises: TypeError if fn is not callable; Error("loop destroyed").
        """
        # Why the queue does not hold the loop alive: only the loop's thread
        # may touch libev's count of active watchers (ev_ref/ev_unref are not
        # thread-safe), so "alive while something is queued" cannot be
        # switched on by the calling thread; the only thread-safe way would be
        # an Async referenced for the loop's whole life, and then no start()
        # would ever return on its own. Like the wakeup fd, the queue is
        # plumbing: it must not change when start() returns (libuv-based
        # runtimes unref their internal wake-up handles for the same reason).
        # A program fed by other threads already has a watcher that keeps it
        # running; a blocking client in a daemon thread keeps its own.
        if not callable(fn):
            raise TypeError("fn must be callable")
        ptr = self._live()
        calls = self._calls
        calls.queue.append((fn, args))  # deque.append is atomic
        # After the append, always: the loop clears `sent` before it runs the
        # drain, so this send either lands before that clear (the drain sees
        # the item) or after it (the next iteration runs again).
        lib.ev_async_send(ptr, calls._w)

    def stop(self, how: int = EVBREAK_ONE) -> None:
        """Make the innermost ``start()`` (or all, EVBREAK_ALL) return."""
        lib.ev_break(self._live(), how)

    def now(self) -> float:
        """The loop's cached time (seconds), as of the last iteration."""
        now: float = lib.ev_now(self._live())
        return now

    def update(self) -> None:
        """Refresh the cached time (ev_now_update)."""
        lib.ev_now_update(self._live())

    @property
    def backend(self) -> int:
        """The EVBACKEND_* the loop uses."""
        backend: int = lib.ev_backend(self._live())
        return backend

    @property
    def iteration(self) -> int:
        """How many times the loop polled for events so far."""
        iteration: int = lib.ev_iteration(self._live())
        return iteration

    def _park(self, exc: BaseException) -> None:
        # A destroyed loop cannot break: what a finalizer's callback raised
        # there is logged like any other exception.
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and self._ptr is not None:
            if self._parked is None:
                self._parked = exc
            lib.ev_break(self._ptr, EVBREAK_ALL)
        else:
            log.error("exception in a gearman_ev callback", exc_info=exc)

    # -- Ctrl-C while blocked in epoll --

    def _install_wakeup(self) -> Callable[[], None] | None:
        """Have a signal wake the loop, so its Python handler runs at once.

        Python only runs a signal handler when Python code runs; the wakeup fd
        gives the loop an event to deliver. Main thread only (set_wakeup_fd's
        rule); the previous wakeup fd comes back when start() returns.
        """
        if threading.current_thread() is not threading.main_thread():
            return None
        if self._wakeup is None:
            rfd, wfd = os.pipe()
            os.set_blocking(rfd, False)
            os.set_blocking(wfd, False)
            io = Io(rfd, EV_READ, self, _drain_wakeup)
            self._wakeup = (rfd, wfd, io)
            weakref.finalize(self, _close_fds, rfd, wfd)
        io = self._wakeup[2]
        try:
            previous = _signal.set_wakeup_fd(self._wakeup[1], warn_on_full_buffer=False)
        except ValueError:
            return None
        io._start_unref()

        def restore() -> None:
            io._stop_unref()
            try:
                _signal.set_wakeup_fd(previous)
            except ValueError:
                pass
        return restore

    # -- watcher factories (pyev names) --

    def io(self, fd: FileDescriptorLike, events: int, callback: Callable[[Io, int], object],
           data: Any = None, priority: int = 0) -> Io:
        """An ``Io`` watcher on ``fd`` (an int, or an object with
        ``fileno()``) for ``events`` (EV_READ, EV_WRITE or both), not started:
        ``callback(watcher, revents)`` runs each time the fd is ready."""
        return Io(fd, events, self, callback, data, priority)

    def timer(self, after: float, repeat: float, callback: Callable[[Timer, int], object],
              data: Any = None, priority: int = 0) -> Timer:
        """A ``Timer`` watcher, not started: ``callback(watcher, EV_TIMER)``
        runs ``after`` seconds after ``start()``, then every ``repeat``
        seconds (0: once)."""
        return Timer(after, repeat, self, callback, data, priority)

    def signal(self, signum: int, callback: Callable[[Signal, int], object],
               data: Any = None, priority: int = 0) -> Signal:
        """A ``Signal`` watcher on ``signum``, not started:
        ``callback(watcher, EV_SIGNAL)`` runs in the loop each time the signal
        arrives."""
        return Signal(signum, self, callback, data, priority)

    def prepare(self, callback: Callable[[Prepare, int], object], data: Any = None,
                priority: int = 0) -> Prepare:
        """A ``Prepare`` watcher, not started: ``callback(watcher,
        EV_PREPARE)`` runs once per iteration, before the loop polls."""
        return Prepare(self, callback, data, priority)

    def async_(self, callback: Callable[[Async, int], object], data: Any = None,
               priority: int = 0) -> Async:
        """An ``Async`` watcher: ``send()`` from any thread runs ``callback``
        in this loop's thread (``async`` is a Python keyword, hence the _)."""
        return Async(self, callback, data, priority)


def _drain_wakeup(watcher: Io, revents: int) -> None:
    try:
        while os.read(watcher.fd, 512):
            pass
    except OSError:
        pass
    if _sigint_since is not None:
        # A SIGINT whose handler ran before ev_run began (ev_run cleared that
        # break): every signal also wrote the wakeup fd, so the break lands.
        lib.ev_break(watcher.loop._ptr, EVBREAK_ALL)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _Calls:
    """The queue behind Loop.call_soon_threadsafe and the ev_async that wakes
    the loop for it. Reached from the trampoline like a watcher."""

    __slots__ = ("_loopref", "_w", "queue")
    _plain_fire = False  # the trampoline calls _fire

    def __init__(self, loop: Loop) -> None:
        self._loopref = weakref.ref(loop)
        # (fn, args): fn(*args) runs at the next drain.
        self.queue: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] = \
            collections.deque()
        self._w: Any = ffi.new("ev_async *")  # a cffi struct
        lib.gm_ev_async_init(self._w)

    @property
    def _loop(self) -> Loop:
        # Where gm_py_watcher_cb parks what escapes _fire. Never None there:
        # the loop is inside ev_run, so its start() frame holds it.
        return cast(Loop, self._loopref())

    def _fire(self, revents: int) -> None:
        loop = self._loop
        queue = self.queue
        try:
            # Only what was queued before this drain began: calls queued by
            # these calls (or by other threads meanwhile) sent the async again
            # and run at the next iteration, after the loop polled for I/O.
            # `and queue`: a call may run the loop itself (a nested start()),
            # whose own drain may take the rest of this batch.
            left = len(queue)
            while left and queue:
                left -= 1
                fn, args = queue.popleft()
                try:
                    fn(*args)
                except BaseException as exc:  # noqa: BLE001 - as for any callback
                    loop._park(exc)
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        return  # start() raises it now; the rest run after
        finally:
            if queue and loop._ptr is not None:
                # Whatever is left (after an interrupt, or queued meanwhile)
                # must find the async pending: a send from the loop's own
                # thread is as good as any.
                lib.ev_async_send(loop._ptr, self._w)


_default_loop: Loop | None = None
_default_lock = threading.Lock()


def default_loop() -> Loop:
    """The process-wide default loop, created on first use.

    It is built with ev_loop_new rather than ev_default_loop: libev's default
    loop installs a SIGCHLD handler that reaps every child process, which would
    take exit statuses away from subprocess.Popen.
    """
    global _default_loop
    if _default_loop is None:
        with _default_lock:
            if _default_loop is None:
                _default_loop = Loop()
    return _default_loop


# ===== Watchers =====

def _check_number(name: str, value: float, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds")
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}")
    return float(value)


class Watcher:
    """What every watcher has: start/stop, active, callback, data, priority."""

    _ctype: ClassVar[str] = ""
    # True while _fire is Watcher's (the callback alone): the trampoline then
    # calls the callback itself, one Python frame fewer per event.
    _plain_fire: ClassVar[bool] = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls._plain_fire = cls._fire is Watcher._fire
    # libev's ev_<kind>_start / ev_<kind>_stop: cffi functions, untyped.
    _start_fn: ClassVar[Any] = None
    _stop_fn: ClassVar[Any] = None
    # Each subclass narrows what it accepts to Callable[[itself, int], object].
    _callback: Callable[[Any, int], object]

    def __init__(self, loop: Loop, callback: Callable[[Any, int], object], data: Any,
                 priority: int) -> None:
        if not isinstance(loop, Loop):
            raise TypeError("loop must be a gearman_ev.ev.Loop")
        self._loop = loop
        self._w: Any = ffi.new(self._ctype)  # the cffi ev_<kind> struct
        self._handle: Any = None  # ffi.new_handle(self) while started
        self.callback = callback
        #: Anything of yours; the watcher only keeps it.
        self.data: Any = data
        self._unref = False
        self._init()
        self.priority = priority

    def _init(self) -> None:
        raise NotImplementedError

    @property
    def loop(self) -> Loop:
        """The loop the watcher belongs to."""
        return self._loop

    @property
    def callback(self) -> Callable[[Self, int], object]:
        """Called as ``callback(watcher, revents)``; may be replaced at any time."""
        return self._callback

    @callback.setter
    def callback(self, value: Callable[[Self, int], object]) -> None:
        if not callable(value):
            raise TypeError("callback must be callable as callback(watcher, revents)")
        self._callback = value

    @property
    def active(self) -> bool:
        """True between ``start()`` and ``stop()``, or until a one-shot timer fires."""
        return bool(lib.gm_ev_is_active(self._w))

    @property
    def pending(self) -> bool:
        """True while an event for the watcher waits for its callback to run."""
        return bool(lib.gm_ev_is_pending(self._w))

    @property
    def priority(self) -> int:
        """From EV_MINPRI to EV_MAXPRI, 0 by default; of the pending watchers,
        higher ones run first. Set it only while the watcher is neither active
        nor pending."""
        priority: int = lib.gm_ev_priority(self._w)
        return priority

    @priority.setter
    def priority(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("priority must be an int")
        if not EV_MINPRI <= value <= EV_MAXPRI:
            raise ValueError(f"priority must be between {EV_MINPRI} and {EV_MAXPRI}")
        if self.active or self.pending:
            raise Error("cannot set the priority of an active or pending watcher")
        lib.gm_ev_set_priority(self._w, value)

    def start(self) -> None:
        """Start watching (nothing happens if already active). The loop
        keeps a started watcher alive until it is stopped."""
        ptr = self._loop._live()
        if self.active:
            return
        self._handle = ffi.new_handle(self)
        self._w.data = self._handle
        type(self)._start_fn(ptr, self._w)
        self._loop._active.add(self)

    def stop(self) -> None:
        """Stop watching and drop a pending event (nothing happens if stopped)."""
        ptr = self._loop._ptr
        # On a destroyed loop stop() has nothing left to do (the loop stopped
        # every watcher before libev freed it) and says nothing: teardown code
        # stops watchers unconditionally, and a finalizer that meets the loop
        # already destroyed in the same garbage cycle (Gearman's does) must
        # get through the rest of its work. Every call that needs the loop to
        # do something raises Error("loop destroyed") instead.
        if ptr is not None:
            self._stop_in(ptr)
        self._release()

    def _stop_in(self, ptr: Any) -> None:
        if self._unref:
            # Give back the reference _start_unref took, or the loop's count
            # of active watchers would end one short.
            lib.ev_ref(ptr)
            self._unref = False
        # Pending counts too: a one-shot timer that expired this iteration is
        # inactive but pending, and only ev_*_stop clears its queued event.
        if lib.gm_ev_is_active(self._w) or lib.gm_ev_is_pending(self._w):
            type(self)._stop_fn(ptr, self._w)

    def _release(self) -> None:
        self._w.data = ffi.NULL
        self._handle = None
        self._loop._active.discard(self)

    def _fire(self, revents: int) -> None:
        self._callback(self, revents)

    def __repr__(self) -> str:
        state = "active" if self.active else "inactive"
        return f"<{type(self).__name__} {state} priority={self.priority}>"


class Io(Watcher):
    """Readiness of a file descriptor (EV_READ, EV_WRITE or both)."""

    _ctype = "ev_io *"
    _start_fn = lib.ev_io_start
    _stop_fn = lib.ev_io_stop

    def __init__(self, fd: FileDescriptorLike, events: int, loop: Loop,
                 callback: Callable[[Io, int], object], data: Any = None,
                 priority: int = 0) -> None:
        self._fd, self._events = _check_io(fd, events)
        self._fileobj = fd  # keeps a socket object (and so its fd) alive
        super().__init__(loop, callback, data, priority)

    def _init(self) -> None:
        lib.gm_ev_io_init(self._w, self._fd, self._events)

    def set(self, fd: FileDescriptorLike, events: int) -> None:
        """Watch another fd and/or other events (only while stopped)."""
        self._loop._live()
        if self.active:
            raise Error("cannot set an active watcher")
        self._fd, self._events = _check_io(fd, events)
        self._fileobj = fd
        lib.gm_ev_io_set(self._w, self._fd, self._events)

    @property
    def fd(self) -> int:
        """The file descriptor watched."""
        return self._fd

    @property
    def events(self) -> int:
        """EV_READ, EV_WRITE or both."""
        return self._events

    def _start_unref(self) -> None:
        # An internal watcher that must not keep the loop running.
        if not self.active:
            self.start()
            lib.ev_unref(self._loop._ptr)
            self._unref = True

    def _stop_unref(self) -> None:
        self.stop()  # _stop_in gives the reference back


def _check_io(fd: Any, events: Any) -> tuple[int, int]:
    # Any: these checks are for callers whose values are not what the types say.
    if not isinstance(fd, int) or isinstance(fd, bool):
        if not hasattr(fd, "fileno"):
            raise TypeError("fd must be an int or have a fileno() method")
        # cast: mypy keeps bool in fd's type here, but hasattr refused it.
        fd = cast(Any, fd).fileno()
    if fd < 0:
        raise ValueError("fd must be >= 0")
    if isinstance(events, bool) or not isinstance(events, int):
        raise TypeError("events must be an int")
    if not events or events & ~(EV_READ | EV_WRITE):
        raise ValueError("events must be EV_READ, EV_WRITE or both")
    return fd, events


class Timer(Watcher):
    """Fires ``after`` seconds from start, then every ``repeat`` seconds."""

    _ctype = "ev_timer *"
    _start_fn = lib.ev_timer_start
    _stop_fn = lib.ev_timer_stop

    def __init__(self, after: float, repeat: float, loop: Loop,
                 callback: Callable[[Timer, int], object], data: Any = None,
                 priority: int = 0) -> None:
        self._after = _check_number("after", after)
        self._repeat = _check_number("repeat", repeat)
        super().__init__(loop, callback, data, priority)

    def _init(self) -> None:
        lib.gm_ev_timer_init(self._w, self._after, self._repeat)

    def set(self, after: float, repeat: float) -> None:
        """New ``after`` and ``repeat`` seconds (only while stopped)."""
        self._loop._live()
        if self.active:
            raise Error("cannot set an active watcher")
        self._after = _check_number("after", after)
        self._repeat = _check_number("repeat", repeat)
        lib.gm_ev_timer_set(self._w, self._after, self._repeat)

    def start(self) -> None:
        """Start the timer: it fires ``after`` seconds from now."""
        ptr = self._loop._live()
        if not self.active and self._loop._depth == 0:
            # Measure from now, not from the last iteration's cached time.
            lib.ev_now_update(ptr)
        super().start()

    def again(self) -> None:
        """Restart with ``repeat`` as the timeout (ev_timer_again)."""
        ptr = self._loop._live()
        if self._loop._depth == 0:
            lib.ev_now_update(ptr)
        if self._handle is None:
            self._handle = ffi.new_handle(self)
            self._w.data = self._handle
        lib.ev_timer_again(ptr, self._w)
        if self.active:
            self._loop._active.add(self)
        else:
            self._release()

    @property
    def repeat(self) -> float:
        """Seconds between firings, 0 for a one-shot timer; the next
        ``again()`` or expiry uses it."""
        repeat: float = self._w.repeat
        return repeat

    @repeat.setter
    def repeat(self, value: float) -> None:
        self._repeat = _check_number("repeat", value)
        self._w.repeat = self._repeat

    @property
    def remaining(self) -> float:
        """Seconds until the timer fires (0.0 when it is not active)."""
        ptr = self._loop._live()
        if not self.active:
            return 0.0
        remaining: float = lib.ev_timer_remaining(ptr, self._w)
        return remaining

    def _fire(self, revents: int) -> None:
        if not lib.gm_ev_is_active(self._w):
            # libev stopped a one-shot timer before calling us: let the loop
            # forget it, unless the callback starts it again.
            self._release()
        self._callback(self, revents)


class Prepare(Watcher):
    """Runs once per loop iteration, just before the loop blocks for I/O:
    the place to flush what callbacks queued during this iteration."""

    _ctype = "ev_prepare *"
    _start_fn = lib.ev_prepare_start
    _stop_fn = lib.ev_prepare_stop

    def __init__(self, loop: Loop, callback: Callable[[Prepare, int], object],
                 data: Any = None, priority: int = 0) -> None:
        super().__init__(loop, callback, data, priority)

    def _init(self) -> None:
        lib.gm_ev_prepare_init(self._w)


class Async(Watcher):
    """A wake-up call from another thread (libev ``ev_async``).

    ``send()`` may be called from any thread at any time, also while the loop
    is blocked in ``start()``: the loop wakes and runs
    ``callback(watcher, EV_ASYNC)`` in its own thread. Sends that arrive
    before the loop got round to the callback are merged into one call, so
    pass the work itself through a thread-safe structure (a queue) and use the
    callback to drain it; ``Loop.call_soon_threadsafe`` does exactly that.

    Only ``send()`` and ``sent`` are for other threads; start and stop the
    watcher in the loop's thread, and start it before other threads may send
    (a send to a stopped watcher is lost: libev clears it on start).
    An active Async keeps ``start()`` running, like any watcher.
    """

    _ctype = "ev_async *"
    _start_fn = lib.ev_async_start
    _stop_fn = lib.ev_async_stop

    def __init__(self, loop: Loop, callback: Callable[[Async, int], object],
                 data: Any = None, priority: int = 0) -> None:
        super().__init__(loop, callback, data, priority)

    def _init(self) -> None:
        lib.gm_ev_async_init(self._w)

    def send(self) -> None:
        """Wake the loop to run the callback (libev's thread-safe call).

        Raises: Error("loop destroyed") once the loop is gone.
        """
        ptr = self._loop._ptr
        if ptr is None:
            raise Error("loop destroyed")
        # Safe without any lock of ours: this frame holds the watcher, the
        # watcher holds its loop, so neither the ev_async nor the loop can be
        # freed while libev runs (with the GIL released) in this thread.
        lib.ev_async_send(ptr, self._w)

    @property
    def sent(self) -> bool:
        """True between a ``send()`` and the loop noticing it."""
        return bool(lib.gm_ev_async_pending(self._w))


# signum -> (loop, Python handler to restore) while any Signal watches it:
# libev allows one loop per signal number and resets the handler to SIG_DFL
# when the last watcher stops.
_signal_owner: dict[int, tuple[weakref.ref[Loop], Any]] = {}


class Signal(Watcher):
    """A Unix signal. While started, libev owns the signal's handler; when the
    last watcher of that signal stops, Python's previous handler comes back."""

    _ctype = "ev_signal *"
    _start_fn = lib.ev_signal_start
    _stop_fn = lib.ev_signal_stop

    def __init__(self, signum: int, loop: Loop, callback: Callable[[Signal, int], object],
                 data: Any = None, priority: int = 0) -> None:
        if isinstance(signum, bool) or not isinstance(signum, int):
            raise TypeError("signum must be an int")
        if not 0 < signum < _signal.NSIG:
            raise ValueError(f"invalid signal number {signum}")
        self._signum = int(signum)
        super().__init__(loop, callback, data, priority)

    def _init(self) -> None:
        lib.gm_ev_signal_init(self._w, self._signum)

    @property
    def signum(self) -> int:
        """The signal number watched."""
        return self._signum

    def start(self) -> None:
        """Start watching; libev takes over the signal's handler.

        Raises: Error if another loop watches this signal already."""
        self._loop._live()
        if self.active:
            return
        owner = _signal_owner.get(self._signum)
        if owner is not None and _watchers_of(owner[0](), self._signum):
            if owner[0]() is not self._loop:
                raise Error(f"signal {self._signum} is already watched by another loop")
        else:
            try:
                saved = _signal.getsignal(self._signum)
            except ValueError:
                saved = None
            _signal_owner[self._signum] = (weakref.ref(self._loop), saved)
        super().start()

    def stop(self) -> None:
        """Stop watching; after the last watcher of the signal, Python's
        previous handler is put back."""
        was_active = self.active
        super().stop()
        if not was_active or _watchers_of(self._loop, self._signum):
            return
        _, saved = _signal_owner.pop(self._signum, (None, None))
        if saved is not None and threading.current_thread() is threading.main_thread():
            try:
                _signal.signal(self._signum, saved)
            except (ValueError, OSError, TypeError):
                pass


def _watchers_of(loop: Loop | None, signum: int) -> bool:
    if loop is None:
        return False
    return any(isinstance(w, Signal) and w._signum == signum and w.active
               for w in loop._active)
