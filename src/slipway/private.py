"""Slipway's local state is private to the user who runs it: directories 0700, files 0600.

``.slipway/`` holds the state database (every step's output, the pipeline text, who approved what),
the artifact store and the work directories with the exported source. Nobody else on the machine
needs to read any of it, so it is created private and an existing, looser one is tightened when a
command opens it. The process umask is left alone on purpose: build and hook commands inherit it, and
what they create (and what lands on a local target) is the application's business, not Slipway's.

Directories Slipway did not create for itself (a parent of a configured database file, say ``/tmp``)
are never tightened; only what Slipway creates, or what lies in its state directory, is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: SQLite's companions of a database file (write-ahead log, shared memory, rollback journal).
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 when it is missing; an existing one is left as it is."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        tighten(path)  # mkdir's mode passes through the umask, which may not be enough on its own
    return path


def tighten(path: Path) -> None:
    """Remove group and other permissions from ``path`` (not following a symlink); a no-op when absent."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077 or st.st_uid != os.geteuid():
        return  # links have no modes of their own; another user's file is not ours to change
    path.chmod(stat.S_IMODE(st.st_mode) & ~0o077)


def create_private_file(path: Path) -> None:
    """Create an empty file as 0600 if it does not exist (SQLite would create it 0644), and tighten it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    tighten(path)


def tighten_sqlite(path: Path) -> None:
    """Tighten a SQLite database file and its -wal, -shm and -journal companions."""
    for suffix in SQLITE_SUFFIXES:
        tighten(path.with_name(path.name + suffix))


def secure_state_dir(state_dir: Path) -> None:
    """Make the state directory 0700 and tighten what is directly inside it (when it exists).

    Everything deeper is out of reach of other users once the directory itself is 0700; the entries
    inside are tightened too so that moving or copying one out (a backup of state.db) keeps it private.
    """
    if not state_dir.is_dir():
        return
    tighten(state_dir)
    for entry in state_dir.iterdir():
        tighten(entry)
