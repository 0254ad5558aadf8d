"""What the state store could not be told, written down locally until it answers again.

When the store stops answering during a deployment, hosts must still go back to the release they ran,
and the store must later say truthfully that they did. Every write the store refuses from then on (the
store is *unavailable* for the rest of the command: later writes follow in the same order, so replaying
never puts an older fact over a newer one) is appended to ``.slipway/journal/<time>-<pid>.jsonl``: one JSON
object a line, flushed and fsync'd before the caller goes on, private to the user (0600 in a 0700
directory). The next command that opens the store replays every journal, oldest first, and deletes it.
The writer holds an exclusive ``flock`` on its journal until it closes: a journal still being written (or
being replayed by another command) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from slipway.errors import StateError, StoreError
from slipway.model.records import HostRelease
from slipway.model.states import State


class Store(Protocol):
    """What a replay needs of the store: the journalled writes by name, a clock to stamp them, host records.

    A Protocol rather than the concrete Store, which opens journals: the two modules would import each other.
    """

    def clock_at(self, at: float) -> AbstractContextManager[None]:
        """Stamp the writes made inside with ``at``."""

    def host_releases(self, environment: str | None = None) -> list[HostRelease]:
        """What runs where, by environment and host."""


class Journal:
    """Appends refused store writes to one file of ``directory`` (created on the first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path: Path | None = None
        self.entries = 0
        self._placeholder = 0
        self._fd: int | None = None

    def append(self, op: str, arguments: dict[str, Any], *, at: float, placeholder: int | None = None) -> None:
        """Write one entry and fsync it before returning."""
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = self.directory / f"{time.time_ns()}-{os.getpid()}.jsonl"
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # until close(): nobody replays it while we write
        entry: dict[str, Any] = {"op": op, "at": at, "args": arguments}
        if placeholder is not None:
            entry["placeholder"] = placeholder
        line = json.dumps(entry, sort_keys=True, default=str) + "\n"
        os.write(self._fd, line.encode())
        os.fsync(self._fd)
        self.entries += 1

    def close(self) -> None:
        """Stop writing: the journal may be replayed from now on."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def placeholder_id(self) -> int:
        """An id for a record the store could not create (negative: never a real one); replay maps it."""
        self._placeholder -= 1
        return self._placeholder


def pending(directory: Path) -> list[Path]:
    """The journals waiting to be replayed, oldest first."""
    return sorted(directory.glob("*.jsonl")) if directory.is_dir() else []


def replay(store: Store, directory: Path) -> int:
    """Write every pending journal into ``store`` (oldest first), deleting each once done; return the count.

    A journal the store cannot be reached for part-way keeps its remaining entries for the next try
    (StoreError); an entry the store answers and refuses is set aside in ``rejected/`` and the rest goes on.
    """
    done = 0
    for path in pending(directory):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # replayed by another command meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # still being written, or replayed by another command
            if path.exists():
                done += _replay_one(store, path)
        finally:
            os.close(fd)
    return done


def _replay_one(store: Store, path: Path) -> int:
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ids: dict[int, int] = {}
    for i, entry in enumerate(entries):
        try:
            _apply(store, entry, ids)
        except StoreError as exc:
            if _is_refusal(exc):  # the store answers but cannot take this change: keep it aside, go on
                set_aside(path, entry, exc)
                continue
            _rewrite(path, entries[i:])
            raise
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return len(entries)


def _apply(store: Store, entry: dict[str, Any], ids: dict[int, int]) -> None:
    op, at, args = entry["op"], float(entry["at"]), dict(entry["args"])
    if "state" in args:
        args["state"] = State(args["state"])
    for key in ("step_id",):
        if key in args and args[key] in ids:
            args[key] = ids[args[key]]
    if op == "set_host_release" and _newer_host_record(store, args, at):
        return  # the store already knows something newer about this host
    # The write itself, not its journalling wrapper: a replay the store refuses must raise, not journal again.
    method: Callable[..., Any] = getattr(type(store), op).__wrapped__
    with store.clock_at(at):
        try:
            result = method(store, **args)
        except StateError:
            return  # already recorded (a replay cut short by a crash): the store's state stands
    if op == "start_step" and "placeholder" in entry:
        ids[int(entry["placeholder"])] = int(result)


def _is_refusal(exc: StoreError) -> bool:
    """Whether the store answered and refused the change (it lost a row the entry refers to, say: a
    PostgreSQL with ``synchronous_commit = off`` may forget its last commits in a crash), not an outage."""
    from sqlalchemy.exc import DataError, IntegrityError  # only a replay that meets a refusal needs these

    return isinstance(exc.__cause__, IntegrityError | DataError)


def set_aside(path: Path, entry: dict[str, Any], exc: StoreError) -> Path:
    """Keep an entry the store refused in ``rejected/`` beside the journal, for a person; return that file."""
    aside = path.parent / "rejected" / path.name
    aside.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(json.dumps({**entry, "refused": exc.message.splitlines()[0]}, sort_keys=True, default=str) + "\n")
    return aside


def _newer_host_record(store: Store, args: dict[str, Any], at: float) -> bool:
    rows = store.host_releases(args["environment"])
    row = next((r for r in rows if r.host == args["host"]), None)
    return row is not None and row.since > at


def _rewrite(path: Path, entries: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.writelines(json.dumps(e, sort_keys=True, default=str) + "\n" for e in entries)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
