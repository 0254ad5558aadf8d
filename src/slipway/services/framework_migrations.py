"""Framework migrations in a deployment (``migrations: {tool: alembic | django | command}``): the
parallel-change order, enforced the same way for every tool.

The same points as Slipway's own ``.sql`` files (services/migrations.py), with the release's files
extracted from its verified artifact into a temporary directory and driven through the tool
(migrations/alembic_tool.py, django_tool.py, command_tool.py: a :class:`ToolProject` each):

- Before any host is touched: the release's migrations are read and compared with the database's head. A
  release that does not know the head is refused (deploy and promote: the tool cannot upgrade from a
  migration it does not know), naming the migration and the release that applied it; a rollback is refused
  past an applied contract migration, and allowed behind expand ones (what expand is for), saying so.
  The SQL each pending migration would execute (where the tool can print it) is linted.
- Before the switch: the pending expand and migrate migrations, one at a time, each a recorded step.
- After verify: contract migrations, held until every target runs a release that has them.

A tool applies a migration after the ones it depends on, so an expand migration that depends on a pending
contract one is refused.
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

from slipway.config import LoadedConfig
from slipway.errors import ArtifactError, MigrationError
from slipway.migrations.alembic_history import TABLES, RevisionRecord, read_records, record_applied
from slipway.migrations.alembic_tool import AlembicProject, dialect_of_url
from slipway.migrations.files import Phase
from slipway.migrations.framework import ALEMBIC, Revision, ToolProject, ToolWords, as_migration
from slipway.model.config import MigrationsSpec
from slipway.services.app import App
from slipway.services.migration_setup import database_url, held_reason, require_spec
from slipway.services.secrets import resolve_secrets


class Steps(Protocol):
    """Records a migration step of the stage (services/migrations.py: MigrationSteps)."""

    async def run(self, label: str, command: str, work: Callable[[], str]) -> None:
        """Run ``work`` in a thread as one recorded step; its summary line is logged."""


@dataclass(frozen=True)
class DatabaseView:
    """A release's migrations (in order) against the database's head and Slipway's records."""

    revisions: tuple[Revision, ...]
    head: str | None
    records: dict[str, RevisionRecord] = field(default_factory=dict)
    #: A graph (Django): the ids applied to the database; None: one line of history, known from ``head``.
    applied_ids: frozenset[str] | None = None
    words: ToolWords = ALEMBIC

    def unknown_heads(self) -> tuple[str, ...]:
        """The database's heads the release does not have (a graph: every applied migration it lacks)."""
        known = {r.revision for r in self.revisions}
        if self.applied_ids is None:
            return (self.head,) if self.head is not None and self.head not in known else ()
        return tuple(sorted(self.applied_ids - known))

    @property
    def knows_head(self) -> bool:
        """True when the release's migrations contain the database's head (or it has none yet)."""
        return not self.unknown_heads()

    def pending(self) -> tuple[Revision, ...]:
        """The release's migrations not yet applied, in order (none when it does not know the head)."""
        if not self.knows_head:
            return ()
        if self.applied_ids is not None:
            return tuple(r for r in self.revisions if r.revision not in self.applied_ids)
        if self.head is None:
            return self.revisions
        ids = [r.revision for r in self.revisions]
        return self.revisions[ids.index(self.head) + 1 :]

    def applied(self) -> tuple[Revision, ...]:
        """The release's migrations that are applied (all of them when the database is past the release on
        one line of history)."""
        if self.applied_ids is not None:
            return tuple(r for r in self.revisions if r.revision in self.applied_ids)
        return self.revisions[: len(self.revisions) - len(self.pending())]

    def unknown(self) -> list[RevisionRecord]:
        """Migrations applied by Slipway that the release does not contain (none when it knows the head)."""
        known = {r.revision for r in self.revisions}
        return [] if self.knows_head else [r for r in self.records.values() if r.revision not in known]


def _applied_by(record: RevisionRecord | None) -> str:
    if record is None:
        return " outside Slipway (Slipway has no record of it)"
    by = f" with release {record.release}" if record.release else ""
    return f" on {record.applied_at:%Y-%m-%d %H:%M} UTC by {record.applied_by}{by}"


