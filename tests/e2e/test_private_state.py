"""Slipway's local state is private: .slipway/ 0700, the SQLite files 0600, artifacts and work dirs closed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.store.repository import Store
from tests.e2e.conftest import Project

pytestmark = pytest.mark.timeout(180)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most users have (022): files would be world-readable unless Slipway says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_run_leaves_its_state_readable_by_its_user_only(project: Project, usual_umask: None) -> None:
    project.slipway("run")
    state = project.root / ".slipway"
    assert mode(state) == 0o700
    assert mode(state / "state.db") == 0o600
    for sub in ("artifacts", "work"):
        assert mode(state / sub) == 0o700, sub
    for path in (state / "artifacts").rglob("*"):
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
    [archive] = (state / "artifacts").rglob("*.tar.gz")
    assert mode(archive) == 0o400  # immutable, and nobody else's


def test_an_existing_loose_state_is_tightened_when_a_command_opens_it(project: Project, usual_umask: None) -> None:
    project.slipway("run")
    state = project.root / ".slipway"
    state.chmod(0o755)
    (state / "state.db").chmod(0o644)
    (state / "artifacts").chmod(0o755)
    (state / "work").chmod(0o777)
    wal = state / "state.db-wal"
    wal.write_bytes(b"")  # an empty WAL is valid: SQLite resets it
    wal.chmod(0o644)
    project.slipway("status")
    assert mode(state) == 0o700
    assert mode(state / "state.db") == 0o600
    assert mode(state / "artifacts") == 0o700 and mode(state / "work") == 0o700
    assert not wal.exists() or mode(wal) == 0o600


def test_the_sqlite_file_and_its_wal_and_shm_are_created_private(tmp_path: Path, usual_umask: None) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    db = shared / "nested" / "state.db"
    store = Store(f"sqlite:///{db}")
    try:
        store.audit("tester", "test.write", "the wal", {})  # WAL mode: the write goes to state.db-wal
        assert mode(db) == 0o600
        companions = [db.with_name(db.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in companions)
        assert [mode(p) for p in companions] == [0o600, 0o600]
        assert mode(db.parent) == 0o700  # created by Slipway
        assert mode(shared) == 0o755  # a directory Slipway did not create is not Slipway's to change
    finally:
        store.close()
