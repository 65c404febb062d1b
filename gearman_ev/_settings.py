"""What a connection object exposes the same way on every front-end
(``Gearman`` on libev, ``aio.AsyncGearman`` on asyncio): the settings, each
reading or writing its session or its driver, and the worker's abilities
and client id, which the session keeps and re-sends on every connect.

What must stay true: a setting is checked (TypeError / ValueError) before it
reaches the session; nothing here does I/O.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from . import _args
from ._session import Ability, Session

__all__ = ["ConnectionSettings"]

Name = Union[str, bytes]


class ConnectionSettings:
    """Base of the connection classes: ``_session`` and ``_driver`` come
    from the subclass."""

    __slots__ = ()
    _driver: Any

    @property
    def _session(self) -> Session:
        raise NotImplementedError

    def _check(self) -> Session:
        """The session, if this thread and process may use it now."""
        raise NotImplementedError

    @property
    def pending_count(self) -> int:
        """Requests sent and awaiting their reply (on asyncio, cancelled ones
        too, until their reply arrives)."""
        return self._session.pending_count

    @property
    def waiting_count(self) -> int:
        """Requests held until the connection is up."""
        return self._session.waiting_count

    @property
    def active_count(self) -> int:
        """Foreground jobs with a handle whose result has not arrived."""
        return self._session.active_count

    @property
    def reconnect_enabled(self) -> bool:
        """Whether the object reconnects after a drop."""
        return self._session.reconnect_enabled

    @property
    def keepalive(self) -> float:
        """TCP keepalive idle time in seconds, 0 for off; the kernel counts
        whole seconds, so a fraction is rounded (never down to off)."""
        keepalive: float = self._driver.keepalive
        return keepalive

    @keepalive.setter
    def keepalive(self, value: float) -> None:
        self._driver.set_keepalive(_args.seconds("keepalive", value))

    @property
    def connect_timeout(self) -> float:
        """Seconds a connect may take, 0 for no limit."""
        return self._session.connect_timeout

    @connect_timeout.setter
    def connect_timeout(self, value: float) -> None:
        self._session.connect_timeout = _args.seconds("connect_timeout", value)

    @property
    def command_timeout(self) -> float:
        """Seconds without a byte while a request awaits its reply, 0 for off."""
        return self._session.command_timeout

    @command_timeout.setter
    def command_timeout(self, value: float) -> None:
        s = self._session
        s.command_timeout = _args.seconds("command_timeout", value)
        if not s.command_timeout:
            s._command_at = 0.0

    @property
    def high_water(self) -> int:
        """Unsent bytes above which new requests are refused, 0 for unbounded."""
        return self._session.high_water

    @high_water.setter
    def high_water(self, value: int) -> None:
        self._session.high_water = _args.count("high_water", value)

    @property
    def writable(self) -> bool:
        """False while more than ``high_water`` bytes wait unsent."""
        return self._session.writable

    # ===== Worker abilities (kept by the session, re-sent on every connect) =====

    def can_do(self, name: Name, timeout: Optional[float] = None) -> None:
        """Announce an ability without a managed function (for ``grab_job``):
        CAN_DO, or CAN_DO_TIMEOUT with ``timeout`` seconds."""
        self._can_do(name, timeout, Ability(None, None, False))

    def _can_do(self, name: Name, timeout: Optional[float], ability: Ability) -> None:
        func = _args.function(name)
        seconds = _args.timeout(timeout)  # None and 0 both mean "no timeout"
        # Milliseconds on the wire, as gearmand >= 1.1.19 reads it.
        ability.timeout_ms = max(1, round(seconds * 1000)) if seconds else None
        self._check().set_ability(func, ability)

    def cant_do(self, name: Name) -> None:
        """Withdraw an ability (CANT_DO)."""
        self._check().set_ability(_args.function(name), None)

    unregister_function = cant_do

    def reset_abilities(self) -> None:
        """Withdraw every ability (RESET_ABILITIES)."""
        self._check().reset_abilities()

    def set_client_id(self, client_id: Name) -> None:
        """SET_CLIENT_ID, now and on every connect."""
        self._check().set_client_id(_args.name_token(client_id, "client_id"))
