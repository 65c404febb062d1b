"""gearman_ev: an asynchronous Gearman client and worker on libev.

Users import from here and from ``gearman_ev.ev`` only.
"""
from __future__ import annotations

from . import ev
from ._errors import GearmanError
from ._gearman import Gearman
from ._job import Job
from ._ffi import lib as _lib

__version__ = "0.1.0"

#: Largest packet body (function + unique + workload, with separators).
MAX_PACKET = _lib.GM_MAX_PACKET

__all__ = ["Gearman", "GearmanError", "Job", "MAX_PACKET", "ev", "__version__"]
