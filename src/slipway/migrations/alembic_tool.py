"""An Alembic project in a release's files: its revisions, its offline SQL, and upgrades, through Alembic's API.

Every operation that loads the project's code (revision modules, env.py) runs :mod:`.alembic_worker` in a
process of its own, in the release's directory (see there why). The database's current head is read here,
with Alembic's ``MigrationContext``, and needs none of the project's code.

A revision's phase is the module attribute ``phase = "expand" | "migrate" | "contract"`` (default expand);
``allow = {"SW021": "why this is safe here"}`` waives lint rules for the SQL it would execute, as
``-- slipway:allow`` does in a ``.sql`` file. Slipway supports one line of history (one head).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.errors import MigrationError
from slipway.migrations.framework import ALEMBIC, Revision, ToolState, WorkerCall, overrides_of, phase_of
from slipway.migrations.framework import as_migration as as_migration  # where the Alembic code imported it
from slipway.migrations.statements import Dialect, split_statements

__all__ = ["AlembicProject", "Revision", "as_migration", "database_heads", "dialect_of_url", "split_offline_sql"]

WORKER = Path(__file__).with_name("alembic_worker.py")
_RUNNING = re.compile(r"^-- Running upgrade (?P<start>\S*) -> (?P<target>\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class AlembicProject:
    """The Alembic project of one release, extracted to ``root``, against the database ``url``."""

    root: Path
    url: str
    config: str = "alembic.ini"
    script_location: str | None = None
    python: str | None = None
    environ: Mapping[str, str] | None = None
    #: PostgreSQL lock_timeout and statement_timeout of Alembic's session, in seconds (via PGOPTIONS).
    lock_timeout: float = 5.0
    statement_timeout: float = 600.0
    #: Seconds one worker may run before it is stopped.
    timeout: float = 900.0
    #: Seconds to wait when connecting to the database to read its head.
    connect_timeout: float = 10.0
    #: Revisions already listed for these scripts, by a key naming their content (an artifact's digest and
    #: where its scripts are): listing starts a Python with Alembic, about half a second of CPU, and one
    #: deployment reads the same release's scripts at its check, its expand and its contract.
    known: dict[tuple[str, ...], tuple[Revision, ...]] | None = None
    key: tuple[str, ...] = ()

    words = ALEMBIC

    def read(self) -> ToolState:
        """The revisions and the database's head (one line of history: several heads are refused)."""
        revisions = self.revisions()
        heads = database_heads(self.url, connect_timeout=self.connect_timeout)
        if len(heads) > 1:
            raise MigrationError(
                f"the database has {len(heads)} Alembic heads ({', '.join(heads)}): Slipway runs one line of history",
                hint="merge the branches with 'alembic merge heads' and upgrade by hand once",
            )
        return ToolState(revisions, heads[0] if heads else None)

    def apply(self, revision: Revision) -> str:
        """Upgrade to ``revision``; the command that did it."""
        self.upgrade(revision.revision)
        return self.command(revision)

    def command(self, revision: Revision) -> str:
        """What applying ``revision`` runs, for the step's record."""
        return f"alembic upgrade {revision.revision}"

    def pending_sql(self, head: str | None, pending: Sequence[Revision]) -> dict[str, str]:
        """The SQL of the pending revisions, by revision (offline mode); MigrationError when there is none."""
        return self.offline_sql(head, pending[-1].revision) if pending else {}

    def revisions(self) -> tuple[Revision, ...]:
        """The revisions, base first; MigrationError for branches, a bad phase or a bad ``allow``."""
        if self.known is not None and self.key in self.known:
            return self.known[self.key]
        revisions = self._list_revisions()
        if self.known is not None and self.key:
            self.known[self.key] = revisions
        return revisions

    def _list_revisions(self) -> tuple[Revision, ...]:
        answer = self._call("scripts")
        heads = answer["heads"]
        if len(heads) > 1:
            raise MigrationError(
                f"the Alembic scripts have {len(heads)} heads ({', '.join(heads)}): Slipway runs one line of history",
                file=self.script_location or self.config,
                hint="join them with 'alembic merge heads' in a new revision",
            )
        return tuple(_revision(item) for item in answer["revisions"])

    def upgrade(self, target: str) -> None:
        """``alembic upgrade TARGET`` on the database."""
        self._call("upgrade", target=target)

    def offline_sql(self, start: str | None, target: str) -> dict[str, str]:
        """The SQL ``alembic upgrade [START:]TARGET --sql`` would run, by revision (Alembic's own
        BEGIN/COMMIT and its version-table statements left out)."""
        text = self._call("sql", start=start, target=target)["sql"]
        return split_offline_sql(text, dialect=dialect_of_url(self.url))

    def _call(self, operation: str, **fields: Any) -> dict[str, Any]:
        """Run the worker in the release's directory; its answer, or MigrationError with its evidence."""
        call = WorkerCall(
            WORKER, self.root, "Alembic", python=self.python, environ=self.environ,
            lock_timeout=self.lock_timeout, statement_timeout=self.statement_timeout, timeout=self.timeout,
        )
        request = {"config": self.config, "script_location": self.script_location, "url": self.url, **fields}
        return call(operation, request)


def _revision(item: dict[str, Any]) -> Revision:
    """A Revision from the worker's answer, its phase and ``allow`` checked."""
    path = str(item["path"])
    phase = phase_of(item.get("phase"), path=path)
    down = item.get("down_revision")
    if isinstance(down, list):
        raise MigrationError(
            f"revision {item['revision']} merges {len(down)} revisions: Slipway runs one line of history", file=path
        )
    return Revision(item["revision"], down, path, str(item.get("doc") or ""), phase, overrides_of(item.get("allow"), path))


def dialect_of_url(url: str) -> Dialect:
    """The lint dialect of a database URL (PostgreSQL or SQLite)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme in ("postgresql", "postgres"):
        return Dialect.POSTGRES
    if scheme == "sqlite":
        return Dialect.SQLITE
    raise MigrationError(f"migrations support PostgreSQL and SQLite, not {scheme}")


def split_offline_sql(text: str, *, dialect: Dialect) -> dict[str, str]:
    """Alembic's offline output cut at its ``-- Running upgrade A -> B`` markers: ``{B: its SQL}``."""
    marks = list(_RUNNING.finditer(text))
    found: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        kept = [
            s.text
            for s in split_statements(text[mark.end() : end], dialect=dialect)
            if "alembic_version" not in s.text and s.keywords[:1] not in (("BEGIN",), ("COMMIT",))
        ]
        found[mark["target"]] = "".join(f"{s};\n\n" for s in kept)
    return found


def database_heads(url: str, *, connect_timeout: float, version_table: str = "alembic_version") -> tuple[str, ...]:
    """The revisions in the database's version table (none before the first upgrade)."""
    import sqlalchemy as sa
    from alembic.runtime.migration import MigrationContext

    from slipway.migrations.runner import make_engine

    engine, display = make_engine(url, connect_timeout=connect_timeout)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": version_table})
            return tuple(context.get_current_heads())
    except sa.exc.SQLAlchemyError as exc:
        raise MigrationError(
            f"cannot read the Alembic version of the database {display}: {str(getattr(exc, 'orig', exc)).strip()}",
            hint="check that the database server is running and reachable and that the URL is right",
        ) from exc
    finally:
        engine.dispose()