def refuse_unknown_head(view: DatabaseView, *, environment: str, release: str, rollback: bool) -> str | None:
    """Refuse a release that cannot run on the database; for a rollback behind expand migrations only,
    return the warning to show instead (None: nothing to say)."""
    unknown = view.unknown_heads()
    if not unknown:
        return None
    words, noun = view.words, view.words.noun
    contracts = [r for r in view.unknown() if r.phase is Phase.CONTRACT]
    if rollback and contracts:
        first = contracts[0]
        raise MigrationError(
            f"release {release} cannot run on the database of {environment}: contract {noun} {first.revision} "
            f"({first.name}) was applied there{_applied_by(first)}, and {words.scripts} of {release} do not "
            "contain it: that release still needs what it removed",
            hint=f"roll back or deploy only to a release that contains that {noun} (or a later one); to undo a "
            f"contract, ship a new expand {noun} that restores what it dropped",
        )
    head = unknown[-1]
    record = view.records.get(head)
    what = words.named(head) + (f" ({record.name})" if record else "")
    if rollback:
        return (
            f"the database of {environment} stays at {what}, applied{_applied_by(record)}; "
            f"release {release} does not know it (expand only: it ignores what was added). Deploying {release} "
            "again would be refused: roll forward to a release that contains it"
        )
    needed = f"release {record.release}" if record and record.release else "a release that contains it"
    raise MigrationError(
        f"release {release} cannot be deployed to {environment}: the database is at {what}, "
        f"applied{_applied_by(record)}, and {words.scripts} of {release} do not contain it "
        f"({words.why})",
        hint=f"deploy {needed} or a later one; to get back to {release}'s code, 'slipway rollback {environment}' "
        "switches hosts without migrating",
    )


def _ancestors(revision: Revision, by_id: Mapping[str, Revision]) -> set[str]:
    """Every id ``revision`` depends on, directly or through others."""
    seen: set[str] = set()
    todo = list(revision.parents)
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo += by_id[parent].parents if parent in by_id else ()
    return seen


def behind_contract(pending: Sequence[Revision]) -> dict[str, Revision]:
    """The pending expand and migrate migrations that depend on a pending contract one: {id: that contract}."""
    by_id = {r.revision: r for r in pending}
    contracts = [r.revision for r in pending if r.phase is Phase.CONTRACT]
    found = {}
    for i, r in enumerate(pending):
        if r.phase is not Phase.CONTRACT:
            # One line of history: a migration runs after every one before it.
            before = _ancestors(r, by_id) if r.depends_on is not None else {x.revision for x in pending[:i]}
            blocking = [c for c in contracts if c in before]
            if blocking:
                found[r.revision] = by_id[blocking[0]]
    return found


def refuse_expand_behind_contract(pending: Sequence[Revision], *, environment: str) -> None:
    """Refuse an expand or migrate migration that depends on a pending contract one: it could only run
    after the switch, when the release that needs it already serves."""
    blocked = behind_contract(pending)
    if not blocked:
        return
    first = next(r for r in pending if r.revision in blocked)
    contract = blocked[first.revision]
    noun = "migration" if first.depends_on is not None or not first.path else "revision"
    raise MigrationError(
        f"{first.phase.value} {noun} {first.revision} comes after contract {noun} {contract.revision} "
        f"({contract.name}), which is still pending: it is applied after what it depends on, so {first.revision} "
        "could only run after the switch",
        file=first.path,
        hint=f"let the contract run first ('slipway migrations status {environment}' says why it is held), "
        f"or move the contract {noun} after the expand one in a later release",
    )


def read_view(project: ToolProject | None, spec: MigrationsSpec, url: str) -> DatabaseView:
    """The release's migrations (none without a project) against the database's head and records (blocking)."""
    records = read_records(url, connect_timeout=spec.connect_timeout, table=TABLES[spec.tool])
    if project is None:
        from slipway.migrations.alembic_tool import database_heads

        heads = database_heads(url, connect_timeout=spec.connect_timeout) if spec.tool == "alembic" else ()
        return DatabaseView((), heads[0] if heads else None, records)
    state = project.read()
    return DatabaseView(state.revisions, state.head, records, state.applied_ids, project.words)


def project_in(root: Path, spec: MigrationsSpec, url: str, environ: Mapping[str, str]) -> ToolProject:
    """The release extracted to ``root``, driven through the project's tool."""
    locks, statements = spec.lock_timeout, spec.statement_timeout
    timeout = spec.statement_timeout + spec.connect_timeout + 120
    if spec.tool == "django":
        from slipway.migrations.django_tool import DjangoProject

        return DjangoProject(
            root, url, manage=spec.django_manage, settings=spec.settings, python=spec.python, environ=environ,
            lock_timeout=locks, statement_timeout=statements, timeout=timeout,
        )
    if spec.tool == "command":
        from slipway.migrations.command_tool import CommandProject

        assert spec.commands is not None
        return CommandProject(
            root, url, spec.commands, environ=environ, lock_timeout=locks, statement_timeout=statements, timeout=timeout
        )
    return AlembicProject(
        root, url, config=spec.alembic_config, script_location=spec.script_location, python=spec.python,
        environ=environ, connect_timeout=spec.connect_timeout, lock_timeout=locks, statement_timeout=statements,
        timeout=timeout,
    )


