"""The validated, frozen shape of slipway.yml.

Parsing (YAML, line numbers, friendly errors) lives in :mod:`slipway.config`; these classes only say what
is allowed. Every model forbids unknown keys so that a typo is an error with a suggestion, never a
silently ignored setting. docs/config.md documents each key.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from slipway.model.base import NAME_RE as NAME_RE
from slipway.model.base import Frozen as Frozen
from slipway.model.base import SecretRef as SecretRef
from slipway.model.base import SSHEndpoint
from slipway.model.build_cache import BuildCache
from slipway.model.checks import CheckSpec, DependencySpec, LoadTestSpec
from slipway.model.containers import ContainerTargetSpec, ImageArtifactSpec, ServiceConfig
from slipway.model.freeze import Freeze, OnFreeze, unique_names
from slipway.model.host_services import HostServiceConfig
from slipway.model.notifications import Notification
from slipway.model.queue import QueuePolicy
from slipway.model.review import ReviewTemplate
from slipway.model.states import StageKind
from slipway.model.strategy import AllAtOnce, BlueGreen, Canary, CircuitBreakerPolicy, Rolling
from slipway.model.traffic import NginxRouterSpec, ReadinessSpec
from slipway.model.triggers import TriggerSpec

HOOK_ORDER = ("prepare", "install", "migrate", "configure", "activate", "verify")


class Command(Frozen):
    """One shell command of a hook or stage, with where and how it runs."""

    run: str = Field(min_length=1)
    #: Run only on targets that have one of these roles (empty: every target).
    roles: tuple[str, ...] = ()
    #: Run on one target only (the first of the matching ones), not on each: e.g. migrations.
    once: bool = False
    #: Seconds before the command is stopped; the hook's default applies when unset.
    timeout: float | None = Field(default=None, gt=0)


def _to_command(value: Any) -> Any:
    return {"run": value} if isinstance(value, str) else value


class Hooks(Frozen):
    """The deploy hooks, run in the fixed order of :data:`HOOK_ORDER` on every target."""

    prepare: tuple[Command, ...] = ()
    install: tuple[Command, ...] = ()
    migrate: tuple[Command, ...] = ()
    configure: tuple[Command, ...] = ()
    activate: tuple[Command, ...] = ()
    verify: tuple[Command, ...] = ()

    @field_validator(*HOOK_ORDER, mode="before")
    @classmethod
    def _commands(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [_to_command(v) for v in value]
        return value


class DeploySpec(Frozen):
    """How every environment is deployed: the same process everywhere, only data differs."""

    hooks: Hooks = Hooks()
    #: Directories under ``shared/`` linked into every release (persist across releases).
    shared: tuple[str, ...] = ()
    #: How many releases each target keeps (the current one included).
    keep_releases: int = Field(default=5, ge=1)
    #: Default per-command timeout in seconds.
    timeout: float = Field(default=600, gt=0)
    #: Verify checks run on every host right after its verify hooks (docs/checks.md); templated per host.
    checks: tuple[CheckSpec, ...] = ()
    #: The app's processes on local and SSH targets, under a process manager (docs/services-on-hosts.md).
    services: dict[str, HostServiceConfig] = Field(default_factory=dict)

    @field_validator("shared")
    @classmethod
    def _relative(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if item.startswith("/") or ".." in item.split("/"):
                raise ValueError(f"shared path {item!r} must be relative and stay inside shared/")
        return value


class ArtifactSpec(Frozen):
    """How the one artifact of a commit is built and what goes into it."""

    #: The default kind: a deterministic archive deployed as release directories.
    kind: Literal["archive"] = "archive"
    #: Commands run once per commit in a clean export of that commit.
    build: tuple[str, ...] = ()
    #: Paths (files, directories or glob patterns) relative to the build directory.
    paths: tuple[str, ...] = Field(min_length=1)
    #: Glob patterns left out.
    exclude: tuple[str, ...] = ("**/__pycache__", "**/*.pyc", ".git")
    #: Dependency layers restored before the build commands while their lock files are unchanged.
    cache: tuple[BuildCache, ...] = ()

    @field_validator("build", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class DatabaseSpec(Frozen):
    """The application's database of an environment, where its migrations run (docs/migrations.md)."""

    #: Name of one of the environment's ``secrets`` whose value is the SQLAlchemy URL (keeps passwords out).
    secret: str | None = None
    #: A URL without a password (e.g. ``sqlite:///data/app.db``, relative to the project), templated with vars.
    url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DatabaseSpec:
        if (self.secret is None) == (self.url is None):
            raise ValueError("a database names exactly one of: secret (a name in secrets) or url")
        if self.url is not None and re.match(r"^[^:/]+://[^/@]*:[^/@]*@", self.url):
            raise ValueError(
                "this url contains a password: put the URL in a secret and write 'secret: NAME' instead"
            )
        return self


