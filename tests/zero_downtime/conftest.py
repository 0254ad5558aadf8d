"""Fixtures: the example project (tests/e2e) and the OpenSSH test bed."""

from tests.e2e.conftest import project  # noqa: F401  (fixture)
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
