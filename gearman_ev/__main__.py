"""``python -m gearman_ev``: the ``gearman-ev`` command line (API.md 13).

What must stay true: this file only hands over to gearman_ev._cli.main, so the
console script and ``python -m`` behave the same.
"""
from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