class MigrationCommands(Frozen):
    """``tool: command``: the shell commands that drive any migration tool, run in the release's directory
    with the environment's secrets, ``SLIPWAY_APP_DATABASE_URL`` and (apply, sql) ``SLIPWAY_MIGRATION``."""

    #: Applies the release's migrations up to and including ``$SLIPWAY_MIGRATION``.
    apply: str | None = Field(default=None, min_length=1)
    #: Prints the id of the last migration applied to the database (nothing before the first).
    head: str | None = Field(default=None, min_length=1)
    #: Prints the release's migrations in the order they apply, one a line: ``ID [PHASE [NAME]]``.
    list: str | None = Field(default=None, min_length=1)
    #: Optional: prints the SQL ``$SLIPWAY_MIGRATION`` would execute, for the linter.
    sql: str | None = Field(default=None, min_length=1)


#: What each command of ``tool: command`` is for, in the error that says one is missing.
COMMAND_ROLES = {
    "apply": "the command that applies the migrations up to and including $SLIPWAY_MIGRATION",
    "head": "the command that prints the id of the last migration applied to the database",
    "list": "the command that prints the release's migrations in order, one a line: ID [PHASE [NAME]]",
}
#: The keys that belong to one tool only (python: Alembic's and Django's).
TOOL_KEYS = {
    "directory": ("sql",),
    "config": ("alembic",),
    "script_location": ("alembic",),
    "python": ("alembic", "django"),
    "manage": ("django",),
    "settings": ("django",),
    "commands": ("command",),
}


