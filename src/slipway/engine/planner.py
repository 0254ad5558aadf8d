"""The deployment planner: pure. Config + release + hosts in, a plan (data) out.

A deployment has two parts. Before the switch, every host runs prepare, install (the built-in release
install, then the install hooks), migrate and configure, phase by phase with a barrier between phases,
so that a ``once`` migration has finished before any host goes on. Nothing a user sees changes yet, and a
failure here leaves every host as it was. Then, batch by batch, each host switches ``current`` (built-in),
runs its activate hooks and its verify hooks. A dry run prints this plan; the runner executes this plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slipway.engine.slots import SlotInfo, slot_root
from slipway.engine.strategy import AllAtOnce, Batch, BatchKind, Canary, Rolling
from slipway.engine.strategy import plan_batches as strategy_batches
from slipway.model.config import Command, Environment, Project

PRE_SWITCH = ("prepare", "install", "migrate", "configure")
POST_SWITCH = ("activate", "verify")


class Action(StrEnum):
    """What a plan step does."""

    HOOK = "hook"
    INSTALL = "install-release"
    SWITCH = "switch-current"
    #: Restart the host's services (``deploy.services``) on the release ``current`` points at.
    SERVICES = "restart-services"


@dataclass(frozen=True)
class PlanStep:
    """One thing to do on one host."""

    phase: str
    action: Action
    command: str = ""
    timeout: float = 600.0

    @property
    def label(self) -> str:
        """Short human name for logs and the store."""
        if self.action is Action.HOOK:
            return f"{self.phase}: {self.command}"
        if self.action is Action.SERVICES:
            return f"{self.phase}: {self.action.value} ({self.command})"
        return f"{self.phase}: {self.action.value}"


@dataclass(frozen=True)
class HostInfo:
    """What the planner needs to know of a target."""

    name: str
    root: str
    roles: tuple[str, ...] = ()
    vars: Mapping[str, Any] | None = None
    #: The address the host is reached at (127.0.0.1 for a local target).
    address: str = "127.0.0.1"
    #: Blue/green: the slot deployed; its layout is ``paths.*`` and its vars overlay the host's.
    slot: SlotInfo | None = None


@dataclass(frozen=True)
class ReleaseInfo:
    """The release being deployed.

    ``commit`` is the commit of the run being deployed (``release.commit``: what the pipeline ran for);
    ``artifact_commit`` the commit that first built the digest (``artifact.commit``). Two commits that build
    the same bytes share one artifact, so the two differ; empty means "the same as ``commit``".
    """

    id: str
    digest: str
    commit: str
    artifact_commit: str = ""

    @property
    def built_by(self) -> str:
        """The commit that built the artifact."""
        return self.artifact_commit or self.commit


@dataclass(frozen=True)
class DeploymentPlan:
    """Everything a deployment will do, host by host and phase by phase."""

    environment: str
    release: ReleaseInfo
    hosts: tuple[str, ...]
    #: host -> phase -> steps.
    steps: Mapping[str, Mapping[str, tuple[PlanStep, ...]]]
    #: Hosts switched together, in order.
    batches: tuple[tuple[str, ...], ...]
    rollback: bool = False
    #: The same batches with what the strategy asks around them (kind, pause, bake time).
    rollout: tuple[Batch, ...] = ()
    #: The strategy's kind, as stored with the deployment.
    strategy: str = "all_at_once"

    def phase_steps(self, host: str, phase: str) -> tuple[PlanStep, ...]:
        """The steps of one host in one phase."""
        return self.steps.get(host, {}).get(phase, ())


def template_context(
    *, project: Project, environment: str, env: Environment, host: HostInfo, release: ReleaseInfo, url: str | None
) -> dict[str, Any]:
    """The variables a hook command may use (documented in docs/config.md)."""
    root = host.root.rstrip("/")
    merged = {**env.vars, **(host.vars or {}), **(host.slot.vars if host.slot else {})}
    layout = slot_root(root, host.slot.name) if host.slot else root
    context: dict[str, Any] = {
        "project": project.name,
        "release": {
            "id": release.id,
            "dir": f"{layout}/releases/{release.id}",
            "digest": release.digest,
            "commit": release.commit,
            "version": release.commit[:12],
        },
        "artifact": {"digest": release.digest, "commit": release.built_by},
        "environment": {"name": environment, "url": url or ""},
        "vars": merged,
        "host": {
            "name": host.name,
            "address": host.address,
            "root": root,
            "roles": list(host.roles),
            "vars": dict(host.vars or {}),
        },
        "paths": {
            "root": layout,
            "current": f"{layout}/current",
            "shared": f"{layout}/shared",
            "releases": f"{layout}/releases",
        },
    }
    if host.slot is not None:
        context["slot"] = {"name": host.slot.name, "root": layout, "vars": dict(host.slot.vars)}
    return context


def _applies(command: Command, host: HostInfo) -> bool:
    return not command.roles or bool(set(command.roles) & set(host.roles))


def plan_batches(hosts: Sequence[str], parallel: int) -> tuple[tuple[str, ...], ...]:
    """All-at-once in groups of at most ``parallel`` hosts, in the order the config lists them."""
    size = max(1, parallel)
    return tuple(tuple(hosts[i : i + size]) for i in range(0, len(hosts), size))


def plan_rollout(hosts: Sequence[str], env: Environment, *, rollback: bool = False) -> tuple[Batch, ...]:
    """The batches of an environment's strategy; without one, ``parallel`` at a time.

    A rollback goes back to a release that already served: it takes no more hosts out of rotation at once
    than a deployment would, but nothing is tried out. ``rolling`` and ``canary`` roll back in the
    strategy's rolling batches (``batch_size`` capped by ``max_unavailable``), without a canary batch, a
    bake, an approval pause or a pause between batches (docs/strategies.md, "Rollback").
    """
    strategy = env.strategy
    if rollback and isinstance(strategy, Rolling | Canary):
        return rollback_batches(hosts, strategy)
    if strategy is None or rollback or isinstance(strategy, AllAtOnce):  # blue/green rolls back by a switch
        return tuple(
            Batch(index=i, kind=BatchKind.ALL, hosts=group) for i, group in enumerate(plan_batches(hosts, env.parallel))
        )
    return strategy_batches(hosts, strategy)


def rollback_batches(hosts: Sequence[str], strategy: Rolling | Canary) -> tuple[Batch, ...]:
    """The batches of a rollback: the strategy's rolling batch size, nothing else of the strategy."""
    rolling = Rolling(batch_size=strategy.batch_size, max_unavailable=strategy.max_unavailable)
    return strategy_batches(hosts, rolling)


