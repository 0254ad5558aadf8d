"""Fixtures: the OpenSSH test bed (the Node example needs no database and no package mirror)."""

from tests.support.pytest_ssh import ssh_bed_installed, ssh_testbed  # noqa: F401  (fixtures)
