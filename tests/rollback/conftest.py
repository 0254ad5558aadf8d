"""Fixtures: a real nginx (private prefix and port) and the OpenSSH test bed with the example project."""

from tests.e2e.conftest import project  # noqa: F401  (fixture)
from tests.support.pytest_nginx import nginx_server  # noqa: F401  (fixture)
from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
