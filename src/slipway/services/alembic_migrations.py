"""Alembic migrations in a deployment (``migrations: {tool: alembic}``): the parallel-change order, enforced.

The same points as Slipway's own ``.sql`` files (services/migrations.py), with the release's Alembic project
extracted from its verified artifact into a temporary directory and driven through Alembic's API
(migrations/alembic_tool.py):

- Before any host is touched: the release's revisions are read and compared with the database's head. A
  release that does not know the head is refused (deploy and promote: Alembic cannot upgrade from a
  revision it does not know), naming the revision and the release that applied it; a rollback is refused
  past an applied contract revision, and allowed behind expand revisions (what expand is for), saying so.
  The SQL each pending revision would execute (offline mode) is linted.
- Before the switch: the pending expand and migrate revisions, one upgrade each, each a recorded step.
- After verify: contract revisions, held until every target runs a release whose artifact has the file.

Alembic applies revisions in order, so an expand revision behind a pending contract one is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from slipway.errors import ArtifactError, MigrationError
from slipway.migrations.alembic_history import RevisionRecord, read_records, record_applied
from slipway.migrations.alembic_tool import AlembicProject, Revision, as_migration, database_heads, dialect_of_url
from slipway.migrations.files import Phase
from slipway.model.config import MigrationsSpec
from slipway.services.app import App


class Steps(Protocol):
    """Records a migration step of the stage (services/migrations.py: MigrationSteps)."""

    async def run(self, label: str, command: str, work: Callable[[], str]) -> None:
        """Run ``work`` in a thread as one recorded step; its summary line is logged."""


@dataclass(frozen=True)
class DatabaseView:
    """A release's revisions (base first) against the database's head and Slipway's records."""

    revisions: tuple[Revision, ...]
    head: str | None
    records: dict[str, RevisionRecord] = field(default_factory=dict)

    @property
    def knows_head(self) -> bool:
        """True when the release's scripts contain the database's head (or it has none yet)."""
        return self.head is None or any(r.revision == self.head for r in self.revisions)

    def pending(self) -> tuple[Revision, ...]:
        """The release's revisions after the database's head, in order (none when it does not know it)."""
        if self.head is None:
            return self.revisions
        ids = [r.revision for r in self.revisions]
        return self.revisions[ids.index(self.head) + 1 :] if self.head in ids else ()

    def applied(self) -> tuple[Revision, ...]:
        """The release's revisions up to and including the database's head (all of them when the database
        is past the release: one line of history)."""
        return self.revisions[: len(self.revisions) - len(self.pending())]

    def unknown(self) -> list[RevisionRecord]:
        """Revisions applied by Slipway that the release's scripts do not contain (none when it knows the head)."""
        known = {r.revision for r in self.revisions}
        return [] if self.knows_head else [r for r in self.records.values() if r.revision not in known]


def _applied_by(record: RevisionRecord | None) -> str:
    if record is None:
        return " outside Slipway (slipway_alembic_history has no record of it)"
    by = f" with release {record.release}" if record.release else ""
    return f" on {record.applied_at:%Y-%m-%d %H:%M} UTC by {record.applied_by}{by}"


def refuse_unknown_head(view: DatabaseView, *, environment: str, release: str, rollback: bool) -> str | None:
    """Refuse a release that cannot run on the database; for a rollback behind expand revisions only,
    return the warning to show instead (None: nothing to say)."""
    if view.knows_head:
        return None
    assert view.head is not None
    contracts = [r for r in view.unknown() if r.phase is Phase.CONTRACT]
    if rollback and contracts:
        first = contracts[0]
        raise MigrationError(
            f"release {release} cannot run on the database of {environment}: contract revision {first.revision} "
            f"({first.name}) was applied there{_applied_by(first)}, and the Alembic scripts of {release} do not "
            "contain it: that release still needs what it removed",
            hint="roll back or deploy only to a release that contains that revision (or a later one); to undo a "
            "contract, ship a new expand revision that restores what it dropped",
        )
    record = view.records.get(view.head)
    what = f"revision {view.head}" + (f" ({record.name})" if record else "")
    if rollback:
        return (
            f"the database of {environment} stays at Alembic {what}, applied{_applied_by(record)}; release "
            f"{release} does not know it (expand only: it ignores what was added). Deploying {release} again "
            "would be refused: roll forward to a release that contains it"
        )
    needed = f"release {record.release}" if record and record.release else "a release that contains it"
    raise MigrationError(
        f"release {release} cannot be deployed to {environment}: the database is at Alembic {what}, "
        f"applied{_applied_by(record)}, and the Alembic scripts of {release} do not contain it "
        "(Alembic cannot upgrade from a revision it does not know)",
        hint=f"deploy {needed} or a later one; to get back to {release}'s code, 'slipway rollback {environment}' "
        "switches hosts without migrating",
    )


