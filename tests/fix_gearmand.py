"""The real gearmand for behaviour tests: one per session on a free loopback
port, started and stopped by its own process handle. With CI=true a missing
gearmand fails the run; elsewhere too, since a skipped suite is no green."""
from __future__ import annotations

import pytest

from gearman_ev._gearmand import LocalGearmand


@pytest.fixture(scope="session")
def gearmand():
    server = LocalGearmand(threads=1)
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_gearmand():
    """A server of the test's own, for tests that kill or restart it."""
    server = LocalGearmand(threads=1)
    server.start()
    yield server
    server.close()
