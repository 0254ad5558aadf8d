"""One migration runner at a time per database, and a clear message naming the one that holds the lock.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``), polled until a bounded wait. The
lock belongs to the runner's session, so it is released when the runner's connection ends, also when
the runner is killed. The holder is found in ``pg_locks`` joined with ``pg_stat_activity``; runners set
``application_name`` so that the holder reads as ``slipway-migrate <who> ...``.

SQLite: a row in ``slipway_migration_lock`` inserted under ``BEGIN IMMEDIATE`` (SQLite's single writer
lock, waited for with the busy timeout). A row left by a runner that died on this host (its pid is gone)
is taken over; a row from another host must be removed by hand (the message says how).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from slipway.errors import LockTimeout
from slipway.migrations._db import Connection, DatabaseFailure
from slipway.migrations.history import LOCK_TABLE
from slipway.migrations.statements import Dialect

#: The advisory lock key: the first 8 bytes of sha256("slipway:migrations"), as a signed bigint.
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"slipway:migrations").digest()[:8], "big", signed=True)
_POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class LockSettings:
    """How long to wait for the lock, and the injected clock."""

    wait: float
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]
    now: Callable[[], datetime]


def runner_identity(holder: str) -> str:
    """What a waiting runner is told about us: who, which process, which host."""
    return f"slipway-migrate {holder} pid={os.getpid()} host={socket.gethostname()}"


def acquire(conn: Connection, holder: str, settings: LockSettings) -> None:
    """Take the migration lock or raise LockTimeout naming the holder after ``settings.wait`` seconds."""
    identity = runner_identity(holder)
    conn.set_application_name(identity)
    deadline = settings.monotonic() + settings.wait
    while True:
        taken = _try_pg(conn) if conn.dialect is Dialect.POSTGRES else _try_sqlite(conn, identity, settings)
        if taken:
            return
        if settings.monotonic() >= deadline:
            raise LockTimeout(
                f"another migration runner holds the lock on {conn.display_url}: "
                f"{describe_holder(conn)}; gave up after waiting {settings.wait:g}s",
                hint=_hint(conn.dialect),
            )
        settings.sleep(min(_POLL_INTERVAL, max(0.0, deadline - settings.monotonic())))


def release(conn: Connection, holder: str) -> None:
    """Give the lock back (best effort: closing the connection releases PostgreSQL's anyway)."""
    if conn.dialect is Dialect.POSTGRES:
        conn.query("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
        return
    with conn.transaction():
        conn.execute(
            f"DELETE FROM {LOCK_TABLE} WHERE id = 1 AND holder = %s AND pid = %s",
            (runner_identity(holder), os.getpid()),
        )


def _try_pg(conn: Connection) -> bool:
    return conn.query("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,))[0][0] is True


def _try_sqlite(conn: Connection, identity: str, settings: LockSettings) -> bool:
    """Insert the lock row unless a live runner's row is there; False while someone else holds it."""
    try:
        with conn.transaction():
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LOCK_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "holder TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, acquired_at TEXT NOT NULL)"
            )
            rows = conn.query(f"SELECT host, pid FROM {LOCK_TABLE} WHERE id = 1")
            if rows and not _is_stale(str(rows[0][0]), int(rows[0][1])):
                return False
            conn.execute(f"DELETE FROM {LOCK_TABLE} WHERE id = 1")
            conn.execute(
                f"INSERT INTO {LOCK_TABLE} (id, holder, host, pid, acquired_at) VALUES (1, %s, %s, %s, %s)",
                (identity, socket.gethostname(), os.getpid(), settings.now().isoformat()),
            )
            return True
    except DatabaseFailure as exc:
        if exc.lock_timeout:  # another runner is writing (mid-migration): it holds SQLite's write lock
            return False
        raise


def _is_stale(host: str, pid: int) -> bool:
    """A lock row from a process on this host that no longer exists."""
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def describe_holder(conn: Connection) -> str:
    """Who holds the lock, as precisely as the database can tell."""
    try:
        if conn.dialect is Dialect.POSTGRES:
            return _pg_holder(conn)
        rows = conn.query(f"SELECT holder, acquired_at FROM {LOCK_TABLE} WHERE id = 1")
    except DatabaseFailure as exc:
        return f"(holder unknown: {exc.message})"
    if not rows:
        return "a runner that is writing to the database right now"
    return f"{rows[0][0]} (since {rows[0][1]})"


def _pg_holder(conn: Connection) -> str:
    unsigned = ADVISORY_KEY & 0xFFFFFFFFFFFFFFFF
    rows = conn.query(
        "SELECT a.pid, a.application_name, a.usename, a.client_addr::text, a.backend_start, a.state "
        "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s",
        (unsigned >> 32, unsigned & 0xFFFFFFFF),
    )
    if not rows:
        return "a runner that has just released it"
    pid, app, user, addr, started, state = rows[0]
    name = app or "a session without application_name"
    when = started.isoformat(timespec="seconds") if isinstance(started, datetime) else str(started)
    return f"{name!r} (backend pid {pid}, user {user}, from {addr or 'local socket'}, since {when}, {state})"


def _hint(dialect: Dialect) -> str:
    if dialect is Dialect.POSTGRES:
        return (
            "wait for that runner to finish and try again; if it hangs, end its session with "
            "SELECT pg_terminate_backend(<backend pid>), which releases the lock"
        )
    return (
        "wait for that runner to finish and try again; if it died on another host, remove the row: "
        f"DELETE FROM {LOCK_TABLE}"
    )
