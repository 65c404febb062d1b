"""What both pools (``GearmanPool``, ``aio.AsyncGearmanPool``) share: the
counters summed over their servers, and the worker calls they apply to every
server alike (each checked once, then handed to every server's connection,
which keeps it for its own reconnects).

What must stay true: arguments are checked before any server sees them, so
a bad call changes no server.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from . import _args
from ._routing import Router
from ._session import CONNECTED

__all__ = ["PoolBase"]

Name = Union[str, bytes]


class PoolBase:
    """Mixed into the pools: ``_servers``, ``_r`` and ``_check()`` come from them."""

    __slots__ = ()
    _servers: Sequence[Any]

    def _check(self) -> object:
        raise NotImplementedError

    _router: Optional[Router]  # None until the pool is set up

    @property
    def _r(self) -> Router:
        r = self._router
        assert r is not None
        return r

    def __repr__(self) -> str:
        up = sum(1 for s in self._r.sessions if s.state == CONNECTED)
        return f"<{type(self).__name__} {len(self._servers)} servers, {up} connected>"

    @property
    def pending_count(self) -> int:
        """Requests sent and awaiting their reply, over every server."""
        total: int = sum(g.pending_count for g in self._servers)
        return total

    @property
    def active_count(self) -> int:
        """Foreground jobs with a handle that have not finished, over every server."""
        total: int = sum(g.active_count for g in self._servers)
        return total

    @property
    def waiting_count(self) -> int:
        """Requests held until a server is up, the pool's own and each
        connection's."""
        held: int = sum(g.waiting_count for g in self._servers)
        return self._r.parked_count + held

    @property
    def rerouted_count(self) -> int:
        """Requests a dropped server handed back unwritten, and that the pool
        routed again (to another server, or the same once it is back)."""
        return self._r.rerouted

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
