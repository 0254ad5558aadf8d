"""What every kind of deployment shares: the request, release ids, the planner's view of an environment's
hosts, the plan, the hooks that restart a host on its earlier release, and the release a rollback goes back to."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from slipway.artifacts.store import parse_digest
from slipway.config import LoadedConfig
from slipway.engine.planner import (
    Action,
    DeploymentPlan,
    HostInfo,
    PlanStep,
    ReleaseInfo,
    plan_deployment,
)
from slipway.engine.slots import SlotInfo
from slipway.engine.template import render
from slipway.errors import GateError
from slipway.model.config import Project
from slipway.model.records import DeploymentRecord, HostRelease
from slipway.model.states import DeploymentKind, State
from slipway.model.strategy import BlueGreen
from slipway.services.app import App, target_root


def new_release_id(digest: str, now: float) -> str:
    """Release ids sort by time and name their artifact: ``20261124T101500Z-<12 hex of the digest>``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + parse_digest(digest)[:12]


def fresh_release_id(app: App, environment: str, digest: str, now: float | None = None) -> str:
    """A release id the environment has never had.

    Two deployments of one artifact in the same second would otherwise get the same name, and a rollback to
    one could not be told from the other (the store, the hosts' release directories and the web UI's
    rollback form all name releases by id). A taken name moves to the next free second, so ids still sort
    by the time they were made."""
    taken = {d.release_id for d in app.store.deployments(environment, limit=50)}
    taken |= {h.release_id for h in app.store.host_releases(environment)}
    now = time.time() if now is None else now
    candidate = new_release_id(digest, now)
    while candidate in taken:
        now += 1
        candidate = new_release_id(digest, now)
    return candidate


def hosts_of(loaded: LoadedConfig, environment: str) -> list[HostInfo]:
    """The planner's view of an environment's targets."""
    env = loaded.project.environments[environment]
    return [
        HostInfo(t.name, target_root(t, loaded.root), tuple(t.roles), dict(t.vars), getattr(t, "address", "127.0.0.1"))
        for t in env.targets
    ]


def environment_url(project: Project, environment: str) -> str | None:
    """The environment's URL with its variables filled in."""
    env = project.environments[environment]
    if not env.url:
        return None
    return render(
        env.url,
        {"vars": env.vars, "environment": {"name": environment}},
        shell=False,
        where=f"environments.{environment}.url",
    )


def _render(template: str, context: dict[str, object], where: str) -> str:
    return render(template, context, shell=True, where=where)


def host_views(loaded: LoadedConfig, environment: str) -> list[list[HostInfo]]:
    """Every way hooks and checks see the hosts: one view, or one per slot of a blue/green environment."""
    hosts = hosts_of(loaded, environment)
    strategy = loaded.project.environments[environment].strategy
    if not isinstance(strategy, BlueGreen):
        return [hosts]
    return [
        [replace(h, slot=SlotInfo(slot, strategy.slot_vars.get(slot, {}))) for h in hosts]
        for slot in sorted(strategy.slots)
    ]


def make_plan(
    loaded: LoadedConfig,
    environment: str,
    release: ReleaseInfo,
    *,
    rollback: bool = False,
    hosts: Sequence[HostInfo] | None = None,
) -> DeploymentPlan:
    """Plan a deployment of ``release`` to ``environment`` (blue/green: to its first slot unless ``hosts``)."""
    project = loaded.project
    if hosts is None:  # which slot is idle, only the router knows: a plan without it shows the first
        hosts = host_views(loaded, environment)[0]
    return plan_deployment(
        project=project,
        environment=environment,
        hosts=hosts,
        release=release,
        render=_render,
        url=environment_url(project, environment),
        rollback=rollback,
    )


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy where, on behalf of which run and stage."""

    environment: str
    digest: str
    run_id: int | None
    stage_id: int
    kind: DeploymentKind = DeploymentKind.DEPLOY
    release_id: str | None = None
    commit: str | None = None
    reason: str | None = None


def revert_steps(
    loaded: LoadedConfig, environment: str, host: str, before: HostRelease, *, info: HostInfo | None = None
) -> Sequence[PlanStep]:
    """The activate hooks (and services) of the release a host (``info``: one slot of it) ran before, to restart it."""
    info = info or next(h for h in hosts_of(loaded, environment) if h.name == host)
    plan = plan_deployment(
        project=loaded.project,
        environment=environment,
        hosts=[info],
        release=ReleaseInfo(before.release_id, before.artifact_digest, before.commit),
        render=_render,
        url=environment_url(loaded.project, environment),
        rollback=True,
    )
    return [s for s in plan.phase_steps(host, "activate") if s.action in (Action.HOOK, Action.SERVICES)]


@dataclass(frozen=True)
class RollbackTarget:
    """The release an environment goes back to."""

    release_id: str
    digest: str
    commit: str


def choose_rollback(app: App, environment: str, to_release: str | None) -> RollbackTarget:
    """The release to go back to: ``to_release``; else, when hosts run releases of a deployment that did not
    succeed (a mixed environment), the release of the last deployment that did; else the one before it."""
    history = [d for d in app.store.deployments(environment, limit=200) if d.state is State.SUCCEEDED]
    running = {h.release_id for h in app.store.host_releases(environment)}
    if not history and not running:
        raise GateError(f"nothing was ever deployed to {environment}: there is nothing to roll back to")
    if to_release:
        for d in history:
            if d.release_id == to_release:
                return RollbackTarget(d.release_id, d.artifact_digest, release_commit_of(app, d))
        known = ", ".join(dict.fromkeys(d.release_id for d in history)) or "none"
        raise GateError(
            f"release {to_release} was never deployed successfully to {environment}",
            hint=f"releases deployed there: {known}",
        )
    current = history[0].release_id if history else None
    if current is not None and running - {current}:
        # A deployment that did not finish (interrupted, cancelled, halted, failed part-way) left hosts on
        # other releases: every host goes back to what the environment ran before it.
        return RollbackTarget(current, history[0].artifact_digest, release_commit_of(app, history[0]))
    for d in history:
        if d.release_id != current and d.release_id not in running:
            return RollbackTarget(d.release_id, d.artifact_digest, release_commit_of(app, d))
    raise GateError(
        f"{environment} has no earlier release to roll back to",
        hint="'slipway deployments " + environment + "' lists what was deployed",
    )


def release_commit_of(app: App, deployment: DeploymentRecord) -> str:
    """The commit a deployment's release was deployed for (its run's), which its marker names."""
    if deployment.run_id is not None:
        return app.store.get_run(deployment.run_id).commit
    return artifact_commit_of(app, deployment.artifact_digest)


def artifact_commit_of(app: App, digest: str, default: str = "unknown") -> str:
    """The commit that built ``digest`` (``artifact.commit``), as the state store recorded it."""
    record = app.store.get_artifact(digest)
    return record.commit if record else default
