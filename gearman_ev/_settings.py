"""The settings a connection object exposes, shared by every front-end
(``Gearman`` on libev, ``aio.AsyncGearman`` on asyncio): each property reads
or writes its session or its driver, and checks what it is given.

What must stay true: a setting is checked (TypeError / ValueError) before it
reaches the session; nothing here does I/O.
"""
from __future__ import annotations

from typing import Any

from . import _args
from ._session import Session

__all__ = ["ConnectionSettings"]


class ConnectionSettings:
    """Base of the connection classes: ``_session`` and ``_driver`` come
    from the subclass."""

    __slots__ = ()
    _driver: Any

    @property
    def _session(self) -> Session:
        raise NotImplementedError

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
