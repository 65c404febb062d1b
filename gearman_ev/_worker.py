"""The worker half of Gearman (API.md 6): abilities, the managed GRAB loop,
``grab_job``, and how a job's result goes back.

What must stay true here:
- Abilities, the client id and whether ``work()`` runs belong to the object,
  not the connection: they are (re-)sent on every connect.
- The managed loop never has more GRABs outstanding than it may take jobs:
  one, or with ``concurrency=N`` at most N minus the jobs in flight.
- One terminal packet per job: a sync callback that finished its job itself
  has its return value ignored; WORK_EXCEPTION is sent instead of WORK_FAIL.
"""
from __future__ import annotations

import logging

from . import _args, _errors, ev
from ._args import arg_str
from ._conn import CONNECTED, K_ALL_YOURS, K_GRAB, K_MARKER, Entry, _weak_method
from ._ffi import ffi, lib
from ._job import Job

__all__ = ["Worker"]

log = logging.getLogger("gearman_ev")

#: While asleep, grab again this often: gearmand 1.1 never wakes a sleeping
#: worker when an epoch job comes due (PROTOCOL.md 8.4).
REGRAB_INTERVAL = 5.0

#: gearmand 1.1 can answer PRE_SLEEP with a NOOP at once while GRAB keeps
#: getting NO_JOB (a not-yet-due epoch job hides LOW jobs, PROTOCOL.md 8.4):
#: a busy spin. A NOOP this soon after PRE_SLEEP, more than SPIN_TOLERANCE
#: times in a row with no job between, defers the grab, doubling from
#: SPIN_BACKOFF_MIN up to SPIN_BACKOFF_MAX seconds.
SPIN_WINDOW = 0.01
SPIN_TOLERANCE = 3
SPIN_BACKOFF_MIN = 0.01
SPIN_BACKOFF_MAX = 0.25


class _Ability:
    __slots__ = ("callback", "timeout_ms", "async_")

    def __init__(self, callback, timeout_ms, async_):
        self.callback = callback
        self.timeout_ms = timeout_ms
        self.async_ = async_


