"""The old private home of LocalGearmand, kept so that code written against it
keeps importing: everything now lives in gearman_ev.testing (API.md 14).

What must stay true: this module only re-exports; new code imports
gearman_ev.testing.
"""
from __future__ import annotations

from .testing import GearmandMissing, LocalGearmand, ask, find_gearmand, free_port

__all__ = ["LocalGearmand", "GearmandMissing", "find_gearmand", "free_port", "ask"]