def refuse_expand_behind_contract(pending: Sequence[Revision], *, environment: str) -> None:
    """Refuse an expand or migrate revision that comes after a pending contract one: Alembic applies in
    order, so it could only run after the switch, when the release that needs it already serves."""
    contract = next((r for r in pending if r.phase is Phase.CONTRACT), None)
    if contract is None:
        return
    behind = [r for r in pending[pending.index(contract) + 1 :] if r.phase is not Phase.CONTRACT]
    if behind:
        raise MigrationError(
            f"{behind[0].phase.value} revision {behind[0].revision} comes after contract revision "
            f"{contract.revision} ({contract.name}), which is still pending: Alembic applies revisions in order, "
            f"so {behind[0].revision} could only run after the switch",
            file=behind[0].path,
            hint=f"let the contract run first ('slipway migrations status {environment}' says why it is held), "
            "or move the contract revision after the expand one in a later release",
        )


@contextlib.asynccontextmanager
async def release_project(
    app: App, spec: MigrationsSpec, url: str, digest: str, *, environ: Mapping[str, str] | None = None
) -> AsyncIterator[AlembicProject]:
    """The Alembic project of the release ``digest``, extracted from its verified artifact for the block;
    Alembic runs with ``environ`` (default: Slipway's)."""
    from slipway.artifacts.store import unpack_into

    with tempfile.TemporaryDirectory(prefix="slipway-alembic-release-") as tmp:
        await asyncio.to_thread(unpack_into, app.artifacts, digest, Path(tmp))
        project = project_in(Path(tmp), spec, url, app.environ if environ is None else environ)
        if len(_LISTED) > 256:  # a server runs for months: keep the releases of lately
            _LISTED.clear()
        yield replace(project, known=_LISTED, key=(digest, project.config, project.script_location or ""))


#: The revisions of the releases this process listed (an artifact never changes): AlembicProject.known.
_LISTED: dict[tuple[str, ...], tuple[Revision, ...]] = {}


def read_view(project: AlembicProject | None, spec: MigrationsSpec, url: str, *, environment: str) -> DatabaseView:
    """The release's revisions (none without a project) against the database's head and records (blocking)."""
    heads = database_heads(url, connect_timeout=spec.connect_timeout)
    if len(heads) > 1:
        raise MigrationError(
            f"the database of {environment} has {len(heads)} Alembic heads ({', '.join(heads)}): "
            "Slipway runs one line of history",
            hint="merge the branches with 'alembic merge heads' and upgrade by hand once",
        )
    records = read_records(url, connect_timeout=spec.connect_timeout)
    return DatabaseView(project.revisions() if project else (), heads[0] if heads else None, records)


