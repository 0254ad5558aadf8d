"""Removing a review environment from its hosts: its ``teardown`` commands on each host (in the current
release directory), its deploy roots, its SQLite database file; then it is recorded closed. Its runs,
deployments and audit entries are kept. Under the environment's lock, so no deployment runs meanwhile.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote

from slipway.config import LoadedConfig
from slipway.engine.planner import ReleaseInfo, template_context
from slipway.engine.template import render
from slipway.errors import ConfigError, SlipwayError, TargetError
from slipway.model.config import TargetSpec
from slipway.model.records import HostRelease
from slipway.model.review import ReviewRecord, review_context
from slipway.ports import Target
from slipway.services import supervisor
from slipway.services.app import App, make_target, target_root
from slipway.services.envlock import environment_lock
from slipway.services.releases import environment_url, hosts_of
from slipway.services.review_env import overlapping_root, run_config_of, sqlite_file

#: Seconds each removal command may take on a host.
REMOVE_TIMEOUT = 300


@dataclass(frozen=True)
class Teardown:
    """What closing a review environment did: what it removed, and what went wrong on the way."""

    environment: str
    already_closed: bool = False
    removed: tuple[str, ...] = ()
    #: Teardown commands that failed, and removals that did not happen (each: host and why).
    problems: tuple[str, ...] = ()
    #: Whether every deploy root and database file is gone (a failed teardown command does not count).
    complete: bool = True


@dataclass
class _Progress:
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    complete: bool = True

    def problem(self, app: App, text: str, *, removal: bool) -> None:
        app.observer.message(f"warning: {text}")
        self.problems.append(text)
        self.complete = self.complete and not removal


async def tear_down(app: App, record: ReviewRecord, *, reason: str) -> Teardown:
    """Remove ``record``'s environment from its hosts and record it closed with ``reason`` (audited)."""
    name = record.environment
    loaded = _deployed_config(app, record)
    progress = _Progress()
    if loaded is not None and name in loaded.project.environments:
        with environment_lock(app, name, run_id=None):  # LockHeld while a deployment of it runs
            await _remove_everything(app, loaded, record, progress)
    app.store.close_review(record.project, record.number, at=app.clock.now(), by=app.settings.actor, reason=reason)
    app.observer.message(f"{name} is closed ({reason})" + ("" if progress.complete else ": with problems, see above"))
    return Teardown(name, removed=tuple(progress.removed), problems=tuple(progress.problems), complete=progress.complete)


def _deployed_config(app: App, record: ReviewRecord) -> LoadedConfig | None:
    """The configuration of the environment's newest run (with the review environment); None without one."""
    if record.run_id is None:
        return None
    return run_config_of(app, app.store.get_run(record.run_id))


async def _remove_everything(app: App, loaded: LoadedConfig, record: ReviewRecord, progress: _Progress) -> None:
    name = record.environment
    env = loaded.project.environments[name]
    roots = [removable_root(loaded, name, spec) for spec in env.targets]  # every refusal before anything goes
    running = {h.host: h for h in app.store.host_releases(name)}
    for spec, root in zip(env.targets, roots, strict=True):
        target = make_target(spec, root=loaded.root, environ=app.environ)
        try:
            await _run_teardown(app, loaded, record, target, running.get(spec.name), progress)
            await _stop_services(app, target, progress)
            await _remove_root(app, target, root, progress)
        finally:
            await target.close()
    _remove_database(app, loaded, name, progress)


