"""A Django project in a release's files, driven through Django's own commands (``migrations: {tool: django}``).

Every command runs through the release's manage.py with the release's interpreter, in a process of its own
(:mod:`.django_worker`): ``showmigrations --plan -v 2`` says the release's migrations in the order
Django applies them, with their dependencies and which are applied; ``migrate APP NAME --plan`` checks
that applying one migration runs only it, and ``migrate APP NAME`` applies it; ``sqlmigrate APP NAME``
gives the SQL the linter reads. The ids are Django's labels, ``app.name``.

A migration's phase is the class attribute ``phase = "expand" | "migrate" | "contract"`` of its
``Migration`` class (default expand); ``allow = {"SW021": "why"}`` waives lint rules for its SQL.
A project of several apps has a graph: its head is the set of the applied leaves of each app, and the
release knows the database when it has every migration applied to the apps it has.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from slipway.errors import MigrationError
from slipway.migrations.alembic_tool import dialect_of_url
from slipway.migrations.django_worker import parse_migrate_plan as parse_migrate_plan  # the worker reads --plan
from slipway.migrations.framework import Revision, ToolState, ToolWords, WorkerCall, overrides_of, phase_of
from slipway.migrations.statements import split_statements

WORKER = Path(__file__).with_name("django_worker.py")
DJANGO = ToolWords(
    "Django", "migration", "the Django migrations", "Django would migrate on top of a schema its code does not know",
    source="sqlmigrate",
)
_PLANNED = re.compile(r"^\[(?P<mark>[X ])\]\s+(?P<app>[^.\s]+)\.(?P<name>\S+)(?: \.\.\. \((?P<deps>[^)]*)\))?\s*$")


@dataclass(frozen=True)
class PlanEntry:
    """One line of ``showmigrations --plan --verbosity 2``."""

    app: str
    name: str
    applied: bool
    depends_on: tuple[str, ...]

    @property
    def id(self) -> str:
        """Django's label of the migration, ``app.name``."""
        return f"{self.app}.{self.name}"


def parse_showmigrations_plan(text: str) -> tuple[PlanEntry, ...]:
    """The entries of ``showmigrations --plan --verbosity 2``, in plan order; MigrationError on a line it
    cannot read (a Django that prints another format)."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.strip() == "(no migrations)":
            continue
        match = _PLANNED.match(line)
        if match is None:
            raise MigrationError(
                f"cannot read this line of 'manage.py showmigrations --plan': {line.strip()!r}",
                hint="Slipway reads the plan format of Django 3.2 to 5.2; is the release's Django another one?",
            )
        deps = tuple(d.strip() for d in (match["deps"] or "").split(",") if d.strip())
        entries.append(PlanEntry(match["app"], match["name"], match["mark"] == "X", deps))
    return tuple(entries)


@dataclass(frozen=True)
class DjangoProject:
    """The Django project of one release, extracted to ``root``, against the environment's database ``url``
    (the project's settings read it, e.g. from the environment's secret DATABASE_URL)."""

    root: Path
    url: str
    manage: str = "manage.py"
    settings: str | None = None
    python: str | None = None
    environ: Mapping[str, str] | None = None
    lock_timeout: float = 5.0
    statement_timeout: float = 600.0
    timeout: float = 900.0

    words = DJANGO

    def read(self) -> ToolState:
        """The release's migrations in Django's plan order, and what is applied to the apps it has."""
        answer = self._call("scripts")
        plan = parse_showmigrations_plan(answer["plan"])
        found: dict[str, Any] = answer["migrations"]
        revisions = tuple(_revision(entry, found.get(entry.id, {})) for entry in plan)
        apps = {e.app for e in plan}
        applied = {e.id for e in plan if e.applied}
        applied |= {i for i in answer["applied"] if i.split(".", 1)[0] in apps}
        head = next((e.id for e in reversed(plan) if e.applied), None)
        return ToolState(revisions, head, frozenset(applied))

    def apply(self, revision: Revision) -> str:
        """``migrate APP NAME``, after ``migrate APP NAME --plan`` said it runs this migration only."""
        planned = self._call("migrate", target=revision.revision)["planned"]
        if planned != [revision.revision]:
            raise MigrationError(
                f"'{self.command(revision)} --plan' would run {', '.join(planned) or 'nothing'}, not only "
                f"{revision.revision}: nothing was applied",
                file=revision.path,
                hint="the database changed under Slipway? compare 'slipway migrations status ENV' with "
                "'manage.py showmigrations'",
            )
        return self.command(revision)

    def command(self, revision: Revision) -> str:
        """What applying ``revision`` runs, for the step's record."""
        return f"manage.py migrate {revision.revision.replace('.', ' ', 1)}"

    def pending_sql(self, head: str | None, pending: Sequence[Revision]) -> dict[str, str]:
        """``sqlmigrate`` of each pending migration, its BEGIN/COMMIT left out."""
        texts = self._call("sql", ids=[r.revision for r in pending])["sql"]
        dialect = dialect_of_url(self.url)
        found = {}
        for revision_id, text in texts.items():
            kept = [
                s.text for s in split_statements(text, dialect=dialect) if s.keywords[:1] not in (("BEGIN",), ("COMMIT",))
            ]
            found[revision_id] = "".join(f"{s};\n\n" for s in kept)
        return found

    def _call(self, operation: str, **fields: Any) -> dict[str, Any]:
        env = dict(self.environ if self.environ is not None else os.environ)
        if self.settings:
            env["DJANGO_SETTINGS_MODULE"] = self.settings
        manage = PurePosixPath(self.manage)
        call = WorkerCall(
            WORKER, self.root / manage.parent, "Django", python=self.python, environ=env,
            lock_timeout=self.lock_timeout, statement_timeout=self.statement_timeout, timeout=self.timeout,
        )
        return call(operation, {"manage": manage.name, "root": str(self.root), **fields})


def _revision(entry: PlanEntry, found: Mapping[str, Any]) -> Revision:
    """A Revision from a plan entry and what the worker read of its Migration class."""
    path = str(found.get("path") or "")
    return Revision(
        entry.id,
        None,
        path,
        str(found.get("doc") or ""),
        phase_of(found.get("phase"), path=path or entry.id),
        overrides_of(found.get("allow"), path or entry.id),
        depends_on=entry.depends_on,
    )
