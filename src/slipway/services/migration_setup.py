"""What every kind of migrations of a deployment needs first: the project's migrations section, the
environment's database URL, and whether a contract migration must still wait (services/migrations.py for
Slipway's own files, services/framework_migrations.py for Alembic, Django and command tools)."""

from __future__ import annotations

from collections.abc import Callable

from slipway.config import LoadedConfig
from slipway.engine.template import render
from slipway.errors import ArtifactError, MigrationError
from slipway.model.config import MigrationsSpec
from slipway.model.states import State
from slipway.services.app import App
from slipway.services.secrets import resolve_secrets


def spec_of(loaded: LoadedConfig) -> MigrationsSpec | None:
    """The project's ``migrations`` section, if any."""
    return loaded.project.migrations


def database_url(app: App, loaded: LoadedConfig, environment: str) -> str:
    """The environment's database URL: its secret resolved now, or its templated URL (relative SQLite
    paths are relative to the project)."""
    env = loaded.project.environments[environment]
    if env.database is None:
        raise MigrationError(
            f"environment {environment!r} has no database",
            hint=f"add environments.{environment}.database to slipway.yml (docs/migrations.md)",
        )
    if env.database.secret is not None:
        secrets = resolve_secrets(env, environment=environment, root=loaded.root, environ=app.environ)
        app.masker.add(secrets.values())
        return secrets[env.database.secret]
    assert env.database.url is not None
    url = render(
        env.database.url,
        {"vars": env.vars, "environment": {"name": environment}},
        shell=False,
        where=f"environments.{environment}.database.url",
    )
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        path = (loaded.root / url[len(prefix) :]).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        url = prefix + str(path)
    return url


def artifact_has_path(app: App, digest: str, path: str) -> bool:
    """Whether the artifact ``digest`` ships the file ``path``."""
    try:
        manifest = app.artifacts.manifest(digest)
    except ArtifactError:
        return False
    return any(f.path == path for f in manifest.files)


def held_reason(
    app: App, loaded: LoadedConfig, environment: str, path: str, *, ships: Callable[[str], bool] | None = None
) -> str | None:
    """Why the contract migration in the file ``path`` must wait: a target runs a release whose artifact
    lacks the file (``ships(digest)``, when given, says instead whether a release has the migration), or the
    environment's last deployment did not succeed (None: it may run now)."""
    store = app.store
    env = loaded.project.environments[environment]
    running = {h.host: h for h in store.host_releases(environment)}
    has = ships or (lambda digest: artifact_has_path(app, digest, path))
    for target in env.targets:
        host = running.get(target.name)
        if host is None:
            return f"{target.name} runs no release yet"
        if not has(host.artifact_digest):
            return f"{target.name} runs release {host.release_id}, whose artifact does not contain it"
    latest = store.deployments(environment, limit=1)
    if not latest or latest[0].state is not State.SUCCEEDED:
        return f"the last deployment of {environment} did not succeed (its verify has not passed)"
    return None


def require_spec(loaded: LoadedConfig) -> MigrationsSpec:
    """The project's migrations section; MigrationError saying how to add one when there is none."""
    spec = spec_of(loaded)
    if spec is None:
        raise MigrationError(
            "slipway.yml has no 'migrations' section",
            hint="add 'migrations: {directory: db/migrations}' and a database per environment (docs/migrations.md)",
        )
    return spec
