"""``slipway migrations status`` and ``slipway migrations abandon``: an environment's migrations as they are.

Status reads the files of every release that is installed or rolling out on the environment (the newest
deployment in any state: running, parked after its canary, failed and reverted; each host's release; the
newest deployment that succeeded), newest first, so a file a deployment just applied is never shown as
missing and a parked canary's contract shows as held. A backfill in progress is shown from its progress
row, also when no known release has its file any more.

Abandon forgets the progress row of a broken backfill (recorded in the audit log), so that a fixed file
can be deployed and run from its first key.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from slipway.config import LoadedConfig
from slipway.errors import ArtifactError, MigrationError
from slipway.migrations import Migration, MigrationState, MigrationStatus, Phase
from slipway.migrations.alembic_history import RevisionRecord
from slipway.migrations.history import Progress
from slipway.model.records import DeploymentRecord
from slipway.model.states import DeploymentKind, State
from slipway.services import reconcile
from slipway.services.app import App
from slipway.services.environments import require_environment
from slipway.services.migration_setup import database_url, require_spec
from slipway.services.migrations import artifact_migrations, current_artifact, held_reasons, make_runner


@dataclass(frozen=True)
class StatusRow:
    """One migration of ``slipway migrations status``."""

    #: The file's version; an Alembic revision's id.
    version: int | str
    name: str
    phase: str
    state: str
    file: str | None
    applied_at: str | None
    applied_by: str | None
    release: str | None
    duration: float | None
    overrides: list[dict[str, Any]]
    held_because: str | None = None
    #: A backfill in progress: batches and rows committed, the last key, when the last batch committed.
    progress: dict[str, Any] | None = None
    #: What else the operator should know (an in-progress file missing from the release, or edited).
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return dict(self.__dict__)


def known_artifacts(app: App, environment: str) -> list[tuple[str, str]]:
    """(digest, release) of every release installed or rolling out on the environment, newest first."""
    deployments = app.store.deployments(environment, limit=200)
    found: list[tuple[str, str]] = []
    newest_deploy = next((d for d in deployments if d.kind is DeploymentKind.DEPLOY), None)
    candidates = [(d.artifact_digest, d.release_id) for d in [*deployments[:1], newest_deploy] if d]
    candidates += [(h.artifact_digest, h.release_id) for h in app.store.host_releases(environment)]
    current = current_artifact(app, environment)
    candidates += [current] if current else []
    for candidate in candidates:
        if candidate not in found:
            found.append(candidate)
    return found


def known_migrations(app: App, loaded: LoadedConfig, artifacts: list[tuple[str, str]]) -> tuple[Migration, ...]:
    """The migrations of ``artifacts`` by version, the newest release's file where several have one."""
    files: dict[int, Migration] = {}
    for digest, _release in artifacts:
        try:
            migrations = artifact_migrations(app, loaded, digest)
        except ArtifactError:  # collected since: the other releases still tell
            continue
        for m in migrations:
            files.setdefault(m.version, m)
    return tuple(files[v] for v in sorted(files))


async def environment_status(app: App, loaded: LoadedConfig, environment: str) -> list[StatusRow]:
    """Applied, pending, in-progress and held migrations of the environment's database, by phase and version."""
    require_environment(loaded.project, environment)
    spec = require_spec(loaded)
    url = database_url(app, loaded, environment)
    artifacts = known_artifacts(app, environment)
    if spec.tool != "sql":
        return await framework_status(app, loaded, environment, url, artifacts)
    migrations = await asyncio.to_thread(known_migrations, app, loaded, artifacts)
    statuses = await asyncio.to_thread(make_runner(spec, url).status, migrations)
    files = {m.version: m for m in migrations}
    pending = [files[s.version] for s in statuses if s.state is MigrationState.PENDING and s.version in files]
    reasons = held_reasons(app, loaded, environment, pending)
    parked = _parked(app, environment)
    for version in reasons:
        if parked is not None:
            reasons[version] = (
                f"deployment {parked.id} of release {parked.release_id} is parked after its canary "
                f"('slipway approve {parked.run_id}' rolls it out to every host); {reasons[version]}"
            )
    if spec.contract == "manual":
        for m in pending:
            if m.phase is Phase.CONTRACT and m.version not in reasons:
                reasons[m.version] = f"contract: manual; run 'slipway migrations contract {environment}'"
    newest = artifacts[0][1] if artifacts else None
    rows = [_row(s, reasons.get(s.version), environment=environment, newest=newest) for s in statuses]
    return sorted(rows, key=lambda r: (Phase(r.phase).rank, r.version))