@contextlib.asynccontextmanager
async def release_project(
    app: App, spec: MigrationsSpec, url: str, digest: str, *, environ: Mapping[str, str] | None = None
) -> AsyncIterator[ToolProject]:
    """The release ``digest``'s migrations, extracted from its verified artifact for the block; the tool
    runs with ``environ`` (default: Slipway's)."""
    from slipway.artifacts.store import unpack_into

    with tempfile.TemporaryDirectory(prefix=f"slipway-{spec.tool}-release-") as tmp:
        await asyncio.to_thread(unpack_into, app.artifacts, digest, Path(tmp))
        project = project_in(Path(tmp), spec, url, app.environ if environ is None else environ)
        if isinstance(project, AlembicProject):  # its revisions are listed once per process (see there)
            if len(_LISTED) > 256:  # a server runs for months: keep the releases of lately
                _LISTED.clear()
            project = replace(project, known=_LISTED, key=(digest, project.config, project.script_location or ""))
        yield project


#: The revisions of the Alembic releases this process listed (an artifact never changes): AlembicProject.known.
_LISTED: dict[tuple[str, ...], tuple[Revision, ...]] = {}


@dataclass
class FrameworkDeployment:
    """The framework migrations of one deployment: checked up front, expand before the switch, contract after."""

    app: App
    environment: str
    release: str
    digest: str
    spec: MigrationsSpec
    url: str
    steps: Steps
    #: Why the contract migration must wait (None: it may run): services/migrations.held_reason (blocking).
    held: Callable[[Revision], str | None]
    #: What the tool runs with: Slipway's environment plus the environment's secrets, as hooks get them.
    environ: Mapping[str, str] | None = None

    def project(self) -> contextlib.AbstractAsyncContextManager[ToolProject]:
        """The release's migrations, extracted from its verified artifact for the block."""
        return release_project(self.app, self.spec, self.url, self.digest, environ=self.environ)

    def view(self, project: ToolProject) -> DatabaseView:
        """The release's migrations against the database (blocking)."""
        return read_view(project, self.spec, self.url)

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

    def lint(self, project: ToolProject, view: DatabaseView) -> None:
        """Lint the SQL each pending migration would execute; LintError on the first finding."""
        from slipway.migrations.lint import lint_migration

        pending = view.pending()
        if not pending:
            return
        try:
            sql = project.pending_sql(view.head, pending)
        except MigrationError as exc:  # e.g. a revision that needs a live connection has no offline SQL
            self.app.observer.message(f"not linted ({exc})")
            return
        dialect = dialect_of_url(self.url)
        unlinted = [r.revision for r in pending if r.revision not in sql]
        if unlinted:
            self.app.observer.message(f"not linted (no {view.words.source} for them): {', '.join(unlinted)}")
        for position, revision in enumerate(view.revisions, start=1):
            if revision in pending and revision.revision in sql:
                migration = as_migration(revision, sql[revision.revision], position=position, source=view.words.source)
                lint_migration(migration, dialect=dialect).raise_for_findings()

    async def expand(self) -> None:
        """Run the pending expand and migrate migrations, in order, once for the environment."""
        async with self.project() as project:
            view = await asyncio.to_thread(self.view, project)
            pending = view.pending()
            blocked = behind_contract(pending)
            todo = [r for r in pending if r.phase is not Phase.CONTRACT and r.revision not in blocked]
            if not todo:
                self.app.observer.message(
                    f"database of {self.environment}: no expand or migrate {view.words.noun} pending"
                )
            for revision in todo:
                await self.apply(project, revision)

    async def contract(self) -> None:
        """Run the contract migrations that are no longer held, unless contract is manual."""
        if self.spec.contract == "manual":
            async with self.project() as project:
                view = await asyncio.to_thread(self.view, project)
            held = [r.revision for r in view.pending() if r.phase is Phase.CONTRACT]
            if held:
                self.app.observer.message(
                    f"contract {view.words.noun}s held (contract: manual): {', '.join(held)}; "
                    f"run 'slipway migrations contract {self.environment}'"
                )
            return
        await self.run_contracts()

    async def run_contracts(self) -> list[Revision]:
        """Apply the pending migrations from the first contract on, stopping at the first one still held."""
        done: list[Revision] = []
        async with self.project() as project:
            view = await asyncio.to_thread(self.view, project)
            for revision in view.pending():
                why = await asyncio.to_thread(self.held, revision) if revision.phase is Phase.CONTRACT else None
                if why:
                    self.app.observer.message(f"contract {view.words.noun} {revision.revision} is held: {why}")
                    break
                await self.apply(project, revision)
                done.append(revision)
        return done

    async def apply(self, project: ToolProject, revision: Revision) -> None:
        """Apply ``revision`` (one step of the stage), record it and audit it."""
        label = f"migrate: {revision.phase.value} {revision.revision} {revision.filename}".rstrip()

        def work() -> str:
            started = time.monotonic()
            project.apply(revision)
            duration = time.monotonic() - started
            record_applied(
                self.url, revision, connect_timeout=self.spec.connect_timeout, applied_at=datetime.now(UTC),
                applied_by=self.app.settings.actor, duration=duration, release=self.release,
                overrides=revision.overrides, table=TABLES[self.spec.tool],
            )
            return f"applied {revision.revision} ({revision.name}) in {duration:.2f}s"

        await self.steps.run(label, project.command(revision), work)
        detail = {"phase": revision.phase.value, "release": self.release, "revision": revision.revision}
        subject = f"{self.environment} {revision.filename or revision.revision}"
        self.app.store.audit(self.app.settings.actor, "migration.apply", subject, detail)