def plan_deployment(
    *,
    project: Project,
    environment: str,
    hosts: Sequence[HostInfo],
    release: ReleaseInfo,
    render: Any,
    url: str | None = None,
    rollback: bool = False,
) -> DeploymentPlan:
    """Plan a deployment (or, with ``rollback``, a switch back to a release already installed).

    ``render(template, context, where)`` renders one hook command; it is passed in so the planner stays
    free of any template engine's details.
    """
    env = project.environments[environment]
    hooks = project.deploy.hooks
    phases = POST_SWITCH if rollback else PRE_SWITCH + POST_SWITCH
    steps: dict[str, dict[str, tuple[PlanStep, ...]]] = {h.name: {} for h in hosts}
    once_done: set[tuple[str, int]] = set()
    for phase in phases:
        commands: tuple[Command, ...] = getattr(hooks, phase)
        for host in hosts:
            ctx = template_context(
                project=project, environment=environment, env=env, host=host, release=release, url=url
            )
            out: list[PlanStep] = []
            if phase == "install":
                out.append(PlanStep(phase, Action.INSTALL, timeout=project.deploy.timeout))
            if phase == "activate":
                out.append(PlanStep(phase, Action.SWITCH, timeout=project.deploy.timeout))
                if project.deploy.services:  # right after the switch, before the activate hooks
                    services = ", ".join(project.deploy.services)
                    out.append(PlanStep(phase, Action.SERVICES, services, timeout=project.deploy.timeout))
            for i, command in enumerate(commands):
                if not _applies(command, host):
                    continue
                if command.once:
                    if (phase, i) in once_done:
                        continue
                    once_done.add((phase, i))
                text = render(command.run, ctx, f"deploy.hooks.{phase}[{i}]")
                out.append(PlanStep(phase, Action.HOOK, text, command.timeout or project.deploy.timeout))
            steps[host.name][phase] = tuple(out)
    names = tuple(h.name for h in hosts)
    rollout = plan_rollout(names, env, rollback=rollback)
    return DeploymentPlan(
        environment=environment,
        release=release,
        hosts=names,
        steps=steps,
        batches=tuple(b.hosts for b in rollout),
        rollback=rollback,
        rollout=rollout,
        strategy=env.strategy.kind.value if env.strategy is not None else "all_at_once",
    )


def describe_plan(plan: DeploymentPlan) -> list[str]:
    """Human-readable lines of a plan, for ``--dry-run``."""
    verb = "roll back" if plan.rollback else "deploy"
    lines = [
        f"{verb} {plan.environment} to release {plan.release.id} ({plan.release.digest[:19]}, commit {plan.release.commit[:12]})"
    ]
    if not plan.rollback:
        lines.append("  before the switch, on every host, phase by phase:")
        for phase in PRE_SWITCH:
            for host in plan.hosts:
                for step in plan.phase_steps(host, phase):
                    lines.append(f"    [{host}] {step.label}")
    if not plan.rollback:
        lines.append(f"  strategy: {plan.strategy}")
    elif plan.strategy in ("rolling", "canary"):
        lines.append(f"  strategy: {plan.strategy} (a rollback: its rolling batches, no canary, bake or pause)")
    for n, batch in enumerate(plan.batches, 1):
        lines.append(f"  batch {n} of {len(plan.batches)}: {', '.join(batch)}{_batch_notes(plan, n - 1)}")
        for host in batch:
            for phase in POST_SWITCH:
                for step in plan.phase_steps(host, phase):
                    lines.append(f"    [{host}] {step.label}")
    return lines


def _batch_notes(plan: DeploymentPlan, index: int) -> str:
    """What the strategy adds around batch ``index``: canary bake time, the pause after it."""
    if index >= len(plan.rollout):
        return ""
    batch = plan.rollout[index]
    notes = [batch.kind.value] if batch.kind is not BatchKind.ALL else []
    if batch.bake_time:
        notes.append(f"bake {batch.bake_time:g}s, checks every {batch.check_interval:g}s")
    if batch.pause_after:
        notes.append(f"then pause {batch.pause_after:g}s")
    return f" ({'; '.join(notes)})" if notes else ""
