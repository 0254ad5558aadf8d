"""An Alembic project in a release's files: its revisions, its offline SQL, and upgrades, through Alembic's API.

Every operation that loads the project's code (revision modules, env.py) runs :mod:`.alembic_worker` in a
process of its own, in the release's directory (see there why). The database's current head is read here,
with Alembic's ``MigrationContext``, and needs none of the project's code.

A revision's phase is the module attribute ``phase = "expand" | "migrate" | "contract"`` (default expand);
``allow = {"SW021": "why this is safe here"}`` waives lint rules for the SQL it would execute, as
``-- slipway:allow`` does in a ``.sql`` file. Slipway supports one line of history (one head).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipway.errors import MigrationError
from slipway.migrations.files import Migration, Override, Phase, checksum
from slipway.migrations.statements import Dialect, split_statements

WORKER = Path(__file__).with_name("alembic_worker.py")
_RULE = re.compile(r"^[A-Z]{2}[0-9]{3}$")
_RUNNING = re.compile(r"^-- Running upgrade (?P<start>\S*) -> (?P<target>\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Revision:
    """One revision of the release's script directory."""

    revision: str
    down_revision: str | None
    #: The revision file, relative to the release's root (as in the artifact's manifest).
    path: str
    doc: str
    phase: Phase
    overrides: tuple[Override, ...] = ()

    @property
    def name(self) -> str:
        """The first line of the revision's message (its file name without one)."""
        return self.doc.splitlines()[0].strip() if self.doc.strip() else Path(self.path).stem

    @property
    def filename(self) -> str:
        """The revision file's base name."""
        return Path(self.path).name


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
    #: Revisions already listed for these scripts, by a key naming their content (an artifact's digest and
    #: where its scripts are): listing starts a Python with Alembic, about half a second of CPU, and one
    #: deployment reads the same release's scripts at its check, its expand and its contract.
    known: dict[tuple[str, ...], tuple[Revision, ...]] | None = None
    key: tuple[str, ...] = ()

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
        with tempfile.TemporaryDirectory(prefix="slipway-alembic-") as tmp:
            result = Path(tmp) / "result.json"
            request = {
                "operation": operation,
                "config": self.config,
                "script_location": self.script_location,
                "url": self.url,
                "result": str(result),
                **fields,
            }
            env = dict(self.environ if self.environ is not None else os.environ)
            env["PGOPTIONS"] = (
                f"-c lock_timeout={max(1, int(self.lock_timeout * 1000))} "
                f"-c statement_timeout={max(1, int(self.statement_timeout * 1000))}"
            )
            argv = [self.python or sys.executable, str(WORKER)]
            try:
                proc = subprocess.run(
                    argv, input=json.dumps(request), cwd=self.root, env=env, capture_output=True, text=True,
                    timeout=self.timeout, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise MigrationError(
                    f"alembic {operation} ran longer than {self.timeout:g}s and was stopped",
                    hint="a lock held by a long transaction? see pg_stat_activity",
                ) from exc
            except OSError as exc:
                raise MigrationError(
                    f"cannot start {argv[0]} to run Alembic: {exc.strerror}",
                    hint="migrations.python names an interpreter with alembic installed",
                ) from exc
            answer: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {}
        if proc.returncode != 0 or "error" in answer:
            error = answer.get("error") or f"the worker exited {proc.returncode}"
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-8:])
            raise MigrationError(
                f"alembic {operation} failed: {error}",
                hint=(f"its output ended with:\n{tail}" if tail else "") or answer.get("traceback", ""),
            )
        return answer


def _revision(item: dict[str, Any]) -> Revision:
    """A Revision from the worker's answer, its phase and ``allow`` checked."""
    path = str(item["path"])
    phase_text = item.get("phase") or "expand"
    try:
        phase = Phase(str(phase_text).lower())
    except ValueError:
        raise MigrationError(
            f"phase = {phase_text!r} is not a phase", file=path, hint='write phase = "expand", "migrate" or "contract"'
        ) from None
    down = item.get("down_revision")
    if isinstance(down, list):
        raise MigrationError(
            f"revision {item['revision']} merges {len(down)} revisions: Slipway runs one line of history", file=path
        )
    return Revision(item["revision"], down, path, str(item.get("doc") or ""), phase, _overrides(item.get("allow"), path))


def _overrides(allow: Any, path: str) -> tuple[Override, ...]:
    """``allow = {"SW021": "reason"}`` as overrides; MigrationError naming the file when malformed."""
    if allow is None:
        return ()
    hint = 'write it as: allow = {"SW021": "why it is safe here"}'
    if not isinstance(allow, dict):
        raise MigrationError("allow must be a dict of rule -> reason", file=path, hint=hint)
    overrides = []
    for rule, reason in allow.items():
        if not isinstance(rule, str) or not _RULE.match(rule):
            raise MigrationError(f"allow: {rule!r} is not a rule id like SW021", file=path, hint=hint)
        if not isinstance(reason, str) or not reason.strip():
            raise MigrationError(f"allow: {rule} has no reason", file=path, hint=hint)
        overrides.append(Override(rule, reason.strip(), 0))
    return tuple(overrides)


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


def as_migration(revision: Revision, sql: str, *, position: int) -> Migration:
    """A revision's offline SQL as a Migration the linter reads (its file: the revision, offline SQL)."""
    return Migration(
        version=position,
        name=revision.name,
        phase=revision.phase,
        path=f"{revision.path} (offline SQL of revision {revision.revision})",
        sql=sql,
        checksum=checksum(sql),
        overrides=revision.overrides,
    )


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
