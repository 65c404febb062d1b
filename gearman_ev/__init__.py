"""gearman_ev: an asynchronous Gearman client and worker on libev, with its
protocol core in C.

Start with ``Gearman`` (one connection: client, worker and admin) and
``gearman_ev.ev`` (the loop); ``GearmanPool`` spreads the same API over many
job servers. Errors: ``gearman_ev.errors``.
"""
from __future__ import annotations

from . import errors, ev
from ._codec import MAX_PACKET
from ._gearman import Gearman
from ._job import Job
from ._pool import GearmanPool
from .errors import (CommandTimeout, ConnectionLost, GearmanError, JobException, JobFailed,
                     JobTimeout, ServerError)

__version__ = "0.1.0"

__all__ = ["Gearman", "GearmanPool", "Job", "GearmanError", "JobFailed", "JobException",
           "JobTimeout", "CommandTimeout", "ConnectionLost", "ServerError", "MAX_PACKET",
           "errors", "ev", "__version__"]
