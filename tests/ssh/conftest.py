"""Fixtures for the SSH target tests: real OpenSSH servers from tests.support.sshbed, no mocks."""

from __future__ import annotations

import pytest
from tests.support import pytest_ssh
from tests.support.sshbed import SSHTestBed

# The test bed fixtures, found by pytest under these names.
ssh_bed_installed = pytest_ssh.ssh_bed_installed
ssh_testbed = pytest_ssh.ssh_testbed
ssh_testbed_session = pytest_ssh.ssh_testbed_session


@pytest.fixture(scope="module")
def shared_bed(ssh_testbed_session: pytest_ssh.BedFactory) -> SSHTestBed:
    """Three hosts shared by the tests of one module that inject no faults."""
    return ssh_testbed_session(3)