class MigrationsSpec(Frozen):
    """Where an artifact's migration files are and how a deployment runs them (docs/migrations.md)."""

    #: Which migrations: Slipway's own ``.sql`` files, an Alembic project's revisions, a Django project's
    #: migrations, or any tool driven by ``commands``.
    tool: Literal["sql", "alembic", "django", "command"] = "sql"
    #: tool sql: directory of the ``.sql`` files, relative to the artifact's root (it must be in artifact.paths).
    directory: str | None = Field(default=None, min_length=1)
    #: tool alembic: the alembic.ini inside the artifact (default ``alembic.ini``).
    config: str | None = Field(default=None, min_length=1)
    #: tool alembic: the script directory inside the artifact, instead of the ini's ``script_location``.
    script_location: str | None = Field(default=None, min_length=1)
    #: tool alembic, django: the interpreter that runs the tool and the release's code (default: Slipway's own).
    python: str | None = Field(default=None, min_length=1)
    #: tool django: the project's manage.py inside the artifact (default ``manage.py``).
    manage: str | None = Field(default=None, min_length=1)
    #: tool django: the settings module (DJANGO_SETTINGS_MODULE; default: what manage.py sets).
    settings: str | None = Field(default=None, min_length=1)
    #: tool command: the commands that apply, print the head, list the release's migrations (and print SQL).
    commands: MigrationCommands | None = None
    #: ``auto``: contract migrations run at the end of the deployment that makes them safe; ``manual``:
    #: only on ``slipway migrations contract ENV``.
    contract: Literal["auto", "manual"] = "auto"
    #: Rows per batch of a migrate file whose ``slipway:batch`` header gives no ``size``.
    batch_size: int = Field(default=1000, ge=1, le=1_000_000)
    #: Seconds to wait for another runner's migration lock.
    lock_wait: float = Field(default=30, gt=0)
    #: PostgreSQL lock_timeout of each statement, in seconds (SQLite: the busy timeout).
    lock_timeout: float = Field(default=5, gt=0)
    #: PostgreSQL statement_timeout of each statement, in seconds.
    statement_timeout: float = Field(default=600, gt=0)
    #: Seconds to wait when connecting to the database.
    connect_timeout: float = Field(default=10, gt=0)

    @field_validator("directory", "config", "script_location", "manage")
    @classmethod
    def _inside(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"{value!r} must be a relative path inside the artifact")
        return value.strip("/")

    @field_validator("settings")
    @classmethod
    def _module(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", value):
            raise ValueError(
                f"{value!r} is not a module name: write the dotted name DJANGO_SETTINGS_MODULE takes, e.g. shop.settings"
            )
        return value

    @model_validator(mode="after")
    def _keys_of_the_tool(self) -> MigrationsSpec:
        if self.tool == "sql" and self.directory is None:
            raise ValueError(
                "tool sql needs 'directory' (where the .sql files are inside the artifact, e.g. db/migrations); "
                "for an Alembic project write 'tool: alembic', for Django 'tool: django'"
            )
        if self.tool != "sql" and self.directory is not None:
            raise ValueError(
                f"directory is for tool sql: an Alembic project names its alembic.ini with 'config' "
                f"(default alembic.ini) or its scripts with 'script_location'; tool {self.tool} does not read it"
            )
        for key, tools in TOOL_KEYS.items():
            if key != "directory" and self.tool not in tools and getattr(self, key) is not None:
                only = " and ".join(f"'tool: {t}'" for t in tools)
                raise ValueError(f"{key}: only for {only}; remove it, or set tool: {tools[0]}")
        if self.tool == "command":
            missing = [k for k in COMMAND_ROLES if getattr(self.commands, k, None) is None]
            if missing:
                roles = "; ".join(f"commands.{k}: {COMMAND_ROLES[k]}" for k in missing)
                raise ValueError(
                    f"tool command needs {', '.join('commands.' + k for k in missing)} ({roles}); "
                    "docs/migrations.md, 'Any tool', has a complete example"
                )
        return self

    @property
    def alembic_config(self) -> str:
        """The alembic.ini inside the artifact."""
        return self.config or "alembic.ini"

    @property
    def django_manage(self) -> str:
        """The Django project's manage.py inside the artifact."""
        return self.manage or "manage.py"


class LocalTargetSpec(Frozen):
    """A host that is a directory on this machine."""

    kind: Literal["local"] = "local"
    name: str = Field(pattern=NAME_RE)
    #: The deploy root (releases/, shared/, current); relative paths are relative to slipway.yml.
    path: str = Field(min_length=1)
    roles: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)


class SSHTargetSpec(SSHEndpoint):
    """A host reached over SSH; its host key must be in ``known_hosts``."""

    kind: Literal["ssh"] = "ssh"
    name: str = Field(pattern=NAME_RE)
    #: The deploy root on the host.
    path: str = "/srv/app"
    roles: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)
    #: Seconds the host's agent waits for the next connection before it exits (docs/ssh.md, "The agent");
    #: 0: leave no agent, every later command logs in.
    agent_idle: float = Field(default=600, ge=0)
    #: Seconds a connection to the host is kept after its last use, by a keeper on this machine, for the
    #: next Slipway command (docs/ssh.md, "Kept connections"); 0: none, every command connects. Needs the agent.
    keep: float = Field(default=0, ge=0)


TargetSpec = Annotated[LocalTargetSpec | SSHTargetSpec | ContainerTargetSpec, Field(discriminator="kind")]


def _artifact_kind(value: Any) -> str:
    """``artifact.kind``, ``archive`` when unset (the archive came first and needs no kind)."""
    if isinstance(value, dict):
        return str(value.get("kind", "archive"))
    return str(getattr(value, "kind", "archive"))


