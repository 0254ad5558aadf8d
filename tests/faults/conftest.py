"""The fault matrix's fixtures: one SSH test bed per module, a fresh project and store per case."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.support import Case
from tests.support.pytest_ssh import ssh_bed_installed  # noqa: F401  (fixture)
from tests.support.sshbed import SSHTestBed

#: Hosts per bed: enough for a rolling deployment to stop with one host switched and two not.
HOSTS = 3


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory, ssh_bed_installed: None) -> Iterator[SSHTestBed]:  # noqa: F811
    """Three OpenSSH hosts shared by a module's cases; each case deploys under a /srv directory of its own."""
    shared = SSHTestBed(tmp_path_factory.mktemp("faultbed"), HOSTS)
    shared.start()
    try:
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def new_case(tmp_path: Path, bed: SSHTestBed) -> Callable[..., Case]:
    """``new_case(database_url=None)``: a project of this test, deploying to the module's bed."""

    def make(*, database_url: str | None = None) -> Case:
        name = f"case-{uuid.uuid4().hex[:12]}"
        return Case.create(tmp_path / name, bed, name, database_url=database_url)

    return make