@dataclass
class AlembicDeployment:
    """The Alembic revisions of one deployment: checked up front, expand before the switch, contract after."""

    app: App
    environment: str
    release: str
    digest: str
    spec: MigrationsSpec
    url: str
    steps: Steps
    #: Why the contract revision in a file must wait (None: it may run): services/migrations.held_reason.
    held: Callable[[str], str | None]
    #: What Alembic and env.py run with: Slipway's environment plus the environment's secrets, as hooks get them.
    environ: Mapping[str, str] | None = None

    def project(self) -> contextlib.AbstractAsyncContextManager[AlembicProject]:
        """The release's Alembic project, extracted from its verified artifact for the block."""
        return release_project(self.app, self.spec, self.url, self.digest, environ=self.environ)

    def view(self, project: AlembicProject) -> DatabaseView:
        """The release's revisions against the database (blocking)."""
        return read_view(project, self.spec, self.url, environment=self.environment)

    async def check(self, *, rollback: bool) -> None:
        """Everything that can refuse this release, before any host is touched."""
        async with self.project() as project:
            view = await asyncio.to_thread(self.view, project)
            warning = refuse_unknown_head(view, environment=self.environment, release=self.release, rollback=rollback)
            if warning:
                self.app.observer.message(warning)
            if rollback:
                return
            refuse_expand_behind_contract(view.pending(), environment=self.environment)
            await asyncio.to_thread(self.lint, project, view)

    def lint(self, project: AlembicProject, view: DatabaseView) -> None:
        """Lint the SQL each pending revision would execute (offline mode); LintError on the first finding."""
        from slipway.migrations.lint import lint_migration

        pending = view.pending()
        if not pending:
            return
        try:
            sql = project.offline_sql(view.head, pending[-1].revision)
        except MigrationError as exc:  # a revision that needs a live connection has no offline SQL
            self.app.observer.message(f"not linted (alembic upgrade --sql failed): {exc}")
            return
        dialect = dialect_of_url(self.url)
        for position, revision in enumerate(view.revisions, start=1):
            if revision in pending and revision.revision in sql:
                lint_migration(as_migration(revision, sql[revision.revision], position=position), dialect=dialect)\
                    .raise_for_findings()

    async def expand(self) -> None:
        """Run the pending expand and migrate revisions, in order, once for the environment."""
        async with self.project() as project:
            view = await asyncio.to_thread(self.view, project)
            todo = []
            for revision in view.pending():
                if revision.phase is Phase.CONTRACT:
                    break
                todo.append(revision)
            if not todo:
                self.app.observer.message(f"database of {self.environment}: no expand or migrate revision pending")
            for revision in todo:
                await self.apply(project, revision)

    async def contract(self) -> None:
        """Run the contract revisions that are no longer held, unless contract is manual."""
        if self.spec.contract == "manual":
            async with self.project() as project:
                view = await asyncio.to_thread(self.view, project)
            held = [r.revision for r in view.pending() if r.phase is Phase.CONTRACT]
            if held:
                self.app.observer.message(
                    f"contract revisions held (contract: manual): {', '.join(held)}; "
                    f"run 'slipway migrations contract {self.environment}'"
                )
            return
        await self.run_contracts()

    async def run_contracts(self) -> list[Revision]:
        """Apply the pending revisions from the first contract on, stopping at the first one still held."""
        done: list[Revision] = []
        async with self.project() as project:
            view = await asyncio.to_thread(self.view, project)
            for revision in view.pending():
                why = self.held(revision.path) if revision.phase is Phase.CONTRACT else None
                if why:
                    self.app.observer.message(f"contract revision {revision.revision} is held: {why}")
                    break
                await self.apply(project, revision)
                done.append(revision)
        return done

    async def apply(self, project: AlembicProject, revision: Revision) -> None:
        """Upgrade to ``revision`` (one step of the stage), record it and audit it."""
        label = f"migrate: {revision.phase.value} {revision.revision} {revision.filename}"

        def work() -> str:
            started = time.monotonic()
            project.upgrade(revision.revision)
            duration = time.monotonic() - started
            record_applied(
                self.url, revision, connect_timeout=self.spec.connect_timeout, applied_at=datetime.now(UTC),
                applied_by=self.app.settings.actor, duration=duration, release=self.release,
                overrides=revision.overrides,
            )
            return f"upgraded to {revision.revision} ({revision.name}) in {duration:.2f}s"

        await self.steps.run(label, f"alembic upgrade {revision.revision}", work)
        detail = {"phase": revision.phase.value, "release": self.release, "revision": revision.revision}
        self.app.store.audit(self.app.settings.actor, "migration.apply", f"{self.environment} {revision.filename}", detail)


def project_in(root: Path, spec: MigrationsSpec, url: str, environ: Mapping[str, str]) -> AlembicProject:
    """The Alembic project of the release extracted to ``root``, with the project's settings."""
    return AlembicProject(
        root,
        url,
        config=spec.alembic_config,
        script_location=spec.script_location,
        python=spec.python,
        environ=environ,
        lock_timeout=spec.lock_timeout,
        statement_timeout=spec.statement_timeout,
        timeout=spec.statement_timeout + spec.connect_timeout + 120,
    )


async def newest_view(
    app: App, spec: MigrationsSpec, environment: str, url: str, artifacts: Sequence[tuple[str, str]]
) -> DatabaseView:
    """The database against the newest release installed or rolling out whose scripts know its head (after
    a rollback behind an expand, the release rolled back from), else the newest one still there."""
    first: DatabaseView | None = None
    for digest, _release in artifacts:
        try:
            async with release_project(app, spec, url, digest) as project:
                view = await asyncio.to_thread(read_view, project, spec, url, environment=environment)
        except ArtifactError:  # collected since: an older release still tells
            continue
        if view.knows_head:
            return view
        first = first or view
    if first is not None:
        return first
    return await asyncio.to_thread(read_view, None, spec, url, environment=environment)