class Worker:
    """Mixed into Gearman; uses the Connection plumbing."""

    def _worker_init(self):
        self._abilities = {}        # function bytes -> _Ability
        self._working = False
        self._work_one = False
        self._on_idle = None
        self._concurrency = None
        self._grabs_out = 0         # managed GRABs awaiting their reply
        self._in_flight = 0         # async jobs dispatched, not yet finished
        self._sleeping = False
        self._slept_at = 0.0        # loop time of the last PRE_SLEEP
        self._quick_wakes = 0       # NOOPs right after PRE_SLEEP, no job since
        self._regrab_timer = ev.Timer(REGRAB_INTERVAL, REGRAB_INTERVAL, self._loop,
                                      _weak_method(self, Worker._on_regrab),
                                      priority=self._priority)

    def _watchers(self):
        return super()._watchers() + (self._regrab_timer,)

    # ===== Abilities =====

    def register_function(self, name, callback, *, timeout=None, async_=False) -> None:
        """Serve ``name`` with ``callback(job)``: CAN_DO, or CAN_DO_TIMEOUT
        with ``timeout`` seconds. Sync callbacks return the result (bytes,
        str or None); ``async_=True`` callbacks finish the job themselves."""
        if not callable(callback):
            raise TypeError("callback must be callable as callback(job)")
        self._can_do(name, timeout, _Ability(callback, None, bool(async_)))

    def can_do(self, name, timeout=None) -> None:
        """Announce an ability without a managed callback (for ``grab_job``)."""
        self._can_do(name, timeout, _Ability(None, None, False))

    def _can_do(self, name, timeout, ability):
        func = _args.function(name)
        seconds = _args.timeout(timeout)  # None and 0 both mean "no timeout"
        # Milliseconds on the wire, as gearmand >= 1.1.19 reads it (PROTOCOL.md 8.6).
        ability.timeout_ms = max(1, round(seconds * 1000)) if seconds else None
        self._abilities[func] = ability
        if self._state == CONNECTED:
            self._send_ability(func, ability)
            self._flush_soon()
            # gearmand sends no NOOP for jobs already queued for a new ability:
            # a sleeping worker loop grabs at once instead of on the re-grab timer.
            self._wake()

    def _send_ability(self, func, ability):
        if ability.timeout_ms is None:
            self._pack(lib.GM_CMD_CAN_DO, (func,), None)
        else:
            self._pack(lib.GM_CMD_CAN_DO_TIMEOUT, (func, str(ability.timeout_ms).encode()), None)

    def cant_do(self, name) -> None:
        """Withdraw an ability (CANT_DO)."""
        func = _args.function(name)
        self._abilities.pop(func, None)
        if self._state == CONNECTED:
            self._pack(lib.GM_CMD_CANT_DO, (func,), None)
            self._flush_soon()

    unregister_function = cant_do

    def reset_abilities(self) -> None:
        """Withdraw every ability (RESET_ABILITIES)."""
        self._abilities.clear()
        if self._state == CONNECTED:
            self._pack(lib.GM_CMD_RESET_ABILITIES, (), None)
            self._flush_soon()

    def set_client_id(self, client_id) -> None:
        """SET_CLIENT_ID, now and on every connect."""
        self._client_id = _args.name_token(client_id, "client_id")
        if self._state == CONNECTED:
            self._pack(lib.GM_CMD_SET_CLIENT_ID, (self._client_id,), None)
            self._flush_soon()

    def all_yours(self, cb=None) -> None:
        """ALL_YOURS. gearmand 1.1 answers ``cb(None, "INVALID_COMMAND: ...")``;
        a server that takes it silently gives ``cb(True, None)``."""
        _args.callback(cb)
        # An ECHO behind it tells silence from a late ERROR.
        self._send(lib.GM_CMD_ALL_YOURS, (), Entry(K_ALL_YOURS, cb))
        self._send(lib.GM_CMD_ECHO_REQ, (b"",), Entry(K_MARKER, None))

    # ===== The managed loop =====

    def work(self, on_idle=None, *, concurrency=None) -> None:
        """Grab and run jobs until ``work_stop()``. ``on_idle()`` fires each
        time the worker goes to sleep. ``concurrency=N`` keeps at most N
        (async) jobs in flight."""
        _args.callback(on_idle, "on_idle")
        if concurrency is not None:
            if isinstance(concurrency, bool) or not isinstance(concurrency, int):
                raise TypeError("concurrency must be an int or None")
            if concurrency < 1:
                raise ValueError("concurrency must be >= 1")
        self._on_idle = on_idle
        self._concurrency = concurrency
        self._work_one = False
        self._start_working()

    def work_one(self, on_idle=None) -> None:
        """Run exactly one job, then stop; wait for one if none is queued."""
        _args.callback(on_idle, "on_idle")
        self._on_idle = on_idle
        self._concurrency = None
        self._work_one = True
        self._start_working()

    def work_stop(self) -> None:
        """Stop grabbing; jobs in flight still report their results."""
        self._working = False
        self._work_one = False
        self._regrab_timer.stop()

    def _start_working(self):
        self._working = True
        if self._state == CONNECTED:
            self._grab_more()

    def _grab_limit(self):
        if self._concurrency is None:
            return 1
        return self._concurrency - self._in_flight

    def _grab_more(self):
        if not self._working or self._sleeping or self._state != CONNECTED:
            return
        cmd = lib.GM_CMD_GRAB_JOB_UNIQ if self._grab_unique else lib.GM_CMD_GRAB_JOB
        sent = False
        while self._grabs_out < self._grab_limit():
            self._grabs_out += 1
            self._pack(cmd, (), Entry(K_GRAB, None))
            sent = True
        if sent:
            self._flush_soon()

    def _go_to_sleep(self):
        self._sleeping = True
        self._slept_at = self._loop.now()
        self._pack(lib.GM_CMD_PRE_SLEEP, (), None)
        self._flush_soon()
        self._regrab_timer.again()
        if self._on_idle is not None:
            self._call(self._on_idle)

    def _wake(self):
        if self._sleeping:
            self._sleeping = False
            self._regrab_timer.stop()
            self._grab_more()

    def _on_regrab(self, watcher, revents):
        if self._sleeping and self._working and self._state == CONNECTED:
            self._wake()
        else:
            watcher.stop()

    def grab_job(self, cb) -> None:
        """One GRAB: ``cb(job, None)`` or ``cb(None, "no job")``."""
        if not callable(cb):
            raise TypeError("cb must be callable as cb(job, err)")
        cmd = lib.GM_CMD_GRAB_JOB_UNIQ if self._grab_unique else lib.GM_CMD_GRAB_JOB
        self._send(cmd, (), Entry(K_GRAB, cb))

    # ===== Session set-up and teardown =====

    def _queue_session_setup(self):
        super()._queue_session_setup()
        for func, ability in self._abilities.items():
            self._send_ability(func, ability)
        self._grabs_out = 0
        self._in_flight = 0
        self._sleeping = False
        self._quick_wakes = 0

    def _after_connect(self):
        self._regrab_timer.stop()
        if self._working:
            self._grab_more()

    # ===== Packets =====

    def _on_noop(self, pkt):
        if not self._sleeping:
            return  # a stale hint: a GRAB is already out (PROTOCOL.md 5)
        if self._loop.now() - self._slept_at < SPIN_WINDOW:
            self._quick_wakes += 1
        else:
            self._quick_wakes = 0
        excess = self._quick_wakes - SPIN_TOLERANCE
        if excess > 0:
            delay = min(SPIN_BACKOFF_MIN * 2 ** min(excess, 16), SPIN_BACKOFF_MAX)
            self._regrab_timer.stop()
            self._regrab_timer.set(delay, REGRAB_INTERVAL)
            self._regrab_timer.start()  # _on_regrab wakes us then
            return
        self._wake()

    def _on_no_job(self, pkt):
        entry = self._pop(lib.GM_CMD_NO_JOB)
        if entry is None:
            return
        if entry.cb is not None:
            self._call(entry.cb, None, _errors.NO_JOB)
            return
        self._grabs_out -= 1
        if self._working and self._grabs_out == 0 and not self._sleeping:
            self._go_to_sleep()

    def _on_job_assign(self, pkt):
        self._assigned(pkt, lib.GM_CMD_JOB_ASSIGN, "", 2)

    def _on_job_assign_uniq(self, pkt):
        self._assigned(pkt, lib.GM_CMD_JOB_ASSIGN_UNIQ, arg_str(pkt, 2), 3)

    def _on_job_assign_all(self, pkt):
        self._assigned(pkt, lib.GM_CMD_JOB_ASSIGN_ALL, arg_str(pkt, 2), 4)

    def _assigned(self, pkt, cmd, unique, workload_arg):
        entry = self._pop(cmd)
        if entry is None:
            return
        handle = ffi.unpack(pkt.arg[0], pkt.len[0])
        function = ffi.unpack(pkt.arg[1], pkt.len[1])
        workload = ffi.unpack(pkt.arg[workload_arg], pkt.len[workload_arg])
        if entry.cb is not None:  # grab_job(): the user runs it
            self._call(entry.cb, Job(self, handle, function, unique, workload), None)
            return
        self._grabs_out -= 1
        self._quick_wakes = 0
        if self._work_one:
            self._working = self._work_one = False
        ability = self._abilities.get(function)
        gen = self._gen
        if ability is None or ability.callback is None:
            log.error("gearman_ev: no callback registered for %r; failing job %r",
                      function.decode("utf-8", "replace"), handle.decode("utf-8", "replace"))
            self._job_send(lib.GM_CMD_WORK_FAIL, (handle,))
        elif ability.async_:
            job = Job(self, handle, function, unique, workload, counted=True)
            self._in_flight += 1
            self._call(ability.callback, job)
        else:
            self._run_sync(ability.callback, Job(self, handle, function, unique, workload))
        if gen == self._gen:
            self._grab_more()

    def _run_sync(self, callback, job):
        try:
            result = callback(job)
        except (KeyboardInterrupt, SystemExit) as exc:
            self._loop._park(exc)
            result, failure = None, exc
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure
            log.exception("gearman_ev: worker callback for %r raised", job.function)
            result, failure = None, exc
        else:
            failure = None
        if job._finished or job._gen != self._gen or self._closed:
            return  # finished by the callback itself, or its connection is gone
        try:
            if failure is None:
                job.complete(result)
            elif self._exceptions:
                job.exception(str(failure))
            else:
                job.fail()
        except (TypeError, ValueError) as exc:
            log.error("gearman_ev: bad result from %r: %s", job.function, exc)
            job.fail()

    def _job_send(self, cmd, args):
        if self._state != CONNECTED:
            raise _errors.GearmanError(_errors.STALE_JOB)
        self._pack(cmd, args, None)
        self._flush_soon()

    def _job_done(self, job):
        if job._counted and self._in_flight > 0:
            self._in_flight -= 1
            if self._concurrency is not None:
                self._grab_more()


HANDLERS = {
    lib.GM_CMD_NOOP: Worker._on_noop,
    lib.GM_CMD_NO_JOB: Worker._on_no_job,
    lib.GM_CMD_JOB_ASSIGN: Worker._on_job_assign,
    lib.GM_CMD_JOB_ASSIGN_UNIQ: Worker._on_job_assign_uniq,
    lib.GM_CMD_JOB_ASSIGN_ALL: Worker._on_job_assign_all,
}
