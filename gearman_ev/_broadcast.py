"""The worker calls both pools (``GearmanPool``, ``aio.AsyncGearmanPool``)
apply to every server alike: each is checked once, then handed to every
server's connection, which keeps it for its own reconnects.

What must stay true: arguments are checked before any server sees them, so
a bad call changes no server.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from . import _args

__all__ = ["WorkerBroadcast"]

Name = Union[str, bytes]


class WorkerBroadcast:
    """Mixed into the pools: ``_servers`` and ``_check()`` come from them."""

    __slots__ = ()
    _servers: Sequence[Any]

    def _check(self) -> object:
        raise NotImplementedError

    def can_do(self, name: Name, timeout: Optional[float] = None) -> None:
        """Announce an ability on every server, without a managed callback."""
        _args.function(name)
        _args.timeout(timeout)
        self._check()
        for g in self._servers:
            g.can_do(name, timeout)

    def cant_do(self, name: Name) -> None:
        """Withdraw an ability on every server (CANT_DO)."""
        _args.function(name)
        self._check()
        for g in self._servers:
            g.cant_do(name)

    unregister_function = cant_do

    def reset_abilities(self) -> None:
        """Withdraw every ability on every server (RESET_ABILITIES)."""
        self._check()
        for g in self._servers:
            g.reset_abilities()

    def set_client_id(self, client_id: Name) -> None:
        """SET_CLIENT_ID on every server, now and on each connect."""
        _args.name_token(client_id, "client_id")
        self._check()
        for g in self._servers:
            g.set_client_id(client_id)