ArtifactChoice = Annotated[
    Annotated[ArtifactSpec, Tag("archive")] | Annotated[ImageArtifactSpec, Tag("image")],
    Discriminator(_artifact_kind),
]


class OnFailure(StrEnum):
    """An environment's response to a failed check (docs/checks.md, "When a check fails")."""

    #: Put every host the deployment switched back on the release it ran before.
    ROLLBACK = "rollback"
    #: Stop, leave every host as it is, and say what a person runs next.
    HALT = "halt"


class Environment(Frozen):
    """A named place to deploy to; it differs from the others only in data."""

    #: Base URL of the deployed app, templated with the environment's vars.
    url: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, SecretRef] = Field(default_factory=dict)
    targets: tuple[TargetSpec, ...] = Field(min_length=1)
    #: How many targets are deployed at the same time.
    parallel: int = Field(default=10, ge=1)
    #: How many SSH connections may be opening at the same time (sshd's MaxStartups defaults to 10).
    max_connecting: int = Field(default=8, ge=1)
    #: The application's database, where migrations run (needs the top-level ``migrations``).
    database: DatabaseSpec | None = None
    #: Checks of the whole environment after a deployment (docs/checks.md).
    smoke: tuple[CheckSpec, ...] = ()
    #: External services checked through circuit breakers before and after a deployment.
    dependencies: tuple[DependencySpec, ...] = ()
    #: What a failed check does: revert the switched hosts, or leave them for a person.
    on_failure: OnFailure = OnFailure.ROLLBACK
    #: How the release reaches the hosts (docs/strategies.md); None: all at once, ``parallel`` at a time.
    strategy: AllAtOnce | Rolling | Canary | BlueGreen | None = Field(default=None, discriminator="kind")
    #: When a deployment stops and rolls back; None: the first failed host reverts every host.
    circuit_breaker: CircuitBreakerPolicy | None = None
    #: The reverse proxy in front of the hosts: rolling batches leave and rejoin its rotation.
    router: NginxRouterSpec | None = None
    #: The health gate before a host takes traffic again (needs ``router``).
    readiness: ReadinessSpec | None = None
    #: When deploy stages may not start here (model/freeze.py, docs/config.md "freezes").
    freezes: tuple[Freeze, ...] = ()
    #: What a deploy stage that would start inside a freeze does: fail (default) or wait for its end.
    on_freeze: OnFreeze = OnFreeze.FAIL

    @field_validator("freezes")
    @classmethod
    def _unique_freezes(cls, value: tuple[Freeze, ...]) -> tuple[Freeze, ...]:
        return unique_names(value)

    @model_validator(mode="after")
    def _strategy_is_wired(self) -> Environment:
        strategy = self.strategy
        if isinstance(strategy, BlueGreen) and self.router is None:
            raise ValueError("strategy blue_green switches traffic between slots through a router: add a router: block")
        if isinstance(strategy, BlueGreen) and not strategy.keep_old_warm:
            raise ValueError("strategy.keep_old_warm: false is not supported: the old slot stays warm (there is no stop hook)")
        if self.readiness is not None and self.router is None:
            raise ValueError("readiness gates traffic through a router: add a router: block")
        return self

    @field_validator("dependencies")
    @classmethod
    def _unique_dependencies(cls, value: tuple[CheckSpec, ...]) -> tuple[CheckSpec, ...]:
        names = [d.name for d in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dependency names must be unique (each keys a breaker); repeated: {', '.join(dupes)}")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"secret name {key!r} must be a valid environment variable name")
        return value

    @model_validator(mode="after")
    def _unique_targets(self) -> Environment:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"target names must be unique; repeated: {', '.join(dupes)}")
        return self