def removable_root(loaded: LoadedConfig, name: str, spec: TargetSpec) -> str:
    """The deploy root of a review target, once it is sure to be one: absolute, not ``/``, not the project's
    directory or one above it, not another environment's; ConfigError otherwise (nothing is removed)."""
    root = target_root(spec, loaded.root)
    path = posixpath.normpath(root)
    project = posixpath.normpath(str(loaded.root.absolute()))
    wrong = None
    if not path.startswith("/") or path == "/":
        wrong = "it is not an absolute path below /"
    elif project == path or project.startswith(path.rstrip("/") + "/"):
        wrong = "it holds the project's directory"
    elif (other := overlapping_root(loaded, name, spec)) is not None:
        wrong = f"it overlaps the deploy root of environment {other}"
    if wrong is not None:
        raise ConfigError(
            f"{name}: refusing to remove deploy root {root!r} of target {spec.name}: {wrong}",
            key_path="review.targets",
            hint="the review template's target paths must name one directory per request (with {{ review.number }})",
        )
    return path


async def _run_teardown(
    app: App, loaded: LoadedConfig, record: ReviewRecord, target: Target, running: HostRelease | None,
    progress: _Progress,
) -> None:
    """The template's teardown commands on one host, in its current release; a failure is reported, not raised."""
    commands = loaded.project.review.teardown if loaded.project.review is not None else ()
    if not commands:
        return
    if running is None:
        app.observer.message(f"{target.name}: nothing of {record.environment} was deployed: no teardown commands")
        return
    name = record.environment
    env = loaded.project.environments[name]
    host = next(h for h in hosts_of(loaded, name) if h.name == target.name)
    release = ReleaseInfo(running.release_id, running.artifact_digest, running.commit)
    context = template_context(project=loaded.project, environment=name, env=env, host=host, release=release,
                               url=environment_url(loaded.project, name))
    context["review"] = review_context(record.number, record.branch)
    current = f"{target.root}/current"
    for i, command in enumerate(commands):
        try:
            text = render(command, context, where=f"review.teardown[{i}]")
            app.observer.message(f"{target.name}: teardown: {text}")
            result = await target.run(f"cd {quote(current)} && {text}", timeout=loaded.project.deploy.timeout)
        except SlipwayError as exc:
            progress.problem(app, f"{target.name}: teardown command {command!r}: {exc}", removal=False)
            continue
        if not result.ok:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            progress.problem(app, f"{target.name}: teardown command {command!r} exited {result.exit_code}: "
                             + " / ".join(tail), removal=False)


async def _stop_services(app: App, target: Target, progress: _Progress) -> None:
    """Stop the root's supervisord and its services (deploy.services) before their files go."""
    try:
        if await supervisor.shutdown_daemon(target, supervisor.Layout(target.root)):
            app.observer.message(f"{target.name}: stopped the services and their supervisord")
    except SlipwayError as exc:
        progress.problem(app, f"{target.name}: cannot stop the services: {exc}", removal=True)


async def _remove_root(app: App, target: Target, root: str, progress: _Progress) -> None:
    """``rm -rf`` the target's deploy root (releases, shared, the object store)."""
    try:
        result = await target.run(f"rm -rf -- {quote(root)}", cwd="/", timeout=REMOVE_TIMEOUT)
    except TargetError as exc:
        progress.problem(app, f"{target.name}: cannot remove {root}: {exc}", removal=True)
        return
    if not result.ok:
        progress.problem(app, f"{target.name}: cannot remove {root}: {result.stderr.strip()}", removal=True)
        return
    progress.removed.append(f"{target.name}:{root}")
    app.observer.message(f"{target.name}: removed {root}")


def _remove_database(app: App, loaded: LoadedConfig, name: str, progress: _Progress) -> None:
    """The environment's SQLite file (and its -wal, -shm, -journal) on this machine; PostgreSQL is left."""
    env = loaded.project.environments[name]
    if env.database is None:
        return
    path = sqlite_file(loaded.root, loaded.project, name)
    if path is None:
        app.observer.message(f"the database of {name} is not a SQLite file: it is left as it is (drop it yourself)")
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        file = Path(path + suffix)
        try:
            file.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            progress.problem(app, f"cannot remove the database file {file}: {exc.strerror}", removal=True)
            continue
        progress.removed.append(str(file))
    app.observer.message(f"removed the database {path} of {name}")
