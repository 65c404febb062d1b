"""The real gearmand for behaviour tests, from the public plugin
(gearman_ev.testing): one per session on a free loopback port, and one per
test for tests that kill or restart it; each started and stopped by its own
process handle.

What must stay true: this suite never skips for want of gearmand. The public
fixture skips (a user's choice); here a missing gearmand fails the run, with
CI=true and elsewhere too, since a skipped suite is no green.
"""
from __future__ import annotations

from gearman_ev.testing import gearmand_fixture

#: The shared server (overrides the plugin's per-test ``gearmand`` by name).
gearmand = gearmand_fixture(scope="session", missing="fail")

#: A server of the test's own, for tests that kill or restart it.
own_gearmand = gearmand_fixture(missing="fail")