class Stage(Frozen):
    """One stage of the pipeline."""

    name: str = Field(pattern=NAME_RE)
    kind: StageKind
    #: Commands of test, acceptance and post-deploy stages.
    run: tuple[str, ...] = ()
    #: The environment a deploy, acceptance or post-deploy stage works on.
    environment: str | None = None
    #: Who may approve an approval stage (empty: anyone).
    approvers: tuple[str, ...] = ()
    #: What a load-test stage sends and the thresholds its figures must meet.
    load_test: LoadTestSpec | None = None
    timeout: float = Field(default=1800, gt=0)

    @field_validator("run", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Stage:
        needs_env = {StageKind.DEPLOY, StageKind.ACCEPTANCE, StageKind.POST_DEPLOY, StageKind.LOAD_TEST}
        needs_run = {StageKind.TEST, StageKind.ACCEPTANCE, StageKind.POST_DEPLOY}
        if self.kind in needs_env and not self.environment:
            raise ValueError(f"a {self.kind.value} stage needs 'environment'")
        if self.kind not in needs_env and self.environment:
            raise ValueError(f"a {self.kind.value} stage takes no 'environment'")
        if self.kind in needs_run and not self.run:
            raise ValueError(f"a {self.kind.value} stage needs 'run' (one command or a list)")
        if self.kind not in needs_run and self.run:
            raise ValueError(f"a {self.kind.value} stage takes no 'run'")
        if self.approvers and self.kind is not StageKind.APPROVAL:
            raise ValueError("only an approval stage takes 'approvers'")
        if (self.load_test is None) == (self.kind is StageKind.LOAD_TEST):
            raise ValueError(
                "a load-test stage needs 'load_test' (urls, requests, thresholds)"
                if self.load_test is None
                else "only a load-test stage takes 'load_test'"
            )
        return self


class StoreSpec(Frozen):
    """Where Slipway keeps its state; environment variables and flags override these."""

    #: SQLAlchemy URL of the state store (default: SQLite in .slipway/state.db).
    url: str | None = None
    #: Directory of the artifact store (default: .slipway/artifacts).
    artifacts: str | None = None


class IdentityPolicy(Frozen):
    """Who the CLI may record as acting (docs/config.md, "identity")."""

    #: Record the login and git's identity only: ``--as`` and SLIPWAY_USER are refused, git's
    #: ``user.email`` must be set. A server's authenticated user is recorded as it says.
    require: bool = False


class Project(Frozen):
    """The whole slipway.yml."""

    version: Literal[1] = 1
    name: str = Field(pattern=NAME_RE)
    store: StoreSpec = StoreSpec()
    artifact: ArtifactChoice
    deploy: DeploySpec = DeploySpec()
    #: The app's services when it runs as containers (docs/containers.md).
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    environments: dict[str, Environment] = Field(min_length=1)
    pipeline: tuple[Stage, ...] = Field(min_length=1)
    #: The application's database migrations (docs/migrations.md).
    migrations: MigrationsSpec | None = None
    #: Whether whoever acts must be recorded as who they are (docs/config.md, "identity").
    identity: IdentityPolicy = IdentityPolicy()
    #: Webhooks and emails sent when approvals are needed, deployments end, breakers open (docs/config.md).
    notifications: tuple[Notification, ...] = ()
    #: What starts runs without a person: webhooks, polling, the forge's API (docs/triggers.md).
    triggers: TriggerSpec | None = None
    #: Review environments: one per merge request, made from this template (model/review.py, docs/config.md).
    review: ReviewTemplate | None = None
    #: A busy environment: wait in its queue or fail; newer runs supersede older ones (docs/config.md, "queue").
    queue: QueuePolicy = QueuePolicy()

    @model_validator(mode="after")
    def _notified_environments(self) -> Project:
        for i, notification in enumerate(self.notifications):
            unknown = sorted(set(notification.environments) - set(self.environments))
            if unknown:
                raise ValueError(f"notifications[{i}].environments: no environment {', '.join(unknown)}")
        return self

    def stage(self, name: str) -> Stage:
        """The stage called ``name``; KeyError if there is none."""
        for stage in self.pipeline:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def deploy_stage_index(self, environment: str) -> int | None:
        """Index of the first deploy stage of ``environment``, or None."""
        for i, stage in enumerate(self.pipeline):
            if stage.kind is StageKind.DEPLOY and stage.environment == environment:
                return i
        return None