def tool_environ(app: App, loaded: LoadedConfig, environment: str, release: str | None) -> dict[str, str]:
    """What a framework tool runs with: what hooks see (the environment's secrets, e.g. DATABASE_URL, and
    where it runs), masked in every line."""
    env = loaded.project.environments[environment]
    secrets = resolve_secrets(env, environment=environment, root=loaded.root, environ=app.environ)
    app.masker.add(secrets.values())
    environ = {**app.environ, **secrets, "SLIPWAY_ENVIRONMENT": environment}
    return {**environ, "SLIPWAY_RELEASE_ID": release} if release else environ


def tool_held(
    app: App, loaded: LoadedConfig, environment: str, url: str, environ: Mapping[str, str]
) -> Callable[[Revision], str | None]:
    """Why a framework tool's contract migration must wait (blocking): as for a file (held_reason); a tool
    without files (``tool: command``) asks each running release's list command whether it has the id."""
    spec = require_spec(loaded)
    if spec.tool != "command":
        return lambda revision: held_reason(app, loaded, environment, revision.path)
    known: dict[str, set[str]] = {}

    def ships(revision: Revision, digest: str) -> bool:
        if digest not in known:
            known[digest] = listed_ids(app, spec, url, digest, environ)
        return revision.revision in known[digest]

    return lambda revision: held_reason(app, loaded, environment, "", ships=lambda d: ships(revision, d))


def listed_ids(app: App, spec: MigrationsSpec, url: str, digest: str, environ: Mapping[str, str]) -> set[str]:
    """The migration ids the list command of the release ``digest`` prints (none when it is collected)."""
    from slipway.artifacts.store import unpack_into
    from slipway.migrations.command_tool import CommandProject

    assert spec.commands is not None
    with tempfile.TemporaryDirectory(prefix="slipway-command-release-") as tmp:
        try:
            unpack_into(app.artifacts, digest, Path(tmp))
        except ArtifactError:
            return set()
        return {r.revision for r in CommandProject(Path(tmp), url, spec.commands, environ=environ).revisions()}


def deployment_of(
    app: App, loaded: LoadedConfig, environment: str, release: str, digest: str, steps: Steps
) -> FrameworkDeployment:
    """The framework migrations of a deployment of ``release`` (``migrations: {tool: alembic | django | command}``)."""
    spec = require_spec(loaded)
    url = database_url(app, loaded, environment)
    environ = tool_environ(app, loaded, environment, release)
    held = tool_held(app, loaded, environment, url, environ)
    return FrameworkDeployment(app, environment, release, digest, spec, url, steps, held=held, environ=environ)


async def newest_view(
    app: App, spec: MigrationsSpec, url: str, artifacts: Sequence[tuple[str, str]], *, environ: Mapping[str, str]
) -> DatabaseView:
    """The database against the newest release installed or rolling out whose migrations know its head (after
    a rollback behind an expand, the release rolled back from), else the newest one still there."""
    first: DatabaseView | None = None
    for digest, _release in artifacts:
        try:
            async with release_project(app, spec, url, digest, environ=environ) as project:
                view = await asyncio.to_thread(read_view, project, spec, url)
        except ArtifactError:  # collected since: an older release still tells
            continue
        if view.knows_head:
            return view
        first = first or view
    if first is not None:
        return first
    return await asyncio.to_thread(read_view, None, spec, url)
