"""The state store's core: the connection, the schema revision, one transaction per method, the journal.

:class:`StoreBase` opens SQLite (a file in ``.slipway/``) or PostgreSQL and brings the schema to the
newest Alembic revision. Every public method of the per-idea stores (runs.py, steps.py, deployments.py
...) is one transaction through :meth:`StoreBase._tx`; SQLAlchemy errors become
:class:`~slipway.errors.StoreError` there and nowhere else. Writes marked :func:`journalled` go to the local
journal (store/journal.py) once the store stops answering.
"""

from __future__ import annotations

import functools
import inspect as pyinspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from slipway.errors import LockHeld, StateError, StoreError
from slipway.private import create_private_file, make_private_dir, tighten_sqlite
from slipway.store import schema as t
from slipway.store.journal import Journal

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="StoreBase")
ALEMBIC_DIR = Path(__file__).parent / "alembic"
VERSION_TABLE = "slipway_store_version"
#: The newest revision in alembic/versions. Checked against Alembic by a test, so that opening an
#: up-to-date store does not have to import Alembic (it costs most of a CLI command's start-up time).
HEAD_REVISION = "0006"
SCHEMA_LOCK_KEY = 0x51195A7
#: Alembic's context is module state: one upgrade at a time per process.
_UPGRADE_LOCK = threading.Lock()


def alembic_config(engine: Engine) -> Any:
    """An Alembic config pointing at the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _describe_url(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def journalled(method: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """A write that, once the store stops answering, goes to the local journal instead (store/journal.py).

    The first refused write makes the store *unavailable* for the rest of the command: every later write
    of this kind is journalled too, in order, without trying the store. Reads still raise StoreError.
    """
    signature = pyinspect.signature(method)

    @functools.wraps(method)
    def write(self: S, *args: P.args, **kwargs: P.kwargs) -> T:
        if self.unavailable is None or self.journal is None:
            try:
                return method(self, *args, **kwargs)
            except StoreError as exc:
                if self.journal is None or isinstance(exc, LockHeld):
                    raise
                self.unavailable = exc
        assert self.journal is not None
        bound = signature.bind(self, *args, **kwargs).arguments
        arguments = {k: v for k, v in bound.items() if k != "self"}
        placeholder = self.journal.placeholder_id() if method.__name__ == "start_step" else None
        self.journal.append(method.__name__, arguments, at=self._now(), placeholder=placeholder)
        return cast(T, placeholder if placeholder is not None else None)

    return cast("Callable[Concatenate[S, P], T]", write)


def label(text: str, limit: int = 200) -> str:
    """A name that fits its column (``String(200)``): PostgreSQL refuses longer text, SQLite stores it."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_outage(exc: SQLAlchemyError) -> bool:
    """Whether the store could not be reached at all (not a refused statement, not a busy SQLite file)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError) and "locked" not in str(exc)


class StoreBase:
    """What every part of the store shares: the engine, the clock, the journal and the transaction."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, journal: Journal | None = None) -> None:
        self.url = url
        self._now = clock
        #: Where refused writes go (None: a refused write raises StoreError, as every read does).
        self.journal = journal
        #: The first write the store refused during this command; from then on writes are journalled.
        self.unavailable: StoreError | None = None
        self.where = _describe_url(url)  # for messages: the URL without its password
        try:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1].split("?", 1)[0]
                if path and path != ":memory:":
                    # Private from the start: every step's output and the pipeline text live in here.
                    make_private_dir(Path(path).parent)
                    create_private_file(Path(path))
                    tighten_sqlite(Path(path))  # an older, looser file; SQLite gives -wal/-shm the db's mode
                self.engine = create_engine(url, connect_args={"timeout": 30})
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self.upgrade()
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open the state store at {_describe_url(url)}: {exc.__class__.__name__}: {exc.args[0] if exc.args else exc}",
                hint="check SLIPWAY_DATABASE_URL (or unset it to use the SQLite file in .slipway/)",
            ) from exc

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe when several processes start at once)."""
        if self.revision() == HEAD_REVISION:
            return
        from alembic import command

        with _UPGRADE_LOCK, self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two processes opening a fresh database must not both create the tables.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            cfg = alembic_config(self.engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(VERSION_TABLE):
                return None
            row = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).first()
            return str(row[0]) if row else None

    def close(self) -> None:
        """Release all connections (and the journal, which may then be replayed)."""
        self.engine.dispose()
        if self.journal is not None:
            self.journal.close()

    @contextmanager
    def clock_at(self, at: float) -> Iterator[None]:
        """Stamp the writes made inside with ``at`` (replaying a journal: when it happened, not now)."""
        now = self._now
        self._now = lambda: at
        try:
            yield
        finally:
            self._now = now

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        session = self._sessions()
        try:
            with session.begin():
                yield session
        except (StateError, LockHeld):
            raise
        except SQLAlchemyError as exc:
            if not _is_outage(exc):
                raise StoreError(f"state store error: {exc.__class__.__name__}: {exc}") from exc
            cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            error = StoreError(
                f"the state store at {self.where} does not answer: {cause[0] if cause else type(exc).__name__}",
                hint="check that the database runs and SLIPWAY_DATABASE_URL points at it",
            )
            if self.journal is not None and self.unavailable is None:
                self.unavailable = error  # a read that cannot reach the store: from now on writes are journalled
            raise error from exc
        finally:
            session.close()

    def _audit(self, s: Session, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        s.add(
            t.Audit(
                at=self._now(),
                actor=actor,
                action=action,
                subject=subject,
                detail=json.dumps(detail, sort_keys=True, default=str),
            )
        )
