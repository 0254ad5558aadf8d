"""What the framework migration tools share (Alembic, Django, any tool driven by commands).

Each tool reads a release's migrations as :class:`Revision` rows (an id, the ids it depends on, its file,
its phase, the lint rules it waives) and runs in a process of its own in the release's extracted files:
:func:`call_worker` starts a worker script with the release's interpreter and reads its JSON answer. The
services (services/framework_migrations.py) compare the revisions with the database and enforce the
parallel-change order the same way for every tool.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from slipway.errors import MigrationError
from slipway.migrations.files import Migration, Override, Phase, checksum

_RULE = re.compile(r"^[A-Z]{2}[0-9]{3}$")


@dataclass(frozen=True)
class ToolWords:
    """How messages name a tool's migrations."""

    #: "Alembic", "Django" ("" for a tool Slipway knows only by its commands).
    tool: str
    #: What one migration is called: "revision", "migration".
    noun: str
    #: Where a release's migrations are: "the Alembic scripts".
    scripts: str
    #: Why a deploy of a release that does not know the database's head is refused.
    why: str
    #: Where the SQL the linter reads comes from.
    source: str = "offline SQL"

    def named(self, migration: str) -> str:
        """``Alembic revision 0003``."""
        return " ".join(w for w in (self.tool, self.noun, migration) if w)


ALEMBIC = ToolWords("Alembic", "revision", "the Alembic scripts", "Alembic cannot upgrade from a revision it does not know")


@dataclass(frozen=True)
class Revision:
    """One migration of a release (an Alembic revision, a Django migration ``app.name``, a listed id)."""

    revision: str
    down_revision: str | None
    #: The migration's file, relative to the release's root (as in the artifact's manifest); "" when none.
    path: str
    doc: str
    phase: Phase
    overrides: tuple[Override, ...] = ()
    #: Every migration it depends on (a graph: Django); None: the one ``down_revision`` (one line of history).
    depends_on: tuple[str, ...] | None = None

    @property
    def parents(self) -> tuple[str, ...]:
        """The ids this migration runs after."""
        if self.depends_on is not None:
            return self.depends_on
        return (self.down_revision,) if self.down_revision else ()

    @property
    def name(self) -> str:
        """The first line of the migration's message (its file name, or its id, without one)."""
        if self.doc.strip():
            return self.doc.splitlines()[0].strip()
        return Path(self.path).stem or self.revision

    @property
    def filename(self) -> str:
        """The migration file's base name ("" for a tool without files)."""
        return Path(self.path).name


@dataclass(frozen=True)
class ToolState:
    """A release's migrations against the database: what the tool reads before anything runs."""

    #: The release's migrations, in the order the tool applies them.
    revisions: tuple[Revision, ...]
    #: One line of history: the database's head (None before the first migration).
    head: str | None
    #: A graph (Django): every migration applied to the database, of the apps the release has; None: from head.
    applied_ids: frozenset[str] | None = None


class ToolProject(Protocol):
    """A release's migrations, driven through their tool (Alembic, Django, commands): blocking calls."""

    words: ToolWords

    def read(self) -> ToolState:
        """The release's migrations and the database's head."""

    def apply(self, revision: Revision) -> str:
        """Apply the pending ``revision`` (only it: what it depends on is applied); the command that did it."""

    def command(self, revision: Revision) -> str:
        """What applying ``revision`` runs, for the step's record."""

    def pending_sql(self, head: str | None, pending: Sequence[Revision]) -> dict[str, str]:
        """The SQL the pending migrations would execute, by id (MigrationError: the tool cannot say)."""


def phase_of(value: Any, *, path: str) -> Phase:
    """A migration's ``phase`` marker (None: expand); MigrationError naming the file when it is no phase."""
    text = value or "expand"
    try:
        return Phase(str(text).lower())
    except ValueError:
        raise MigrationError(
            f"phase = {text!r} is not a phase", file=path, hint='write phase = "expand", "migrate" or "contract"'
        ) from None


def overrides_of(allow: Any, path: str) -> tuple[Override, ...]:
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


def as_migration(revision: Revision, sql: str, *, position: int, source: str = "offline SQL") -> Migration:
    """The SQL a migration would execute as a Migration the linter reads (its file: the migration's)."""
    where = revision.path or revision.revision
    return Migration(
        version=position,
        name=revision.name,
        phase=revision.phase,
        path=f"{where} ({source} of {_noun(revision)} {revision.revision})",
        sql=sql,
        checksum=checksum(sql),
        overrides=revision.overrides,
    )


def _noun(revision: Revision) -> str:
    return "migration" if revision.depends_on is not None or not revision.path else "revision"


def pg_options(lock_timeout: float, statement_timeout: float) -> str:
    """PGOPTIONS that give a libpq session Slipway's lock and statement timeouts (seconds)."""
    return (
        f"-c lock_timeout={max(1, int(lock_timeout * 1000))} "
        f"-c statement_timeout={max(1, int(statement_timeout * 1000))}"
    )


@dataclass(frozen=True)
class WorkerCall:
    """How a tool's worker script runs: where, with which interpreter, environment and time limit."""

    worker: Path
    cwd: Path
    tool: str
    python: str | None = None
    environ: Mapping[str, str] | None = None
    lock_timeout: float = 5.0
    statement_timeout: float = 600.0
    timeout: float = 900.0

    def __call__(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run the worker; its answer, or MigrationError with its evidence."""
        with tempfile.TemporaryDirectory(prefix="slipway-worker-") as tmp:
            result = Path(tmp) / "result.json"
            env = dict(self.environ if self.environ is not None else os.environ)
            env["PGOPTIONS"] = pg_options(self.lock_timeout, self.statement_timeout)
            argv = [self.python or sys.executable, str(self.worker)]
            payload = json.dumps({"operation": operation, "result": str(result), **request})
            try:
                proc = subprocess.run(
                    argv, input=payload, cwd=self.cwd, env=env, capture_output=True, text=True,
                    timeout=self.timeout, check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise MigrationError(
                    f"{self.tool.lower()} {operation} ran longer than {self.timeout:g}s and was stopped",
                    hint="a lock held by a long transaction? see pg_stat_activity",
                ) from exc
            except OSError as exc:
                raise MigrationError(
                    f"cannot start {argv[0]} to run {self.tool}: {exc.strerror}",
                    hint=f"migrations.python names an interpreter with {self.tool.lower()} installed",
                ) from exc
            answer: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {}
        if proc.returncode != 0 or "error" in answer:
            error = answer.get("error") or f"the worker exited {proc.returncode}"
            tail = "\n".join((proc.stderr or "").strip().splitlines()[-8:])
            raise MigrationError(
                f"{self.tool.lower()} {operation} failed: {error}",
                hint=(f"its output ended with:\n{tail}" if tail else "") or answer.get("traceback", ""),
            )
        return answer