async def framework_status(
    app: App, loaded: LoadedConfig, environment: str, url: str, artifacts: list[tuple[str, str]]
) -> list[StatusRow]:
    """The framework migrations of the newest release installed or rolling out, in order, against the
    database, then the ones Slipway applied that this release does not have (``missing``)."""
    from slipway.services.framework_migrations import newest_view, tool_environ, tool_held

    spec = require_spec(loaded)
    release = artifacts[0][1] if artifacts else None
    environ = tool_environ(app, loaded, environment, release)
    view = await newest_view(app, spec, url, artifacts, environ=environ)
    held_by = tool_held(app, loaded, environment, url, environ)
    applied = {r.revision for r in view.applied()}
    parked = _parked(app, environment)
    rows = []
    for r in view.revisions:
        record = view.records.get(r.revision)
        held = None
        if r.revision not in applied and r.phase is Phase.CONTRACT:
            held = await asyncio.to_thread(held_by, r)
            if held and parked is not None:
                held = f"deployment {parked.id} of release {parked.release_id} is parked after its canary; {held}"
            if not held and spec.contract == "manual":
                held = f"contract: manual; run 'slipway migrations contract {environment}'"
        state = "applied" if r.revision in applied else "held" if held else "pending"
        rows.append(_alembic_row(r.revision, r.name, r.phase, state, r.path or None, record, held))
    known = {r.revision for r in view.revisions}
    for record in view.records.values():
        if record.revision not in known:
            rows.append(_alembic_row(record.revision, record.name, record.phase, "missing", None, record, None))
    heads = view.unknown_heads() if view.revisions else ((view.head,) if view.head else ())
    for head in heads:
        if head not in view.records:
            note = "the database's head, applied outside Slipway and in no release installed or rolling out"
            row = _alembic_row(head, "(not in the release)", Phase.EXPAND, "missing", None, None, None)
            rows.append(replace(row, note=note))
    return rows


def _alembic_row(
    revision: str, name: str, phase: Phase, state: str, file: str | None, record: RevisionRecord | None, held: str | None
) -> StatusRow:
    return StatusRow(
        version=revision,
        name=name,
        phase=phase.value,
        state=state,
        file=file,
        applied_at=record.applied_at.isoformat(timespec="seconds") if record else None,
        applied_by=record.applied_by if record else None,
        release=record.release if record else None,
        duration=record.duration if record else None,
        overrides=[{"rule": o.rule, "reason": o.reason} for o in record.overrides] if record else [],
        held_because=held,
    )


def _parked(app: App, environment: str) -> DeploymentRecord | None:
    latest = app.store.deployments(environment, limit=1)
    return latest[0] if latest and latest[0].state is State.WAITING else None


def _row(s: MigrationStatus, held: str | None, *, environment: str, newest: str | None) -> StatusRow:
    progress, note = None, None
    if s.state is MigrationState.IN_PROGRESS:
        progress = {
            "batches": s.batches_done,
            "rows": s.rows_done,
            "last_key": s.last_key if isinstance(s.last_key, int | str) else str(s.last_key),
            "updated_at": s.progress_at.isoformat(timespec="seconds") if s.progress_at else None,
        }
        abandon = f"'slipway migrations abandon {environment} {s.version} --reason TEXT'"
        if s.path is None:
            note = f"its file is in no release installed or rolling out (newest: {newest or 'none'}); {abandon} forgets it"
        elif s.is_edited_backfill:
            note = f"the file was edited since its batches ran: restore it, or {abandon} and deploy the fixed one"
    return StatusRow(
        version=s.version,
        name=s.name or "(file not in the release)",
        phase=s.phase.value,
        state="held" if held else s.state.value,
        file=s.path,
        applied_at=s.applied_at.isoformat(timespec="seconds") if s.applied_at else None,
        applied_by=s.applied_by,
        release=s.release,
        duration=s.duration,
        overrides=[{"rule": o.rule, "reason": o.reason} for o in s.overrides],
        held_because=held,
        progress=progress,
        note=note,
    )


async def abandon(app: App, loaded: LoadedConfig, environment: str, version: int, *, reason: str) -> Progress:
    """``slipway migrations abandon ENV VERSION --reason``: forget a backfill in progress, recorded.

    Its progress row is deleted (under the environment's lock and the migration lock); the rows its
    committed batches changed stay as they are; no history row is written, so the version is pending
    and the next deployment runs its file (fixed: any checksum) from the first key.
    """
    require_environment(loaded.project, environment)
    spec = require_spec(loaded)
    if not reason.strip():
        raise MigrationError("abandoning a backfill needs a reason", hint="say why with --reason TEXT (audit log)")
    url = database_url(app, loaded, environment)
    lock = f"environment {environment}"
    holder = reconcile.holder_text(app.settings.actor, run_id=None, doing="migrations abandon")
    app.store.acquire_lock(lock, holder, ttl=3600, is_dead=reconcile.holder_is_dead)
    try:
        progress = await asyncio.to_thread(make_runner(spec, url).abandon, version, holder=holder)
    finally:
        app.store.release_lock(lock, holder)
    app.store.audit(
        app.settings.actor,
        "migration.abandon",
        f"{environment} {version}",
        {
            "reason": reason,
            "checksum": progress.checksum,
            "batches": progress.batches,
            "rows": progress.rows,
            "last_key": progress.last_key if isinstance(progress.last_key, int | str) else str(progress.last_key),
        },
    )
    return progress
